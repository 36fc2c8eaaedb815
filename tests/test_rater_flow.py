"""The rater's path through Django's test client, the panels, and each bad input refused without a write."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tests.conftest import colour_image, import_tinted
from vtt import services
from vtt.models import Experiment, Method, Rater, Slot, Trial

pytestmark = pytest.mark.django_db
JSON = {"HTTP_ACCEPT": "application/json"}


def make_experiment(photo_dir: Path, checkpoint: Path, *, images: int = 5, methods: str = "", **design) -> Experiment:
    for i in range(5, images):
        colour_image(i).save(photo_dir / f"extra{i}.png")
    chosen = ["--methods", methods] if methods else []
    if not methods or "mean_chroma" in methods:
        chosen += ["--checkpoint", f"mean_chroma={checkpoint}"]
    call_command(
        "generate_pairs", "--experiment", "e", "--split", f"folder:{photo_dir}", "--size", "64", "--workers", "0",
        *chosen, stdout=io.StringIO(), stderr=io.StringIO(),
    )
    if not methods:
        import_tinted("e", photo_dir, photo_dir.parent / "tinted")
    experiment = Experiment.objects.get(slug="e")
    defaults = {"completion_code": "C0DE42", "trials_per_rater": 4, "practice_trials": 1, "catch_trial_rate": 0.34}
    Experiment.objects.filter(pk=experiment.pk).update(**{**defaults, **design})
    experiment.refresh_from_db()
    services.experiment_open(experiment=experiment)
    experiment.refresh_from_db()
    return experiment


@pytest.fixture
def experiment(media_root, photo_dir, mean_chroma_checkpoint) -> Experiment:
    """5 images x (mean_chroma, tinted rated; grayscale for catch): 1 practice, then 4 trials: 3 scored, 1 catch."""
    return make_experiment(photo_dir, mean_chroma_checkpoint)


def start(client: Client, experiment: Experiment, **params: str):
    landing = client.get(reverse("vtt:landing", args=[experiment.slug]), params)
    assert landing.status_code == 200
    assert "Which image has the true colors?" in landing.content.decode()
    return client.post(reverse("vtt:start", args=[experiment.slug]), params)


def page_state(client: Client, experiment: Experiment) -> dict:
    page = client.get(reverse("vtt:trial", args=[experiment.slug]))
    assert page.status_code == 200, page
    match = re.search(r'<script id="vtt-state" type="application/json">(.*?)</script>', page.content.decode(), re.S)
    return json.loads(match.group(1))


def post_answer(client: Client, experiment: Experiment, token: str, choice: str, **extra):
    data = {"trial": token, "choice": choice, "response_ms": "850", **extra}
    return client.post(reverse("vtt:answer", args=[experiment.slug]), data, **JSON)


def snapshot():
    return (
        list(Trial.objects.order_by("id").values()),
        list(Rater.objects.order_by("id").values()),
        list(Slot.objects.order_by("id").values()),
    )


def run_session(client: Client, experiment: Experiment, choose=lambda trial: "L") -> list[dict]:
    """Answer every trial the server hands out; returns the JSON bodies of the answers."""
    state = page_state(client, experiment)
    current, bodies = state["current"], []
    while current is not None:
        response = post_answer(client, experiment, current["token"], choose(current))
        assert response.status_code == 200, response.content
        bodies.append(response.json())
        current = bodies[-1]["current"]
    return bodies


def test_a_rater_completes_a_session_with_practice_scored_and_catch_trials(experiment):
    client = Client()
    start(client, experiment)
    state = page_state(client, experiment)
    assert state["current"]["practice"] and (state["current"]["number"], state["current"]["total"]) == (1, 1)
    assert state["next"] is not None and not state["next"]["practice"]  # preloaded
    assert all(re.fullmatch(r"/img/[0-9a-f]{32}\.jpg", state["current"][side]) for side in ("left", "right"))
    bodies = run_session(client, experiment)
    assert bodies[0]["feedback"] is not None  # practice: feedback
    assert all(body["feedback"] is None for body in bodies[1:])  # scored and catch: none
    rater = Rater.objects.get()
    kinds = list(rater.trials.order_by("position").values_list("kind", flat=True))
    assert kinds[0] == "practice" and sorted(kinds[1:]) == ["catch", "scored", "scored", "scored"]
    images = list(rater.trials.values_list("colorization__image_id", flat=True))
    assert len(images) == len(set(images)) == 5  # never the same source image twice
    sides = list(rater.trials.exclude(kind="practice").values_list("real_side", flat=True))
    assert abs(sides.count("L") - sides.count("R")) <= 1
    catch = rater.trials.get(kind="catch")
    assert catch.colorization.method.role == Method.Role.CATCH and not catch.counted
    assert all(rater.trials.filter(kind="scored").values_list("counted", flat=True))
    assert rater.finished is not None
    done = client.get(reverse("vtt:done", args=[experiment.slug]))
    assert "C0DE42" in done.content.decode()
    # Back on the study link, a finished rater is told so, with the code, and offered nothing to continue.
    again = client.get(reverse("vtt:landing", args=[experiment.slug])).content.decode()
    assert "You have finished this experiment" in again and "C0DE42" in again
    assert "Continue where you were" not in again and "I agree, start" not in again


def test_progress_counts_scored_and_catch_trials_together(experiment):
    """trials_per_rater = 4 after 1 practice trial: the page counts 1 to 4, the 4 trials the rater does."""
    client = Client()
    start(client, experiment)
    bodies = run_session(client, experiment)
    numbers = [(b["current"]["number"], b["current"]["total"]) for b in bodies if b["current"]]
    assert numbers == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert Trial.objects.exclude(kind="practice").count() == experiment.trials_per_rater


def test_a_session_never_plans_more_trials_than_the_experiment_has_images(media_root, photo_dir, mean_chroma_checkpoint):
    experiment = make_experiment(photo_dir, mean_chroma_checkpoint, trials_per_rater=40, practice_trials=2)
    client = Client()
    start(client, experiment)
    state = page_state(client, experiment)
    assert (state["current"]["number"], state["current"]["total"]) == (1, 2)   # practice
    bodies = run_session(client, experiment)
    numbers = [(b["current"]["number"], b["current"]["total"]) for b in bodies if b["current"] and not b["current"]["practice"]]
    assert numbers == [(1, 3), (2, 3), (3, 3)]   # 5 images: 2 practice, 3 more, as counted from the start


def test_a_reload_shows_the_same_trial_and_the_same_preloaded_next(experiment):
    client = Client()
    start(client, experiment)
    first, again = page_state(client, experiment), page_state(client, experiment)
    assert first["current"] == again["current"] and first["next"] == again["next"]
    assert Trial.objects.count() == 2


def test_both_images_are_served_with_the_same_headers(experiment):
    client = Client()
    start(client, experiment)
    state = page_state(client, experiment)
    responses = [client.get(state["next"][side]) for side in ("left", "right")]
    headers = [{k: v for k, v in r.headers.items() if k != "Content-Length"} for r in responses]
    assert headers[0] == headers[1]
    assert "Last-Modified" not in headers[0] and "ETag" not in headers[0] and "Content-Disposition" not in headers[0]
    assert all(r.status_code == 200 and r["Content-Type"] == "image/jpeg" for r in responses)


def test_a_prolific_participant_resumes_and_is_sent_back_to_prolific(experiment):
    Experiment.objects.filter(pk=experiment.pk).update(panel=Experiment.Panel.PROLIFIC)
    panel = {"PROLIFIC_PID": "p-123", "STUDY_ID": "s-1", "SESSION_ID": "x-1"}
    first = Client()
    start(first, experiment, **panel)
    token = page_state(first, experiment)["current"]["token"]
    second = Client()  # the same study link in another browser
    start(second, experiment, **panel)
    assert page_state(second, experiment)["current"]["token"] == token
    rater = Rater.objects.get()
    assert (rater.external_id, rater.study_id, rater.session_id) == ("p-123", "s-1", "x-1")
    run_session(second, experiment)
    done = second.get(reverse("vtt:done", args=[experiment.slug]))
    assert done.status_code == 302
    assert done["Location"] == "https://app.prolific.com/submissions/complete?cc=C0DE42"
    third = Client()  # one external id takes an experiment once: the link says it is finished
    landing = third.get(reverse("vtt:landing", args=[experiment.slug]), panel).content.decode()
    assert "You have finished this experiment" in landing and "Return to the study panel" in landing
    assert "I agree, start" not in landing and "Continue where you were" not in landing
    back = third.post(reverse("vtt:start", args=[experiment.slug]), panel)
    assert back["Location"] == reverse("vtt:done", args=[experiment.slug])
    assert third.get(back["Location"])["Location"] == "https://app.prolific.com/submissions/complete?cc=C0DE42"
    assert Rater.objects.count() == 1


def test_a_custom_panel_names_its_parameter_and_completion_url(experiment):
    Experiment.objects.filter(pk=experiment.pk).update(
        panel=Experiment.Panel.CUSTOM, participant_param="workerId", completion_url="https://panel.example/done?c={code}"
    )
    client = Client()
    start(client, experiment, workerId="w-9")
    assert Rater.objects.get().external_id == "w-9"
    run_session(client, experiment)
    assert client.get(reverse("vtt:done", args=[experiment.slug]))["Location"] == "https://panel.example/done?c=C0DE42"


def test_every_pair_gets_exactly_k_answers_from_distinct_raters(media_root, photo_dir, mean_chroma_checkpoint):
    experiment = make_experiment(photo_dir, mean_chroma_checkpoint, raters_per_pair=2, trials_per_rater=4,
                                 practice_trials=0, catch_trial_rate=0.0)
    for _ in range(8):  # 20 places, 4 per rater: more raters than needed
        client = Client()
        start(client, experiment)
        if client.get(reverse("vtt:trial", args=[experiment.slug])).status_code == 200:
            run_session(client, experiment)
    counted = Trial.objects.filter(kind="scored", counted=True)
    per_pair = {}
    for colorization, rater in counted.values_list("colorization_id", "rater_id"):
        per_pair.setdefault(colorization, []).append(rater)
    assert len(per_pair) == 10 and all(len(r) == len(set(r)) == 2 for r in per_pair.values())
    assert Slot.objects.filter(filled=False).count() == 0
    assert Trial.objects.filter(answered__isnull=True).count() == 0


def test_each_rater_sees_the_methods_evenly(media_root, photo_dir, mean_chroma_checkpoint):
    experiment = make_experiment(photo_dir, mean_chroma_checkpoint, images=8, trials_per_rater=6,
                                 practice_trials=0, catch_trial_rate=0.0)
    client = Client()
    start(client, experiment)
    run_session(client, experiment)
    methods = list(Trial.objects.values_list("colorization__method__name", flat=True))
    assert sorted(methods) == ["mean_chroma"] * 3 + ["tinted"] * 3


def test_the_single_method_design_gives_each_rater_one_method(media_root, photo_dir, mean_chroma_checkpoint):
    experiment = make_experiment(photo_dir, mean_chroma_checkpoint, design=Experiment.Design.SINGLE,
                                 trials_per_rater=3, practice_trials=0, catch_trial_rate=0.0)
    for _ in range(2):
        client = Client()
        start(client, experiment)
        run_session(client, experiment)
    by_rater = {r.pk: set(r.trials.values_list("colorization__method__name", flat=True)) for r in Rater.objects.all()}
    assert sorted(map(sorted, by_rater.values())) == [["mean_chroma"], ["tinted"]]


def test_an_expired_lease_returns_the_pair_and_a_late_answer_never_exceeds_k(media_root, photo_dir, mean_chroma_checkpoint):
    # One rated method: the other rater must take the expired pair to see its image at all.
    experiment = make_experiment(photo_dir, mean_chroma_checkpoint, methods="mean_chroma,grayscale",
                                 raters_per_pair=1, trials_per_rater=10, practice_trials=0, catch_trial_rate=0.0)
    slow, fast = Client(), Client()
    start(slow, experiment)
    late = page_state(slow, experiment)["current"]["token"]
    late_trial = Trial.objects.get(token=late)
    Slot.objects.filter(trial=late_trial).update(lease_expires="2000-01-01T00:00:00Z")  # the lease runs out
    start(fast, experiment)
    run_session(fast, experiment)  # takes every free place, the expired one included
    assert Trial.objects.filter(rater__in=Rater.objects.exclude(trials=late_trial), colorization=late_trial.colorization).exists()
    response = post_answer(slow, experiment, late, "L")
    assert response.status_code == 200  # kept ...
    late_trial.refresh_from_db()
    assert late_trial.answered is not None and late_trial.counted is False  # ... but not counted: K = 1 reached
    assert Trial.objects.filter(colorization=late_trial.colorization, counted=True).count() == 1


def test_a_late_answer_fills_its_pair_when_a_place_is_free(media_root, photo_dir, mean_chroma_checkpoint):
    experiment = make_experiment(photo_dir, mean_chroma_checkpoint, raters_per_pair=2, trials_per_rater=2,
                                 practice_trials=0, catch_trial_rate=0.0)
    client = Client()
    start(client, experiment)
    token = page_state(client, experiment)["current"]["token"]
    Slot.objects.filter(trial__token=token).update(lease_expires="2000-01-01T00:00:00Z", trial=None)
    assert post_answer(client, experiment, token, "R").status_code == 200
    assert Trial.objects.get(token=token).counted is True


def test_failing_catch_trials_flags_the_rater(experiment):
    client = Client()
    start(client, experiment)
    run_session(client, experiment, choose=lambda trial: "L")
    rater = Rater.objects.get()
    catch = rater.trials.get(kind="catch")
    assert rater.flagged == (catch.real_side == "R")  # picking the grayscale image fails the catch


def test_a_repeated_answer_is_recorded_once(experiment):
    client = Client()
    start(client, experiment)
    token = page_state(client, experiment)["current"]["token"]
    first = post_answer(client, experiment, token, "R")
    before = snapshot()
    again = post_answer(client, experiment, token, "R")
    assert first.json()["recorded"] and again.status_code == 200 and not again.json()["recorded"]
    assert again.json()["current"] == first.json()["current"]
    assert snapshot() == before


@pytest.mark.parametrize(
    "field, value, status",
    [
        ("choice", "X", 400),
        ("choice", "", 400),
        ("response_ms", "-5", 400),
        ("response_ms", "soon", 400),
        ("trial", "0" * 32, 404),
        ("trial", "'; DROP TABLE vtt_trial; --", 404),
    ],
)
def test_a_tampered_answer_is_refused_and_writes_nothing(experiment, field, value, status):
    client = Client()
    start(client, experiment)
    token = page_state(client, experiment)["current"]["token"]
    before = snapshot()
    data = {"trial": token, "choice": "L", "response_ms": "850", field: value}
    response = client.post(reverse("vtt:answer", args=[experiment.slug]), data, **JSON)
    assert response.status_code == status and "error" in response.json()
    assert snapshot() == before


def test_an_answer_for_another_raters_trial_is_refused(experiment):
    alice, mallory = Client(), Client()
    start(alice, experiment)
    start(mallory, experiment)
    token = page_state(alice, experiment)["current"]["token"]
    page_state(mallory, experiment)
    before = snapshot()
    assert post_answer(mallory, experiment, token, "L").status_code == 404
    assert snapshot() == before


def test_a_replayed_or_changed_old_answer_is_refused(experiment):
    client = Client()
    start(client, experiment)
    first = page_state(client, experiment)["current"]["token"]
    second = post_answer(client, experiment, first, "R").json()["current"]["token"]
    post_answer(client, experiment, second, "L")
    before = snapshot()
    assert post_answer(client, experiment, first, "R").status_code == 409  # replay of an older trial
    assert post_answer(client, experiment, second, "R").status_code == 409  # a changed answer
    assert snapshot() == before


def test_answering_the_preloaded_trial_first_is_refused(experiment):
    client = Client()
    start(client, experiment)
    state = page_state(client, experiment)
    before = snapshot()
    assert post_answer(client, experiment, state["next"]["token"], "L").status_code == 409
    assert snapshot() == before


def test_an_answer_without_csrf_token_is_refused(experiment):
    client = Client(enforce_csrf_checks=True)
    page = client.get(reverse("vtt:landing", args=[experiment.slug]))
    client.post(reverse("vtt:start", args=[experiment.slug]), {"csrfmiddlewaretoken": str(page.context["csrf_token"])})
    token = page_state(client, experiment)["current"]["token"]
    before = snapshot()
    assert post_answer(client, experiment, token, "L").status_code == 403
    assert snapshot() == before


def test_a_closed_experiment_takes_no_rater_and_no_answer(experiment):
    client = Client()
    start(client, experiment)
    token = page_state(client, experiment)["current"]["token"]
    services.experiment_close(experiment=experiment)
    before = snapshot()
    assert post_answer(client, experiment, token, "L").status_code == 403
    assert Client().post(reverse("vtt:start", args=[experiment.slug])).status_code == 403
    assert client.get(reverse("vtt:trial", args=[experiment.slug])).status_code == 403
    assert snapshot() == before


def test_an_answer_without_a_session_is_refused(experiment):
    before = snapshot()
    response = Client().post(reverse("vtt:answer", args=[experiment.slug]), {"trial": "a" * 32, "choice": "L"}, **JSON)
    assert response.status_code == 403 and snapshot() == before


def test_image_names_outside_the_pattern_are_refused(experiment):
    client = Client()
    assert client.get("/img/..%2F..%2Fvar%2Fsecret_key").status_code == 404  # no route takes a slash
    assert client.get("/img/secret_key").status_code == 400
    assert client.get(reverse("vtt:image", args=["f" * 32 + ".jpg"])).status_code == 404


def test_opening_an_experiment_without_a_catch_method_is_refused(media_root, photo_dir):
    call_command("generate_pairs", "--experiment", "nc", "--split", f"folder:{photo_dir}", "--methods", "ground_truth",
                 "--size", "64", stdout=io.StringIO(), stderr=io.StringIO())
    experiment = Experiment.objects.get(slug="nc")
    with pytest.raises(services.TrialRejected, match="no catch method"):
        services.experiment_open(experiment=experiment)
    assert Experiment.objects.get(slug="nc").state == "draft" and not Slot.objects.exists()


def streamed(client: Client, url: str) -> bytes:
    """The body of a streamed response (the exports), read chunk by chunk (the test client closes it at the end)."""
    return b"".join(client.get(url).streaming_content)


def test_the_staff_pages_and_exports_are_for_staff_only(experiment, admin_client):
    Experiment.objects.filter(pk=experiment.pk).update(catch_fail_threshold=1.0)  # keep the one rater in the report
    client = Client()
    start(client, experiment)
    run_session(client, experiment)
    for name, args in [("vtt:dashboard", []), ("vtt:experiment", ["e"]), ("vtt:export", ["e", "csv"])]:
        assert Client().get(reverse(name, args=args)).status_code == 302  # to the login page
        assert admin_client.get(reverse(name, args=args)).status_code == 200
    detail = admin_client.get(reverse("vtt:experiment", args=["e"])).content.decode()
    assert "mean_chroma" in detail and "/e/e/" in detail
    assert "<svg" in detail and "VTT scores" in detail  # the report's figure and table
    rows = list(csv.DictReader(io.StringIO(streamed(admin_client, reverse("vtt:export", args=["e", "csv"])).decode())))
    assert len(rows) == 5 and {r["trial_kind"] for r in rows} == {"practice", "scored", "catch"}
    assert all(r["chose_generated"] in {"0", "1"} for r in rows)
    data = json.loads(streamed(admin_client, reverse("vtt:export", args=["e", "json"])))
    assert len(data["trials"]) == 5 and data["trials"][0]["rater"] == rows[0]["rater"]
    assert admin_client.get(reverse("vtt:export", args=["e", "xml"])).status_code == 404


def test_healthz_answers():
    assert Client().get(reverse("vtt:healthz")).content == b"ok"


def test_a_flagged_participant_gets_the_flagged_code_where_the_experiment_has_one(experiment):
    Experiment.objects.filter(pk=experiment.pk).update(panel=Experiment.Panel.PROLIFIC, flagged_code="FLAG99")
    locations = {}
    for pid, flagged in (("p-1", True), ("p-2", False)):
        client = Client()
        start(client, experiment, PROLIFIC_PID=pid, STUDY_ID="s-1", SESSION_ID=f"x-{pid}")
        run_session(client, experiment)
        # The catch rule itself is tested above; here the flag is set so that both cases occur.
        outcome = Rater.Outcome.COMPLETED_FLAGGED if flagged else Rater.Outcome.COMPLETED
        Rater.objects.filter(external_id=pid).update(flagged=flagged, outcome=outcome)
        locations[pid] = client.get(reverse("vtt:done", args=[experiment.slug]))["Location"]
    assert locations["p-1"] == "https://app.prolific.com/submissions/complete?cc=FLAG99"
    assert locations["p-2"] == "https://app.prolific.com/submissions/complete?cc=C0DE42"
    # Without a panel the code is on the page, the flagged one for a flagged rater.
    Experiment.objects.filter(pk=experiment.pk).update(panel=Experiment.Panel.NONE)
    client = Client()
    start(client, experiment)
    run_session(client, experiment)
    Rater.objects.filter(external_id="").update(flagged=True, outcome=Rater.Outcome.COMPLETED_FLAGGED)
    assert "FLAG99" in client.get(reverse("vtt:done", args=[experiment.slug])).content.decode()
    assert "FLAG99" in client.get(reverse("vtt:landing", args=[experiment.slug])).content.decode()
