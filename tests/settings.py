"""Settings for the test suite.

CRM_TEST_DB=postgres runs against PostgreSQL (database from CRM_PG_NAME, default "test"); otherwise SQLite.
The test database is a real file/database (not in-memory) so that a real ``rqworker`` subprocess can use it:
tests start workers with CRM_DB_NAME pointing at the test database. Redis: CRM_REDIS_URL.
"""

import os
import tempfile

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "tests.testapp",
    "wagtail_crm",
    "wagtail_crm.contrib.modeladmin",
    "wagtail_modeladmin",
    "django_rq",
    "wagtail.contrib.forms",
    "wagtail.contrib.redirects",
    "wagtail.contrib.settings",
    "wagtail.embeds",
    "wagtail.sites",
    "wagtail.users",
    "wagtail.snippets",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.search",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
    "django_filters",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "wagtail_crm.middleware.VisitorMiddleware",
]

ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("CRM_TEST_DB") == "postgres":
    INSTALLED_APPS.append("django.contrib.postgres")  # Wagtail's search index uses its fields there
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("CRM_DB_NAME") or os.environ.get("CRM_PG_NAME", "test"),
            "USER": os.environ.get("CRM_PG_USER", ""),
            "HOST": os.environ.get("CRM_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("CRM_PG_PORT", "5432"),
            "TEST": {"NAME": os.environ.get("CRM_PG_TEST_NAME", f"test_wagtail_crm_{os.getpid()}")},
        }
    }
else:
    _sqlite = os.path.join(tempfile.gettempdir(), f"wagtail_crm_tests_{os.getpid()}.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("CRM_DB_NAME") or _sqlite,
            "TEST": {"NAME": os.environ.get("CRM_DB_NAME") or _sqlite + "-test"},
        }
    }

REDIS_URL = os.environ.get("CRM_REDIS_URL", "redis://127.0.0.1:6379/15")
RQ_QUEUES = {"crm": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 60}}
# Jobs run inline; tests that exercise Redis use override_settings. Worker subprocesses set CRM_TEST_RQ=1.
WAGTAIL_CRM = {"RQ_QUEUE": "crm"} if os.environ.get("CRM_TEST_RQ") == "1" else {}

STATIC_URL = "/static/"
STATIC_ROOT = os.path.join(BASE_DIR, "static-collected")
MEDIA_URL = "/media/"
MEDIA_ROOT = os.path.join(BASE_DIR, "media")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WAGTAIL_SITE_NAME = "wagtail_crm tests"
WAGTAILADMIN_BASE_URL = "http://testserver"
LOGIN_URL = "/accounts/login/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
