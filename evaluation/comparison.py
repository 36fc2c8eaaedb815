"""Differences of VTT scores between methods rated on the same images.

compare
    One pair of methods: the difference of their VTT scores, a confidence
    interval and a two-sided p-value from a paired two-way cluster bootstrap.
compare_all
    Every pair (or the given pairs) from one set of resamples, with the
    p-values also adjusted for multiplicity by Holm's procedure.
holm
    Holm's step-down adjustment of a family of p-values.
"""
import warnings
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from . import _cluster, _common

__all__ = ["compare", "compare_all", "holm", "Comparison"]

_METHODS = ("cluster", "bootstrap", "pigeonhole")


@dataclass(frozen=True)
class Comparison:
    """Result of `compare` and, per pair, of `compare_all`.

    Attributes
    ----------
    method_a, method_b
        The two methods compared, as given in `method_ids`.
    vtt_a, vtt_b : float
        VTT score of each: the fraction of its trials in which the rater
        picked the generated image.
    difference : float
        ``vtt_a - vtt_b``.
    ci_low, ci_high : float
        Bounds of the confidence interval for the difference.
    standard_error : float
        Two-way cluster-robust standard error of the difference
        (``'cluster'``), or the standard deviation of the resampled
        differences (``'bootstrap'``, after its correction, and
        ``'pigeonhole'``).
    df : float
        Degrees of freedom of the t critical value and p-value of
        ``'cluster'`` (the effective number of images or raters, whichever
        is smaller, minus 1); NaN with fewer than 2 images or raters.
    pvalue : float
        Two-sided p-value of the null hypothesis that the two methods have
        the same VTT score; see Notes of `compare`.
    pvalue_holm : float
        `pvalue` adjusted by Holm's procedure over all the pairs of the same
        `compare_all` call; equal to `pvalue` from `compare`.
    n_trials_a, n_trials_b : int
        Number of judgments of each method.
    n_images, n_images_shared : int
        Number of images judged under either method, and under both.
    n_raters, n_raters_shared : int
        Number of raters who judged either method, and both.
    method : str
        ``'cluster'``, ``'bootstrap'`` or ``'pigeonhole'``.
    confidence : float
        Confidence level of the interval.
    n_boot : int
        Number of bootstrap resamples used (0 for ``'cluster'``).
    """

    method_a: object
    method_b: object
    vtt_a: float
    vtt_b: float
    difference: float
    ci_low: float
    ci_high: float
    standard_error: float
    pvalue: float
    pvalue_holm: float
    df: float
    n_trials_a: int
    n_trials_b: int
    n_images: int
    n_images_shared: int
    n_raters: int
    n_raters_shared: int
    method: str
    confidence: float
    n_boot: int


def _label(value):
    # numpy scalars -> Python scalars, so that results print and serialize
    # like the ids that were passed in.
    return value.item() if isinstance(value, np.generic) else value


def _iv(chose_generated, image_ids, rater_ids, method_ids, pairs, method,
        confidence, n_boot, batch, seed):
    y, img, images, rat, raters = _common.judgments(chose_generated, image_ids, rater_ids)
    grp, labels = _common.codes("method_ids", method_ids, y.size)
    if labels.size < 2:
        raise ValueError("`method_ids` must name at least two methods; got "
                         f"{labels.size} ({_label(labels[0])!r}).")

    index = {_label(label): g for g, label in enumerate(labels)}
    if pairs is None:
        pair_idx = list(combinations(range(labels.size), 2))
    else:
        try:
            pairs = [tuple(pair) for pair in pairs]
        except TypeError as exc:
            raise ValueError("`pairs` must be None or a sequence of pairs of "
                             f"method ids; got {pairs!r}.") from exc
        if not pairs:
            raise ValueError("`pairs` must name at least one pair; got an "
                             "empty sequence.")
        pair_idx = []
        for pair in pairs:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError("`pairs` must hold pairs of two different "
                                 f"method ids; got {pair!r}.")
            for label in pair:
                if label not in index:
                    raise ValueError(f"`pairs` names {label!r}, which is not "
                                     "in `method_ids`.")
            pair_idx.append((index[pair[0]], index[pair[1]]))

    method = _common.choice("method", method, _METHODS)
    confidence = _common.confidence_level(confidence)
    n_boot = _common.positive_int("n_boot", n_boot)
    n_groups = labels.size
    # Per resample: image and rater counts as int64 and float64, and the two
    # (n_groups * n_raters,) products, all 8 bytes wide.
    per_resample = 8 * (2 * images.size + 2 * raters.size
                        + 2 * n_groups * raters.size + 2 * n_groups)
    batch = _common.batch_size(batch, n_boot, per_resample)
    rng = _common.generator(seed)
    return (y, img, rat, grp, images.size, raters.size, labels, pair_idx,
            method, confidence, n_boot, batch, rng)


def _group_replicates(y, img, rat, grp, n_images, n_raters, n_groups, n_boot,
                      batch, rng):
    """Bootstrap scores of every method, shape (n_groups, n_boot).

    All methods share each resample's image and rater draws: that is the
    pairing. For resample b and method g,
      num[g, b] = sum_{t in g} w_img[b, i_t] * w_rat[b, r_t] * y_t
      den[g, b] = sum_{t in g} w_img[b, i_t] * w_rat[b, r_t]
    as one sparse product over the (method, rater) x image cells.
    """
    rows = grp * n_raters + rat
    y_cell, n_cell = _common.cell_matrices(y, img, rows, n_images,
                                           n_groups * n_raters)
    # As in `score`: separate streams, so that batching changes nothing.
    rng_img, rng_rat = rng.spawn(2)
    replicates = np.empty((n_groups, n_boot))
    for start in range(0, n_boot, batch):
        size = min(batch, n_boot - start)
        w_img = np.ascontiguousarray(
            _common.draw_weights(rng_img, n_images, size).T, dtype=np.float64)
        w_rat = np.ascontiguousarray(
            _common.draw_weights(rng_rat, n_raters, size).T, dtype=np.float64)
        num = np.einsum("grb,rb->gb",
                        (y_cell @ w_img).reshape(n_groups, n_raters, size),
                        w_rat)
        den = np.einsum("grb,rb->gb",
                        (n_cell @ w_img).reshape(n_groups, n_raters, size),
                        w_rat)
        with np.errstate(invalid="ignore"):
            replicates[:, start:start + size] = num / den  # NaN: no judgment
    return replicates


# Below these effective numbers of images or raters (see `evaluation._cluster`), intervals and p-values come with a
# warning. Chosen by simulation (`benchmarks/calibration.py --sims 2000`): with 20 images the difference of two
# methods kept a type I error of 5.9% and coverage of 94%, with 10 images 7.0% and 93%; with 6 raters in all the
# intervals still covered 95.7 to 96.5%, but at 1.2 times the width of a large design's (1.6 with 3 raters), and the
# power to find a 7-point difference fell to 16% (6% with 3 raters).
MIN_IMAGES = 20
MIN_RATERS = 10


def _few_clusters_notes(what, variance, index):
    """Warnings for a contrast with fewer than MIN_IMAGES effective images or MIN_RATERS effective raters;
    `what` (e.g. "a vs b") starts each message, or nothing when None."""
    notes = []
    df = variance.df[index]
    images, raters = variance.effective["image"][index], variance.effective["rater"][index]
    prefix = f"{what}: " if what else ""
    if images < MIN_IMAGES:
        notes.append(f"{prefix}about {images:.0f} effective images (fewer than {MIN_IMAGES}); with so few images the "
                     "interval's coverage falls below its level (93% for a 95% interval of a difference with 10 "
                     "images in the calibration, benchmarks/calibration.py).")
    if raters < MIN_RATERS:
        notes.append(f"{prefix}about {raters:.0f} effective raters (fewer than {MIN_RATERS}); the interval uses "
                     f"Student's t with {df:.0f} degree(s) of freedom, so it is wide (with 3 raters, 1.6 times as "
                     "wide as with many) and a difference is hard to detect.")
    return notes


def _compare(y, img, rat, grp, n_images, n_raters, labels, pair_idx, method,
             confidence, n_boot, batch, rng):
    n_groups = labels.size
    comp = _cluster.components(y, img, rat, grp, n_images, n_raters, n_groups)
    var = _cluster.two_way(comp, pair_idx)
    vtt, n_g = comp.rates, comp.n.astype(np.int64)
    replicates = None
    if method != "cluster":
        replicates = _group_replicates(y, img, rat, grp, n_images, n_raters, n_groups, n_boot, batch, rng)
    if method == "bootstrap":
        # The pigeonhole resamples have variance V_img + V_rat + V_cell (to first order): shrink them to the
        # two-way cluster-robust variance. See the Notes of `compare`.
        v_pig = var.terms["image"] + var.terms["rater"] + var.terms["cell"]
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(v_pig > 0, np.sqrt(var.variance / v_pig), 1.0)
    else:
        scale = np.ones(len(pair_idx))

    alpha = 1 - confidence
    rows, worst_empty, degenerate, too_few, few, fell_back = [], 0, [], [], [], []
    for p, (a, b) in enumerate(pair_idx):
        names = (_label(labels[a]), _label(labels[b]))
        difference = vtt[a] - vtt[b]
        se = float(np.sqrt(var.variance[p]))
        df = float(var.df[p])
        low = high = pvalue = np.nan
        if np.isnan(df):
            # No variance can be estimated from one image or one rater.
            too_few.append(names)
            se = np.nan
        elif method == "cluster":
            if se > 0:
                crit = stats.t.ppf(1 - alpha / 2, df)
                low, high = max(-1.0, difference - crit * se), min(1.0, difference + crit * se)
                pvalue = float(2 * stats.t.sf(abs(difference) / se, df))
            else:
                degenerate.append(names)
                se = np.nan
        else:
            diffs = replicates[a] - replicates[b]
            diffs = diffs[~np.isnan(diffs)]
            worst_empty = max(worst_empty, n_boot - diffs.size)
            if diffs.size == 0:
                too_few.append(names)
                se = np.nan
            else:
                diffs = difference + scale[p] * (diffs - difference)
                low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
                se = diffs.std(ddof=1) if diffs.size > 1 else 0.0
                # Smallest alpha at which the equal-tailed percentile interval leaves out 0, counted with one
                # more resample on the side of 0 (so that it is never 0).
                tail = min(np.count_nonzero(diffs <= 0), np.count_nonzero(diffs >= 0))
                pvalue = min(1.0, 2 * (tail + 1) / (diffs.size + 1))
                if low == high:
                    degenerate.append(names)
        if not np.isnan(df):
            few.extend(_few_clusters_notes(f"{names[0]} vs {names[1]}", var, p))
            if var.fell_back[p]:
                fell_back.append(names)
        rows.append(dict(
            method_a=names[0], method_b=names[1],
            vtt_a=float(vtt[a]), vtt_b=float(vtt[b]),
            difference=float(difference), ci_low=float(low),
            ci_high=float(high), standard_error=float(se),
            pvalue=float(pvalue), df=df, n_trials_a=int(n_g[a]),
            n_trials_b=int(n_g[b]), n_images=int(var.clusters["image"][p]),
            n_images_shared=int(var.shared["image"][p]), n_raters=int(var.clusters["rater"][p]),
            n_raters_shared=int(var.shared["rater"][p]), method=method,
            confidence=confidence, n_boot=n_boot if method != "cluster" else 0))

    if worst_empty == n_boot:
        warnings.warn(f"All {n_boot} bootstrap resamples drew no judgment of "
                      "one of the methods of some pair; its interval and "
                      "p-value are NaN.", RuntimeWarning, stacklevel=3)
    elif worst_empty:
        warnings.warn(f"Up to {worst_empty} of {n_boot} bootstrap resamples "
                      "drew no judgment of one of the two methods of a pair "
                      "(no drawn rater judged a drawn image) and were "
                      "dropped for that pair.", RuntimeWarning, stacklevel=3)
    if degenerate:
        warnings.warn(f"{len(degenerate)} pair(s), e.g. {degenerate[0][0]} vs {degenerate[0][1]}, have a degenerate "
                      "interval: every judgment of each method is the same, so no variance can be estimated"
                      + (" (the interval and p-value are NaN)." if method == "cluster" else
                         ", and every resample gave the same difference."), RuntimeWarning, stacklevel=3)
    if too_few:
        warnings.warn(f"{len(too_few)} pair(s), e.g. {too_few[0][0]} vs {too_few[0][1]}, were "
                      "judged on fewer than 2 images or by fewer than 2 raters; "
                      "their interval and p-value are NaN.", RuntimeWarning,
                      stacklevel=3)
    if fell_back:
        warnings.warn(f"{len(fell_back)} pair(s), e.g. {fell_back[0][0]} vs {fell_back[0][1]}: the two-way "
                      "cluster-robust variance was not positive; the larger one-way (image or rater) "
                      "cluster-robust variance was used.", RuntimeWarning, stacklevel=3)
    for note in few:
        warnings.warn(note, RuntimeWarning, stacklevel=3)
    return rows


def compare(chose_generated, image_ids, rater_ids, method_ids, *, pair=None,
            method="cluster", confidence=0.95, n_boot=2000, seed=0,
            batch=None):
    r"""Difference of the VTT scores of two methods rated on the same images.

    Parameters
    ----------
    chose_generated : array_like of bool or {0, 1}, shape (n,)
        One entry per judgment: true (1) when the rater picked the generated
        image as the one with the true colors.
    image_ids : array_like, shape (n,)
        Id of the (ground-truth) image of each trial, all str or all int. The
        same image colorized by two methods has the same id under both: that
        is what pairs the methods.
    rater_ids : array_like, shape (n,)
        Id of the rater of each trial, all str or all int.
    method_ids : array_like, shape (n,)
        The colorization method of each trial, all str or all int.
    pair : tuple of two method ids, optional
        The methods to compare: the difference is ``pair[0]`` minus
        ``pair[1]``; judgments of other methods are ignored. Default: the two
        methods of `method_ids`, which must then hold exactly two, in sorted
        order.
    method : {'cluster', 'bootstrap', 'pigeonhole'}, optional
        ``'cluster'`` (default): the paired two-way cluster-robust standard
        error with Student's t on the effective number of clusters minus 1.
        ``'bootstrap'``: the paired pigeonhole bootstrap with its resamples
        shrunk to that same variance (percentile interval and p-value).
        ``'pigeonhole'``: the same resamples without the correction, which
        is conservative for differences. See Notes.
    confidence : float, optional
        Confidence level of the interval, strictly between 0 and 1.
        Default 0.95.
    n_boot : int, optional
        Number of bootstrap resamples. Default 2000. Bootstrap methods only.
    seed : {None, int, numpy.random.Generator}, optional
        Seed of the resamples; the same seed gives the same result.
        Default 0. Bootstrap methods only.
    batch : int, optional
        Number of resamples processed at a time, which caps memory (by
        default about 256 MiB per batch). The result does not depend on it.

    Returns
    -------
    res : Comparison
        Frozen dataclass with, among others, ``difference``, ``ci_low``,
        ``ci_high``, ``standard_error`` and ``pvalue``.

    Warns
    -----
    RuntimeWarning
        With fewer than 20 effective images or 10 effective raters; if the two-way
        variance was not positive and a one-way variance was used; if the
        interval is degenerate (NaN for ``'cluster'``); if some resamples
        drew no judgment of one of the methods (they are dropped).

    See Also
    --------
    compare_all : every pair of methods at once, with Holm's adjustment.
    evaluation.score : the VTT score of one method.

    Notes
    -----
    The VTT judgments of two methods are crossed twice over: raters judge
    many images, images are judged by many raters, and the same images are
    colorized by both methods. An easy image is easy for both methods and a
    gullible rater is fooled by both, so the two scores are correlated, and
    the interval of their difference must account for it.

    With :math:`E_i`, :math:`E_r` and :math:`E_{ir}` the sums of the
    influence values of the difference (:math:`(y_t - \hat v_a)/n_a` on
    :math:`a`'s judgments, :math:`-(y_t - \hat v_b)/n_b` on :math:`b`'s)
    over an image, a rater and an (image, rater) cell, let
    :math:`V_{img} = \sum_i E_i^2`, :math:`V_{rat} = \sum_r E_r^2` and
    :math:`V_{cell} = \sum_{ir} E_{ir}^2`. The two-way cluster-robust
    variance of Cameron, Gelbach and Miller [2]_ is

    .. math::  V = c_I V_{img} + c_R V_{rat} - c_C V_{cell},

    :math:`c = G / (G - 1)` for :math:`G` images, raters or cells judged
    under either method. Under additive crossed random effects,
    :math:`V_{img}` and :math:`V_{rat}` each hold the judgment-level noise
    once besides their own effect; subtracting :math:`V_{cell}` leaves it
    counted once. Effects shared by both methods (an image's difficulty, a
    rater's gullibility, when the rater saw both) cancel in the influence
    sums: that is the pairing. :math:`V` can come out non-positive, being a
    difference; Cameron, Gelbach and Miller's remedy for a scalar is to fall
    back to a one-way variance, and the larger of :math:`c_I V_{img}` and
    :math:`c_R V_{rat}` is then used, with a warning. (An earlier version
    floored :math:`V` at both one-way variances in every case; with raters
    who see both methods the floor bound in most experiments and made the
    test conservative.)

    ``method='cluster'`` (the default) gives the interval :math:`\hat d \pm
    t_{q} \sqrt V`, clipped to [-1, 1], and the two-sided p-value of
    :math:`\hat d / \sqrt V` against Student's t, with :math:`G_{eff} - 1`
    degrees of freedom, :math:`G_{eff}` the smaller of the effective numbers
    of images and raters of the pair (see `evaluation._cluster`) [3]_: with
    few clusters the critical values and p-values grow as they should. For 8
    judgments by 2 raters, 3 of 4 against 1 of 4, the p-value is 0.33
    (Fisher's exact test on the same counts: 0.49). Below 20 effective
    images or 10 effective raters a warning names the limit.

    ``method='bootstrap'`` and ``'pigeonhole'`` resample: each resample
    draws the images with replacement and, independently, the raters, as in
    the pigeonhole bootstrap of Owen [1]_, and the *same* draws weight the
    judgments of both methods (a judgment of image :math:`i` by rater
    :math:`r` gets weight :math:`m_i c_r`). The variance of these resamples
    is :math:`V_{img} + V_{rat} + V_{cell}` to first order, which counts the
    judgment-level noise three times: ``'pigeonhole'`` uses them as they
    are (too wide), ``'bootstrap'`` shrinks them about the estimate by
    :math:`\sqrt{V / (V_{img} + V_{rat} + V_{cell})}`. Their interval is the
    equal-tailed percentile interval and their p-value that of the
    interval, :math:`\min(1, 2 (k + 1) / (B + 1))` for :math:`k` of
    :math:`B` resampled differences on the far side of 0 [4]_.

    The p-value tests the null hypothesis that the two methods have the
    same expected VTT score over the populations of images and raters, not
    that every image looks alike under both. A permutation or sign-flip test
    over images is not used: it would keep the images as the only clusters,
    ignoring that a rater's judgments are correlated across images.

    Measured by simulation (``python benchmarks/calibration.py --sims
    2000``; the designs of `evaluation.score`'s Notes, each with a pair of
    methods of equal rate and a pair that differs; the table is in
    BENCHMARKS.md): see there for the type I error, coverage and power in
    each design.

    Images judged under only one of the two methods still count in that
    method's score, so that `difference` is the difference of the two
    methods' reported VTT scores; `n_images_shared` says how many images
    pair them.

    References
    ----------
    .. [1] A. B. Owen, "The pigeonhole bootstrap", Annals of Applied
           Statistics 1(2), 386-411, 2007.
    .. [2] A. C. Cameron, J. B. Gelbach and D. L. Miller, "Robust inference
           with multiway clustering", Journal of Business & Economic
           Statistics 29(2), 238-249, 2011.
    .. [3] A. C. Cameron and D. L. Miller, "A practitioner's guide to
           cluster-robust inference", Journal of Human Resources 50(2),
           317-372, 2015.
    .. [4] B. Phipson and G. K. Smyth, "Permutation p-values should never be
           zero: calculating exact p-values when permutations are randomly
           drawn", Statistical Applications in Genetics and Molecular
           Biology 9(1), article 39, 2010.

    Examples
    --------
    Two methods, each judged five times on each of 100 images by 50 raters
    who never see an image twice; method ``'a'`` fools the raters more
    often.

    >>> import numpy as np
    >>> from evaluation import compare
    >>> rng = np.random.default_rng(0)
    >>> image_ids = np.repeat(np.arange(100), 10)
    >>> method_ids = np.tile(np.repeat(["a", "b"], 5), 100)
    >>> rater_ids = np.arange(1000) % 50
    >>> chose_generated = rng.random(1000) < np.where(method_ids == "a", 0.4, 0.3)
    >>> res = compare(chose_generated, image_ids, rater_ids, method_ids)
    >>> print(f"{res.difference:.3f} [{res.ci_low:.3f}, {res.ci_high:.3f}], "
    ...       f"p = {res.pvalue:.4f}")
    0.118 [0.060, 0.176], p = 0.0002
    """
    y = _common.binary("chose_generated", chose_generated)
    methods = _common.check_ids("method_ids", method_ids)
    if pair is not None:
        try:
            first, second = pair
        except (TypeError, ValueError):
            raise ValueError("`pair` must be None or two method ids; "
                             f"got {pair!r}.") from None
        if first == second:
            raise ValueError("`pair` must be two different method ids; "
                             f"got {pair!r}.")
        if methods.size == y.size:
            for label in (first, second):
                if not (methods == label).any():
                    raise ValueError(f"`pair` names {label!r}, which is not "
                                     "in `method_ids`.")
            keep = (methods == first) | (methods == second)
            y = y[keep]
            methods = methods[keep]
            image_ids = _common.check_ids("image_ids", image_ids)
            rater_ids = _common.check_ids("rater_ids", rater_ids)
            if image_ids.size == keep.size:
                image_ids = image_ids[keep]
            if rater_ids.size == keep.size:
                rater_ids = rater_ids[keep]
        pairs = [(first, second)]
    else:
        labels = np.unique(methods) if methods.size else methods
        if labels.size > 2:
            raise ValueError("`method_ids` holds more than two methods "
                             f"({labels.size}); pass `pair` to choose two, "
                             "or use `compare_all`.")
        pairs = None
    args = _iv(y, image_ids, rater_ids, methods, pairs, method, confidence,
               n_boot, batch, seed)
    row = _compare(*args)[0]
    return Comparison(pvalue_holm=row["pvalue"], **row)


def compare_all(chose_generated, image_ids, rater_ids, method_ids, *,
                pairs=None, method="cluster", confidence=0.95, n_boot=2000,
                seed=0, batch=None):
    """Differences of VTT scores for many pairs of methods, Holm-adjusted.

    Parameters
    ----------
    chose_generated, image_ids, rater_ids, method_ids : array_like, shape (n,)
        As in `compare`.
    pairs : sequence of (method id, method id), optional
        The pairs to compare, each as (a, b) for the difference a - b.
        Default: every pair of the methods in `method_ids`, each in sorted
        order.
    method, confidence, n_boot, seed, batch
        As in `compare`.

    Returns
    -------
    res : tuple of Comparison
        One per pair, in the order of `pairs`. ``pvalue_holm`` is adjusted
        over all of them.

    Notes
    -----
    All pairs are computed from one set of resamples: every method's
    judgments are weighted by the same image and rater draws, so the
    pairwise differences are consistent with each other. Otherwise each
    pair is as in `compare`; the result for a pair differs from that of
    `compare` only through the draws (the images and raters of the other
    methods are resampled too).

    Holm's adjustment [1]_ controls the probability of any false rejection
    among the pairs (the family-wise error rate) at the nominal level,
    whatever the dependence between the p-values, which here share images
    and raters.

    References
    ----------
    .. [1] S. Holm, "A simple sequentially rejective multiple test
           procedure", Scandinavian Journal of Statistics 6(2), 65-70, 1979.
    """
    args = _iv(chose_generated, image_ids, rater_ids, method_ids, pairs,
               method, confidence, n_boot, batch, seed)
    rows = _compare(*args)
    pvalues = np.array([row["pvalue"] for row in rows])
    adjusted = np.full(pvalues.size, np.nan)
    finite = ~np.isnan(pvalues)
    if finite.any():
        adjusted[finite] = holm(pvalues[finite])
    return tuple(Comparison(pvalue_holm=float(adj), **row)
                 for row, adj in zip(rows, adjusted))


def holm(pvalues):
    r"""Holm's step-down adjustment of p-values for multiple comparisons.

    Parameters
    ----------
    pvalues : array_like, shape (m,)
        The p-values of a family of tests, each between 0 and 1.

    Returns
    -------
    adjusted : ndarray, shape (m,)
        Adjusted p-values, in the order given: reject the hypotheses whose
        adjusted p-value is at most :math:`\alpha` to keep the family-wise
        error rate at :math:`\alpha`.

    Notes
    -----
    With the p-values sorted, :math:`p_{(1)} \le \dots \le p_{(m)}`, the
    adjusted value of :math:`p_{(j)}` is
    :math:`\min(1, \max_{k \le j} (m - k + 1) p_{(k)})` [1]_. It is valid
    under any dependence between the tests and uniformly more powerful than
    Bonferroni's :math:`\min(1, m p)`.

    References
    ----------
    .. [1] S. Holm, "A simple sequentially rejective multiple test
           procedure", Scandinavian Journal of Statistics 6(2), 65-70, 1979.

    Examples
    --------
    >>> from evaluation import holm
    >>> holm([0.01, 0.04, 0.03, 0.20]).tolist()
    [0.04, 0.09, 0.09, 0.2]
    """
    p = _common.one_dimensional("pvalues", pvalues)
    if p.dtype.kind not in "biuf":
        raise ValueError("`pvalues` must be real numbers between 0 and 1; "
                         f"got dtype {p.dtype}.")
    p = p.astype(np.float64)
    bad = p[~((p >= 0) & (p <= 1))]
    if bad.size:
        raise ValueError("`pvalues` must be real numbers between 0 and 1; "
                         f"got {bad[0].item()!r}.")
    m = p.size
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(steps, 1.0)
    return adjusted
