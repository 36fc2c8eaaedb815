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
        completion_code="BRWS3R", trials_per_rater=5, practice_trials=2, catch_trial_rate=0.2
    )
    services.experiment_open(experiment=Experiment.objects.get(slug="b"))

    page = browser.new_page(viewport={"width": 1000, "height": 700})
    page.goto(f"{live_server.url}/e/b/")
    assert "Which image has the true colors?" in page.inner_text("body")
    page.click("button.start")

    # Two practice trials with feedback, then six trials (five scored, one catch), by click and by keys.
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
    page.wait_for_selector(".code")
    assert page.inner_text(".code") == "BRWS3R"

    trials = {t.token: t for t in Trial.objects.select_related("colorization__image")}
    assert [trials[token].choice for token, _ in shown] == ["L", "R", "R", "L", "R", "L", "L", "R"]
    assert {trials[token].kind for token, _ in shown} == {"practice", "scored", "catch"}
    assert all(t.response_ms is not None and t.response_ms < 60_000 for t in trials.values())
    # What the page showed on the left was the real image exactly when the server said so,
    # and the real image appeared on both sides across the session.
    left_is_real = [src.endswith(trials[token].colorization.image.real_file) for token, src in shown]
    assert left_is_real == [trials[token].real_side == "L" for token, _ in shown]
    assert any(left_is_real[2:]) and not all(left_is_real[2:])


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
