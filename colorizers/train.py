"""Train a colorizer and write its checkpoint.

    python -m colorizers.train --model mean_chroma --data demo --out ckpt/mean_chroma.pt
    python -m colorizers.train --model mean_chroma --data folder:photos/ --out mc.pt --size 256

Only models with a ``fit`` classmethod (statistics over the training images,
currently ``mean_chroma``) can be trained here; the others are not trainable yet.

Data sources
------------
``demo``        the photos of ``data/demo/photos.csv`` whose ``split`` is ``train``.
``folder:DIR``  every .jpg/.jpeg/.png under DIR, recursively, in sorted order.

Each image is opened with Pillow, rotated by its EXIF orientation, converted to
RGB and resized (bicubic) so that its shorter side is ``--size`` pixels; nothing
is cropped, since the images only feed statistics. A file Pillow cannot read
stops the run with its name: silently skipping it would change the data set.

The checkpoint's ``extra`` records the data description, the number of images,
``--size`` and a data hash: SHA-256 over the lines ``"{name}\\t{sha256}\\n"`` of
the sorted (file name, file SHA-256) pairs, names relative to the data folder.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from . import get_colorizer, list_colorizers
from .checkpoint import sha256_file

DEMO_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def demo_train_files() -> tuple[Path, list[str]]:
    """The demo photo folder and the names of its ``train`` photos, sorted."""
    index = DEMO_DIR / "photos.csv"
    if not index.is_file():
        raise ValueError(f"demo photo index not found: {index}")
    with open(index, newline="", encoding="utf-8") as f:
        names = [row["file"] for row in csv.DictReader(f) if row["split"] == "train"]
    return DEMO_DIR / "photos", sorted(names)


def folder_files(root: Path) -> list[str]:
    """Paths (POSIX, relative to ``root``) of the images under ``root``, sorted."""
    if not root.is_dir():
        raise ValueError(f"data folder not found: {root}")
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def data_hash(root: Path, names: Sequence[str]) -> str:
    """SHA-256 over the sorted (name, file SHA-256) pairs (format in module docstring)."""
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(f"{name}\t{sha256_file(root / name)}\n".encode())
    return digest.hexdigest()


def load_image(path: Path, size: int) -> torch.Tensor:
    """sRGB float tensor (3, H, W) in [0, 1], shorter side ``size`` pixels."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            scale = size / min(img.size)
            new_size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(new_size, Image.Resampling.BICUBIC)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    array = np.asarray(img, dtype=np.uint8)                           # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255


def _images(root: Path, names: Sequence[str], size: int) -> Iterator[torch.Tensor]:
    """Load the images one at a time, so a large set never sits in memory."""
    for name in names:
        yield load_image(root / name, size)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (every option documented in --help)."""
    parser = argparse.ArgumentParser(
        prog="python -m colorizers.train",
        description="Train a colorizer on a set of photos and write its checkpoint.",
    )
    parser.add_argument(
        "--model", required=True,
        help=f"registered colorizer name (one of: {', '.join(list_colorizers())}); "
             "only models with a fit() method are trainable yet",
    )
    parser.add_argument(
        "--data", required=True,
        help="'demo' (train split of data/demo/photos.csv) or 'folder:DIR' "
             "(every .jpg/.jpeg/.png under DIR, recursively)",
    )
    parser.add_argument("--out", required=True, type=Path, help="checkpoint file to write")
    parser.add_argument(
        "--size", type=int, default=256,
        help="resize every image so its shorter side has this many pixels (default: 256)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 0 on success, 1 on a data or write error, 2 on a usage error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error(f"--size must be positive, got {args.size}")
    try:
        model_cls = get_colorizer(args.model)
    except ValueError as exc:
        parser.error(str(exc))
    if not hasattr(model_cls, "fit"):
        trainable = [n for n in list_colorizers() if hasattr(get_colorizer(n), "fit")]
        parser.error(f"model {args.model!r} is not trainable yet: this command trains only "
                     f"models with a fit() method ({', '.join(trainable)})")

    if args.data == "demo":
        try:
            root, names = demo_train_files()
        except ValueError as exc:
            parser.error(str(exc))
        description = f"demo:train ({len(names)} images)"
    elif args.data.startswith("folder:") and len(args.data) > len("folder:"):
        folder = args.data[len("folder:"):]
        root = Path(folder)
        try:
            names = folder_files(root)
        except ValueError as exc:
            parser.error(str(exc))
        description = f"folder:{folder} ({len(names)} images)"
    else:
        parser.error(f"--data must be 'demo' or 'folder:DIR', got {args.data!r}")
    if not names:
        parser.error(f"no images in {args.data}")

    try:
        model = model_cls.fit(_images(root, names, args.size))
        model.save(args.out, extra={
            "data": description,
            "num_images": len(names),
            "data_sha256": data_hash(root, names),
            "size": args.size,
        })
    except (ValueError, OSError) as exc:  # unreadable image, unwritable --out
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({model_cls.name}, {description})")
    print(f"sha256 {sha256_file(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
