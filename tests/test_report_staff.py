"""The staff page's report: the CLI's numbers to the digit, cached per state of the answers; the notes' subjects."""
from __future__ import annotations

import json
import warnings

import pytest
from django.core.cache import cache
from django.urls import reverse

import evaluation
from tests import test_vtt_report
from tests.test_vtt_report import run, trial, write
from vtt import report
from vtt.models import Colorization, Experiment, Rater, Trial

pytestmark = pytest.mark.django_db
# The experiments of test_vtt_report: `answered` (two rated methods, a flagged rater), `staircase` (HYPE_time).
answered, staircase = test_vtt_report.answered, test_vtt_report.staircase


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def counted_builds(monkeypatch) -> list:
    """Every call of `report.build_report` (still computed), recorded."""
    calls, build = [], report.build_report

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return build(*args, **kwargs)

    monkeypatch.setattr(report, "build_report", counting)
    return calls


def page_report(client, slug: str) -> dict:
    response = client.get(reverse("vtt:experiment", args=[slug]))
    assert response.status_code == 200
    return response.context["vtt_report"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_staff_page_shows_the_numbers_of_vtt_report_to_the_digit(answered, admin_client):
    cli = json.loads(run("--experiment", "r", "--format", "json"))
    shown = page_report(admin_client, "r")
    # The page adds the metrics stored for the pairs (none here), as `--metrics` would without computing any.
    assert shown["data"]["metrics"]["agreement"] is None
    assert json.loads(report.to_json({k: v for k, v in shown["data"].items() if k != "metrics"})) == cli
    assert cli["settings"]["n_boot"] == report.DEFAULT_N_BOOT and cli["settings"]["seed"] == report.DEFAULT_SEED
    assert cli["comparisons"] and all(row["ci_low"] is not None for row in cli["methods"])
    html = admin_client.get(reverse("vtt:experiment", args=["r"])).content.decode()
    for row in cli["methods"]:
        assert f"{100 * row['ci_low']:.1f}% to {100 * row['ci_high']:.1f}%" in html
    c = cli["comparisons"][0]
    assert f"{100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f}" in html


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_staff_page_computes_the_report_once_per_state_of_the_answers(answered, admin_client,
                                                                          counted_builds):
    first = page_report(admin_client, "r")["data"]
    page_report(admin_client, "r")
    assert len(counted_builds) == 1  # the second view read the cached report
    rater = Rater.objects.create(experiment=answered, external_id="new")
    pair = Colorization.objects.filter(image__experiment=answered, method__name="mean_chroma").first()
    trial(rater, pair, Trial.Kind.SCORED, True)
    after = page_report(admin_client, "r")["data"]
    assert len(counted_builds) == 2
    assert after["n_judgments"] == first["n_judgments"] + 1
    page_report(admin_client, "r")
    assert len(counted_builds) == 2
    Experiment.objects.filter(pk=answered.pk).update(catch_fail_threshold=1.0)  # a setting the report reads
    assert page_report(admin_client, "r")["data"]["raters"]["n_flagged"] == 0
    assert len(counted_builds) == 3


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_staff_page_uses_the_defaults_of_the_command(answered, admin_client, counted_builds):
    page_report(admin_client, "r")
    (kwargs,) = counted_builds
    assert (kwargs["ci_method"], kwargs["compare_method"], kwargs["n_boot"], kwargs["seed"], kwargs["confidence"]) == (
        report.DEFAULT_CI_METHOD, report.DEFAULT_COMPARE_METHOD, report.DEFAULT_N_BOOT, report.DEFAULT_SEED,
        report.DEFAULT_CONFIDENCE)
    assert kwargs["max_fail_rate"] == answered.catch_fail_threshold and not kwargs["include_flagged"]


TWO_METHODS = "rater,image,method,chose_generated\n" + "".join(
    f"r{r},i{i},{m},{int(m == 'a' and (r + i) % 2 == 0)}\n" for r in range(3) for i in range(4) for m in ("a", "b")
)


def test_every_note_names_the_method_or_pair_it_is_about(tmp_path, monkeypatch):
    def noisy(name, message):
        function = getattr(evaluation, name)

        def wrapped(*args, **kwargs):
            warnings.warn(message, RuntimeWarning)
            return function(*args, **kwargs)

        monkeypatch.setattr(evaluation, name, wrapped)

    noisy("score", "a score warning")
    noisy("agreement", "an agreement warning")
    noisy("quality", "a quality warning")
    data = json.loads(run("--judgments-csv", str(write(tmp_path, TWO_METHODS)), "--format", "json"))
    notes = data["notes"]
    for subject in ("a", "b"):
        assert f"{subject}: a score warning" in notes and f"{subject} agreement: an agreement warning" in notes
    assert "rater quality: a quality warning" in notes
    known = ("a: ", "b: ", "a agreement: ", "b agreement: ", "a vs b: ", "b vs a: ", "rater quality: ")
    assert all(note.startswith(known) for note in notes), notes  # evaluation's own notes too (b: all 0)


def test_comparison_notes_name_their_pair_or_all_pairs():
    names = {0: "zhang2016", 1: "lal2017", 2: "ground_truth"}
    about = report._comparison_subject(names, [(0, 1), (0, 2), (1, 2)])
    assert about("0 vs 1: about 4 effective raters (fewer than 10)") == (
        "zhang2016 vs lal2017", "zhang2016 vs lal2017: about 4 effective raters (fewer than 10)")
    assert about("1 pair(s), e.g. 1 vs 2, have a degenerate interval") == (
        "lal2017 vs ground_truth", "1 pair(s), e.g. lal2017 vs ground_truth, have a degenerate interval")
    assert about("2 pair(s), e.g. 0 vs 2, were judged by fewer than 2 raters")[0] == "pairwise comparisons"
    assert about("Up to 3 of 2000 resamples drew no judgment of a pair")[0] == "pairwise comparisons"
    single = report._comparison_subject(names, [(2, 0)])
    assert single("Up to 3 of 2000 resamples drew no judgment") == (
        "ground_truth vs zhang2016", "Up to 3 of 2000 resamples drew no judgment")


def test_threshold_notes_name_their_method(staircase, monkeypatch):
    hype_time = evaluation.hype_time

    def noisy(*args, **kwargs):
        warnings.warn("a threshold warning", RuntimeWarning)
        return hype_time(*args, **kwargs)

    monkeypatch.setattr(evaluation, "hype_time", noisy)
    data = json.loads(run("--experiment", "hype", "--format", "json", "--ci-method", "wilson", "--n-boot", "200"))
    with_thresholds = [row["method"] for row in data["methods"] if row["threshold_n_trials"]]
    assert with_thresholds
    for method in with_thresholds:
        assert f"{method} threshold: a threshold warning" in data["notes"]

