"""Project-wide rules: layering of the packages, production settings, migrations, --help texts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VTT_"))}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VTT_"))}
    environment.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True)


@pytest.mark.parametrize("package, forbidden", [("colorizers", ["django"]), ("evaluation", ["django", "torch"])])
def test_lower_layers_never_import_the_upper_ones(package, forbidden):
    code = f"import sys, {package}; print(sorted({{m.split('.')[0] for m in sys.modules}}))"
    result = python(code)
    assert result.returncode == 0, result.stderr
    for name in forbidden:
        assert f"'{name}'" not in result.stdout


PRODUCTION = {"DJANGO_SECRET_KEY": "p" * 20 + "-production-key-with-enough-entropy-1234567890", "DJANGO_ALLOWED_HOSTS": "vtt.example.org"}


def test_check_deploy_is_clean_in_production_mode():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", DJANGO_ALLOWED_HOSTS="vtt.example.org")
    assert result.returncode != 0 and "DJANGO_SECRET_KEY is not set" in result.stderr


def test_production_settings_are_strict():
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='vtt.settings'; from django.conf import settings as s; print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.ALLOWED_HOSTS)"
    result = python(code, **PRODUCTION)
    assert result.stdout.strip() == "False True True True ['vtt.example.org']", result.stderr


def test_database_url_selects_postgresql():
    code = "import os; os.environ['DJANGO_SETTINGS_MODULE']='vtt.settings'; from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'])"
    result = python(code, DATABASE_URL="postgres://postgres@127.0.0.1:5432/vtt", **PRODUCTION)
    assert result.stdout.split() == ["django.db.backends.postgresql", "vtt"], result.stderr


def test_the_demo_generates_its_key_once_outside_git(tmp_path):
    code = "import os; os.environ['DJANGO_SETTINGS_MODULE']='vtt.settings'; from django.conf import settings as s; print(s.SECRET_KEY, s.DEBUG)"
    first = python(code, VTT_DEMO="1", VTT_VAR_DIR=str(tmp_path))
    second = python(code, VTT_DEMO="1", VTT_VAR_DIR=str(tmp_path))
    assert first.stdout == second.stdout and first.stdout.split()[1] == "False"
    assert (tmp_path / "secret_key").read_text().strip() == first.stdout.split()[0]
    ignored = subprocess.run(["git", "check-ignore", "var/secret_key"], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.strip() == "var/secret_key"


def test_migrations_are_committed_for_every_model_change():
    result = manage("makemigrations", "--check", "--dry-run", DJANGO_SETTINGS_MODULE="tests.settings")
    assert result.returncode == 0, result.stdout + result.stderr


def test_vtt_report_help_explains_every_option():
    result = manage("vtt_report", "--help", DJANGO_SETTINGS_MODULE="tests.settings")
    for option in ("--experiment", "--ci-method", "--confidence", "--n-boot", "--seed", "--format"):
        assert option in result.stdout
