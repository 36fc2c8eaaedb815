"""VTT score of a colorization method and its confidence interval.

A Visual Turing Test (VTT) trial shows a rater the ground-truth image and a
colorized version of it; the rater picks the one with the true colors. The
VTT score is the fraction of trials in which the generated image was picked.
"""
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from . import _common
# The paired comparison of two methods lives in its own module; it is a VTT
# statistic too, so `evaluation.vtt.compare` names it as well.
from .comparison import Comparison, compare, compare_all

__all__ = ["score", "VTTResult", "compare", "compare_all", "Comparison"]

_METHODS = ("bootstrap", "wilson")


@dataclass(frozen=True)
class VTTResult:
    """Result of `score`.

    Attributes
    ----------
    score : float
        Fraction of trials in which the rater picked the generated image.
    ci_low, ci_high : float
        Bounds of the confidence interval for the score.
    n_trials : int
        Number of judgments.
    n_images : int
        Number of distinct images.
    n_raters : int
        Number of distinct raters.
    method : str
        How the interval was computed: ``'bootstrap'`` or ``'wilson'``.
    confidence : float
        Confidence level of the interval.
    """

    score: float
    ci_low: float
    ci_high: float
    n_trials: int
    n_images: int
    n_raters: int
    method: str
    confidence: float


def _iv(chose_generated, image_ids, rater_ids, method, confidence, n_boot,
        batch, seed):
    y, img, images, rat, raters = _common.judgments(chose_generated, image_ids, rater_ids)
    n_images, n_raters = images.size, raters.size
    method = _common.choice("method", method, _METHODS)
    confidence = _common.confidence_level(confidence)
    n_boot = _common.positive_int("n_boot", n_boot)
    # Per resample: image counts as int64 and float64, rater counts as int64
    # and float64, and two (n_raters,) products, all 8 bytes wide.
    batch = _common.batch_size(batch, n_boot, 8 * (2 * n_images + 4 * n_raters))
    rng = _common.generator(seed)
    return (y, img, rat, n_images, n_raters, method, confidence, n_boot,
            batch, rng)


def _wilson(k, n, confidence):
    # Newcombe (1998), eq. 3, in the form used by scipy.stats.binomtest.
    z = ndtri(0.5 + 0.5 * confidence)
    p = k / n
    denom = 2 * (n + z**2)
    center = (2 * n * p + z**2) / denom
    delta = z / denom * np.sqrt(4 * n * p * (1 - p) + z**2)
    low = 0.0 if k == 0 else center - delta
    high = 1.0 if k == n else center + delta
    return float(low), float(high)


_cell_matrices = _common.cell_matrices


def _replicate_sums(y_cell, n_cell, w_img, w_rat):
    # For each resample b, with judgment t on image i_t by rater r_t,
    #   num[b] = sum_t w_img[b, i_t] * w_rat[b, r_t] * y_t
    #   den[b] = sum_t w_img[b, i_t] * w_rat[b, r_t]
    # computed as bilinear forms over the cells, in O(nnz * n_resamples).
    w_img_t = np.ascontiguousarray(w_img.T, dtype=np.float64)  # (n_images, B)
    w_rat_t = np.ascontiguousarray(w_rat.T, dtype=np.float64)  # (n_raters, B)
    num = np.einsum("rb,rb->b", y_cell @ w_img_t, w_rat_t)
    den = np.einsum("rb,rb->b", n_cell @ w_img_t, w_rat_t)
    return num, den


def _pigeonhole(y, img, rat, n_images, n_raters, confidence, n_boot, batch,
                rng):
    if n_images < 2 or n_raters < 2:
        warnings.warn(f"{n_images} image(s) and {n_raters} rater(s): the cluster "
                      "bootstrap needs at least 2 of each to estimate any "
                      "variance; the interval is NaN.", RuntimeWarning, stacklevel=3)
        return np.nan, np.nan
    y_cell, n_cell = _cell_matrices(y, img, rat, n_images, n_raters)
    # Separate streams for images and raters, so that the resamples do not
    # depend on how they are split into batches.
    rng_img, rng_rat = rng.spawn(2)
    replicates = np.empty(n_boot)
    for start in range(0, n_boot, batch):
        size = min(batch, n_boot - start)
        w_img = _common.draw_weights(rng_img, n_images, size)
        w_rat = _common.draw_weights(rng_rat, n_raters, size)
        num, den = _replicate_sums(y_cell, n_cell, w_img, w_rat)
        with np.errstate(invalid="ignore"):
            replicates[start:start + size] = num / den  # NaN where den == 0

    empty = np.isnan(replicates)
    n_empty = int(empty.sum())
    if n_empty == n_boot:
        warnings.warn(f"All {n_boot} bootstrap resamples drew no judgment "
                      "(no drawn rater judged a drawn image); the interval "
                      "is NaN.", RuntimeWarning, stacklevel=3)
        return np.nan, np.nan
    if n_empty:
        warnings.warn(f"{n_empty} of {n_boot} bootstrap resamples drew no "
                      "judgment (no drawn rater judged a drawn image) and "
                      f"were dropped; the interval uses the other "
                      f"{n_boot - n_empty}.", RuntimeWarning, stacklevel=3)
    alpha = 1 - confidence
    low, high = np.quantile(replicates[~empty], [alpha / 2, 1 - alpha / 2])
    if low == high:
        warnings.warn(f"The bootstrap interval is degenerate ([{low}, {high}]"
                      "): every resample gave the same score, e.g. because "
                      "all answers are the same.", RuntimeWarning, stacklevel=3)
    return float(low), float(high)


def score(chose_generated, image_ids, rater_ids, *, method="bootstrap",
          confidence=0.95, n_boot=2000, seed=0, batch=None):
    r"""VTT score of a colorization method with a confidence interval.

    Parameters
    ----------
    chose_generated : array_like of bool or {0, 1}, shape (n,)
        One entry per judgment: true (1) when the rater picked the generated
        image as the one with the true colors.
    image_ids : array_like, shape (n,)
        Id of the image judged in each trial, all str or all int; None, NaN
        and ids of mixed kinds (1 and "1") are errors, never merged.
    rater_ids : array_like, shape (n,)
        Id of the rater of each trial, all str or all int.
    method : {'bootstrap', 'wilson'}, optional
        ``'bootstrap'`` (default): two-way cluster ("pigeonhole") bootstrap
        that resamples images and raters. ``'wilson'``: Wilson score interval,
        which treats the trials as independent. See Notes.
    confidence : float, optional
        Confidence level of the interval, strictly between 0 and 1.
        Default 0.95.
    n_boot : int, optional
        Number of bootstrap resamples. Default 2000. Ignored by ``'wilson'``.
    seed : {None, int, numpy.random.Generator}, optional
        Seed of the bootstrap resamples; the same seed gives the same
        interval. Default 0. Ignored by ``'wilson'``.
    batch : int, optional
        Number of resamples processed at a time, which caps memory. The
        default keeps the per-batch blocks under about 256 MiB. The result
        does not depend on `batch`. Ignored by ``'wilson'``.

    Returns
    -------
    res : VTTResult
        Frozen dataclass with attributes ``score``, ``ci_low``, ``ci_high``,
        ``n_trials``, ``n_images``, ``n_raters``, ``method`` and
        ``confidence``.

    Warns
    -----
    RuntimeWarning
        If the bootstrap interval is degenerate (every resample gave the same
        score), or if some resamples contained no judgment and were dropped.

    See Also
    --------
    compare : the difference of two methods' scores, with a paired interval
        and a p-value.

    Notes
    -----
    The VTT score is the fraction of trials in which the generated image was
    picked; a method whose outputs cannot be told from the ground truth
    scores 0.5 [1]_.

    The judgments of a VTT are crossed: the same rater judges many images and
    the same image is judged by many raters. Judgments that share a rater or
    an image are correlated (some raters are easier to fool, some images are
    easier to colorize), so an interval that treats the trials as
    independent binomial draws is too narrow. Use the default
    ``method='bootstrap'`` for such data. ``method='wilson'`` gives the
    Wilson score interval [2]_, [3]_, which is right only when the trials are
    independent, e.g. when every rater contributes one trial and every image
    appears in one trial.

    The bootstrap is the pigeonhole bootstrap of Owen [4]_: each resample
    draws the images with replacement and, independently, the raters with
    replacement. A judgment of image :math:`i` by rater :math:`r` gets the
    weight :math:`w = m_i c_r`, where :math:`m_i` and :math:`c_r` are the
    numbers of times image :math:`i` and rater :math:`r` were drawn, and the
    resample's score is :math:`\sum w y / \sum w`. The interval is the
    percentile interval of the `n_boot` resample scores. The interval is
    mildly conservative [4]_, [5]_: its variance counts the rater and image
    effects about once but the rater-by-image residual about three times.
    Where the rater and image effects dominate, as is usual in a VTT, the
    excess is small; for judgments that are in fact independent, the
    interval is up to about :math:`\sqrt{3} \approx 1.7` times as wide as
    needed. No resampling scheme is exact for crossed designs [6]_.

    When few raters judge each image, a resample may draw no rater who
    judged any of the drawn images, so that :math:`\sum w = 0`. Such
    resamples are dropped, with a warning giving their number; this is the
    same as redrawing them, i.e. conditioning on a resample with at least
    one judgment.

    The resample scores are computed as sparse bilinear forms over the
    (rater, image) cells, in time proportional to the number of distinct
    cells times `n_boot` and in memory bounded by `batch`.

    References
    ----------
    .. [1] S. Guadarrama, R. Dahl, D. Bieber, M. Norouzi, J. Shlens and
           K. Murphy, "PixColor: Pixel Recursive Colorization", BMVC 2017.
    .. [2] E. B. Wilson, "Probable inference, the law of succession, and
           statistical inference", J. Am. Stat. Assoc. 22(158), 209-212, 1927.
    .. [3] L. D. Brown, T. T. Cai and A. DasGupta, "Interval estimation for a
           binomial proportion", Statistical Science 16(2), 101-133, 2001.
    .. [4] A. B. Owen, "The pigeonhole bootstrap", Annals of Applied
           Statistics 1(2), 386-411, 2007.
    .. [5] A. B. Owen and D. Eckles, "Bootstrapping data arrays of arbitrary
           order", Annals of Applied Statistics 6(3), 895-927, 2012.
    .. [6] P. McCullagh, "Resampling and exchangeable arrays", Bernoulli
           6(2), 285-301, 2000.

    Examples
    --------
    Forty raters each judge twenty of 200 images; every image is judged by
    four raters.

    >>> import numpy as np
    >>> from evaluation import score
    >>> rng = np.random.default_rng(12345)
    >>> image_ids = np.tile(np.arange(200), 4)
    >>> rater_ids = np.repeat(np.arange(40), 20)
    >>> chose_generated = rng.random(800) < 0.3
    >>> res = score(chose_generated, image_ids, rater_ids)
    >>> res.n_trials, res.n_images, res.n_raters
    (800, 200, 40)
    >>> print(f"{res.score:.3f} [{res.ci_low:.3f}, {res.ci_high:.3f}]")
    0.309 [0.256, 0.365]

    These simulated answers are independent, so the Wilson interval, which
    assumes so, is narrower here; with real raters and images it would be too
    narrow.

    >>> res = score(chose_generated, image_ids, rater_ids, method="wilson")
    >>> print(f"{res.score:.3f} [{res.ci_low:.3f}, {res.ci_high:.3f}]")
    0.309 [0.278, 0.342]
    """
    (y, img, rat, n_images, n_raters, method, confidence, n_boot, batch,
     rng) = _iv(chose_generated, image_ids, rater_ids, method, confidence,
                n_boot, batch, seed)

    n_trials = y.size
    k = float(y.sum())
    if method == "wilson":
        low, high = _wilson(k, n_trials, confidence)
    else:
        low, high = _pigeonhole(y, img, rat, n_images, n_raters, confidence,
                                n_boot, batch, rng)

    return VTTResult(score=k / n_trials, ci_low=low, ci_high=high,
                     n_trials=n_trials, n_images=n_images, n_raters=n_raters,
                     method=method, confidence=confidence)
