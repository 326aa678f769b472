"""Settings for running the demo locally (``manage.py`` uses these by default).

Environment variables:

- ``CRM_DB=postgres``: use PostgreSQL instead of ``example_site/db.sqlite3``. The database is
  ``CRM_PG_NAME`` (default ``wagtail_crm_demo``) on ``CRM_PG_HOST``:``CRM_PG_PORT`` (default
  127.0.0.1:5432) as ``CRM_PG_USER`` / ``CRM_PG_PASSWORD`` (default: the current OS user, no password).
- ``CRM_RQ=1``: hand background jobs (page-view ingestion) to the django-rq queue ``default`` on
  ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); run ``manage.py rqworker default`` beside the server.
- ``CRM_CACHE_MODE=edge``: the edge-cache mode of personalised content (docs/how-to/caching.md).
"""

import os

from .base import *  # noqa: F403
from .base import WAGTAIL_CRM

DEBUG = True
# A local demo key: never use these settings on a server.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-wagtail-crm-demo-only")
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

if os.environ.get("CRM_DB") == "postgres":
    from .base import INSTALLED_APPS

    # Wagtail's database search backend uses PostgreSQL's full-text fields there.
    INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.postgres"]
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("CRM_PG_NAME", "wagtail_crm_demo"),
            "USER": os.environ.get("CRM_PG_USER", ""),
            "PASSWORD": os.environ.get("CRM_PG_PASSWORD", ""),
            "HOST": os.environ.get("CRM_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("CRM_PG_PORT", "5432"),
        }
    }

if os.environ.get("CRM_RQ") == "1":
    WAGTAIL_CRM = {**WAGTAIL_CRM, "RQ_QUEUE": "default"}

if os.environ.get("CRM_CACHE_MODE"):
    WAGTAIL_CRM = {**WAGTAIL_CRM, "CACHE_MODE": os.environ["CRM_CACHE_MODE"]}
