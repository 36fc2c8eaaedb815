"""How long a new user waits for the demo: `make demo` in a fresh clone, then again.

    python3 benchmarks/demo.py [--clone DIR] [--keep]

Clones this repository's committed HEAD into ``--clone`` (a new temporary folder by
default; an existing one is refused), runs ``make demo`` there with its output going
to a log file, as a user's terminal or CI would keep it, and times:

* the fresh run: the install (``make .venv/.installed``, the first thing ``make demo``
  does), then ``make demo`` to the first answer of the rater landing page (database,
  pairs of every demo model, server start), and their sum;
* the first request of each page a rater meets (landing, start, first trial, the two
  images, an answer), the cold-worker cost the server must not have;
* the rerun: ``make demo`` again in the same clone (the server stopped first), to the
  landing page.

It also counts the lines of each run's log (progress is a line every 30 s in a log,
not a bar redrawn thousands of times), and lists what gunicorn left outside ``var/``.
Needs port 8000 free. Results go to BENCHMARKS.md by hand, with the machine and date.
"""
from __future__ import annotations

import argparse
import http.cookiejar
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vtt.loadtest import stop_group, wait_until_up  # noqa: E402  (standard library only: runs before any venv exists)

BASE = "http://127.0.0.1:8000"


def run_demo(clone: Path, log: Path, env: dict[str, str], limit: float) -> tuple[subprocess.Popen, float]:
    """Start ``make demo`` in ``clone``; return it and the seconds until the landing page answers."""
    with open(log, "w") as out:
        process = subprocess.Popen(["make", "demo"], cwd=clone, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        return process, wait_until_up(f"{BASE}/e/demo/", process, seconds=limit, what="make demo")


def first_requests() -> list[tuple[str, float]]:
    """A new rater's first requests, each timed: landing, start, trial page, both images, one answer."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    timings = []

    def timed(label: str, url: str, data: dict | None = None, headers: dict | None = None) -> str:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(url, data=body, headers=headers or {})
        start = time.perf_counter()
        with opener.open(request, timeout=60) as response:
            text = response.read()
        timings.append((label, time.perf_counter() - start))
        return text.decode("utf-8", "replace") if not url.endswith(".jpg") else ""

    landing = timed("landing page", f"{BASE}/e/demo/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', landing).group(1)
    page = timed("start, then the first trial page", f"{BASE}/e/demo/start/", {"csrfmiddlewaretoken": csrf})
    left, right = re.findall(r'<img src="(/img/[0-9a-f]{32}\.jpg)"', page)[:2]
    timed("left image", BASE + left)
    timed("right image", BASE + right)
    token = re.search(r'name="trial" value="([0-9a-f]{32})"', page).group(1)
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    timed("first answer (JSON)", f"{BASE}/e/demo/answer/", {"trial": token, "choice": "L", "response_ms": "900"},
          {"Accept": "application/json", "X-CSRFToken": csrf, "Referer": f"{BASE}/e/demo/trial/"})
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clone", type=Path, help="where to clone (must not exist; default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    parser.add_argument("--limit", type=float, default=1800, help="seconds to wait for each run (default: 1800)")
    args = parser.parse_args()
    clone = args.clone or Path(tempfile.mkdtemp(prefix="vtt-demo-bench-")) / "vtt"
    if clone.exists():
        raise SystemExit(f"{clone} exists: give a new folder")
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout
    home_gunicorn = Path.home() / ".gunicorn"
    existed = home_gunicorn.exists()
    print(f"fresh clone of {head.strip()} in {clone}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VTT_", "VIRTUAL_ENV"))}
    try:
        start = time.monotonic()
        with open(clone.parent / "demo-install.log", "w") as out:
            subprocess.run(["make", ".venv/.installed"], cwd=clone, stdout=out, stderr=subprocess.STDOUT, env=env,
                           check=True)
        install = time.monotonic() - start
        process, fresh = run_demo(clone, clone.parent / "demo-fresh.log", env, args.limit)
        print(f"fresh clone: install {install:.1f} s, then make demo -> landing page answers {fresh:.1f} s; "
              f"in all {install + fresh:.1f} s")
        for label, seconds in first_requests():
            print(f"  first request, {label}: {seconds * 1000:.0f} ms")
        serving = sorted(p.name for p in (clone / "var").glob("gunicorn*"))
        stop_group(process, seconds=30)
        process, again = run_demo(clone, clone.parent / "demo-rerun.log", env, args.limit)
        print(f"make demo again -> landing page answers: {again:.1f} s")
        stop_group(process, seconds=30)
        for name in ("demo-install.log", "demo-fresh.log", "demo-rerun.log"):
            lines = (clone.parent / name).read_text().count("\n")
            print(f"{name}: {lines} lines")
        print(f"gunicorn's files in var/ while serving: {serving}; "
              f"~/.gunicorn {'existed before' if existed else 'created' if home_gunicorn.exists() else 'not created'}")
    finally:
        if not args.keep:
            shutil.rmtree(clone.parent if args.clone is None else clone, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
