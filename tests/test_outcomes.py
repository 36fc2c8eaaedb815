"""How a session ends, each outcome with its own code: screened out, no pairs left, returned, timed out; the
panel's codes checked before anyone starts."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.test_migrations import migrate
from tests.test_rater_flow import make_experiment, page_state, post_answer, snapshot, start
from vtt import services
from vtt.models import Experiment, Rater, Slot, Trial

pytestmark = pytest.mark.django_db
PROLIFIC = "https://app.prolific.com/submissions/complete?cc="
CODES = {"completion_code": "C0DE42", "screened_out_code": "SCREEN1", "no_pairs_code": "FULL1",
         "returned_code": "RET1", "timed_out_code": "LATE1"}


@pytest.fixture
def prolific(media_root, photo_dir, mean_chroma_checkpoint) -> Experiment:
    """The rater-flow experiment (1 practice, then 3 scored and 1 catch trial) on Prolific, with a code per outcome
    and screening out."""
    return make_experiment(photo_dir, mean_chroma_checkpoint, panel=Experiment.Panel.PROLIFIC,
                           catch_fail_action=Experiment.CatchFailAction.SCREEN_OUT, **CODES)


def begin(experiment: Experiment, pid: str) -> Client:
    client = Client()
    start(client, experiment, PROLIFIC_PID=pid, STUDY_ID="S", SESSION_ID=f"s-{pid}")
    return client


def answer_until(client: Client, experiment: Experiment, stop_kind: str, choose_wrong: bool):
    """Answer right until the first trial of ``stop_kind``, answered wrong if ``choose_wrong``; its JSON body."""
    current = page_state(client, experiment)["current"]
    while True:
        trial = Trial.objects.get(token=current["token"])
        wrong = "R" if trial.real_side == "L" else "L"
        choice = wrong if trial.kind == stop_kind and choose_wrong else trial.real_side
        body = post_answer(client, experiment, current["token"], choice).json()
        if trial.kind == stop_kind:
            return body
        current = body["current"]


@pytest.mark.parametrize("planned, failed, threshold, out", [
    (4, 1, 0.25, False),  # 1/4 is not above 0.25: all the others right would leave the rater unflagged
    (4, 2, 0.25, True),
    (2, 1, 0.5, False),
    (2, 2, 0.5, True),
    (1, 1, 0.25, True),
    (0, 0, 0.25, False),
])
def test_screening_out_waits_until_the_rule_is_certain_to_be_broken(planned, failed, threshold, out):
    plan = [["scored", "L"]] * 3 + [["catch", "L"]] * planned
    rows = [{"kind": "catch", "real_side": "L", "choice": "R"}] * failed
    assert services.screened_out_by_catch(rows, plan, threshold) is out


def test_a_participant_is_screened_out_at_the_failed_catch_trial_with_the_screen_out_code(prolific):
    client = begin(prolific, "p-1")
    body = answer_until(client, prolific, "catch", choose_wrong=True)
    assert body["recorded"] and body["current"] is None and body["next"] is None  # the session ends here
    rater = Rater.objects.get()
    assert (rater.outcome, rater.flagged) == ("screened_out", True) and rater.finished is not None
    done = client.get(body["done_url"])
    assert done["Location"] == PROLIFIC + "SCREEN1"
    # Their answers are kept but fill no place: the pairs get their K answers from raters who passed.
    assert rater.trials.filter(answered__isnull=False).count() >= 2
    assert not rater.trials.filter(counted=True).exists() and not Slot.objects.filter(trial__rater=rater).exists()
    # An ended session takes no more answers, serves no image and hands out no trial.
    pending = rater.trials.filter(answered__isnull=True).first()
    before = snapshot()
    if pending is not None:
        assert post_answer(client, prolific, pending.token, "L").status_code == 409
        assert client.get(reverse("vtt:image", args=[f"{pending.left_image}.jpg"])).status_code == 404
    assert client.get(reverse("vtt:trial", args=[prolific.slug]))["Location"] == reverse("vtt:done", args=["e"])
    assert snapshot() == before
    # Back on the study link, the participant is told how it ended.
    landing = client.get(reverse("vtt:landing", args=["e"]), {"PROLIFIC_PID": "p-1"}).content.decode()
    assert "did not meet this study's requirement" in landing and "I agree, start" not in landing


def test_with_the_flag_action_a_failed_catch_trial_lets_the_participant_finish_with_the_flagged_code(prolific):
    Experiment.objects.filter(pk=prolific.pk).update(catch_fail_action="flag", flagged_code="FLAG9")
    client = begin(prolific, "p-2")
    body = answer_until(client, prolific, "catch", choose_wrong=True)
    while body["current"] is not None:
        body = post_answer(client, prolific, body["current"]["token"], "L").json()
    rater = Rater.objects.get()
    assert (rater.outcome, rater.flagged) == ("completed_flagged", True)
    assert client.get(body["done_url"])["Location"] == PROLIFIC + "FLAG9"


def test_a_participant_who_passes_the_catch_trial_completes_with_the_completion_code(prolific):
    client = begin(prolific, "p-3")
    body = answer_until(client, prolific, "catch", choose_wrong=False)
    while body["current"] is not None:
        body = post_answer(client, prolific, body["current"]["token"], "L").json()
    assert Rater.objects.get().outcome == "completed"
    assert client.get(body["done_url"])["Location"] == PROLIFIC + "C0DE42"


def test_when_every_place_is_taken_a_new_participant_gets_the_no_pairs_code_at_once(prolific):
    Slot.objects.update(filled=True)
    client = begin(prolific, "p-4")
    rater = Rater.objects.get()
    assert rater.outcome == "no_pairs" and rater.plan == [] and not rater.trials.exists()
    assert client.get(reverse("vtt:done", args=["e"]))["Location"] == PROLIFIC + "FULL1"
    # Without a code the page says so and asks them to return the study.
    Experiment.objects.filter(pk=prolific.pk).update(no_pairs_code="")
    page = client.get(reverse("vtt:done", args=["e"])).content.decode()
    assert "Every pair of this study has been rated" in page and "return the study" in page


def test_stop_taking_part_ends_the_session_as_returned_keeping_its_answers(prolific):
    client = begin(prolific, "p-5")
    state = page_state(client, prolific)
    post_answer(client, prolific, state["current"]["token"], "L")  # the practice trial
    page = client.get(reverse("vtt:stop", args=["e"]))
    assert page.status_code == 200 and "Yes, stop taking part" in page.content.decode()
    assert Rater.objects.get().outcome == "in_progress"  # asking is not stopping
    stopped = client.post(reverse("vtt:stop", args=["e"]))
    assert stopped["Location"] == PROLIFIC + "RET1"
    rater = Rater.objects.get()
    assert rater.outcome == "returned" and rater.finished is not None
    assert rater.trials.filter(answered__isnull=False).count() == 1
    assert not Slot.objects.filter(trial__rater=rater, filled=False).exists()  # its leases went back
    again = client.post(reverse("vtt:stop", args=["e"]))  # a second click changes nothing
    assert again["Location"] == PROLIFIC + "RET1" and Rater.objects.get().finished == rater.finished


def test_a_session_past_its_time_limit_times_out_and_an_answer_that_arrives_late_is_kept(prolific):
    Experiment.objects.filter(pk=prolific.pk).update(session_minutes=30)
    client = begin(prolific, "p-6")
    state = page_state(client, prolific)
    Rater.objects.update(started=timezone.now() - timedelta(minutes=31))
    late = post_answer(client, prolific, state["current"]["token"], "L").json()
    assert late["recorded"] and late["current"] is None
    rater = Rater.objects.get()
    assert rater.outcome == "timed_out" and rater.trials.get(token=state["current"]["token"]).answered is not None
    assert not Slot.objects.filter(trial__rater=rater, filled=False).exists()
    assert client.get(late["done_url"])["Location"] == PROLIFIC + "LATE1"
    # One who comes back to the trial page after the limit is timed out there.
    other = begin(prolific, "p-7")
    page_state(other, prolific)
    Rater.objects.filter(external_id="p-7").update(started=timezone.now() - timedelta(minutes=31))
    assert other.get(reverse("vtt:trial", args=["e"]))["Location"] == reverse("vtt:done", args=["e"])
    assert Rater.objects.get(external_id="p-7").outcome == "timed_out"


def test_a_custom_panel_code_may_be_the_panels_own_url_for_that_outcome(prolific):
    Experiment.objects.filter(pk=prolific.pk).update(
        panel=Experiment.Panel.CUSTOM, participant_param="workerId", completion_url="https://panel.example/c?code={code}",
        returned_code="https://panel.example/returned?study=7")
    client = Client()
    client.get(reverse("vtt:landing", args=["e"]), {"workerId": "w1"})
    client.post(reverse("vtt:start", args=["e"]), {"workerId": "w1"})
    page_state(client, prolific)
    assert client.post(reverse("vtt:stop", args=["e"]))["Location"] == "https://panel.example/returned?study=7"


@pytest.mark.parametrize("values, field", [
    ({"panel": "prolific", "completion_code": ""}, "completion_code"),
    ({"panel": "prolific", "returned_code": "https://example.org/r"}, "returned_code"),
    ({"panel": "custom", "completion_url": ""}, "completion_url"),
    ({"panel": "prolific", "catch_fail_action": "screen_out", "screened_out_code": ""}, "screened_out_code"),
    ({"no_pairs_code": "two words"}, "no_pairs_code"),
    ({"timed_out_code": "ftp://example.org/x"}, "timed_out_code"),
    ({"session_minutes": 0}, "session_minutes"),
])
def test_missing_or_malformed_outcome_codes_are_refused_and_nothing_is_written(prolific, values, field):
    before = list(Experiment.objects.values())
    with pytest.raises(ValidationError) as error:
        services.experiment_configure(experiment=prolific, **values)
    assert field in error.value.message_dict
    assert list(Experiment.objects.values()) == before


def test_an_experiment_whose_panel_lacks_a_code_cannot_open(media_root, photo_dir, mean_chroma_checkpoint):
    experiment = make_experiment(photo_dir, mean_chroma_checkpoint)
    services.experiment_close(experiment=experiment)
    draft = Experiment.objects.create(slug="d", title="d", panel="prolific")  # made without validation
    before = (list(Experiment.objects.values()), Slot.objects.count())
    with pytest.raises(services.TrialRejected, match="completion_code: Prolific needs the study's completion code"):
        services.experiment_open(experiment=draft)
    assert (list(Experiment.objects.values()), Slot.objects.count()) == before


@pytest.mark.django_db(transaction=True)
def test_0007_gives_earlier_raters_the_outcome_the_earlier_code_derived():
    apps = migrate([("vtt", "0006_flagged_code")])
    try:
        Experiment, Rater = apps.get_model("vtt", "Experiment"), apps.get_model("vtt", "Rater")
        experiment = Experiment.objects.create(slug="old", title="old")
        now = timezone.now()
        made = {"a": {"finished": now}, "b": {"finished": now, "flagged": True}, "c": {"declined": now}, "d": {},
                "e": {"flagged": True}}
        for pid, fields in made.items():
            Rater.objects.create(experiment=experiment, external_id=pid, **fields)
        apps = migrate([("vtt", "0007_outcomes")])
        outcomes = dict(apps.get_model("vtt", "Rater").objects.values_list("external_id", "outcome"))
        assert outcomes == {"a": "completed", "b": "completed_flagged", "c": "declined", "d": "in_progress",
                            "e": "in_progress"}
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
