"""The life of a study: draft, pilot, open, paused, closed; who is admitted in each; pilot answers kept apart."""
from __future__ import annotations

import io
import json
import re
import threading
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from tests.test_rater_flow import page_state, run_session, snapshot, start
from vtt import judgments, report, services
from vtt.models import Experiment, Rater, Slot

pytestmark = pytest.mark.django_db


def make_draft(photo_dir: Path, checkpoint: Path, **design) -> Experiment:
    """5 images x mean_chroma (rated) and the grayscale catch control, in draft: 1 practice, 3 scored, 1 catch."""
    call_command("generate_pairs", "--experiment", "e", "--split", f"folder:{photo_dir}", "--size", "64",
                 "--workers", "0", "--checkpoint", f"mean_chroma={checkpoint}", stdout=io.StringIO(),
                 stderr=io.StringIO())
    settings = {"trials_per_rater": 4, "practice_trials": 1, "catch_trial_rate": 0.25, "catch_fail_threshold": 1.0,
                "raters_per_pair": 3, **design}
    Experiment.objects.filter(slug="e").update(**settings)
    return Experiment.objects.get(slug="e")


@pytest.fixture
def draft(media_root, photo_dir, mean_chroma_checkpoint) -> Experiment:
    return make_draft(photo_dir, mean_chroma_checkpoint)


def state(experiment: Experiment) -> str:
    return Experiment.objects.get(pk=experiment.pk).state


def test_the_allowed_transitions_and_the_refused_ones(draft):
    assert state(draft) == "draft"
    for refused in (services.experiment_pause,):
        with pytest.raises(services.TrialRejected, match="cannot be set to paused"):
            refused(experiment=draft)
    assert services.experiment_pilot(experiment=draft) > 0 and state(draft) == "pilot"
    with pytest.raises(services.TrialRejected, match=r"is pilot: it cannot be set to paused \(from pilot: open, "):
        services.experiment_pause(experiment=draft)
    services.experiment_open(experiment=draft)
    services.experiment_pause(experiment=draft)
    assert state(draft) == "paused"
    services.experiment_open(experiment=draft)
    with pytest.raises(services.TrialRejected, match="cannot be set to open"):
        services.experiment_open(experiment=draft)
    services.experiment_close(experiment=draft)
    before = snapshot(), state(draft)
    for move in (services.experiment_open, services.experiment_pilot, services.experiment_pause,
                 services.experiment_close):
        with pytest.raises(services.TrialRejected, match="a closed experiment is final"):
            move(experiment=draft)
    with pytest.raises(services.TrialRejected, match="no such state 'draft'"):
        services.experiment_set_state(experiment=draft, state="draft")
    assert (snapshot(), state(draft)) == before


def test_opening_or_piloting_an_experiment_without_pairs_is_refused_and_writes_nothing(db):
    empty = services.experiment_create(slug="empty", title="No pairs", catch_trial_rate=0)
    for move in (services.experiment_open, services.experiment_pilot):
        with pytest.raises(services.TrialRejected, match="'empty' has no method to rate"):
            move(experiment=empty)
    assert state(empty) == "draft" and not Slot.objects.exists()


def test_the_pilot_admits_its_cap_marks_its_raters_and_then_is_full(draft):
    Experiment.objects.filter(pk=draft.pk).update(pilot_raters=2)
    services.experiment_pilot(experiment=draft)
    for _ in range(2):
        assert start(Client(), draft).status_code == 302
    before = snapshot()
    full = start(Client(), draft)
    assert full.status_code == 403 and "The pilot of this study is full" in full.content.decode()
    assert snapshot() == before
    assert list(Rater.objects.values_list("pilot", flat=True)) == [True, True]
    # Once open, anyone starts, unmarked.
    services.experiment_open(experiment=draft)
    assert start(Client(), draft).status_code == 302
    assert list(Rater.objects.order_by("id").values_list("pilot", flat=True)) == [True, True, False]


def test_pilot_answers_give_back_their_places_and_stay_out_of_the_report_unless_asked(draft, tmp_path):
    services.experiment_pilot(experiment=draft)
    pilot_client = Client()
    start(pilot_client, draft)
    run_session(pilot_client, draft)
    assert Slot.objects.filter(filled=True).count() == 3  # the pilot's 3 scored answers took places
    with pytest.raises(CommandError, match=r"all 3 come from pilot raters \(--include-pilot keeps them\)"):
        call_command("vtt_plan", "--experiment", "e", stdout=io.StringIO())
    plan = io.StringIO()
    call_command("vtt_plan", "--experiment", "e", "--include-pilot", "--format", "json", stdout=plan)
    assert json.loads(plan.getvalue())["pilot"]["n_raters"] == 1
    services.experiment_open(experiment=draft)
    assert not Slot.objects.filter(filled=True).exists()  # ... which the main study gets back
    main = Client()
    start(main, draft)
    run_session(main, draft)
    main_report = report.experiment_report(draft, n_boot=50)
    assert main_report["n_raters"] == 1 and main_report["n_judgments"] == 3
    assert main_report["left_out"]["pilot_raters"] == 1 and main_report["left_out"]["pilot_judgments"] == 3
    assert main_report["pilot"] == {"n_raters": 1, "n_judgments": 3, "excluded": True}
    both = report.experiment_report(draft, n_boot=50, include_pilot=True)
    assert both["n_raters"] == 2 and both["n_judgments"] == 6 and both["left_out"]["pilot_raters"] == 0
    out = io.StringIO()
    call_command("vtt_report", "--experiment", "e", "--include-pilot", "--format", "json", "--n-boot", "50", stdout=out)
    assert json.loads(out.getvalue())["n_raters"] == 2
    out = io.StringIO()
    call_command("vtt_report", "--experiment", "e", "--n-boot", "50", stdout=out)
    assert "pilot: left out 1 pilot rater(s) with 3 scored judgments" in out.getvalue()
    # A CSV with a pilot column leaves its pilot raters out; without the column, no rater is pilot.
    rows = ["rater,image,method,chose_generated,pilot"] + [f"r{r},i{i},m,{(r + i) % 2},{int(r == 0)}"
                                                          for r in range(3) for i in range(4)]
    (tmp_path / "with.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "without.csv").write_text("\n".join(row.rsplit(",", 1)[0] for row in rows) + "\n")
    with_pilot = report.build_report(judgments.read_judgments_csv(tmp_path / "with.csv"), n_boot=50)
    assert with_pilot["n_raters"] == 2 and with_pilot["left_out"]["pilot_judgments"] == 4
    without = report.build_report(judgments.read_judgments_csv(tmp_path / "without.csv"), n_boot=50)
    assert without["n_raters"] == 3 and without["left_out"]["pilot_raters"] == 0


def test_a_pilot_rater_still_in_a_session_when_the_study_opens_fills_no_place(draft):
    services.experiment_pilot(experiment=draft)
    client = Client()
    start(client, draft)
    run_session_until_scored = page_state(client, draft)  # the practice trial, and a scored or catch one preloaded
    assert run_session_until_scored["current"]["practice"]
    services.experiment_open(experiment=draft)
    run_session(client, draft)
    rater = Rater.objects.get()
    assert rater.finished is not None and not Slot.objects.filter(filled=True).exists()
    assert not rater.trials.filter(kind="scored", counted=True).exists()


def test_a_paused_study_admits_nobody_new_but_lets_started_raters_finish(draft):
    services.experiment_open(experiment=draft)
    started = Client()
    start(started, draft)
    page_state(started, draft)
    services.experiment_pause(experiment=draft)
    before = snapshot()
    landing = Client().get(reverse("vtt:landing", args=["e"])).content.decode()
    assert "This study is paused" in landing and "I agree, start" not in landing
    refused = Client().post(reverse("vtt:start", args=["e"]))
    assert refused.status_code == 403 and "This study is paused" in refused.content.decode()
    assert snapshot() == before
    run_session(started, draft)
    assert Rater.objects.get().finished is not None


def staff_client(django_user_model) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_user("staff", password="x", is_staff=True))
    return client


def test_the_dashboard_shows_the_state_and_its_buttons_change_it(draft, django_user_model):
    client = staff_client(django_user_model)
    page = client.get(reverse("vtt:dashboard")).content.decode()
    assert "draft (being prepared)" in page
    assert re.findall(r'name="state" value="(\w+)"', page) == ["pilot", "open", "closed"]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    url = reverse("vtt:experiment_state", args=["e"])
    assert client.post(url, {"state": "pilot"}).status_code == 403  # no CSRF token
    assert Client().post(url, {"state": "pilot"}).status_code == 302 and state(draft) == "draft"  # not staff: login
    refused = client.post(url, {"state": "paused", "csrfmiddlewaretoken": token}, follow=True)
    assert "cannot be set to paused" in refused.content.decode() and state(draft) == "draft"
    done = client.post(url, {"state": "pilot", "csrfmiddlewaretoken": token}, follow=True)
    assert "e is now pilot" in done.content.decode() and state(draft) == "pilot"
    assert re.findall(r'name="state" value="(\w+)"', done.content.decode()) == ["open", "closed"]
    assert client.get(url).status_code == 405


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_starts_in_pilot_never_exceed_the_cap(media_root, photo_dir, mean_chroma_checkpoint):
    experiment = make_draft(photo_dir, mean_chroma_checkpoint, pilot_raters=3)
    services.experiment_pilot(experiment=experiment)
    experiment.refresh_from_db()
    n = 12
    barrier, outcomes = threading.Barrier(n), []

    def one(i: int):
        barrier.wait()
        try:
            services.rater_start(experiment=experiment, external_id=f"p{i}")
            outcomes.append("started")
        except services.TrialRejected as exc:
            outcomes.append(str(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("started") == 3 and Rater.objects.filter(pilot=True).count() == 3
    assert all("pilot of this study is full" in o for o in outcomes if o != "started")
