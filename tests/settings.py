"""Settings for the test suite: the production settings with a throwaway key and media folder.

``DATABASE_URL`` still selects the database, so the same suite runs on SQLite (the
default) and on PostgreSQL (``make test`` runs both).
"""
import os
import tempfile

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-" + "x" * 50)
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("VTT_MEDIA_ROOT", tempfile.mkdtemp(prefix="vtt-test-media-"))

from vtt.settings import *  # noqa: E402,F401,F403

STATIC_ROOT = tempfile.mkdtemp(prefix="vtt-test-static-")
WHITENOISE_USE_FINDERS = True
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Persistent connections from the live-server thread would keep the test database
# busy at teardown on PostgreSQL.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
