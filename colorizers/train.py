"""Train a colorizer and write its checkpoint (also ``python manage.py train_colorizer``).

    python -m colorizers.train --model zhang2016 --data imagenet-train:/data/imagenet/train \\
        --steps 450000 --out ckpt/zhang2016.pt --save-every 5000
    python -m colorizers.train --model lal2017 --data demo --steps 300 --batch-size 8 --crop 64 \\
        --config width_mult=0.125 --lr 1e-3 --out ckpt/lal2017-demo.pt
    python -m colorizers.train --model zhang2016 --data demo --steps 600 --resume ckpt/z.pt --out ckpt/z.pt
    python -m colorizers.train --model mean_chroma --data demo --out ckpt/mean_chroma.pt
    torchrun --standalone --nproc-per-node 8 -m colorizers.train --model pixcolor \\
        --data imagenet-train:/data/imagenet/train --out ckpt/pixcolor.pt --save-every 5000

Under torchrun every rank trains its share of each global batch (`colorizers.distributed`).

Models that implement the training protocol of `colorizers.training` are trained
there (random crops, the paper's optimiser, checkpoints with the full training
state, ``--resume``). ``mean_chroma`` has a ``fit`` classmethod instead (one
pass of statistics): it reads every image whole, resized (bicubic) so that its
shorter side is ``--size`` pixels, and its checkpoint's ``extra`` records the
data description, the number of images, ``--size`` and the data hash (SHA-256
over the lines ``"{name}\\t{sha256}\\n"`` of the sorted (file name, file
SHA-256) pairs, names relative to the data folder).

Data sources: ``demo`` (the ``train`` photos of ``data/demo/photos.csv``),
``folder:DIR`` (every .jpg/.jpeg/.png under DIR, recursively, sorted) and, for
the trained models, ``imagenet-train:DIR`` (DIR/<wnid>/*.JPEG, with class
labels). A file Pillow cannot read stops the run with its name: silently skipping
it would change the data set.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from . import describe_inference_options, get_colorizer
from .checkpoint import sha256_file
from .distributed import from_environment
from .training import (  # noqa: F401  (re-exported: the names this command always offered)
    DEMO_DIR, IMAGE_SUFFIXES, PRECISIONS, TrainError, data_hash, demo_train_files, folder_files, is_trainable,
    load_image, resolve_data, train, trainable_colorizers,
)

#: option name -> default, for the options that only trained (not fitted) models take
TRAINING_ONLY = {"steps": None, "batch_size": None, "crop": None, "resize": None, "lr": None, "config": [],
                 "resume": None, "save_every": 0, "precision": "auto"}
OPTIONS = ("model", "data", "out", "size", "device", "seed", "workers", *TRAINING_ONLY)


def settings_epilog() -> str:
    """The --help epilog: every colorizer's inference settings and how to set them."""
    return ("inference settings: set for training with --config KEY=VALUE and stored in the\n"
            "checkpoint; generate_pairs --set NAME.KEY=VALUE overrides them when colorizing:\n"
            + describe_inference_options())


class KeepLinesFormatter(argparse.HelpFormatter):
    """argparse's layout; a text of several lines (the settings epilog) keeps its lines."""

    def _fill_text(self, text, width, indent):
        return text if "\n" in text else super()._fill_text(text, width, indent)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options, shared by ``python -m colorizers.train`` and ``manage.py train_colorizer``."""
    parser.add_argument(
        "--model", required=True,
        help=f"registered colorizer to train (one of: {', '.join(trainable_colorizers())})",
    )
    parser.add_argument(
        "--data", required=True,
        help="'demo' (train split of data/demo/photos.csv), 'folder:DIR' (every .jpg/.jpeg/.png under DIR) "
             "or 'imagenet-train:DIR' (DIR/<wnid>/*.JPEG, labelled with ImageNet's class indices)",
    )
    parser.add_argument("--out", required=True, type=Path, help="checkpoint file to write (atomically)")
    parser.add_argument("--steps", type=int, help="training steps to reach (default: the paper's number)")
    parser.add_argument("--batch-size", type=int,
                        help="images per step, over all ranks (default: the paper's); under torchrun a multiple "
                             "of the number of ranks")
    parser.add_argument("--crop", type=int, help="side of the random square training crops (default: the paper's)")
    parser.add_argument("--resize", type=int,
                        help="shorter side images are scaled to before cropping (default: crop x 8/7)")
    parser.add_argument("--lr", type=float, help="learning rate (default: the paper's); recorded in the checkpoint")
    parser.add_argument(
        "--config", action="append", default=[], metavar="KEY=VALUE",
        help="model constructor argument, VALUE as JSON (e.g. width_mult=0.125); repeatable; new runs only",
    )
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="where to train: auto picks CUDA when available (default: auto)")
    parser.add_argument(
        "--precision", choices=list(PRECISIONS), default="auto",
        help="training steps under bf16 autocast or in fp32 (default: auto, bf16 on CUDA, fp32 on CPU); weights, "
             "optimiser states and losses stay float32. bf16 on the CPU runs only when asked for (slower than fp32 "
             "on most CPUs; it checks the bf16 path without a GPU). Recorded in the checkpoint; "
             "a resumed run keeps it",
    )
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights and of the data order and crops (default: 0)")
    parser.add_argument("--resume", type=Path, metavar="CKPT",
                        help="continue the run saved in CKPT (same model, data and settings) up to --steps")
    parser.add_argument("--save-every", type=int, default=0, metavar="N",
                        help="also write the checkpoint every N steps (default: 0, only at the end)")
    parser.add_argument("--workers", type=int,
                        help="data loading processes per rank (default: on CUDA the machine's CPU cores / its ranks - 1, "
                             "at most 8; on the CPU 0, loading in the training process)")
    parser.add_argument(
        "--size", type=int, default=256,
        help="mean_chroma only: resize every image so its shorter side has this many pixels (default: 256)",
    )


DESCRIPTION = """\
Train a colorizer on a set of photos and write its checkpoint.

On several GPUs or machines, start one process per GPU with torchrun (same options):
  torchrun --standalone --nproc-per-node 8 -m colorizers.train --model zhang2016 \\
      --data imagenet-train:/data/imagenet/train --out ckpt/zhang2016.pt --save-every 5000
  torchrun --nnodes 2 --node-rank K --nproc-per-node 8 --rdzv-backend c10d \\
      --rdzv-endpoint HOST:29500 -m colorizers.train ...   (on each machine K = 0, 1)
  torchrun --standalone --nproc-per-node 8 manage.py train_colorizer ...
Each rank trains on its share of every global batch with DistributedDataParallel (nccl
on GPUs, gloo on the CPU); --batch-size stays the global batch (the paper's) and must be
a multiple of the number of ranks; BatchNorm sees the whole global batch. Rank 0 writes
the checkpoint, and --resume continues it on any number of ranks that divides the batch.
--workers counts loader processes per rank. Ctrl-C or SIGTERM stops all ranks after the
same step and writes the checkpoint."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (every option documented in --help)."""
    parser = argparse.ArgumentParser(
        prog="python -m colorizers.train",
        description=DESCRIPTION,
        epilog=settings_epilog(), formatter_class=KeepLinesFormatter,
    )
    add_arguments(parser)
    return parser


def parse_config(values: Sequence[str]) -> dict[str, Any]:
    """``["width_mult=0.125", ...]`` -> {"width_mult": 0.125}; a VALUE that is not JSON stays a string."""
    config: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise TrainError(f"--config takes KEY=VALUE, got {item!r}")
        try:
            config[key] = json.loads(raw)
        except json.JSONDecodeError:
            config[key] = raw
    return config


def run(options: Mapping[str, Any], log: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Train or fit as ``options`` (the parsed options, by dest name) say; return the checkpoint path.

    Raises TrainError for a usage problem (bad option, unknown model, no data),
    ValueError naming an unreadable image, OSError when ``--out`` cannot be
    written, FloatingPointError when the loss diverges.
    """
    try:
        cls = get_colorizer(options["model"])
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    if is_trainable(cls):
        return train(
            model=options["model"], data=options["data"], out=options["out"], steps=options["steps"],
            batch_size=options["batch_size"], crop=options["crop"], resize=options["resize"], lr=options["lr"],
            config=parse_config(options["config"]), device=options["device"],
            precision=options.get("precision", "auto"), seed=options["seed"],
            resume=options["resume"], save_every=options["save_every"], workers=options["workers"],
            progress=progress, log=log,
        )
    if not hasattr(cls, "fit"):
        raise TrainError(f"model {options['model']!r} is not trainable yet: this command trains models with a "
                         f"train_step() or a fit() method ({', '.join(trainable_colorizers())})")
    given = sorted(k for k, default in TRAINING_ONLY.items() if options.get(k, default) != default)
    if given:
        raise TrainError(f"{options['model']} is fitted in one pass over the data; "
                         f"--{', --'.join(g.replace('_', '-') for g in given)} apply to trained models only")
    return _fit(cls, options, log)


def _fit(cls: Any, options: Mapping[str, Any], log: Callable[[str], None]) -> Path:
    if options["size"] < 1:
        raise TrainError(f"--size must be positive, got {options['size']}")
    if options["data"].startswith("imagenet-train:"):
        raise TrainError(f"{cls.name} fits on 'demo' or 'folder:DIR'")
    try:
        data = resolve_data(options["data"])
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    if not data.names:
        raise TrainError(f"no images in {options['data']}")
    model = cls.fit(_images(data.root, data.names, options["size"]))
    model.save(options["out"], extra={
        "data": data.description,
        "num_images": len(data.names),
        "data_sha256": data_hash(data.root, data.names),
        "size": options["size"],
    })
    log(f"wrote {options['out']} ({cls.name}, {data.description})")
    return Path(options["out"])


def _images(root: Path, names: Sequence[str], size: int) -> Iterator[torch.Tensor]:
    """Load the images one at a time, so a large set never sits in memory."""
    for name in names:
        yield load_image(root / name, size)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 0 on success, 1 on a data, write or divergence error, 2 on a usage error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = run(vars(args))
    except TrainError as exc:
        parser.error(str(exc))
    except (ValueError, OSError, FloatingPointError) as exc:   # unreadable image, unwritable --out, NaN
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if from_environment().rank == 0:      # under torchrun, rank 0 wrote the checkpoint
        print(f"sha256 {sha256_file(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
