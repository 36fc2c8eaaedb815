"""zhang2016: the eccv16 layout, decoding, determinism, training and checkpoints."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from colorizers import get_colorizer
from colorizers.checkpoint import CheckpointError, save_checkpoint
from colorizers.lal2017 import Lal2017
from colorizers.quantization import ab_bins
from colorizers.training import TrainBatch, demo_train_files, load_image
from colorizers.zhang2016 import Zhang2016, estimate_prior, zhang2016

TINY = {"width_mult": 1 / 16}



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


def test_model_out_holds_the_bin_centres_and_is_not_trained(full):
    assert torch.allclose(full.bin_centres(), ab_bins(), atol=1e-4)
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


def test_temperature_1_reproduces_the_eccv16_forward_pass(full):
    """eccv16: upsample4(model_out(softmax(model8(...)))) * 110, with (L - 50) / 100 in."""
    model = Zhang2016(temperature=1.0).eval()
    model.load_state_dict(full.state_dict())
    L = random_L((1, 1, 64, 64))
    with torch.no_grad():
        x = (L - 50) / 100
        for i in range(1, 9):
            x = getattr(full, f"model{i}")(x)
        expected = F.interpolate(full.model_out(torch.softmax(x, dim=1)), scale_factor=4, mode="bilinear") * 110
    assert torch.allclose(model.colorize(L), expected, atol=1e-4)


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
    assert torch.allclose(prior, estimate_prior([TrainBatch(photos[:2], batch.labels[:2])]))


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
