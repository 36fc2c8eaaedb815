"""Tests of evaluation.compare, compare_all and holm: paired differences of VTT scores."""
import dataclasses
import doctest
import itertools
import math
import re

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logit

import evaluation.comparison
from evaluation import Comparison, compare, compare_all, holm
from evaluation import _cluster
from evaluation.comparison import _group_replicates


def paired_design(rng, n_images, k, trials_per_rater, n_methods=2):
    """Each (image, method) judged by `k` distinct raters who see every method and never an image twice.

    Slot s of the image-ordered list of (image, method, k) slots goes to rater s mod n_raters: a rater's
    slots are n_raters >= n_methods * k apart, so on different images, and as n_raters is coprime with
    n_methods * k, they fall on every method in turn.
    """
    per_image = n_methods * k
    n_slots = n_images * per_image
    n_raters = n_slots // trials_per_rater
    while math.gcd(n_raters, per_image) != 1:
        n_raters -= 1
    img = np.repeat(np.arange(n_images), per_image)
    meth = np.tile(np.repeat(np.arange(n_methods), k), n_images)
    rat = rng.permutation(n_raters)[np.arange(n_slots) % n_raters]
    return img, meth, rat, n_raters


def simulate(rng, mu, sd_image, sd_image_method, sd_rater, n_images=100, k=5, trials_per_rater=20):
    """Answers from a logistic model: method intercepts `mu`, random image, image-by-method and rater
    effects on the logit scale. The image and rater effects are shared by the methods."""
    img, meth, rat, n_raters = paired_design(rng, n_images, k, trials_per_rater, len(mu))
    eta = (np.asarray(mu)[meth] + rng.normal(0, sd_image, n_images)[img]
           + rng.normal(0, sd_image_method, (n_images, len(mu)))[img, meth] + rng.normal(0, sd_rater, n_raters)[rat])
    return rng.random(img.size) < expit(eta), img, rat, meth


def expected_score(mu, sd):
    """E[expit(mu + sd Z)], Z standard normal, by Gauss-Hermite quadrature: the population VTT score."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    return weights @ expit(mu + sd * nodes) / weights.sum()


@pytest.mark.filterwarnings("ignore:a vs b. about")
@pytest.mark.filterwarnings("ignore:1 pair.s., e.g. a vs b. the two-way")
def test_difference_and_counts_are_exact():
    y = [1, 0, 1, 1, 0, 0, 0, 1]
    img = ["x", "x", "y", "z", "x", "y", "y", "w"]
    rat = ["r1", "r2", "r1", "r3", "r3", "r2", "r4", "r4"]
    meth = ["a", "a", "a", "a", "b", "b", "b", "b"]
    res = compare(y, img, rat, meth, n_boot=200)
    assert res.method_a == "a" and res.method_b == "b"
    assert (res.vtt_a, res.vtt_b, res.difference) == (0.75, 0.25, 0.5)
    assert (res.n_trials_a, res.n_trials_b) == (4, 4)
    assert (res.n_images, res.n_images_shared) == (4, 2)  # {x, y, z, w}; x and y under both
    assert (res.n_raters, res.n_raters_shared) == (4, 2)  # r2 and r3 judged both
    assert res.pvalue_holm == res.pvalue
    assert isinstance(res.method_a, str)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_result_is_a_frozen_dataclass():
    res = compare([1, 0, 0, 1], [1, 1, 2, 2], [1, 2, 1, 2], ["a", "b", "a", "b"], n_boot=50)
    assert isinstance(res, Comparison)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.pvalue = 0.5


def test_swapping_the_pair_negates_the_difference_and_mirrors_the_interval():
    y, img, rat, meth = simulate(np.random.default_rng(1), [logit(0.3), logit(0.4)], 0.5, 0.5, 0.5)
    for method in ("cluster", "bootstrap"):
        ab = compare(y, img, rat, meth, pair=(0, 1), method=method, n_boot=400, seed=3)
        ba = compare(y, img, rat, meth, pair=(1, 0), method=method, n_boot=400, seed=3)
        assert ba.difference == -ab.difference
        assert ba.ci_low == pytest.approx(-ab.ci_high, abs=1e-12)
        assert ba.ci_high == pytest.approx(-ab.ci_low, abs=1e-12)
        assert ba.pvalue == pytest.approx(ab.pvalue, rel=1e-12)


def test_pair_ignores_the_judgments_of_other_methods():
    y, img, rat, meth = simulate(np.random.default_rng(2), [0.0, -0.5, -1.0], 0.5, 0.5, 0.5)
    two = meth < 2
    whole = compare(y, img, rat, meth, pair=(0, 1), n_boot=300)
    only = compare(y[two], img[two], rat[two], meth[two], n_boot=300)
    assert whole == only


def test_compare_all_on_two_methods_equals_compare():
    y, img, rat, meth = simulate(np.random.default_rng(3), [0.0, -0.5], 0.5, 0.5, 0.5)
    (res,) = compare_all(y, img, rat, meth, n_boot=300)
    assert res == compare(y, img, rat, meth, n_boot=300)


def test_compare_all_gives_every_pair_in_order_with_holm_adjusted_pvalues():
    y, img, rat, meth = simulate(np.random.default_rng(4), [0.0, -0.3, -0.6, -0.9], 0.5, 0.5, 0.5)
    labels = np.array(["w", "x", "y", "z"])[meth]
    results = compare_all(y, img, rat, labels, n_boot=300)
    assert [(r.method_a, r.method_b) for r in results] == list(itertools.combinations("wxyz", 2))
    assert [r.pvalue_holm for r in results] == holm([r.pvalue for r in results]).tolist()
    chosen = compare_all(y, img, rat, labels, pairs=[("z", "w"), ("x", "y")], n_boot=300)
    assert [(r.method_a, r.method_b) for r in chosen] == [("z", "w"), ("x", "y")]
    assert chosen[0].difference == pytest.approx(-results[2].difference)


def test_same_seed_same_result_and_batching_changes_nothing():
    y, img, rat, meth = simulate(np.random.default_rng(5), [0.0, -0.5], 1.0, 0.5, 1.0)
    first = compare(y, img, rat, meth, method="bootstrap", n_boot=301, seed=9)
    assert compare(y, img, rat, meth, method="bootstrap", n_boot=301, seed=9) == first
    assert compare(y, img, rat, meth, method="bootstrap", n_boot=301, seed=9, batch=17) == first
    other = compare(y, img, rat, meth, method="bootstrap", n_boot=301, seed=10)
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)


def test_grouped_replicates_equal_a_naive_loop_over_judgments():
    rng = np.random.default_rng(6)
    n, n_images, n_raters, n_groups, n_boot = 300, 11, 7, 3, 6
    img = rng.integers(0, n_images, n)
    rat = rng.integers(0, n_raters, n)
    grp = rng.integers(0, n_groups, n)
    y = (rng.random(n) < 0.4).astype(float)
    replicates = _group_replicates(y, img, rat, grp, n_images, n_raters, n_groups, n_boot, 4,
                                   np.random.default_rng(0))
    # The same draws, made the way the function makes them.
    rng_img, rng_rat = np.random.default_rng(0).spawn(2)
    draws = []
    for size in (4, 2):
        w_img = evaluation._common.draw_weights(rng_img, n_images, size)
        w_rat = evaluation._common.draw_weights(rng_rat, n_raters, size)
        draws.extend(zip(w_img, w_rat))
    for b, (w_img, w_rat) in enumerate(draws):
        for g in range(n_groups):
            num = den = 0.0
            for t in range(n):
                if grp[t] == g:
                    w = w_img[img[t]] * w_rat[rat[t]]
                    num += w * y[t]
                    den += w
            assert replicates[g, b] == pytest.approx(num / den, rel=1e-12)


def test_variance_components_equal_a_naive_loop():
    rng = np.random.default_rng(7)
    n, n_images, n_raters = 400, 15, 12
    img = rng.integers(0, n_images, n)
    rat = rng.integers(0, n_raters, n)  # repeated (image, rater) cells, across methods too
    grp = rng.integers(0, 3, n)
    y = (rng.random(n) < 0.4).astype(float)
    pairs = [(0, 1), (2, 0), (1, None)]
    var = _cluster.two_way(_cluster.components(y, img, rat, grp, n_images, n_raters, 3), pairs)
    for p, (a, b) in enumerate(pairs):
        e = np.zeros(n)
        for g, sign in ((a, 1), (b, -1)):
            if g is not None:
                mask = grp == g
                e[mask] = sign * (y[mask] - y[mask].mean()) / mask.sum()
        two_way = 0.0
        for kind, keys in zip(_cluster.KINDS, (img, rat, list(zip(img, rat)))):
            sums, in_a, in_b = {}, set(), set()
            for t in range(n):
                key = keys[t]
                if grp[t] in (a, b):
                    sums[key] = sums.get(key, 0.0) + e[t]
                    (in_a if grp[t] == a else in_b).add(key)
            v = sum(x * x for x in sums.values())
            g = len(in_a | in_b)
            two_way += (-1 if kind == "cell" else 1) * g / (g - 1) * v
            assert var.terms[kind][p] == pytest.approx(v, rel=1e-10)
            assert var.clusters[kind][p] == g
            assert var.shared[kind][p] == (len(in_a & in_b) if b is not None else len(in_a))
        if two_way > 0:
            assert var.variance[p] == pytest.approx(two_way, rel=1e-10) and not var.fell_back[p]
        else:  # the fall-back: the larger one-way variance
            one_way = max(g / (g - 1) * var.terms[k][p] for k, g in
                          ((k, var.clusters[k][p]) for k in ("image", "rater")))
            assert var.variance[p] == pytest.approx(one_way, rel=1e-10) and var.fell_back[p]


def test_pigeonhole_resamples_have_the_variance_derived_in_the_notes():
    # Var = V_img + V_rat + V_cell to first order: checked on 4,000 resamples, whose variance has a
    # relative standard error of about sqrt(2 / 4000) = 2%.
    y, img, rat, meth = simulate(np.random.default_rng(8), [logit(0.3), logit(0.35)], 0.7, 0.7, 0.7, n_images=150)
    res = compare(y, img, rat, meth, method="pigeonhole", n_boot=4000)
    _, raters = np.unique(rat, return_inverse=True)
    comp = _cluster.components(y.astype(float), img, raters, meth, img.max() + 1, raters.max() + 1, 2)
    terms = _cluster.two_way(comp, [(0, 1)]).terms
    assert res.standard_error**2 == pytest.approx(sum(terms[k][0] for k in _cluster.KINDS), rel=0.1)


def test_the_corrected_interval_is_narrower_and_the_pvalue_matches_it():
    y, img, rat, meth = simulate(np.random.default_rng(9), [logit(0.3), logit(0.4)], 0.5, 0.5, 0.5)
    boot = compare(y, img, rat, meth, n_boot=2000, method="bootstrap")
    pigeon = compare(y, img, rat, meth, n_boot=2000, method="pigeonhole")
    assert boot.difference == pigeon.difference
    assert boot.ci_high - boot.ci_low < 0.9 * (pigeon.ci_high - pigeon.ci_low)
    assert boot.ci_low < boot.difference < boot.ci_high
    # p < 1 - confidence exactly when the interval leaves out 0 (up to the resolution of 2001 resamples).
    for confidence in (0.8, 0.9, 0.95, 0.99):
        res = compare(y, img, rat, meth, n_boot=2000, confidence=confidence, method="bootstrap")
        excludes = not res.ci_low <= 0 <= res.ci_high
        if abs(res.pvalue - (1 - confidence)) > 0.002:
            assert excludes == (res.pvalue < 1 - confidence)


def test_pvalue_is_never_zero_and_has_the_resolution_of_the_resamples():
    y = np.r_[np.ones(100), np.zeros(100)]
    img = np.tile(np.arange(100), 2)
    rat = np.arange(200) % 37
    meth = np.repeat(["a", "b"], 100)
    with pytest.warns(RuntimeWarning, match="degenerate"):
        res = compare(y, img, rat, meth, method="bootstrap", n_boot=999)
    assert res.difference == 1.0
    assert res.pvalue == 2 / 1000


def test_empty_resamples_are_dropped_with_a_warning():
    # One judgment per rater: a resample may draw no rater of one of the methods.
    ids = np.arange(6)
    with pytest.warns(RuntimeWarning, match="drew no judgment"):
        res = compare([1, 0, 1, 0, 0, 1], ids % 3, ids, ["a", "b"] * 3, method="pigeonhole", n_boot=300)
    assert res.ci_low <= res.ci_high


# Simulation studies. Each design: 100 images, 5 raters per (image, method), 49 raters of about 20
# trials who see both methods, random effects on the logit scale. The tolerances come from the number of simulated
# experiments: with 400, an estimated rate near 0.05 has a standard error of sqrt(0.05 * 0.95 / 400)
# = 0.011, and 3 standard errors are 0.033.

def _simulations(n_sim, mu, sds, seed, **kwargs):
    rng = np.random.default_rng(seed)
    out = []
    for sim in range(n_sim):
        y, img, rat, meth = simulate(rng, mu, *sds)
        out.append((compare(y, img, rat, meth, n_boot=400, seed=sim, **kwargs)))
    return out


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_difference_interval_covers_the_true_difference_at_the_nominal_rate():
    sds = (1.0, 1.0, 1.0)
    mu = [logit(0.3) + 0.5, logit(0.3)]
    total_sd = np.sqrt(sum(s * s for s in sds))
    truth = expected_score(mu[0], total_sd) - expected_score(mu[1], total_sd)
    results = _simulations(400, mu, sds, seed=2026)
    coverage = np.mean([r.ci_low <= truth <= r.ci_high for r in results])
    # 0.95 +- 3 standard errors of a rate estimated from 400 experiments (0.011 each).
    assert abs(coverage - 0.95) <= 0.033, coverage


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_pvalue_is_calibrated_under_the_null_and_the_uncorrected_pigeonhole_is_conservative():
    sds = (0.5, 0.5, 0.5)
    mu = [logit(0.3), logit(0.3)]
    corrected = np.array([r.pvalue for r in _simulations(400, mu, sds, seed=7)])
    pigeonhole = np.array([r.pvalue for r in _simulations(400, mu, sds, seed=7, method="pigeonhole")])
    # Type I error at 5% and 20%: within 3 standard errors (0.033 and 0.060 for 400 experiments).
    assert abs(np.mean(corrected < 0.05) - 0.05) <= 0.033
    assert abs(np.mean(corrected < 0.20) - 0.20) <= 0.060
    # Uniform overall; the p-values are discrete in steps of 2 / 401, well below the KS statistic's scale.
    assert stats.kstest(corrected, "uniform").pvalue > 0.001
    # The same resamples without the correction reject far less often than they should.
    assert np.mean(pigeonhole < 0.05) < 0.017


@pytest.mark.parametrize("kwargs, message", [
    (dict(chose_generated=[[1, 0]]), "`chose_generated` must be one-dimensional; got shape (1, 2)."),
    (dict(chose_generated=[], image_ids=[], rater_ids=[], method_ids=[]),
     "`chose_generated` must contain at least one judgment"),
    (dict(chose_generated=[1, 2, 0, 1]), "`chose_generated` must contain only booleans or 0/1; got 2."),
    (dict(image_ids=[1, 2]), "`image_ids` must have the same length as `chose_generated` (4); got 2."),
    (dict(method_ids=["a", "a", "a", "a"]), "`method_ids` must name at least two methods; got 1 ('a')."),
    (dict(method_ids=["a", "b", float("nan"), "b"], pair=("a", "b")),
     "`method_ids` must not contain NaN (a missing id); got nan at position 2."),
    (dict(method_ids=["a", "b", None, "b"], pair=("a", "b")), "`method_ids` must not contain None (a missing id); got None at position 2."),
    (dict(rater_ids=[1, 2, "1", 4]),
     "`rater_ids` must be ids of one kind (all str or all int); got a mix: 1 (int) and '1' (str)."),
    (dict(method_ids=["a", "b", "c", "a"]), "`method_ids` holds more than two methods (3); pass `pair`"),
    (dict(pair=("a", "a")), "`pair` must be two different method ids; got ('a', 'a')."),
    (dict(pair=("a", "z")), "`pair` names 'z', which is not in `method_ids`."),
    (dict(pair="abc"), "`pair` must be None or two method ids; got 'abc'."),
    (dict(method="bca"), "`method` must be one of ('cluster', 'bootstrap', 'pigeonhole'); got 'bca'."),
    (dict(confidence=95), "`confidence` must be a real number strictly between 0 and 1; got 95."),
    (dict(n_boot=-1), "`n_boot` must be a positive integer; got -1."),
    (dict(batch=1.5), "`batch` must be None or a positive integer; got 1.5."),
    (dict(seed="x"), "`seed` must be None, a non-negative integer or a numpy.random.Generator; got 'x'."),
])
def test_invalid_input_to_compare_raises_a_message_naming_the_parameter(kwargs, message):
    args = dict(chose_generated=[1, 0, 0, 1], image_ids=[1, 1, 2, 2], rater_ids=[1, 2, 3, 4],
                method_ids=["a", "b", "a", "b"])
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        compare(**args)


@pytest.mark.parametrize("pairs, message", [
    ([], "`pairs` must name at least one pair; got an empty sequence."),
    ([("a",)], "`pairs` must hold pairs of two different method ids; got ('a',)."),
    ([("a", "q")], "`pairs` names 'q', which is not in `method_ids`."),
    (3, "`pairs` must be None or a sequence of pairs of method ids; got 3."),
])
def test_invalid_pairs_raise_a_message_naming_the_parameter(pairs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        compare_all([1, 0, 0, 1], [1, 1, 2, 2], [1, 2, 3, 4], ["a", "b", "a", "b"], pairs=pairs)


def test_holm_matches_its_definition_by_hand():
    # m = 4, sorted 0.01, 0.03, 0.04, 0.20: 4 * 0.01, max(.04, 3 * .03), max(.09, 2 * .04), max(.09, .20).
    assert holm([0.01, 0.04, 0.03, 0.20]).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert holm([0.5, 0.6]).tolist() == [1.0, 1.0]
    assert holm([0.02]).tolist() == [0.02]
    assert holm([]).size == 0


def test_holm_equals_the_step_down_procedure_it_adjusts():
    # Holm (1979): reject H_(1), ..., H_(j) while p_(i) <= alpha / (m - i + 1); the adjusted p-value of
    # a hypothesis is the smallest alpha at which it is rejected. Checked on a grid of alphas.
    p = np.random.default_rng(10).uniform(0, 0.2, 12) ** 2
    adjusted = holm(p)
    for alpha in np.linspace(0.001, 0.3, 300):
        rejected = np.zeros(p.size, dtype=bool)
        for i, idx in enumerate(np.argsort(p)):
            if p[idx] > alpha / (p.size - i):
                break
            rejected[idx] = True
        np.testing.assert_array_equal(rejected, adjusted <= alpha)


@pytest.mark.parametrize("pvalues, message", [
    ([[0.1]], "`pvalues` must be one-dimensional; got shape (1, 1)."),
    ([0.1, 1.5], "`pvalues` must be real numbers between 0 and 1; got 1.5."),
    ([0.1, np.nan], "`pvalues` must be real numbers between 0 and 1; got nan."),
    (["0.1"], "`pvalues` must be real numbers between 0 and 1; got dtype <U3."),
])
def test_invalid_pvalues_raise_a_message(pvalues, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        holm(pvalues)


def test_docstring_examples_run_as_shown():
    failed, attempted = doctest.testmod(evaluation.comparison)
    assert attempted > 0
    assert failed == 0


@pytest.mark.filterwarnings("ignore:Up to .* bootstrap resamples drew no judgment")
def test_a_pair_judged_by_one_rater_has_no_interval_or_pvalue():
    with pytest.warns(RuntimeWarning, match="fewer than 2 images or by fewer than 2 raters"):
        res = compare([1, 0], ["i1", "i2"], ["r", "r"], ["a", "b"], n_boot=200)
    assert res.difference == 1.0
    assert np.isnan(res.ci_low) and np.isnan(res.ci_high) and np.isnan(res.pvalue)


# --- the default: two-way cluster-robust standard error with Student's t ----------------------------------------


def test_cluster_pvalue_and_interval_are_students_t_on_the_cluster_robust_standard_error():
    y, img, rat, meth = simulate(np.random.default_rng(21), [logit(0.3), logit(0.4)], 0.5, 0.5, 0.5)
    res = compare(y, img, rat, meth)
    _, raters = np.unique(rat, return_inverse=True)
    comp = _cluster.components(y.astype(float), img, raters, meth, img.max() + 1, raters.max() + 1, 2)
    var = _cluster.two_way(comp, [(0, 1)])
    se = np.sqrt(var.variance[0])
    assert res.standard_error == pytest.approx(se, rel=1e-12)
    assert res.df == pytest.approx(var.df[0])
    t = stats.t(res.df)
    assert res.pvalue == pytest.approx(2 * t.sf(abs(res.difference) / se), rel=1e-9)
    assert res.ci_high - res.difference == pytest.approx(t.ppf(0.975) * se, rel=1e-9)
    assert res.n_boot == 0 and res.method == "cluster"


def test_eight_judgments_from_two_raters_are_no_evidence():
    # 3 of 4 against 1 of 4, two raters who saw both methods: Fisher's exact test on the counts gives 0.49; the
    # cluster-robust test, on 1 degree of freedom, must not find a difference either.
    y = [1, 1, 1, 0, 1, 0, 0, 0]
    img = [1, 2, 3, 4, 1, 2, 3, 4]
    rat = [1, 1, 2, 2, 1, 1, 2, 2]
    meth = ["a"] * 4 + ["b"] * 4
    with pytest.warns(RuntimeWarning, match="about 2 effective raters"):
        res = compare(y, img, rat, meth)
    fisher = stats.fisher_exact([[3, 1], [1, 3]]).pvalue
    assert fisher == pytest.approx(0.486, abs=0.001)
    assert res.pvalue > 0.2 and res.df == 1
    assert (res.ci_low, res.ci_high) == (-1.0, 1.0)  # clipped to the possible differences


def test_no_floor_the_variance_is_the_two_way_estimate_whenever_it_is_positive():
    # Raters who see both methods, no rater x method interaction: the rater term of the difference is mostly
    # noise, below the image term, and the two-way estimate sits below the larger one-way variance. The
    # earlier floor replaced it by that one-way variance; now it is used as it is.
    below = 0
    for seed in range(22, 42):
        y, img, rat, meth = simulate(np.random.default_rng(seed), [logit(0.3), logit(0.3)], 0.5, 1.0, 1.0)
        _, raters = np.unique(rat, return_inverse=True)
        comp = _cluster.components(y.astype(float), img, raters, meth, img.max() + 1, raters.max() + 1, 2)
        var = _cluster.two_way(comp, [(0, 1)])
        c = {k: var.clusters[k][0] / (var.clusters[k][0] - 1) for k in _cluster.KINDS}
        one_way = max(c["image"] * var.terms["image"][0], c["rater"] * var.terms["rater"][0])
        two_way = sum((-1 if k == "cell" else 1) * c[k] * var.terms[k][0] for k in _cluster.KINDS)
        assert two_way > 0
        assert compare(y, img, rat, meth).standard_error == pytest.approx(np.sqrt(two_way), rel=1e-12)
        below += two_way < one_way
    # The old floor would have bound in about half of these experiments.
    assert below >= 3


def test_a_difference_with_no_variance_has_no_interval_and_says_so():
    y = np.r_[np.ones(100), np.zeros(100)]
    img = np.tile(np.arange(100), 2)
    rat = np.arange(200) % 37
    with pytest.warns(RuntimeWarning, match="degenerate interval: every judgment of each method is the same"):
        res = compare(y, img, rat, np.repeat(["a", "b"], 100))
    assert res.difference == 1.0 and np.isnan(res.pvalue) and np.isnan(res.ci_low)
