"""What raters see, over HTTP: image URLs that never repeat, pairs that are never two identical
images, practice from the tested methods, consent that can be declined, viewing conditions
recorded (and refused or clipped when absurd), phones excluded on request, staircase exposure."""
from __future__ import annotations

import importlib
import io
import json
from collections import Counter

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from evaluation import staircase
from tests.conftest import colour_image, import_tinted
from tests.test_rater_flow import JSON, make_experiment, page_state, post_answer, snapshot, start
from vtt import services
from vtt.models import Colorization, Experiment, Method, Rater, Slot, Trial

pytestmark = pytest.mark.django_db
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.0 Mobile/15E148 Safari/604.1")


@pytest.fixture
def experiment(media_root, photo_dir, mean_chroma_checkpoint) -> Experiment:
    """8 images x (mean_chroma, tinted rated; grayscale for catch); 2 practice, 6 trials (2 catch), K = 2."""
    return make_experiment(photo_dir, mean_chroma_checkpoint, images=8, practice_trials=2, trials_per_rater=6,
                           catch_trial_rate=0.34, raters_per_pair=2)


def current(client: Client, experiment: Experiment) -> dict | None:
    """The rater's current trial as the page has it; None once the session is over."""
    response = client.get(reverse("vtt:trial", args=[experiment.slug]))
    if response.status_code == 302 and response["Location"].endswith("/done/"):
        return None
    return page_state(client, experiment)["current"]


def run_collecting(client: Client, experiment: Experiment) -> list[tuple[str, list[str]]]:
    """Answer a whole session; for each trial, its token and the image URLs the page was given."""
    state = page_state(client, experiment)
    seen, current = [], state["current"]
    while current is not None:
        seen.append((current["token"], [current["left"], current["right"]]))
        for url in (current["left"], current["right"]):
            assert client.get(url).status_code == 200  # its own rater may fetch it while it is pending
        body = post_answer(client, experiment, current["token"], "L").json()
        current = body["current"]
    return seen


def test_no_image_url_appears_twice_in_a_whole_experiment(experiment):
    """Raters until every pair has its K answers: every (trial, side) URL is new, in practice,
    catch and scored trials alike, although each real image appears in many trials."""
    urls, tokens = [], []
    for _ in range(60):  # about 10 raters fill the places; the last ones may find only a few left
        client = Client()
        start(client, experiment)
        for token, pair in run_collecting(client, experiment):
            tokens.append(token)
            urls.extend(pair)
        if not Slot.objects.filter(filled=False).exists():
            break
    assert not Slot.objects.filter(filled=False).exists(), "the experiment did not complete"
    kinds = Counter(Trial.objects.filter(token__in=tokens).values_list("kind", flat=True))
    assert set(kinds) == {"practice", "scored", "catch"}
    assert len(urls) == 2 * len(tokens) == 2 * Trial.objects.count()
    duplicates = [url for url, n in Counter(urls).items() if n > 1]
    assert duplicates == []
    # The same real image was shown in several trials: only its URL changed.
    reals = Counter(Trial.objects.values_list("colorization__image_id", flat=True))
    assert max(reals.values()) > 1


def test_both_sides_are_served_with_identical_headers_and_no_validators(experiment):
    client = Client()
    start(client, experiment)
    current = page_state(client, experiment)["current"]
    left, right = client.get(current["left"]), client.get(current["right"])
    for response in (left, right):
        assert response.status_code == 200
        assert "ETag" not in response and "Last-Modified" not in response and "Content-Disposition" not in response
    assert {k: v for k, v in left.items() if k != "Content-Length"} == \
        {k: v for k, v in right.items() if k != "Content-Length"}


def test_an_image_url_of_another_rater_an_answered_trial_or_no_trial_is_a_404_and_writes_nothing(experiment):
    alice, bob = Client(), Client()
    start(alice, experiment)
    start(bob, experiment)
    current = page_state(alice, experiment)["current"]
    before = snapshot()
    assert bob.get(current["left"]).status_code == 404        # another rater's trial
    assert Client().get(current["right"]).status_code == 404  # no session at all
    name = current["left"].rsplit("/", 1)[1]
    assert bob.get(reverse("vtt:image", args=["0" * 32 + ".jpg"])).status_code == 404  # no trial
    assert snapshot() == before
    assert alice.get(current["left"]).status_code == 200
    post_answer(alice, experiment, current["token"], "R")
    before = snapshot()
    assert alice.get(reverse("vtt:image", args=[name])).status_code == 404  # answered: gone
    assert snapshot() == before


def test_practice_comes_from_the_tested_methods_only(media_root, photo_dir, mean_chroma_checkpoint):
    experiment = make_experiment(photo_dir, mean_chroma_checkpoint, images=8, practice_trials=5,
                                 trials_per_rater=2, catch_trial_rate=0.0)
    Method.objects.filter(experiment=experiment, name="tinted").update(role=Method.Role.CALIBRATION)
    for _ in range(4):
        client = Client()
        start(client, experiment)
        while (trial := current(client, experiment)) is not None:
            post_answer(client, experiment, trial["token"], "L")
    roles = Counter(Trial.objects.filter(kind="practice").values_list("colorization__method__role", flat=True))
    assert roles == {"tested": 20}


def identical_method(experiment: Experiment, photo_dir) -> None:
    """Add the ground_truth control to ``experiment``: its files are the real images, byte for byte."""
    call_command("generate_pairs", "--experiment", experiment.slug, "--split", f"folder:{photo_dir}", "--methods",
                 "ground_truth", "--size", str(experiment.image_size), stdout=io.StringIO(), stderr=io.StringIO())


def test_a_method_of_identical_pairs_cannot_be_opened(media_root, photo_dir, mean_chroma_checkpoint):
    call_command("generate_pairs", "--experiment", "g", "--split", f"folder:{photo_dir}", "--size", "64",
                 "--methods", "ground_truth,grayscale,mean_chroma", "--checkpoint", f"mean_chroma={mean_chroma_checkpoint}",
                 stdout=io.StringIO(), stderr=io.StringIO())
    experiment = Experiment.objects.get(slug="g")
    assert all(c.sha256 == c.image.real_sha256 for c in Colorization.objects.filter(method__name="ground_truth"))
    with pytest.raises(services.TrialRejected, match=r"'ground_truth' \(5 images\) would show pairs of two identical"):
        services.experiment_open(experiment=experiment)
    assert Experiment.objects.get(slug="g").state == "draft" and not Slot.objects.exists()


def test_the_engine_never_hands_out_two_identical_images(media_root, photo_dir, mean_chroma_checkpoint):
    """Even with places made for them (an experiment opened before the rule), identical pairs
    are never handed out, in practice or scored trials; catch trials still come. The pick never
    reads the hashes: migration 0008 removed such places, and `slots_sync` never makes one."""
    experiment = make_experiment(photo_dir, mean_chroma_checkpoint, images=8, practice_trials=3,
                                 trials_per_rater=5, catch_trial_rate=0.2, raters_per_pair=3)
    identical_method(experiment, photo_dir)
    Method.objects.filter(experiment=experiment, name="ground_truth").update(role=Method.Role.TESTED)
    identical = Colorization.objects.filter(method__name="ground_truth")
    Slot.objects.bulk_create(Slot(experiment=experiment, colorization=c, method_id=c.method_id, image_id=c.image_id,
                                  index=i, order=0) for c in identical for i in range(3))
    importlib.import_module("vtt.migrations.0008_slot_pick").no_places_for_identical_pairs(django_apps, None)
    assert not Slot.objects.filter(colorization__in=identical).exists()
    assert services.slots_sync(experiment=experiment) == 0
    for _ in range(6):
        client = Client()
        start(client, experiment)
        while (trial := current(client, experiment)) is not None:
            post_answer(client, experiment, trial["token"], "R")
    shown = Trial.objects.select_related("colorization__image")
    assert shown.filter(kind="catch").exists() and shown.filter(kind="practice").exists()
    assert not shown.filter(colorization__method__name="ground_truth").exists()
    assert all(t.colorization.sha256 != t.colorization.image.real_sha256 for t in shown)


# --- consent ----------------------------------------------------------------------------


def test_declining_consent_ends_the_session_before_any_trial_and_takes_no_place(experiment):
    client = Client()
    before_slots = list(Slot.objects.order_by("id").values())
    response = client.post(reverse("vtt:decline", args=[experiment.slug]))
    assert response.status_code == 200 and "You chose not to take part" in response.content.decode()
    rater = Rater.objects.get()
    assert rater.declined is not None and rater.plan == [] and not rater.trials.exists()
    assert list(Slot.objects.order_by("id").values()) == before_slots
    # The same browser: the landing page remembers, no trial is ever served, nothing is written.
    before = snapshot()
    assert "You chose not to take part" in client.get(reverse("vtt:landing", args=[experiment.slug])).content.decode()
    assert client.get(reverse("vtt:trial", args=[experiment.slug])).status_code == 403
    assert client.post(reverse("vtt:answer", args=[experiment.slug]), {"trial": "a" * 32, "choice": "L"},
                       **JSON).status_code == 403
    assert snapshot() == before
    summary = Rater.objects.filter(declined__isnull=False).count()
    assert summary == 1


def test_a_prolific_participant_who_declines_goes_back_with_the_no_consent_code(experiment):
    Experiment.objects.filter(pk=experiment.pk).update(panel="prolific", no_consent_code="NOCONSENT1")
    client = Client()
    params = {"PROLIFIC_PID": "p-decline", "STUDY_ID": "s", "SESSION_ID": "x"}
    landing = client.get(reverse("vtt:landing", args=[experiment.slug]), params).content.decode()
    assert "I do not agree" in landing and 'name="PROLIFIC_PID" value="p-decline"' in landing
    response = client.post(reverse("vtt:decline", args=[experiment.slug]), params)
    assert response.status_code == 302
    assert response["Location"] == "https://app.prolific.com/submissions/complete?cc=NOCONSENT1"
    rater = Rater.objects.get(external_id="p-decline")
    assert rater.declined is not None and not rater.trials.exists()
    # The same participant, from another browser: no session can start.
    other = Client()
    before = snapshot()
    assert other.post(reverse("vtt:start", args=[experiment.slug]), params).status_code == 403
    assert snapshot() == before


def test_a_rater_who_has_started_cannot_decline_afterwards(experiment):
    client = Client()
    start(client, experiment)
    page_state(client, experiment)
    before = snapshot()
    assert client.post(reverse("vtt:decline", args=[experiment.slug]), **JSON).status_code == 409
    assert snapshot() == before


# --- viewing conditions and the display ---------------------------------------------------


def test_viewing_conditions_are_recorded_per_rater_and_per_trial(experiment):
    client = Client(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Chrome/120")
    viewing = {"screen_width": 1920, "screen_height": 1080, "window_width": 1280, "window_height": 800,
               "device_pixel_ratio": 2, "color_gamut": "p3", "pointer": "fine", "touch_points": 0, "extra": "dropped"}
    client.post(reverse("vtt:start", args=[experiment.slug]), {"viewing": json.dumps(viewing)})
    rater = Rater.objects.get()
    assert rater.viewing == {k: v for k, v in viewing.items() if k != "extra"}
    assert rater.user_agent.endswith("Chrome/120")
    state = page_state(client, experiment)
    assert state["size"] == 64 and state["fullscreen"] is False and state["masks"] is False
    token = state["current"]["token"]
    post_answer(client, experiment, token, "L", display_px="64", focus_lost="1", fullscreen="0")
    trial = Trial.objects.get(token=token)
    assert (trial.display_px, trial.focus_lost, trial.fullscreen) == (64, True, False)


@pytest.mark.parametrize("field, value", [
    ("display_px", "-5"), ("display_px", "1e9"), ("display_px", "wide"), ("focus_lost", "maybe"),
    ("fullscreen", "x" * 5000),
])
def test_a_malformed_or_absurd_trial_report_is_dropped_and_the_answer_still_counts(experiment, field, value):
    client = Client()
    start(client, experiment)
    token = page_state(client, experiment)["current"]["token"]
    response = post_answer(client, experiment, token, "R", **{field: value})
    assert response.status_code == 200 and response.json()["recorded"]
    trial = Trial.objects.get(token=token)
    assert trial.choice == "R" and getattr(trial, field) is None


@pytest.mark.parametrize("viewing", [
    "not json", json.dumps({"screen_width": -1, "window_height": 0, "device_pixel_ratio": 1e6,
                            "color_gamut": "<script>", "touch_points": True, "pointer": 3}),
    json.dumps({"screen_width": 1280, "pad": "x" * 3000}),  # over the size a report can have
    "[1, 2, 3]",
])
def test_a_malformed_or_absurd_viewing_report_records_nothing_and_the_rater_still_starts(experiment, viewing):
    client = Client()
    response = client.post(reverse("vtt:start", args=[experiment.slug]), {"viewing": viewing})
    assert response.status_code == 302
    assert Rater.objects.get().viewing == {}
    assert page_state(client, experiment)["current"] is not None


def test_a_megabyte_viewing_report_is_refused_or_dropped_without_a_rater_half_made(experiment):
    client = Client()
    response = client.post(reverse("vtt:start", args=[experiment.slug]), {"viewing": "x" * 3_000_000})
    assert response.status_code in (302, 400)
    assert all(r.viewing == {} for r in Rater.objects.all())


def test_an_experiment_can_exclude_phones_and_tablets(experiment):
    Experiment.objects.filter(pk=experiment.pk).update(allow_mobile=False)
    before = snapshot()
    phone = Client(HTTP_USER_AGENT=IPHONE)
    response = phone.post(reverse("vtt:start", args=[experiment.slug]))
    assert response.status_code == 403 and "desktop or laptop" in response.content.decode()
    coarse = Client(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64)")
    response = coarse.post(reverse("vtt:start", args=[experiment.slug]), {"viewing": json.dumps({"pointer": "coarse"})})
    assert response.status_code == 403
    assert snapshot() == before
    desk = Client(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64)")
    assert desk.post(reverse("vtt:start", args=[experiment.slug]),
                     {"viewing": json.dumps({"pointer": "fine"})}).status_code == 302


def test_the_display_size_defaults_to_the_files_own_and_can_be_set(experiment):
    client = Client()
    start(client, experiment)
    page = client.get(reverse("vtt:trial", args=[experiment.slug])).content.decode()
    assert 'style="--size: 64px"' in page and 'width="64" height="64"' in page
    Experiment.objects.filter(pk=experiment.pk).update(display_size=256)
    page = client.get(reverse("vtt:trial", args=[experiment.slug])).content.decode()
    assert 'style="--size: 256px"' in page and page_state(client, experiment)["size"] == 256


# --- exposure -----------------------------------------------------------------------------


def answer_all(client: Client, experiment: Experiment, correct) -> list[Trial]:
    """Answer every trial, rightly when ``correct(trial)``; returns the trials in order."""
    while (shown := current(client, experiment)) is not None:
        trial = Trial.objects.get(token=shown["token"])
        assert shown["exposure_ms"] == trial.exposure_ms  # the page shows what is recorded
        right = trial.real_side if correct(trial) else ("L" if trial.real_side == "R" else "R")
        post_answer(client, experiment, trial.token, right)
    return list(Trial.objects.filter(rater__in=Rater.objects.all()).order_by("rater", "position"))


def test_a_fixed_exposure_is_recorded_on_every_trial(experiment):
    Experiment.objects.filter(pk=experiment.pk).update(exposure_ms=1000)
    client = Client()
    start(client, experiment)
    trials = answer_all(client, experiment, lambda t: True)
    assert {t.exposure_ms for t in trials} == {1000}


def test_the_staircase_moves_each_methods_exposure_with_the_raters_answers(media_root, photo_dir,
                                                                         mean_chroma_checkpoint):
    for i in range(5, 16):
        colour_image(i).save(photo_dir / f"extra{i}.png")
    experiment = make_experiment(photo_dir, mean_chroma_checkpoint, images=16, practice_trials=2,
                                 trials_per_rater=14, catch_trial_rate=0.15, timing="staircase")
    client = Client()
    start(client, experiment)
    # Right on mean_chroma, wrong on every third tinted trial.
    tinted_seen = Counter()

    def correct(trial: Trial) -> bool:
        if trial.kind != "scored" or trial.colorization.method.name != "tinted":
            return True
        tinted_seen["n"] += 1
        return tinted_seen["n"] % 3 != 0

    trials = answer_all(client, experiment, correct)
    assert {t.exposure_ms for t in trials if t.kind != "scored"} == {staircase.START_MS}
    for method in ("mean_chroma", "tinted"):
        mine = [t for t in trials if t.kind == "scored" and t.colorization.method.name == method]
        answers = [t.choice == t.real_side for t in mine]
        assert [t.exposure_ms for t in mine] == [staircase.next_exposure(answers[:i]) for i in range(len(mine))]
    mean_chroma = [t.exposure_ms for t in trials if t.kind == "scored" and t.colorization.method.name == "mean_chroma"]
    assert len(mean_chroma) >= 4 and mean_chroma[3] == staircase.START_MS - staircase.STEP_MS  # moved down


def test_the_staircase_rule():
    assert staircase.next_exposure([]) == 500
    assert staircase.next_exposure([True] * 3) == 450
    assert staircase.next_exposure([True, True, False]) == 550
    assert staircase.next_exposure([True] * 300) == staircase.FLOOR_MS
    assert staircase.next_exposure([False] * 300) == staircase.CEILING_MS
    assert staircase.next_exposure([True, True, False, True, True, True]) == 500


def test_tinted_is_a_real_second_method(experiment):
    """The helper method of these tests makes pairs that differ from the real image."""
    tinted = Colorization.objects.filter(method__name="tinted")
    assert tinted.count() == 8 and all(c.sha256 != c.image.real_sha256 for c in tinted)


def test_import_tinted_is_idempotent(experiment, photo_dir):
    import_tinted(experiment.slug, photo_dir, photo_dir.parent / "tinted")
    assert Colorization.objects.filter(method__name="tinted").count() == 8


def test_what_raters_see_is_set_by_experiment_configure_after_generate_pairs(media_root, photo_dir):
    call_command("generate_pairs", "--experiment", "v", "--split", f"folder:{photo_dir}", "--methods", "grayscale",
                 "--size", "64", stdout=io.StringIO(), stderr=io.StringIO())
    e = Experiment.objects.get(slug="v")
    # A new experiment is a draft with the model's defaults, its title the slug and a random completion code.
    assert (e.state, e.title, e.display_size, e.shown_size, e.timing, e.allow_mobile, e.require_fullscreen) == \
        ("draft", "v", None, 64, "fixed", True, False)
    assert e.completion_code.startswith("C") and len(e.completion_code) == 9
    call_command("experiment", "configure", "v", "--display-size", "300", "--timing", "staircase",
                 "--allow-mobile", "no", "--require-fullscreen", "yes", "--no-consent-code", "NC-1",
                 stdout=io.StringIO(), stderr=io.StringIO())
    e.refresh_from_db()
    assert (e.display_size, e.shown_size, e.timing, e.exposure_ms, e.allow_mobile, e.require_fullscreen,
            e.no_consent_code, e.image_size) == (300, 300, "staircase", None, False, True, "NC-1", 64)


@pytest.mark.parametrize("args, message", [
    (["--display-size", "10"], "--display-size: Ensure this value is greater than or equal to 32"),
    (["--display-size", "4096"], "--display-size: Ensure this value is less than or equal to 2048"),
    (["--timing", "slow"], "--timing: Value 'slow' is not a valid choice"),
])
def test_experiment_configure_refuses_bad_display_settings_before_writing(media_root, photo_dir, args, message):
    from django.core.management import CommandError

    call_command("generate_pairs", "--experiment", "v", "--split", f"folder:{photo_dir}", "--methods", "grayscale",
                 "--size", "64", stdout=io.StringIO(), stderr=io.StringIO())
    before = Experiment.objects.values().get(slug="v")
    with pytest.raises(CommandError, match=message):
        call_command("experiment", "configure", "v", "--allow-mobile", "no", *args, stdout=io.StringIO(),
                     stderr=io.StringIO())
    assert Experiment.objects.values().get(slug="v") == before
