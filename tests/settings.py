"""Settings for the test suite.

CRM_TEST_DB=postgres runs against PostgreSQL (database from CRM_PG_NAME, default "test");
CRM_TEST_RQ=1 configures a real django-rq queue on Redis (CRM_REDIS_URL) as WAGTAIL_CRM["RQ_QUEUE"].
"""

import os

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
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("CRM_PG_NAME", "test"),
            "USER": os.environ.get("CRM_PG_USER", ""),
            "HOST": os.environ.get("CRM_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("CRM_PG_PORT", "5432"),
            "TEST": {"NAME": os.environ.get("CRM_PG_TEST_NAME", "test_wagtail_crm")},
        }
    }
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

REDIS_URL = os.environ.get("CRM_REDIS_URL", "redis://127.0.0.1:6379/15")
RQ_QUEUES = {"crm": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 60}}
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
