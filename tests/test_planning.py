"""evaluation.planning: the moment estimator recovers known components, predictions match worked examples, errors.

Margins are measured, not guessed: the recovery tests simulate an additive crossed model whose components are
known exactly and allow 4 standard errors of the mean of the estimates (the standard error measured from the
same replicates), so that they do not depend on one machine's floating-point path.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from evaluation import planning


def crossed_sample(rng, n_images=400, k=5, t=20, sd_a=0.15, sd_b=0.10, rate=0.4, methods=1, shared=0.0,
                   rater_shared=0.0):
    """0/1 judgments with probability rate + a_i + b_r (uniform effects, so that probabilities stay in [0, 1]).

    Each image is judged by k distinct raters under each method; every rater judges t images per method
    (raters see every method). With several methods, the image effects are shared with correlation `shared`
    and the rater effects with correlation `rater_shared`.
    """
    n_raters = n_images * k // t
    ys, imgs, rats, meths = [], [], [], []
    half_a, half_b = sd_a * math.sqrt(3), sd_b * math.sqrt(3)
    a_common, b_common = rng.uniform(-half_a, half_a, n_images), rng.uniform(-half_b, half_b, n_raters)
    for m in range(methods):
        a = math.sqrt(shared) * a_common + math.sqrt(1 - shared) * rng.uniform(-half_a, half_a, n_images)
        b = math.sqrt(rater_shared) * b_common + math.sqrt(1 - rater_shared) * rng.uniform(-half_b, half_b, n_raters)
        img = np.repeat(np.arange(n_images), k)
        slot = np.tile(np.arange(k), n_images)
        perm = rng.permutation(n_images)
        rat = (slot * n_images + perm[img]) // t  # k distinct raters per image, t images per rater
        q = rate + a[img] + b[rat]
        ys.append(rng.random(q.size) < q)
        imgs.append(img)
        rats.append(rat)
        meths.append(np.full(q.size, m))
    return np.concatenate(ys), np.concatenate(imgs), np.concatenate(rats), np.concatenate(meths)


def test_the_moment_estimator_recovers_known_components():
    rng = np.random.default_rng(20261202)
    sd_a, sd_b, rate = 0.15, 0.10, 0.4
    truth = np.array([sd_a**2, sd_b**2, rate * (1 - rate) - sd_a**2 - sd_b**2])
    fits = []
    for _ in range(12):
        y, img, rat, _ = crossed_sample(rng, sd_a=sd_a, sd_b=sd_b, rate=rate)
        c = planning.components(y, img, rat)
        fits.append((c.image, c.rater, c.residual))
        assert c.n_trials == 2000 and c.n_images == 400 and c.n_raters == 100
        assert c.raters_per_image == 5 and c.trials_per_rater == 20 and c.rater_size_factor == pytest.approx(1)
    fits = np.array(fits)
    se = fits.std(axis=0, ddof=1) / math.sqrt(len(fits))
    assert np.all(np.abs(fits.mean(axis=0) - truth) < 4 * se + 1e-4), (fits.mean(axis=0), truth, se)
    # and the fit is informative: one pilot's image variance is within 40% of the truth
    assert np.all(np.abs(fits[:, 0] / truth[0] - 1) < 0.4)


def test_the_fit_reproduces_the_two_way_variance_at_the_pilots_own_design():
    """Unclipped, the components predict for the pilot's own balanced design the cluster-robust variance
    (c_I V_img + c_R V_rat - c_C V_cell) up to the centering terms, which are of order 1/clusters."""
    rng = np.random.default_rng(7)
    y, img, rat, _ = crossed_sample(rng, n_images=300, k=4, t=15)
    c = planning.components(y, img, rat)
    assert c.clipped == ()
    pred = planning.predict(c, 300, 4, 15)
    e = (y - y.mean()) / y.size
    _, cell = np.unique(img * 1000 + rat, return_inverse=True)
    v = {}
    for name, x in (("img", img), ("rat", rat), ("cell", cell)):
        s = np.bincount(x, e)
        v[name] = (s @ s, s.size)
    two_way = sum(sign * g / (g - 1) * val for sign, (val, g) in zip((1, 1, -1), v.values()))
    assert pred.variance == pytest.approx(two_way, rel=0.03)


def test_difference_components_recover_the_non_cancelling_parts():
    rng = np.random.default_rng(11)
    sd_a, sd_b, shared, rater_shared = 0.15, 0.10, 0.75, 0.5
    fits = []
    for _ in range(10):
        y, img, rat, meth = crossed_sample(rng, methods=2, sd_a=sd_a, sd_b=sd_b, shared=shared,
                                           rater_shared=rater_shared)
        d = planning.difference_components(y, img, rat, meth, (1, 0))
        assert d.n_images_shared == 400 and d.n_raters_shared == 100 and d.rater_identified
        fits.append((d.image, d.rater))
    fits = np.array(fits)
    truth = np.array([2 * (1 - shared) * sd_a**2, 2 * (1 - rater_shared) * sd_b**2])
    se = fits.std(axis=0, ddof=1) / math.sqrt(len(fits))
    assert np.all(np.abs(fits.mean(axis=0) - truth) < 4 * se + 2e-4), (fits.mean(axis=0), truth, se)


def test_prediction_worked_example():
    """s_a = 10 points, s_b = 8, s_e = 40; 500 images x K = 5 x T = 8 (312.5 raters).

    Var = 0.01/500 + (8 * 0.0064 + 0.16) / 2500 = 2e-5 + 8.448e-5 = 1.0448e-4; se = 0.010222;
    df = min(500, 312.5) - 1 = 311.5; t = 1.9676; half-width of the Wilson interval at the effective
    0.21 / 1.0448e-4 = 2010 trials: 2.010 points (t * se = 2.011).
    """
    comp = planning.Components(rate=0.3, image=0.01, rater=0.0064, residual=0.16)
    pred = planning.predict(comp, 500, 5, 8)
    assert pred.variance == pytest.approx(1.0448e-4, rel=1e-9)
    assert pred.df == pytest.approx(311.5)
    assert pred.critical == pytest.approx(sps.t.ppf(0.975, 311.5))
    assert pred.half_width == pytest.approx(0.02010, abs=2e-5)
    assert pred.n_raters == pytest.approx(312.5)
    assert pred.floor == pytest.approx(sps.t.ppf(0.975, 499) * math.sqrt(0.01 / 500), rel=0.01)
    # unequal rater sizes weigh the rater term by the size factor and cut the effective raters
    wide = planning.predict(comp, 500, 5, 8, rater_size_factor=2)
    assert wide.variance == pytest.approx(2e-5 + (16 * 0.0064 + 0.16) / 2500)
    assert wide.df == pytest.approx(500 * 5 / 16 - 1) and wide.n_raters == pytest.approx(312.5)


def test_minimal_detectable_difference_worked_example():
    comp = planning.Components(rate=0.3, image=0.01, rater=0.0064, residual=0.16)
    diff = planning.DifferenceComponents(method_a="a", method_b="b", a=comp, b=comp, image=0.004, rater=0.002)
    pred, mdd = planning.predict_difference(diff, 100, 5, 10)
    variance = 0.004 / 100 + (10 * 0.002 + 0.32) / 500
    assert pred.variance == pytest.approx(variance)
    df = min(100, 50) - 1
    assert mdd == pytest.approx((sps.t.ppf(0.975, df) + sps.t.ppf(0.8, df)) * math.sqrt(variance))
    assert planning.power_at(mdd, pred) == pytest.approx(0.8, abs=0.005)
    single, _ = planning.predict_difference(diff, 100, 5, 10, mixing="single")
    assert single.variance == pytest.approx(0.004 / 100 + (10 * 0.0128 + 0.32) / 500)
    assert single.n_raters == pytest.approx(100)


def test_raters_needed_reachable_and_unreachable():
    comp = planning.Components(rate=0.3, image=0.01, rater=0.0064, residual=0.16)
    need = planning.raters_needed(comp, 0.03, n_images=200, k=2, trials_per_rater=10, price_per_rater=2.5)
    assert need.reachable and need.k_needed > 2
    at = planning.predict(comp, 200, need.k_needed, 10)
    assert at.half_width == pytest.approx(0.03, abs=1e-6)
    assert need.more_raters == math.ceil(200 * need.k_needed / 10) - 40
    assert need.cost == pytest.approx(need.more_raters * 2.5)
    assert planning.raters_needed(comp, 0.5, n_images=200, k=2, trials_per_rater=10).more_raters == 0
    # the image floor: t * 0.1 / sqrt(40) = 3.2 points, so +-2 points needs more images, not raters
    stuck = planning.raters_needed(comp, 0.02, n_images=40, k=5, trials_per_rater=10)
    assert not stuck.reachable and stuck.more_raters is None and stuck.floor > 0.02
    assert planning.predict(comp, stuck.images_needed, 5, 10).half_width <= 0.02
    assert planning.predict(comp, stuck.images_needed - 1, 5, 10).half_width > 0.02
    assert stuck.raters_for_images == math.ceil(stuck.images_needed * 5 / 10)


def test_priors():
    c = planning.components_from_priors(sd_image=0.1, sd_rater=0.08, rate=0.3)
    assert c.residual == pytest.approx(0.21 - 0.01 - 0.0064) and c.source == "priors"
    c = planning.components_from_priors(sd_image=0.1, sd_rater=0.08, sd_residual=0.4)
    assert c.residual == pytest.approx(0.16) and c.rate == 0.5
    with pytest.raises(ValueError, match="no residual variance"):
        planning.components_from_priors(sd_image=0.4, sd_rater=0.3, rate=0.3)
    with pytest.raises(ValueError, match="`sd_residual` or `rate`"):
        planning.components_from_priors(sd_image=0.1, sd_rater=0.1)


@pytest.mark.parametrize("call, message", [
    (lambda: planning.components([], [], []), "at least one judgment"),
    (lambda: planning.components([1, 0, 1], [1, 1, 1], ["a", "b", "c"]), "at least 2 images and 2 raters"),
    (lambda: planning.components([1, 0], [1, None], [1, 2]), "None"),
    (lambda: planning.components([1, 2], [1, 2], [1, 2]), "booleans or 0/1"),
    (lambda: planning.predict(planning.Components(0.3, 0.01, 0.01, 0.2), 0, 5, 8), "`n_images` must be a positive"),
    (lambda: planning.predict(planning.Components(0.3, 0.01, 0.01, 0.2), 10, 5, 8, confidence=1.5), "confidence"),
    (lambda: planning.predict(planning.Components(0.3, 0.01, 0.01, 0.2), 10, 5, 8, rater_size_factor=0.5),
     "at least 1"),
    (lambda: planning.raters_needed(planning.Components(0.3, 0.01, 0.01, 0.2), 0, n_images=10, k=5,
                                    trials_per_rater=8), "`target` must be a positive"),
    (lambda: planning.raters_needed(planning.Components(0.3, 0.01, 0.01, 0.2), 0.05, n_images=10, k=5,
                                    trials_per_rater=8, price_per_rater=-1), "`price_per_rater` must be a non-neg"),
    (lambda: planning.difference_components([1, 0], [1, 2], [1, 2], ["a", "a"], ("a", "b")), "'b', which is not"),
    (lambda: planning.difference_components([1, 0], [1, 2], [1, 2], ["a", "b"], ("a", "a")), "two different"),
    (lambda: planning.predict_difference(planning.DifferenceComponents(
        "a", "b", planning.Components(0.3, 0.01, 0.01, 0.2), planning.Components(0.3, 0.01, 0.01, 0.2), 0, 0),
        10, 5, 8, mixing="both"), "mixing"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_all_answers_the_same_give_zero_components_not_an_error():
    c = planning.components(np.ones(40), np.repeat(np.arange(8), 5), np.tile(np.arange(5), 8))
    assert (c.image, c.rater, c.residual) == (0.0, 0.0, 0.0)
    assert planning.predict(c, 8, 5, 8).half_width == 0.0
