"""Tests of evaluation.vtt.score: the VTT score and its confidence intervals."""
import dataclasses
import doctest
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import brentq
from scipy.special import expit, logit

import evaluation.vtt
from evaluation import VTTResult, score
from evaluation.vtt import _cell_matrices, _replicate_sums

REPO_ROOT = Path(__file__).resolve().parents[1]


def crossed(rng, n_images, n_raters, intercept, sd):
    """Every rater judges every image once; logit-scale image and rater
    effects with standard deviation `sd`."""
    image_effect = rng.normal(0, sd, n_images)
    rater_effect = rng.normal(0, sd, n_raters)
    img = np.repeat(np.arange(n_images), n_raters)
    rat = np.tile(np.arange(n_raters), n_images)
    p = expit(intercept + image_effect[img] + rater_effect[rat])
    return rng.random(img.size) < p, img, rat


def sparse(rng, n_images, n_raters, raters_per_image, sd):
    """Every image judged by `raters_per_image` raters drawn at random."""
    image_effect = rng.normal(0, sd, n_images)
    rater_effect = rng.normal(0, sd, n_raters)
    img = np.repeat(np.arange(n_images), raters_per_image)
    rat = np.concatenate([rng.choice(n_raters, raters_per_image, replace=False)
                          for _ in range(n_images)])
    p = expit(logit(0.3) + image_effect[img] + rater_effect[rat])
    return rng.random(img.size) < p, img, rat


def width(res):
    return res.ci_high - res.ci_low


@pytest.mark.filterwarnings("ignore:about 7 effective raters")
def test_score_is_the_fraction_of_trials_where_the_generated_image_was_picked():
    rng = np.random.default_rng(1)
    y, img, rat = crossed(rng, 30, 7, logit(0.3), 0.5)
    for method in ("cluster", "bootstrap", "pigeonhole", "wilson"):
        res = score(y, img, rat, method=method, n_boot=50)
        assert res.score == y.mean()
        assert res.method == method
        assert res.confidence == 0.95


def test_counts_of_trials_images_and_raters_are_reported_for_string_ids():
    chose_generated = [True, False, 1, 0, 1]
    image_ids = ["cat.jpg", "dog.jpg", "cat.jpg", "owl.jpg", "dog.jpg"]
    rater_ids = ["ann", "bob", "bob", "ann", "ann"]
    with pytest.warns(RuntimeWarning, match="about 2 effective raters"):
        res = score(chose_generated, image_ids, rater_ids, n_boot=50)
    assert (res.n_trials, res.n_images, res.n_raters) == (5, 3, 2)
    assert res.score == 0.6


def test_result_is_a_frozen_dataclass():
    res = score([1, 0], [1, 2], [1, 1], method="wilson")
    assert isinstance(res, VTTResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.score = 0.5


@pytest.mark.parametrize("k, n, confidence",
                         [(1, 10, 0.95), (30, 100, 0.95), (299, 1000, 0.9),
                          (500, 1000, 0.99), (7, 8, 0.5)])
def test_wilson_interval_matches_its_closed_form(k, n, confidence):
    # Wilson (1927); Brown, Cai and DasGupta (2001), eq. 4.
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    p = k / n
    center = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    y = np.arange(n) < k
    res = score(y, np.arange(n), np.arange(n), method="wilson",
                confidence=confidence)
    assert res.ci_low == pytest.approx(center - half, abs=1e-12)
    assert res.ci_high == pytest.approx(center + half, abs=1e-12)


@pytest.mark.parametrize("k, n, confidence",
                         [(0, 20, 0.95), (1, 10, 0.95), (30, 100, 0.95),
                          (299, 1000, 0.9), (500, 1000, 0.99), (20, 20, 0.95)])
def test_wilson_interval_matches_scipy_binomtest(k, n, confidence):
    # Reference: scipy.stats.binomtest(k, n).proportion_ci(method="wilson").
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=confidence,
                                              method="wilson")
    y = np.arange(n) < k
    res = score(y, np.arange(n) % 7, np.arange(n) % 3, method="wilson",
                confidence=confidence)
    assert res.ci_low == pytest.approx(ref.low, abs=1e-12)
    assert res.ci_high == pytest.approx(ref.high, abs=1e-12)


def test_bootstrap_is_reproducible_with_the_same_seed_and_changes_with_another():
    y, img, rat = crossed(np.random.default_rng(2), 40, 15, logit(0.3), 1.0)
    first = score(y, img, rat, method="pigeonhole", n_boot=300, seed=7)
    again = score(y, img, rat, method="pigeonhole", n_boot=300, seed=7)
    other = score(y, img, rat, method="pigeonhole", n_boot=300, seed=8)
    assert first == again
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)


def test_bootstrap_does_not_depend_on_the_batch_size():
    y, img, rat = crossed(np.random.default_rng(3), 40, 15, logit(0.3), 1.0)
    for method in ("bootstrap", "pigeonhole"):
        whole = score(y, img, rat, method=method, n_boot=301, seed=5)
        batched = score(y, img, rat, method=method, n_boot=301, seed=5, batch=17)
        assert batched == whole


@pytest.mark.filterwarnings("ignore:about 15 effective raters")
@pytest.mark.parametrize("method", ["cluster", "bootstrap", "pigeonhole"])
def test_interval_contains_the_point_estimate(method):
    y, img, rat = crossed(np.random.default_rng(4), 40, 15, logit(0.3), 1.0)
    res = score(y, img, rat, method=method, n_boot=500)
    assert res.ci_low < res.score < res.ci_high


def test_interval_halves_when_images_and_raters_quadruple():
    # Five raters per image: 4x the images and raters is 4x the judgments,
    # and every variance term of the mean shrinks by 4.
    rng = np.random.default_rng(5)
    small = score(*sparse(rng, 200, 50, 5, 0.5))
    large = score(*sparse(rng, 800, 200, 5, 0.5))
    assert 0.4 < width(large) / width(small) < 0.6


def test_vectorised_replicates_equal_a_naive_loop_over_judgments():
    rng = np.random.default_rng(6)
    n, n_images, n_raters, n_resamples = 200, 13, 9, 5
    # Repeated (image, rater) pairs included on purpose.
    img = rng.integers(0, n_images, n)
    rat = rng.integers(0, n_raters, n)
    y = (rng.random(n) < 0.4).astype(float)
    w_img = rng.multinomial(n_images, np.full(n_images, 1 / n_images),
                            size=n_resamples)
    w_rat = rng.multinomial(n_raters, np.full(n_raters, 1 / n_raters),
                            size=n_resamples)

    y_cell, n_cell = _cell_matrices(y, img, rat, n_images, n_raters)
    num, den = _replicate_sums(y_cell, n_cell, w_img, w_rat)

    for b in range(n_resamples):
        num_ref = den_ref = 0.0
        for t in range(n):
            w = w_img[b, img[t]] * w_rat[b, rat[t]]
            num_ref += w * y[t]
            den_ref += w
        assert num[b] == pytest.approx(num_ref, rel=1e-12, abs=1e-12)
        assert den[b] == pytest.approx(den_ref, rel=1e-12, abs=1e-12)
        assert num[b] / den[b] == pytest.approx(num_ref / den_ref, rel=1e-12)


def test_cluster_intervals_are_wider_than_wilson_under_random_effects():
    y, img, rat = crossed(np.random.default_rng(7), 40, 30, logit(0.3), 1.0)
    wilson = score(y, img, rat, method="wilson")
    for method in ("cluster", "bootstrap", "pigeonhole"):
        assert width(score(y, img, rat, method=method, n_boot=1000)) > 1.5 * width(wilson)


def test_cluster_interval_covers_and_wilson_undercovers_in_a_crossed_simulation():
    sd, target = 1.0, 0.3
    # The estimand is the expected score over the infinite population of
    # images and raters, E[expit(mu + a + b)] with a + b ~ N(0, 2 sd^2);
    # choose mu so that it equals `target`, by Gauss-Hermite quadrature.
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()

    def marginal(mu):
        return weights @ expit(mu + np.sqrt(2) * sd * nodes)

    mu = brentq(lambda m: marginal(m) - target, -10, 10)

    rng = np.random.default_rng(2024)
    n_sim = 200
    covered_boot = covered_wilson = 0
    for sim in range(n_sim):
        y, img, rat = crossed(rng, 50, 20, mu, sd)
        boot = score(y, img, rat)
        wilson = score(y, img, rat, method="wilson")
        covered_boot += boot.ci_low <= target <= boot.ci_high
        covered_wilson += wilson.ci_low <= target <= wilson.ci_high
    # With 200 simulations, an interval with true coverage 0.95 has an
    # estimated coverage with standard error sqrt(0.95 * 0.05 / 200) = 0.015:
    # 0.88 and 0.99 are 4.5 and 2.6 standard errors from 0.95.
    assert 0.88 <= covered_boot / n_sim <= 0.99
    assert covered_wilson / n_sim < 0.85


def test_all_same_answers_give_a_degenerate_bootstrap_interval_with_a_warning():
    img = np.repeat(np.arange(10), 4)
    rat = np.tile(np.arange(4), 10)
    with pytest.warns(RuntimeWarning, match="interval is degenerate"):
        res = score(np.ones(40, dtype=bool), img, rat, method="pigeonhole", n_boot=100)
    assert (res.ci_low, res.score, res.ci_high) == (1.0, 1.0, 1.0)
    wilson = score(np.zeros(40), img, rat, method="wilson")
    assert wilson.ci_low == 0.0 < wilson.ci_high


def test_resamples_without_any_judgment_are_dropped_with_a_warning():
    # Each rater judged a single image of their own, so a resample whose
    # drawn raters judged none of the drawn images has no judgment.
    ids = np.arange(5)
    with pytest.warns(RuntimeWarning, match=r"of 200 bootstrap resamples "
                                            r"drew no judgment"):
        res = score([1, 0, 1, 0, 0], ids, ids, method="pigeonhole", n_boot=200)
    assert 0 <= res.ci_low <= res.ci_high <= 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(chose_generated=[[1, 0]]),
     "`chose_generated` must be one-dimensional; got shape (1, 2)."),
    (dict(chose_generated=[], image_ids=[], rater_ids=[]),
     "`chose_generated` must contain at least one judgment"),
    (dict(chose_generated=[1, 2]),
     "`chose_generated` must contain only booleans or 0/1; got 2."),
    (dict(chose_generated=[1, np.nan]),
     "`chose_generated` must contain only booleans or 0/1; got nan."),
    (dict(chose_generated=["yes", "no"]),
     "`chose_generated` must contain only booleans or 0/1; got 'yes'."),
    (dict(image_ids=[1, 2, 3]),
     "`image_ids` must have the same length as `chose_generated` (2); got 3."),
    (dict(rater_ids=[[1, 2]]),
     "`rater_ids` must be one-dimensional; got shape (1, 2)."),
    (dict(image_ids=[1, None]),
     "`image_ids` must not contain None (a missing id); got None at position 1."),
    (dict(image_ids=["a", np.nan]),
     "`image_ids` must not contain NaN (a missing id); got nan at position 1."),
    (dict(image_ids=np.array([1.0, np.nan])),
     "`image_ids` must not contain NaN (a missing id); got nan at position 1."),
    (dict(rater_ids=[1, "1"]),
     "`rater_ids` must be ids of one kind (all str or all int); got a mix: 1 (int) and '1' (str)."),
    (dict(rater_ids=[1, 1.0]),
     "`rater_ids` must be ids of one kind (all str or all int); got a mix: 1.0 (float) and 1 (int)."),
    (dict(image_ids=[("a",), ("b",)]),
     "`image_ids` must be one-dimensional; got shape (2, 1)."),
    (dict(method="bayes"),
     "`method` must be one of ('cluster', 'bootstrap', 'pigeonhole', 'wilson'); got 'bayes'."),
    (dict(confidence=1),
     "`confidence` must be a real number strictly between 0 and 1; got 1."),
    (dict(confidence=0.0),
     "`confidence` must be a real number strictly between 0 and 1; got 0.0."),
    (dict(confidence="95%"),
     "`confidence` must be a real number strictly between 0 and 1; "
     "got '95%'."),
    (dict(n_boot=0), "`n_boot` must be a positive integer; got 0."),
    (dict(n_boot=2.5), "`n_boot` must be a positive integer; got 2.5."),
    (dict(batch=0), "`batch` must be None or a positive integer; got 0."),
    (dict(seed=-1), "`seed` must be None, a non-negative integer or a "
                    "numpy.random.Generator; got -1."),
])
def test_invalid_input_raises_a_message_naming_the_parameter(kwargs, message):
    args = dict(chose_generated=[1, 0], image_ids=["a", "b"],
                rater_ids=["r", "r"])
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        score(**args)


def test_docstring_examples_run_as_shown():
    failed, attempted = doctest.testmod(evaluation.vtt)
    assert attempted > 0
    assert failed == 0


def test_evaluation_imports_neither_django_nor_torch():
    code = ("import sys, evaluation; "
            "print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'django', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_resample_counts_are_multinomial_draws_of_n_clusters():
    # Each row counts n picks with replacement among n clusters: it sums to n, and each count is
    # Binomial(n, 1/n), with mean 1 and variance 1 - 1/n. Over 4,000 x 50 counts the mean has a
    # standard error of 0.0022 and the variance one of about 0.004 (3 of each allowed).
    from evaluation._common import draw_weights

    counts = draw_weights(np.random.default_rng(0), 50, 4000)
    assert counts.shape == (4000, 50)
    assert (counts.sum(axis=1) == 50).all()
    assert counts.mean() == pytest.approx(1.0, abs=0.007)
    assert counts.var() == pytest.approx(1 - 1 / 50, abs=0.012)
    # Column 0 against Binomial(50, 1/50): chi-square over the counts 0, 1, 2, 3 and 4 or more.
    observed = np.bincount(np.minimum(counts[:, 0], 4), minlength=5)
    probabilities = stats.binom.pmf(np.arange(4), 50, 1 / 50)
    expected = 4000 * np.append(probabilities, 1 - probabilities.sum())
    assert stats.chisquare(observed, expected).pvalue > 0.001


@pytest.mark.parametrize("method", ["cluster", "bootstrap", "pigeonhole"])
def test_one_image_or_one_rater_gives_no_interval(method):
    with pytest.warns(RuntimeWarning, match="at least 2 of each"):
        res = score([1, 0, 1], ["a", "a", "a"], ["r1", "r2", "r3"], method=method)
    assert res.score == pytest.approx(2 / 3) and np.isnan(res.ci_low) and np.isnan(res.ci_high)


# --- the two-way cluster-robust interval (method="cluster", the default) ---------------------------------------


def naive_two_way(y, img, rat):
    """c_I V_img + c_R V_rat - c_C V_cell by loops over dicts, for a check of `evaluation._cluster`."""
    y = np.asarray(y, dtype=float)
    n, p = y.size, y.mean()
    total = 0.0
    for keys, sign in ((list(img), 1), (list(rat), 1), (list(zip(img, rat)), -1)):
        sums = {}
        for key, value in zip(keys, y):
            sums[key] = sums.get(key, 0.0) + (value - p) / n
        g = len(sums)
        total += sign * g / (g - 1) * sum(v * v for v in sums.values())
    return total


def test_cluster_interval_is_the_wilson_interval_at_the_effective_size_of_a_naive_two_way_variance():
    rng = np.random.default_rng(11)
    img = rng.integers(0, 30, 400)
    rat = rng.integers(0, 25, 400)  # repeated (image, rater) cells included
    y = rng.random(400) < expit(-0.8 + rng.normal(0, 1, 30)[img] + rng.normal(0, 1, 25)[rat])
    res = score(y, img, rat)
    v = naive_two_way(y, img, rat)
    assert res.standard_error == pytest.approx(np.sqrt(v), rel=1e-10)
    # Satterthwaite's effective number of raters: (sum w^2)^2 / sum w^4 with w the raters' shares.
    w = np.bincount(rat) / rat.size
    g_rat = (w**2).sum() ** 2 / (w**4).sum()
    w = np.bincount(img) / img.size
    g_img = (w**2).sum() ** 2 / (w**4).sum()
    assert res.df == pytest.approx(min(g_img, g_rat) - 1, rel=1e-9)
    # Wilson's bounds (Brown, Cai and DasGupta 2001, eq. 4) at n_eff = p(1-p)/V with Student's t.
    p, n_eff, t = y.mean(), y.mean() * (1 - y.mean()) / v, stats.t.ppf(0.975, res.df)
    center = (p + t * t / (2 * n_eff)) / (1 + t * t / n_eff)
    half = t / (1 + t * t / n_eff) * np.sqrt(p * (1 - p) / n_eff + t * t / (4 * n_eff**2))
    assert (res.ci_low, res.ci_high) == pytest.approx((center - half, center + half), rel=1e-10)


def test_cluster_interval_of_independent_trials_is_close_to_wilson_of_scipy():
    # Every rater answers one trial on an image of their own: the three cluster terms are the same sum, V is
    # p(1-p)/(n-1) and the interval is Wilson's at n - 1 trials with t on n - 2 degrees of freedom.
    rng = np.random.default_rng(12)
    y = rng.random(300) < 0.3
    ids = np.arange(300)
    res = score(y, ids, ids)
    ref = stats.binomtest(int(y.sum()), 300).proportion_ci(method="wilson")
    assert res.df == pytest.approx(299)
    assert res.ci_low == pytest.approx(ref.low, abs=0.002)
    assert res.ci_high == pytest.approx(ref.high, abs=0.002)


def test_a_few_raters_holding_most_judgments_lower_the_degrees_of_freedom():
    rng = np.random.default_rng(13)
    img = np.arange(1000) % 200
    rat = np.r_[np.zeros(150, int), np.ones(100, int), 2 + np.arange(750) % 40]
    with pytest.warns(RuntimeWarning, match="effective raters"):
        res = score(rng.random(1000) < 0.3, img, rat)
    w = np.bincount(rat) / 1000
    assert res.df == pytest.approx((w**2).sum() ** 2 / (w**4).sum() - 1)
    assert 2 < res.df < 3  # 42 raters, of whom 2 gave a quarter of the judgments


def test_three_raters_give_a_wide_interval_and_a_warning_naming_the_limit():
    rng = np.random.default_rng(14)
    img = np.repeat(np.arange(40), 3)
    rat = np.tile(np.arange(3), 40)
    y = rng.random(120) < 0.3
    with pytest.warns(RuntimeWarning, match=r"about 3 effective raters \(fewer than 10\).*2 degree"):
        res = score(y, img, rat)
    assert res.df == pytest.approx(2)
    wilson = score(y, img, rat, method="wilson")
    # Student's t on 2 degrees of freedom is 4.30 against 1.96.
    assert width(res) > 1.5 * width(wilson)


def test_cluster_interval_stays_in_the_unit_interval_and_all_same_answers_are_wilsons():
    img = np.repeat(np.arange(10), 4)
    rat = np.tile(np.arange(4), 10)
    with pytest.warns(RuntimeWarning, match="effective"):
        res = score(np.zeros(40), img, rat)
    assert res.ci_low == 0.0 < res.ci_high < 0.5
    rng = np.random.default_rng(15)
    y = rng.random(40) < 0.05
    with pytest.warns(RuntimeWarning, match="effective"):
        res = score(y, img, rat)
    assert 0.0 <= res.ci_low <= res.score <= res.ci_high <= 1.0


def test_bootstrap_method_has_the_cluster_variance_and_pigeonhole_three_times_the_noise():
    # Independent answers, 5 raters per image and 40 images per rater: the noise dominates every term, so the
    # pigeonhole variance is about 3 V while the corrected resamples have V (2,000 resamples: about 3% each).
    rng = np.random.default_rng(16)
    img = np.repeat(np.arange(800), 5)
    rat = (np.arange(4000) * 7) % 100
    y = rng.random(4000) < 0.3
    v = score(y, img, rat).standard_error ** 2
    boot = score(y, img, rat, method="bootstrap", n_boot=2000).standard_error ** 2
    pigeon = score(y, img, rat, method="pigeonhole", n_boot=2000).standard_error ** 2
    assert boot == pytest.approx(v, rel=0.1)
    assert pigeon / v == pytest.approx(3, rel=0.15)
