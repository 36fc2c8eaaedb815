"""The trainer's data: how images are scaled before the crop (``resize_mode``), deterministically; ImageNet's
train layout; unreadable files, replaced and counted the same with any number of workers."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from colorizers.checkpoint import load_checkpoint
from colorizers.royer2017 import Royer2017
from colorizers.training import (
    RandomCrops, Substitutions, TrainData, TrainError, _batches, _loader, _Positions, default_resize, imagenet_wnids,
    resolve_data, train,
)
from colorizers.zhang2016 import Zhang2016
from tests.conftest import colour_image

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


# --- ImageNet's train layout -------------------------------------------------------

LAYOUT = r"<wnid>/\*\.JPEG: one folder per class, named by its WordNet id \(e\.g\. n01440764\), 1000 in all"


def imagenet_folder(root, files: dict[str, list[str]]):
    """``root/<wnid>/<name>`` small colour JPEGs; an empty list makes an empty class folder."""
    for i, (wnid, names) in enumerate(files.items()):
        (root / wnid).mkdir(parents=True)
        for j, name in enumerate(names):
            colour_image(10 * i + j).save(root / wnid / name, quality=90)
    return root


def test_the_description_counts_the_classes_present_and_the_empty_class_folders(tmp_path):
    imagenet_folder(tmp_path, {"n01440764": ["a.JPEG", "b.JPEG"], "n01443537": ["c.JPEG"], "n15075141": []})
    data = resolve_data(f"imagenet-train:{tmp_path}")
    assert data.names == ["n01440764/a.JPEG", "n01440764/b.JPEG", "n01443537/c.JPEG"]
    assert data.labels == [0, 0, 1]
    assert data.description == f"imagenet-train:{tmp_path} (3 images, 2 classes, 1 empty class folder)"
    one = imagenet_folder(tmp_path / "one", {"n01440764": ["a.JPEG"]})
    assert resolve_data(f"imagenet-train:{one}").description == f"imagenet-train:{one} (1 images, 1 class)"


def test_a_missing_folder_is_refused_naming_it_and_the_layout(tmp_path):
    missing = tmp_path / "train"
    with pytest.raises(ValueError, match=f"imagenet-train:{missing}: data folder not found: .*{missing}/{LAYOUT}"):
        resolve_data(f"imagenet-train:{missing}")


def test_a_flat_folder_of_images_is_refused_pointing_to_folder_data(tmp_path):
    for i in range(3):
        colour_image(i).save(tmp_path / f"ILSVRC2012_val_{i:08d}.JPEG")
    with pytest.raises(ValueError, match=f"{tmp_path} holds 3 images directly and no class folders; .*{LAYOUT}. "
                                         f"For a flat folder use folder:{tmp_path}, or lay the images out by wnid"):
        resolve_data(f"imagenet-train:{tmp_path}")


def test_a_folder_that_is_no_wnid_is_refused_with_the_layout(tmp_path):
    imagenet_folder(tmp_path, {"n01440764": ["a.JPEG"], "cats": ["b.JPEG"]})
    with pytest.raises(ValueError, match=f"{tmp_path}/cats is not an ImageNet class folder in "
                                         f"imagenet-train:{tmp_path}; .*{LAYOUT}"):
        resolve_data(f"imagenet-train:{tmp_path}")


@pytest.mark.parametrize("folders, found", [({}, "no class folders"),
                                            ({"n01440764": [], "n15075141": []}, "2 class folders, all empty")])
def test_a_set_without_images_is_refused(tmp_path, folders, found):
    imagenet_folder(tmp_path, folders)
    with pytest.raises(ValueError, match=f"no images in imagenet-train:{tmp_path} \\({found}\\); "
                                         f".*{LAYOUT}"):
        resolve_data(f"imagenet-train:{tmp_path}")


# --- unreadable files ----------------------------------------------------------------

def corrupt_set(root, n_good: int = 5) -> tuple[TrainData, set[str]]:
    """One image per wnid folder, so that the label names the image: ``n_good`` readable JPEGs, a file of
    random bytes and a JPEG cut in half. Returns the data and the names of the two broken files."""
    wnids = imagenet_wnids()
    imagenet_folder(root, {wnids[i]: [f"{i}.JPEG"] for i in range(n_good + 2)})
    rng = np.random.default_rng(0)
    (root / wnids[n_good] / f"{n_good}.JPEG").write_bytes(rng.bytes(3000))
    cut = root / wnids[n_good + 1] / f"{n_good + 1}.JPEG"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    return resolve_data(f"imagenet-train:{root}"), {f"{wnids[n_good]}/{n_good}.JPEG",
                                                    f"{wnids[n_good + 1]}/{n_good + 1}.JPEG"}


def test_an_unreadable_image_takes_the_next_readable_one_of_the_epoch(tmp_path):
    data, broken = corrupt_set(tmp_path)
    crops = RandomCrops(data, crop=24, resize=40, seed=3)
    n, substituted = len(data.names), 0
    for k in range(3 * n):
        perm = crops.permutation(k // n)
        walk = [data.names[int(perm[(k % n + i) % n])] for i in range(n)]
        passed = tuple(itertools.takewhile(lambda name: name in broken, walk))
        x, label, skipped = crops.item(k)
        assert skipped == passed and data.names[data.labels.index(label)] == walk[len(passed)]
        assert x.shape == (3, 24, 24) and torch.equal(crops[k][0], x)
        substituted += bool(skipped)
    assert substituted == 6                        # each epoch, the two broken files' own positions


def test_substitutes_and_their_count_do_not_depend_on_the_workers(tmp_path):
    data, broken = corrupt_set(tmp_path)
    crops = RandomCrops(data, crop=16, resize=20, seed=1)
    runs = []
    for workers in (0, 2):
        counted = Substitutions()
        loader = _loader(crops, _Positions(0, 3 * len(data.names)), batch_size=4, workers=workers,
                         device=torch.device("cpu"), seed=0)
        runs.append(([(b.rgb, b.labels) for b in _batches(loader, torch.device("cpu"), counted)], counted))
    (a, count_a), (b, count_b) = runs
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert count_a == count_b and count_a.items == 6 and set(count_a.files) == broken
    assert count_a.items == sum(bool(crops.item(k)[2]) for k in range(3 * len(data.names)))


def test_a_set_with_no_readable_image_is_a_clear_error(tmp_path):
    data, _ = corrupt_set(tmp_path, n_good=0)
    crops = RandomCrops(data, crop=16, resize=20, seed=0)
    with pytest.raises(TrainError, match=f"none of the images of imagenet-train:{tmp_path} \\(2 images, 2 classes\\) "
                                         f"can be read \\(e.g. cannot read image {tmp_path}/n0144"):
        crops[0]
    loader = _loader(crops, _Positions(0, 2), batch_size=2, workers=1, device=torch.device("cpu"), seed=0)
    with pytest.raises(TrainError, match="none of the images of"):
        next(iter(loader))


def test_the_trainer_reports_and_stores_the_substitutions_and_resumes_with_them(tmp_path):
    data, broken = corrupt_set(tmp_path / "train")
    lines: list[str] = []
    options = dict(model="zhang2016", data=f"imagenet-train:{tmp_path / 'train'}", batch_size=2, crop=32,
                   resize=40, lr=1e-3, config={"width_mult": 1 / 16}, device="cpu", workers=0, progress=False)
    straight = train(out=tmp_path / "straight.pt", steps=6, log=lines.append, **options)
    extra = load_checkpoint(straight, expected_model="zhang2016")["extra"]
    assert extra["substituted_items"] >= 2 and set(extra["unreadable_files"]) == broken
    assert any(f"{extra['substituted_items']} items took another image: 2 unreadable files skipped (" in line
               for line in lines)
    train(out=tmp_path / "half.pt", steps=3, log=lines.append, **options)
    resumed = train(out=tmp_path / "resumed.pt", steps=6, log=lines.append, resume=tmp_path / "half.pt",
                    **{**options, "config": {}})
    again = load_checkpoint(resumed, expected_model="zhang2016")
    assert again["extra"]["substituted_items"] == extra["substituted_items"]
    assert set(again["extra"]["unreadable_files"]) == broken
    weights = load_checkpoint(straight, expected_model="zhang2016")["state_dict"]
    assert all(torch.equal(weights[k], v) for k, v in again["state_dict"].items())
