"""LPIPS v0.1 (`learned_metrics.lpips`) on random weights in the released files' exact layout.

The key -> shape tables below are written out from the reference, not taken from the
module: the lpips package's ``weights/v0.1/alex.pth`` and ``vgg.pth``
(richzhang/PerceptualSimilarity, ``lpips/lpips.py``'s NetLinLayer) and torchvision's
``models/alexnet.py`` and ``models/vgg.py`` (configuration "D"), whose ``features``
indices the released ``alexnet-owt-7be5be79.pth`` and ``vgg16-397923af.pth`` use. A
layout mistake in the module therefore fails to load here. ``reference_lpips`` writes
the forward pass out again with plain torch ops in float64.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from learned_metrics import LearnedMetricError
from learned_metrics.lpips import load_lpips, lpips_distance

LIN_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
LIN_SHAPES = {net: {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate(channels)}
              for net, channels in LIN_CHANNELS.items()}

ALEX_CONVS = {  # torchvision AlexNet.features: index -> (out, in, kernel, stride, padding)
    0: (64, 3, 11, 4, 2), 3: (192, 64, 5, 1, 2), 6: (384, 192, 3, 1, 1), 8: (256, 384, 3, 1, 1),
    10: (256, 256, 3, 1, 1),
}
VGG_BLOCKS = (  # torchvision VGG16 ("D") features: the conv indices before each tap (relu1_2 ... relu5_3)
    ((0, 3, 64), (2, 64, 64)),
    ((5, 64, 128), (7, 128, 128)),
    ((10, 128, 256), (12, 256, 256), (14, 256, 256)),
    ((17, 256, 512), (19, 512, 512), (21, 512, 512)),
    ((24, 512, 512), (26, 512, 512), (28, 512, 512)),
)
BACKBONE_SHAPES = {
    "alex": {key: shape for i, (o, c, k, _, _) in ALEX_CONVS.items()
             for key, shape in ((f"features.{i}.weight", (o, c, k, k)), (f"features.{i}.bias", (o,)))},
    "vgg": {key: shape for block in VGG_BLOCKS for i, c, o in block
            for key, shape in ((f"features.{i}.weight", (o, c, 3, 3)), (f"features.{i}.bias", (o,)))},
}
# The released files also hold the classifier, which LPIPS ignores. Its real sizes (e.g. 4096 x 9216) would
# make this test write hundreds of megabytes, and ignored entries are not shape-checked, so they are small here.
CLASSIFIER_KEYS = {"alex": ("classifier.1", "classifier.4", "classifier.6"),
                   "vgg": ("classifier.0", "classifier.3", "classifier.6")}


def random_weights(net: str, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(backbone, lins) with He-scaled convolutions, so activations neither vanish nor explode, and
    non-negative linear weights, as in the released files (their minimum is 0)."""
    gen = torch.Generator().manual_seed(seed)
    backbone = {}
    for key, shape in BACKBONE_SHAPES[net].items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = (2.0 / fan_in) ** 0.5 if key.endswith("weight") else 0.05
        backbone[key] = torch.randn(shape, generator=gen) * scale
    for prefix in CLASSIFIER_KEYS[net]:
        backbone[f"{prefix}.weight"] = torch.randn(10, 8, generator=gen)
        backbone[f"{prefix}.bias"] = torch.randn(10, generator=gen)
    lins = {key: torch.rand(shape, generator=gen) + 0.1 for key, shape in LIN_SHAPES[net].items()}
    return backbone, lins


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, tuple[Path, Path, dict, dict]]:
    """Per net: (lin file, backbone file, backbone state dict, lin state dict), saved with torch.save."""
    folder = tmp_path_factory.mktemp("lpips_weights")
    files = {}
    for seed, net in enumerate(("alex", "vgg")):
        backbone, lins = random_weights(net, seed)
        lin_path, backbone_path = folder / f"{net}.pth", folder / f"{net}_backbone.pth"
        torch.save(lins, lin_path)
        torch.save(backbone, backbone_path)
        files[net] = (lin_path, backbone_path, backbone, lins)
    return files


@pytest.fixture(scope="module")
def alex(weights):
    lin_path, backbone_path, _, _ = weights["alex"]
    return load_lpips(lin_path, backbone_path, net="alex")


def images(seed: int, n: int, size: int) -> np.ndarray:
    """Smooth random colour images with some texture, (n, size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 4, 4, 3))
    smooth = np.repeat(np.repeat(coarse, size // 4 + 1, axis=1), size // 4 + 1, axis=2)[:, :size, :size]
    return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


def reference_lpips(net: str, backbone: dict, lins: dict, real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """LPIPS v0.1 from plain torch ops in float64, following lpips.py (im2tensor, ScalingLayer,
    normalize_tensor, NetLinLayer, spatial_average) and pretrained_networks.py (the slices)."""
    def w(i: int) -> torch.Tensor:
        return backbone[f"features.{i}.weight"].double()

    def b(i: int) -> torch.Tensor:
        return backbone[f"features.{i}.bias"].double()

    def taps(images: np.ndarray) -> list[torch.Tensor]:
        x = torch.from_numpy(images.astype(np.float64) / 127.5 - 1.0).permute(0, 3, 1, 2)
        x = (x - torch.tensor([-.030, -.088, -.188], dtype=torch.float64).view(1, 3, 1, 1)) \
            / torch.tensor([.458, .448, .450], dtype=torch.float64).view(1, 3, 1, 1)
        out = []
        if net == "alex":
            for i, (_, _, _, stride, padding) in ALEX_CONVS.items():
                if i in (3, 6):
                    x = F.max_pool2d(x, kernel_size=3, stride=2)
                x = F.relu(F.conv2d(x, w(i), b(i), stride=stride, padding=padding))
                out.append(x)
        else:
            for block_index, block in enumerate(VGG_BLOCKS):
                if block_index:
                    x = F.max_pool2d(x, kernel_size=2, stride=2)
                for i, _, _ in block:
                    x = F.relu(F.conv2d(x, w(i), b(i), padding=1))
                out.append(x)
        return out

    total = torch.zeros(len(real), dtype=torch.float64)
    for k, (f0, f1) in enumerate(zip(taps(real), taps(fake))):
        n0 = f0 / (torch.sqrt((f0 ** 2).sum(dim=1, keepdim=True)) + 1e-10)
        n1 = f1 / (torch.sqrt((f1 ** 2).sum(dim=1, keepdim=True)) + 1e-10)
        weight = lins[f"lin{k}.model.1.weight"].double().view(1, -1, 1, 1)
        total += ((n0 - n1) ** 2 * weight).sum(dim=1).mean(dim=(1, 2))
    return total.numpy()


@pytest.mark.parametrize("net, size", [("alex", 64), ("vgg", 32)])
def test_matches_the_forward_pass_written_out_by_hand(weights, net, size):
    lin_path, backbone_path, backbone, lins = weights[net]
    model = load_lpips(lin_path, backbone_path, net=net)
    real, fake = images(1, 3, size), images(2, 3, size)
    got = lpips_distance(model, real, fake)
    assert got.dtype == np.float64 and got.shape == (3,)
    np.testing.assert_allclose(got, reference_lpips(net, backbone, lins, real, fake), rtol=1e-5, atol=1e-7)


def test_identical_images_are_at_distance_zero_and_others_above_it(alex):
    real, fake = images(3, 4, 64), images(4, 4, 64)
    assert np.abs(lpips_distance(alex, real, real)).max() < 1e-6
    different = lpips_distance(alex, real, fake)
    assert (different > 0).all()   # lin weights >= 0.1 here; >= 0 holds for any non-negative ones
    np.testing.assert_allclose(lpips_distance(alex, fake, real), different, rtol=1e-5)


def test_batch_size_does_not_change_the_distances(alex):
    real, fake = images(5, 7, 48), images(6, 7, 48)
    whole = lpips_distance(alex, real, fake, batch_size=32)
    np.testing.assert_allclose(lpips_distance(alex, real, fake, batch_size=1), whole, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(lpips_distance(alex, real, fake, batch_size=3), whole, rtol=1e-5, atol=1e-7)


def test_runs_in_eval_mode_and_restores_the_training_flag(alex):
    real, fake = images(7, 2, 40), images(8, 2, 40)
    expected = lpips_distance(alex, real, fake)
    alex.train()
    try:
        np.testing.assert_allclose(lpips_distance(alex, real, fake), expected, rtol=1e-6)   # dropout stayed off
        assert alex.training
    finally:
        alex.eval()


def test_load_returns_an_eval_model_on_cpu_with_classifier_entries_ignored(weights):
    lin_path, backbone_path, backbone, _ = weights["alex"]
    assert any(key.startswith("classifier.") for key in backbone)
    model = load_lpips(lin_path, backbone_path)
    assert not model.training and next(model.parameters()).device.type == "cpu"
    assert not any(key.startswith("classifier.") for key in model.state_dict())


def test_a_state_dict_wrapped_under_state_dict_loads(weights, tmp_path):
    lin_path, backbone_path, _, lins = weights["alex"]
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": lins, "epoch": 3}, wrapped)
    real, fake = images(9, 2, 40), images(10, 2, 40)
    np.testing.assert_array_equal(lpips_distance(load_lpips(wrapped, backbone_path), real, fake),
                                  lpips_distance(load_lpips(lin_path, backbone_path), real, fake))


def bad_lins(weights, change) -> dict:
    lins = dict(weights["alex"][3])
    change(lins)
    return lins


@pytest.mark.parametrize("content, message", [
    ("missing", "no such file"),
    ("text", "cannot be read as a PyTorch weights file"),
    ([1, 2, 3], "holds a list, not a state dict"),
    ({"lin0.model.1.weight": "weights"}, "'lin0.model.1.weight' holds a str, not a tensor"),
    (lambda lins: lins.pop("lin3.model.1.weight"), "missing keys 'lin3.model.1.weight'"),
    (lambda lins: lins.update({"lin5.model.1.weight": torch.zeros(1, 8, 1, 1)}),
     "unexpected keys 'lin5.model.1.weight'"),
    (lambda lins: lins.update({"lin2.model.1.weight": torch.zeros(1, 100, 1, 1)}),
     "'lin2.model.1.weight' has shape (1, 100, 1, 1), expected (1, 384, 1, 1)"),
    (lambda lins: lins.update({"lin1.model.1.weight": torch.zeros(1, 192, 1, 1, dtype=torch.int64)}),
     "not floating-point"),
])
def test_a_bad_linear_layers_file_names_itself_and_the_problem(weights, tmp_path, content, message):
    path = tmp_path / "my_lins.pth"
    if content == "text":
        path.write_text("these are not weights\n")
    elif callable(content):
        torch.save(bad_lins(weights, content), path)
    elif content != "missing":
        torch.save(content, path)
    with pytest.raises(LearnedMetricError, match=re.escape(message)) as caught:
        load_lpips(path, weights["alex"][1])
    assert str(path) in str(caught.value) and "weights/v0.1/alex.pth" in str(caught.value)


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.pop("features.8.bias"), "missing keys 'features.8.bias'"),
    (lambda sd: sd.update({"features.12.weight": torch.zeros(3)}), "unexpected keys 'features.12.weight'"),
    (lambda sd: sd.update({"features.3.weight": torch.zeros(192, 64, 3, 3)}),
     "'features.3.weight' has shape (192, 64, 3, 3), expected (192, 64, 5, 5)"),
])
def test_a_bad_backbone_file_names_itself_and_the_problem(weights, tmp_path, change, message):
    backbone = dict(weights["alex"][2])
    change(backbone)
    path = tmp_path / "my_alexnet.pth"
    torch.save(backbone, path)
    with pytest.raises(LearnedMetricError, match=re.escape(message)) as caught:
        load_lpips(weights["alex"][0], path)
    assert str(path) in str(caught.value) and "alexnet-owt-7be5be79.pth" in str(caught.value)


def test_the_other_nets_files_are_refused(weights):
    with pytest.raises(LearnedMetricError, match="has shape"):
        load_lpips(weights["vgg"][0], weights["alex"][1], net="alex")
    with pytest.raises(LearnedMetricError, match="missing keys"):
        load_lpips(weights["alex"][0], weights["vgg"][1], net="alex")


def test_learned_metric_error_is_a_value_error_and_unknown_nets_are_refused(weights):
    assert issubclass(LearnedMetricError, ValueError)
    with pytest.raises(ValueError, match="Unknown net 'squeeze'"):
        load_lpips(weights["alex"][0], weights["alex"][1], net="squeeze")


@pytest.mark.parametrize("real, fake, message", [
    (np.zeros((2, 40, 40, 3), np.uint8), np.zeros((2, 40, 48, 3), np.uint8), "must have the same shape"),
    (np.zeros((2, 40, 40, 3), np.uint8), np.zeros((3, 40, 40, 3), np.uint8), "must have the same shape"),
    (np.zeros((2, 40, 40, 3), np.float32), np.zeros((2, 40, 40, 3), np.uint8), "`real` must be a uint8"),
    (np.zeros((2, 40, 40), np.uint8), np.zeros((2, 40, 40), np.uint8), "must have shape (N, H, W, 3)"),
    (np.zeros((2, 30, 40, 3), np.uint8), np.zeros((2, 30, 40, 3), np.uint8), "needs at least 31x31"),
])
def test_bad_images_raise_value_errors(alex, real, fake, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        lpips_distance(alex, real, fake)


def test_batch_size_must_be_positive(alex):
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer, got 0"):
        lpips_distance(alex, images(1, 1, 40), images(2, 1, 40), batch_size=0)
