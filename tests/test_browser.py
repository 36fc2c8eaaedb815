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
from vtt.models import Experiment, Rater, Trial

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
    received = {}  # image URL path -> the bytes the browser got
    page.on("response", lambda r: received.setdefault(r.url.split(live_server.url)[-1], r.body())
            if "/img/" in r.url and r.ok else None)
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
    # and the real image appeared on both sides across the session; each image URL was the
    # trial's own.
    pairs = media_root / "pairs"
    assert [src for _, src in shown] == [f"/img/{trials[token].left_image}.jpg" for token, _ in shown]
    left_is_real = [received[src] == (pairs / trials[token].colorization.image.real_file).read_bytes()
                    for token, src in shown]
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


def open_experiment(slug: str, photo_dir, checkpoint, **fields) -> Experiment:
    """The photos at 64 px, mean_chroma rated, grayscale for catch trials; ``fields`` set on the experiment."""
    call_command("generate_pairs", "--experiment", slug, "--split", f"folder:{photo_dir}", "--size", "64",
                 "--checkpoint", f"mean_chroma={checkpoint}", stdout=io.StringIO(), stderr=io.StringIO())
    Experiment.objects.filter(slug=slug).update(**{"practice_trials": 0, "catch_trial_rate": 0, **fields})
    services.experiment_open(experiment=Experiment.objects.get(slug=slug))
    return Experiment.objects.get(slug=slug)


def image_sizes(page) -> list[tuple[float, float]]:
    return [(box["width"], box["height"]) for box in
            (page.locator("button.side img").nth(i).bounding_box() for i in (0, 1))]


@pytest.mark.django_db(transaction=True)
def test_the_pair_is_shown_at_the_configured_size_or_not_at_all(browser, live_server, media_root, photo_dir,
                                                                mean_chroma_checkpoint):
    """1280x800: both images exactly 256 CSS px, side by side. A 390x844 phone cannot fit two of
    them: it is asked to rotate and shown no trial until it does; turned sideways, the pair
    appears at 256 px. Every trial records the size it was displayed at."""
    open_experiment("d", photo_dir, mean_chroma_checkpoint, display_size=256, trials_per_rater=3)
    desktop = browser.new_page(viewport={"width": 1280, "height": 800})
    desktop.goto(f"{live_server.url}/e/d/")
    desktop.click("button.start")
    desktop.wait_for_selector("#pair[data-ready]")
    assert image_sizes(desktop) == [(256, 256), (256, 256)]
    left, right = (desktop.locator("button.side img").nth(i).bounding_box() for i in (0, 1))
    assert left["y"] == right["y"] and right["x"] > left["x"] + 256   # side by side
    assert desktop.is_hidden("#fit")
    desktop.keyboard.press("f")
    desktop.wait_for_function("() => document.querySelector('#number').textContent === '2'")
    assert Trial.objects.get(position=1).display_px == 256
    desktop.close()

    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=3, is_mobile=True,
                                has_touch=True)
    page = phone.new_page()
    page.goto(f"{live_server.url}/e/d/")
    page.tap("button.start")
    page.wait_for_selector("#fit:not([hidden])")
    assert "turn your device sideways" in page.inner_text("#fit")
    assert page.is_hidden("#pair") and page.get_attribute("#pair", "data-ready") is None
    page.wait_for_timeout(300)
    assert page.get_attribute("#pair", "data-ready") is None  # still no trial
    page.set_viewport_size({"width": 844, "height": 390})  # turned sideways
    page.wait_for_selector("#pair[data-ready]")
    assert page.is_hidden("#fit") and image_sizes(page) == [(256, 256), (256, 256)]
    token = page.input_value("input[name=trial]")
    page.tap("button.side >> nth=1")
    page.wait_for_function("t => document.querySelector('input[name=trial]').value !== t", arg=token)
    phone_rater = Trial.objects.get(token=token).rater
    assert Trial.objects.get(token=token).display_px == 256
    assert phone_rater.viewing["device_pixel_ratio"] == 3 and phone_rater.viewing["window_width"] == 390
    assert phone_rater.viewing["touch_points"] > 0 and phone_rater.viewing["color_gamut"] in {"srgb", "p3", "rec2020"}
    phone.close()


@pytest.mark.django_db(transaction=True)
def test_looking_away_during_a_trial_is_recorded(browser, live_server, media_root, photo_dir, mean_chroma_checkpoint):
    """A trial during which the window lost focus is recorded as looked away; one without, not."""
    open_experiment("a", photo_dir, mean_chroma_checkpoint, trials_per_rater=3)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{live_server.url}/e/a/")
    page.click("button.start")
    page.wait_for_selector("#pair[data-ready]")
    first = page.input_value("input[name=trial]")
    page.keyboard.press("f")  # looked at it throughout
    page.wait_for_function("t => document.querySelector('input[name=trial]').value !== t", arg=first)
    page.wait_for_selector("#pair[data-ready]")
    second = page.input_value("input[name=trial]")
    # The rater switches to another window mid-trial. Headless chromium keeps every page
    # focused and visible, so the browser's own event is sent to the page.
    page.evaluate("() => window.dispatchEvent(new FocusEvent('blur'))")
    page.keyboard.press("j")
    page.wait_for_function("t => document.querySelector('input[name=trial]').value !== t", arg=second)
    assert Trial.objects.get(token=first).focus_lost is False
    assert Trial.objects.get(token=second).focus_lost is True
    assert Trial.objects.get(token=second).fullscreen is False  # not asked for, not in it
    context.close()


@pytest.mark.django_db(transaction=True)
def test_declining_consent_returns_to_the_panel_with_its_code(browser, live_server, media_root, photo_dir,
                                                             mean_chroma_checkpoint):
    open_experiment("c", photo_dir, mean_chroma_checkpoint, trials_per_rater=3, panel="prolific",
                    no_consent_code="CNOAGREE")
    page = browser.new_page()
    panel = []

    def prolific(route):  # the panel's site, offline here
        panel.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<p>Prolific</p>")

    page.route("https://app.prolific.com/**", prolific)
    page.goto(f"{live_server.url}/e/c/?PROLIFIC_PID=decliner&STUDY_ID=s1&SESSION_ID=x1")
    page.click("button.decline")
    page.wait_for_url("https://app.prolific.com/**")
    assert panel == ["https://app.prolific.com/submissions/complete?cc=CNOAGREE"]
    rater = Rater.objects.get(external_id="decliner")
    assert rater.declined is not None and not rater.trials.exists() and rater.viewing.get("window_width")


@pytest.mark.django_db(transaction=True)
def test_a_staircase_session_moves_the_exposure(browser, live_server, media_root, photo_dir, mean_chroma_checkpoint):
    """Right answers on every trial: after three the exposure shortens by one step; each pair
    comes after a 3-2-1 countdown, hides after its exposure and is followed by noise masks."""
    for i in range(5, 9):
        colour_image(i).save(photo_dir / f"extra{i}.png")
    open_experiment("s", photo_dir, mean_chroma_checkpoint, trials_per_rater=5, timing="staircase")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.add_init_script("""
        window.masked = 0;
        const draw = CanvasRenderingContext2D.prototype.putImageData;
        CanvasRenderingContext2D.prototype.putImageData = function () { window.masked++; return draw.apply(this, arguments); };
    """)
    page.goto(f"{live_server.url}/e/s/")
    page.click("button.start")
    for number in range(1, 6):
        page.wait_for_selector(".countdown:not([hidden])")
        page.wait_for_selector("#pair[data-ready]")
        page.wait_for_selector("#pair[data-exposed]", timeout=5000)  # hidden once the exposure is over
        page.wait_for_function("n => window.masked >= n", arg=4 * 2 * number)  # four masks a side, fresh noise
        token = page.input_value("input[name=trial]")
        trial = Trial.objects.get(token=token)
        page.keyboard.press("f" if trial.real_side == "L" else "j")  # the right answer
        if number < 5:
            page.wait_for_function("t => document.querySelector('input[name=trial]').value !== t", arg=token)
    page.wait_for_url("**/done/")
    exposures = list(Trial.objects.order_by("position").values_list("exposure_ms", flat=True))
    assert exposures == [500, 500, 500, 450, 450]


@pytest.mark.django_db(transaction=True)
def test_an_experiment_can_require_fullscreen(browser, live_server, media_root, photo_dir, mean_chroma_checkpoint):
    """No trial until the browser is in fullscreen; leaving it hides the pair again; the trial records it."""
    open_experiment("f", photo_dir, mean_chroma_checkpoint, trials_per_rater=3, require_fullscreen=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/e/f/")
    page.click("button.start")
    page.wait_for_selector("#fullscreen:not([hidden])")
    assert page.is_hidden("#pair") and page.get_attribute("#pair", "data-ready") is None
    page.click("#enter-fullscreen")
    page.wait_for_selector("#pair[data-ready]")
    first = page.input_value("input[name=trial]")
    page.keyboard.press("f")
    page.wait_for_function("t => document.querySelector('input[name=trial]').value !== t", arg=first)
    page.wait_for_selector("#pair[data-ready]")
    second = page.input_value("input[name=trial]")
    page.evaluate("() => document.exitFullscreen()")
    page.wait_for_selector("#fullscreen:not([hidden])")
    assert page.is_hidden("#pair")
    page.click("#enter-fullscreen")  # back: the same trial again, from the start
    page.wait_for_selector("#pair[data-ready]")
    assert page.input_value("input[name=trial]") == second
    page.keyboard.press("j")
    page.wait_for_function("t => document.querySelector('input[name=trial]').value !== t", arg=second)
    assert Trial.objects.get(token=first).fullscreen is True
    assert Trial.objects.get(token=second).fullscreen is False  # it left fullscreen while this trial was shown
