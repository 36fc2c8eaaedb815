"""Time of the two-way cluster bootstrap on a large synthetic set of judgments.

    python benchmarks/report.py [--judgments 1000000] [--images 2000] [--n-boot 2000]

Each image is judged by judgments/images raters drawn from a pool, answers drawn
with probability 0.3; prints the seconds `evaluation.score` takes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation import score  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgments", type=int, default=1_000_000, help="Number of judgments. Default: 1,000,000.")
    parser.add_argument("--images", type=int, default=2_000, help="Number of images. Default: 2,000.")
    parser.add_argument("--raters", type=int, default=5_000, help="Size of the rater pool. Default: 5,000.")
    parser.add_argument("--n-boot", type=int, default=2_000, help="Bootstrap resamples. Default: 2,000.")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, args.images, args.judgments)
    raters = rng.integers(0, args.raters, args.judgments)
    chose = rng.random(args.judgments) < 0.3
    start = time.perf_counter()
    result = score(chose, images, raters, n_boot=args.n_boot, seed=0)
    seconds = time.perf_counter() - start
    print(f"{args.judgments:,} judgments, {result.n_images:,} images, {result.n_raters:,} raters, "
          f"{args.n_boot:,} resamples: {seconds:.2f} s; VTT {result.score:.4f} [{result.ci_low:.4f}, {result.ci_high:.4f}]")


if __name__ == "__main__":
    main()
