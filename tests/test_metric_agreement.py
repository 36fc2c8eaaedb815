"""Tests of evaluation.metric_agreement: rank agreement (Kendall's tau-b across methods) and pair
prediction (AUC across pairs) of automatic metrics against the verdicts of a Visual Turing Test."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.sparse import coo_array

from evaluation import metric_agreement as ma
from evaluation.metric_agreement import pair_prediction, pair_rates, rank_agreement


def design(rates: np.ndarray, raters: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Judgments where pair (m, i) fools exactly round(rates[m, i] * raters) of its `raters` raters."""
    n_methods, n_images = rates.shape
    method = np.repeat(np.arange(n_methods), n_images * raters)
    image = np.tile(np.repeat(np.arange(n_images), raters), n_methods)
    fooled = np.rint(rates * raters).astype(int)
    y = (np.tile(np.arange(raters), n_methods * n_images) < fooled[method, image]).astype(int)
    return y, image, method


def simulate(rng: np.random.Generator, n_methods: int, n_images: int, raters: int = 5, signal: float = 1.0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random judgments whose fooling probability is logistic in a latent z; returns y, image, method, z."""
    z = rng.normal(size=(n_methods, n_images)) + signal * rng.normal(size=(n_methods, 1))
    p = 1 / (1 + np.exp(-1.5 * z))
    method = np.repeat(np.arange(n_methods), n_images * raters)
    image = np.tile(np.repeat(np.arange(n_images), raters), n_methods)
    y = (rng.random(method.size) < p[method, image]).astype(int)
    return y, image, method, z


# ------------------------------------------------------------------------------------------------
# pair_rates


def test_pair_rates_counts_and_rates_with_nan_for_unjudged_pairs():
    y = [1, 0, 1, 1, 0]
    image = [0, 0, 1, 1, 2]
    method = [0, 0, 0, 1, 1]
    counts, rates = pair_rates(y, image, method, 2, 4)
    assert counts.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0]]
    assert rates[0, 0] == 0.5 and rates[0, 1] == 1.0 and rates[1, 1] == 1.0 and rates[1, 2] == 0.0
    assert np.isnan(rates[[0, 0, 1, 1], [2, 3, 0, 3]]).all()


# ------------------------------------------------------------------------------------------------
# pair_prediction: worked examples


def tiny_auc_design():
    # One method, five images, three raters each: images 0 and 1 fool 2 or 3 of 3 (fooled), the rest 0 or 1.
    rates = np.array([[1.0, 2 / 3, 1 / 3, 0.0, 1 / 3]])
    y, image, method = design(rates, raters=3)
    # Fooled values {3, 2}, not fooled {2, 1, 0}: 3 beats all three (3); 2 ties 2 (0.5) and beats 1 and 0 (2).
    values = {"m": np.array([[3.0, 2.0, 2.0, 1.0, 0.0]])}
    return y, image, method, values


def test_auc_by_hand_with_a_tie():
    y, image, method, values = tiny_auc_design()
    # Five images: a resample misses every fooled (or every other) pair 14% of the time.
    with pytest.warns(RuntimeWarning, match="28 of 200 bootstrap resamples were undefined"):
        (res,) = pair_prediction(y, image, method, values, {"m": 1}, min_pairs=5, min_per_class=2, n_boot=200)
    assert res.n_undefined == 28
    assert res.estimable and res.reason == ""
    assert res.auc == pytest.approx(5.5 / 6)
    assert (res.n_pairs, res.n_fooled) == (5, 2)
    assert res.ci_low <= res.auc <= res.ci_high


def test_auc_orientation_direction_minus_one_gives_one_minus_auc():
    y, image, method, values = tiny_auc_design()
    kwargs = dict(min_pairs=5, min_per_class=2, n_boot=200)
    with pytest.warns(RuntimeWarning, match="bootstrap resamples were undefined"):
        (up,) = pair_prediction(y, image, method, values, {"m": 1}, **kwargs)
        (down,) = pair_prediction(y, image, method, values, {"m": -1}, **kwargs)
    assert down.auc == pytest.approx(1 - up.auc) == pytest.approx(0.5 / 6)
    # Same resamples, mirrored: the interval mirrors too.
    assert down.ci_low == pytest.approx(1 - up.ci_high) and down.ci_high == pytest.approx(1 - up.ci_low)


def test_half_of_the_raters_counts_as_fooled_and_pairs_with_few_raters_are_left_out():
    # Four raters, two fooled: fooled (rate 0.5 >= 0.5). A pair with two raters is left out at min_raters=3.
    rates = np.array([[0.5, 0.25, 0.75, 0.0, 0.5, 0.25]])
    y, image, method = design(rates, raters=4)
    keep = ~((image == 5) & (np.arange(y.size) % 4 >= 2))  # image 5 keeps 2 judgments
    values = {"m": np.arange(6.0)[None, :]}
    with pytest.warns(RuntimeWarning, match="bootstrap resamples were undefined"):
        (res,) = pair_prediction(y[keep], image[keep], method[keep], values, {"m": 1}, min_pairs=5,
                                 min_per_class=2, n_boot=50)
    assert (res.n_pairs, res.n_fooled) == (5, 3)
    # Fooled values {0, 2, 4} against {1, 3}: 0 beats none, 2 beats 1, 4 beats both: 3 of 6.
    assert res.auc == pytest.approx(3 / 6)


def test_weighted_auc_matches_mannwhitney_on_repeated_pairs():
    rng = np.random.default_rng(3)
    n_images = 40
    pair_image = rng.integers(0, n_images, size=200)
    x = rng.integers(0, 15, size=200).astype(float)  # many ties
    label = rng.random(200) < 0.4
    levels, level = np.unique(x, return_inverse=True)
    shape = (n_images, levels.size)
    fooled = coo_array((np.ones(label.sum()), (pair_image[label], level[label])), shape=shape).tocsr()
    not_fooled = coo_array((np.ones((~label).sum()), (pair_image[~label], level[~label])), shape=shape).tocsr()
    counts = np.vstack([np.ones(n_images), ma._draws(rng, n_images, 5)]).astype(float)
    got = ma._weighted_auc(counts, fooled, not_fooled)
    for row, auc in zip(counts.astype(int), got):
        mult = row[pair_image]
        xr, lr = np.repeat(x, mult), np.repeat(label, mult)
        u = stats.mannwhitneyu(xr[lr], xr[~lr]).statistic
        assert auc == pytest.approx(u / (lr.sum() * (~lr).sum()), abs=1e-12)


# ------------------------------------------------------------------------------------------------
# rank_agreement: worked examples


def four_methods(n_images: int = 10):
    # Scores 0.1, 0.3, 0.5, 0.7 of ten raters per pair; metric constant per method: 1, 3, 2, 4.
    rates = np.repeat(np.array([[0.1], [0.3], [0.5], [0.7]]), n_images, axis=1)
    y, image, method = design(rates, raters=10)
    metric = np.repeat(np.array([[1.0], [3.0], [2.0], [4.0]]), n_images, axis=1)
    return y, image, method, metric


def test_tau_on_four_methods_by_hand_and_against_scipy():
    y, image, method, metric = four_methods()
    (res,) = rank_agreement(y, image, method, {"m": metric}, {"m": 1}, n_boot=100)
    # Of the 6 pairs of methods only (3, 2) is discordant: (5 - 1) / 6.
    assert res.tau == pytest.approx(2 / 3)
    assert res.tau == pytest.approx(stats.kendalltau([1, 3, 2, 4], [0.1, 0.3, 0.5, 0.7]).statistic)
    assert (res.n_methods, res.n_images, res.n_boot) == (4, 10, 100)
    assert res.estimable and res.reason == ""
    # Every resample keeps each method's score and metric: tau never moves.
    assert res.ci_low == res.ci_high == pytest.approx(2 / 3) and res.n_undefined == 0


def test_tau_orientation_direction_minus_one_flips_the_sign():
    y, image, method, metric = four_methods()
    up, down = rank_agreement(y, image, method, {"up": metric, "down": -metric}, {"up": 1, "down": -1}, n_boot=50)
    assert up.tau == pytest.approx(2 / 3) and down.tau == pytest.approx(2 / 3)
    (flipped,) = rank_agreement(y, image, method, {"m": metric}, {"m": -1}, n_boot=50)
    assert flipped.tau == pytest.approx(-2 / 3)


def test_tau_b_with_tied_scores_matches_scipy():
    rng = np.random.default_rng(5)
    rates = np.repeat(np.array([[0.2], [0.4], [0.4], [0.8], [0.6]]), 12, axis=1)
    y, image, method = design(rates, raters=5)
    metric = rng.normal(size=(5, 12))
    (res,) = rank_agreement(y, image, method, {"m": metric}, {"m": 1}, n_boot=50)
    assert res.tau == pytest.approx(stats.kendalltau(metric.mean(axis=1), [0.2, 0.4, 0.4, 0.8, 0.6]).statistic)


def test_vectorised_tau_b_matches_scipy_with_ties():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 4, size=(200, 6)).astype(float)
    y = rng.integers(0, 3, size=(200, 6)).astype(float)
    got = ma._tau_b_rows(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.array([stats.kendalltau(a, b).statistic for a, b in zip(x, y)])
    np.testing.assert_array_equal(got, want)  # to the bit, NaN where undefined


def test_metric_mean_uses_only_the_images_judged_for_that_method():
    y, image, method, metric = four_methods()
    metric = np.hstack([metric, [[100.0], [-100.0], [0.0], [0.0]]])  # an 11th image nobody judged
    (res,) = rank_agreement(y, image, method, {"m": metric}, {"m": 1}, n_boot=50)
    assert res.tau == pytest.approx(2 / 3) and res.n_images == 10


def test_a_missing_value_drops_the_pair_from_both_sides():
    rng = np.random.default_rng(11)
    y, image, method, z = simulate(rng, 5, 15)
    metric = z + rng.normal(size=z.shape)
    holed = metric.copy()
    holed[2, 4] = np.nan
    keep = ~((method == 2) & (image == 4))
    (with_hole,) = rank_agreement(y, image, method, {"m": holed}, {"m": 1}, n_boot=300)
    (without_pair,) = rank_agreement(y[keep], image[keep], method[keep], {"m": holed}, {"m": 1}, n_boot=300)
    assert with_hole == without_pair


def test_non_finite_values_are_missing():
    rng = np.random.default_rng(12)
    y, image, method, z = simulate(rng, 4, 30)
    metric = z + rng.normal(size=z.shape)
    nan, inf, ninf = metric.copy(), metric.copy(), metric.copy()
    nan[1, 3], inf[1, 3], ninf[1, 3] = np.nan, np.inf, -np.inf
    values = {"nan": nan, "inf": inf, "ninf": ninf}
    direction = dict.fromkeys(values, 1)
    ranks = rank_agreement(y, image, method, values, direction, n_boot=100)
    assert ranks[0].tau is not None and np.isfinite(ranks[0].tau)
    assert {(r.tau, r.ci_low, r.ci_high) for r in ranks} == {(ranks[0].tau, ranks[0].ci_low, ranks[0].ci_high)}
    preds = pair_prediction(y, image, method, values, direction, n_boot=100)
    assert {(p.auc, p.ci_low, p.ci_high, p.n_pairs) for p in preds} == {
        (preds[0].auc, preds[0].ci_low, preds[0].ci_high, 4 * 30 - 1)}


# ------------------------------------------------------------------------------------------------
# Set-level metrics


def test_set_metric_receives_counts_and_is_used():
    rng = np.random.default_rng(13)
    n_methods, n_images = 5, 20
    y, image, method, z = simulate(rng, n_methods, n_images)
    calls = []

    def weighted_mean(counts):
        calls.append(counts.copy())
        return (z * counts).sum(axis=1) / counts.sum()

    res = rank_agreement(y, image, method, {"pair": z}, {"pair": 1, "set": 1}, set_metrics={"set": weighted_mean},
                         n_boot=130)
    assert len(calls) == 1 + 130
    assert calls[0].tolist() == [1] * n_images  # the point estimate
    for counts in calls[1:]:
        assert counts.shape == (n_images,) and counts.dtype.kind == "i" and counts.sum() == n_images
    assert len({c.tobytes() for c in calls[1:]}) > 100
    vtt = np.bincount(method, weights=y) / np.bincount(method)
    assert res[1].metric == "set"
    assert res[1].tau == pytest.approx(stats.kendalltau(z.mean(axis=1), vtt).statistic)
    # Every pair judged and finite: the per-pair metric's mean is the set metric, resample by resample.
    assert (res[1].tau, res[1].ci_low, res[1].ci_high) == pytest.approx((res[0].tau, res[0].ci_low, res[0].ci_high))


def test_set_metric_only_needs_shape_and_checks_its_output():
    y, image, method, metric = four_methods()
    fn = lambda counts: metric[:, 0] + 0.0 * counts.sum()  # noqa: E731
    (res,) = rank_agreement(y, image, method, {}, {"fid": 1}, set_metrics={"fid": fn}, shape=(4, 10), n_boot=20)
    assert res.tau == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="shape"):
        rank_agreement(y, image, method, {}, {"fid": 1}, set_metrics={"fid": fn}, n_boot=20)
    with pytest.raises(ValueError, match=r"one value per method, shape \(4,\)"):
        rank_agreement(y, image, method, {}, {"fid": 1}, set_metrics={"fid": lambda c: np.zeros(3)}, shape=(4, 10))


# ------------------------------------------------------------------------------------------------
# Bootstrap: the interval, its width, its coverage


def test_interval_contains_the_estimate_and_shrinks_with_more_images():
    widths = {}
    for n_images in (30, 300):
        auc_widths, tau_widths = [], []
        for seed in range(6):
            rng = np.random.default_rng(100 + seed)
            y, image, method, z = simulate(rng, 6, n_images)
            metric = z + rng.normal(size=z.shape)
            (p,) = pair_prediction(y, image, method, {"m": metric}, {"m": 1}, n_boot=400, seed=seed)
            (r,) = rank_agreement(y, image, method, {"m": metric}, {"m": 1}, n_boot=400, seed=seed)
            assert p.ci_low <= p.auc <= p.ci_high
            assert r.ci_low <= r.tau <= r.ci_high
            auc_widths.append(p.ci_high - p.ci_low)
            tau_widths.append(r.ci_high - r.ci_low)
        widths[n_images] = (np.mean(auc_widths), np.mean(tau_widths))
    # Measured over 30 seeds: mean AUC widths 0.10 and 0.034 (ratio 0.33, and 1/sqrt(10) = 0.32); tau widths 0.47
    # and 0.25, with ratios 0.31-0.62 in blocks of 6 seeds (0.49 for these); no interval missed its estimate.
    assert widths[300][0] < 0.5 * widths[30][0]
    assert widths[300][1] < 0.75 * widths[30][1]


def test_auc_interval_coverage_in_simulations():
    excludes_half_good, covers_half_noise = 0, 0
    n_sims = 50
    for seed in range(n_sims):
        rng = np.random.default_rng(1000 + seed)
        y, image, method, z = simulate(rng, 4, 40, signal=0.5)
        values = {"good": z + 0.5 * rng.normal(size=z.shape), "noise": rng.normal(size=z.shape)}
        good, noise = pair_prediction(y, image, method, values, {"good": 1, "noise": 1}, n_boot=300, seed=seed)
        excludes_half_good += good.ci_low > 0.5
        covers_half_noise += noise.ci_low <= 0.5 <= noise.ci_high
    # Measured: the predictive metric's interval excludes 0.5 in 50 of 50, the noise metric's covers it in 47-48.
    assert excludes_half_good >= 48
    assert covers_half_noise >= 42


def test_same_seed_same_resamples_for_every_metric():
    rng = np.random.default_rng(17)
    y, image, method, z = simulate(rng, 5, 25)
    metric = z + rng.normal(size=z.shape)
    a, b = pair_prediction(y, image, method, {"a": metric, "b": metric.copy()}, {"a": 1, "b": 1}, n_boot=200)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    (alone,) = pair_prediction(y, image, method, {"a": metric}, {"a": 1}, n_boot=200)
    assert (alone.ci_low, alone.ci_high) == (a.ci_low, a.ci_high)
    (other,) = pair_prediction(y, image, method, {"a": metric}, {"a": 1}, n_boot=200, seed=1)
    assert (other.ci_low, other.ci_high) != (a.ci_low, a.ci_high)


def test_many_undefined_resamples_warn_and_are_counted():
    rng = np.random.default_rng(19)
    y, image, method, z = simulate(rng, 4, 10)
    # Method 3 is judged on image 0 only: a resample misses image 0 with probability 0.9**10 = 0.35.
    keep = (method != 3) | (image == 0)
    with pytest.warns(RuntimeWarning, match=r"bootstrap resamples were undefined"):
        (res,) = rank_agreement(y[keep], image[keep], method[keep], {"m": z}, {"m": 1}, n_boot=500)
    assert res.estimable and 0.25 * 500 < res.n_undefined < 0.45 * 500


# ------------------------------------------------------------------------------------------------
# Not estimable


def test_two_methods_are_not_estimable():
    y, image, method, metric = four_methods()
    keep = method < 2
    (res,) = rank_agreement(y[keep], image[keep], method[keep], {"m": metric}, {"m": 1})
    assert not res.estimable and res.tau is None and res.ci_low is None and res.ci_high is None
    assert "2 method(s)" in res.reason and "at least 3" in res.reason and res.n_methods == 2


def test_a_method_without_values_is_dropped_and_can_make_it_not_estimable():
    y, image, method, metric = four_methods()
    metric[[0, 1], :] = np.nan
    (res,) = rank_agreement(y, image, method, {"m": metric}, {"m": 1})
    assert not res.estimable and "2 method(s)" in res.reason


def test_few_images_are_not_estimable():
    y, image, method, metric = four_methods(n_images=6)
    (res,) = rank_agreement(y, image, method, {"m": metric}, {"m": 1})
    assert not res.estimable and res.tau is None
    assert "6 image(s)" in res.reason and "at least 10" in res.reason


def test_constant_scores_are_not_estimable():
    y, image, method, metric = four_methods()
    (res,) = rank_agreement(np.zeros_like(y), image, method, {"m": metric}, {"m": 1})
    assert not res.estimable and res.tau is None and "VTT scores" in res.reason


def test_few_pairs_are_not_estimable():
    y, image, method, values = tiny_auc_design()
    (res,) = pair_prediction(y, image, method, values, {"m": 1})
    assert not res.estimable and res.auc is None and res.ci_low is None
    assert "5 pairs" in res.reason and "at least 20" in res.reason and res.n_pairs == 5


def test_one_empty_class_is_not_estimable():
    rng = np.random.default_rng(23)
    y, image, method, z = simulate(rng, 3, 20)
    (res,) = pair_prediction(np.zeros_like(y), image, method, {"m": z}, {"m": 1})
    assert not res.estimable and res.auc is None
    assert "0 fooled and 60 not fooled" in res.reason and "at least 5 in each" in res.reason
    assert (res.n_pairs, res.n_fooled) == (60, 0)


# ------------------------------------------------------------------------------------------------
# Bad inputs


@pytest.fixture
def small():
    y, image, method, metric = four_methods()
    return y, image, method, {"m": metric}


@pytest.mark.parametrize("func", [rank_agreement, pair_prediction])
def test_mismatched_lengths(small, func):
    y, image, method, values = small
    with pytest.raises(ValueError, match=r"`image` must have the same length as `y` \(400\); got 399"):
        func(y, image[:-1], method, values, {"m": 1})
    with pytest.raises(ValueError, match=r"`method` must have the same length as `y`"):
        func(y, image, method[1:], values, {"m": 1})


@pytest.mark.parametrize("func", [rank_agreement, pair_prediction])
def test_codes_out_of_range_or_not_integers(small, func):
    y, image, method, values = small
    bad = image.copy()
    bad[7] = 10
    with pytest.raises(ValueError, match=r"`image` must be codes 0..9 \(10 images.*got 10 at position 7"):
        func(y, bad, method, values, {"m": 1})
    bad = method.copy()
    bad[0] = -1
    with pytest.raises(ValueError, match=r"`method` must be codes 0..3 \(4 methods.*got -1 at position 0"):
        func(y, image, bad, values, {"m": 1})
    with pytest.raises(ValueError, match=r"`image` must be integer codes.*float64"):
        func(y, image.astype(float), method, values, {"m": 1})


@pytest.mark.parametrize("func", [rank_agreement, pair_prediction])
def test_unknown_direction(small, func):
    y, image, method, values = small
    with pytest.raises(ValueError, match=r"`direction` has no entry for metric 'm'"):
        func(y, image, method, values, {"M": 1})
    for d in (0, 2, "up", True):
        with pytest.raises(ValueError, match=r"`direction\['m'\]` must be \+1 .* or -1"):
            func(y, image, method, values, {"m": d})


@pytest.mark.parametrize("func", [rank_agreement, pair_prediction])
def test_bad_answers_values_and_options(small, func):
    y, image, method, values = small
    y2 = y.copy()
    y2[0] = 2
    with pytest.raises(ValueError, match=r"`y` must contain only booleans or 0/1"):
        func(y2, image, method, values, {"m": 1})
    with pytest.raises(ValueError, match=r"has shape \(4, 9\), but `values\['m'\]` has \(4, 10\)"):
        func(y, image, method, {"m": values["m"], "n": values["m"][:, :9]}, {"m": 1, "n": 1})
    with pytest.raises(ValueError, match=r"2-D array"):
        func(y, image, method, {"m": values["m"][0]}, {"m": 1})
    with pytest.raises(ValueError, match=r"`confidence`"):
        func(y, image, method, values, {"m": 1}, confidence=95)
    with pytest.raises(ValueError, match=r"`n_boot` must be a positive integer"):
        func(y, image, method, values, {"m": 1}, n_boot=0)


def test_metric_in_both_values_and_set_metrics(small):
    y, image, method, values = small
    with pytest.raises(ValueError, match=r"'m' is both in `values` and in `set_metrics`"):
        rank_agreement(y, image, method, values, {"m": 1}, set_metrics={"m": lambda c: np.zeros(4)})


def test_pair_rates_checks_its_inputs():
    with pytest.raises(ValueError, match=r"`method` must be codes 0..1"):
        pair_rates([1, 0], [0, 1], [0, 2], 2, 2)
    with pytest.raises(ValueError, match=r"`n_images` must be a positive integer"):
        pair_rates([1, 0], [0, 1], [0, 1], 2, 0)


def test_mean_interval_is_students_t_over_the_finite_values():
    # Worked by hand: 1, 2, 4, 7 have mean 3.5 and squared deviations 21, so s = sqrt(7) and the standard error
    # sqrt(7) / 2 = 1.32288; t at 0.95 with 3 degrees of freedom is 2.35336 (tables): 3.5 -+ 3.11321.
    mean, low, high, n = ma.mean_interval(np.array([1.0, 2.0, 4.0, np.nan, np.inf, 7.0]), 0.9)
    assert (mean, n) == (3.5, 4)
    assert (low, high) == pytest.approx((3.5 - 3.11321, 3.5 + 3.11321), abs=1e-4)
    assert ma.mean_interval([5.0, 5.0]) == (5.0, None, None, 2)
    assert ma.mean_interval([np.nan])[1:] == (None, None, 0)
    with pytest.raises(ValueError, match="confidence"):
        ma.mean_interval([1.0, 2.0], 1.5)


def test_tau_of_a_perfect_ranking_is_one_in_every_resample():
    # 4 methods in the same order on both sides in every image (fooled 3, 2, 1 and 0 times of 3): every resample has
    # 6 concordant pairs of methods, and 6 / sqrt(6) / sqrt(6) rounds above 1 unless clipped as scipy clips it.
    n_images = 12
    image = np.tile(np.arange(n_images), 4 * 3)
    method = np.repeat(np.arange(4), n_images * 3)
    repeat = (np.arange(image.size) // n_images) % 3  # 0, 1, 2: the three raters of each pair
    y = (repeat < 3 - method).astype(int)
    values = {"m": -np.repeat(np.arange(4.0), n_images).reshape(4, n_images)}
    r = ma.rank_agreement(y, image, method, values, {"m": +1}, n_boot=200, seed=0)[0]
    assert (r.tau, r.ci_low, r.ci_high) == (1.0, 1.0, 1.0)
