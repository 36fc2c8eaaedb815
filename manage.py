#!/usr/bin/env python
"""Django's command-line utility for the vtt platform.

Two conveniences over Django's own ``manage.py``:

* ``python manage.py ...`` works with whichever ``python`` is on the PATH: when Django
  cannot be imported and the project's virtual environment (``.venv``, made by
  ``make demo`` or ``make test``) exists, the command reruns itself with the
  environment's interpreter.
* ``--help`` needs no settings: asking any command for help never needs the secret
  key, so help is printed even where ``DJANGO_SECRET_KEY`` is not set. Every other
  use of a missing or bad setting stops with one line that says what to set.
"""
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
HELP_WORDS = {"help", "-h", "--help", "--version", "version"}


def _reexec_in_venv() -> None:
    """Run this command again with the project's venv when Django is not importable here."""
    try:
        import django  # noqa: F401
    except ModuleNotFoundError:
        in_venv = Path(sys.prefix).resolve() == VENV_PYTHON.parent.parent.resolve()
        if VENV_PYTHON.exists() and not in_venv and not os.environ.get("VTT_NO_VENV_REEXEC"):
            os.environ["VTT_NO_VENV_REEXEC"] = "1"   # never loop
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
        sys.exit("manage.py: Django is not installed for this Python; run `make demo` (or `make test`) once, "
                 "which installs the project into .venv, then `.venv/bin/python manage.py ...`")


def asks_for_help(argv: list[str]) -> bool:
    """Whether the command line only asks for help (Django then prints it and exits)."""
    return len(argv) < 2 or argv[1] in HELP_WORDS or any(a in ("-h", "--help") for a in argv[2:])


def main() -> None:
    _reexec_in_venv()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vtt.settings")
    if asks_for_help(sys.argv):
        # Help signs nothing and touches no database: a key made up for this process will do.
        os.environ.setdefault("DJANGO_SECRET_KEY", "help-only-" + secrets.token_urlsafe(32))
    from django.core.exceptions import ImproperlyConfigured

    try:
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018  (reads the settings module now, to report its errors in one line)
    except ImproperlyConfigured as exc:
        sys.exit(f"manage.py: {exc}")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
