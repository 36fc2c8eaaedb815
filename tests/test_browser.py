"""A rater's session in a real browser: Debian's chromium driven by Playwright, headless."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections

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
def test_a_rater_answers_by_click_and_by_keys_and_gets_the_code(browser, live_server, media_root, photo_dir):
    call_command("generate_pairs", "--experiment", "b", "--split", f"folder:{photo_dir}", "--methods", "ground_truth,grayscale",
                 "--size", "64", "--trials-per-rater", "4", "--open", stdout=io.StringIO(), stderr=io.StringIO())
    Experiment.objects.filter(slug="b").update(completion_code="BRWS3R")
    page = browser.new_page()
    page.goto(f"{live_server.url}/e/b/")
    assert "Which image has the true colors?" in page.inner_text("body")
    page.click("button.start")
    for number, act in enumerate([lambda: page.click("button.side >> nth=0"), lambda: page.keyboard.press("ArrowRight"),
                                  lambda: page.keyboard.press("f"), lambda: page.keyboard.press("j")], start=1):
        page.wait_for_selector(".pair:not(.loading)")
        assert page.inner_text(".progress") == f"{number} of 4"
        with page.expect_navigation():  # the answer posts, then the next trial loads
            act()
    page.wait_for_selector(".code")
    assert page.inner_text(".code") == "BRWS3R"
    choices = list(Trial.objects.order_by("position").values_list("choice", flat=True))
    assert choices == ["L", "R", "L", "R"]
    assert all(ms is not None and ms < 60_000 for ms in Trial.objects.values_list("response_ms", flat=True))
