"""Automatic metrics (`evaluation.metrics`): the library-backed ones against the library (and PSNR against its
formula), the hand-written ones against worked examples from their definitions."""
from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from evaluation import metrics
from tests.conftest import colour_image


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    real = np.asarray(colour_image(3, (64, 48)).convert("RGB"))
    fake = np.clip(real.astype(np.int16) + np.array([30, -10, -25]), 0, 255).astype(np.uint8)
    return real, fake


def test_psnr_is_the_librarys_and_its_formula(pair):
    real, fake = pair
    mse = np.mean((real.astype(np.float64) - fake) ** 2)
    assert metrics.psnr(real, fake) == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12)
    assert metrics.psnr(real, fake) == pytest.approx(peak_signal_noise_ratio(real, fake, data_range=255), rel=1e-12)
    assert metrics.psnr(real, real) == math.inf


def test_ssim_is_the_librarys_with_wangs_settings(pair):
    real, fake = pair
    wang = structural_similarity(real, fake, data_range=255, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
    assert metrics.ssim(real, fake) == pytest.approx(wang, rel=1e-12)
    assert metrics.ssim(real, fake) != pytest.approx(  # scikit-image's defaults are another measure
        structural_similarity(real, fake, data_range=255, channel_axis=2), rel=1e-3)
    assert metrics.ssim(real, real) == pytest.approx(1.0)


def test_ciede2000_is_the_librarys_mean(pair):
    real, fake = pair
    expected = np.mean(deltaE_ciede2000(rgb2lab(real), rgb2lab(fake)))
    assert metrics.ciede2000(real, fake) == pytest.approx(expected, rel=1e-12)
    assert metrics.ciede2000(real, real) == 0.0


def _image(*colours: tuple[int, int, int]) -> np.ndarray:
    """A 4 x 4 image whose pixels take the ``colours`` in turn (a checkerboard for two)."""
    return np.array([colours[(i + j) % len(colours)] for i in range(4) for j in range(4)], np.uint8).reshape(4, 4, 3)


def test_colorfulness_worked_examples():
    # Grey: rg = yb = 0 everywhere.
    assert metrics.colorfulness(_image((90, 90, 90), (200, 200, 200))) == 0.0
    # Pure red: rg = 255, yb = 127.5, no spread: M = 0.3 * sqrt(255^2 + 127.5^2).
    assert metrics.colorfulness(_image((255, 0, 0))) == pytest.approx(0.3 * math.hypot(255, 127.5))
    # Red and green in equal parts: rg = +-255 (mean 0, sd 255), yb = 127.5 for both: M = 255 + 0.3 * 127.5.
    assert metrics.colorfulness(_image((255, 0, 0), (0, 255, 0))) == pytest.approx(293.25)


def test_raw_accuracy_auc_worked_example():
    # Distances 0, 10, 100, 200: the share within t is 1/4 for t < 10, 1/2 for 10 <= t < 100, 3/4 from 100 to 150.
    curve = metrics.accuracy_curve([0, 10, 100, 200])
    assert curve[0] == curve[9] == 0.25 and curve[10] == curve[99] == 0.5 and curve[100] == curve[150] == 0.75
    # Trapezoids between whole thresholds: 9 x 1/4, (1/4 + 1/2) / 2, 89 x 1/2, (1/2 + 3/4) / 2, 50 x 3/4 = 85.25.
    assert metrics.auc_of(curve) == pytest.approx(85.25 / 150)


def test_raw_accuracy_auc_of_images(pair):
    real, fake = pair
    assert metrics.raw_accuracy_auc(real, real) == 1.0
    grey = np.repeat(np.asarray(colour_image(3, (64, 48)).convert("L"))[..., None], 3, axis=2)
    distance = np.linalg.norm(rgb2lab(real)[..., 1:] - rgb2lab(grey)[..., 1:], axis=-1)  # the real image's chroma
    assert metrics.raw_accuracy_auc(real, grey) == pytest.approx(metrics.auc_of(metrics.accuracy_curve(distance)))
    assert 0 < metrics.raw_accuracy_auc(real, grey) < 1


def test_bad_input_is_refused_with_a_clear_error(pair):
    real, fake = pair
    with pytest.raises(ValueError, match="differ in size"):
        metrics.psnr(real, fake[:-1])
    with pytest.raises(ValueError, match="uint8 sRGB array"):
        metrics.ssim(real.astype(np.float32), fake)
    with pytest.raises(ValueError, match="uint8 sRGB array"):
        metrics.colorfulness(real[..., 0])


def test_all_metrics_are_the_functions_one_by_one(pair):
    real, fake = pair
    values = metrics.all_metrics(real, fake)
    assert values == pytest.approx({
        "psnr": metrics.psnr(real, fake), "ssim": metrics.ssim(real, fake),
        "ciede2000": metrics.ciede2000(real, fake), "colorfulness": metrics.colorfulness(fake),
        "real_colorfulness": metrics.colorfulness(real), "raw_accuracy_auc": metrics.raw_accuracy_auc(real, fake),
    }, rel=1e-12)
    assert metrics.all_metrics(real, real)["psnr"] is None  # infinite: two identical images
