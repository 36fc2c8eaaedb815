"""Settings for the vtt platform, read from the environment.

Three ways to run it:

* production (the default): ``DEBUG`` off, ``DJANGO_SECRET_KEY`` and
  ``DJANGO_ALLOWED_HOSTS`` required, HTTPS assumed (secure cookies, HSTS,
  redirect to HTTPS; ``X-Forwarded-Proto`` trusted from the proxy in front).
  ``manage.py check --deploy`` is clean in this mode.
* the local demo (``VTT_DEMO=1``): plain HTTP on 127.0.0.1, a secret key generated
  once into ``var/secret_key`` (kept out of git); ``DEBUG`` stays off.
* tests: ``tests/settings.py`` on top of this module.

The database is SQLite in ``var/db.sqlite3`` unless ``DATABASE_URL`` names another
(``postgres://user@host:5432/name`` is what production uses).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VTT_VAR_DIR", BASE_DIR / "var"))


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def _demo_secret_key() -> str:
    """Generate the demo's key once and keep it in var/ (ignored by git)."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


DEMO = _env_bool("VTT_DEMO", False)
DEBUG = _env_bool("DJANGO_DEBUG", False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or (_demo_secret_key() if DEMO else "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set. In production, set it in the environment; for the local demo "
        "(its SQLite database in var/ and a generated key), put VTT_DEMO=1 before the command."
    )

_hosts = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost" if (DEMO or DEBUG) else "")
ALLOWED_HOSTS = [h.strip() for h in _hosts.split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "vtt.apps.VttConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "vtt.urls"
WSGI_APPLICATION = "vtt.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One writer at a time from the start of each transaction (no lock upgrades that
    # fail under concurrent raters), WAL so readers do not wait for the writer.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Rendered pair images. They are served by `vtt.views.image` from opaque URLs,
# never by a static-file server that would add per-file headers (Last-Modified,
# ETag) that could tell the real image from the generated one.
MEDIA_ROOT = Path(os.environ.get("VTT_MEDIA_ROOT", VAR_DIR / "media"))
VTT_IMAGE_CACHE_SECONDS = 3600
# Pair images sent by nginx: with VTT_IMAGE_ACCEL_REDIRECT=/_pairs/, the prefix of an ``internal``
# nginx location aliased to MEDIA_ROOT/pairs/ (``python manage.py nginx_config`` writes it, with
# ``etag off``, no Last-Modified and ``if_modified_since off``), `vtt.views.image` still decides
# which rater may see which image, then answers with an empty body and
# ``X-Accel-Redirect: /_pairs/<file>``, and nginx sends the file: no Django worker is busy
# with the bytes. Empty (the default, and the demo's): the app sends the bytes itself. Set it
# only behind that nginx: without one, every image would come back empty.
VTT_IMAGE_ACCEL_REDIRECT = os.environ.get("VTT_IMAGE_ACCEL_REDIRECT", "").strip()
if VTT_IMAGE_ACCEL_REDIRECT and not (VTT_IMAGE_ACCEL_REDIRECT.startswith("/") and VTT_IMAGE_ACCEL_REDIRECT.endswith("/")):
    raise ImproperlyConfigured(
        f"VTT_IMAGE_ACCEL_REDIRECT must be a location path that starts and ends with '/' (e.g. /_pairs/), "
        f"got {VTT_IMAGE_ACCEL_REDIRECT!r}"
    )

LOGIN_URL = "admin:login"
# The rater's id lives in a signed cookie: no session row to read or write per request.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

# Production hardening; the demo runs on plain HTTP on the loopback address.
_https = not (DEMO or DEBUG)
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_SSL_REDIRECT = _env_bool("DJANGO_SECURE_SSL_REDIRECT", _https)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", 31536000 if _https else 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _https
SECURE_HSTS_PRELOAD = _https
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "WARNING")},
}
