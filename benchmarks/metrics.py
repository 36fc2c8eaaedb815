"""Throughput of the automatic metrics: pairs per second for 10,000 pairs at 256 px, on the CPU.

    python benchmarks/metrics.py [--pairs 10000] [--size 256] [--threads 1 2] [--backend sqlite|postgresql]

A scratch database (`vtt.loadtest.scratch`) gets an experiment made directly
(`vtt.synthetic`): ``--pairs / 5`` images x 4 rated methods and a catch method, so
``--pairs`` colorizations, their JPEGs ``--size`` px square (500 distinct files per side,
named by the rows in turn: every pair is read from disk and decoded, as in a real run).
Then `vtt.pair_metrics.compute` stores every pair's metrics (PSNR, SSIM, CIEDE2000,
colourfulness, raw-accuracy AuC) once per ``--threads`` setting, from an empty table
each time; printed: seconds and pairs/s. Last, the run again with everything stored
(what a report pays when nothing is new).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vtt.loadtest import scratch  # noqa: E402

METHODS = 4  # rated methods, beside the catch method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000, help="Colorizations (pairs). Default: 10000.")
    parser.add_argument("--size", type=int, default=256, help="Side of the square images in px. Default: 256.")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1],
                        help="Thread counts to measure. Default: 1 and the CPUs.")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()

    with scratch(args.backend) as site:
        os.environ.update(site.env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "vtt.settings"
        import django

        django.setup()
        from vtt import pair_metrics
        from vtt.models import Colorization, PairMetrics
        from vtt.synthetic import synthetic_experiment

        started = time.perf_counter()
        experiment = synthetic_experiment("metrics", images=args.pairs // (METHODS + 1), methods=METHODS, k=1,
                                          files=500, size=args.size)
        n = Colorization.objects.filter(image__experiment=experiment).count()
        print(f"{n} pairs of {args.size} px built in {time.perf_counter() - started:.1f} s ({args.backend}); "
              f"{os.cpu_count()} CPUs")
        for threads in args.threads:
            PairMetrics.objects.all().delete()
            t = time.perf_counter()
            outcome = pair_metrics.compute(experiment, threads=threads)
            seconds = time.perf_counter() - t
            assert outcome.computed == n and not outcome.problems, outcome
            print(f"threads {threads}: {seconds:.1f} s, {n / seconds:.1f} pairs/s")
        t = time.perf_counter()
        outcome = pair_metrics.compute(experiment)
        print(f"again, all {outcome.cached} stored: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
