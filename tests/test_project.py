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


@pytest.mark.parametrize("package, forbidden", [
    ("colorizers", ["django"]), ("evaluation", ["django", "torch"]),
    ("evaluation.fid", ["django", "torch"]), ("evaluation.metric_agreement", ["django", "torch"]),
    ("learned_metrics.lpips", ["django"]), ("learned_metrics.inception", ["django"]),
])
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


@pytest.mark.parametrize("args", [("migrate",), ("generate_pairs", "--experiment", "x"), ("vtt_report", "--experiment", "x")])
def test_a_missing_secret_key_is_one_line_that_names_the_fix(args):
    result = manage(*args)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "DJANGO_SECRET_KEY is not set" in result.stderr and "VTT_DEMO=1" in result.stderr


def test_gunicorn_refuses_to_start_without_a_secret_key_in_one_line(tmp_path):
    gunicorn = Path(sys.executable).with_name("gunicorn")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VTT_"))}
    result = subprocess.run(
        [str(gunicorn), "vtt.wsgi", "--preload", "--bind", "127.0.0.1:0", "--no-control-socket", "--workers", "1"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "vtt.wsgi: DJANGO_SECRET_KEY is not set" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_every_management_command_explains_itself_with_no_settings_at_all():
    """``--help`` with no DJANGO_* or VTT_* variable: no key, no database, production defaults."""
    commands = sorted(p.stem for p in (ROOT / "vtt" / "management" / "commands").glob("[a-z]*.py"))
    assert {"generate_pairs", "vtt_report", "train_colorizer", "pairs_sheet"} <= set(commands)
    for command in commands:
        result = manage(command, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"usage: manage.py {command}"), result.stderr
    listing = manage("help")
    assert listing.returncode == 0 and "generate_pairs" in listing.stdout, listing.stderr


def test_manage_py_finds_the_projects_virtual_environment(tmp_path):
    """Run with a Python that has no Django (the interpreter the venv was made from), manage.py reruns itself in .venv."""
    base = Path(sys.base_prefix) / "bin" / "python3"
    probe = subprocess.run([str(base), "-c", "import django"], capture_output=True)
    assert probe.returncode != 0, f"{base} can import Django: this test needs an interpreter without it"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VTT_"))}
    result = subprocess.run([str(base), "manage.py", "generate_pairs", "--help"], cwd=ROOT, env=environment,
                            capture_output=True, text=True)
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        assert result.returncode == 0 and "usage: manage.py generate_pairs" in result.stdout, result.stderr
    else:  # the suite runs from another environment: manage.py must say what to do, in one line
        assert result.returncode != 0 and "make demo" in result.stderr and result.stderr.count("\n") == 1


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
