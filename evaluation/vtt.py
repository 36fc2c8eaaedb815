"""VTT score of a colorization method and its confidence interval.

A Visual Turing Test (VTT) trial shows a rater the ground-truth image and a
colorized version of it; the rater picks the one with the true colors. The
VTT score is the fraction of trials in which the generated image was picked.
"""
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import ndtri

from . import _cluster, _common
# The paired comparison of two methods lives in its own module; it is a VTT
# statistic too, so `evaluation.vtt.compare` names it as well.
from .comparison import Comparison, _few_clusters_notes, compare, compare_all

__all__ = ["score", "VTTResult", "compare", "compare_all", "Comparison"]

_METHODS = ("cluster", "bootstrap", "pigeonhole", "wilson")


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
        How the interval was computed: ``'cluster'``, ``'bootstrap'``,
        ``'pigeonhole'`` or ``'wilson'``.
    confidence : float
        Confidence level of the interval.
    standard_error : float
        Standard error of the score: two-way cluster-robust for
        ``'cluster'`` and ``'bootstrap'``, the standard deviation of the
        resamples for ``'pigeonhole'``, binomial for ``'wilson'``.
    df : float
        Degrees of freedom of the t critical value of ``'cluster'`` (the
        effective number of images or raters, whichever is smaller, minus
        1); infinite for ``'wilson'``; NaN when not used or not estimable.
    """

    score: float
    ci_low: float
    ci_high: float
    n_trials: int
    n_images: int
    n_raters: int
    method: str
    confidence: float
    standard_error: float = float("nan")
    df: float = float("nan")


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
    return _wilson_bounds(k / n, n, ndtri(0.5 + 0.5 * confidence), k == 0, k == n)


def _wilson_bounds(p, n, z, at_zero, at_one):
    denom = 2 * (n + z**2)
    center = (2 * n * p + z**2) / denom
    delta = z / denom * np.sqrt(4 * n * p * (1 - p) + z**2)
    low = 0.0 if at_zero else center - delta
    high = 1.0 if at_one else center + delta
    return float(low), float(high)


def _cluster_interval(y, img, rat, n_images, n_raters, confidence):
    """Wilson interval at the effective sample size of the two-way cluster-robust variance; see `score`."""
    n = y.size
    comp = _cluster.components(y, img, rat, np.zeros(n, dtype=np.intp), n_images, n_raters, 1)
    var = _cluster.two_way(comp, [(0, None)])
    p, v, df = float(comp.rates[0]), float(var.variance[0]), float(var.df[0])
    if np.isnan(df):
        warnings.warn(f"{n_images} image(s) and {n_raters} rater(s): the two-way cluster-robust variance needs at "
                      "least 2 of each; the interval is NaN.", RuntimeWarning, stacklevel=3)
        return np.nan, np.nan, np.nan, np.nan
    if var.fell_back[0]:
        warnings.warn("The two-way cluster-robust variance was not positive; the larger one-way (image or rater) "
                      "cluster-robust variance was used.", RuntimeWarning, stacklevel=3)
    for note in _few_clusters_notes(None, var, 0):
        warnings.warn(note, RuntimeWarning, stacklevel=3)
    # Every answer the same: no variance to estimate; the Wilson interval of n independent trials.
    n_eff = p * (1 - p) / v if v > 0 else float(n)
    crit = stats.t.ppf(0.5 + 0.5 * confidence, df)
    low, high = _wilson_bounds(p, n_eff, crit, p == 0, p == 1)
    return low, high, float(np.sqrt(v)), df


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
                rng, corrected):
    if n_images < 2 or n_raters < 2:
        warnings.warn(f"{n_images} image(s) and {n_raters} rater(s): the cluster "
                      "bootstrap needs at least 2 of each to estimate any "
                      "variance; the interval is NaN.", RuntimeWarning, stacklevel=3)
        return np.nan, np.nan, np.nan
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
        return np.nan, np.nan, np.nan
    if n_empty:
        warnings.warn(f"{n_empty} of {n_boot} bootstrap resamples drew no "
                      "judgment (no drawn rater judged a drawn image) and "
                      f"were dropped; the interval uses the other "
                      f"{n_boot - n_empty}.", RuntimeWarning, stacklevel=3)
    replicates = replicates[~empty]
    if corrected:
        # Shrink the resamples about the score to the two-way cluster-robust variance, as `compare` does.
        comp = _cluster.components(y, img, rat, np.zeros(y.size, dtype=np.intp), n_images, n_raters, 1)
        var = _cluster.two_way(comp, [(0, None)])
        v_pig = sum(float(var.terms[kind][0]) for kind in _cluster.KINDS)
        if v_pig > 0:
            estimate = float(comp.rates[0])
            replicates = estimate + np.sqrt(float(var.variance[0]) / v_pig) * (replicates - estimate)
    alpha = 1 - confidence
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    if low == high:
        warnings.warn(f"The bootstrap interval is degenerate ([{low}, {high}]"
                      "): every resample gave the same score, e.g. because "
                      "all answers are the same.", RuntimeWarning, stacklevel=3)
    se = float(replicates.std(ddof=1)) if replicates.size > 1 else np.nan
    return float(low), float(high), se


def score(chose_generated, image_ids, rater_ids, *, method="cluster",
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
    method : {'cluster', 'bootstrap', 'pigeonhole', 'wilson'}, optional
        ``'cluster'`` (default): Wilson interval at the effective sample size
        of the two-way cluster-robust variance (images and raters), with a
        Student t critical value for few clusters. ``'bootstrap'``: the
        pigeonhole bootstrap's resamples shrunk to that same variance.
        ``'pigeonhole'``: the pigeonhole bootstrap uncorrected (too wide).
        ``'wilson'``: Wilson score interval, which treats the trials as
        independent (too narrow for crossed data). See Notes.
    confidence : float, optional
        Confidence level of the interval, strictly between 0 and 1.
        Default 0.95.
    n_boot : int, optional
        Number of bootstrap resamples. Default 2000. Used by the bootstrap
        methods only.
    seed : {None, int, numpy.random.Generator}, optional
        Seed of the bootstrap resamples; the same seed gives the same
        interval. Default 0. Used by the bootstrap methods only.
    batch : int, optional
        Number of resamples processed at a time, which caps memory. The
        default keeps the per-batch blocks under about 256 MiB. The result
        does not depend on `batch`. Used by the bootstrap methods only.

    Returns
    -------
    res : VTTResult
        Frozen dataclass with attributes ``score``, ``ci_low``, ``ci_high``,
        ``n_trials``, ``n_images``, ``n_raters``, ``method``,
        ``confidence``, ``standard_error`` and ``df``.

    Warns
    -----
    RuntimeWarning
        With fewer than 20 effective images or 10 effective raters
        (``'cluster'``; see Notes); if the two-way variance was not positive and a one-way
        variance was used; with fewer than 2 images or raters (the interval
        is NaN); if a bootstrap interval is degenerate (every resample gave
        the same score), or if some resamples contained no judgment and were
        dropped.

    See Also
    --------
    compare : the difference of two methods' scores, with a paired interval
        and a p-value.

    Notes
    -----
    The VTT score is the fraction of trials in which the generated image was
    picked; a method whose outputs cannot be told from the ground truth
    scores 0.5 [1]_. The estimand is the *trial-weighted* fooling rate: the
    expected fraction of fooled trials over the populations of images and
    raters when raters answer as many trials as the design gives them; when
    some raters answer more trials than others, they weigh more, as they do in
    the score itself.

    The judgments of a VTT are crossed: the same rater judges many images and
    the same image is judged by many raters. Judgments that share a rater or
    an image are correlated (some raters are easier to fool, some images are
    easier to colorize), so an interval that treats the trials as
    independent binomial draws (``method='wilson'`` [2]_, [3]_) is too
    narrow: in the calibration below it covered 84 to 93% in a PixColor-like
    design and 63 to 83% with 3 raters.

    ``method='cluster'`` (the default) estimates the variance of the score
    by the two-way cluster-robust variance of Cameron, Gelbach and Miller
    [4]_, :math:`c_I V_{img} + c_R V_{rat} - c_C V_{cell}`, the sums of the
    squared per-image, per-rater and per-(image, rater) sums of the
    judgments' influence :math:`(y_t - \hat v) / n`, each with its small-
    sample factor :math:`c = G / (G - 1)` for :math:`G` clusters (see
    `evaluation._cluster`). Under crossed random effects the image and rater
    terms each count the judgment-level noise once and the cell term removes
    one of the two counts, so that each source of variance is counted once.
    The interval is then the Wilson interval [2]_ at the effective sample
    size :math:`\hat v (1 - \hat v) / V` (the design-effect-adjusted Wilson
    interval, which keeps the bounds in [0, 1] and asymmetric near 0 and 1,
    as recommended for clustered proportions [5]_), with Student's t
    critical value on :math:`G_{eff} - 1` degrees of freedom [6]_,
    :math:`G_{eff}` the smaller of the effective numbers of images and raters
    (Satterthwaite's, which is smaller than the count when a few clusters
    hold most of the judgments). With 3 raters in all that critical value is
    4.3 rather than 1.96: no confident interval comes from 3 raters. Below
    20 effective images or 10 effective raters a warning names the limit
    (thresholds from the calibration: see `evaluation.comparison`). When every answer is the same the variance is 0 and the
    interval is Wilson's for the trials as independent.

    ``method='pigeonhole'`` is the pigeonhole bootstrap of Owen [7]_: each
    resample draws the images with replacement and, independently, the
    raters with replacement; a judgment of image :math:`i` by rater
    :math:`r` gets the weight :math:`m_i c_r` (how often each was drawn) and
    the interval is the percentile interval of the `n_boot` resample scores.
    Its variance is :math:`V_{img} + V_{rat} + V_{cell}` to first order: it
    counts the judgment-level noise three times [7]_, [8]_, and measured 1.3
    to 1.7 times too wide (no resampling scheme is exact for crossed designs
    [9]_). ``method='bootstrap'`` shrinks those resamples about the score by
    :math:`\sqrt{V / (V_{img} + V_{rat} + V_{cell})}`, which gives them the
    cluster-robust variance while keeping the bootstrap's shape, as
    `compare` does for differences. When few raters judge each image, a
    resample may draw no rater who judged any of the drawn images; such
    resamples are dropped with a warning (i.e. redrawn).

    Measured by simulation (``python benchmarks/calibration.py --sims
    2000``; 19 designs of crossed logistic effects: PixColor-like 500
    images x 4 methods + the ground truth with K = 5 and 40 mixed trials per
    rater, a 40-image pilot, one method per rater, heavy heterogeneity,
    K = 3, scores near 0 and near 50%, unbalanced and informative rater
    sizes, independent answers, 3 to 20 raters in all, 10 and 20 images;
    the table is in BENCHMARKS.md): see there for the coverage of the
    default interval in each design.

    References
    ----------
    References
    ----------
    .. [1] S. Guadarrama, R. Dahl, D. Bieber, M. Norouzi, J. Shlens and
           K. Murphy, "PixColor: Pixel Recursive Colorization", BMVC 2017.
    .. [2] E. B. Wilson, "Probable inference, the law of succession, and
           statistical inference", J. Am. Stat. Assoc. 22(158), 209-212, 1927.
    .. [3] L. D. Brown, T. T. Cai and A. DasGupta, "Interval estimation for a
           binomial proportion", Statistical Science 16(2), 101-133, 2001.
    .. [4] A. C. Cameron, J. B. Gelbach and D. L. Miller, "Robust inference
           with multiway clustering", Journal of Business & Economic
           Statistics 29(2), 238-249, 2011.
    .. [5] N. Dean and M. Pagano, "Evaluating confidence interval methods for
           binomial proportions in clustered surveys", Journal of Survey
           Statistics and Methodology 3(4), 484-503, 2015.
    .. [6] A. C. Cameron and D. L. Miller, "A practitioner's guide to
           cluster-robust inference", Journal of Human Resources 50(2),
           317-372, 2015.
    .. [7] A. B. Owen, "The pigeonhole bootstrap", Annals of Applied
           Statistics 1(2), 386-411, 2007.
    .. [8] A. B. Owen and D. Eckles, "Bootstrapping data arrays of arbitrary
           order", Annals of Applied Statistics 6(3), 895-927, 2012.
    .. [9] P. McCullagh, "Resampling and exchangeable arrays", Bernoulli
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
    0.309 [0.276, 0.343]
    >>> res.df  # 40 raters of equal weight, fewer than the 200 images
    39.0

    These simulated answers are independent, so the cluster-robust interval
    is close to Wilson's, which assumes so; with real raters and images
    Wilson's would be too narrow. The pigeonhole bootstrap counts the
    judgment-level noise three times:

    >>> res = score(chose_generated, image_ids, rater_ids, method="pigeonhole")
    >>> print(f"{res.score:.3f} [{res.ci_low:.3f}, {res.ci_high:.3f}]")
    0.309 [0.256, 0.365]
    >>> res = score(chose_generated, image_ids, rater_ids, method="wilson")
    >>> print(f"{res.score:.3f} [{res.ci_low:.3f}, {res.ci_high:.3f}]")
    0.309 [0.278, 0.342]
    """
    (y, img, rat, n_images, n_raters, method, confidence, n_boot, batch,
     rng) = _iv(chose_generated, image_ids, rater_ids, method, confidence,
                n_boot, batch, seed)

    n_trials = y.size
    k = float(y.sum())
    df = np.nan
    if method == "wilson":
        low, high = _wilson(k, n_trials, confidence)
        se, df = float(np.sqrt(k / n_trials * (1 - k / n_trials) / n_trials)), np.inf
    elif method == "cluster":
        low, high, se, df = _cluster_interval(y, img, rat, n_images, n_raters, confidence)
    else:
        low, high, se = _pigeonhole(y, img, rat, n_images, n_raters, confidence,
                                    n_boot, batch, rng, method == "bootstrap")

    return VTTResult(score=k / n_trials, ci_low=low, ci_high=high,
                     n_trials=n_trials, n_images=n_images, n_raters=n_raters,
                     method=method, confidence=confidence, standard_error=se, df=float(df))
