"""Settings for the example site's smoke test.

The database is the SQLite file named by ``CRM_EXAMPLE_DB`` (the smoke test runs several ``manage.py``
commands, each its own process, against one database); without it, an in-memory database.
"""

import os

from .base import *  # noqa: F403

DEBUG = False
SECRET_KEY = "example-site-tests-only-not-secret"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CRM_EXAMPLE_DB", ":memory:"),
        # A throwaway database: skip the disk syncs that make hundreds of migrations slow.
        "OPTIONS": {"init_command": "PRAGMA synchronous=OFF; PRAGMA journal_mode=MEMORY;"},
    }
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WAGTAIL_CRM = {}
