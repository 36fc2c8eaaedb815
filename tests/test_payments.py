"""The pay sheet, Prolific's bulk approval and bonus files, the bonus rule's bounds, and time on task."""
from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from tests.test_vtt_report import make_experiment, trial
from vtt import payments, selectors
from vtt.models import Colorization, Experiment, Rater, Trial

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid() -> Experiment:
    """A Prolific study with a 1.50 bonus for catch accuracy >= 0.5. Six participants:
    ann completed in 10 min (2/2 catch), bob completed flagged (0/2), cy declined, dee in progress (answered one
    trial 3 min in), eve completed in 20 min with 1/4 catch right (not flagged), and an anonymous participant
    (no PROLIFIC_PID) completed in 30 min (2/2 catch)."""
    experiment = make_experiment("pay", n_images=4, panel=Experiment.Panel.PROLIFIC, bonus_amount=Decimal("1.5"),
                                 bonus_min_catch_accuracy=0.5)
    scored = list(Colorization.objects.filter(image__experiment=experiment, method__name="mean_chroma").order_by("id"))
    catch = list(Colorization.objects.filter(image__experiment=experiment, method__name="grayscale").order_by("id"))
    start = timezone.now() - timedelta(hours=2)

    def participant(pid: str, minutes: float | None, fooled_by_catch: list[bool], **fields) -> Rater:
        rater = Rater.objects.create(experiment=experiment, external_id=pid, study_id="STUDY",
                                     session_id=f"sess-{pid}", **fields)
        Rater.objects.filter(pk=rater.pk).update(started=start)
        rater.refresh_from_db()
        trial(rater, scored[0], Trial.Kind.PRACTICE, False)
        trial(rater, scored[1], Trial.Kind.SCORED, True)
        for k, fooled in enumerate(fooled_by_catch):
            trial(rater, catch[k], Trial.Kind.CATCH, fooled)
        if minutes is not None:
            outcome = Rater.Outcome.COMPLETED_FLAGGED if fields.get("flagged") else Rater.Outcome.COMPLETED
            Rater.objects.filter(pk=rater.pk).update(finished=start + timedelta(minutes=minutes), outcome=outcome)
        return rater

    participant("ann", 10, [False, False])
    participant("bob", 12, [True, True], flagged=True)
    cy = Rater.objects.create(experiment=experiment, external_id="cy", declined=start, outcome=Rater.Outcome.DECLINED)
    Rater.objects.filter(pk=cy.pk).update(started=start)
    dee = participant("dee", None, [])
    Trial.objects.filter(rater=dee).update(answered=start + timedelta(minutes=3))
    participant("eve", 20, [False, True, True, True])
    participant("", 30, [False, False])
    return experiment


def test_the_pay_sheet_has_one_row_per_participant_with_outcome_time_trials_and_bonus(paid):
    rows = {row["participant"]: row for row in payments.pay_sheet(experiment=paid)}
    assert list(rows) == ["ann", "bob", "cy", "dee", "eve", ""]
    ann, bob, cy, dee, eve, anon = rows.values()
    assert (ann["outcome"], ann["time_on_task_s"], ann["trials_answered"], ann["catch_accuracy"]) == (
        "completed", 600, 4, 1.0)
    assert (ann["study_id"], ann["session_id"], ann["approve"], ann["bonus"]) == ("STUDY", "sess-ann", True,
                                                                                   Decimal("1.50"))
    assert (bob["outcome"], bob["flagged"], bob["approve"], bob["bonus"]) == ("completed_flagged", True, False, 0)
    assert (cy["outcome"], cy["time_on_task_s"], cy["trials_answered"], cy["approve"]) == ("declined", None, 0, False)
    assert (dee["outcome"], dee["time_on_task_s"], dee["catch_accuracy"], dee["approve"]) == (
        "in_progress", 180, None, False)
    assert (eve["outcome"], eve["catch_accuracy"], eve["approve"], eve["bonus"]) == ("completed", 0.25, True, 0)
    assert (anon["outcome"], anon["approve"], anon["bonus"]) == ("completed", False, Decimal("1.50"))
    assert anon["note"] == payments.NO_PANEL_ID and ann["note"] == ""


def test_the_prolific_files_name_only_panel_ids_approved_and_positive_bonuses_to_the_cent(paid):
    rows = payments.pay_sheet(experiment=paid)
    assert payments.approval_lines(rows) == ["ann", "eve"]  # completed, not flagged, with a panel id
    assert payments.bonus_lines(rows) == ["ann,1.50"]  # eve missed the catch accuracy; anon has no panel id


def test_without_a_catch_rule_every_completed_unflagged_participant_with_an_id_gets_the_bonus(paid):
    Experiment.objects.filter(pk=paid.pk).update(bonus_min_catch_accuracy=0.0, bonus_amount=Decimal("0.5"))
    paid.refresh_from_db()
    assert payments.bonus_lines(payments.pay_sheet(experiment=paid)) == ["ann,0.50", "eve,0.50"]
    Experiment.objects.filter(pk=paid.pk).update(bonus_amount=0)
    paid.refresh_from_db()
    assert payments.bonus_lines(payments.pay_sheet(experiment=paid)) == []


@pytest.mark.parametrize("field, value", [("bonus_amount", Decimal("-1")), ("bonus_amount", Decimal("50.01")),
                                          ("bonus_amount", Decimal("1000")), ("bonus_min_catch_accuracy", -0.1),
                                          ("bonus_min_catch_accuracy", 1.5)])
def test_a_negative_or_absurd_bonus_rule_is_refused_and_nothing_is_written(paid, field, value):
    before = Experiment.objects.filter(pk=paid.pk).values(field).get()[field]
    setattr(paid, field, value)
    with pytest.raises(ValidationError) as raised:
        paid.full_clean()
    assert field in raised.value.message_dict
    assert Experiment.objects.filter(pk=paid.pk).values(field).get()[field] == before


def test_the_staff_downloads_are_the_sheet_and_the_two_files(paid, admin_client, client):
    sheet = admin_client.get(reverse("vtt:pay_sheet", args=["pay"]))
    assert sheet["Content-Type"] == "text/csv; charset=utf-8"
    assert sheet["Content-Disposition"] == 'attachment; filename="pay-pay-sheet.csv"'
    rows = list(csv.DictReader(io.StringIO(sheet.content.decode())))
    assert list(rows[0]) == payments.SHEET_COLUMNS and len(rows) == 6
    assert (rows[0]["participant"], rows[0]["bonus"], rows[0]["approve"], rows[0]["flagged"]) == ("ann", "1.50", "1",
                                                                                                   "0")
    assert rows[2]["time_on_task_s"] == "" and rows[5]["note"] == payments.NO_PANEL_ID
    approve = admin_client.get(reverse("vtt:prolific_file", args=["pay", "approve"]))
    assert approve["Content-Type"] == "text/plain; charset=utf-8" and approve.content == b"ann\neve\n"
    assert admin_client.get(reverse("vtt:prolific_file", args=["pay", "bonus"])).content == b"ann,1.50\n"
    assert admin_client.get(reverse("vtt:prolific_file", args=["pay", "reject"])).status_code == 404
    for url in (reverse("vtt:pay_sheet", args=["pay"]), reverse("vtt:prolific_file", args=["pay", "bonus"])):
        assert client.get(url).status_code == 302  # to the login page


def test_time_on_task_per_rater_and_the_median_and_estimate_of_the_completed(paid):
    times = {t["rater"]: t for t in selectors.rater_times(experiment=paid)}
    assert "cy" not in times  # declined: no time on the task
    assert times["ann"]["seconds"] == 600 and times["dee"]["seconds"] == 180  # dee: last answer - started
    summary = selectors.time_on_task(experiment=paid)
    # completed: ann 10, bob 12 (flagged), eve 20, anonymous 30 minutes; dee is in progress
    assert summary["n_completed"] == 4 and summary["median_s"] == 16 * 60
    # 75th percentile of 10, 12, 20, 30 minutes (linear): 22.5 min, rounded up to 23
    assert summary["estimate_minutes"] == 23


def test_the_dashboard_shows_the_median_time_and_the_estimate(paid, admin_client):
    html = admin_client.get(reverse("vtt:dashboard")).content.decode()
    assert "16 min (Prolific estimate: about 23 min)" in html


def test_no_completed_rater_gives_no_median_and_no_estimate():
    experiment = make_experiment("none", n_images=1)
    Rater.objects.create(experiment=experiment)
    assert selectors.time_on_task(experiment=experiment) == {
        "n_completed": 0, "median_s": None, "estimate_minutes": None, "estimate_percentile": 75}


def test_the_staff_page_shows_the_median_the_estimate_and_the_pay_links(paid, admin_client):
    page = admin_client.get(reverse("vtt:experiment", args=["pay"])).content.decode()
    assert "960 s (about 16 min, 4 raters)" in page
    assert "Prolific estimated completion time" in page and "about 23 minutes" in page
    for url in (reverse("vtt:pay_sheet", args=["pay"]), reverse("vtt:prolific_file", args=["pay", "approve"]),
                reverse("vtt:prolific_file", args=["pay", "bonus"])):
        assert url in page
