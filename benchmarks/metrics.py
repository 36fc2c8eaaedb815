"""Throughput of the automatic metrics: pairs per second for 10,000 pairs at 256 px, on the CPU.

    python benchmarks/metrics.py [--pairs 10000] [--size 256] [--threads 1 2] [--backend sqlite|postgresql]

A scratch database (`vtt.loadtest.scratch`) gets an experiment made directly
(`vtt.synthetic`): ``--pairs / 5`` images x 4 rated methods and a catch method, so
``--pairs`` colorizations, their JPEGs ``--size`` px square (500 distinct files per side,
named by the rows in turn: every pair is read from disk and decoded, as in a real run).
Then `vtt.pair_metrics.compute` stores every pair's metrics (PSNR, SSIM, CIEDE2000,
colourfulness, raw-accuracy AuC) once per ``--threads`` setting, from an empty table
each time; printed: seconds and pairs/s. Then the run again with everything stored
(what a report pays when nothing is new). With ``--learned N``, last, LPIPS (AlexNet) and
the FID Inception features of a second such experiment of N pairs (and its real images), on
the CPU (``--device``), with weights files of the released layouts holding PyTorch's default
initialisation: the time does not depend on the values.
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
    parser.add_argument("--learned", type=int, default=0, metavar="N",
                        help="Also time LPIPS and the FID Inception features on N pairs. Default: 0 (not).")
    parser.add_argument("--device", default="cpu", help="Device of the learned metrics. Default: cpu.")
    parser.add_argument("--breakdown", action="store_true",
                        help="Also time each metric on one pair of --size px, in this process, one thread.")
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
        if args.breakdown:
            breakdown(args.size)
        if args.learned:
            learned(args.learned, args.size, site.workdir, args.device)


def breakdown(size: int, repeat: int = 20) -> None:
    """Milliseconds per call of each metric (and of the CIELAB conversion they share) on one random pair."""
    import numpy as np
    from skimage.color import deltaE_ciede2000, rgb2lab

    from evaluation import metrics

    rng = np.random.default_rng(0)
    real, fake = (rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2))
    lab_real, lab_fake = rgb2lab(real), rgb2lab(fake)
    parts = {"all_metrics (what a pair costs)": lambda: metrics.all_metrics(real, fake),
             "rgb2lab (one image; all_metrics converts two)": lambda: rgb2lab(real),
             "deltaE_ciede2000 (on CIELAB)": lambda: deltaE_ciede2000(lab_real, lab_fake),
             "ssim": lambda: metrics.ssim(real, fake), "psnr": lambda: metrics.psnr(real, fake),
             "colorfulness (one image)": lambda: metrics.colorfulness(real),
             "raw-accuracy AuC from CIELAB": lambda: metrics.auc_of(metrics.accuracy_curve(
                 np.linalg.norm(lab_real[..., 1:] - lab_fake[..., 1:], axis=-1)))}
    for name, call in parts.items():
        call()
        t = time.perf_counter()
        for _ in range(repeat):
            call()
        print(f"{name}: {(time.perf_counter() - t) / repeat * 1000:.1f} ms")


def learned(n: int, size: int, folder: Path, device: str) -> None:
    """LPIPS and the Inception features of a second experiment of ``n`` pairs (its basic metrics stored first)."""
    import torch

    from learned_metrics.inception import FIDInceptionV3
    from learned_metrics.lpips import LPIPS
    from vtt import pair_metrics
    from vtt.models import RealImageFeatures
    from vtt.synthetic import synthetic_experiment

    lpips = LPIPS("alex").state_dict()
    files = {"lin": folder / "alex.pth", "backbone": folder / "alexnet.pth", "inception": folder / "inception.pth"}
    torch.save({k: v for k, v in lpips.items() if k.startswith("lin")}, files["lin"])
    torch.save({k: v for k, v in lpips.items() if not k.startswith("lin")}, files["backbone"])
    torch.save(FIDInceptionV3().state_dict(), files["inception"])
    experiment = synthetic_experiment("learned", images=n // (METHODS + 1), methods=METHODS, k=1, files=100,
                                      size=size)
    pair_metrics.compute(experiment)
    for name, weights in (("LPIPS", pair_metrics.LearnedWeights(lpips=files["lin"], lpips_backbone=files["backbone"])),
                          ("Inception", pair_metrics.LearnedWeights(inception=files["inception"]))):
        t = time.perf_counter()
        outcome = pair_metrics.compute(experiment, weights=weights, device=device)
        seconds = time.perf_counter() - t
        done = outcome.lpips if name == "LPIPS" else outcome.inception
        extra = (f" and the features of {RealImageFeatures.objects.filter(image__experiment=experiment).count()} "
                 "real images" if name == "Inception" else "")
        print(f"{name} on {device}: {done} pairs{extra} in {seconds:.1f} s, {done / seconds:.2f} pairs/s "
              f"(torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
