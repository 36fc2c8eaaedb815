"""Where the time of generate_pairs goes, per stage and per model, and the projected ctest10k time.

    python benchmarks/generation.py [--images 16] [--size 256] [--device auto] [--precision auto]
                                    [--models a,b] [--batch-size N] [--workers N] [--threads N]

Needs nothing but the project: it writes ``--images`` synthetic ImageNet-sized JPEGs
(500x375) to a temporary folder and builds every registered model at its paper's
configuration with random weights (throughput does not depend on the weights;
``mean_chroma`` is fitted on the demo's training photos). The stages are the ones
`vtt.generation.generate` runs: decode + resize in DataLoader workers, each colorizer
on the device, Lab -> sRGB on the device, JPEG encode + write in threads. Database
writes are not included (a few ms per batch). Prints a table of images/s per stage and
the time ctest10k (10,000 images, one sample per model) would take at these rates.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colorizers import get_colorizer, list_colorizers  # noqa: E402
from colorizers.controls import MeanChroma  # noqa: E402
from colorizers.training import demo_train_files, load_image  # noqa: E402
from vtt import rendering  # noqa: E402
from vtt.sources import SourceRef  # noqa: E402

CTEST10K = 10_000


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def synthetic_jpegs(folder: Path, n: int) -> list[SourceRef]:
    """Smooth random colour photographs at ImageNet's typical 500x375, JPEG quality 90."""
    rng = np.random.default_rng(0)
    refs = []
    for i in range(n):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC)
        path = folder / f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        image.save(path, quality=90)
        refs.append(SourceRef("bench", path.name, path))
    return refs


def build(name: str, size: int) -> torch.nn.Module:
    cls = get_colorizer(name)
    if name == "mean_chroma":
        root, names = demo_train_files()
        return MeanChroma.fit(load_image(root / f, size) for f in names)
    torch.manual_seed(0)
    return cls()  # the paper's configuration; random weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="Synthetic source images. Default: 16.")
    parser.add_argument("--size", type=int, default=256, help="Side of the rendered square images. Default: 256.")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="Default: auto.")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="bf16 autocast or fp32. Default: auto (bf16 on CUDA).")
    parser.add_argument("--models", help="Comma-separated colorizers. Default: every registered one.")
    parser.add_argument("--batch-size", type=int, help="Images per colorizer call. Default: 64 on CUDA, 8 on CPU.")
    parser.add_argument("--workers", type=int, default=4, help="Decoding processes. Default: 4.")
    parser.add_argument("--threads", type=int, default=4, help="Encoding threads. Default: 4.")
    parser.add_argument("--precision-check", action="store_true",
                        help="Instead of timing, colorize under fp32 and under bf16 autocast with the same seeds and "
                             "print how far apart the a*b* are, per model.")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    precision = args.precision if args.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    batch = args.batch_size or (64 if device.type == "cuda" else 8)
    names = args.models.split(",") if args.models else list_colorizers()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"{args.images} images of 500x375 -> {args.size} px, batch {batch}, {precision}, on {device} ({gpu}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.workers} workers, {args.threads} threads")

    if args.precision_check:
        return precision_check(args, device, names, batch)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        refs = synthetic_jpegs(Path(tmp), args.images)
        start = time.perf_counter()
        loader = DataLoader(rendering.SourceDataset(refs, args.size), batch_size=batch, num_workers=args.workers,
                            collate_fn=rendering.collate_list, pin_memory=device.type == "cuda")
        labs = [item["lab"] for chunk in loader for item in chunk]
        rows.append(("decode + resize + Lab (workers)", args.images / (time.perf_counter() - start)))
        lab = torch.stack(labs).to(device)

        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
        per_model = {}
        for name in names:
            model = build(name, args.size).to(device).eval()
            reference = lab[:, 1:] if model.needs_reference else None
            outputs = []

            def run(count: int) -> float:
                sync(device)
                t = time.perf_counter()
                for i in range(0, count, batch):
                    gens = [torch.Generator(device=device).manual_seed(j) for j in range(i, min(i + batch, count))]
                    ref = reference[i:i + batch] if reference is not None else None
                    with autocast:
                        outputs.append(model.colorize(lab[i:i + batch, :1], generator=gens, reference_ab=ref))
                sync(device)
                return time.perf_counter() - t

            run(min(batch, args.images))  # warm-up (CUDA graphs, kernels)
            outputs.clear()
            seconds = run(args.images)
            per_model[name] = args.images / seconds
            rows.append((f"colorize {name}", per_model[name]))
        ab = torch.cat(outputs)

        sync(device)
        start = time.perf_counter()
        pixels = rendering.to_srgb8(lab[:, :1], ab.float())
        rows.append(("Lab -> sRGB uint8 (device)", args.images / (time.perf_counter() - start)))
        writer = rendering.JpegWriter(args.threads, Path(tmp) / "out")
        start = time.perf_counter()
        writer.write(pixels)
        rows.append(("JPEG encode + write (threads)", args.images / (time.perf_counter() - start)))
        writer.close()

    print("\n| stage | images/s | seconds for ctest10k |\n|---|---:|---:|")
    for stage, rate in rows:
        print(f"| {stage} | {rate:,.1f} | {CTEST10K / rate:,.1f} |")
    encode = rows[-1][1]
    total = CTEST10K / rows[0][1] + sum(CTEST10K / r for r in per_model.values())
    total += (len(per_model) + 1) * CTEST10K / encode  # one real image + one per model
    print(f"\nctest10k through {len(per_model)} models, one sample each, stages in sequence: {total:,.0f} s "
          f"(target on one H100/H200: 60 s)")


def precision_check(args, device: torch.device, names: list[str], batch: int) -> None:
    """|a*b*(fp32) - a*b*(bf16 autocast)| per model, same images and seeds, in CIE a*b* units."""
    with tempfile.TemporaryDirectory() as tmp:
        refs = synthetic_jpegs(Path(tmp), args.images)
        lab = torch.stack([rendering.load_lab(r.path, args.size) for r in refs]).to(device)
    print("\n| model | mean abs diff | 99th percentile | max | pixels off by > 2 |\n|---|---:|---:|---:|---:|")
    for name in names:
        model = build(name, args.size).to(device).eval()
        reference = lab[:, 1:] if model.needs_reference else None
        out = {}
        for precision in ("fp32", "bf16"):
            gens = [torch.Generator(device=device).manual_seed(j) for j in range(len(lab))]
            context = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
            with context:
                out[precision] = model.colorize(lab[:, :1], generator=gens, reference_ab=reference).float()
        diff = (out["fp32"] - out["bf16"]).abs().flatten()
        print(f"| {name} | {diff.mean():.3f} | {diff.quantile(0.99):.3f} | {diff.max():.2f} | {(diff > 2).float().mean():.2%} |")


if __name__ == "__main__":
    main()
