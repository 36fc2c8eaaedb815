"""Input pipeline speed: images/s of the trainer's loader (JPEG decode, resize, crop, flip, collate) per core.

    python benchmarks/input_pipeline.py [--images 256] [--items 512] [--workers 0,1,2]
                                        [--batch-size 32] [--feed 1000,2500,5000] [--keep DIR]

Makes a synthetic ImageNet-like train folder in a temporary directory: ``--images`` JPEGs of
ImageNet's typical 500x375 (quality 90; smooth random colour with noise, about 90 KiB a
file, near ImageNet's mean of about 110 KB) spread over a few wnid folders of `imagenet_wnids`. Then,
for each crop of the trainable models' recipes (``default_train_config``: crop, resize,
resize_mode) and each worker count, iterates the trainer's DataLoader (`RandomCrops` and
`_loader`, as `train` builds them) over ``--items`` stream positions and prints images/s and
images/s per process doing the work (the main process when workers is 0). The decoded-image
cache that `RandomCrops` keeps for small sets is off, so that every item is decoded, as on
ImageNet. Worker start-up is in the time, as it is once per run in training.

The sRGB -> Lab conversion is not part of the workers' pipeline: `train_step` does it on the
training device. Its CPU cost per image is printed for comparison. Last, the cores needed to
feed a GPU at ``--feed`` images/s: that rate divided by the per-process rate at the largest
worker count measured (which includes the contention of all of them on the machine).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colorizers.color import rgb_to_lab  # noqa: E402
from colorizers.registry import get_colorizer  # noqa: E402
from colorizers.training import (  # noqa: E402
    DEFAULT_CROP, RandomCrops, _loader, _Positions, default_resize, imagenet_wnids, is_trainable, resolve_data,
    trainable_colorizers,
)

IMAGENET_SIZE = (500, 375)      # the most common size of ImageNet's train images (width, height)


def make_train_folder(root: Path, images: int, classes: int, seed: int) -> None:
    """``root/<wnid>/<i>.JPEG``: smooth random colour (an upsampled 8x6 grid) plus noise, JPEG quality 90."""
    rng = np.random.default_rng(seed)
    wnids = imagenet_wnids()[:classes]
    for wnid in wnids:
        (root / wnid).mkdir(parents=True, exist_ok=True)
    w, h = IMAGENET_SIZE
    for i in range(images):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.float32) + rng.normal(0, 18, (h, w, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / wnids[i % classes] / f"{i}.JPEG",
                                                                    quality=90)


def recipes() -> dict[tuple[int, int, str], list[str]]:
    """(crop, resize, resize_mode) -> the trainable models whose train config uses it."""
    found: dict[tuple[int, int, str], list[str]] = {}
    for name in trainable_colorizers():
        cls = get_colorizer(name)
        if not is_trainable(cls):
            continue
        config = cls.default_train_config()
        crop = int(config.get("crop", DEFAULT_CROP))
        mode = config.get("resize_mode", "shorter")
        found.setdefault((crop, int(config.get("resize", default_resize(crop, mode))), mode), []).append(name)
    return dict(sorted(found.items(), reverse=True))


def images_per_s(crops: RandomCrops, items: int, batch_size: int, workers: int) -> float:
    """Stream positions 0..items through the trainer's loader; images/s, worker start-up included."""
    loader = _loader(crops, _Positions(0, items), batch_size=batch_size, workers=workers,
                     device=torch.device("cpu"), seed=0)
    start = time.perf_counter()
    seen = sum(len(labels) for _, labels, _ in loader)
    return seen / (time.perf_counter() - start)


def lab_per_s(crop: int, batch_size: int) -> float:
    """Images/s of `rgb_to_lab` on one CPU thread at ``crop`` x ``crop`` (what a worker would add)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rgb = torch.rand(batch_size, 3, crop, crop)
        rgb_to_lab(rgb)
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < 0.5:
            rgb_to_lab(rgb)
            n += batch_size
        return n / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def default_workers() -> str:
    cores = os.cpu_count() or 1
    counts = [0, 1] + [2 ** i for i in range(1, 8) if 2 ** i < cores] + [cores]
    return ",".join(str(c) for c in sorted(set(counts)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="JPEGs in the synthetic train folder")
    parser.add_argument("--classes", type=int, default=8, help="wnid folders they are spread over")
    parser.add_argument("--items", type=int, default=512, help="stream positions timed per measurement")
    parser.add_argument("--batch-size", type=int, default=32, help="loader batch size")
    parser.add_argument("--workers", default=default_workers(),
                        help="comma-separated worker counts (default: 0, 1, 2, 4, ... up to the CPU count)")
    parser.add_argument("--feed", default="1000,2500,5000",
                        help="comma-separated training throughputs (images/s) to size the cores for")
    parser.add_argument("--keep", type=Path, default=None, help="make (or reuse) the folder here, not in a temp dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    feeds = [float(f) for f in args.feed.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "train"
        if not root.is_dir():
            make_train_folder(root, args.images, args.classes, args.seed)
        data = resolve_data(f"imagenet-train:{root}")
        mean_kb = np.mean([(root / n).stat().st_size for n in data.names]) / 1024
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.system()}; "
              f"torch {torch.__version__}, Pillow {Image.__version__}")
        print(f"data: {len(data.names)} JPEGs of {IMAGENET_SIZE[0]}x{IMAGENET_SIZE[1]}, mean {mean_kb:.0f} KiB; "
              f"{args.items} items per measurement, batch {args.batch_size}")
        for (crop, resize, mode), models in recipes().items():
            crops = RandomCrops(data, crop=crop, resize=resize, seed=args.seed, resize_mode=mode, cache=False)
            print(f"\ncrop {crop} of {resize} ({mode}): {', '.join(models)}")
            per_process = 0.0
            for workers in worker_counts:
                rate = images_per_s(crops, args.items, args.batch_size, workers)
                per_process = rate / max(1, workers)
                print(f"  workers {workers:3d}: {rate:8.1f} images/s, {per_process:7.1f} per process")
            print(f"  sRGB->Lab on one CPU thread: {lab_per_s(crop, args.batch_size):8.1f} images/s "
                  f"(done on the training device instead)")
            for feed in feeds:
                print(f"  to feed {feed:,.0f} img/s you need about {feed:,.0f} / {per_process:.1f} = "
                      f"{feed / per_process:.1f} cores")


if __name__ == "__main__":
    main()
