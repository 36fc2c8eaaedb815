"""A rater's whole session in a real browser: Debian's chromium driven by Playwright, headless."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections

from tests.conftest import colour_image
from vtt import services
from vtt.models import Experiment, Trial

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian's chromium is missing at {CHROMIUM}: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()
        # Queries made while Playwright's context is active get their own connection
        # (Django's connections are context-local); close it before the database goes.
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_rater_session_in_the_browser(browser, live_server, media_root, photo_dir, mean_chroma_checkpoint):
    for i in range(5, 9):
        colour_image(i).save(photo_dir / f"extra{i}.png")
    call_command("generate_pairs", "--experiment", "b", "--split", f"folder:{photo_dir}", "--size", "64",
                 "--checkpoint", f"mean_chroma={mean_chroma_checkpoint}", stdout=io.StringIO(), stderr=io.StringIO())
    Experiment.objects.filter(slug="b").update(
        completion_code="BRWS3R", trials_per_rater=6, practice_trials=2, catch_trial_rate=0.2
    )
    services.experiment_open(experiment=Experiment.objects.get(slug="b"))

    page = browser.new_page(viewport={"width": 1000, "height": 700})
    failed = []   # every request the server refused, the favicon included
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(f"{live_server.url}/e/b/")
    body = page.inner_text("body")
    assert "Which image has the true colors?" in body and "press ← or F" in body and "Tap" not in body
    page.click("button.start")

    # Two practice trials with feedback, then the six trials of trials_per_rater (five scored, one
    # catch), by click and by keys; the counter counts those six.
    actions = ["click-left", "key-ArrowRight", "click-right", "key-f", "key-j", "key-ArrowLeft", "click-left", "key-j"]
    shown = []  # (token, left src) of each trial as displayed
    for number, action in enumerate(actions):
        page.wait_for_selector("#pair[data-ready]")  # both images shown, the clock running
        label = page.inner_text(".progress")
        assert label == (f"Practice {number + 1} of 2" if number < 2 else f"{number - 1} of 6")
        token = page.input_value("input[name=trial]")
        shown.append((token, page.get_attribute("button.side >> nth=0 >> img", "src")))
        kind, what = action.split("-")
        if kind == "click":
            page.click(f"button.side >> nth={0 if what == 'left' else 1}")
        else:
            page.keyboard.press(what)
        if number < 2:  # practice answers get feedback
            page.wait_for_selector("#feedback:not([hidden])")
            assert page.inner_text("#feedback").startswith(("Correct", "Not this time"))
        if number + 1 < len(actions):
            page.wait_for_function("t => document.querySelector('input[name=trial]').value !== t", arg=token)
            if kind == "click":   # the mouse still rests on the side it clicked: no frame on the new pair
                page.wait_for_selector("#pair[data-ready]")
                assert frames(page) == ["none", "none"]
                page.mouse.move(*centre(page, 1))
                assert frames(page) == ["none", "white"]   # until it moves
    page.wait_for_selector(".code")
    assert page.inner_text(".code") == "BRWS3R"
    # Back on the study link: finished, with the code, nothing to continue.
    page.goto(f"{live_server.url}/e/b/")
    assert "You have finished this experiment" in page.inner_text("body") and page.inner_text(".code") == "BRWS3R"
    assert page.query_selector("button.start") is None
    assert failed == []

    trials = {t.token: t for t in Trial.objects.select_related("colorization__image")}
    assert [trials[token].choice for token, _ in shown] == ["L", "R", "R", "L", "R", "L", "L", "R"]
    assert {trials[token].kind for token, _ in shown} == {"practice", "scored", "catch"}
    assert all(t.response_ms is not None and t.response_ms < 60_000 for t in trials.values())
    # What the page showed on the left was the real image exactly when the server said so,
    # and the real image appeared on both sides across the session.
    left_is_real = [src.endswith(trials[token].colorization.image.real_file) for token, src in shown]
    assert left_is_real == [trials[token].real_side == "L" for token, _ in shown]
    assert any(left_is_real[2:]) and not all(left_is_real[2:])


def frames(page) -> list[str]:
    """The frame of each side: 'white' or 'none'."""
    colours = page.eval_on_selector_all("button.side", "els => els.map(e => getComputedStyle(e).borderTopColor)")
    return ["white" if c == "rgb(255, 255, 255)" else "none" for c in colours]


def centre(page, side: int) -> tuple[float, float]:
    box = page.locator("button.side").nth(side).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


@pytest.mark.django_db(transaction=True)
def test_on_a_phone_the_hint_speaks_of_taps_and_a_tap_leaves_no_frame(browser, live_server, media_root, photo_dir,
                                                                       mean_chroma_checkpoint):
    call_command("generate_pairs", "--experiment", "m", "--split", f"folder:{photo_dir}", "--size", "64",
                 "--checkpoint", f"mean_chroma={mean_chroma_checkpoint}", stdout=io.StringIO(), stderr=io.StringIO())
    Experiment.objects.filter(slug="m").update(trials_per_rater=3, practice_trials=0, catch_trial_rate=0)
    services.experiment_open(experiment=Experiment.objects.get(slug="m"))
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=3, is_mobile=True,
                                has_touch=True)
    page = phone.new_page()
    page.goto(f"{live_server.url}/e/m/")
    body = page.inner_text("body")
    assert "Tap the image with the true colors." in body and "←" not in body and "Click" not in body
    page.tap("button.start")
    for number in (1, 2):
        page.wait_for_selector("#pair[data-ready]")
        assert page.inner_text(".progress") == f"{number} of 3"
        assert page.is_visible(".hint-touch") and not page.is_visible(".hint-pointer")
        token = page.input_value("input[name=trial]")
        page.tap("button.side >> nth=0")
        page.wait_for_function("t => document.querySelector('input[name=trial]').value !== t", arg=token)
        page.wait_for_selector("#pair[data-ready]")
        assert frames(page) == ["none", "none"]
    phone.close()


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico", follow=True)
    assert response.status_code == 200 and response.redirect_chain[0][1] == 301
    assert b"<svg" in b"".join(response.streaming_content if response.streaming else [response.content])


@pytest.mark.django_db(transaction=True)
def test_the_pair_is_hidden_after_the_exposure_limit(browser, live_server, media_root, photo_dir, mean_chroma_checkpoint):
    call_command("generate_pairs", "--experiment", "x", "--split", f"folder:{photo_dir}", "--size", "64",
                 "--checkpoint", f"mean_chroma={mean_chroma_checkpoint}", stdout=io.StringIO(), stderr=io.StringIO())
    Experiment.objects.filter(slug="x").update(exposure_ms=300, trials_per_rater=2, practice_trials=0, catch_trial_rate=0)
    services.experiment_open(experiment=Experiment.objects.get(slug="x"))
    page = browser.new_page()
    page.goto(f"{live_server.url}/e/x/")
    page.click("button.start")
    page.wait_for_selector("#pair[data-ready]")
    page.wait_for_selector(".pair.hidden", timeout=5000)  # hidden after 300 ms
    page.keyboard.press("ArrowLeft")  # and still answerable
    page.wait_for_function("() => document.querySelector('#number').textContent === '2'")
    assert Trial.objects.filter(answered__isnull=False).count() == 1
