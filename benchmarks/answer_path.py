"""The answer path profiled: statements per answer, time per statement, and the plan of the place pick.

    python benchmarks/answer_path.py [--backend postgresql|sqlite] [--scale bench|ctest10k] [--raters 10]

A scratch database (`vtt.loadtest.scratch`) gets an open experiment whose rows are
made directly (`vtt.synthetic`, then settled: ``VACUUM ANALYZE``), with a catch method beside
the rated ones:

- ``bench``: 50 images, one rated method, K = 51 (the experiment the serving
  benchmark used before it had a ctest10k scale);
- ``ctest10k``: 10,000 images x 5 rated methods x K = 5 = 250,000 places.

Then ``--raters`` raters, one after the other, land, start and answer their whole
session (40 trials, 10% catch) through Django's test client in this process, no
HTTP server between: what is measured is the view, the middleware and the database.
Every other rater's answers are timed; the others' statements are captured
(`CaptureQueriesContext`, which slows each statement, so they are not timed). Printed:
the wall time per answer (p50, p99), statements per answer, and each kind of statement
(literals stripped) with its count per answer and mean time; then, on PostgreSQL,
``EXPLAIN ANALYZE`` of the statement that picks the next place, run on the last
answer's parameters inside a transaction that is rolled back.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vtt.loadtest import CTEST10K, scratch  # noqa: E402

_STATE = re.compile(r'<script id="vtt-state" type="application/json">(.*?)</script>', re.S)
_LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")


# images, rated methods, K: the serving benchmark's experiment before it had scales
BENCH = (50, 1, 51)


def normalized(sql: str) -> str:
    return re.sub(r"\s+", " ", _LITERALS.sub("?", sql))[:150]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--scale", choices=["bench", "ctest10k"], default="bench")
    parser.add_argument("--raters", type=int, default=10, help="Raters answering whole sessions. Default: 10.")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="Also print the N functions of most own time in the answer requests (cProfile).")
    args = parser.parse_args()

    with scratch(args.backend) as site:
        os.environ.update(site.env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "vtt.settings"
        site.manage("collectstatic", "--noinput", "--verbosity", "0")
        import django

        django.setup()
        from django.db import connection, transaction
        from django.test import Client
        from django.test.utils import CaptureQueriesContext

        started = time.perf_counter()
        from vtt.synthetic import settle, synthetic_experiment

        images, methods, k = CTEST10K if args.scale == "ctest10k" else BENCH
        slug = synthetic_experiment("bench", images=images, methods=methods, k=k).slug
        settle()
        print(f"{args.scale}: built and opened in {time.perf_counter() - started:.1f} s "
              f"({args.backend}, {connection.cursor().connection.__class__.__module__})")
        profiler = cProfile.Profile()
        seconds, counts, kinds = [], [], defaultdict(list)
        last_pick = None
        for r in range(args.raters):
            client = Client(HTTP_HOST="127.0.0.1")
            client.get(f"/e/{slug}/")
            page = client.post(f"/e/{slug}/start/", follow=True).content.decode()
            current = json.loads(_STATE.search(page).group(1))["current"]
            captured = r % 2 == 1  # capturing slows each statement: half the raters are timed, half captured
            while current is not None:
                with CaptureQueriesContext(connection) if captured else contextlib.nullcontext() as queries:
                    t = time.perf_counter()
                    if args.profile and not captured:
                        profiler.enable()
                    response = client.post(f"/e/{slug}/answer/", {"trial": current["token"], "choice": "L",
                                                                   "response_ms": "900"},
                                           HTTP_ACCEPT="application/json")
                    if args.profile and not captured:
                        profiler.disable()
                    if not captured:
                        seconds.append(time.perf_counter() - t)
                assert response.status_code == 200, response.content
                current = response.json()["current"]
                if captured:
                    counts.append(len(queries))
                    for q in queries.captured_queries:
                        kinds[normalized(q["sql"])].append(float(q["time"]))
                        if "vtt_slot" in q["sql"] and "ORDER BY" in q["sql"]:
                            last_pick = q["sql"]
        ms = np.asarray(seconds) * 1000
        print(f"{len(seconds)} answers timed, of {(args.raters + 1) // 2} raters: p50 {np.percentile(ms, 50):.2f} ms, "
              f"p99 {np.percentile(ms, 99):.2f} ms per answer (in process{', profiled' if args.profile else ''})")
        print(f"statements per answer (the {args.raters // 2} other raters): mean {statistics.mean(counts):.2f}, "
              f"max {max(counts)}")
        print("per answer | mean ms (captured, which adds to each) | statement")
        for sql, times in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
            print(f"{len(times) / len(counts):10.2f} | {statistics.mean(times) * 1000:7.3f} | {sql}")
        if args.profile:
            print(f"\nThe answer requests' {args.profile} functions of most own time (cProfile, which slows them):")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(args.profile)
        if last_pick and connection.vendor == "postgresql":
            print("\nEXPLAIN ANALYZE of the place pick (last answer's parameters, rolled back):")
            with transaction.atomic():
                with connection.cursor() as cursor:
                    # The pick alone: the SELECT of a statement that also inserts and leases.
                    pick = re.search(r"WITH pick AS \((.*?)\), new AS", last_pick, re.S)
                    cursor.execute("EXPLAIN ANALYZE " + (pick.group(1) if pick else last_pick))
                    for (line,) in cursor.fetchall():
                        print("   ", line)
                transaction.set_rollback(True)


if __name__ == "__main__":
    main()
