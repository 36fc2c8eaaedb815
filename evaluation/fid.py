"""Fréchet Inception Distance (FID) between two sets of features: exact, without a matrix square root.

Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter, "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium", NeurIPS 2017 (arXiv:1706.08500). FID is the
squared Fréchet (2-Wasserstein) distance between the Gaussians fitted to the two sets::

    FID = ||mu_1 - mu_2||^2 + tr(S_1) + tr(S_2) - 2 tr sqrt(S_1 S_2)

with mu_i the feature means and S_i the unbiased (n - 1) covariances, ``np.cov(X, rowvar=False)``,
as pytorch-fid (mseitzer/pytorch-fid, ``src/pytorch_fid/fid_score.py``) and the original
TensorFlow code compute them. The features are the 2048-d pool3 outputs of FID's Inception
(`learned_metrics.inception.inception_features`); this module takes any (n, d) arrays and
depends on numpy and scipy only.

The trace term without ``sqrtm``
--------------------------------
pytorch-fid takes ``scipy.linalg.sqrtm(S_1 @ S_2)``: a Schur decomposition of a d x d
non-symmetric matrix (slow for d = 2048), inexact when S_1 S_2 is singular, which it always
is with fewer samples than dimensions, and then patched with ``eps = 1e-6`` added to both
diagonals, which itself moves the result. Here the term is computed exactly from any factors
S_i = L_i L_i^T:

    tr sqrt(S_1 S_2) = ||L_1^T L_2||_*   (the nuclear norm: the sum of the singular values)

Proof. S_1 S_2 = L_1 (L_1^T L_2 L_2^T) and (L_1^T L_2 L_2^T) L_1 = M M^T with M = L_1^T L_2;
AB and BA have the same non-zero eigenvalues, so those of S_1 S_2 are those of the positive
semi-definite M M^T, the squared singular values s_k^2 of M. S_1 S_2 is similar to (or, when
singular, the limit of matrices similar to) the positive semi-definite S_1^{1/2} S_2 S_1^{1/2},
so its principal square root, the one FID means, has eigenvalues s_k, whose sum is its trace.
Equivalently, tr (S_1^{1/2} S_2 S_1^{1/2})^{1/2} is the sum of the singular values of
S_1^{1/2} L_2, whose Gram matrix L_2^T S_1 L_2 is that of M. The result does not depend on
the choice of factors.

The factors, for n_i samples in d dimensions:

- n_i <= d: L_i = (X_i - mu_i)^T / sqrt(n_i - 1), d x n_i, straight from the data; S_i is
  never formed and M is n_1 x n_2 (a bootstrap of 500 images against 500 costs a 500 x 500
  SVD instead of a 2048 x 2048 Schur decomposition);
- n_i > d: L_i = V_i diag(sqrt(w_i)) from the symmetric eigendecomposition S_i = V_i diag(w_i) V_i^T,
  d x d, with rounding-level negative w_i set to 0.

tr(S_i) = ||L_i||_F^2. The SVD of a matrix is backward stable, so the trace term is accurate to
rounding relative to ||L_1|| ||L_2||; `frechet_distance` therefore agrees with pytorch-fid's
formula wherever ``sqrtm`` itself is accurate (n > d), and is the eps -> 0 limit of its patched
value where it is not.

Bootstrap resamples (``features[idx]`` with repeated rows) need nothing special: a repeated
row is one more sample of the empirical distribution, and the factor above stays exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FIDStatistics", "fid_statistics", "frechet_distance"]


@dataclass(frozen=True)
class FIDStatistics:
    """The Gaussian fitted to one set of features, kept as its mean and a factor of its covariance.

    ``covariance = factor @ factor.T``; ``factor`` is d x n (centred data over sqrt(n - 1)) for
    n <= d samples, d x d (symmetric eigen-factor) otherwise. Computing it once lets one real
    set be compared with many generated sets.
    """

    mean: np.ndarray  # (d,) float64
    factor: np.ndarray  # (d, k) float64, k = min(n, d) (or d for given moments)
    n: int | None  # number of samples, or None when built from given moments

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def covariance(self) -> np.ndarray:
        """(d, d), ``np.cov(features, rowvar=False)`` up to rounding."""
        return self.factor @ self.factor.T

    @classmethod
    def from_moments(cls, mean: np.ndarray, covariance: np.ndarray) -> FIDStatistics:
        """Statistics from a mean and a covariance, e.g. the ``mu`` and ``sigma`` of a pytorch-fid ``.npz`` file."""
        mean = np.asarray(mean, dtype=np.float64)
        covariance = np.asarray(covariance, dtype=np.float64)
        if mean.ndim != 1 or covariance.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(f"`mean` must have shape (d,) and `covariance` (d, d), "
                             f"got {mean.shape} and {covariance.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(covariance).all()):
            raise ValueError("`mean` and `covariance` must be finite")
        scale = max(float(np.abs(covariance).max()), np.finfo(np.float64).tiny)
        if np.abs(covariance - covariance.T).max() > 1e-8 * scale:
            raise ValueError("`covariance` must be symmetric")
        return cls(mean=mean, factor=_eigen_factor(covariance, check=True), n=None)


def _eigen_factor(covariance: np.ndarray, *, check: bool) -> np.ndarray:
    """L with L L^T = covariance, from its symmetric eigendecomposition; works for singular matrices.

    Negative eigenvalues are rounding and are set to 0; with ``check``, one below -1e-8 of the
    largest magnitude means the matrix is no covariance, and raises ValueError.
    """
    w, v = np.linalg.eigh((covariance + covariance.T) / 2)
    if check and w.min() < -1e-8 * max(float(np.abs(w).max()), np.finfo(np.float64).tiny):
        raise ValueError(f"`covariance` must be positive semi-definite, but has eigenvalue {w.min():.3g}")
    return v * np.sqrt(np.clip(w, 0.0, None))


def _features(features: np.ndarray, name: str) -> np.ndarray:
    """``features`` as float64 (n, d), n >= 2, all finite, or a ValueError naming the parameter."""
    array = np.asarray(features)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-d array (samples, dimensions), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"`{name}` must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if array.shape[0] < 2:
        raise ValueError(f"`{name}` must have at least 2 samples for a covariance, got {array.shape[0]}")
    if array.shape[1] < 1:
        raise ValueError(f"`{name}` must have at least 1 dimension, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` must be finite; {int((~np.isfinite(array)).sum())} values are NaN or infinite")
    return array


def fid_statistics(features: np.ndarray) -> FIDStatistics:
    """Mean and covariance factor of features (n, d), n >= 2, with the unbiased (n - 1) covariance.

    Raises ValueError for a non-2-d array, fewer than 2 samples or a non-finite value.
    """
    x = _features(features, "features")
    n, d = x.shape
    mean = x.mean(axis=0)
    if n <= d:
        factor = (x - mean).T / np.sqrt(n - 1)  # (d, n): the data themselves, S never formed
    else:
        factor = _eigen_factor(np.cov(x, rowvar=False), check=False)  # (d, d); PSD but for rounding
    return FIDStatistics(mean=mean, factor=factor, n=n)


def _statistics(value: np.ndarray | FIDStatistics, name: str) -> FIDStatistics:
    if isinstance(value, FIDStatistics):
        return value
    try:
        return fid_statistics(value)
    except ValueError as exc:
        raise ValueError(str(exc).replace("`features`", f"`{name}`")) from None


def frechet_distance(real_features: np.ndarray | FIDStatistics, fake_features: np.ndarray | FIDStatistics) -> float:
    """FID between two sets of features, each (n_i, d) with n_i >= 2, or their `FIDStatistics`.

    ``||mu_1 - mu_2||^2 + tr(S_1) + tr(S_2) - 2 tr sqrt(S_1 S_2)`` with the unbiased covariances;
    the trace term is the nuclear norm of L_1^T L_2 (see the module docstring), which is exact
    for any numbers of samples, including fewer than dimensions and repeated rows (a bootstrap
    resample ``features[idx]``). Symmetric in its arguments. A result below zero by rounding
    (identical sets) is returned as 0.0.

    Raises ValueError when the dimensions differ, a set has fewer than 2 samples, or a value is
    not finite.
    """
    real = _statistics(real_features, "real_features")
    fake = _statistics(fake_features, "fake_features")
    if real.dim != fake.dim:
        raise ValueError(f"`real_features` and `fake_features` must have the same number of dimensions, "
                         f"got {real.dim} and {fake.dim}")
    diff = real.mean - fake.mean
    cross = np.linalg.svd(real.factor.T @ fake.factor, compute_uv=False).sum()  # tr sqrt(S_1 S_2)
    value = diff @ diff + np.sum(real.factor ** 2) + np.sum(fake.factor ** 2) - 2.0 * cross
    return max(float(value), 0.0)
