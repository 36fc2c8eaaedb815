"""The trainer's data: how images are scaled before the crop (``resize_mode``), deterministically."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from colorizers.checkpoint import load_checkpoint
from colorizers.royer2017 import Royer2017
from colorizers.training import RandomCrops, TrainError, _loader, _Positions, default_resize, resolve_data, train
from colorizers.zhang2016 import Zhang2016

TINY_ROYER = {
    "working_size": 32, "embed_widths": [4, 4, 8, 8], "embed_blocks": 1, "embed_dilations": [2],
    "embed_dilated_blocks": 1, "embed_channels": 16, "channels": 8, "n_blocks": 2, "n_mix": 2,
    "dropout": 0.0, "polyak": False,
}


def stretched(path, size: int) -> np.ndarray:
    """The whole image scaled to size x size (bicubic), as PIL does it: (size, size, 3) uint8."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def test_stretch_mode_gives_the_whole_image_at_the_crop_size_mirrored_or_not(photo_dir):
    data = resolve_data(f"folder:{photo_dir}")
    assert {Image.open(photo_dir / n).size for n in data.names} == {(96, 80)}      # not square
    crops = RandomCrops(data, crop=24, resize=24, seed=3, resize_mode="stretch")
    flips = []
    for k in range(10):                                                            # two epochs
        x, _ = crops[k]
        whole = stretched(photo_dir / data.names[int(crops.permutation(k // 5)[k % 5])], 24)
        pixels = x.permute(1, 2, 0).numpy()
        assert x.shape == (3, 24, 24) and x.dtype == torch.uint8
        assert np.array_equal(pixels, whole) or np.array_equal(pixels, whole[:, ::-1])
        flips.append(not np.array_equal(pixels, whole))
    assert 0 < sum(flips) < 10


def test_stretch_mode_crops_a_stretched_image_when_resize_exceeds_the_crop(photo_dir):
    data = resolve_data(f"folder:{photo_dir}")
    crops = RandomCrops(data, crop=16, resize=20, seed=0, resize_mode="stretch")
    x, _ = crops[0]
    whole = stretched(photo_dir / data.names[int(crops.permutation(0)[0])], 20)
    pixels = x.permute(1, 2, 0).numpy()
    found = [(top, left) for top in range(5) for left in range(5)
             if np.array_equal(pixels, whole[top:top + 16, left:left + 16])
             or np.array_equal(pixels, whole[top:top + 16, left:left + 16][:, ::-1])]
    assert len(found) >= 1


def test_stretch_mode_draws_order_and_flips_from_the_seed_and_position_only(photo_dir):
    """Image and flip of stream position k come from (seed, k) alone, as in the shorter-side
    mode (same permutation, same generator per position), with or without worker processes."""
    data = resolve_data(f"folder:{photo_dir}")
    shorter = RandomCrops(data, crop=24, resize=24, seed=5)
    stretch = RandomCrops(data, crop=24, resize=24, seed=5, resize_mode="stretch")
    again = RandomCrops(data, crop=24, resize=24, seed=5, resize_mode="stretch")
    for k in range(10):
        x = stretch[k][0]
        assert torch.equal(x, again[k][0])
        assert np.array_equal(shorter.permutation(k // 5), stretch.permutation(k // 5))
        rng = np.random.default_rng([5, 2, k])              # the position's generator: top, left, flip
        rng.integers(0, 1), rng.integers(0, 1)
        whole = stretched(photo_dir / data.names[int(stretch.permutation(k // 5)[k % 5])], 24)
        expected = whole[:, ::-1] if rng.random() < 0.5 else whole
        assert np.array_equal(x.permute(1, 2, 0).numpy(), expected)
    other = RandomCrops(data, crop=24, resize=24, seed=6, resize_mode="stretch")
    assert any(not torch.equal(stretch[k][0], other[k][0]) for k in range(10))
    batches = [list(_loader(stretch, _Positions(2, 8), batch_size=3, workers=w, device=torch.device("cpu"), seed=0))
               for w in (0, 1)]
    assert all(torch.equal(x[0], y[0]) for x, y in zip(*batches))


def test_shorter_mode_is_unchanged_by_default(photo_dir):
    data = resolve_data(f"folder:{photo_dir}")
    default, explicit = RandomCrops(data, crop=24, resize=40, seed=7), \
        RandomCrops(data, crop=24, resize=40, seed=7, resize_mode="shorter")
    assert all(torch.equal(default[k][0], explicit[k][0]) for k in range(6))
    assert default_resize(224, "shorter") == 256 and default_resize(128, "stretch") == 128


def test_bad_modes_and_sizes_are_refused(photo_dir):
    data = resolve_data(f"folder:{photo_dir}")
    with pytest.raises(ValueError, match="resize_mode must be one of 'shorter', 'stretch', got 'squash'"):
        RandomCrops(data, crop=16, resize=16, seed=0, resize_mode="squash")
    with pytest.raises(ValueError, match="resize 12 is smaller than the crop 16"):
        RandomCrops(data, crop=16, resize=12, seed=0, resize_mode="stretch")


def run(tmp_path, photo_dir, model: str, config: dict, **kwargs):
    options = dict(model=model, data=f"folder:{photo_dir}", out=tmp_path / f"{model}.pt", steps=1, batch_size=2,
                   crop=32, lr=1e-3, config=config, device="cpu", workers=0, progress=False, log=lambda line: None)
    options.update(kwargs)
    return load_checkpoint(train(**options), expected_model=model)["extra"]["train_config"]


def test_the_trainer_records_the_mode_and_defaults_resize_to_the_crop_when_stretching(tmp_path, photo_dir):
    royer = run(tmp_path, photo_dir, "royer2017", TINY_ROYER)
    assert royer["resize_mode"] == "stretch" and royer["crop"] == 32 and royer["resize"] == 32
    zhang = run(tmp_path, photo_dir, "zhang2016", {"width_mult": 1 / 16})
    assert zhang["resize_mode"] == "shorter"
    assert zhang["resize"] == Zhang2016.default_train_config().get("resize", round(32 * 8 / 7))


def test_the_trainer_refuses_an_unknown_resize_mode(tmp_path, photo_dir, monkeypatch):
    monkeypatch.setattr(Zhang2016, "default_train_config",
                        classmethod(lambda cls: {"batch_size": 2, "lr": 1e-3, "resize_mode": "squash"}))
    with pytest.raises(TrainError, match="resize_mode must be one of 'shorter', 'stretch', got 'squash'"):
        run(tmp_path, photo_dir, "zhang2016", {"width_mult": 1 / 16})
    assert Royer2017.default_train_config()["resize_mode"] == "stretch"
