"""Peak memory of the process serving the trial exports, by number of trials.

    python benchmarks/exports.py [--trials 100000 1000000] [--formats csv json] [--whole] [--keep DIR]

For each number of trials N: a scratch SQLite database holding the simulated experiment
`bench` of `benchmarks/report.py --database` (made by its `_fill_database`, scaled so
that it has about N answered trials: 40 scored and 4 catch trials per rater), in a
temporary folder or in DIR/N (kept, and reused by a later run). Then, for each format,
a fresh process serves the staff export view (`vtt.views.export`, as a staff user, the
streamed response read chunk by chunk and counted, as a WSGI server would send it) and
prints its peak resident memory (``ru_maxrss``) before and after the export, the bytes
sent and the seconds taken. With --whole it also serves the export the way the view did
before it streamed (the CSV written whole into an `HttpResponse`, the JSON built whole by
`JsonResponse`), for comparison.

Each measurement is its own process: ``ru_maxrss`` is a high-water mark, which one
export would leave for the next.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Scored trials per rater and catch trials per rater in `benchmarks/report.py`'s simulated design.
TRIALS_PER_JUDGMENT = (40 + 4) / 40


def _setup(folder: Path) -> None:
    """Django on the SQLite database in ``folder`` (demo settings: no secret key needed)."""
    os.environ.pop("DATABASE_URL", None)
    os.environ.update({"VTT_DEMO": "1", "VTT_VAR_DIR": str(folder), "DJANGO_SETTINGS_MODULE": "vtt.settings"})
    os.chdir(ROOT)
    import django

    django.setup()


def build(folder: Path, trials: int) -> None:
    """The experiment `bench` with about ``trials`` answered trials in ``folder``'s database (kept if there)."""
    _setup(folder)
    from django.core.management import call_command

    from benchmarks.report import _fill_database
    from vtt.models import Experiment, Trial

    call_command("migrate", verbosity=0)
    if Experiment.objects.filter(slug="bench").exists():
        print(f"reusing {folder}: {Trial.objects.count():,} trials")
        return
    start = time.perf_counter()
    _fill_database(round(trials / TRIALS_PER_JUDGMENT))
    print(f"made the database in {time.perf_counter() - start:.0f} s")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def serve(folder: Path, fmt: str, whole: bool) -> None:
    """Serve one export of `bench` in this process and print what it took, as one JSON line."""
    _setup(folder)
    from django.contrib.auth.models import User
    from django.http import HttpResponse, JsonResponse
    from django.test import RequestFactory

    from vtt import exports, views
    from vtt.models import Experiment, Trial

    experiment = Experiment.objects.get(slug="bench")
    n_trials = Trial.objects.filter(rater__experiment=experiment).count()  # also opens the connection
    request = RequestFactory().get(f"/staff/e/bench/trials.{fmt}")
    request.user = User(username="staff", is_staff=True, is_active=True)
    before = _rss_mib()
    start = time.perf_counter()
    sent = 0
    if whole:  # the view before it streamed
        rows = exports.trial_rows(experiment=experiment)
        if fmt == "csv":
            response = HttpResponse(content_type="text/csv; charset=utf-8")
            exports.write_csv(rows, response)
        else:
            response = JsonResponse({"experiment": "bench", "trials": list(rows)}, json_dumps_params={"indent": 1})
        sent = len(response.content)
    else:
        response = views.export(request, slug="bench", fmt=fmt)
        for chunk in response.streaming_content:
            sent += len(chunk)
    response.close()
    print(json.dumps({"format": fmt, "whole": whole, "trials": n_trials, "bytes": sent,
                      "seconds": round(time.perf_counter() - start, 1), "rss_before_mib": round(before, 1),
                      "rss_peak_mib": round(_rss_mib(), 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="Numbers of trials, one database each. Default: 100000 1000000.")
    parser.add_argument("--formats", nargs="+", choices=["csv", "json"], default=["csv", "json"])
    parser.add_argument("--whole", action="store_true", help="Also serve each export built whole, as before.")
    parser.add_argument("--keep", metavar="DIR", help="Keep the databases in DIR/N (and reuse them).")
    parser.add_argument("--build", metavar="DIR", help=argparse.SUPPRESS)  # the subprocesses' entry points
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--format", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        return build(Path(args.build), args.trials[0])
    if args.serve:
        return serve(Path(args.serve), args.format, args.whole)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="vtt-bench-exports-"))
    for n in args.trials:
        folder = base / str(n)
        folder.mkdir(parents=True, exist_ok=True)
        run = lambda *extra: subprocess.run([sys.executable, __file__, *extra], cwd=ROOT, check=True)  # noqa: E731
        print(f"{n:,} trials:", flush=True)
        run("--build", str(folder), "--trials", str(n))
        for fmt in args.formats:
            for whole in [False, True] if args.whole else [False]:
                run("--serve", str(folder), "--format", fmt, *(["--whole"] if whole else []))
        if not args.keep:
            for child in folder.iterdir():
                child.unlink()
            folder.rmdir()
    if not args.keep:
        base.rmdir()


if __name__ == "__main__":
    main()
