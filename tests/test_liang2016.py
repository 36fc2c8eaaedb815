"""liang2016: shapes, tiling, the two losses, overfitting real photos, determinism, checkpoints."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from colorizers import get_colorizer
from colorizers.checkpoint import CheckpointError, save_checkpoint
from colorizers.color import lab_to_rgb, rgb_to_lab, rgb_to_yuv, yuv_to_rgb
from colorizers.controls import MeanChroma
from colorizers.guided_filter import guided_filter
from colorizers.liang2016 import Liang2016, PatchNet, binary_kl_with_logits, gray_luma, reflect_pad
from colorizers.training import TrainBatch, demo_train_files, load_image

SMALL = {"widths": [4, 4, 4, 4]}    # tiny networks: every test runs in well under a second



def random_L(shape=(2, 1, 40, 70), seed=0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 100


def small_model(seed: int = 0, **config) -> Liang2016:
    """A small model whose output layers are random (an untrained one predicts grey everywhere)."""
    torch.manual_seed(seed)
    model = Liang2016(**{**SMALL, **config})
    with torch.no_grad():
        for net in (model.net_u, model.net_v):
            net.out.weight.normal_(0, 1)
            net.out.bias.normal_(0, 0.5)
    return model


def demo_photos(n: int, size: int) -> torch.Tensor:
    """The first n demo training photos, shorter side resized to ``size``, centre-cropped square."""
    root, names = demo_train_files()
    images = []
    for name in names[:n]:
        rgb = load_image(root / name, size)                             # (3, size, >= size) or transposed
        top, left = (rgb.shape[1] - size) // 2, (rgb.shape[2] - size) // 2
        images.append(rgb[:, top:top + size, left:left + size])
    return torch.stack(images)                                          # (n, 3, size, size)


# --- registry, configuration -------------------------------------------------------

def test_liang2016_is_registered_and_needs_a_checkpoint():
    cls = get_colorizer("liang2016")
    assert cls is Liang2016 and cls.needs_checkpoint and not cls.needs_reference


def test_default_model_has_the_documented_parameter_count():
    # per network: 11*11*64+64 + 2*(4*4*64*64+64) + 3*3*64*32+32 + 32+1 = 157,505
    model = Liang2016()
    assert sum(p.numel() for p in model.parameters()) == 2 * 157_505


def test_default_train_config_is_sgd_on_64_crops_of_256_images_and_the_loss_switches_at_100():
    config = Liang2016.default_train_config()
    assert (config["crop"], config["resize"], config["batch_size"]) == (64, 256, 64)
    assert json.loads(json.dumps(config)) == config
    assert "steps" not in config                       # the paper gives no run length
    assert Liang2016().params()["mse_iters"] == 100
    (sgd, _), = Liang2016().configure_optimizers(config).values()
    assert isinstance(sgd, torch.optim.SGD)


def test_params_round_trip_through_json_and_the_constructor():
    model = Liang2016(**SMALL, patch=32, gf_radius=3, mse_iters=7)
    params = json.loads(json.dumps(model.params()))
    assert Liang2016(**params).params() == model.params()


@pytest.mark.parametrize("config, error, message", [
    ({"widths": [4, 4, 4]}, ValueError, r"widths must be 4 positive integers, got \[4, 4, 4\]"),
    ({"patch": 8}, ValueError, "patch must be an integer above 8, got 8"),
    ({"gf_eps": 0}, ValueError, "gf_eps must be positive, got 0"),
    ({"mse_iters": -1}, ValueError, "mse_iters must be a non-negative integer, got -1"),
    ({"depth": 3}, TypeError, r"unknown liang2016 option\(s\) \['depth'\]"),
])
def test_bad_configuration_is_refused_naming_the_option(config, error, message):
    with pytest.raises(error, match=message):
        Liang2016(**config)


def test_configure_optimizers_gives_one_sgd_over_both_networks():
    model = Liang2016(**SMALL)
    optimizers = model.configure_optimizers({**Liang2016.default_train_config(), "lr": 0.5, "momentum": 0.8})
    (sgd, scheduler), = optimizers.values()
    assert isinstance(sgd, torch.optim.SGD) and scheduler is None
    assert sgd.param_groups[0]["lr"] == 0.5 and sgd.param_groups[0]["momentum"] == 0.8
    assert {id(p) for p in sgd.param_groups[0]["params"]} == {id(p) for p in model.parameters()}


# --- the network, tiling, the colour pipeline --------------------------------------

def test_a_patch_network_maps_a_64_patch_to_its_56_centre():
    assert PatchNet((4, 4, 4, 4))(torch.rand(3, 1, 64, 64)).shape == (3, 1, 56, 56)


@pytest.mark.parametrize("shape", [(2, 1, 40, 70), (1, 1, 5, 3), (1, 1, 1, 1), (1, 1, 57, 112)])
def test_colorize_returns_finite_ab_of_the_input_size(shape):
    ab = small_model().colorize(random_L(shape))
    assert ab.shape == (shape[0], 2, *shape[2:]) and ab.dtype == torch.float32
    assert torch.isfinite(ab).all() and ab.abs().max() <= 128


def test_predicted_chroma_stays_within_the_bt601_range():
    model = small_model()
    uv = model.predict_uv(gray_luma(random_L()))
    assert uv[:, 0].abs().max() <= 0.4361 and uv[:, 1].abs().max() <= 0.6150
    assert uv.abs().amax(dim=(0, 2, 3)).min() > 0.05                  # not collapsed to grey


def test_an_untrained_model_predicts_grey():
    ab = Liang2016(**SMALL).colorize(random_L())
    assert ab.abs().max() < 1e-3


def test_gray_luma_is_the_bt601_luma_of_the_neutral_grey_of_that_lightness():
    L = random_L((1, 1, 6, 6))
    grey = lab_to_rgb(torch.cat((L, torch.zeros_like(L), torch.zeros_like(L)), dim=1))
    y = gray_luma(L)
    torch.testing.assert_close(y, rgb_to_yuv(grey)[:, :1], rtol=0, atol=1e-6)
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("top, bottom, left, right", [(4, 4, 4, 4), (4, 30, 4, 9), (0, 0, 2, 0)])
def test_reflect_pad_mirrors_like_numpy_even_past_the_image_size(top, bottom, left, right):
    x = torch.arange(2 * 5 * 7, dtype=torch.float32).view(1, 2, 5, 7)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect")
    np.testing.assert_array_equal(reflect_pad(x, top, bottom, left, right).numpy(), expected)


def test_reflect_pad_repeats_a_single_pixel():
    assert torch.equal(reflect_pad(torch.ones(1, 1, 1, 1) * 3, 2, 1, 0, 4), torch.full((1, 1, 4, 5), 3.0))


def test_tiles_are_64_patches_at_stride_56_whose_centres_are_stitched():
    # a 60 x 120 image: 2 x 3 tiles of the image padded by 4 (+ 52 rows, + 48 columns) by reflection
    model = small_model()
    y = gray_luma(random_L((1, 1, 60, 120)))
    uv = model.predict_uv(y)
    padded = reflect_pad(y, 4, 2 * 56 - 60 + 4, 4, 3 * 56 - 120 + 4)
    with torch.no_grad():
        for i in range(2):
            for j in range(3):
                patch = padded[..., 56 * i:56 * i + 64, 56 * j:56 * j + 64]
                expected = model._chroma(patch)[..., :60 - 56 * i, :120 - 56 * j]
                tile = uv[..., 56 * i:56 * i + 56, 56 * j:56 * j + 56]
                torch.testing.assert_close(tile, expected, rtol=0, atol=1e-6)


def test_forward_is_tiling_then_guided_filter_then_yuv_to_lab():
    model = small_model(gf_radius=5)
    L = random_L()
    y = gray_luma(L)
    uv = guided_filter(y, model.predict_uv(y), radius=5, eps=1e-4)
    expected = rgb_to_lab(yuv_to_rgb(torch.cat((y, uv), dim=1)).clamp(0, 1))[:, 1:]
    torch.testing.assert_close(model.colorize(L), expected, rtol=0, atol=1e-4)
    assert not torch.allclose(small_model(refine=False).colorize(L), expected, atol=1e-2)


# --- determinism ------------------------------------------------------------------

def test_output_is_deterministic_under_a_seed_and_ignores_the_generator():
    L = random_L()
    first = small_model(seed=3).colorize(L)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    again = small_model(seed=3).colorize(L, generator=gens)
    assert torch.equal(first, again)
    assert not torch.equal(first, small_model(seed=4).colorize(L))


def test_an_image_gets_the_same_colours_alone_and_in_a_batch():
    model = small_model()
    L = random_L((3, 1, 30, 50))
    batched = model.colorize(L)
    torch.testing.assert_close(model.colorize(L[1:2]), batched[1:2], rtol=0, atol=1e-4)


# --- losses and training ------------------------------------------------------------

def test_binary_kl_is_zero_at_the_target_and_has_the_cross_entropy_gradient():
    t = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0])
    at_target = torch.logit(t.clamp(1e-7, 1 - 1e-7)).double()
    assert binary_kl_with_logits(at_target, t.double()).item() == pytest.approx(0, abs=1e-6)
    logits = torch.tensor([0.3, -1.0, 2.0, 0.0, -0.5], requires_grad=True)
    s = torch.sigmoid(logits)
    manual = (torch.xlogy(t, t) - t * torch.log(s)
              + torch.xlogy(1 - t, 1 - t) - (1 - t) * torch.log(1 - s)).mean()
    kl = binary_kl_with_logits(logits, t)
    torch.testing.assert_close(kl, manual)
    kl.backward()
    torch.testing.assert_close(logits.grad, (s - t).detach() / 5)


def test_training_overfits_four_real_photos():
    # 4 demo photos at 24 x 24 (one whole-image patch each, output 16 x 16), 100 SGD steps:
    # 30 with the MSE, 70 with the KL; both fall 7.1- to 15-fold over seeds 0-7, one and two torch
    # threads and oneDNN/ATen limited to AVX-512, AVX2 and SSE4.1; asserted 5-fold
    torch.manual_seed(0)
    model = Liang2016(widths=[16] * 4, mse_iters=30)
    optimizers = model.configure_optimizers({**Liang2016.default_train_config(), "lr": 10.0})
    batch = TrainBatch(demo_photos(4, 24), torch.full((4,), -1))
    history = [model.train_step(batch, step, optimizers) for step in range(100)]
    assert history[0]["mse"] / history[-1]["mse"] > 5
    assert history[0]["kl"] / history[-1]["kl"] > 5
    assert history[29]["loss"] == history[29]["mse"]
    assert history[30]["loss"] == pytest.approx(history[30]["kl"] / 2)


def test_train_step_learns_from_crops_of_any_size_above_8():
    torch.manual_seed(0)
    model = Liang2016(**SMALL)
    optimizers = model.configure_optimizers(Liang2016.default_train_config())
    before = [p.detach().clone() for p in model.parameters()]
    out = model.train_step(TrainBatch(torch.rand(2, 3, 30, 20), torch.full((2,), -1)), 0, optimizers)
    assert set(out) == {"loss", "mse", "kl"} and all(isinstance(v, float) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match=r"needs crops above 8 pixels, got \(8, 20\)"):
        model.train_step(TrainBatch(torch.rand(1, 3, 8, 20), torch.full((1,), -1)), 1, optimizers)


# --- checkpoints --------------------------------------------------------------------

def test_a_saved_model_loads_with_its_configuration_and_gives_the_same_output(tmp_path):
    model = small_model(gf_radius=7)
    save_checkpoint(tmp_path / "liang.pt", model_name="liang2016", state_dict=model.state_dict(),
                    config=model.params())
    loaded = get_colorizer("liang2016").from_checkpoint(tmp_path / "liang.pt")
    assert loaded.params() == model.params()
    L = random_L()
    assert torch.equal(loaded.colorize(L), model.colorize(L))


def test_loading_another_models_checkpoint_fails_naming_the_path(tmp_path):
    path = tmp_path / "mc.pt"
    MeanChroma(n_bins=4).save(path)
    with pytest.raises(CheckpointError, match=rf"{path}.*model 'mean_chroma', expected 'liang2016'"):
        Liang2016.from_checkpoint(path)


def test_loading_weights_of_another_shape_fails_naming_the_path(tmp_path):
    path = tmp_path / "wrong.pt"
    save_checkpoint(path, model_name="liang2016", state_dict=Liang2016(widths=[8] * 4).state_dict(),
                    config=Liang2016(**SMALL).params())
    with pytest.raises(CheckpointError, match=rf"(?s){path} does not fit 'liang2016'.*size mismatch"):
        Liang2016.from_checkpoint(path)


def test_loading_a_checkpoint_with_missing_weights_or_unknown_options_fails(tmp_path):
    state = Liang2016(**SMALL).state_dict()
    del state["net_v.out.bias"]
    save_checkpoint(tmp_path / "missing.pt", model_name="liang2016", state_dict=state,
                    config=Liang2016(**SMALL).params())
    with pytest.raises(CheckpointError, match=r"(?s)missing\.pt does not fit.*net_v\.out\.bias"):
        Liang2016.from_checkpoint(tmp_path / "missing.pt")
    save_checkpoint(tmp_path / "unknown.pt", model_name="liang2016",
                    state_dict=Liang2016(**SMALL).state_dict(), config={**SMALL, "depth": 3})
    with pytest.raises(CheckpointError, match=r"unknown\.pt does not fit.*'depth'"):
        Liang2016.from_checkpoint(tmp_path / "unknown.pt")


def test_from_checkpoint_needs_a_path_and_takes_no_overrides(tmp_path):
    with pytest.raises(ValueError, match="needs a checkpoint path"):
        Liang2016.from_checkpoint()
    with pytest.raises(CheckpointError, match="not found"):
        Liang2016.from_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(TypeError, match=r"'liang2016' has no inference setting 'refine' \(its settings: none\)"):
        Liang2016.from_checkpoint(tmp_path / "absent.pt", refine=False)
