"""Tests of evaluation.quality (catch trials, the exclusion rule) and evaluation.agreement (Krippendorff's alpha)."""
import doctest
import itertools
import re

import numpy as np
import pytest

import evaluation.raters
from evaluation import agreement, quality


def test_catch_accuracy_and_counts_per_rater():
    raters = ["b", "a", "a", "a", "b", "c", "a"]
    is_catch = [1, 1, 1, 0, 0, 0, 1]
    correct = [0, 1, 0, 1, 1, 0, 1]
    res = quality(raters, is_catch, correct)
    assert res.raters.tolist() == ["a", "b", "c"]
    assert res.n_trials.tolist() == [4, 2, 1]
    assert res.n_catch.tolist() == [3, 1, 0]
    assert res.n_failed.tolist() == [1, 1, 0]
    assert res.catch_accuracy[:2].tolist() == pytest.approx([2 / 3, 0.0])
    assert np.isnan(res.catch_accuracy[2])


@pytest.mark.parametrize("failed, n_catch, threshold, flagged", [
    (1, 4, 0.25, False),  # exactly the threshold: not above it
    (2, 4, 0.25, True),
    (2, 4, 0.5, False),
    (3, 4, 0.5, True),
    (0, 1, 0.0, False),
    (1, 1, 0.0, True),
    (4, 4, 1.0, False),  # a threshold of 1 flags nobody
])
def test_flagged_exactly_when_the_failed_fraction_is_above_the_threshold(failed, n_catch, threshold, flagged):
    correct = [0] * failed + [1] * (n_catch - failed)
    res = quality(["r"] * n_catch, [1] * n_catch, correct, max_fail_rate=threshold)
    assert res.flagged.tolist() == [flagged]
    assert res.n_flagged == int(flagged)


def test_a_rater_without_catch_trials_is_never_flagged():
    res = quality([1, 1, 2], [0, 0, 1], [0, 0, 0], max_fail_rate=0.0)
    assert res.flagged.tolist() == [False, True]


def test_only_catch_trials_count_towards_the_rule():
    # Scored trials where the rater picked the colorized image are not failures.
    res = quality(["r"] * 5, [1, 0, 0, 0, 0], [1, 0, 0, 0, 0])
    assert (res.n_failed.tolist(), res.flagged.tolist()) == ([0], [False])


@pytest.mark.parametrize("kwargs, message", [
    (dict(rater_ids=[["a"]]), "`rater_ids` must be one-dimensional; got shape (1, 1)."),
    (dict(is_catch=[1, 2]), "`is_catch` must contain only booleans or 0/1; got 2."),
    (dict(correct=[1]), "`correct` must have the same length as `rater_ids` (2); got 1."),
    (dict(max_fail_rate=1.5), "`max_fail_rate` must be a real number between 0 and 1; got 1.5."),
    (dict(max_fail_rate="half"), "`max_fail_rate` must be a real number between 0 and 1; got 'half'."),
])
def test_invalid_input_to_quality_raises_a_message_naming_the_parameter(kwargs, message):
    args = dict(rater_ids=["a", "b"], is_catch=[1, 0], correct=[1, 1])
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        quality(**args)


def reliability_table(rows):
    """Values and unit ids from a table with one row per observer and '.' for a missing value."""
    values, units = [], []
    for row in rows:
        for unit, value in enumerate(row.split()):
            if value != ".":
                values.append(int(value))
                units.append(unit)
    return values, units


def test_alpha_of_krippendorffs_published_example():
    # K. Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units,
    # nominal alpha 0.743 (rounded as published).
    values, units = reliability_table(["1 2 3 3 2 1 4 1 2 . . .", "1 2 3 3 2 2 4 1 2 5 . 3",
                                       ". 3 3 3 2 3 4 2 2 5 1 .", "1 2 3 3 2 4 4 1 2 5 1 ."])
    res = agreement(values, units)
    assert round(res.alpha, 3) == 0.743
    assert (res.n_units, res.n_values) == (11, 40)


def test_alpha_of_the_wikipedia_example():
    # English Wikipedia, "Krippendorff's alpha", computational example: 3 coders, 15 units,
    # nominal alpha 0.691 (rounded as published).
    values, units = reliability_table([
        ". . . . . 3 4 1 2 1 1 3 3 . 3",
        "1 . 2 1 3 3 4 3 . . . . . . .",
        ". . 2 1 3 4 4 . 2 1 1 3 3 . 4",
    ])
    assert round(agreement(values, units).alpha, 3) == 0.691


def alpha_by_pairs(values, units):
    """Krippendorff's alpha from its definition: every ordered pair of values within a unit,
    weighted 1 / (m_u - 1), against every ordered pair of pairable values."""
    by_unit = {}
    for v, u in zip(values, units):
        by_unit.setdefault(u, []).append(v)
    pairable = {u: vs for u, vs in by_unit.items() if len(vs) >= 2}
    pooled = [v for vs in pairable.values() for v in vs]
    n = len(pooled)
    observed = sum(sum(a != b for a, b in itertools.permutations(vs, 2)) / (len(vs) - 1)
                   for vs in pairable.values()) / n
    expected = sum(a != b for a, b in itertools.permutations(pooled, 2)) / (n * (n - 1))
    return 1 - observed / expected


def test_alpha_equals_its_definition_on_random_binary_and_nominal_data():
    rng = np.random.default_rng(0)
    for categories in (2, 4):
        units = rng.integers(0, 30, 120)
        values = (rng.integers(0, categories, 120) + units % 2) % categories
        assert agreement(values, units).alpha == pytest.approx(alpha_by_pairs(values, units), rel=1e-12)


def test_perfect_agreement_is_one_and_units_with_one_answer_are_left_out():
    res = agreement([1, 1, 0, 0, 0, 1], ["x", "x", "y", "y", "y", "z"])
    assert res.alpha == 1.0
    assert (res.n_units, res.n_values) == (2, 5)


def test_vtt_answers_with_image_effects_agree_more_than_without():
    rng = np.random.default_rng(1)
    units = np.repeat(np.arange(400), 5)
    noise = agreement(rng.random(2000) < 0.3, units)
    p_image = np.where(rng.random(400) < 0.5, 0.1, 0.6)
    effects = agreement(rng.random(2000) < p_image[units], units)
    assert abs(noise.alpha) < 0.05
    assert effects.alpha > 0.15


def test_undefined_alpha_warns_and_is_nan():
    with pytest.warns(RuntimeWarning, match="All answers are the same category"):
        assert np.isnan(agreement([0, 0, 0, 0], [1, 1, 2, 2]).alpha)
    with pytest.warns(RuntimeWarning, match="No unit has two answers"):
        res = agreement([0, 1, 1], [1, 2, 3])
    assert np.isnan(res.alpha) and res.n_units == 0


@pytest.mark.parametrize("args, message", [
    (([], []), "`values` must contain at least one answer; got an empty array."),
    (([[1, 0]], [1, 2]), "`values` must be one-dimensional; got shape (1, 2)."),
    (([1, 0], [1]), "`unit_ids` must have the same length as `values` (2); got 1."),
    (([1, None], [1, 1]), "`values` must be categories of one kind"),
])
def test_invalid_input_to_agreement_raises_a_message_naming_the_parameter(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        agreement(*args)


def test_docstring_examples_run_as_shown():
    failed, attempted = doctest.testmod(evaluation.raters)
    assert attempted > 0
    assert failed == 0
