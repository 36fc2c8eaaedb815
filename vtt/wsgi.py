"""WSGI entry point: ``gunicorn vtt.wsgi``.

A missing or bad setting (no ``DJANGO_SECRET_KEY`` in production, say) stops the
server before it serves anything, with one line that says what to set.

The application is warmed up here, before gunicorn forks its workers when it runs
with ``--preload`` (as ``make serve`` does): the URL configuration, the views and
the modules they import, and the rater and staff templates are loaded once, so no
rater waits for a cold worker.
"""
import os
import sys

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vtt.settings")
try:
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    print(f"vtt.wsgi: {exc}", file=sys.stderr)
    raise SystemExit(1) from None


def _warm_up() -> None:
    from django.template.loader import get_template
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018  (imports vtt.urls and every view module)
    for name in ("vtt/index.html", "vtt/landing.html", "vtt/trial.html", "vtt/done.html", "vtt/declined.html",
                 "vtt/error.html", "vtt/dashboard.html", "vtt/experiment.html"):
        get_template(name)


_warm_up()
