"""The trainer: data sources, crops, checkpoints, exact resume, the CLI and the Django command."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command

from colorizers import training
from colorizers.checkpoint import load_checkpoint, save_checkpoint
from colorizers.train import main, parse_config, run
from colorizers.training import (
    RandomCrops, TrainError, _from_plain, _loader, _Positions, _to_plain, data_fingerprint, imagenet_wnids,
    resolve_data, train,
)
from colorizers.zhang2016 import Zhang2016
from tests.conftest import colour_image

REPO = Path(__file__).resolve().parents[1]
TINY_ZHANG = {"width_mult": 1 / 16}
TINY_LAL = {"width_mult": 1 / 16, "critic_width_mult": 1 / 8, "num_classes": 4, "n_critic": 1}



def tiny_run(tmp_path: Path, photo_dir: Path, name: str, **kwargs):
    """Train zhang2016 (or ``model=``) tiny: batch 2 of 32 px crops, in-process loading."""
    options = dict(model="zhang2016", data=f"folder:{photo_dir}", out=tmp_path / name, steps=2, batch_size=2,
                   crop=32, resize=40, lr=1e-3, config=TINY_ZHANG, device="cpu", workers=0, progress=False,
                   log=lambda line: None)
    options.update(kwargs)
    return train(**options)


# --- data -------------------------------------------------------------------------

def test_class_indices_are_the_position_of_the_wnid_among_the_sorted_1000():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids == sorted(wnids) and wnids[0] == "n01440764"
    index = {w: i for i, w in enumerate(wnids)}
    for split in ("ctest10k.txt", "cval1k.txt"):
        for line in (REPO / "data" / "splits" / split).read_text().splitlines():
            path, label = line.split()
            assert index[path.split("/")[1]] == int(label), line


def test_imagenet_train_folders_are_labelled_by_wnid(tmp_path):
    for wnid, name in (("n01440764", "a.JPEG"), ("n15075141", "b.JPEG"), ("n15075141", "c.JPEG")):
        (tmp_path / wnid).mkdir(exist_ok=True)
        colour_image(0, (8, 8)).save(tmp_path / wnid / name)
    data = resolve_data(f"imagenet-train:{tmp_path}")
    assert data.names == ["n01440764/a.JPEG", "n15075141/b.JPEG", "n15075141/c.JPEG"]
    assert data.labels == [0, 999, 999]
    assert data.description == f"imagenet-train:{tmp_path} (3 images, 2 classes)"


def test_a_folder_that_is_no_wnid_is_refused_in_imagenet_train(tmp_path):
    (tmp_path / "cats").mkdir()
    with pytest.raises(ValueError, match="cats is not an ImageNet class folder"):
        resolve_data(f"imagenet-train:{tmp_path}")


def test_demo_data_is_the_train_split_and_never_a_rated_photo():
    data = resolve_data("demo")
    with open(REPO / "data" / "demo" / "photos.csv", newline="", encoding="utf-8") as f:
        rated = {row["file"] for row in csv.DictReader(f) if row["split"] == "test"}
    assert len(data.names) == 20 and not rated & set(data.names)
    assert set(data.labels) == {-1}


def test_unknown_data_kinds_are_refused():
    with pytest.raises(ValueError, match="--data must be 'demo', 'folder:DIR' or 'imagenet-train:DIR'"):
        resolve_data("imagenet:/x")


def test_large_sets_are_hashed_by_their_listing(photo_dir, monkeypatch):
    names = resolve_data(f"folder:{photo_dir}").names
    assert data_fingerprint(photo_dir, names)[0] == "content"
    monkeypatch.setattr(training, "LISTING_HASH_ABOVE", 0)
    assert data_fingerprint(photo_dir, names)[0] == "listing"


def test_crops_depend_on_the_seed_and_stream_position_only(photo_dir):
    data = resolve_data(f"folder:{photo_dir}")
    a, b = (RandomCrops(data, crop=24, resize=40, seed=7) for _ in range(2))
    x, label = a[12]
    assert x.shape == (3, 24, 24) and x.dtype == torch.uint8 and label == -1
    assert torch.equal(b[12][0], x)                                            # another copy, cold cache
    assert not torch.equal(a[13][0], x)
    assert sorted(a.permutation(0)) == list(range(5)) and sorted(a.permutation(3)) == list(range(5))


def test_worker_processes_load_the_same_batches(photo_dir):
    dataset = RandomCrops(resolve_data(f"folder:{photo_dir}"), crop=16, resize=20, seed=0)
    batches = [list(_loader(dataset, _Positions(3, 9), batch_size=3, workers=w, device=torch.device("cpu"), seed=0))
               for w in (0, 1)]
    assert all(torch.equal(x[0], y[0]) for x, y in zip(*batches))


# --- training and checkpoints ----------------------------------------------------

def test_plain_encoding_of_optimiser_state_round_trips_through_a_checkpoint(tmp_path):
    model = Zhang2016(**TINY_ZHANG)
    optimizer, scheduler = model.configure_optimizers(model.default_train_config())["net"]
    model(torch.rand(1, 1, 16, 16) * 100).sum().backward()
    optimizer.step()
    scheduler.step()
    path = save_checkpoint(tmp_path / "o.pt", model_name="m", state_dict={}, config={},
                           extra={"o": _to_plain(optimizer.state_dict()), "s": _to_plain(scheduler.state_dict())})
    extra = load_checkpoint(path, expected_model="m")["extra"]
    restored = _from_plain(extra["o"])
    assert restored["param_groups"][0]["betas"] == (0.9, 0.99)
    assert torch.equal(restored["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    optimizer.load_state_dict(restored)
    scheduler.load_state_dict(_from_plain(extra["s"]))


def test_training_writes_a_checkpoint_with_its_provenance_and_state(tmp_path, photo_dir):
    out = tiny_run(tmp_path, photo_dir, "z.pt")
    ckpt = load_checkpoint(out, expected_model="zhang2016")
    extra = ckpt["extra"]
    assert ckpt["config"]["width_mult"] == 1 / 16
    assert extra["step"] == 2 and extra["seed"] == 0 and extra["data"] == f"folder:{photo_dir} (5 images)"
    assert extra["data_hash_kind"] == "content" and len(extra["data_sha256"]) == 64
    assert extra["train_config"]["lr"] == 1e-3 and extra["train_config"]["batch_size"] == 2
    assert extra["train_config"]["steps"] == 2 and extra["train_config"]["crop"] == 32
    assert extra["prepared"]["ab_prior"].shape == (313,)
    assert {"optimizers", "schedulers", "last_logs"} <= set(extra) and extra["ranks"] == 1
    ab = Zhang2016.from_checkpoint(out).colorize(torch.rand(1, 1, 32, 32) * 100)
    assert ab.shape == (1, 2, 32, 32) and torch.isfinite(ab).all()


@pytest.mark.parametrize("model, config", [("zhang2016", TINY_ZHANG), ("lal2017", TINY_LAL)])
def test_resuming_gives_the_weights_of_the_uninterrupted_run(tmp_path, photo_dir, model, config):
    straight = tiny_run(tmp_path, photo_dir, "straight.pt", model=model, config=config, steps=4)
    tiny_run(tmp_path, photo_dir, "half.pt", model=model, config=config, steps=2)
    resumed = tiny_run(tmp_path, photo_dir, "resumed.pt", model=model, config={}, steps=4, lr=None,
                       batch_size=None, crop=None, resize=None, resume=tmp_path / "half.pt")
    a = load_checkpoint(straight, expected_model=model)
    b = load_checkpoint(resumed, expected_model=model)
    assert b["extra"]["step"] == 4
    assert all(torch.equal(a["state_dict"][k], v) for k, v in b["state_dict"].items())


def test_resume_refuses_other_data_other_settings_and_other_models(tmp_path, photo_dir):
    ckpt = tiny_run(tmp_path, photo_dir, "z.pt")
    other = tmp_path / "other"
    other.mkdir()
    colour_image(9).save(other / "x.png")
    with pytest.raises(TrainError, match="it was trained on 'folder:.* \\(5 images\\)'"):
        tiny_run(tmp_path, other, "r.pt", config={}, steps=3, resume=ckpt)
    with pytest.raises(TrainError, match="cannot change lr"):
        tiny_run(tmp_path, photo_dir, "r.pt", config={}, steps=3, lr=0.5, resume=ckpt)
    with pytest.raises(TrainError, match="cannot resume: .*z.pt is a checkpoint of model 'zhang2016'"):
        tiny_run(tmp_path, photo_dir, "r.pt", model="lal2017", config={}, steps=3, resume=ckpt)


def test_a_diverging_loss_stops_without_writing(tmp_path, photo_dir, monkeypatch):
    monkeypatch.setattr(Zhang2016, "train_step", lambda self, batch, step, optimizers: {"loss": math.nan})
    with pytest.raises(FloatingPointError, match="the loss became nan at step 1"):
        tiny_run(tmp_path, photo_dir, "nan.pt")
    assert not (tmp_path / "nan.pt").exists()


def test_untrainable_models_and_bad_options_are_refused(tmp_path, photo_dir):
    with pytest.raises(TrainError, match="'grayscale' is not trainable"):
        tiny_run(tmp_path, photo_dir, "g.pt", model="grayscale")
    with pytest.raises(TrainError, match="bad --config for 'zhang2016'.*widht"):
        tiny_run(tmp_path, photo_dir, "z.pt", config={"widht_mult": 0.5})
    with pytest.raises(TrainError, match="--resize 20 is smaller than the crop 32"):
        tiny_run(tmp_path, photo_dir, "z.pt", resize=20)
    with pytest.raises(TrainError, match="--steps must be positive"):
        tiny_run(tmp_path, photo_dir, "z.pt", steps=0)


# --- command lines ----------------------------------------------------------------

def test_config_values_are_json_or_strings():
    assert parse_config(["width_mult=0.125", "name=x", "sizes=[1, 2]"]) == {
        "width_mult": 0.125, "name": "x", "sizes": [1, 2]}
    with pytest.raises(TrainError, match="--config takes KEY=VALUE, got 'oops'"):
        parse_config(["oops"])


def test_mean_chroma_refuses_the_options_of_trained_models(tmp_path, photo_dir):
    options = dict(model="mean_chroma", data=f"folder:{photo_dir}", out=tmp_path / "m.pt", size=8, device="cpu",
                   seed=0, workers=None, steps=5, batch_size=None, crop=None, resize=None, lr=None, config=[],
                   resume=None, save_every=0)
    with pytest.raises(TrainError, match="fitted in one pass .* --steps apply to trained models only"):
        run(options)
    run({**options, "steps": None}, log=lambda line: None)
    assert (tmp_path / "m.pt").is_file()


def test_cli_trains_and_reports_the_checkpoint_hash(tmp_path, photo_dir, capsys):
    out = tmp_path / "z.pt"
    assert main(["--model", "zhang2016", "--data", f"folder:{photo_dir}", "--steps", "1", "--batch-size", "2",
                 "--crop", "32", "--config", "width_mult=0.0625", "--workers", "0", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "zhang2016", "--data", f"folder:{photo_dir}", "--config", "bad", "--out", str(out)])
    assert exit_info.value.code == 2


def test_django_command_trains_with_the_same_options(tmp_path, photo_dir):
    out = tmp_path / "l.pt"
    call_command("train_colorizer", "--model", "lal2017", "--data", f"folder:{photo_dir}", "--steps", "1",
                 "--batch-size", "2", "--crop", "32", "--config", "width_mult=0.0625", "--config", "num_classes=4",
                 "--workers", "0", "--device", "cpu", "--out", str(out), verbosity=0)
    assert load_checkpoint(out, expected_model="lal2017")["extra"]["step"] == 1
    with pytest.raises(CommandError, match="Unknown colorizer 'nope'"):
        call_command("train_colorizer", "--model", "nope", "--data", "demo", "--out", str(out), verbosity=0)
    with pytest.raises(CommandError, match="'grayscale' is not trainable yet"):
        call_command("train_colorizer", "--model", "grayscale", "--data", "demo", "--out", str(out), verbosity=0)
