"""Zhang et al.'s quantized a*b* space: bins, soft encoding, class rebalancing, decoding.

Zhang, Isola, Efros, "Colorful Image Colorization" (ECCV 2016) treat colorization
as classification: a*b* is quantized on a grid of 10 into Q = 313 in-gamut bins,
each pixel's true colour becomes a soft distribution over its nearest bins, the
cross-entropy is reweighted towards rare colours, and a predicted distribution is
turned back into one colour by the *annealed mean*. Lal et al. (2017) reuse all of
it. Everything here is batched torch on any device; statistics and decoding run
in float32 whatever the network's dtype, with autocast switched off (`float32`),
because bf16's 8-bit mantissa cannot hold a softmax over 313 classes or a*b* to
a fraction of a unit.

Choices the paper leaves open
-----------------------------
* **The bins** (`ab_bins`) are the authors' list, in the authors' order: the
  313 centres of ``resources/pts_in_hull.npy`` in github.com/richzhang/colorization
  (BSD-2-Clause licence, copyright its authors; see that repository's LICENSE),
  shipped as ``zhang2016_pts_in_hull.txt`` beside this module, one ``a b`` row
  per bin, sorted by a*, then b*. The paper only says "the Q = 313 values which
  are in gamut" of a grid of 10 on [-110, 110]^2. A rule of our own (grid
  centres within one grid diagonal of the sRGB gamut, which this module used
  before) agreed with the authors on 310 of the 313 centres only, and so put
  189 of the shared ones at other indices; the order is what makes channel i of
  the authors' released weights mean bin i, so only their list will do.
  Every statistic here (soft encoding, prior, weights, decoding) takes the
  centres as an argument, so a model uses one list throughout (`zhang2016` and
  `lal2017` check that the prior they are handed was built on their own list).
* **Soft encoding** (`soft_encode`): Gaussian weights with sigma = 5 on the
  ``neighbours`` nearest bin centres, normalised to sum to 1. The paper says 5
  neighbours; the authors' Caffe training layer used 10. The default is the
  paper's.
* **Empirical prior** (`empirical_prior`): the histogram of the nearest bin of
  every training pixel, smoothed over the bin centres with a Gaussian of sigma 5
  (the paper smooths with G_sigma, sigma = 5, without saying on which grid; on the
  bin centres, neighbours at distance 10 get weight e^-2 of the centre's).
* **Rebalancing weights** (`rebalancing_weights`): w = ((1 - lambda) p + lambda / Q)^-1,
  normalised so that sum_q p_q w_q = 1, lambda = 0.5, as in the paper (the
  authors' code mixes with a uniform over the bins of non-zero prior instead of
  all Q; on ImageNet, where every bin has mass after smoothing, the two agree).
* **Annealed mean** (`annealed_mean`): softmax(logits / T) then the expectation
  over the bin centres, T = 0.38 (the authors' deploy net scales the logits by
  1 / 0.38 = 2.606 before its softmax). T = 1 is the plain mean, T -> 0 the mode.
* **The loss** (`rebalanced_cross_entropy`), as the authors train: the target
  a*b* is subsampled to the logits' resolution (one pixel per output position,
  not an average, so that a target is always a colour the image holds rather than
  a blend across an edge), soft-encoded, and each pixel's cross-entropy weighted
  by the rebalancing weight of the argmax bin of its soft target (its nearest
  bin). Images with no target pixel of |a*| or |b*| above 5 are left out (the
  authors' non-grey mask). The mean is over the pixels of the images kept; Adam
  is invariant to that scale.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from .distributed import shared_divisor

__all__ = [
    "float32", "GRID", "AB_MAX", "BINS_FILE", "ab_bins", "nearest_bin", "soft_encode", "bin_histogram",
    "empirical_prior", "rebalancing_weights", "annealed_mean", "subsample",
    "rebalanced_cross_entropy",
]

GRID = 10.0          # bin spacing in a*b* units
AB_MAX = 110.0       # bin centres are multiples of GRID in [-AB_MAX, AB_MAX]
SIGMA = 5.0          # Gaussian of the soft encoding and of the prior's smoothing
TEMPERATURE = 0.38   # the paper's annealed-mean temperature


def float32(device: torch.device) -> contextlib.AbstractContextManager:
    """A context with autocast off on ``device``, so that float32 inputs stay float32 inside."""
    return torch.autocast(device_type=device.type, enabled=False)


BINS_FILE = Path(__file__).with_name("zhang2016_pts_in_hull.txt")


@functools.lru_cache(maxsize=1)
def _ab_bins() -> torch.Tensor:
    rows = [line.split() for line in BINS_FILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    bins = torch.tensor([[float(a), float(b)] for a, b in rows], dtype=torch.float32)
    if bins.shape != (313, 2):
        raise RuntimeError(f"{BINS_FILE} holds {len(bins)} rows, expected the 313 a*b* bins")
    return bins


def ab_bins() -> torch.Tensor:
    """The Q = 313 bin centres (Q, 2) in a*b* units, the authors' list in the authors' order.

    Row i is the centre of output channel i of Zhang et al.'s released networks
    (read from ``zhang2016_pts_in_hull.txt``; see the module docstring). Returns a
    new float32 CPU tensor.
    """
    return _ab_bins().clone()


def _flat_ab(ab: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) -> (B*H*W, 2) float32."""
    if ab.ndim != 4 or ab.shape[1] != 2:
        raise ValueError(f"ab must have shape (B, 2, H, W), got {tuple(ab.shape)}")
    return ab.float().permute(0, 2, 3, 1).reshape(-1, 2)


def nearest_bin(ab: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of the nearest bin centre of every pixel: (B, 2, H, W) -> (B, H, W) long."""
    B, _, H, W = ab.shape
    centres = centres.to(device=ab.device, dtype=torch.float32)
    with float32(ab.device):
        return torch.cdist(_flat_ab(ab), centres).argmin(dim=1).view(B, H, W)


def soft_encode(
    ab: torch.Tensor, centres: torch.Tensor, *, neighbours: int = 5, sigma: float = SIGMA
) -> torch.Tensor:
    """Soft-encode a*b* over the bins: (B, 2, H, W) -> (B, Q, H, W) float32, sums of 1.

    Each pixel gets Gaussian weights exp(-d^2 / (2 sigma^2)) on its ``neighbours``
    nearest bin centres (5 in the paper, 10 in the authors' training code) and 0
    elsewhere.
    """
    if not 1 <= neighbours <= len(centres):
        raise ValueError(f"neighbours must be in 1..{len(centres)}, got {neighbours}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    B, _, H, W = ab.shape
    centres = centres.to(device=ab.device, dtype=torch.float32)
    with float32(ab.device):
        distance, index = torch.cdist(_flat_ab(ab), centres).topk(neighbours, dim=1, largest=False)
        weight = torch.softmax(-distance.square() / (2 * sigma**2), dim=1)    # (N, k), normalised
    encoded = torch.zeros(B * H * W, len(centres), device=ab.device)
    encoded.scatter_(1, index, weight)                                       # (N, Q)
    return encoded.view(B, H, W, -1).permute(0, 3, 1, 2)                    # (B, Q, H, W)


def bin_histogram(ab: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Pixel count of each bin (nearest centre) over a batch: (Q,) float64."""
    counts = torch.bincount(nearest_bin(ab, centres).flatten(), minlength=len(centres))
    return counts.double()


def empirical_prior(counts: torch.Tensor, centres: torch.Tensor, *, sigma: float = SIGMA) -> torch.Tensor:
    """Normalised histogram smoothed over the bin centres by a Gaussian: (Q,) float32.

    ``counts`` (Q,) are pixel counts per bin, e.g. summed `bin_histogram`s.
    """
    counts = counts.double().cpu()
    if counts.ndim != 1 or len(counts) != len(centres) or counts.sum() <= 0 or (counts < 0).any():
        raise ValueError(f"counts must be {len(centres)} non-negative values with a positive sum")
    c = centres.double().cpu()
    kernel = torch.exp(-torch.cdist(c, c).square() / (2 * sigma**2))        # (Q, Q), symmetric
    smoothed = kernel @ (counts / counts.sum())
    return (smoothed / smoothed.sum()).float()


def rebalancing_weights(prior: torch.Tensor, *, lam: float = 0.5) -> torch.Tensor:
    """w = ((1 - lam) p + lam / Q)^-1, scaled so that sum_q p_q w_q = 1: (Q,) float32."""
    if not 0 < lam <= 1:
        raise ValueError(f"lambda must be in (0, 1], got {lam}")
    p = prior.double()
    w = 1.0 / ((1 - lam) * p + lam / len(p))
    return (w / (p * w).sum()).float()


def annealed_mean(logits: torch.Tensor, centres: torch.Tensor, *, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Decode a distribution over the bins into a*b*: (B, Q, H, W) -> (B, 2, H, W) float32.

    ``logits`` are log-probabilities up to a constant (a network's pre-softmax
    output, or ``log(z)`` of a distribution z, where -inf marks an empty bin).
    f_T(z) = softmax(log z / T); the result is sum_q f_T(z)_q * centre_q, in float32.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    centres = centres.to(device=logits.device, dtype=torch.float32)
    with float32(logits.device):
        probs = torch.softmax(logits.float() / temperature, dim=1)           # (B, Q, H, W)
        return torch.einsum("bqhw,qc->bchw", probs, centres)


def subsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pick one pixel per output position, the one nearest its centre: (B, C, H, W) -> (B, C, h, w)."""
    H, W = x.shape[-2:]
    rows = ((torch.arange(size[0], device=x.device) + 0.5) * (H / size[0])).long().clamp(max=H - 1)
    cols = ((torch.arange(size[1], device=x.device) + 0.5) * (W / size[1])).long().clamp(max=W - 1)
    return x[..., rows, :][..., cols]


def rebalanced_cross_entropy(
    logits: torch.Tensor,
    ab: torch.Tensor,
    centres: torch.Tensor,
    weights: torch.Tensor,
    *,
    neighbours: int = 5,
    sigma: float = SIGMA,
    chroma_threshold: float = 5.0,
) -> torch.Tensor:
    """Zhang et al.'s class-rebalanced, soft-encoded cross-entropy (a scalar).

    Parameters
    ----------
    logits : (B, Q, h, w) pre-softmax network output.
    ab : (B, 2, H, W) true a*b* at full resolution; subsampled to (h, w).
    centres : (Q, 2) bin centres; weights : (Q,) `rebalancing_weights`.
    chroma_threshold : an image whose target has no pixel with |a*| or |b*| above
        it is left out of the loss (0 when every image of the batch is).

    The mean is over the kept images' pixels of the global batch: on several
    training ranks the count is summed over them (`colorizers.distributed.shared_divisor`),
    so that the ranks' averaged gradients are the one-process run's.
    """
    with float32(logits.device):
        target_ab = subsample(ab.float(), logits.shape[-2:])                 # (B, 2, h, w)
        target = soft_encode(target_ab, centres, neighbours=neighbours, sigma=sigma)   # (B, Q, h, w)
        pixel_weight = weights.to(logits.device)[target.argmax(dim=1)]       # (B, h, w)
        keep = (target_ab.abs() > chroma_threshold).flatten(1).any(dim=1)    # (B,)
        ce = -(target * torch.log_softmax(logits.float(), dim=1)).sum(dim=1) # (B, h, w)
        kept_pixels = keep.sum().float() * ce[0].numel()
        return (ce * pixel_weight * keep[:, None, None]).sum() / shared_divisor(kept_pixels)
