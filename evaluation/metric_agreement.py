"""How well automatic image metrics predict the verdicts of a Visual Turing Test (VTT).

A VTT trial shows a rater a real image and one method's colorization of it; ``y = 1`` when
the rater picked the colorization as the one with the true colors (the rater was fooled).
Each pair (method, image) is judged by a few raters, and automatic metrics (PSNR, SSIM,
CIEDE2000, colorfulness, LPIPS, ...) give one value per pair, or, like FID, one per method
computed from the whole set of its images. Two questions, two statistics:

rank_agreement
    Across methods: does the metric order the methods as the VTT scores do? Kendall's tau-b
    between the per-method metric and the per-method VTT score, with a percentile bootstrap
    interval over images. Works for per-pair metrics (averaged per method) and for set-level
    metrics (a callable that recomputes the metric on a resample of the images).
pair_prediction
    Across pairs: does the metric tell the pairs that fooled people from those that did not?
    The area under the ROC curve (AUC) of the metric for "fooled at least half of the pair's
    raters", with a percentile bootstrap interval over images.
pair_rates
    Judgments and fooling rate of every (method, image) pair, e.g. for a scatter plot of the
    rate against a metric.
mean_interval
    A method's mean of a per-pair metric over its images, with Student's t interval (the
    images are a sample of the split; each pair is one image's value).
RankAgreement, PairPrediction
    Their results, one per metric.

Inputs are codes, not ids: ``image`` and ``method`` are integers 0..n-1 indexing the rows
(methods) and columns (images) of the metric arrays, so that the judgments and the metric
values cannot be matched up by accident. Metric values that are not finite (NaN, and also
+inf, which PSNR gives for identical images) are treated as missing: such a pair is left out
of both the metric and the verdicts it is compared with. Since a PSNR of +inf marks a perfect
colorization, dropping it loses the best pairs; to keep them, cap the values first (e.g. at
100 dB) and pass the capped array.

Orientation: ``direction[name]`` is +1 when a higher value should mean a more real-looking
colorization (more raters fooled; e.g. PSNR, SSIM) and -1 when a lower value should (e.g.
CIEDE2000, LPIPS, FID). Results are oriented by it: a positive tau and an AUC above 0.5 mean
that the metric agrees with people.

Depends on numpy and scipy only.
"""
from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
from scipy import stats
from scipy.sparse import coo_array

from . import _common

__all__ = ["rank_agreement", "RankAgreement", "pair_prediction", "PairPrediction", "pair_rates", "mean_interval"]

# Resamples drawn at a time. Fixed (not derived from the data) so that a seed gives the same
# resamples to every metric, to both functions, and whatever the number of metrics.
_BATCH = 64

# Share of undefined resamples above which a warning is raised.
_UNDEFINED_WARN = 0.10


@dataclass(frozen=True)
class RankAgreement:
    """Result of `rank_agreement` for one metric.

    Attributes
    ----------
    metric : str
        Name of the metric.
    tau : float or None
        Kendall's tau-b between the oriented per-method metric and the per-method VTT score;
        positive when the metric orders the methods as people do. None when not estimable.
    ci_low, ci_high : float or None
        Percentile bootstrap interval over images; None when not estimable or when every
        resample was undefined.
    n_methods : int
        Methods used: those with judgments and a metric value.
    n_images : int
        Images with at least one judgment among the pairs used.
    n_boot : int
        Bootstrap resamples drawn.
    n_undefined : int
        Resamples left out of the interval: a method drew no judgment, or tau was undefined
        (constant values).
    estimable : bool
        Whether tau could be computed.
    reason : str
        Why not estimable; ``""`` when estimable.
    """

    metric: str
    tau: float | None
    ci_low: float | None
    ci_high: float | None
    n_methods: int
    n_images: int
    n_boot: int
    n_undefined: int
    estimable: bool
    reason: str


@dataclass(frozen=True)
class PairPrediction:
    """Result of `pair_prediction` for one metric.

    Attributes
    ----------
    metric : str
        Name of the metric.
    auc : float or None
        Probability that a fooled pair has a higher oriented metric value than a pair that
        did not fool, ties counting one half; above 0.5 when the metric agrees with people.
        None when not estimable.
    ci_low, ci_high : float or None
        Percentile bootstrap interval over images; None when not estimable or when every
        resample was undefined.
    n_pairs : int
        Pairs used: at least `min_raters` judgments and a finite metric value.
    n_fooled : int
        Pairs used that fooled at least half of their raters.
    estimable : bool
        Whether the AUC could be computed.
    reason : str
        Why not estimable; ``""`` when estimable.
    n_boot : int
        Bootstrap resamples drawn.
    n_undefined : int
        Resamples left out of the interval because one class drew no pair.
    """

    metric: str
    auc: float | None
    ci_low: float | None
    ci_high: float | None
    n_pairs: int
    n_fooled: int
    estimable: bool
    reason: str
    n_boot: int = 0
    n_undefined: int = 0


# ----------------------------------------------------------------------------------------------
# Validation


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return _common.positive_int(name, value)


def _codes(name: str, codes: object, n_judgments: int, n: int, what: str) -> np.ndarray:
    """Integer codes 0..n-1 of length `n_judgments` as intp, or a ValueError saying what is wrong."""
    arr = np.asarray(codes)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional; got shape {arr.shape}.")
    if arr.size != n_judgments:
        raise ValueError(f"`{name}` must have the same length as `y` ({n_judgments}); got {arr.size}.")
    if arr.size == 0:
        return arr.astype(np.intp)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"`{name}` must be integer codes 0..{n - 1} of the {what}; got dtype {arr.dtype}.")
    bad = np.flatnonzero((arr < 0) | (arr >= n))
    if bad.size:
        raise ValueError(f"`{name}` must be codes 0..{n - 1} ({n} {what}, from the shape of the metric "
                         f"arrays); got {arr[bad[0]].item()!r} at position {bad[0]}.")
    return arr.astype(np.intp)


def _judgments(y: object, image: object, method: object, n_methods: int,
               n_images: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = _common.binary("y", y)
    img = _codes("image", image, y.size, n_images, "images")
    met = _codes("method", method, y.size, n_methods, "methods")
    return y, img, met


def _cells(y: np.ndarray, img: np.ndarray, met: np.ndarray, n_methods: int,
           n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Judgments and fooled judgments per (method, image), shape (n_methods, n_images), float."""
    flat = met * n_images + img
    size = n_methods * n_images
    n = np.bincount(flat, minlength=size).reshape(n_methods, n_images).astype(np.float64)
    s = np.bincount(flat, weights=y, minlength=size).reshape(n_methods, n_images)
    return n, s


def _values(values: Mapping[str, object], shape: tuple[int, int] | None) -> tuple[dict[str, np.ndarray], int, int]:
    """Metric arrays as float (non-finite -> NaN) and the (n_methods, n_images) they share."""
    if not isinstance(values, Mapping):
        raise ValueError(f"`values` must be a mapping from metric names to arrays; got {type(values).__name__}.")
    out: dict[str, np.ndarray] = {}
    for name, arr in values.items():
        try:
            arr = np.array(arr, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"`values[{name!r}]` must be an array of numbers; {exc}.") from exc
        if arr.ndim != 2 or arr.size == 0:
            raise ValueError(f"`values[{name!r}]` must be a non-empty 2-D array (n_methods, n_images); "
                             f"got shape {arr.shape}.")
        if out and arr.shape != next(iter(out.values())).shape:
            first = next(iter(out))
            raise ValueError(f"`values[{name!r}]` has shape {arr.shape}, but `values[{first!r}]` has "
                             f"{out[first].shape}; every metric must be (n_methods, n_images).")
        arr[~np.isfinite(arr)] = np.nan
        out[name] = arr
    if out:
        n_methods, n_images = next(iter(out.values())).shape
        if shape is not None and tuple(shape) != (n_methods, n_images):
            raise ValueError(f"`shape` {tuple(shape)} disagrees with the shape of the metric arrays "
                             f"{(n_methods, n_images)}.")
    elif shape is None:
        raise ValueError("`values` is empty: give at least one per-pair metric, or `shape` = (n_methods, "
                         "n_images) to fix the number of methods and images.")
    else:
        if len(tuple(shape)) != 2:
            raise ValueError(f"`shape` must be (n_methods, n_images); got {shape!r}.")
        n_methods = _positive_int("shape[0] (n_methods)", shape[0])
        n_images = _positive_int("shape[1] (n_images)", shape[1])
    return out, n_methods, n_images


def _directions(names: list[str], direction: Mapping[str, object]) -> dict[str, int]:
    if not isinstance(direction, Mapping):
        raise ValueError(f"`direction` must be a mapping from metric names to +1 or -1; "
                         f"got {type(direction).__name__}.")
    out = {}
    for name in names:
        if name not in direction:
            raise ValueError(f"`direction` has no entry for metric {name!r}: give +1 when a higher value means "
                             "more real-looking (more raters fooled), -1 when a lower value does.")
        d = direction[name]
        if isinstance(d, bool) or not isinstance(d, numbers.Real) or d not in (1, -1):
            raise ValueError(f"`direction[{name!r}]` must be +1 (higher = more real-looking) or -1 (lower = "
                             f"more real-looking); got {d!r}.")
        out[name] = int(d)
    return out


def _draws(rng: np.random.Generator, n_images: int, size: int) -> np.ndarray:
    """`size` resamples of the images: multiplicities, shape (size, n_images), int64.

    Each row counts `n_images` draws with replacement from all images (those without a
    judgment included, since the images are the units sampled; they add nothing to a
    per-pair statistic but do enter a set-level metric).
    """
    picks = rng.integers(0, n_images, size=(size, n_images))
    picks += np.arange(size)[:, None] * n_images
    return np.bincount(picks.ravel(), minlength=size * n_images).reshape(size, n_images)


def _percentile(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1 - confidence
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _undefined_warning(name: str, n_undefined: int, n_boot: int, what: str) -> None:
    if n_undefined == n_boot:
        warnings.warn(f"{name}: all {n_boot} bootstrap resamples were undefined ({what}); no interval.",
                      RuntimeWarning, stacklevel=3)
    elif n_undefined > _UNDEFINED_WARN * n_boot:
        warnings.warn(f"{name}: {n_undefined} of {n_boot} bootstrap resamples were undefined ({what}) and "
                      f"were left out; the interval uses the other {n_boot - n_undefined}, so it describes "
                      "resamples that keep every method and class, and may be too narrow.",
                      RuntimeWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------------
# pair_rates


def pair_rates(y, image, method, n_methods: int, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Judgments and fooling rate of every (method, image) pair.

    Parameters
    ----------
    y : array_like of bool or {0, 1}, shape (J,)
        1 when the rater picked the colorization (was fooled).
    image, method : array_like of int, shape (J,)
        Codes 0..n_images-1 and 0..n_methods-1 of each judgment's pair.
    n_methods, n_images : int
        Number of methods and images (the shape of the metric arrays).

    Returns
    -------
    counts : ndarray of int64, shape (n_methods, n_images)
        Judgments of each pair.
    rates : ndarray of float, shape (n_methods, n_images)
        Fraction of them in which the rater was fooled; NaN for a pair without judgments.
    """
    n_methods = _positive_int("n_methods", n_methods)
    n_images = _positive_int("n_images", n_images)
    y, img, met = _judgments(y, image, method, n_methods, n_images)
    n, s = _cells(y, img, met, n_methods, n_images)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(n > 0, s / np.where(n > 0, n, 1), np.nan)
    return n.astype(np.int64), rates


# ----------------------------------------------------------------------------------------------
# rank_agreement


def _tau_b_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row of x against the same row of y (shape (B, k)); NaN where undefined.

    tau-b = (concordant - discordant) / sqrt(pairs untied in x * pairs untied in y), as
    scipy.stats.kendalltau computes it (in the same order of operations), vectorised over rows.
    """
    i, j = np.triu_indices(x.shape[1], k=1)
    sx = np.sign(x[:, i] - x[:, j])
    sy = np.sign(y[:, i] - y[:, j])
    num = (sx * sy).sum(axis=1)
    untied_x = np.count_nonzero(sx, axis=1).astype(np.float64)
    untied_y = np.count_nonzero(sy, axis=1).astype(np.float64)
    ok = (untied_x > 0) & (untied_y > 0)
    # The operations in scipy's order, so that a resample equal to the data gives its tau to the bit; clipped to
    # [-1, 1] as scipy clips it (6 / sqrt(6) / sqrt(6) is 1.0000000000000002).
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = num / np.sqrt(np.where(ok, untied_x, 1)) / np.sqrt(np.where(ok, untied_y, 1))
    return np.where(ok, np.clip(tau, -1.0, 1.0), np.nan)


@dataclass
class _RankPlan:
    """What the bootstrap of one metric needs; `reason` set when not estimable."""

    name: str
    sign: int
    methods: np.ndarray          # methods used
    n_images: int
    s: np.ndarray | None = None  # fooled judgments per (used method, image), the pairs used only
    n: np.ndarray | None = None  # judgments per (used method, image)
    v: np.ndarray | None = None  # metric value times "pair used" (per-pair metrics)
    k: np.ndarray | None = None  # "pair used" as 0/1 (per-pair metrics)
    set_metric: Callable[[np.ndarray], np.ndarray] | None = None
    tau: float | None = None
    reason: str = ""
    replicates: list[np.ndarray] | None = None


def _call_set_metric(name: str, fn: Callable[[np.ndarray], np.ndarray], counts: np.ndarray,
                     n_methods: int) -> np.ndarray:
    out = np.asarray(fn(counts.copy()), dtype=np.float64)
    if out.shape != (n_methods,):
        raise ValueError(f"`set_metrics[{name!r}]` must return one value per method, shape ({n_methods},); "
                         f"got shape {out.shape}.")
    return out


def _rank_plan(name, sign, n, s, value, set_fn, n_methods, n_images, min_methods, min_images):
    """Point estimate of one metric and the arrays its bootstrap needs."""
    if set_fn is None:
        used = (n > 0) & np.isfinite(value)  # the pairs both sides describe
        methods = np.flatnonzero(used.any(axis=1))
        plan = _RankPlan(name, sign, methods, int(used[methods].any(axis=0).sum()))
        u = used[methods].astype(np.float64)
        plan.n, plan.s, plan.k = n[methods] * u, s[methods] * u, u
        plan.v = np.where(used[methods], value[methods], 0.0)
    else:
        point = _call_set_metric(name, set_fn, np.ones(n_images, dtype=np.int64), n_methods)
        methods = np.flatnonzero((n.sum(axis=1) > 0) & np.isfinite(point))
        plan = _RankPlan(name, sign, methods, int((n[methods] > 0).any(axis=0).sum()), set_metric=set_fn)
        plan.n, plan.s = n[methods], s[methods]
    if methods.size < min_methods:
        plan.reason = (f"{methods.size} method(s) with judgments and a finite {name} value; need at least "
                       f"{min_methods} (min_methods).")
        return plan
    if plan.n_images < min_images:
        plan.reason = (f"{plan.n_images} image(s) with judgments among the pairs used; need at least "
                       f"{min_images} (min_images).")
        return plan
    ones = np.ones((1, n_images))
    vtt, metric = _rank_sides(plan, ones, point if set_fn is not None else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tau = float(stats.kendalltau(sign * metric[0], vtt[0]).statistic)
    if np.isnan(tau):
        constant = "per-method VTT scores" if np.ptp(vtt[0]) == 0 else f"per-method {name} values"
        plan.reason = f"Kendall's tau is undefined: the {constant} of the {methods.size} methods are all equal."
        return plan
    plan.tau = tau
    plan.replicates = []
    return plan


def _rank_sides(plan: _RankPlan, counts: np.ndarray, set_values: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-method VTT score and metric for each row of image multiplicities `counts`, shape (B, k).

    NaN where a method drew no judgment (or its set-level metric is not finite).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        den = counts @ plan.n.T
        vtt = np.where(den > 0, (counts @ plan.s.T) / np.where(den > 0, den, 1), np.nan)
        if plan.set_metric is None:
            metric = np.where(den > 0, (counts @ plan.v.T) / np.where(den > 0, counts @ plan.k.T, 1), np.nan)
        else:
            metric = set_values[None, plan.methods] if set_values.ndim == 1 else set_values[:, plan.methods]
            metric = np.where(np.isfinite(metric), metric, np.nan)
    return vtt, metric


def rank_agreement(y, image, method, values: Mapping[str, np.ndarray], direction: Mapping[str, int], *,
                   set_metrics: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
                   confidence: float = 0.95, n_boot: int = 2000, seed=0, min_methods: int = 3,
                   min_images: int = 10, shape: tuple[int, int] | None = None) -> list[RankAgreement]:
    r"""Rank agreement between each metric and the VTT scores across methods: Kendall's tau-b.

    Parameters
    ----------
    y : array_like of bool or {0, 1}, shape (J,)
        One entry per scored judgment: 1 when the rater picked the colorization.
    image, method : array_like of int, shape (J,)
        Codes of the judgment's image (0..n_images-1) and method (0..n_methods-1), the
        column and row of the metric arrays.
    values : mapping of str to array_like, shape (n_methods, n_images)
        Per-pair metric values; non-finite values (NaN, +-inf) are missing.
    direction : mapping of str to {+1, -1}
        For every metric in `values` and `set_metrics`: +1 when a higher value should mean
        more raters fooled, -1 when a lower value should; entries for other names are
        ignored, so one mapping can serve every call.
    set_metrics : mapping of str to callable, optional
        Set-level metrics such as FID: ``fn(counts)`` gets the image multiplicities of a
        resample, an int array of shape (n_images,) (all ones for the point estimate), and
        returns the metric of each method on that weighted set of images, shape
        (n_methods,). It is called once per resample.
    confidence : float, optional
        Level of the percentile bootstrap interval.
    n_boot : int, optional
        Bootstrap resamples.
    seed : int or numpy.random.Generator, optional
        Seed of ``numpy.random.default_rng``; every metric gets the same resamples.
    min_methods, min_images : int, optional
        Below these many methods, or images with judgments, tau is not estimated.
    shape : (int, int), optional
        (n_methods, n_images) when `values` is empty (only set-level metrics); otherwise
        taken from, and checked against, the metric arrays.

    Returns
    -------
    list of RankAgreement
        One per metric: those of `values` in order, then those of `set_metrics`.

    Notes
    -----
    Estimand: Kendall's tau-b between the oriented metric of each method and its VTT score,
    for these methods, over the population of images the study's images stand for.

    * Per method, the VTT score is the mean of ``y`` over its judgments, and a per-pair
      metric is the unweighted mean of its values over the images that have at least one
      judgment of that method. Both sides are restricted to the same pairs, those with a
      judgment and a finite value, so that the metric and the score describe the same
      images; without missing values the score is the method's VTT score over all its
      judgments. A set-level metric is computed by its callable on all images (weighted
      by their multiplicities), and the score then uses all of the method's judgments.
    * Methods without judgments or without a metric value are left out, for that metric.
    * tau is ``scipy.stats.kendalltau(direction * metric, vtt)`` (tau-b, which allows for
      ties, e.g. two methods with the same score).
    * The interval is a percentile bootstrap over images: each resample draws n_images
      images with replacement (all images, judged or not), weighs every judgment and pair
      value by its image's multiplicity and recomputes both sides and tau. Only images are
      resampled: the variability of the raters' answers (and of the raters themselves) is
      not in the interval, nor is the choice of methods. Resamples in which a method draws
      no judgment, or tau is undefined, are left out and counted in ``n_undefined``; a
      RuntimeWarning says so above 10% of the resamples.
    * With few methods tau takes few values (with 5 methods, steps of 0.2: 10 pairs of
      methods), so the interval is coarse and its bounds sit on that grid; read it as a
      rough range, not a precise one.
    * Per-pair metrics and the score are recomputed with matrix products over the
      (method, image) cells, and tau-b of all resamples at once; a set-level metric costs
      one call of its callable per resample.
    """
    confidence = _common.confidence_level(confidence)
    n_boot = _positive_int("n_boot", n_boot)
    min_methods = _positive_int("min_methods", min_methods)
    min_images = _positive_int("min_images", min_images)
    set_metrics = {} if set_metrics is None else set_metrics
    if not isinstance(set_metrics, Mapping):
        raise ValueError(f"`set_metrics` must be a mapping from names to callables; got {type(set_metrics).__name__}.")
    vals, n_methods, n_images = _values(values, shape)
    for name, fn in set_metrics.items():
        if name in vals:
            raise ValueError(f"Metric {name!r} is both in `values` and in `set_metrics`; give it once.")
        if not callable(fn):
            raise ValueError(f"`set_metrics[{name!r}]` must be a callable fn(counts) -> (n_methods,) values.")
    names = list(vals) + list(set_metrics)
    signs = _directions(names, direction)
    rng = _common.generator(seed)
    y, img, met = _judgments(y, image, method, n_methods, n_images)
    n, s = _cells(y, img, met, n_methods, n_images)

    plans = [_rank_plan(name, signs[name], n, s, vals.get(name), set_metrics.get(name), n_methods, n_images,
                        min_methods, min_images) for name in names]
    live = [p for p in plans if p.tau is not None]
    if live:
        for start in range(0, n_boot, _BATCH):
            counts = _draws(rng, n_images, min(_BATCH, n_boot - start))
            weights = counts.astype(np.float64)
            for plan in live:
                set_values = None
                if plan.set_metric is not None:
                    set_values = np.stack([_call_set_metric(plan.name, plan.set_metric, row, n_methods)
                                           for row in counts])
                vtt, metric = _rank_sides(plan, weights, set_values)
                # A method without judgments or value (NaN) makes the whole resample undefined.
                bad = np.isnan(vtt).any(axis=1) | np.isnan(metric).any(axis=1)
                tau = _tau_b_rows(np.where(bad[:, None], 0.0, plan.sign * metric), np.where(bad[:, None], 0.0, vtt))
                tau[bad] = np.nan
                plan.replicates.append(tau)

    results = []
    for plan in plans:
        common = dict(metric=plan.name, n_methods=int(plan.methods.size), n_images=plan.n_images, n_boot=n_boot)
        if plan.tau is None:
            results.append(RankAgreement(tau=None, ci_low=None, ci_high=None, n_undefined=0, estimable=False,
                                         reason=plan.reason, **common))
            continue
        reps = np.concatenate(plan.replicates)
        defined = reps[~np.isnan(reps)]
        n_undefined = n_boot - defined.size
        _undefined_warning(plan.name, n_undefined, n_boot, "a method drew no judgment, or tau-b had constant values")
        low, high = _percentile(defined, confidence) if defined.size else (None, None)
        results.append(RankAgreement(tau=plan.tau, ci_low=low, ci_high=high, n_undefined=n_undefined,
                                     estimable=True, reason="", **common))
    return results


# ----------------------------------------------------------------------------------------------
# pair_prediction


@dataclass
class _PairPlan:
    name: str
    n_pairs: int
    n_fooled: int
    auc: float | None = None
    reason: str = ""
    fooled: object = None       # sparse (n_images, n_levels): fooled pairs per image and value level
    not_fooled: object = None   # the same for the pairs that did not fool
    replicates: list[np.ndarray] | None = None


def _weighted_auc(counts: np.ndarray, fooled, not_fooled) -> np.ndarray:
    """AUC of each row of image multiplicities `counts` (B, n_images); NaN where a class is empty.

    With w1[g], w0[g] the resample's weight of fooled and non-fooled pairs at the g-th
    smallest value, AUC = sum_g w1[g] * (sum_{h<g} w0[h] + w0[g] / 2) / (sum w1 * sum w0):
    each fooled pair beats the non-fooled pairs below it and ties half of those level with it.
    """
    w1 = np.asarray(counts @ fooled)        # (B, n_levels)
    w0 = np.asarray(counts @ not_fooled)
    below = np.cumsum(w0, axis=1)
    below -= 0.5 * w0
    num = (w1 * below).sum(axis=1)
    den = w1.sum(axis=1) * w0.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def pair_prediction(y, image, method, values: Mapping[str, np.ndarray], direction: Mapping[str, int], *,
                    min_raters: int = 3, confidence: float = 0.95, n_boot: int = 2000, seed=0,
                    min_pairs: int = 20, min_per_class: int = 5) -> list[PairPrediction]:
    r"""How well each per-pair metric tells the pairs that fooled people: the AUC, across pairs.

    Parameters
    ----------
    y, image, method :
        As in `rank_agreement`: one entry per judgment, with integer codes of the image and
        the method.
    values : mapping of str to array_like, shape (n_methods, n_images)
        Per-pair metric values; non-finite values (NaN, +-inf) are missing.
    direction : mapping of str to {+1, -1}
        For every metric: +1 when a higher value should mean more raters fooled.
    min_raters : int, optional
        Pairs with fewer judgments are left out.
    confidence, n_boot, seed :
        Level, resamples and seed of the percentile bootstrap over images; every metric gets
        the same resamples.
    min_pairs, min_per_class : int, optional
        Below these many pairs, or pairs in either class, the AUC is not estimated.

    Returns
    -------
    list of PairPrediction
        One per metric of `values`, in order.

    Notes
    -----
    Estimand: the probability that a pair which fooled at least half of its raters has a
    higher oriented metric value than a pair which did not, ties counting one half (the
    area under the ROC curve of the metric for that label), over pairs of all methods.

    * A pair is fooled when its fooling rate (`pair_rates`) is at least 0.5: with 5 raters,
      3 or more fooled; with 4, 2 or more (an even split counts as fooled).
    * Only pairs with at least `min_raters` judgments and a finite value are used: with one
      or two raters the rate can only be 0, 1/2 or 1, too coarse to say "at least half".
    * The label is the observed majority, not the pair's true fooling rate: with 5 raters a
      pair that fools 40% of people is labelled fooled about a third of the time. That noise
      pulls the AUC towards 0.5, so the AUC understates how well the metric tracks the true
      rate, more so with fewer raters; compare metrics on the same pairs, not across studies.
    * Pairs of all methods are pooled, so a metric scores both by separating methods and by
      separating images within a method; `rank_agreement` looks at methods alone.
    * The AUC is ``U / (n1 * n0)`` with U the Mann-Whitney statistic of the fooled sample
      (``scipy.stats.mannwhitneyu``).
    * The interval is a percentile bootstrap over images: each resample draws n_images
      images with replacement, and each pair enters with its image's multiplicity. Labels
      are kept, so the variability of the raters' answers is not in the interval. Resamples
      in which a class draws no pair are left out and counted in ``n_undefined``; a
      RuntimeWarning says so above 10%.
    * The weighted AUC of a resample is computed from the per-image weight of each class at
      each distinct value, in O(pairs) per resample and vectorised over resamples: 2,000
      resamples of 10,000 pairs took 0.6-0.9 s per metric on two CPU cores.
    """
    confidence = _common.confidence_level(confidence)
    n_boot = _positive_int("n_boot", n_boot)
    min_raters = _positive_int("min_raters", min_raters)
    min_pairs = _positive_int("min_pairs", min_pairs)
    min_per_class = _positive_int("min_per_class", min_per_class)
    vals, n_methods, n_images = _values(values, None)
    signs = _directions(list(vals), direction)
    rng = _common.generator(seed)
    y, img, met = _judgments(y, image, method, n_methods, n_images)
    n, s = _cells(y, img, met, n_methods, n_images)
    enough = n >= min_raters
    fooled_pair = enough & (2 * s >= n)  # rate >= 0.5, exactly, in integers

    plans = []
    for name, value in vals.items():
        used = enough & np.isfinite(value)
        n_pairs, n_fooled = int(used.sum()), int((used & fooled_pair).sum())
        plan = _PairPlan(name, n_pairs, n_fooled)
        plans.append(plan)
        what = f"pairs with at least {min_raters} judgments and a finite {name} value"
        if n_pairs < min_pairs:
            plan.reason = f"{n_pairs} {what}; need at least {min_pairs} (min_pairs)."
            continue
        if min(n_fooled, n_pairs - n_fooled) < min_per_class:
            plan.reason = (f"{n_fooled} fooled and {n_pairs - n_fooled} not fooled {what}; need at least "
                           f"{min_per_class} in each (min_per_class).")
            continue
        x = signs[name] * value[used]
        label = fooled_pair[used]
        pair_image = np.broadcast_to(np.arange(n_images), value.shape)[used]
        plan.auc = float(stats.mannwhitneyu(x[label], x[~label], method="asymptotic").statistic
                         / (n_fooled * (n_pairs - n_fooled)))
        levels, level = np.unique(x, return_inverse=True)
        shape = (n_images, levels.size)
        plan.fooled = coo_array((np.ones(n_fooled), (pair_image[label], level[label])), shape=shape).tocsr()
        plan.not_fooled = coo_array((np.ones(n_pairs - n_fooled), (pair_image[~label], level[~label])),
                                    shape=shape).tocsr()
        plan.replicates = []

    live = [p for p in plans if p.auc is not None]
    if live:
        for start in range(0, n_boot, _BATCH):
            counts = _draws(rng, n_images, min(_BATCH, n_boot - start)).astype(np.float64)
            for plan in live:
                plan.replicates.append(_weighted_auc(counts, plan.fooled, plan.not_fooled))

    results = []
    for plan in plans:
        common = dict(metric=plan.name, n_pairs=plan.n_pairs, n_fooled=plan.n_fooled, n_boot=n_boot)
        if plan.auc is None:
            results.append(PairPrediction(auc=None, ci_low=None, ci_high=None, estimable=False, reason=plan.reason,
                                          n_undefined=0, **common))
            continue
        reps = np.concatenate(plan.replicates)
        defined = reps[~np.isnan(reps)]
        n_undefined = n_boot - defined.size
        _undefined_warning(plan.name, n_undefined, n_boot, "a class drew no pair")
        low, high = _percentile(defined, confidence) if defined.size else (None, None)
        results.append(PairPrediction(auc=plan.auc, ci_low=low, ci_high=high, estimable=True, reason="",
                                      n_undefined=n_undefined, **common))
    return results


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float | None, float | None, int]:
    """The mean of the finite ``values`` (one per image) and its Student's t interval: (mean, low, high, n).

    The images are taken as a random sample of the split, independent of one another, so
    the interval is ``scipy.stats.t.interval`` at n - 1 degrees of freedom around the mean
    with the standard error s / sqrt(n). Non-finite values (missing pairs, the infinite
    PSNR of two identical images) are left out. With no value the mean is NaN; with one,
    or all values equal, there is no interval (None, None).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return float("nan"), None, None, 0
    mean = float(x.mean())
    sem = stats.sem(x) if n > 1 else 0.0
    if not sem > 0:
        return mean, None, None, n
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return mean, float(low), float(high), n
