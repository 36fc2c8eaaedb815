"""Simulated raters over HTTP, and throwaway databases and deployments (gunicorn, nginx in front if asked) to run
them against.

Used by the concurrency test (`tests/test_concurrency.py`), the nginx test (`tests/test_nginx.py`)
and the serving benchmark (`benchmarks/serving.py`). Standard library only on the client side: a simulated
rater is a cookie jar, the landing form's CSRF token, and the JSON answer API the
browser uses.

Everything here talks to the loopback address only.
"""
from __future__ import annotations

import http.cookiejar
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

BASE_DIR = Path(__file__).resolve().parent.parent
_STATE = re.compile(r'<script id="vtt-state" type="application/json">(.*?)</script>', re.S)
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
NGINX = Path("/usr/sbin/nginx")  # Debian's
ACCEL_PREFIX = "/_pairs/"  # VTT_IMAGE_ACCEL_REDIRECT of a deployment behind nginx
CTEST10K = (10_000, 5, 5)  # ctest10k's scale for the benchmarks (`vtt.synthetic`): images, rated methods, K


@dataclass
class RaterLog:
    """What one simulated rater did and what the server acknowledged."""

    acknowledged: dict[str, str] = field(default_factory=dict)   # trial token -> choice, for every 200 answer
    shown: list[str] = field(default_factory=list)                # trial tokens in the order shown
    answer_seconds: list[float] = field(default_factory=list)     # latency of each answer request
    image_seconds: list[float] = field(default_factory=list)      # latency of each image request (``images``)
    errors: list[str] = field(default_factory=list)               # unexpected statuses
    finished: bool = False


class SimulatedRater:
    """One rater in a browser-less session: landing, start, then answers until done or abandoned."""

    def __init__(self, base_url: str, slug: str, *, seed: int, params: dict[str, str] | None = None,
                 timeout: float = 30, images: bool = False):
        """``images``: load the two images of each trial as the trial page does (those of the next trial are
        preloaded while the current one is shown), timing each request."""
        self.base_url, self.slug, self.timeout, self.images = base_url.rstrip("/"), slug, timeout, images
        self.loaded: set[str] = set()  # trials whose images were loaded
        self.rng = random.Random(seed)
        self.params = params or {}
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf = ""
        self.log = RaterLog()

    def _request(self, path: str, data: dict | None = None, *, json_api: bool = False) -> tuple[int, bytes]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base_url + path, data=body)
        if json_api:
            request.add_header("Accept", "application/json")
            request.add_header("X-CSRFToken", self.csrf)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def start(self) -> dict | None:
        query = ("?" + urllib.parse.urlencode(self.params)) if self.params else ""
        status, page = self._request(f"/e/{self.slug}/{query}")
        if status != 200:
            self.log.errors.append(f"landing {status}")
            return None
        self.csrf = _CSRF.search(page.decode()).group(1)
        status, page = self._request(f"/e/{self.slug}/start/", {"csrfmiddlewaretoken": self.csrf, **self.params})
        match = _STATE.search(page.decode()) if status == 200 else None
        if match is None:  # finished already, or no trial left for this rater
            self.log.finished = status == 200
            return None
        state = json.loads(match.group(1))
        self.load_images(state["current"], state.get("next"))
        return state["current"]

    def load_images(self, *trials: dict | None) -> None:
        """With ``images``, GET both images of each trial not loaded yet, as the browser does."""
        for trial in trials:
            if not self.images or trial is None or trial["token"] in self.loaded:
                continue
            self.loaded.add(trial["token"])
            for side in ("left", "right"):
                started = time.perf_counter()
                status, body = self._request(trial[side])
                self.log.image_seconds.append(time.perf_counter() - started)
                if status != 200 or not body:
                    self.log.errors.append(f"image {status} ({len(body)} bytes)")

    def answer(self, token: str, choice: str) -> tuple[int, dict]:
        started = time.perf_counter()
        status, body = self._request(
            f"/e/{self.slug}/answer/",
            {"trial": token, "choice": choice, "response_ms": str(self.rng.randint(300, 3000))},
            json_api=True,
        )
        self.log.answer_seconds.append(time.perf_counter() - started)
        data = json.loads(body) if body.startswith(b"{") else {}
        if status == 200:
            self.log.acknowledged[token] = choice
            self.load_images(data.get("current"), data.get("next"))
        else:
            self.log.errors.append(f"answer {status}: {data.get('error', body[:80])}")
        return status, data

    def run(self, *, abandon_after: int | None = None, double_submit: bool = False, think: float = 0.0,
            pause: tuple[float, float] | None = None) -> RaterLog:
        """Answer every trial (a random side), stopping after ``abandon_after`` answers if given.

        ``double_submit`` sends each answer twice at once from two threads, as a double
        click or a retry racing the first request would. Before each answer the rater
        waits a random time: up to ``think`` seconds, or between the two of ``pause``.
        """
        current = self.start()
        answered = 0
        while current is not None:
            if abandon_after is not None and answered >= abandon_after:
                return self.log
            self.log.shown.append(current["token"])
            if think or pause:
                time.sleep(self.rng.uniform(*(pause or (0, think))))
            choice = self.rng.choice("LR")
            if double_submit:
                results: list[tuple[int, dict]] = []
                threads = [threading.Thread(target=lambda: results.append(self.answer(current["token"], choice)))
                           for _ in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                data = next((d for s, d in results if s == 200), None)
                if data is None:
                    return self.log
            else:
                status, data = self.answer(current["token"], choice)
                if status != 200:
                    return self.log
            answered += 1
            current = data.get("current")
        self.log.finished = True
        return self.log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Scratch:
    """A fresh, migrated database and media folder, and the environment that points manage.py at them."""

    env: dict[str, str]
    database_url: str
    workdir: Path

    def manage(self, *args: str, check: bool = True) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=self.env,
                                capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def query(self, sql: str) -> list[tuple]:
        """Rows of a read-only SQL query on the scratch database."""
        if self.database_url.startswith("sqlite:///"):
            import sqlite3

            with sqlite3.connect(self.database_url.removeprefix("sqlite:///")) as db:
                return db.execute(sql).fetchall()
        import psycopg

        with psycopg.connect(self.database_url.replace("postgres://", "postgresql://")) as db:
            return db.execute(sql).fetchall()


@dataclass
class Deployment(Scratch):
    """A running gunicorn of this project on a scratch database, nginx in front if asked; see `deployment`."""

    base_url: str = ""  # where clients go: nginx when there is one, else gunicorn
    app_url: str = ""   # gunicorn itself
    process_groups: list[int] = field(default_factory=list)  # gunicorn's and nginx's (for their CPU time)


@contextmanager
def scratch(backend: str, *, postgres_url: str = "postgres://postgres@127.0.0.1:5432/postgres") -> Iterator[Scratch]:
    """A fresh database (``sqlite`` file or a new ``postgresql`` database), migrated, removed afterwards.

    PostgreSQL must answer at ``postgres_url`` with the right to create databases.
    """
    workdir = Path(tempfile.mkdtemp(prefix="vtt-scratch-"))
    name = f"vtt_scratch_{secrets.token_hex(4)}"
    admin = None
    try:
        if backend == "postgresql":
            import psycopg

            try:
                admin = psycopg.connect(postgres_url.replace("postgres://", "postgresql://"), autocommit=True)
            except psycopg.OperationalError as exc:
                raise RuntimeError(f"PostgreSQL does not answer at {postgres_url}: {exc}") from None
            admin.execute(f'CREATE DATABASE "{name}"')
            database_url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
        elif backend == "sqlite":
            database_url = f"sqlite:///{workdir / 'db.sqlite3'}"
        else:
            raise ValueError(f"backend must be 'sqlite' or 'postgresql', got {backend!r}")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VTT_", "DATABASE_URL"))}
        env.update(VTT_DEMO="1", VTT_VAR_DIR=str(workdir), VTT_MEDIA_ROOT=str(workdir / "media"),
                   DATABASE_URL=database_url, DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost", DJANGO_CONN_MAX_AGE="60")
        site = Scratch(env, database_url, workdir)
        site.manage("migrate", "--noinput", "--verbosity", "0")
        yield site
    finally:
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
        shutil.rmtree(workdir, ignore_errors=True)


def wait_until_up(url: str, process: subprocess.Popen, *, seconds: float = 30, what: str = "gunicorn") -> float:
    """Seconds until ``url`` answers 200; RuntimeError if ``process`` (``what``) exits first or time runs out."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer on {url} within {seconds} s")


def stop_group(process: subprocess.Popen, *, seconds: float) -> None:
    """Stop ``process`` and its whole process group (started with ``start_new_session``): TERM, then KILL."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def require_nginx() -> Path:
    """Debian's nginx binary; RuntimeError saying how to install it when it is missing."""
    if not os.access(NGINX, os.X_OK):
        raise RuntimeError(f"{NGINX} is missing: install Debian's nginx (apt-get install nginx; .ci/run does it)")
    return NGINX


def start_nginx(site: Deployment, prefix: Path) -> subprocess.Popen:
    """nginx on a free port of 127.0.0.1 in front of ``site.app_url``, from ``manage.py nginx_config --standalone``
    (its files in ``prefix``; ``user root`` when running as root: the scratch folder is root's alone)."""
    nginx = require_nginx()
    prefix.mkdir()
    port = free_port()
    user = ["--user", "root"] if os.geteuid() == 0 else []
    config = site.manage("nginx_config", "--standalone", "--prefix", str(prefix), "--listen", f"127.0.0.1:{port}",
                         "--upstream", site.app_url.removeprefix("http://"), *user)
    (prefix / "nginx.conf").write_text(config)
    site.base_url = f"http://127.0.0.1:{port}"
    return subprocess.Popen([str(nginx), "-p", str(prefix), "-c", str(prefix / "nginx.conf")], start_new_session=True)


@contextmanager
def deployment(backend: str, *, workers: int = 4, options: Iterable[str] = ("--preload", "--timeout", "60"),
               nginx: bool = False) -> Iterator[Deployment]:
    """A scratch database served by gunicorn on a free port of 127.0.0.1, with ``workers`` workers and the other
    gunicorn ``options``.

    ``nginx=True`` puts Debian's nginx in front, on another free port (``site.base_url``; gunicorn stays at
    ``site.app_url``), as in production: static files and pair images from nginx (the app answers with
    X-Accel-Redirect, ``VTT_IMAGE_ACCEL_REDIRECT`` set), the rest proxied to gunicorn.
    """
    if nginx:
        require_nginx()  # before a database is made for nothing
    with scratch(backend) as base:
        port = free_port()
        env = {**base.env, "VTT_IMAGE_ACCEL_REDIRECT": ACCEL_PREFIX} if nginx else base.env
        app_url = f"http://127.0.0.1:{port}"
        site = Deployment(env, base.database_url, base.workdir, base_url=app_url, app_url=app_url)
        site.manage("collectstatic", "--noinput", "--verbosity", "0")
        gunicorn = Path(sys.executable).with_name("gunicorn")
        process = subprocess.Popen(
            [str(gunicorn), "vtt.wsgi", *options, "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
             "--log-level", "warning", "--control-socket", str(base.workdir / "gunicorn.ctl")],
            cwd=BASE_DIR, env=site.env, start_new_session=True,
        )
        front = None
        try:
            wait_until_up(site.app_url + "/healthz", process)
            site.process_groups.append(process.pid)  # started in a session of its own: its group's id
            if nginx:
                front = start_nginx(site, base.workdir / "nginx")
                site.process_groups.append(front.pid)
                try:
                    wait_until_up(site.base_url + "/healthz", front, what="nginx")
                except RuntimeError as exc:
                    log = base.workdir / "nginx" / "error.log"
                    raise RuntimeError(f"{exc}; its error log:\n{log.read_text()[-3000:]}" if log.exists()
                                       else str(exc)) from None
            yield site
        finally:
            for running in (front, process):
                if running is not None and running.poll() is None:
                    stop_group(running, seconds=20)
