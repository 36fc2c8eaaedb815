"""HYPE_time's adaptive exposure: the staircase rule that sets each trial's exposure.

HYPE_time (Zhou et al., NeurIPS 2019) measures the exposure at which raters stop
telling real from generated: each rater's exposure starts at 500 ms and moves
between 100 and 1,000 ms with the rater's answers. This module holds the rule the
rater side runs; the threshold estimates the report gives are below it
(`threshold` per staircase, `hype_time` per method).

The rule, where the material at hand does not fix it (documented variant):

* A transformed 3-down/1-up staircase (Levitt 1971): three correct answers in a
  row shorten the exposure by one step, any wrong answer lengthens it by one
  step. It converges on the exposure at which a rater is right 79.4% of the time
  (p with p**3 = 1/2), so a method whose colors fool raters climbs to the
  ceiling and an obvious one sinks to the floor: a higher threshold is a better
  method.
* Steps of `STEP_MS` = 50 ms on a linear grid from `FLOOR_MS` = 100 to
  `CEILING_MS` = 1,000 ms, start `START_MS` = 500 ms: 8 steps down to the floor,
  10 up to the ceiling, so a 40-trial session can reach either end.
* One staircase per rater and method (interleaved when a rater sees several
  methods), since the threshold belongs to a method; practice and catch trials
  are shown at the start exposure and never move a staircase.
* "Correct" is picking the real image (the 2AFC question of this platform; HYPE
  showed one image at a time and asked real or fake).
* No feedback on scored trials (HYPE gave feedback after every answer): on this
  platform feedback names the real image of a pair, which would teach the rater the
  tells of the very method being measured. Only practice trials get feedback.
* HYPE's trial frame is kept: a 3-2-1 countdown before each pair and four noise
  masks of 30 ms after it (drawn by the rater's page, ``vtt/static/vtt/trial.js``;
  500 ms per countdown number is this platform's choice).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy import stats

from . import _common

START_MS = 500
FLOOR_MS = 100
CEILING_MS = 1000
STEP_MS = 50
DOWN_AFTER = 3  # correct answers in a row that shorten the exposure

__all__ = ["START_MS", "FLOOR_MS", "CEILING_MS", "STEP_MS", "DOWN_AFTER", "next_exposure", "threshold",
           "hype_time", "HypeTimeResult"]


def next_exposure(correct: Iterable[bool]) -> int:
    """The exposure in ms of a staircase's next trial, given its answers so far in order.

    >>> next_exposure([])
    500
    >>> next_exposure([True, True, True])
    450
    >>> next_exposure([True, True, False])
    550
    """
    exposure, run = START_MS, 0
    for right in correct:
        if right:
            run += 1
            if run == DOWN_AFTER:
                exposure, run = max(FLOOR_MS, exposure - STEP_MS), 0
        else:
            exposure, run = min(CEILING_MS, exposure + STEP_MS), 0
    return exposure


# --- threshold estimates -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HypeTimeResult:
    """Result of `hype_time`: a method's HYPE_time score and its raters' thresholds.

    Attributes
    ----------
    score : float
        Mean over raters of their threshold exposures, in ms: the exposure at
        which a typical rater still tells the real image from the colorized one
        79.4% of the time. Higher is better for the method.
    ci_low, ci_high : float
        Bounds of the percentile bootstrap interval of `score`, which resamples
        raters; NaN with fewer than 2 raters.
    n_raters : int
        Raters (staircases) with at least one trial.
    n_trials : int
        Trials over all staircases.
    confidence : float
        Confidence level of the interval.
    n_boot : int
        Bootstrap resamples.
    raters : ndarray
        The distinct rater ids, sorted.
    thresholds : ndarray of float
        Each rater's threshold (`threshold` of their staircase), in the order
        of `raters`.
    n_rater_trials : ndarray of int
        Each rater's trials, in the order of `raters`.
    """

    score: float
    ci_low: float
    ci_high: float
    n_raters: int
    n_trials: int
    confidence: float
    n_boot: int
    raters: np.ndarray
    thresholds: np.ndarray
    n_rater_trials: np.ndarray


def _exposures(name, values):
    x = _common.one_dimensional(name, values)
    if x.dtype.kind not in "iuf" or x.size == 0:
        raise ValueError(f"`{name}` must be a non-empty array of exposures in ms; got "
                         f"{x[:3].tolist() if x.size else 'an empty array'}.")
    x = x.astype(np.float64)
    bad = x[~(np.isfinite(x) & (x > 0))]
    if bad.size:
        raise ValueError(f"`{name}` must contain only positive finite exposures in ms; got {bad[:1].tolist()[0]!r}.")
    return x


def threshold(exposure_ms) -> float:
    """A staircase's threshold: the mean exposure over the second half of its trials, in order.

    Parameters
    ----------
    exposure_ms : array_like of float, shape (n,)
        The exposure of each trial of one staircase (one rater and method),
        in the order shown; n >= 1.

    Returns
    -------
    float
        The mean of ``exposure_ms[n // 2:]``: with an odd number of trials
        the middle one belongs to the second half.

    Notes
    -----
    The staircase starts at `START_MS`, which has nothing to do with the
    rater's threshold; its first trials are the approach from there to the
    exposure around which it then oscillates, so averaging them would pull the
    estimate towards 500 ms. Dropping the first half of the trials is a fixed,
    data-independent rule for "after the approach" (the mean of the stimuli
    once the series has reached its final level, Cornsweet [1]_), and it
    averages every later trial rather than the few reversals a short session
    has: with 40 trials split over several methods, a staircase may have only
    a handful of reversals. With `DOWN_AFTER` = 3 the later exposures hover
    around the exposure with 79.4% correct answers (Levitt [2]_).

    Alternatives exist: the mean of the reversal points or of the midpoints of
    runs (Levitt [2]_), which needs enough reversals; a psychometric function
    fitted to all answers by maximum likelihood; or HYPE_time's own per-
    evaluator threshold (Zhou et al. [3]_), where each evaluator saw 3 blocks
    of 150 images. On a floor or ceiling (100 or 1,000 ms) the staircase
    cannot move further, so the estimate is censored there.

    References
    ----------
    .. [1] T. N. Cornsweet, "The staircase-method in psychophysics", American
           Journal of Psychology 75(3), 485-491, 1962.
    .. [2] H. Levitt, "Transformed up-down methods in psychoacoustics", J.
           Acoust. Soc. Am. 49(2B), 467-477, 1971.
    .. [3] S. Zhou, M. L. Gordon, R. Krishna, A. Narcomey, L. Fei-Fei and
           M. S. Bernstein, "HYPE: A Benchmark for Human eYe Perceptual
           Evaluation of Generative Models", NeurIPS 2019.

    Examples
    --------
    >>> threshold([500, 500, 500, 450, 450, 450, 400, 400])
    425.0
    >>> threshold([500, 500, 550])  # the middle trial counts in the second half
    525.0
    """
    x = _exposures("exposure_ms", exposure_ms)
    return float(x[x.size // 2:].mean())


def hype_time(exposure_ms, rater_ids, *, confidence=0.95, n_boot=10_000, seed=0) -> HypeTimeResult:
    """HYPE_time score of one method: the mean of its raters' thresholds, with a bootstrap interval.

    Parameters
    ----------
    exposure_ms : array_like of float, shape (n,)
        The exposure of each trial of the method's staircases, in ms.
    rater_ids : array_like, shape (n,)
        The rater of each trial, all str or all int: one staircase per rater.
        Each rater's trials must be in the order shown; raters may be
        interleaved.
    confidence : float, optional
        Confidence level of the interval, strictly between 0 and 1. Default
        0.95.
    n_boot : int, optional
        Bootstrap resamples. Default 10,000, as in HYPE.
    seed : {None, int, numpy.random.Generator}, optional
        Seed of the resamples; the same seed gives the same interval. Default 0.

    Returns
    -------
    res : HypeTimeResult
        ``score``, ``ci_low``, ``ci_high``, ``n_raters``, ``n_trials``, and
        each rater's ``thresholds``.

    Warns
    -----
    RuntimeWarning
        With fewer than 2 raters (the interval is NaN: one rater's threshold
        says nothing about how raters vary), or when every rater has the same
        threshold (the interval is degenerate).

    Notes
    -----
    Each rater's threshold is `threshold` of their staircase; the score is
    their unweighted mean, so each rater counts once however many trials
    they gave. The interval is the percentile interval of
    `scipy.stats.bootstrap` resampling raters with replacement, as HYPE
    resampled evaluators [1]_. It treats the thresholds as independent draws
    from the raters' population and ignores the noise within each staircase,
    which the spread of the thresholds already carries.

    References
    ----------
    .. [1] S. Zhou, M. L. Gordon, R. Krishna, A. Narcomey, L. Fei-Fei and
           M. S. Bernstein, "HYPE: A Benchmark for Human eYe Perceptual
           Evaluation of Generative Models", NeurIPS 2019.

    Examples
    --------
    Three raters' staircases, interleaved:

    >>> res = hype_time([500, 500, 500, 550, 450, 600, 500, 400],
    ...                 ["a", "b", "c", "a", "b", "c", "c", "b"], n_boot=1000)
    >>> res.raters.tolist(), res.thresholds.tolist()
    (['a', 'b', 'c'], [550.0, 425.0, 550.0])
    >>> round(res.score, 1), res.n_raters, res.n_trials
    (508.3, 3, 8)
    """
    x = _exposures("exposure_ms", exposure_ms)
    rat, raters = _common.codes("rater_ids", rater_ids, x.size, reference="exposure_ms")
    confidence = _common.confidence_level(confidence)
    n_boot = _common.positive_int("n_boot", n_boot)
    rng = _common.generator(seed)

    order = np.argsort(rat, kind="stable")  # each rater's trials stay in the order given
    counts = np.bincount(rat, minlength=raters.size)
    staircases = np.split(x[order], np.cumsum(counts)[:-1])
    thresholds = np.array([threshold(s) for s in staircases])
    low = high = np.nan
    if raters.size < 2:
        warnings.warn(f"{raters.size} rater: the bootstrap over raters needs at least 2 to estimate any "
                      "variance; the interval is NaN.", RuntimeWarning, stacklevel=2)
    else:
        res = stats.bootstrap((thresholds,), np.mean, n_resamples=n_boot, confidence_level=confidence,
                              method="percentile", rng=rng)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if low == high:
            warnings.warn(f"The bootstrap interval is degenerate ([{low}, {high}]): every rater has the "
                          "same threshold.", RuntimeWarning, stacklevel=2)
    return HypeTimeResult(score=float(thresholds.mean()), ci_low=low, ci_high=high, n_raters=int(raters.size),
                          n_trials=int(x.size), confidence=confidence, n_boot=n_boot, raters=raters,
                          thresholds=thresholds, n_rater_trials=counts.astype(np.int64))
