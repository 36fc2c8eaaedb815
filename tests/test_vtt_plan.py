"""vtt_plan and the stopping rule: the plan of a small experiment agrees with its report; looks follow the
schedule, not page views; bad input is a clear error."""
from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import numpy as np
import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from vtt import judgments as judgments_module
from vtt import planning, report
from vtt.models import Colorization, Experiment, ExperimentImage, Method, Rater, SourceImage, Trial

pytestmark = pytest.mark.django_db
N_IMAGES, N_RATERS = 8, 12


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("vtt_plan", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def make_experiment(slug="plan", **fields) -> Experiment:
    """8 images; two tested methods, the ground-truth calibration and a catch method."""
    experiment = Experiment.objects.create(slug=slug, title="Plan test", **fields)
    roles = {"ground_truth": Method.Role.CALIBRATION, "mean_chroma": Method.Role.TESTED,
             "tinted": Method.Role.TESTED, "grayscale": Method.Role.CATCH}
    methods = [Method.objects.create(experiment=experiment, name=n, colorizer=n, role=r) for n, r in roles.items()]
    for i in range(N_IMAGES):
        source, _ = SourceImage.objects.get_or_create(
            split="ctest10k", path=f"{slug}/img{i}.JPEG",
            defaults={"class_index": i, "sha256": f"{i:064x}", "width": 64, "height": 64})
        image = ExperimentImage.objects.create(experiment=experiment, source=source, real_file=f"{slug}-real{i}.jpg")
        for m in methods:
            Colorization.objects.create(image=image, method=m, file=f"{slug}-{m.name}{i}.jpg", seed=i)
    return experiment


def answer(rater, colorization, kind, fooled, minutes):
    Trial.objects.create(rater=rater, colorization=colorization, kind=kind, position=rater.trials.count() + 1,
                         real_side="L", choice="R" if fooled else "L", response_ms=900, counted=kind == "scored",
                         answered=rater.started + timedelta(minutes=minutes))


def add_rater(experiment, r, rng, *, finished=True, fail_catch=False):
    """A rater who judges every image under the three rated methods (mixed), and two catch trials."""
    rater = Rater.objects.create(experiment=experiment, external_id=f"P{r}")
    rates = {"ground_truth": 0.5, "mean_chroma": 0.2 + 0.02 * (r % 5), "tinted": 0.35}
    pairs = Colorization.objects.filter(image__experiment=experiment).select_related("method").order_by("id")
    for c in pairs:
        if c.method.name in rates:
            answer(rater, c, "scored", rng.random() < rates[c.method.name], 1)
    for c in [c for c in pairs if c.method.name == "grayscale"][:2]:
        answer(rater, c, "catch", fail_catch, 1)
    if finished:
        Rater.objects.filter(pk=rater.pk).update(finished=timezone.now() + timedelta(minutes=r))
    return rater


@pytest.fixture
def answered() -> Experiment:
    experiment = make_experiment()
    rng = np.random.default_rng(5)
    for r in range(N_RATERS):
        add_rater(experiment, r, rng, fail_catch=r == N_RATERS - 1)  # the last rater is flagged
    return experiment


def test_now_is_the_reports_half_width_and_the_plan_uses_the_reports_judgments(answered):
    data = report.experiment_report(answered)
    out = json.loads(run("--experiment", "plan", "--target", "10", "--format", "json"))
    rows = {r["method"]: r for r in data["methods"]}
    assert {m["method"] for m in out["methods"]} == set(rows) == {"ground_truth", "mean_chroma", "tinted"}
    for m in out["methods"]:
        row = rows[m["method"]]
        assert m["now"] == pytest.approx(100 * (row["ci_high"] - row["ci_low"]) / 2)
        assert m["n_trials"] == row["n_trials"] == N_IMAGES * (N_RATERS - 1)  # the flagged rater left out
        assert m["images"] == N_IMAGES and m["trials_per_rater"] == N_IMAGES
    assert out["pilot"]["n_raters"] == N_RATERS - 1 and out["mixing"] == "mixed"
    assert [(p["method_a"], p["method_b"]) for p in out["pairs"]] == [("tinted", "mean_chroma")]


def test_the_table_says_now_the_raters_needed_their_cost_and_the_mdd(answered):
    out = run("--experiment", "plan", "--target", "10", "--price-per-rater", "2.50", "--images", "200")
    assert re.search(r"^mean_chroma: now \+-\d+\.\d points; to reach \+-10, about \d+ more raters "
                     r"\(cost [\d,]+\.\d\d\)", out, re.M), out
    assert "every tested method within +-10 points: about" in out
    assert re.search(r"tinted - mean_chroma: now [+-]\d+\.\d points; at the design the smallest difference "
                     r"detectable with 80% power at the 5% level is \d+\.\d points", out)
    assert "stopping rule: no stopping rule registered" in out
    needed = json.loads(run("--experiment", "plan", "--target", "10", "--price-per-rater", "2.5", "--images", "200",
                            "--format", "json"))["methods"]
    for m in needed:
        assert m["needed"]["cost"] == pytest.approx(2.5 * m["needed"]["more_raters"])


def test_a_target_beyond_the_image_floor_says_how_many_images_would_reach_it(answered):
    out = run("--experiment", "plan", "--target", "0.5")
    assert re.search(r"\+-0\.5 is out of reach with these 8 images: however many raters, the image effects "
                     r"alone leave \+-\d+\.\d; about \d+ images at the same K would reach it", out), out


def test_priors_give_the_worked_example():
    out = run("--sd-image", "10", "--sd-rater", "8", "--sd-residual", "40", "--rate", "30", "--images", "500",
              "--k", "5", "--trials-per-rater", "8", "--target", "1.5", "--price-per-rater", "1")
    # tests/test_planning.py::test_prediction_worked_example: +-2.010 points
    assert "at the design (500 images x K = 5 x T = 8): +-2.0 points" in out
    assert re.search(r"to reach \+-1\.5, about \d+ more raters \(cost [\d,]+\.00\)", out)
    assert "smallest difference detectable with 80% power" in out


def test_help_documents_units_sources_design_and_the_stopping_rule():
    parser = __import__("vtt.management.commands.vtt_plan", fromlist=["Command"]).Command().create_parser(
        "manage.py", "vtt_plan")
    text = parser.format_help()
    for needle in ("percentage points", "--experiment", "--judgments-csv", "--sd-image", "--images", "--k",
                   "--trials-per-rater", "--target", "--price-per-rater", "--confidence", "stopping rule",
                   "benchmarks/planning.py"):
        assert needle in text, needle


def test_a_csv_pilot_plans_like_the_experiment(answered, tmp_path):
    from vtt import exports

    path = tmp_path / "judgments.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        exports.write_csv(exports.trial_rows(experiment=answered), f)
    from_csv = json.loads(run("--judgments-csv", str(path), "--format", "json", "--k", "5"))
    from_db = json.loads(run("--experiment", "plan", "--format", "json", "--k", "5"))
    assert [m["now"] for m in from_csv["methods"]] == pytest.approx([m["now"] for m in from_db["methods"]])


@pytest.mark.parametrize("args, message", [
    (["--experiment", "nope"], "no experiment 'nope'"),
    (["--experiment", "plan", "--target", "0"], "--target is a half-width in percentage points"),
    (["--experiment", "plan", "--target", "-2"], "--target is a half-width"),
    (["--experiment", "plan", "--price-per-rater", "-1"], "--price-per-rater must be 0 or more"),
    (["--experiment", "plan", "--images", "0"], "--images must be positive"),
    (["--experiment", "plan", "--confidence", "1.2"], "--confidence must be strictly between 0 and 1"),
    ([], "give exactly one pilot"),
    (["--experiment", "plan", "--sd-image", "10"], "give exactly one pilot"),
    (["--sd-image", "10", "--sd-rater", "8", "--rate", "30"], "with priors the design is needed"),
    (["--sd-image", "40", "--sd-rater", "30", "--rate", "30", "--images", "5", "--k", "2",
      "--trials-per-rater", "2"], "leave no residual variance"),
    (["--judgments-csv", "/nonexistent/file.csv"], "cannot read"),
])
def test_bad_input_is_a_clear_error_and_changes_nothing(answered, args, message):
    before = Trial.objects.count(), Experiment.objects.count()
    with pytest.raises(CommandError, match=re.escape(message)):
        run(*args)
    assert (Trial.objects.count(), Experiment.objects.count()) == before


def test_an_experiment_without_judgments_is_a_clear_error():
    make_experiment(slug="empty")
    with pytest.raises(CommandError, match="no scored judgments to plan from: none answered yet"):
        run("--experiment", "empty")


# --- the stopping rule ------------------------------------------------------------------------------------------


def test_no_rule_without_a_target_and_a_schedule(answered):
    assert planning.precision_status(answered) == {
        "enabled": False, "message": "no stopping rule registered (precision target and look schedule)"}
    answered.precision_target = 5
    with pytest.raises(ValidationError, match="needs both a precision target and a look schedule"):
        answered.full_clean()


def test_the_latest_look_follows_the_schedule_and_its_raters(answered):
    Experiment.objects.filter(pk=answered.pk).update(precision_target=49, look_every=5, max_looks=3)
    answered.refresh_from_db()
    status = planning.precision_status(answered)
    assert (status["look"], status["look_raters"], status["n_finished"], status["next_look_at"]) == (2, 10, 12, 15)
    assert status["confidence"] == planning.LOOK_CONFIDENCE == 0.95
    by_method = {m["method"]: m for m in status["methods"]}
    assert set(by_method) == {"ground_truth", "mean_chroma", "tinted"} and by_method["ground_truth"]["is_control"]
    assert status["precise"] and status["not_precise"] == []
    assert status["message"].startswith("precise enough at look 2 of 3 (10 finished raters, 95% intervals)")

    # The look's intervals are the report's (95%), on the first 10 finished raters' judgments only.
    judgments, _ = judgments_module.experiment_judgments(answered)
    first = set(Rater.objects.filter(experiment=answered).order_by("finished", "id")
                .values_list("token", flat=True)[:10])
    keep = np.isin(judgments.rater_labels[judgments.rater], list(first))
    at_look = report.build_report(planning._subset(judgments, keep), methods=judgments_module.experiment_methods(answered),
                                  confidence=0.95, max_fail_rate=answered.catch_fail_threshold)
    for row in at_look["methods"]:
        assert by_method[row["method"]]["half_width"] == pytest.approx(100 * (row["ci_high"] - row["ci_low"]) / 2)

    # Viewing again, and raters who answer or finish between looks, change nothing until the next look.
    assert planning.precision_status(answered) == status
    rng = np.random.default_rng(9)
    add_rater(answered, 20, rng, finished=False)
    add_rater(answered, 21, rng)
    assert planning.precision_status(answered) == {**status, "n_finished": 13}
    add_rater(answered, 22, rng)
    add_rater(answered, 23, rng)
    later = planning.precision_status(answered)
    assert (later["look"], later["look_raters"], later["final"], later["next_look_at"]) == (3, 15, True, None)


def test_a_target_not_met_names_the_tested_methods_only(answered):
    Experiment.objects.filter(pk=answered.pk).update(precision_target=1, look_every=4, max_looks=10)
    answered.refresh_from_db()
    status = planning.precision_status(answered)
    assert not status["precise"] and status["look"] == 3
    assert sorted(status["not_precise"]) == ["mean_chroma", "tinted"]  # the control is not counted
    assert "next look at 16 finished raters" in status["message"]


def test_before_the_first_look(answered):
    Experiment.objects.filter(pk=answered.pk).update(precision_target=5, look_every=50)
    answered.refresh_from_db()
    status = planning.precision_status(answered)
    assert status["look"] == 0 and not status["precise"] and status["methods"] == []
    assert status["message"] == "no look yet: the first is at 50 finished raters (12 so far); target +-5 points"


def test_the_template_renders_the_plan_and_the_rule(answered):
    Experiment.objects.filter(pk=answered.pk).update(precision_target=1, look_every=4)
    answered.refresh_from_db()
    context = planning.experiment_plan_context(answered, report.experiment_report(answered), price_per_rater=3)
    html = render_to_string("vtt/_plan.html", context)
    assert "mean_chroma: now +-" in html and "to reach +-1" in html or "out of reach" in html
    assert "Stopping rule (pre-registered: target ±1.0 points, a look every 4" in html
    assert "ground_truth (calibration control, not counted)" in html
    out = run("--experiment", "plan")
    assert "stopping rule (target +-1 points, a look every 4 finished raters" in out
    assert "not yet precise at look 3 of 10" in out


def test_the_template_without_judgments():
    experiment = make_experiment(slug="empty")
    html = render_to_string("vtt/_plan.html",
                            planning.experiment_plan_context(experiment, report.experiment_report(experiment)))
    assert "no scored judgments yet to plan from" in html and "No stopping rule registered" in html


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_staff_page_shows_the_plan_and_the_dashboard_where_the_stopping_rule_stands(answered, admin_client):
    cache.clear()
    Experiment.objects.filter(pk=answered.pk).update(precision_target=49, look_every=5, max_looks=3)
    html = admin_client.get(reverse("vtt:experiment", args=[answered.slug])).content.decode()
    assert "<h2>Planning</h2>" in html and "now +-" in html
    assert "Stopping rule (pre-registered: target ±49.0 points, a look every 5" in html
    dashboard = admin_client.get(reverse("vtt:dashboard")).content.decode()
    assert "precise enough</strong> at look" in dashboard
    Experiment.objects.filter(pk=answered.pk).update(precision_target=None, look_every=None)
    assert "no rule" in admin_client.get(reverse("vtt:dashboard")).content.decode()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_plan_is_computed_once_per_state_of_the_answers(answered, admin_client, monkeypatch):
    cache.clear()
    calls, plan = [], planning.experiment_plan_context
    monkeypatch.setattr(planning, "experiment_plan_context", lambda *a, **k: calls.append(1) or plan(*a, **k))
    for _ in range(3):
        admin_client.get(reverse("vtt:experiment", args=[answered.slug]))
    assert len(calls) == 1
    Experiment.objects.filter(pk=answered.pk).update(precision_target=30, look_every=5, max_looks=3)
    admin_client.get(reverse("vtt:experiment", args=[answered.slug]))
    assert len(calls) == 2  # a change of the rule is a new state
