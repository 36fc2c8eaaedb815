"""Training precision: bf16 autocast with float32 weights and losses, recorded in the checkpoint, on every model.

The CPU runs the bf16 path when asked (``--precision bf16``), so these tests check on the
CPU what CUDA's default does: the network's convolutions in bf16, the colour conversions,
targets and losses in float32, the weights and optimiser states float32.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from django.core.management import call_command
from torch import nn

from colorizers.checkpoint import load_checkpoint, save_checkpoint
from colorizers.train import build_parser, main, run
from colorizers.training import (
    TrainBatch, TrainError, _from_plain, precision_context, resolve_precision, train,
)
from tests.conftest import colour_image
from tests.tiny_models import CONFIGS, tiny_model
from vtt.management.commands.train_colorizer import Command as TrainColorizer

CPU = torch.device("cpu")

MODELS = list(CONFIGS)

# (module, name) of the function that computes each model's loss from the network's outputs
LOSSES = {
    "zhang2016": ("colorizers.zhang2016", "rebalanced_cross_entropy"),
    "lal2017": ("colorizers.lal2017", "rebalanced_cross_entropy"),
    "liang2016": ("colorizers.liang2016", "binary_kl_with_logits"),
    "pixcolor": ("colorizers.pixcolor", "nll"),
    "royer2017": ("colorizers.royer2017", "mixture_bits_per_dim"),
}

# One step of bf16 and of fp32 from the same weights and batch: the largest relative difference
# |bf16 - fp32| / |fp32| of the logged value, measured over seeds 0-7 (`one_step`: batches of two 32 px
# photos, one torch thread; torch 2.13 on the CPU), and the bound the test allows, about 3 times it.
# For comparison, with the colour conversions left to autocast (lowered to bf16; the `.float()` casts kept):
# zhang2016 6.0e-4, lal2017 5.8e-4, liang2016 5.3e-3, pixcolor nll 6.1e-3, royer2017 6.4e-5 (its targets
# are rounded to 256 levels, which absorbs most of that error).
#   model      value  measured max  bound
#   zhang2016  loss   1.1e-4        3e-4
#   lal2017    loss   9.5e-5        3e-4
#   liang2016  loss   5.4e-4        1.5e-3    (its zero-initialised output layer given weights first)
#   pixcolor   nll    2.1e-4        6e-4
#   royer2017  loss   4.7e-5        1.5e-4
# PixColor's refinement L2 (and so its summed ``loss``) is left out: at 32 px its 32-fold
# downsampling ends in 1 x 1 maps, where BatchNorm over a batch of two values turns rounding into
# sign changes (measured: 15% apart; still 2-5% at 64 and 128 px). That L2 is computed in float32 all
# the same, from the network's output cast with `.float()`.
TOLERANCE = {"zhang2016": ("loss", 3e-4), "lal2017": ("loss", 3e-4), "liang2016": ("loss", 1.5e-3),
             "pixcolor": ("nll", 6e-4), "royer2017": ("loss", 1.5e-4)}


pytestmark = pytest.mark.filterwarnings("ignore:pixcolor. TRAINING THE RESNET TRUNK FROM SCRATCH:UserWarning")


def run_training(tmp_path: Path, photo_dir: Path, model: str, name: str, **kwargs: Any) -> Path:
    """Train ``model`` tiny on the CPU: batch 2 of 32 px crops, in-process loading."""
    options = dict(model=model, data=f"folder:{photo_dir}", out=tmp_path / name, steps=2, batch_size=2, crop=32,
                   resize=40, lr=1e-3, config=CONFIGS[model], device="cpu", workers=0, progress=False,
                   log=lambda line: None)
    options.update(kwargs)
    return train(**options)


def photo_batch(seed: int) -> TrainBatch:
    """Two 32 px colour photos (different for each seed) with ImageNet labels 0 and 3."""
    rgb = torch.stack([torch.from_numpy(np.asarray(colour_image(2 * seed + i, (32, 32)), dtype=np.float32))
                       for i in range(2)]).permute(0, 3, 1, 2) / 255
    return TrainBatch(rgb=rgb.contiguous(), labels=torch.tensor([0, 3]))


def one_step(model: str, seed: int, precision: str) -> dict[str, float]:
    """The logs of step 0 from the weights of ``seed`` on the batch of ``seed`` (same RNG for both precisions)."""
    net, optimizers = tiny_model(model, seed)
    torch.manual_seed(seed + 1000)
    with precision_context(precision, CPU):
        return net.train_step(photo_batch(seed), 0, optimizers)


def recording(calls: list[tuple[list[torch.dtype], torch.dtype]], fn: Callable) -> Callable:
    """``fn`` that records the dtypes of its tensor arguments and of its result."""
    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        inputs = [a.dtype for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.is_floating_point()]
        calls.append((inputs, result.dtype))
        return result
    return wrapper


# --- the choice -----------------------------------------------------------------------

def test_auto_is_bf16_on_cuda_and_fp32_elsewhere_and_explicit_choices_stand():
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16" and resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(TrainError, match="--precision must be auto, fp32 or bf16, got 'fp16'"):
        resolve_precision("fp16", CPU)


def test_training_on_the_cpu_is_fp32_by_default_and_the_checkpoint_and_log_say_so(tmp_path, photo_dir):
    lines: list[str] = []
    out = run_training(tmp_path, photo_dir, "zhang2016", "z.pt", steps=1, log=lines.append)
    assert load_checkpoint(out, expected_model="zhang2016")["extra"]["precision"] == "fp32"
    assert any(line.endswith("steps 0..1, precision fp32") for line in lines), lines


def test_fp16_is_refused(tmp_path, photo_dir):
    with pytest.raises(TrainError, match="--precision must be auto, fp32 or bf16, got 'fp16'"):
        run_training(tmp_path, photo_dir, "zhang2016", "z.pt", precision="fp16")
    assert not (tmp_path / "z.pt").exists()


# --- every model under bf16 ---------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_bf16_training_gives_finite_losses_float32_state_and_records_bf16(tmp_path, photo_dir, model):
    lines: list[str] = []
    out = run_training(tmp_path, photo_dir, model, "m.pt", precision="bf16", log=lines.append)
    ckpt = load_checkpoint(out, expected_model=model)
    extra = ckpt["extra"]
    assert extra["precision"] == "bf16" and extra["step"] == 2
    assert all(math.isfinite(v) for v in extra["last_logs"].values()), extra["last_logs"]
    floating = [t for t in ckpt["state_dict"].values() if t.is_floating_point()]
    assert floating and all(t.dtype == torch.float32 for t in floating)
    moments = [t for o in _from_plain(extra["optimizers"]).values() for state in o["state"].values()
               for t in state.values() if isinstance(t, torch.Tensor) and t.is_floating_point() and t.ndim > 0]
    assert moments and all(t.dtype == torch.float32 for t in moments)
    assert any("precision bf16 (autocast), weights float32" in line for line in lines), lines


@pytest.mark.parametrize("model", MODELS)
def test_under_bf16_the_convolutions_run_in_bf16_and_the_losses_in_float32(model, monkeypatch):
    module_name, loss_name = LOSSES[model]
    module = importlib.import_module(module_name)
    for precision, conv_dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        calls: list[tuple[list[torch.dtype], torch.dtype]] = []
        monkeypatch.setattr(module, loss_name, recording(calls, getattr(module, loss_name)))
        net, optimizers = tiny_model(model, 0)
        conv_outputs: list[torch.dtype] = []
        conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
        conv.register_forward_hook(lambda m, args, output: conv_outputs.append(output.dtype))
        scores: list[torch.dtype] = []
        if model == "lal2017":
            net.critic.register_forward_hook(lambda m, args, output: scores.append(output.dtype))
        step = 1 if model == "liang2016" else 0    # liang2016's step 1 computes the KL loss
        with precision_context(precision, CPU):
            logs = net.train_step(photo_batch(0), step, optimizers)
        monkeypatch.undo()
        assert conv_outputs and set(conv_outputs) == {conv_dtype}
        assert calls, f"{loss_name} was not called"
        for inputs, result in calls:
            assert set(inputs) == {torch.float32} and result == torch.float32, (precision, inputs, result)
        assert set(scores) <= {torch.float32}
        assert math.isfinite(logs["loss"])
        assert all(p.dtype == torch.float32 for p in net.parameters())
        assert all(p.grad is None or p.grad.dtype == torch.float32 for p in net.parameters())


@pytest.mark.parametrize("model", MODELS)
def test_one_bf16_step_gives_the_fp32_loss_within_the_measured_tolerance(model):
    key, bound = TOLERANCE[model]
    for seed in range(4):
        fp32, bf16 = one_step(model, seed, "fp32")[key], one_step(model, seed, "bf16")[key]
        assert abs(bf16 - fp32) <= bound * abs(fp32), (seed, fp32, bf16)


# --- resuming ---------------------------------------------------------------------------------

def test_a_resumed_run_keeps_its_precision_and_refuses_another(tmp_path, photo_dir):
    half = run_training(tmp_path, photo_dir, "zhang2016", "half.pt", steps=1, precision="bf16")
    resume = dict(config={}, lr=None, batch_size=None, crop=None, resize=None, resume=half)
    resumed = run_training(tmp_path, photo_dir, "zhang2016", "resumed.pt", steps=2, **resume)   # auto
    assert load_checkpoint(resumed, expected_model="zhang2016")["extra"]["precision"] == "bf16"
    with pytest.raises(TrainError, match="cannot change the precision to fp32 when resuming from .*half.pt: "
                                         "it was trained in bf16"):
        run_training(tmp_path, photo_dir, "zhang2016", "other.pt", steps=2, precision="fp32", **resume)


def test_checkpoints_from_before_the_option_resume_as_fp32(tmp_path, photo_dir):
    old = run_training(tmp_path, photo_dir, "zhang2016", "old.pt", steps=1)
    ckpt = load_checkpoint(old, expected_model="zhang2016")
    del ckpt["extra"]["precision"]
    save_checkpoint(old, model_name="zhang2016", state_dict=ckpt["state_dict"], config=ckpt["config"],
                    extra=ckpt["extra"])
    resume = dict(config={}, lr=None, batch_size=None, crop=None, resize=None, resume=old)
    with pytest.raises(TrainError, match="it was trained in fp32"):
        run_training(tmp_path, photo_dir, "zhang2016", "r.pt", steps=2, precision="bf16", **resume)


# --- command lines ----------------------------------------------------------------------------

def test_both_commands_offer_the_option_in_their_help():
    for text in (build_parser().format_help(),
                 TrainColorizer().create_parser("manage.py", "train_colorizer").format_help()):
        flat = " ".join(text.split())
        assert "--precision {auto,fp32,bf16}" in flat
        assert "default: auto, bf16 on CUDA, fp32 on CPU" in flat and "bf16 on the CPU runs only when asked" in flat


def test_the_option_reaches_the_trainer_from_both_commands(tmp_path, photo_dir):
    common = ["--data", f"folder:{photo_dir}", "--steps", "1", "--batch-size", "2", "--crop", "32",
              "--config", "width_mult=0.0625", "--workers", "0", "--device", "cpu", "--precision", "bf16"]
    assert main(["--model", "zhang2016", *common, "--out", str(tmp_path / "a.pt")]) == 0
    call_command("train_colorizer", "--model", "zhang2016", *common, "--out", str(tmp_path / "b.pt"), verbosity=0)
    for name in ("a.pt", "b.pt"):
        assert load_checkpoint(tmp_path / name, expected_model="zhang2016")["extra"]["precision"] == "bf16"


def test_mean_chroma_refuses_a_precision(tmp_path, photo_dir):
    options = dict(model="mean_chroma", data=f"folder:{photo_dir}", out=tmp_path / "m.pt", size=8, device="cpu",
                   seed=0, workers=None, steps=None, batch_size=None, crop=None, resize=None, lr=None, config=[],
                   resume=None, save_every=0, precision="bf16")
    with pytest.raises(TrainError, match="--precision apply to trained models only"):
        run(options)
