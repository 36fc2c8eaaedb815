"""Rater quality: catch-trial accuracy, the exclusion rule, and agreement.

quality
    Per rater: catch trials answered, failed, accuracy, and whether the rater
    is flagged by the rule "failed more than `max_fail_rate` of their catch
    trials".
agreement
    Krippendorff's alpha for nominal answers: how much more the raters of a
    unit (e.g. one image of one method) agree than chance.
"""
import numbers
import warnings
from dataclasses import dataclass

import numpy as np

from . import _common

__all__ = ["quality", "RaterQuality", "agreement", "Agreement"]


@dataclass(frozen=True, eq=False)
class RaterQuality:
    """Result of `quality`: arrays with one entry per rater.

    Attributes
    ----------
    raters : ndarray
        The distinct rater ids, sorted.
    n_trials : ndarray of int
        Trials of each rater in the input (catch and other).
    n_catch : ndarray of int
        Catch trials of each rater.
    n_failed : ndarray of int
        Catch trials in which the rater picked the wrong image.
    catch_accuracy : ndarray of float
        ``1 - n_failed / n_catch``; NaN for a rater without catch trials.
    flagged : ndarray of bool
        Raters who failed more than `max_fail_rate` of their catch trials.
    max_fail_rate : float
        The threshold of the rule.
    """

    raters: np.ndarray
    n_trials: np.ndarray
    n_catch: np.ndarray
    n_failed: np.ndarray
    catch_accuracy: np.ndarray
    flagged: np.ndarray
    max_fail_rate: float

    @property
    def n_flagged(self):
        """Number of flagged raters."""
        return int(self.flagged.sum())


def quality(rater_ids, is_catch, correct, *, max_fail_rate=0.25):
    r"""Catch-trial accuracy of each rater, and which raters are flagged.

    Parameters
    ----------
    rater_ids : array_like, shape (n,)
        Rater of each trial, all str or all int.
    is_catch : array_like of bool or {0, 1}, shape (n,)
        True for a catch trial: the real image against an obviously wrong
        colorization (no chroma, or hues rotated).
    correct : array_like of bool or {0, 1}, shape (n,)
        True when the rater picked the real image. Only the entries of catch
        trials are used.
    max_fail_rate : float, optional
        A rater who failed more than this fraction of their catch trials is
        flagged. Default 0.25, the default ``catch_fail_threshold`` of an
        experiment.

    Returns
    -------
    res : RaterQuality
        Per rater, in sorted order of the ids: ``n_trials``, ``n_catch``,
        ``n_failed``, ``catch_accuracy`` and ``flagged``.

    Notes
    -----
    The rule: a rater is flagged when ``n_failed / n_catch > max_fail_rate``
    (strictly greater); a rater without catch trials is never flagged. The
    platform's rater session applies the same rule with the experiment's
    ``catch_fail_threshold``, and reports leave flagged raters out unless
    asked to keep them.

    The rule is a threshold on a handful of trials, so it errs both ways.
    With the default session (40 scored trials, catch-trial rate 0.1, hence
    4 catch trials), a rater who answers at random fails each catch trial
    with probability 0.5, and an attentive rater, by the vigilance rate of
    Zhang et al. [1]_ (the random-colour image was called fake 87% of the
    time), with probability 0.13; the chance that each is flagged is
    computed in the Examples. More catch trials separate them better.

    References
    ----------
    .. [1] R. Zhang, P. Isola and A. A. Efros, "Colorful Image Colorization",
           ECCV 2016.

    Examples
    --------
    Three raters, two with catch trials:

    >>> from evaluation import quality
    >>> res = quality(["ann", "ann", "ann", "bob", "bob", "cy"],
    ...               [1, 1, 0, 1, 1, 0], [1, 0, 1, 0, 0, 1],
    ...               max_fail_rate=0.25)
    >>> res.raters.tolist(), res.n_catch.tolist(), res.flagged.tolist()
    (['ann', 'bob', 'cy'], [2, 2, 0], [True, True, False])

    The chance of being flagged with 4 catch trials, for a random and an
    attentive rater, at thresholds 0.25 and 0.5:

    >>> from scipy.stats import binom
    >>> for threshold in (0.25, 0.5):
    ...     worst = int(threshold * 4)  # flagged above this many failures
    ...     print(threshold, [round(float(binom.sf(worst, 4, p)), 3)
    ...                       for p in (0.5, 0.13)])
    0.25 [0.688, 0.085]
    0.5 [0.312, 0.008]
    """
    ids = _common.check_ids("rater_ids", rater_ids)
    n = ids.size
    rat, raters = _common.codes("rater_ids", ids, n, reference="rater_ids")
    catch = _common.binary("is_catch", is_catch).astype(bool)
    ok = _common.binary("correct", correct)
    for name, values in (("is_catch", catch), ("correct", ok)):
        if values.size != n:
            raise ValueError(f"`{name}` must have the same length as "
                             f"`rater_ids` ({n}); got {values.size}.")
    if (not isinstance(max_fail_rate, numbers.Real)
            or not 0 <= max_fail_rate <= 1):
        raise ValueError("`max_fail_rate` must be a real number between 0 "
                         f"and 1; got {max_fail_rate!r}.")

    k = raters.size
    n_trials = np.bincount(rat, minlength=k)
    n_catch = np.bincount(rat, catch, minlength=k).astype(np.int64)
    n_failed = np.bincount(rat, catch & (ok == 0), minlength=k).astype(
        np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        fail_rate = n_failed / n_catch
    flagged = (n_catch > 0) & (np.nan_to_num(fail_rate) > max_fail_rate)
    return RaterQuality(raters=raters, n_trials=n_trials, n_catch=n_catch,
                        n_failed=n_failed, catch_accuracy=1 - fail_rate,
                        flagged=flagged, max_fail_rate=float(max_fail_rate))


@dataclass(frozen=True)
class Agreement:
    """Result of `agreement`.

    Attributes
    ----------
    alpha : float
        Krippendorff's alpha: 1 for perfect agreement, 0 for agreement at
        chance level, negative for systematic disagreement; NaN when
        undefined (see Warns of `agreement`).
    observed_disagreement, expected_disagreement : float
        :math:`D_o` and :math:`D_e`, so that ``alpha = 1 - D_o / D_e``.
    n_units : int
        Units with at least two answers (the others cannot be paired and are
        left out).
    n_values : int
        Answers in those units.
    """

    alpha: float
    observed_disagreement: float
    expected_disagreement: float
    n_units: int
    n_values: int


def agreement(values, unit_ids):
    r"""Agreement between raters: Krippendorff's alpha for nominal answers.

    Parameters
    ----------
    values : array_like, shape (n,)
        One answer per judgment, e.g. ``chose_generated``; any categories
        that can be sorted (bool, int or str).
    unit_ids : array_like, shape (n,)
        The unit each answer is about, e.g. an (image, method) pair. Each
        unit's answers should come from distinct raters.

    Returns
    -------
    res : Agreement
        ``alpha`` with its observed and expected disagreement and the number
        of units and answers it rests on.

    Warns
    -----
    RuntimeWarning
        If no unit has two answers, or if all answers are the same (no
        disagreement is expected by chance): alpha is then NaN.

    Notes
    -----
    A VTT asks each (image, method) pair of K distinct raters, drawn from a
    pool, a binary question. The raters change from unit to unit, so
    Cohen's kappa (two fixed raters) does not apply, and the number of
    answers per unit varies (raters left out, pairs not yet complete), which
    Fleiss' kappa [1]_ does not allow. Krippendorff's alpha [2]_, [3]_
    allows any number of raters per unit and any raters, and corrects the
    expected disagreement for the finite number of answers.

    With :math:`n_{uc}` answers of category :math:`c` in unit :math:`u`,
    :math:`m_u = \sum_c n_{uc} \ge 2`, the coincidences are
    :math:`o_{ck} = \sum_u n_{uc} (n_{uk} - [c = k]) / (m_u - 1)`, their
    margins :math:`n_c = \sum_u n_{uc}` and :math:`n = \sum_c n_c`, and for
    nominal data

    .. math::  \alpha = 1 - (n - 1)
               \frac{\sum_{c \ne k} o_{ck}}{\sum_{c \ne k} n_c n_k}.

    For a VTT, alpha near 0 says that whether a method's colorization of an
    image fools a rater is mostly the rater's draw; a larger alpha says that
    some images fool raters consistently and others do not.

    References
    ----------
    .. [1] J. L. Fleiss, "Measuring nominal scale agreement among many
           raters", Psychological Bulletin 76(5), 378-382, 1971.
    .. [2] A. F. Hayes and K. Krippendorff, "Answering the call for a
           standard reliability measure for coding data", Communication
           Methods and Measures 1(1), 77-89, 2007.
    .. [3] K. Krippendorff, "Computing Krippendorff's alpha-reliability",
           University of Pennsylvania, Annenberg School for Communication,
           Departmental Papers 43, 2011.

    Examples
    --------
    Krippendorff's example [3]_ of four observers and twelve units (a
    missing answer is simply absent); nominal alpha 0.743:

    >>> from evaluation import agreement
    >>> table = ["1 2 3 3 2 1 4 1 2 . . .", "1 2 3 3 2 2 4 1 2 5 . 3",
    ...          ". 3 3 3 2 3 4 2 2 5 1 .", "1 2 3 3 2 4 4 1 2 5 1 ."]
    >>> values, units = [], []
    >>> for row in table:
    ...     for unit, value in enumerate(row.split()):
    ...         if value != ".":
    ...             values.append(int(value))
    ...             units.append(unit)
    >>> res = agreement(values, units)
    >>> print(f"{res.alpha:.3f} from {res.n_units} units")
    0.743 from 11 units
    """
    v = _common.one_dimensional("values", values)
    if v.size == 0:
        raise ValueError("`values` must contain at least one answer; got an "
                         "empty array.")
    try:
        cat = np.unique(v, return_inverse=True)[1].ravel()
    except TypeError as exc:
        raise ValueError("`values` must be categories of one kind (all bool, "
                         f"int or str) so that they can be sorted; {exc}."
                         ) from exc
    k = int(cat.max()) + 1
    unit, _ = _common.codes("unit_ids", unit_ids, v.size, reference="values")
    n_units_all = int(unit.max()) + 1

    counts = np.bincount(unit * k + cat, minlength=n_units_all * k).reshape(
        n_units_all, k).astype(np.float64)
    m = counts.sum(axis=1)
    pairable = m >= 2
    counts, m = counts[pairable], m[pairable]
    if counts.shape[0] == 0:
        warnings.warn("No unit has two answers, so no answers can be paired; "
                      "alpha is NaN.", RuntimeWarning, stacklevel=2)
        return Agreement(np.nan, np.nan, np.nan, 0, 0)

    n_c = counts.sum(axis=0)
    n = n_c.sum()
    # Sum over c != k of o_ck: all pairs within units minus same-category
    # pairs, each unit weighted by 1 / (m_u - 1).
    same = ((counts * (counts - 1)).sum(axis=1) / (m - 1)).sum()
    disagree = n - same
    expected = (n * n - (n_c * n_c).sum()) / (n - 1)
    d_o, d_e = disagree / n, expected / n
    if expected == 0:
        warnings.warn("All answers are the same category, so no disagreement "
                      "is expected by chance; alpha is NaN.", RuntimeWarning,
                      stacklevel=2)
        alpha = np.nan
    else:
        alpha = 1 - disagree / expected
    return Agreement(alpha=float(alpha), observed_disagreement=float(d_o),
                     expected_disagreement=float(d_e),
                     n_units=int(counts.shape[0]), n_values=int(n))
