"""A rater's path through Django's test client, and each bad input refused without a write."""
from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from vtt.models import Colorization, Experiment, Rater, Trial

pytestmark = pytest.mark.django_db


@pytest.fixture
def experiment(media_root, photo_dir) -> Experiment:
    call_command(
        "generate_pairs", "--experiment", "e", "--split", f"folder:{photo_dir}", "--methods", "ground_truth,grayscale",
        "--size", "64", "--trials-per-rater", "3", "--open", stdout=io.StringIO(), stderr=io.StringIO(),
    )
    experiment = Experiment.objects.get(slug="e")
    experiment.completion_code = "C0DE42"
    experiment.save()
    return experiment


def start(client: Client, experiment: Experiment, **panel: str) -> None:
    landing = client.get(reverse("vtt:landing", args=[experiment.slug]), panel)
    assert landing.status_code == 200
    assert "Which image has the true colors?" in landing.content.decode()
    client.post(reverse("vtt:start", args=[experiment.slug]), panel)


def current_trial(client: Client, experiment: Experiment):
    page = client.get(reverse("vtt:trial", args=[experiment.slug]))
    assert page.status_code == 200
    return page, Trial.objects.get(token=page.context["trial"].token)


def answer(client: Client, experiment: Experiment, trial: Trial, choice: str, **extra):
    data = {"trial": trial.token, "choice": choice, "response_ms": "850", **extra}  # extra may replace any field
    return client.post(reverse("vtt:answer", args=[experiment.slug]), data)


def test_a_rater_completes_a_session(experiment):
    client = Client()
    start(client, experiment)
    seen = set()
    for number in (1, 2, 3):
        page, trial = current_trial(client, experiment)
        html = page.content.decode()
        assert f"{number} of 3" in html
        urls = re.findall(r'<img src="([^"]+)"', html)
        assert len(urls) == 2 and all(re.fullmatch(r"/img/[0-9a-f]{32}\.jpg", u) for u in urls)
        real_url = reverse("vtt:image", args=[trial.colorization.image.real_file])
        assert urls[0 if trial.real_side == "L" else 1] == real_url
        seen.add(trial.colorization.image_id)
        response = answer(client, experiment, trial, "L")
        assert response.status_code == 302
        trial.refresh_from_db()
        assert trial.choice == "L" and trial.response_ms == 850 and trial.answered is not None
        assert trial.chose_generated == (trial.real_side == "R")
    assert len(seen) == 3  # never the same source image twice
    finished = client.get(reverse("vtt:trial", args=[experiment.slug]))
    assert finished.status_code == 302 and finished["Location"] == reverse("vtt:done", args=["e"])
    done = client.get(finished["Location"])
    assert "C0DE42" in done.content.decode()
    assert Rater.objects.get().finished is not None


def test_a_reload_shows_the_same_pending_trial(experiment):
    client = Client()
    start(client, experiment)
    _, first = current_trial(client, experiment)
    _, again = current_trial(client, experiment)
    assert first == again and Trial.objects.count() == 1


def test_both_images_are_served_with_the_same_headers(experiment):
    client = Client()
    start(client, experiment)
    _, trial = current_trial(client, experiment)
    responses = [client.get(reverse("vtt:image", args=[name])) for name in (trial.colorization.image.real_file, trial.colorization.file)]
    headers = [{k: v for k, v in r.headers.items() if k != "Content-Length"} for r in responses]
    assert headers[0] == headers[1]
    assert "Last-Modified" not in headers[0] and "ETag" not in headers[0]
    assert all(r.status_code == 200 and r["Content-Type"] == "image/jpeg" for r in responses)


def test_a_prolific_participant_resumes_with_the_same_link(experiment):
    panel = {"PROLIFIC_PID": "p-123", "STUDY_ID": "s-1", "SESSION_ID": "x-1"}
    first = Client()
    start(first, experiment, **panel)
    _, trial = current_trial(first, experiment)
    second = Client()  # same link, another browser
    start(second, experiment, **panel)
    _, again = current_trial(second, experiment)
    assert trial == again and Rater.objects.get().external_id == "p-123"


def snapshot():
    return list(Trial.objects.order_by("id").values()), list(Rater.objects.order_by("id").values())


@pytest.mark.parametrize(
    "data, status",
    [
        ({"choice": "X"}, 400),
        ({"choice": ""}, 400),
        ({"choice": "L", "response_ms": "-5"}, 400),
        ({"choice": "L", "response_ms": "soon"}, 400),
        ({"choice": "L", "token": "0" * 32}, 404),
    ],
)
def test_a_tampered_answer_is_refused_and_writes_nothing(experiment, data, status):
    client = Client()
    start(client, experiment)
    _, trial = current_trial(client, experiment)
    before = snapshot()
    fields = {("trial" if k == "token" else k): v for k, v in data.items()}
    response = client.post(reverse("vtt:answer", args=[experiment.slug]), {"trial": trial.token, "response_ms": "850", **fields})
    assert response.status_code == status
    assert snapshot() == before


def test_an_answer_for_another_raters_trial_is_refused(experiment):
    alice, mallory = Client(), Client()
    start(alice, experiment)
    start(mallory, experiment)
    _, trial = current_trial(alice, experiment)
    current_trial(mallory, experiment)
    before = snapshot()
    assert answer(mallory, experiment, trial, "L").status_code == 404
    assert snapshot() == before


def test_a_repeated_answer_is_recorded_once_and_a_changed_one_refused(experiment):
    client = Client()
    start(client, experiment)
    _, trial = current_trial(client, experiment)
    assert answer(client, experiment, trial, "R").status_code == 302
    before = snapshot()
    assert answer(client, experiment, trial, "R").status_code == 302
    assert answer(client, experiment, trial, "L").status_code == 409
    assert snapshot() == before


def test_an_answer_without_csrf_token_is_refused(experiment):
    client = Client(enforce_csrf_checks=True)
    page = client.get(reverse("vtt:landing", args=[experiment.slug]))
    token = page.context["csrf_token"]
    client.post(reverse("vtt:start", args=[experiment.slug]), {"csrfmiddlewaretoken": str(token)})
    _, trial = current_trial(client, experiment)
    before = snapshot()
    assert answer(client, experiment, trial, "L").status_code == 403
    assert snapshot() == before


def test_a_closed_experiment_takes_no_rater_and_no_answer(experiment):
    client = Client()
    start(client, experiment)
    _, trial = current_trial(client, experiment)
    Experiment.objects.filter(pk=experiment.pk).update(state=Experiment.State.CLOSED)
    before = snapshot()
    assert answer(client, experiment, trial, "L").status_code == 403
    assert Client().post(reverse("vtt:start", args=[experiment.slug])).status_code == 403
    assert snapshot() == before


def test_an_answer_without_a_session_is_refused(experiment):
    trial_count = Trial.objects.count()
    response = Client().post(reverse("vtt:answer", args=[experiment.slug]), {"trial": "a" * 32, "choice": "L"})
    assert response.status_code == 403 and Trial.objects.count() == trial_count


def test_image_names_outside_the_pattern_are_refused(experiment):
    client = Client()
    assert client.get("/img/..%2F..%2Fvar%2Fsecret_key").status_code == 404  # no route takes a slash
    assert client.get("/img/secret_key").status_code == 400
    assert client.get(reverse("vtt:image", args=["f" * 32 + ".jpg"])).status_code == 404


def test_each_pair_gets_at_most_k_raters(experiment):
    Experiment.objects.filter(pk=experiment.pk).update(raters_per_pair=1, trials_per_rater=10)
    for _ in range(4):
        client = Client()
        start(client, experiment)
        while True:
            page = client.get(reverse("vtt:trial", args=[experiment.slug]))
            if page.status_code != 200:
                break
            answer(client, experiment, Trial.objects.get(token=page.context["trial"].token), "L")
    per_pair = [c.trials.count() for c in Colorization.objects.all()]
    assert per_pair == [1] * Colorization.objects.count()


def test_the_dashboard_is_for_staff_only(experiment, admin_client):
    assert Client().get(reverse("vtt:dashboard")).status_code == 302
    page = admin_client.get(reverse("vtt:dashboard"))
    assert page.status_code == 200 and "ground_truth" in page.content.decode()
