"""The guided filter of He, Sun and Tang, batched, on torch tensors.

He, Sun, Tang, "Guided Image Filtering", ECCV 2010 and IEEE TPAMI 35(6), 2013,
Algorithm 1. For a guide I and an input p, in every window w_k of radius r::

    a_k = cov_k(I, p) / (var_k(I) + eps)        b_k = mean_k(p) - a_k mean_k(I)
    q_i = mean over the windows k containing i of (a_k I_i + b_k)

so q follows the edges of I while taking its values from p. Liang et al. (2016)
refine their patch-wise chroma with it, the grayscale image as guide.

Choices
-------
* ``radius`` is the half-width: a window covers (2 r + 1) x (2 r + 1) pixels.
  He's papers and code take the radius; Liang et al.'s "filter size 40" could
  mean either a radius of 40 or a window of 40 (an even width, which has no
  centre pixel, so the radius reading is the likelier one). `colorizers.liang2016`
  uses radius 40.
* Borders: a window is cut off by the image edge, and every mean divides by the
  number of pixels actually in it, as He's reference code does (its box filter
  divided by the box filter of an all-ones image). No padding values enter.
* Each mean is a box filter computed from cumulative sums along each axis in
  turn (the separable form of an integral image): O(1) per pixel whatever the
  radius. The sums run on mean-subtracted inputs: var, cov and hence ``a`` do
  not change under a constant shift of I or p, and ``q`` moves with the shift
  of p, so this is exact, and it keeps float32 cumulative sums small (the
  variances are differences of nearly equal means, with ``eps`` = 1e-4 to beat).
* dtypes: float32 and float64 are computed in their own precision; float16 and
  bfloat16 are computed in float32 and returned in the input's dtype.
"""
from __future__ import annotations

import torch

__all__ = ["box_mean", "guided_filter"]


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of ``x`` (..., H, W) over each pixel's (2 r + 1)^2 window, cut off at the borders.

    Every output is the plain average of the pixels of its window that lie inside
    the image (He et al.'s normalisation by the window count).
    """
    _check_radius(radius)
    H, W = x.shape[-2:]
    sums = _box_sum_1d(_box_sum_1d(x, radius, -2), radius, -1)     # (..., H, W)
    count = _window_count(H, radius, x.device)[:, None] * _window_count(W, radius, x.device)
    return sums / count.to(x.dtype)                                  # (H, W) broadcast


def guided_filter(
    guide: torch.Tensor, src: torch.Tensor, *, radius: int = 40, eps: float = 1e-4
) -> torch.Tensor:
    """Filter ``src`` with the gray-scale (or per-channel) ``guide``.

    Parameters
    ----------
    guide : floating tensor (B, 1, H, W) or (B, C, H, W); intensities in
        [0, 1] for ``eps`` to mean what it says.
    src : floating tensor (B, C, H, W), the image to filter (any units: the
        filter is linear in ``src``).
    radius : window half-width r >= 0 (window (2 r + 1)^2 pixels).
    eps : regularisation > 0, in squared guide units; windows whose guide
        variance is well below ``eps`` are smoothed, those well above keep edges.

    Returns
    -------
    Tensor (B, C, H, W) of ``src``'s dtype on ``src``'s device.
    """
    _check_radius(radius)
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    if src.ndim != 4:
        raise ValueError(f"src must have shape (B, C, H, W), got {tuple(src.shape)}")
    if guide.ndim != 4 or guide.shape[0] != src.shape[0] or guide.shape[2:] != src.shape[2:] \
            or guide.shape[1] not in (1, src.shape[1]):
        raise ValueError(
            f"guide must have shape (B, 1, H, W) or (B, C, H, W) matching src "
            f"{tuple(src.shape)}, got {tuple(guide.shape)}"
        )
    if not (guide.is_floating_point() and src.is_floating_point()):
        raise TypeError(f"guide and src must be floating point, got {guide.dtype} and {src.dtype}")
    work = torch.promote_types(torch.promote_types(guide.dtype, src.dtype), torch.float32)
    I = guide.to(work)
    p = src.to(work)
    # centre both (see the module docstring): a is unchanged, q moves with p's shift
    p_shift = p.mean(dim=(-2, -1), keepdim=True)                      # (B, C, 1, 1)
    I = I - I.mean(dim=(-2, -1), keepdim=True)
    p = p - p_shift

    mean_I = box_mean(I, radius)                                      # (B, 1|C, H, W)
    mean_p = box_mean(p, radius)                                      # (B, C, H, W)
    cov_Ip = box_mean(I * p, radius) - mean_I * mean_p
    var_I = box_mean(I * I, radius) - mean_I * mean_I
    a = cov_Ip / (var_I + eps)                                        # (B, C, H, W)
    b = mean_p - a * mean_I
    q = box_mean(a, radius) * I + box_mean(b, radius) + p_shift
    return q.to(src.dtype)


def _box_sum_1d(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Sum over [i - r, i + r] cut to [0, n - 1] along ``dim``, from one cumulative sum."""
    n = x.shape[dim]
    csum = torch.cumsum(x, dim=dim)
    zero = torch.zeros_like(csum.narrow(dim, 0, 1))
    csum = torch.cat((zero, csum), dim=dim)                           # n + 1 along dim; csum[j] = sum x[:j]
    idx = torch.arange(n, device=x.device)
    hi = (idx + radius + 1).clamp(max=n)
    lo = (idx - radius).clamp(min=0)
    return csum.index_select(dim, hi) - csum.index_select(dim, lo)


def _window_count(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """How many of the 2 r + 1 positions around each of n indices lie in [0, n - 1]."""
    idx = torch.arange(n, device=device)
    return (idx + radius + 1).clamp(max=n) - (idx - radius).clamp(min=0)


def _check_radius(radius: int) -> None:
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
