"""FID: the Inception of pytorch-fid (`learned_metrics.inception`) and the distance (`evaluation.fid`).

The convolution table below is written out from the reference, not taken from the module:
torchvision's ``models/inception.py`` (BasicConv2d, InceptionA-E and the Inception3 stem),
which pytorch-fid's ``src/pytorch_fid/inception.py`` builds as ``inception_v3(num_classes=1008,
aux_logits=False)`` and into which it loads the released ``pt_inception-2015-12-05-6726825d.pth``
strictly. A layout mistake in the module therefore fails to load here, and ``reference_features``
writes the forward pass out again with plain torch ops in float64, including pytorch-fid's pooling
patches. The distance is checked against pytorch-fid's formula (``fid_score.py``'s
``calculate_frechet_distance``: ``scipy.linalg.sqrtm`` of S_1 S_2, with its 1e-6 diagonal offset
when that is not finite), re-implemented in ``sqrtm_fid``.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from evaluation.fid import FIDStatistics, fid_statistics, frechet_distance
from learned_metrics import LearnedMetricError
from learned_metrics.inception import inception_features, load_inception

Conv = tuple[int, int, tuple[int, int], int, tuple[int, int]]  # in, out, kernel (h, w), stride, padding (h, w)


def conv(cin: int, cout: int, kernel: int | tuple[int, int] = 1, stride: int = 1,
         padding: int | tuple[int, int] = 0) -> Conv:
    def pair(v):
        return v if isinstance(v, tuple) else (v, v)

    return cin, cout, pair(kernel), stride, pair(padding)


def block_a(cin: int, pool: int) -> dict[str, Conv]:
    return {"branch1x1": conv(cin, 64), "branch5x5_1": conv(cin, 48), "branch5x5_2": conv(48, 64, 5, padding=2),
            "branch3x3dbl_1": conv(cin, 64), "branch3x3dbl_2": conv(64, 96, 3, padding=1),
            "branch3x3dbl_3": conv(96, 96, 3, padding=1), "branch_pool": conv(cin, pool)}


def block_c(c7: int) -> dict[str, Conv]:
    row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding) of the factorized 7x7 convolutions
    return {"branch1x1": conv(768, 192), "branch7x7_1": conv(768, c7),
            "branch7x7_2": conv(c7, c7, row[0], padding=row[1]), "branch7x7_3": conv(c7, 192, col[0], padding=col[1]),
            "branch7x7dbl_1": conv(768, c7), "branch7x7dbl_2": conv(c7, c7, col[0], padding=col[1]),
            "branch7x7dbl_3": conv(c7, c7, row[0], padding=row[1]),
            "branch7x7dbl_4": conv(c7, c7, col[0], padding=col[1]),
            "branch7x7dbl_5": conv(c7, 192, row[0], padding=row[1]), "branch_pool": conv(768, 192)}


def block_e(cin: int) -> dict[str, Conv]:
    return {"branch1x1": conv(cin, 320), "branch3x3_1": conv(cin, 384),
            "branch3x3_2a": conv(384, 384, (1, 3), padding=(0, 1)),
            "branch3x3_2b": conv(384, 384, (3, 1), padding=(1, 0)),
            "branch3x3dbl_1": conv(cin, 448), "branch3x3dbl_2": conv(448, 384, 3, padding=1),
            "branch3x3dbl_3a": conv(384, 384, (1, 3), padding=(0, 1)),
            "branch3x3dbl_3b": conv(384, 384, (3, 1), padding=(1, 0)), "branch_pool": conv(cin, 192)}


BLOCKS: dict[str, dict[str, Conv]] = {
    "Mixed_5b": block_a(192, 32), "Mixed_5c": block_a(256, 64), "Mixed_5d": block_a(288, 64),
    "Mixed_6a": {"branch3x3": conv(288, 384, 3, stride=2), "branch3x3dbl_1": conv(288, 64),
                 "branch3x3dbl_2": conv(64, 96, 3, padding=1), "branch3x3dbl_3": conv(96, 96, 3, stride=2)},
    "Mixed_6b": block_c(128), "Mixed_6c": block_c(160), "Mixed_6d": block_c(160), "Mixed_6e": block_c(192),
    "Mixed_7a": {"branch3x3_1": conv(768, 192), "branch3x3_2": conv(192, 320, 3, stride=2),
                 "branch7x7x3_1": conv(768, 192), "branch7x7x3_2": conv(192, 192, (1, 7), padding=(0, 3)),
                 "branch7x7x3_3": conv(192, 192, (7, 1), padding=(3, 0)), "branch7x7x3_4": conv(192, 192, 3, stride=2)},
    "Mixed_7b": block_e(1280), "Mixed_7c": block_e(2048),
}
CONVS: dict[str, Conv] = {
    "Conv2d_1a_3x3": conv(3, 32, 3, stride=2), "Conv2d_2a_3x3": conv(32, 32, 3),
    "Conv2d_2b_3x3": conv(32, 64, 3, padding=1), "Conv2d_3b_1x1": conv(64, 80),
    "Conv2d_4a_3x3": conv(80, 192, 3),
    **{f"{block}.{branch}": spec for block, branches in BLOCKS.items() for branch, spec in branches.items()},
}
# The released file: every BasicConv2d's conv (no bias) and batch norm, the 1008-class fc, no AuxLogits.
SHAPES: dict[str, tuple[int, ...]] = {
    **{key: shape for name, (cin, cout, (kh, kw), _, _) in CONVS.items()
       for key, shape in ((f"{name}.conv.weight", (cout, cin, kh, kw)), (f"{name}.bn.weight", (cout,)),
                          (f"{name}.bn.bias", (cout,)), (f"{name}.bn.running_mean", (cout,)),
                          (f"{name}.bn.running_var", (cout,)), (f"{name}.bn.num_batches_tracked", ()))},
    "fc.weight": (1008, 2048), "fc.bias": (1008,),
}


def test_the_table_has_torchvisions_parameter_count_without_aux_logits_and_with_1008_classes():
    """torchvision's Inception_V3_Weights list 27,161,264 parameters (1000 classes, with AuxLogits).
    AuxLogits: conv0 768 -> 128 1x1 and conv1 128 -> 768 5x5, each with a BN weight and bias, and a
    768 -> 1000 fc; the 1008-class fc adds 8 x 2048 + 8."""
    aux = 768 * 128 + 2 * 128 + 128 * 768 * 25 + 2 * 768 + 768 * 1000 + 1000
    learned = sum(int(np.prod(shape)) for key, shape in SHAPES.items()
                  if key.endswith((".weight", ".bias")))
    assert learned == 27_161_264 - aux + 8 * 2048 + 8
    assert len(CONVS) == 94


def random_state(seed: int) -> dict[str, torch.Tensor]:
    """Random values in the released layout, He-scaled so that activations neither vanish nor explode
    over 48 layers, with positive running variances."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in SHAPES.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("conv.weight") or key == "fc.weight":
            state[key] = torch.randn(shape, generator=gen) * (2.0 / int(np.prod(shape[1:]))) ** 0.5
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("bn.weight"):
            state[key] = torch.rand(shape, generator=gen) * 0.4 + 0.8
        else:  # BN bias, running mean, fc bias
            state[key] = torch.randn(shape, generator=gen) * 0.1
    return state


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[str, dict[str, torch.Tensor]]:
    path = tmp_path_factory.mktemp("fid_weights") / "pt_inception-2015-12-05-6726825d.pth"
    state = random_state(0)
    torch.save(state, path)
    return str(path), state


@pytest.fixture(scope="module")
def model(weights):
    return load_inception(weights[0])


def images(seed: int, n: int, size: int) -> np.ndarray:
    """Smooth random colour images with some texture, (n, size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 4, 4, 3))
    smooth = np.repeat(np.repeat(coarse, size // 4 + 1, axis=1), size // 4 + 1, axis=2)[:, :size, :size]
    return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


def reference_features(state: dict[str, torch.Tensor], images: np.ndarray) -> np.ndarray:
    """pool3 features from plain torch ops in float64, following pytorch-fid's InceptionV3 (resize, normalize,
    blocks 0-3) and its FIDInceptionA/C/E_1/E_2 forward passes over torchvision's blocks."""
    def c(name: str, x: torch.Tensor) -> torch.Tensor:
        _, _, _, stride, padding = CONVS[name]
        x = F.conv2d(x, state[f"{name}.conv.weight"].double(), stride=stride, padding=padding)
        bn = [state[f"{name}.bn.{k}"].double() for k in ("running_mean", "running_var", "weight", "bias")]
        return F.relu(F.batch_norm(x, *bn, training=False, eps=1e-3))

    def chain(block: str, names: list[str], x: torch.Tensor) -> torch.Tensor:
        for name in names:
            x = c(f"{block}.{name}", x)
        return x

    def tf_avg(x: torch.Tensor) -> torch.Tensor:  # pytorch-fid's patch: the average ignores the padding
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)  # torchvision's ToTensor
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False).double()
    x = 2 * x - 1
    x = F.max_pool2d(c("Conv2d_2b_3x3", c("Conv2d_2a_3x3", c("Conv2d_1a_3x3", x))), 3, stride=2)
    x = F.max_pool2d(c("Conv2d_4a_3x3", c("Conv2d_3b_1x1", x)), 3, stride=2)
    for b in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = torch.cat([c(f"{b}.branch1x1", x), chain(b, ["branch5x5_1", "branch5x5_2"], x),
                       chain(b, ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"], x),
                       c(f"{b}.branch_pool", tf_avg(x))], 1)
    x = torch.cat([c("Mixed_6a.branch3x3", x), chain("Mixed_6a", ["branch3x3dbl_1", "branch3x3dbl_2",
                                                                  "branch3x3dbl_3"], x),
                   F.max_pool2d(x, 3, stride=2)], 1)
    for b in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = torch.cat([c(f"{b}.branch1x1", x), chain(b, [f"branch7x7_{i}" for i in (1, 2, 3)], x),
                       chain(b, [f"branch7x7dbl_{i}" for i in (1, 2, 3, 4, 5)], x),
                       c(f"{b}.branch_pool", tf_avg(x))], 1)
    x = torch.cat([chain("Mixed_7a", ["branch3x3_1", "branch3x3_2"], x),
                   chain("Mixed_7a", [f"branch7x7x3_{i}" for i in (1, 2, 3, 4)], x), F.max_pool2d(x, 3, stride=2)], 1)
    for b, pool in (("Mixed_7b", tf_avg), ("Mixed_7c", lambda t: F.max_pool2d(t, 3, stride=1, padding=1))):
        y = c(f"{b}.branch3x3_1", x)
        z = chain(b, ["branch3x3dbl_1", "branch3x3dbl_2"], x)
        x = torch.cat([c(f"{b}.branch1x1", x), c(f"{b}.branch3x3_2a", y), c(f"{b}.branch3x3_2b", y),
                       c(f"{b}.branch3x3dbl_3a", z), c(f"{b}.branch3x3dbl_3b", z), c(f"{b}.branch_pool", pool(x))], 1)
    return x.mean(dim=(2, 3)).numpy()


# --- the network -------------------------------------------------------------------------------------------------

def test_the_released_layout_loads_and_maps_images_to_finite_pool3_features(model):
    got = inception_features(model, images(1, 2, 64))
    assert got.dtype == np.float64 and got.shape == (2, 2048)
    assert np.isfinite(got).all() and (got >= 0).all() and got.std() > 0  # pooled ReLUs
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_features_match_the_forward_pass_written_out_by_hand(model, weights):
    batch = images(2, 2, 80)
    got = inception_features(model, batch)
    np.testing.assert_allclose(got, reference_features(weights[1], batch), rtol=1e-4, atol=1e-5)


def test_batch_size_does_not_change_the_features(model):
    batch = images(3, 3, 48)
    whole = inception_features(model, batch, batch_size=50)
    np.testing.assert_allclose(inception_features(model, batch, batch_size=1), whole, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(inception_features(model, batch, batch_size=2), whole, rtol=1e-5, atol=1e-5)


def test_a_file_without_num_batches_tracked_loads_the_same_network(weights, tmp_path, model):
    path = tmp_path / "old.pth"
    torch.save({k: v for k, v in weights[1].items() if not k.endswith("num_batches_tracked")}, path)
    batch = images(4, 1, 40)
    np.testing.assert_array_equal(inception_features(load_inception(path), batch), inception_features(model, batch))


def test_runs_in_eval_mode_and_restores_the_training_flag(model):
    batch = images(6, 2, 40)
    expected = inception_features(model, batch)
    model.train()
    try:
        np.testing.assert_array_equal(inception_features(model, batch), expected)  # running BN statistics
        assert model.training
    finally:
        model.eval()


def test_bad_images_and_batch_sizes_are_refused(model):
    with pytest.raises(ValueError, match="uint8"):
        inception_features(model, images(5, 1, 32).astype(np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        inception_features(model, images(5, 1, 32)[..., :1])
    with pytest.raises(ValueError, match="batch_size"):
        inception_features(model, images(5, 1, 32), batch_size=0)


def changed(state: dict[str, torch.Tensor], change) -> dict[str, torch.Tensor]:
    state = dict(state)
    change(state)
    return state


@pytest.mark.parametrize("content, message", [
    ("missing", "no such file"),
    ("text", "cannot be read as a PyTorch weights file"),
    ([1, 2, 3], "holds a list, not a state dict"),
    (lambda s: s.pop("Mixed_6c.branch7x7dbl_4.bn.running_var"),
     r"missing 1 key\(s\): 'Mixed_6c.branch7x7dbl_4.bn.running_var'"),
    (lambda s: s.update({"AuxLogits.fc.bias": torch.zeros(1008)}), r"unexpected 1 key\(s\): 'AuxLogits.fc.bias'"),
    (lambda s: s.update({"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}),
     r"'fc.weight' has shape \(1000, 2048\), expected \(1008, 2048\)"),
    (lambda s: s.update({"Mixed_7c.branch_pool.conv.weight": torch.zeros(192, 2048, 3, 3)}),
     r"'Mixed_7c.branch_pool.conv.weight' has shape \(192, 2048, 3, 3\), expected \(192, 2048, 1, 1\)"),
    (lambda s: s.update({"Conv2d_1a_3x3.bn.running_var": torch.full((32,), float("nan"))}),
     "'Conv2d_1a_3x3.bn.running_var' hold non-finite values"),
])
def test_unusable_files_raise_an_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    if content == "text":
        path.write_text("<html>Not Found</html>\n")
    elif callable(content):
        # The released layout with every tensor a broadcast zero: a few bytes on disk instead of 95 MB.
        layout = {key: torch.zeros((), dtype=torch.long if not shape else torch.float32).expand(shape)
                  for key, shape in SHAPES.items()}
        torch.save(changed(layout, content), path)
    elif content != "missing":
        torch.save(content, path)
    with pytest.raises(LearnedMetricError, match=message) as error:
        load_inception(path)
    assert str(path) in str(error.value) and isinstance(error.value, ValueError)


# --- the distance ------------------------------------------------------------------------------------------------

def sqrtm_fid(x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> float:
    """pytorch-fid's calculate_frechet_distance on np.mean / np.cov statistics: sqrtm(S_1 S_2), retried with
    ``eps`` on both diagonals when not finite, real part kept."""
    mu1, mu2, s1, s2 = x.mean(0), y.mean(0), np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(root).all():
        offset = np.eye(len(mu1)) * eps
        root = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(root.real))


def correlated(seed: int, n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ (rng.standard_normal((d, d)) / np.sqrt(d)) + rng.normal(0, 0.3, d)


# Measured relative differences (seeds 0-4): n > d 1e-14 at most, where sqrtm is accurate; n <= d up to 1e-7,
# which is sqrtm's error on the singular S_1 S_2 (the nuclear norm is exact there).
@pytest.mark.parametrize("n1, n2, d, rtol", [(500, 400, 64, 1e-10), (300, 250, 128, 1e-10),
                                             (40, 30, 96, 1e-6), (20, 200, 64, 1e-6), (64, 64, 64, 1e-6)])
def test_agrees_with_the_sqrtm_formula_with_fewer_and_more_samples_than_dimensions(n1, n2, d, rtol):
    for seed in range(3):
        x, y = correlated(seed, n1, d), correlated(seed + 100, n2, d) * 0.8
        np.testing.assert_allclose(frechet_distance(x, y), sqrtm_fid(x, y), rtol=rtol)


@pytest.mark.parametrize("d, rtol", [(32, 1e-10), (128, 1e-6)])  # more and fewer samples than dimensions
def test_bootstrap_resamples_with_repeated_rows_agree_with_the_sqrtm_formula(d, rtol):
    rng = np.random.default_rng(7)
    x, y = correlated(1, 60, d), correlated(2, 80, d)
    for _ in range(3):
        ix, iy = rng.integers(0, 60, 60), rng.integers(0, 80, 80)
        np.testing.assert_allclose(frechet_distance(x[ix], y[iy]), sqrtm_fid(x[ix], y[iy]), rtol=rtol)


@pytest.mark.parametrize("n", [5, 50])
def test_constant_features_have_zero_covariance(n):
    x, y = np.ones((n, 10)), correlated(8, 30, 10)
    diff = y.mean(0) - 1.0  # S_x = 0: the trace term vanishes, leaving ||mu_x - mu_y||^2 + tr(S_y)
    np.testing.assert_allclose(frechet_distance(x, y), diff @ diff + np.trace(np.cov(y, rowvar=False)), rtol=1e-12)
    assert frechet_distance(x, x + 2.0) == pytest.approx(40.0)


@pytest.mark.parametrize("n", [30, 300])  # fewer and more samples than dimensions
def test_identical_sets_are_at_zero_and_a_translation_costs_its_squared_length(n):
    x = correlated(3, n, 50)
    v = np.random.default_rng(4).normal(0, 1, 50)
    assert 0.0 <= frechet_distance(x, x) < 1e-9
    np.testing.assert_allclose(frechet_distance(x, x + v), v @ v, rtol=1e-9)


def test_symmetric_and_reusable_statistics():
    x, y = correlated(5, 40, 100), correlated(6, 500, 100)
    forward = frechet_distance(x, y)
    np.testing.assert_allclose(frechet_distance(y, x), forward, rtol=1e-12)
    np.testing.assert_allclose(frechet_distance(fid_statistics(x), y), forward, rtol=1e-12)
    moments = FIDStatistics.from_moments(y.mean(0), np.cov(y, rowvar=False))  # a pytorch-fid .npz's mu, sigma
    np.testing.assert_allclose(frechet_distance(x, moments), forward, rtol=1e-10)
    np.testing.assert_allclose(fid_statistics(x).covariance, np.cov(x, rowvar=False), atol=1e-12)


@pytest.mark.parametrize("x, y, message", [
    (np.zeros((5, 3)), np.zeros((5, 4)), "same number of dimensions, got 3 and 4"),
    (np.zeros((1, 3)), np.zeros((5, 3)), "`real_features` must have at least 2 samples"),
    (np.zeros((5, 3)), np.full((5, 3), np.nan), "`fake_features` must be finite"),
    (np.zeros(5), np.zeros((5, 3)), "`real_features` must be a 2-d array"),
])
def test_bad_features_are_refused(x, y, message):
    with pytest.raises(ValueError, match=message):
        frechet_distance(x, y)


def test_moments_that_are_no_covariance_are_refused():
    with pytest.raises(ValueError, match="positive semi-definite"):
        FIDStatistics.from_moments(np.zeros(2), np.diag([1.0, -0.5]))
    with pytest.raises(ValueError, match="symmetric"):
        FIDStatistics.from_moments(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"shape \(d,\)"):
        FIDStatistics.from_moments(np.zeros(3), np.eye(2))
