"""The demo's shipped checkpoints: every one is there, matches its manifest, is small and loads strictly."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from colorizers import get_colorizer
from colorizers.checkpoint import TRAINING_STATE, sha256_file
from colorizers.training import data_hash, demo_train_files

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "data" / "demo" / "models"
MANIFEST = json.loads((MODELS / "models.json").read_text())
MAKEFILE_MODELS = re.search(r"^DEMO_MODELS := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
MAX_BYTES = 5 << 20   # "a few MiB"


def test_every_demo_model_of_the_makefile_ships_with_a_manifest_entry():
    assert sorted(MANIFEST) == sorted(MAKEFILE_MODELS)
    assert sorted(p.name for p in MODELS.glob("*.pt")) == sorted(f"{name}.pt" for name in MAKEFILE_MODELS)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_a_shipped_checkpoint_matches_its_hash_and_loads_strictly(name):
    entry = MANIFEST[name]
    path = MODELS / entry["file"]
    assert sha256_file(path) == entry["sha256"], f"{path} is not the file models.json describes"
    assert path.stat().st_size == entry["bytes"] <= MAX_BYTES
    raw = torch.load(path, map_location="cpu", weights_only=True)     # plain data only
    assert raw["model"] == name and not set(TRAINING_STATE) & set(raw["extra"])   # weights only
    model = get_colorizer(name).from_checkpoint(path)                  # strict load_state_dict
    assert sum(p.numel() for p in model.parameters()) == entry["parameters"]
    assert entry["command"].startswith(f"python -m colorizers.train --model {name} --data demo")
    L = torch.linspace(0, 100, 32 * 40).reshape(1, 1, 32, 40)
    ab = model.colorize(L, generator=[torch.Generator().manual_seed(0)])
    assert ab.shape == (1, 2, 32, 40) and torch.isfinite(ab).all()


def test_the_shipped_models_were_trained_on_the_demo_training_photos_only():
    root, names = demo_train_files()
    digest = data_hash(root, names)
    for name, entry in MANIFEST.items():
        ckpt = torch.load(MODELS / entry["file"], map_location="cpu", weights_only=True)
        assert ckpt["extra"]["data_sha256"] == entry["data_sha256"] == digest, name


@pytest.mark.parametrize("name", ["pixcolor", "royer2017"])
def test_the_autoregressive_demo_models_have_their_demo_configuration(name):
    """The shipped model is what ``demo_config()`` (used by the pipeline tests) describes."""
    cls = get_colorizer(name)
    ckpt = torch.load(MODELS / MANIFEST[name]["file"], map_location="cpu", weights_only=True)
    # Both through the constructor: a key added since (with a default that keeps old files
    # valid, e.g. pixcolor's trunk_init) is then filled in the same way on both sides.
    assert cls(**ckpt["config"]).params() == cls(**cls.demo_config()).params()
