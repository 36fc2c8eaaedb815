"""Throughput of the pair pipeline per stage: decode + preprocess, colorize, encode.

Runs on the bundled demo photos without Django or a database:

    python benchmarks/generation.py [--size 256] [--repeat 3] [--device auto]

Prints one line per stage with images/s (best of ``--repeat``). The trained
controls need a checkpoint; ``mean_chroma`` is fitted here on the demo's training
photos first, as ``make demo`` does.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colorizers import get_colorizer, list_colorizers  # noqa: E402
from colorizers.controls import MeanChroma  # noqa: E402
from colorizers.train import demo_train_files, load_image  # noqa: E402
from vtt import rendering, sources  # noqa: E402


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="Side of the rendered square images. Default: 256.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per stage; the best is reported. Default: 3.")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="Where colorizers run. Default: auto.")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))

    refs = sources.demo_sources("test")
    n = len(refs)
    print(f"{n} demo photos at {args.size} px on {device}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    labs: list[torch.Tensor] = []
    seconds = best_of(args.repeat, lambda: labs.__setitem__(slice(None), [rendering.load_lab(r.path, args.size) for r in refs]))
    print(f"{'decode + preprocess':<24} {n / seconds:8.1f} images/s")

    root, names = demo_train_files()
    models = {}
    for name in list_colorizers():
        cls = get_colorizer(name)
        if name == "mean_chroma":
            models[name] = MeanChroma.fit(load_image(root / f, args.size) for f in names)
        elif not cls.needs_checkpoint:
            models[name] = cls()
    batch = torch.stack(labs).to(device)
    for name, model in models.items():
        model = model.to(device)
        reference = batch[:, 1:] if model.needs_reference else None
        seconds = best_of(args.repeat, lambda: model.colorize(batch[:, :1], reference_ab=reference))
        print(f"{'colorize ' + name:<24} {n / seconds:8.1f} images/s")
    seconds = best_of(args.repeat, lambda: [rendering.encode(lab[:1], lab[1:]) for lab in labs])
    print(f"{'encode (JPEG)':<24} {n / seconds:8.1f} images/s")


if __name__ == "__main__":
    main()
