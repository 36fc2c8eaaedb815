"""Time of the VTT report: the cluster bootstrap alone, or `vtt_report --judgments-csv` end to end.

    python benchmarks/report.py [--judgments 1000000] [--images 2000] [--n-boot 2000]
    python benchmarks/report.py --csv [--judgments 1000000] [--n-boot 2000] [--keep DIR]
    python benchmarks/report.py --calibration [--sims 500]

Without --csv: each image is judged by judgments/images raters drawn from a pool,
answers drawn with probability 0.3; prints the seconds `evaluation.score` takes, and
with --methods M also those of `evaluation.compare_all` on the same judgments split at
random among M methods (every pair compared).

With --csv: writes a CSV in the platform's export format to a temporary folder and
times `python manage.py vtt_report --judgments-csv FILE --format json` in a
subprocess, from start to exit. The simulated experiment follows PixColor's design:
4 methods (3 tested and the ground_truth control), each image judged by 5 distinct
raters per method, raters who never see an image twice and answer 40 scored trials,
plus 4 catch trials against `grayscale` and 5 practice trials each. Answers come from a
logistic model with image, image-by-method and rater effects (standard deviation 0.5
each on the logit scale); 3% of raters answer at random.

With --calibration: coverage of the 95% interval of `evaluation.compare` and the
rejection rate of its p-value at 5%, corrected ('bootstrap') and not ('pigeonhole'),
over simulated experiments of two methods (5 raters per image and method; random
image, image-by-method and rater effects on the logit scale), for raters who see both
methods ('mixed') or one ('single'), with no difference (null) and with a difference
of 0.5 on the logit scale.
"""
from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluation import compare_all, score  # noqa: E402

COLUMNS = ["experiment", "rater", "external_id", "flagged", "position", "trial_kind", "image", "class_index",
           "method", "real_side", "choice", "chose_generated", "counted", "shown", "answered", "response_ms"]
METHODS = {"method_a": 0.30, "method_b": 0.35, "method_c": 0.40, "ground_truth": 0.50}
K, SCORED_PER_RATER, CATCH_PER_RATER, PRACTICE_PER_RATER = 5, 40, 4, 5


def write_csv(path: Path, judgments: int, seed: int = 0) -> dict:
    """Simulate an experiment with `judgments` scored judgments and write it as the platform's CSV export."""
    from scipy.special import expit, logit

    rng = np.random.default_rng(seed)
    names = list(METHODS)
    n_methods = len(names)
    n_images = judgments // (n_methods * K)
    n_scored = n_images * n_methods * K
    n_raters = n_scored // SCORED_PER_RATER
    # Slots (image, method, k) in image order; slot s goes to rater s mod n_raters, so a rater's slots are
    # n_raters apart and, with n_raters > n_methods * K, never on the same image.
    img = np.repeat(np.arange(n_images), n_methods * K)
    meth = np.tile(np.repeat(np.arange(n_methods), K), n_images)
    slot_rater = rng.permutation(n_raters)[np.arange(n_scored) % n_raters]
    effects = (rng.normal(0, 0.5, n_images)[img] + rng.normal(0, 0.5, (n_images, n_methods))[img, meth]
               + rng.normal(0, 0.5, n_raters)[slot_rater])
    p = expit(logit(np.array(list(METHODS.values())))[meth] + effects)
    random_rater = rng.random(n_raters) < 0.03
    p = np.where(random_rater[slot_rater], 0.5, p)
    chose = rng.random(n_scored) < p

    # Catch and practice trials: images drawn at random, never scored.
    n_extra = CATCH_PER_RATER + PRACTICE_PER_RATER
    extra_rater = np.repeat(np.arange(n_raters), n_extra)
    extra_kind = np.tile(np.array(["catch"] * CATCH_PER_RATER + ["practice"] * PRACTICE_PER_RATER), n_raters)
    extra_img = rng.integers(0, n_images, extra_rater.size)
    catch_fail = np.where(random_rater[extra_rater], 0.5, 0.1)
    extra_chose = rng.random(extra_rater.size) < catch_fail

    tokens = np.array([rng.bytes(16).hex() for _ in range(n_raters)])
    image_names = np.array([f"n{1440764 + i % 1000:08d}/ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(n_images)])
    real_side = rng.choice(np.array(["L", "R"]), n_scored + extra_rater.size)
    rows_rater = np.concatenate([slot_rater, extra_rater])
    order = np.argsort(rows_rater, kind="stable")
    kind = np.concatenate([np.full(n_scored, "scored"), extra_kind])[order]
    image = np.concatenate([img, extra_img])[order]
    method = np.concatenate([np.array(names)[meth], np.full(extra_rater.size, "grayscale")])[order]
    chosen = np.concatenate([chose, extra_chose])[order].astype(int)
    side = real_side[order]
    choice = np.where(chosen == 1, np.where(side == "L", "R", "L"), side)
    rater = rows_rater[order]
    position = np.arange(rater.size) - np.searchsorted(rater, rater) + 1
    response = rng.integers(400, 5000, rater.size)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(zip(
            ["bench"] * rater.size, tokens[rater], [""] * rater.size, [0] * rater.size, position, kind,
            image_names[image], image % 1000, method, side, choice, chosen, (kind == "scored").astype(int),
            ["2026-11-26T10:00:00+00:00"] * rater.size, ["2026-11-26T10:00:02+00:00"] * rater.size, response,
        ))
    return {"rows": int(rater.size), "scored": n_scored, "images": n_images, "raters": n_raters}


def time_command(judgments: int, n_boot: int, keep: str | None) -> None:
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="vtt-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "judgments.csv"
    start = time.perf_counter()
    info = write_csv(path, judgments)
    print(f"wrote {info['rows']:,} rows ({info['scored']:,} scored judgments, {info['images']:,} images, "
          f"{info['raters']:,} raters, {path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - start:.1f} s")
    env = dict(os.environ)
    if not env.get("DJANGO_SECRET_KEY"):
        env["VTT_DEMO"] = "1"  # the command reads a file: the demo settings are enough
    command = [sys.executable, "manage.py", "vtt_report", "--judgments-csv", str(path), "--format", "json",
               "--n-boot", str(n_boot), "--html", str(folder / "report.html")]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"vtt_report failed:\n{done.stderr}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"vtt_report --judgments-csv ({n_boot:,} resamples, cluster bootstrap intervals, comparisons, HTML): "
          f"{seconds:.1f} s wall, {usage.ru_utime + usage.ru_stime:.1f} s CPU, "
          f"peak memory {usage.ru_maxrss / 2**20:.1f} GiB")
    if not keep:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def _design(rng, n_images: int, trials_per_rater: int, mixed: bool):
    """Image, method and rater of each judgment: 2 methods, K raters per (image, method), no rater sees an
    image twice; slot s goes to rater s mod n (n coprime with the slots per image, so mixed raters see both
    methods), or, for single-method raters, the same within each method's own pool."""
    import math

    per_image = 2 * K if mixed else K
    n_slots = n_images * per_image
    n = n_slots // trials_per_rater
    while math.gcd(n, per_image) != 1:
        n -= 1
    slots = np.arange(n_slots) % n
    if mixed:
        img = np.repeat(np.arange(n_images), 2 * K)
        meth = np.tile(np.repeat([0, 1], K), n_images)
        return img, meth, rng.permutation(n)[slots], n
    img = np.tile(np.repeat(np.arange(n_images), K), 2)
    meth = np.repeat([0, 1], n_slots)
    rat = np.concatenate([rng.permutation(n)[slots], n + rng.permutation(n)[slots]])
    return img, meth, rat, 2 * n


def calibration(sims: int) -> None:
    import warnings

    from scipy.special import expit, logit

    from evaluation import compare

    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    print(f"{sims} simulated experiments per row; 95% intervals, 1,000 resamples each; coverage of the true "
          "difference and rejections at 5% (corrected bootstrap / uncorrected pigeonhole)")
    print(f"{'raters':<7} {'images':>6} {'trials/rater':>12} {'sd image, image x method, rater':>32} "
          f"{'difference':>10} {'coverage':>15} {'rejections':>15}")
    for mixed in (True, False):
        for n_images, per_rater in ((100, 20), (500, 40)):
            for sds in ((0.0, 0.0, 0.0), (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), (0.5, 1.0, 1.5)):
                for delta in (0.0, 0.5):
                    rng = np.random.default_rng(0)
                    mu = np.array([logit(0.3) + delta, logit(0.3)])
                    total = np.sqrt(sum(s * s for s in sds))
                    truth = weights @ expit(mu[0] + total * nodes) - weights @ expit(mu[1] + total * nodes)
                    covered = np.zeros(2)
                    rejected = np.zeros(2)
                    for sim in range(sims):
                        img, meth, rat, n_raters = _design(rng, n_images, per_rater, mixed)
                        eta = (mu[meth] + rng.normal(0, sds[0], n_images)[img]
                               + rng.normal(0, sds[1], (n_images, 2))[img, meth] + rng.normal(0, sds[2], n_raters)[rat])
                        y = rng.random(img.size) < expit(eta)
                        for i, method in enumerate(("bootstrap", "pigeonhole")):
                            with warnings.catch_warnings():
                                warnings.simplefilter("ignore", RuntimeWarning)
                                res = compare(y, img, rat, meth, method=method, n_boot=1000, seed=sim)
                            covered[i] += res.ci_low <= truth <= res.ci_high
                            rejected[i] += res.pvalue < 0.05
                    cov, rej = covered / sims, rejected / sims
                    print(f"{'mixed' if mixed else 'single':<7} {n_images:>6} {per_rater:>12} {str(sds):>32} "
                          f"{truth:>10.3f} {cov[0]:>7.3f}/{cov[1]:.3f} {rej[0]:>7.3f}/{rej[1]:.3f}", flush=True)


def time_score(args) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, args.images, args.judgments)
    raters = rng.integers(0, args.raters, args.judgments)
    chose = rng.random(args.judgments) < 0.3
    start = time.perf_counter()
    result = score(chose, images, raters, n_boot=args.n_boot, seed=0)
    seconds = time.perf_counter() - start
    print(f"{args.judgments:,} judgments, {result.n_images:,} images, {result.n_raters:,} raters, "
          f"{args.n_boot:,} resamples: {seconds:.2f} s; VTT {result.score:.4f} [{result.ci_low:.4f}, {result.ci_high:.4f}]")
    if args.methods:
        methods = rng.integers(0, args.methods, args.judgments)
        start = time.perf_counter()
        results = compare_all(chose, images, raters, methods, n_boot=args.n_boot, seed=0)
        seconds = time.perf_counter() - start
        print(f"compare_all, {args.methods} methods ({len(results)} pairs), same judgments and resamples: {seconds:.2f} s")
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", action="store_true", help="Time vtt_report --judgments-csv end to end on a generated CSV.")
    parser.add_argument("--judgments", type=int, default=1_000_000, help="Number of scored judgments. Default: 1,000,000.")
    parser.add_argument("--images", type=int, default=2_000, help="Number of images (without --csv). Default: 2,000.")
    parser.add_argument("--raters", type=int, default=5_000, help="Size of the rater pool (without --csv). Default: 5,000.")
    parser.add_argument("--n-boot", type=int, default=2_000, help="Bootstrap resamples. Default: 2,000.")
    parser.add_argument("--methods", type=int, default=0, help="Without --csv: also time compare_all with this many methods.")
    parser.add_argument("--keep", metavar="DIR", help="With --csv: write the CSV and the HTML report here and keep them.")
    parser.add_argument("--calibration", action="store_true", help="Coverage and type I error of evaluation.compare.")
    parser.add_argument("--sims", type=int, default=500, help="With --calibration: experiments per row. Default: 500.")
    args = parser.parse_args()
    if args.calibration:
        calibration(args.sims)
    elif args.csv:
        time_command(args.judgments, args.n_boot, args.keep)
    else:
        time_score(args)


if __name__ == "__main__":
    main()
