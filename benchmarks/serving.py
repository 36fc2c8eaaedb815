"""Answers per second and answer latency under 50 concurrent raters, beside a trivial view.

    python benchmarks/serving.py [--backend postgresql|sqlite] [--raters 50] [--workers 4]

Starts a throwaway deployment (a new database, gunicorn on 127.0.0.1), builds an
experiment of synthetic photos large enough that no rater runs out of pairs, then
lets one rater answer a whole session alone (the latency without queueing), then
``--raters`` simulated raters answer their whole sessions at once, and reports
answers/s and the p50/p99 latency of the answer endpoint. The ceiling is the same
number of clients requesting the trivial ``/healthz`` view on the same stack.
Results go to BENCHMARKS.md by hand, with the machine and the date.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vtt.loadtest import SimulatedRater, deployment  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def photos(folder: Path, n: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((96, 96), Image.Resampling.BICUBIC).save(folder / f"{i:04d}.png")


def tint(folder: Path, out: Path) -> None:
    """The rated method: each photo with a warm cast, imported like results made elsewhere."""
    out.mkdir()
    for path in sorted(folder.iterdir()):
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
        Image.fromarray(np.clip(rgb + np.array([40, 0, -40]), 0, 255).astype(np.uint8)).save(out / path.name)


def trivial(base_url: str, clients: int, requests: int) -> tuple[float, list[float]]:
    def one(_):
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            with urllib.request.urlopen(base_url + "/healthz", timeout=30) as r:
                r.read()
            times.append(time.perf_counter() - start)
        return times

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [t for times in pool.map(one, range(clients)) for t in times]
    return len(latencies) / (time.perf_counter() - start), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql", help="Database. Default: postgresql.")
    parser.add_argument("--raters", type=int, default=50, help="Concurrent simulated raters. Default: 50.")
    parser.add_argument("--trials", type=int, default=40, help="Scored trials per rater. Default: 40.")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers. Default: 4.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, deployment(args.backend, workers=args.workers) as site:
        folder, tinted = Path(tmp) / "photos", Path(tmp) / "tinted"
        n_images = args.trials + 10  # a rater sees each image at most once
        photos(folder, n_images)
        tint(folder, tinted)
        site.manage("generate_pairs", "--experiment", "bench", "--split", f"folder:{folder}", "--methods",
                    "grayscale", "--size", "64", "--verbosity", "0")
        site.manage("generate_pairs", "--experiment", "bench", "--split", f"folder:{folder}", "--import-dir",
                    str(tinted), "--method-name", "tinted", "--verbosity", "0")
        site.manage("experiment", "configure", "bench", "--raters-per-pair", str(args.raters + 1),
                    "--trials-per-rater", str(args.trials), "--practice-trials", "0", "--catch-trial-rate", "0.1")
        site.manage("experiment", "open", "bench")

        ceiling, ceiling_latency = trivial(site.base_url, args.raters, args.trials)
        alone = SimulatedRater(site.base_url, "bench", seed=10_000).run().answer_seconds  # no other client

        start = time.perf_counter()
        with ThreadPoolExecutor(args.raters) as pool:
            logs = list(pool.map(lambda i: SimulatedRater(site.base_url, "bench", seed=i).run(), range(args.raters)))
        seconds = time.perf_counter() - start
        latencies = [t for log in logs for t in log.answer_seconds]
        errors = [e for log in logs for e in log.errors]

    print(f"backend {args.backend}, gunicorn {args.workers} sync workers, {args.raters} concurrent clients")
    print(f"trivial view /healthz: {ceiling:7.1f} requests/s, p50 {percentile(ceiling_latency, 50):6.1f} ms, "
          f"p99 {percentile(ceiling_latency, 99):6.1f} ms")
    print(f"answer endpoint:       {len(latencies) / seconds:7.1f} answers/s,  p50 {percentile(latencies, 50):6.1f} ms, "
          f"p99 {percentile(latencies, 99):6.1f} ms  ({len(latencies)} answers, {len(errors)} errors, "
          f"whole sessions incl. landing and start: {seconds:.1f} s)")
    print(f"one rater alone:       p50 {percentile(alone, 50):6.1f} ms, p99 {percentile(alone, 99):6.1f} ms per answer")
    print(f"answers/s as a fraction of the ceiling: {len(latencies) / seconds / ceiling:.0%}; "
          f"mean answer latency {statistics.mean(latencies) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
