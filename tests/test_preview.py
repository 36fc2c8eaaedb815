"""Preview: staff and holders of a signed link go through the rater's pages; nothing is recorded, no place taken."""
from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.test_rater_flow import make_experiment
from vtt import preview
from vtt.models import Experiment, Trial

pytestmark = pytest.mark.django_db
JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture
def draft(media_root, photo_dir, mean_chroma_checkpoint) -> Experiment:
    """The rater-flow experiment (1 practice, then 3 scored and 1 catch trial) on Prolific, back to a draft's life:
    closed here is as good as draft, since a preview ignores the state."""
    experiment = make_experiment(photo_dir, mean_chroma_checkpoint, panel=Experiment.Panel.PROLIFIC,
                                 screened_out_code="SCREEN1")
    Experiment.objects.filter(pk=experiment.pk).update(state=Experiment.State.DRAFT)
    experiment.refresh_from_db()
    return experiment


def database() -> str:
    """Every row the project keeps (vtt, auth, sessions, admin), as JSON: what a preview must leave as it is."""
    out = io.StringIO()
    call_command("dumpdata", "vtt", "auth", "sessions", "admin", stdout=out)
    return out.getvalue()


def state_of(page) -> dict:
    match = re.search(r'<script id="vtt-state" type="application/json">(.*?)</script>', page.content.decode(), re.S)
    return json.loads(match.group(1))


def run_preview(client: Client, slug: str, choose) -> tuple[list[dict], list]:
    """Start a preview and answer every trial with ``choose(trial, n)``; the JSON bodies and image headers."""
    started = client.post(reverse("vtt:preview_start", args=[slug]))
    assert started["Location"] == reverse("vtt:preview_trial", args=[slug])
    page = client.get(started["Location"])
    assert page.status_code == 200 and "nothing is recorded" in page.content.decode()
    current, bodies, headers = state_of(page)["current"], [], []
    while current is not None:
        for side in ("left", "right"):
            image = client.get(current[side])
            assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"
            headers.append(sorted((k, v) for k, v in image.headers.items() if k != "Content-Length"))
        response = client.post(reverse("vtt:preview_answer", args=[slug]),
                               {"trial": current["token"], "choice": choose(current, len(bodies))}, **JSON)
        assert response.status_code == 200, response.content
        bodies.append(response.json())
        assert bodies[-1]["recorded"] is False
        current = bodies[-1]["current"]
    return bodies, headers


def test_staff_preview_a_draft_page_for_page_and_the_database_does_not_change(draft, admin_client):
    before = database()
    landing = admin_client.get(reverse("vtt:preview", args=[draft.slug]))
    text = landing.content.decode()
    assert landing.status_code == 200 and "Which image has the true colors?" in text and "I agree, start" in text
    assert "nothing is recorded" in text and reverse("vtt:preview_start", args=[draft.slug]) in text
    bodies, headers = run_preview(admin_client, draft.slug, lambda trial, n: "L")
    assert len(bodies) == 5  # 1 practice, 4 trials: the rater's session
    assert bodies[0]["feedback"] is not None and all(b["feedback"] is None for b in bodies[1:])
    assert all(h == headers[0] for h in headers)  # the two sides of every pair: the same headers
    done = admin_client.get(bodies[-1]["done_url"]).content.decode()
    assert "the outcome <strong>completed" in done or "the outcome <strong>completed_flagged" in done
    assert "https://app.prolific.com/submissions/complete?cc=" in done  # where a participant would go, not sent
    assert database() == before


def test_a_preview_shows_no_image_of_a_trial_that_is_not_current_or_next(draft, admin_client):
    admin_client.post(reverse("vtt:preview_start", args=[draft.slug]))
    state = state_of(admin_client.get(reverse("vtt:preview_trial", args=[draft.slug])))
    first = state["current"]
    admin_client.post(reverse("vtt:preview_answer", args=[draft.slug]), {"trial": first["token"], "choice": "L"},
                      **JSON)
    assert admin_client.get(first["left"]).status_code == 404  # answered: gone
    assert admin_client.get(reverse("vtt:preview_image", args=[draft.slug, "0" * 32 + ".jpg"])).status_code == 404
    # Another browser (another preview session) cannot fetch them either.
    assert Client().get(state["next"]["left"]).status_code == 403


def test_the_catch_rule_screens_out_in_a_preview_and_it_says_where_the_participant_would_go(draft, admin_client):
    Experiment.objects.filter(pk=draft.pk).update(catch_fail_action="screen_out")
    before = database()

    def wrong_on_catch(trial, n):
        state = admin_client.session[f"{preview.STATE_KEY}{draft.pk}"]
        side = preview._side(state, n)
        return ("R" if side == "L" else "L") if state["trials"][n][0] == Trial.Kind.CATCH else side

    bodies, _ = run_preview(admin_client, draft.slug, wrong_on_catch)
    state = admin_client.session[f"{preview.STATE_KEY}{draft.pk}"]
    assert len(bodies) == [kind for kind, _, _ in state["trials"]].index(Trial.Kind.CATCH) + 1  # ended there
    assert state["outcome"] == "screened_out"
    done = admin_client.get(bodies[-1]["done_url"]).content.decode()
    assert "screened_out" in done and "https://app.prolific.com/submissions/complete?cc=SCREEN1" in done
    assert database() == before


def test_an_image_request_sent_before_an_answer_cannot_undo_it(draft, settings):
    """The preview's state is the signed session cookie. A request that changes nothing must not send it back:
    an image request made with the cookie from before an answer, and answered after it, would put the state
    from before the answer back, and the next answer would be refused ("no such trial in this session")."""
    key = preview.preview_key(draft, hours=1)
    client = Client()
    client.get(reverse("vtt:preview", args=[draft.slug]), {"key": key})
    started = client.post(reverse("vtt:preview_start", args=[draft.slug]))
    current = state_of(client.get(started["Location"]))["current"]
    before_answer = client.cookies[settings.SESSION_COOKIE_NAME].value
    answered = client.post(reverse("vtt:preview_answer", args=[draft.slug]),
                           {"trial": current["token"], "choice": "L"}, **JSON)
    assert answered.status_code == 200
    after_answer = client.cookies[settings.SESSION_COOKIE_NAME].value
    client.cookies[settings.SESSION_COOKIE_NAME] = before_answer      # the image request sent before the answer
    late = client.get(current["right"])
    assert late.status_code == 200
    assert settings.SESSION_COOKIE_NAME not in late.cookies              # it leaves the cookie alone
    client.cookies[settings.SESSION_COOKIE_NAME] = after_answer         # what the browser then holds
    following = answered.json()["current"]
    assert client.post(reverse("vtt:preview_answer", args=[draft.slug]),
                       {"trial": following["token"], "choice": "L"}, **JSON).status_code == 200


def test_a_signed_link_lets_anyone_preview_until_it_expires(draft):
    key = preview.preview_key(draft, hours=1)
    before = database()
    client = Client()
    landing = client.get(reverse("vtt:preview", args=[draft.slug]), {"key": key})
    assert landing.status_code == 200
    bodies, _ = run_preview(client, draft.slug, lambda trial, n: "R")
    assert bodies[-1]["current"] is None
    # Declining in a preview: the decline page, and where a participant would go; nothing written.
    declined = client.post(reverse("vtt:preview_decline", args=[draft.slug])).content.decode()
    assert "You chose not to take part" in declined and "Nothing was recorded" in declined
    assert database() == before


@pytest.mark.parametrize("make_key, message", [
    (lambda e: preview.preview_key(e, hours=1)[:-3] + "xyz", "not valid"),
    (lambda e: preview.preview_key(e, hours=1, now=timezone.now() - timedelta(hours=2)), "expired on"),
    (lambda e: preview.preview_key(Experiment.objects.create(slug="other", title="o"), hours=1), "another experiment"),
    (lambda e: "", "for staff, or for holders of a preview link"),
])
def test_forged_expired_or_foreign_links_are_refused_and_nothing_is_written(draft, make_key, message):
    key = make_key(draft)
    before = database()
    client = Client()
    refused = client.get(reverse("vtt:preview", args=[draft.slug]), {"key": key} if key else {})
    assert refused.status_code == 403 and message in refused.content.decode()
    for name in ("preview_start", "preview_answer", "preview_decline"):
        assert client.post(reverse(f"vtt:{name}", args=[draft.slug])).status_code == 403
    assert client.get(reverse("vtt:preview_trial", args=[draft.slug])).status_code == 403
    assert database() == before


def test_a_link_lasts_a_bounded_time():
    with pytest.raises(ValueError, match="at most"):
        preview.preview_key(Experiment(pk=1, slug="x"), hours=preview.MAX_HOURS + 1)
    with pytest.raises(ValueError):
        preview.preview_key(Experiment(pk=1, slug="x"), hours=0)


def test_the_staff_page_and_the_command_give_a_working_preview_link(draft, admin_client):
    page = admin_client.get(reverse("vtt:experiment", args=[draft.slug])).content.decode()
    link = re.search(r'<code class="preview-link">http://testserver(/e/e/preview/\?key=[^<]+)</code>', page)
    assert link and "outcomes (each with its own code)" in page
    assert Client().get(link.group(1).replace("&amp;", "&")).status_code == 200
    out, err = io.StringIO(), io.StringIO()
    call_command("experiment", "preview-link", "e", "--hours", "2", "--base-url", "https://vtt.example.org/",
                 stdout=out, stderr=err)
    printed = out.getvalue().strip()
    assert printed.startswith("https://vtt.example.org/e/e/preview/?key=") and "valid until" in err.getvalue()
    assert Client().get(printed.removeprefix("https://vtt.example.org")).status_code == 200
    with pytest.raises(CommandError, match="at most"):
        call_command("experiment", "preview-link", "e", "--hours", "100000")


def test_a_staircase_preview_shows_each_trial_for_the_exposure_a_rater_would_get(draft, admin_client):
    Experiment.objects.filter(pk=draft.pk).update(timing="staircase", exposure_ms=None)
    admin_client.post(reverse("vtt:preview_start", args=[draft.slug]))
    state = state_of(admin_client.get(reverse("vtt:preview_trial", args=[draft.slug])))
    exposures = []
    current = state["current"]
    while current is not None:
        exposures.append(current["exposure_ms"])
        body = admin_client.post(reverse("vtt:preview_answer", args=[draft.slug]),
                                 {"trial": current["token"], "choice": "L"}, **JSON).json()
        current = body["current"]
    assert len(exposures) == 5 and all(100 <= ms <= 1000 for ms in exposures)
