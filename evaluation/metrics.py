"""Automatic metrics of a colorization against its real image, on the very pixels raters saw.

Each function takes two sRGB images of the same size as uint8 arrays (H, W, 3): the
real one first, then the colorization (``colorfulness`` takes one image).

psnr
    Peak signal-to-noise ratio on sRGB, in dB (`skimage.metrics.peak_signal_noise_ratio`,
    data range 255). Two identical images give inf.
ssim
    Structural similarity on sRGB (`skimage.metrics.structural_similarity`) with the
    settings of Wang et al. (2004), which define it: an 11x11 Gaussian window of sigma 1.5,
    population covariances, K1 = 0.01, K2 = 0.03; averaged over the three channels.
    scikit-image's own defaults (a 7x7 uniform window) give other numbers; papers that
    report SSIM use Wang's.
ciede2000
    Mean CIEDE2000 colour difference per pixel (`skimage.color.deltaE_ciede2000` on
    `skimage.color.rgb2lab`, D65, 2 degree observer).
colorfulness
    Hasler and Suesstrunk (2003), "Measuring colourfulness in natural images", the metric
    they retain, computed in sRGB: rg = R - G, yb = (R + G) / 2 - B on 0-255 values,
    M = sqrt(sd(rg)^2 + sd(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2), with population
    standard deviations. Written here: no well-kept library computes it.
raw_accuracy_auc
    Zhang, Isola and Efros (2016), section 3.1, "raw accuracy": the share of pixels whose
    predicted ab lies within a threshold (Euclidean distance in ab, <=) of the real ab,
    for every whole threshold from 0 to 150, and the area under that curve divided by 150
    (the trapezoidal rule between whole thresholds). The paper gives the sweep and the
    normalisation, not the step or the integration rule: these are the usual choices of
    code that reports it. Written here: no well-kept library computes it. Their
    class-rebalanced variant is not computed.

Depends on numpy and scikit-image (imported by this module only: `evaluation` itself
needs numpy and scipy alone).
"""
from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

AUC_THRESHOLDS = np.arange(151)  # 0 .. 150, as Zhang et al.


def _pair(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    real, fake = np.asarray(real), np.asarray(fake)
    for name, image in (("real", real), ("colorized", fake)):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"the {name} image must be a uint8 sRGB array of shape (H, W, 3), "
                             f"got {image.dtype} {image.shape}")
    if real.shape != fake.shape:
        raise ValueError(f"the two images differ in size: {real.shape} and {fake.shape}")
    return real, fake


def psnr(real: np.ndarray, fake: np.ndarray) -> float:
    real, fake = _pair(real, fake)
    if np.array_equal(real, fake):
        return float("inf")  # scikit-image divides by a zero error (and warns)
    return float(peak_signal_noise_ratio(real, fake, data_range=255))


def ssim(real: np.ndarray, fake: np.ndarray) -> float:
    real, fake = _pair(real, fake)
    return float(structural_similarity(real, fake, data_range=255, channel_axis=2, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False, K1=0.01, K2=0.03))


def ciede2000(real: np.ndarray, fake: np.ndarray) -> float:
    real, fake = _pair(real, fake)
    return float(np.mean(deltaE_ciede2000(rgb2lab(real), rgb2lab(fake))))


def colorfulness(image: np.ndarray) -> float:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"the image must be a uint8 sRGB array of shape (H, W, 3), got {image.dtype} {image.shape}")
    r, g, b = (image[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, (r + g) / 2 - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def raw_accuracy_curve(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """The share of pixels within each threshold of `AUC_THRESHOLDS` (ab distance <= threshold)."""
    real, fake = _pair(real, fake)
    return accuracy_curve(np.linalg.norm(rgb2lab(real)[..., 1:] - rgb2lab(fake)[..., 1:], axis=-1))


def accuracy_curve(distances: np.ndarray) -> np.ndarray:
    """The share of ``distances`` at or below each threshold of `AUC_THRESHOLDS`."""
    distances = np.sort(np.asarray(distances, dtype=np.float64).ravel())
    return np.searchsorted(distances, AUC_THRESHOLDS, side="right") / distances.size


def raw_accuracy_auc(real: np.ndarray, fake: np.ndarray) -> float:
    return auc_of(raw_accuracy_curve(real, fake))


def auc_of(curve: np.ndarray) -> float:
    """The normalised area under a raw-accuracy curve sampled at `AUC_THRESHOLDS` (trapezoidal rule)."""
    return float(np.trapezoid(curve, AUC_THRESHOLDS) / AUC_THRESHOLDS[-1])


def all_metrics(real: np.ndarray, fake: np.ndarray) -> dict[str, float | None]:
    """Every metric above for one pair, converting each image to CIELAB once (CIEDE2000 and the AuC share it).

    Keys: ``psnr`` (None for two identical images, whose PSNR is infinite), ``ssim``,
    ``ciede2000``, ``colorfulness`` (of the colorization), ``real_colorfulness`` and
    ``raw_accuracy_auc``; the same numbers as the functions one by one.
    """
    real, fake = _pair(real, fake)
    lab_real, lab_fake = rgb2lab(real), rgb2lab(fake)
    value = psnr(real, fake)
    return {
        "psnr": None if value == float("inf") else value,
        "ssim": ssim(real, fake),
        "ciede2000": float(np.mean(deltaE_ciede2000(lab_real, lab_fake))),
        "colorfulness": colorfulness(fake),
        "real_colorfulness": colorfulness(real),
        "raw_accuracy_auc": auc_of(accuracy_curve(np.linalg.norm(lab_real[..., 1:] - lab_fake[..., 1:], axis=-1))),
    }
