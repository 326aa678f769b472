"""Settings for the benchmarks: the example site, switched by environment variables.

The benchmark scripts set these variables themselves (and pass them to any subprocess they start, such as
the RQ worker), so there is normally no need to set them by hand:

- ``BENCH_DB``: ``sqlite`` (default; the file ``BENCH_SQLITE_PATH``) or ``postgres`` (database
  ``BENCH_PG_NAME`` on ``BENCH_PG_HOST``:``BENCH_PG_PORT`` as ``BENCH_PG_USER`` / ``BENCH_PG_PASSWORD``).
- ``BENCH_REDIS_URL``: the Redis database the benchmarks may use (default ``redis://127.0.0.1:6379/14``).
- ``BENCH_RQ=1``: hand page views to the django-rq queue ``BENCH_QUEUE`` on that Redis (buffered ingestion);
  otherwise the default inline mode (each page view written in the request).
- ``BENCH_PLAIN=1``: plain Wagtail, without ``wagtail_crm`` (and django-rq) installed at all; its template tags
  are stand-ins (``benchmarks/plain_crm_tags.py``).
- ``BENCH_INGEST_BATCH_SIZE``: override ``WAGTAIL_CRM["INGEST_BATCH_SIZE"]``.
- ``BENCH_SEGMENTS=1``: the content page template also lists the segments the visitor is in
  (``benchmarks/templates/home/content_page.html``, used by ``benchmarks/segments_render.py``).
"""

import copy
import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The example site's packages (``example_site``, ``home``) live one folder down.
if str(REPO_ROOT / "example_site") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "example_site"))

from example_site.settings.base import *  # noqa: E402, F403
from example_site.settings.base import INSTALLED_APPS, MIDDLEWARE  # noqa: E402
from example_site.settings.base import TEMPLATES as SITE_TEMPLATES  # noqa: E402

DEBUG = False
SECRET_KEY = "wagtail-crm-benchmarks-not-secret"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Static files are not collected for the benchmarks: plain storage, no manifest.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

if os.environ.get("BENCH_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("BENCH_PG_NAME", "wagtail_crm_bench"),
            "USER": os.environ.get("BENCH_PG_USER", ""),
            "PASSWORD": os.environ.get("BENCH_PG_PASSWORD", ""),
            "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
            # Persistent connections, as a production site would run.
            "CONN_MAX_AGE": None,
        }
    }
    # Wagtail's database search backend uses PostgreSQL full-text fields (system check postgres.E005).
    INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.postgres"]
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get(
                "BENCH_SQLITE_PATH", str(Path(tempfile.gettempdir()) / "wagtail_crm_bench.sqlite3")
            ),
            "CONN_MAX_AGE": None,
            "OPTIONS": {"timeout": 30},
        }
    }

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
BENCH_QUEUE = os.environ.get("BENCH_QUEUE", "wagtail_crm_bench")
RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600} for name in ("default", BENCH_QUEUE)}

WAGTAIL_CRM = {"REDIS_KEY_PREFIX": "wagtail_crm_bench"}
if os.environ.get("BENCH_RQ") == "1":
    WAGTAIL_CRM["RQ_QUEUE"] = BENCH_QUEUE
if os.environ.get("BENCH_INGEST_BATCH_SIZE"):
    WAGTAIL_CRM["INGEST_BATCH_SIZE"] = int(os.environ["BENCH_INGEST_BATCH_SIZE"])

if os.environ.get("BENCH_PLAIN") == "1":
    # Plain Wagtail: the plugin (and its job queue) is not installed at all.
    INSTALLED_APPS = [app for app in INSTALLED_APPS if app not in ("wagtail_crm", "django_rq")]
    MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("wagtail_crm.")]
    ROOT_URLCONF = "benchmarks.urls_plain"

if os.environ.get("BENCH_SEGMENTS") == "1":
    # The benchmarks' own templates first: home/content_page.html extends the example site's and adds the
    # visitor's segments, through the ``bench_segments`` tag library (plain Wagtail: an empty list).
    TEMPLATES = copy.deepcopy(SITE_TEMPLATES)
    TEMPLATES[0]["DIRS"] = [REPO_ROOT / "benchmarks" / "templates", *TEMPLATES[0]["DIRS"]]
    TEMPLATES[0]["OPTIONS"]["libraries"] = {"bench_segments": "benchmarks.bench_segments_tags"}

if os.environ.get("BENCH_PLAIN") == "1":
    # The example site's templates load wagtail_crm's tags: stand-ins render what those render without a
    # visitor (benchmarks/plain_crm_tags.py).
    TEMPLATES = copy.deepcopy(TEMPLATES)  # noqa: F405
    TEMPLATES[0]["OPTIONS"].setdefault("libraries", {})["wagtail_crm"] = "benchmarks.plain_crm_tags"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
