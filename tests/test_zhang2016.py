"""zhang2016: the eccv16 layout, decoding, determinism, training and checkpoints."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from colorizers import get_colorizer
from colorizers.checkpoint import CheckpointError, save_checkpoint
from colorizers.lal2017 import Lal2017
from colorizers.quantization import BINS_FILE, ab_bins, soft_encode
from colorizers.training import TrainBatch, demo_train_files, load_image
from colorizers.zhang2016 import Zhang2016, estimate_prior, zhang2016

TINY = {"width_mult": 1 / 16}

# The eccv16 layer list (the paper's architecture table; models.md): per block, the number of
# 3x3 convs (ReLU after each, then one BatchNorm), the stride of its last conv, the dilation
# (= padding). model8: 4x4 stride-2 deconv, two 3x3 convs (ReLU after each), 1x1 conv to 313.
ECCV16_TABLE = [("model1", 2, 2, 1), ("model2", 2, 2, 1), ("model3", 3, 2, 1), ("model4", 3, 1, 1),
                ("model5", 3, 1, 2), ("model6", 3, 1, 2), ("model7", 3, 1, 1)]


def eccv16_reference(sd: dict[str, torch.Tensor], L: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The authors' eccv16 forward restated with functional ops on their key names.

    (L - 50) / 100 in; softmax(logits / T), then model_out (1x1, no bias), x4 bilinear, x 110 out.
    T = 1 is their module; other T the paper's annealed mean.
    """
    x = (L - 50) / 100
    for block, convs, stride, dilation in ECCV16_TABLE:
        for i in range(convs):
            x = F.relu(F.conv2d(x, sd[f"{block}.{2 * i}.weight"], sd[f"{block}.{2 * i}.bias"],
                                stride=stride if i == convs - 1 else 1, padding=dilation, dilation=dilation))
        bn = f"{block}.{2 * convs}"
        x = F.batch_norm(x, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"],
                         sd[f"{bn}.bias"], training=False, eps=1e-5)
    x = F.relu(F.conv_transpose2d(x, sd["model8.0.weight"], sd["model8.0.bias"], stride=2, padding=1))
    x = F.relu(F.conv2d(x, sd["model8.2.weight"], sd["model8.2.bias"], padding=1))
    x = F.relu(F.conv2d(x, sd["model8.4.weight"], sd["model8.4.bias"], padding=1))
    logits = F.conv2d(x, sd["model8.6.weight"], sd["model8.6.bias"])
    ab = F.conv2d(torch.softmax(logits / temperature, dim=1), sd["model_out.weight"])
    return F.interpolate(ab, scale_factor=4, mode="bilinear", align_corners=False) * 110


def authors_bins() -> torch.Tensor:
    """(313, 2) the authors' pts_in_hull, read with numpy from the shipped file."""
    return torch.tensor(np.loadtxt(BINS_FILE, comments="#"), dtype=torch.float32)



def eccv16_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the authors' eccv16 module, written out from its definition."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(key, cin, cout, k):
        shapes[f"{key}.weight"], shapes[f"{key}.bias"] = (cout, cin, k, k), (cout,)

    def bn(key, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{key}.{p}"] = (c,)
        shapes[f"{key}.num_batches_tracked"] = ()

    cin = 1
    for block, convs, width in ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512), (6, 3, 512), (7, 3, 512)):
        for i in range(convs):
            conv(f"model{block}.{2 * i}", cin, width, 3)
            cin = width
        bn(f"model{block}.{2 * convs}", width)
    shapes["model8.0.weight"], shapes["model8.0.bias"] = (512, 256, 4, 4), (256,)   # ConvTranspose: (in, out, k, k)
    conv("model8.2", 256, 256, 3)
    conv("model8.4", 256, 256, 3)
    conv("model8.6", 256, 313, 1)
    shapes["model_out.weight"] = (2, 313, 1, 1)
    return shapes


@pytest.fixture(scope="module")
def authors_state() -> dict[str, torch.Tensor]:
    """A state dict in the authors' released layout: He-scaled random weights (so activations keep
    their scale through the 22 layers), BatchNorm statistics near identity, logits of standard
    deviation about 1 (a spread at which T = 0.38 and T = 1 decode visibly apart), and model_out
    = the authors' bins / 110, as in their release."""
    g = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}
    for key, shape in eccv16_shapes().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith(".weight") and len(shape) == 4:
            fan_in = shape[0] * shape[2] * shape[3] / 4 if key == "model8.0.weight" else math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=g) * math.sqrt(2 / fan_in) * (5 if key == "model8.6.weight" else 1)
        elif key.endswith("running_var") or key.endswith(".weight"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean"):
            state[key] = torch.rand(shape, generator=g) * 0.2
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    state["model_out.weight"] = (authors_bins().T / 110)[:, :, None, None].contiguous()
    return state


@pytest.fixture(scope="module")
def authors_file(authors_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("authors") / "colorization_release_v2.pth"
    torch.save(authors_state, path)
    return path


@pytest.fixture(scope="module")
def full() -> Zhang2016:
    torch.manual_seed(0)
    return zhang2016().eval()


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Four real photos from the demo's training split, 48 x 48 centre crops, (4, 3, 48, 48)."""
    root, names = demo_train_files()
    crops = []
    for name in names[:4]:
        img = load_image(root / name, 48)
        top, left = (img.shape[1] - 48) // 2, (img.shape[2] - 48) // 2
        crops.append(img[:, top:top + 48, left:left + 48])
    return torch.stack(crops)


def rgb_to_L(rgb: torch.Tensor) -> torch.Tensor:
    from colorizers.color import rgb_to_lab
    return rgb_to_lab(rgb)[:, :1]


def random_L(shape=(2, 1, 32, 48), seed=0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 100


# --- layout -------------------------------------------------------------------------

def test_registered_under_its_name():
    assert get_colorizer("zhang2016") is Zhang2016
    assert Zhang2016.needs_checkpoint and not Zhang2016.needs_reference


def test_full_width_has_the_eccv16_keys_shapes_and_32_2m_parameters(full):
    state = full.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == eccv16_shapes()
    assert list(state) == list(eccv16_shapes())                                 # the same order, too
    assert sum(p.numel() for p in full.parameters()) == 32_236_011             # the paper's 32.2 M


def test_model_out_holds_the_authors_bin_centres_and_is_not_trained(full):
    assert torch.allclose(full.bin_centres(), authors_bins(), atol=1e-4)
    assert not full.model_out.weight.requires_grad


def test_authors_state_dict_loads_strictly_from_a_plain_file(full, tmp_path):
    g = torch.Generator().manual_seed(1)
    authors = {k: torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
               for k, v in full.state_dict().items()}
    authors["model_out.weight"] = full.model_out.weight.detach().clone()
    path = tmp_path / "colorization_release.pth"
    torch.save(authors, path)
    loaded = Zhang2016.from_checkpoint(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in authors.items())
    # older files have no num_batches_tracked: strict loading accepts them too
    without = {k: v for k, v in authors.items() if not k.endswith("num_batches_tracked")}
    Zhang2016().load_state_dict(without, strict=True)


def test_an_authors_file_colorizes_exactly_as_their_module_by_default(authors_file, authors_state, photos):
    """Within 1e-3 a*b* of the authors' forward restated from the layer list (measured: 4e-6),
    while the paper's T = 0.38 on the same weights is 35 to 41 a*b* away (maximum per image): the
    test tells them apart."""
    model = Zhang2016.from_checkpoint(authors_file)
    assert model.params()["temperature"] == 1.0
    L = torch.cat([rgb_to_L(photos), random_L((4, 1, 48, 48), seed=1)])
    with torch.no_grad():
        expected = eccv16_reference(authors_state, L)
        annealed = eccv16_reference(authors_state, L, temperature=0.38)
    assert (model.colorize(L) - expected).abs().max() <= 1e-3
    assert (annealed - expected).abs().max() > 2.0


def test_an_authors_file_takes_the_temperature_as_a_recorded_setting(authors_file, authors_state, photos):
    model = Zhang2016.from_checkpoint(authors_file, temperature=0.38)
    assert model.params()["temperature"] == 0.38
    L = rgb_to_L(photos)
    with torch.no_grad():
        expected = eccv16_reference(authors_state, L, temperature=0.38)
    assert (model.colorize(L) - expected).abs().max() <= 1e-3


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "0.38", True, None])
def test_a_bad_temperature_is_refused_for_either_kind_of_file(authors_file, tmp_path, value):
    model = Zhang2016(**TINY)
    trained = save_checkpoint(tmp_path / "z.pt", model_name="zhang2016", state_dict=model.state_dict(),
                              config=model.params())
    for path in (authors_file, trained):
        with pytest.raises(CheckpointError, match=r"does not fit 'zhang2016'.*temperature must be"):
            Zhang2016.from_checkpoint(path, temperature=value)


def test_settings_other_than_the_declared_ones_are_refused(authors_file):
    assert set(Zhang2016.inference_options) == {"temperature"}
    assert "annealed" in Zhang2016.inference_options["temperature"]
    with pytest.raises(TypeError, match="no inference setting 'width_mult'"):
        Zhang2016.from_checkpoint(authors_file, width_mult=0.5)


def test_a_checkpoint_trained_here_records_the_papers_temperature_and_decodes_with_it(tmp_path):
    torch.manual_seed(0)
    model = Zhang2016(**TINY).eval()
    assert model.params()["temperature"] == 0.38
    path = save_checkpoint(tmp_path / "z.pt", model_name="zhang2016", state_dict=model.state_dict(),
                           config=model.params())
    L = random_L((1, 1, 32, 32))
    loaded = Zhang2016.from_checkpoint(path)
    assert loaded.params()["temperature"] == 0.38
    logits = model.logits(L)
    with torch.no_grad():
        expected = F.interpolate(F.conv2d(torch.softmax(logits / 0.38, 1), model.model_out.weight) * 110,
                                 scale_factor=4, mode="bilinear", align_corners=False)
    assert torch.allclose(loaded.colorize(L), expected, atol=1e-4)
    hot = Zhang2016.from_checkpoint(path, temperature=1.0)
    assert hot.params()["temperature"] == 1.0 and not torch.allclose(hot.colorize(L), expected, atol=1e-4)


# --- inference ----------------------------------------------------------------------

@pytest.mark.parametrize("size", [(32, 48), (30, 45)])
def test_output_shape_dtype_and_range(size):
    torch.manual_seed(0)
    ab = Zhang2016(**TINY).colorize(random_L((2, 1, *size)))
    assert ab.shape == (2, 2, *size) and ab.dtype == torch.float32
    assert torch.isfinite(ab).all() and ab.abs().max() <= 110                  # a mean of bin centres


def test_output_is_deterministic_under_a_seed_and_ignores_generators():
    L = random_L()
    torch.manual_seed(3)
    a = Zhang2016(**TINY)
    torch.manual_seed(3)
    b = Zhang2016(**TINY)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    assert torch.equal(a.colorize(L), b.colorize(L))
    assert torch.equal(a.colorize(L), a.colorize(L, generator=gens))


def test_a_bfloat16_model_decodes_in_float32():
    torch.manual_seed(0)
    model = Zhang2016(**TINY)
    L = random_L()
    reference = model.colorize(L)
    ab = model.to(torch.bfloat16).colorize(L)
    assert ab.dtype == torch.float32 and torch.isfinite(ab).all()
    assert (ab - reference).abs().mean() < 5.0


def test_decoding_ignores_bf16_autocast():
    torch.manual_seed(0)
    model = Zhang2016(**TINY).eval()
    logits = model.logits(random_L((1, 1, 32, 32))).detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ab = model.decode(logits)
        colorized = model.colorize(random_L((1, 1, 32, 32)))
    assert ab.dtype == colorized.dtype == torch.float32
    assert torch.equal(ab, model.decode(logits))


def test_each_image_is_colorized_independently_of_its_batch():
    torch.manual_seed(0)
    model = Zhang2016(**TINY)
    L = random_L((3, 1, 32, 32))
    assert torch.allclose(model.colorize(L)[1:2], model.colorize(L[1:2]), atol=1e-5)


# --- training -----------------------------------------------------------------------

def test_train_config_defaults_are_the_papers():
    config = Zhang2016.default_train_config()
    assert (config["lr"], config["betas"], config["weight_decay"]) == (3e-5, [0.9, 0.99], 1e-3)
    assert (config["batch_size"], config["crop"], config["lr_milestones"], config["steps"]) == (40, 176, [225_000], 450_000)
    assert config["resize"] == 256          # images scaled to 256 (shorter side), then 176 crops


def test_learning_rate_drops_tenfold_at_the_milestone():
    model = Zhang2016(**TINY)
    optimizer, scheduler = model.configure_optimizers({**model.default_train_config(), "lr_milestones": [2]})["net"]
    lrs = []
    for _ in range(3):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([3e-5, 3e-5, 3e-6])


def test_overfits_a_batch_of_four_photos(photos):
    """60 Adam steps at lr 3e-3 on one batch cut the rebalanced cross-entropy by more than 1.8
    times: measured 2.30 to 3.26 times over seeds 0-7, one and two torch threads, and
    oneDNN/ATen limited to AVX-512, AVX2 and SSE4.1 (``ONEDNN_MAX_CPU_ISA``, ``ATEN_CPU_CAPABILITY``)."""
    torch.manual_seed(0)
    batch = TrainBatch(photos, torch.full((4,), -1))
    model = Zhang2016(**TINY)
    model.load_prepared(Zhang2016.prepare({"prior_images": None}, [batch]))
    optimizers = model.configure_optimizers({**model.default_train_config(), "lr": 3e-3})
    model.train()
    losses = [model.train_step(batch, step, optimizers)["loss"] for step in range(60)]
    assert losses[-1] < losses[0] / 1.8, losses[::10]


def test_prepare_estimates_the_prior_from_the_training_batches(photos):
    batch = TrainBatch(photos, torch.full((4,), -1))
    prior = Zhang2016.prepare({"prior_images": 2}, [batch, batch])["ab_prior"]
    assert prior.shape == (313,) and prior.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(prior, estimate_prior([TrainBatch(photos[:2], batch.labels[:2])], ab_bins()))


def solid(ab: tuple[float, float], L: float = 60.0, size: int = 8) -> torch.Tensor:
    """(1, 3, size, size) sRGB of one in-gamut Lab colour."""
    from colorizers.color import lab_to_rgb
    lab = torch.tensor([L, *ab]).view(1, 3, 1, 1).expand(1, 3, size, size)
    return lab_to_rgb(lab).clamp(0, 1)


def test_the_prior_and_the_soft_encoding_use_the_model_bin_list():
    """A one-colour image: the prior's peak, the loss's soft target and the authors' row all agree."""
    model = Zhang2016(**TINY)
    batch = TrainBatch(solid((20.0, -30.0)), torch.full((1,), -1))
    prepared = Zhang2016.prepare({"prior_images": None}, [batch])
    assert torch.allclose(prepared["ab_bins"], model.bin_centres(), atol=1e-3)
    row = authors_bins().tolist().index([20.0, -30.0])                   # 154 in the authors' file
    target = soft_encode(torch.tensor([20.0, -30.0]).view(1, 2, 1, 1), model.bin_centres())
    assert int(prepared["ab_prior"].argmax()) == int(target.argmax()) == row
    model.load_prepared(prepared)
    assert int(model.class_weights.argmin()) == row                      # the commonest colour weighs least


def test_a_prior_built_on_another_bin_order_is_refused():
    """An off-by-one between the prior's list and the model's bins fails loudly."""
    batch = TrainBatch(solid((20.0, -30.0)), torch.full((1,), -1))
    prepared = Zhang2016.prepare({"prior_images": None}, [batch])
    shifted = Zhang2016(**TINY)
    with torch.no_grad():
        shifted.model_out.weight.copy_(torch.roll(shifted.model_out.weight, 1, dims=1))
    with pytest.raises(ValueError, match="another bin list"):
        shifted.load_prepared(prepared)
    with pytest.raises(ValueError, match="another bin list"):
        Zhang2016(**TINY).load_prepared({**prepared, "ab_bins": torch.roll(prepared["ab_bins"], 1, dims=0)})


# --- checkpoints --------------------------------------------------------------------

def test_checkpoint_round_trip_gives_identical_output(tmp_path):
    torch.manual_seed(0)
    model = Zhang2016(**TINY)
    path = save_checkpoint(tmp_path / "z.pt", model_name="zhang2016", state_dict=model.state_dict(),
                           config=model.params())
    L = random_L()
    assert torch.equal(Zhang2016.from_checkpoint(path).colorize(L), model.colorize(L))


def test_loading_a_checkpoint_of_another_model_fails_clearly(tmp_path):
    lal = Lal2017(width_mult=1 / 16, critic_width_mult=1 / 16, num_classes=4)
    path = save_checkpoint(tmp_path / "lal.pt", model_name="lal2017", state_dict=lal.state_dict(), config=lal.params())
    with pytest.raises(CheckpointError, match="lal.pt is a checkpoint of model 'lal2017', expected 'zhang2016'"):
        Zhang2016.from_checkpoint(path)


def test_loading_weights_of_the_wrong_width_fails_clearly(tmp_path):
    model = Zhang2016(width_mult=1 / 8)
    path = save_checkpoint(tmp_path / "w.pt", model_name="zhang2016", state_dict=model.state_dict(),
                           config={**model.params(), "width_mult": 1 / 16})
    with pytest.raises(CheckpointError, match=r"(?s)w.pt does not fit 'zhang2016'.*size mismatch for model1.0.weight"):
        Zhang2016.from_checkpoint(path)


def test_loading_a_plain_state_dict_of_another_layout_fails_clearly(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model1.0.weight": torch.zeros(3, 1, 3, 3)}, path)
    with pytest.raises(CheckpointError, match="other.pth is not an eccv16 state dict"):
        Zhang2016.from_checkpoint(path)


def test_an_unknown_config_key_is_refused():
    with pytest.raises(TypeError, match="widht_mult"):
        Zhang2016(widht_mult=0.5)
