"""In a real browser (Debian's chromium, Playwright): a preview leaves the database as it was; a declined consent
and a screen-out reach Prolific's URL with their codes. Prolific is never reached: the test reads where the
server's redirect sends the browser (the response's Location), and Playwright's routing answers Prolific's
address when the browser asks for it (it does not always see a redirected request, so the test does not rely on
it)."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from tests.test_browser import browser  # noqa: F401 (the fixture)
from tests.test_rater_flow import make_experiment
from vtt import preview
from vtt.models import Experiment, Rater, Trial

PROLIFIC = "https://app.prolific.com/submissions/complete?cc="
PANEL = "PROLIFIC_PID=p-{pid}&STUDY_ID=S1&SESSION_ID=s-{pid}"


@pytest.fixture
def study(media_root, photo_dir, mean_chroma_checkpoint) -> Experiment:
    """1 practice, then 3 scored trials and 1 catch trial, on Prolific, screening out at a failed catch trial."""
    return make_experiment(photo_dir, mean_chroma_checkpoint, panel=Experiment.Panel.PROLIFIC,
                           no_consent_code="NOCONS1", screened_out_code="SCREEN1",
                           catch_fail_action=Experiment.CatchFailAction.SCREEN_OUT)


def database() -> str:
    out = io.StringIO()
    call_command("dumpdata", "vtt", "auth", "sessions", "admin", stdout=out)
    return out.getvalue()


def to_prolific(response) -> bool:
    """A redirect of the server to Prolific."""
    return response.status in (301, 302, 303) and response.headers.get("location", "").startswith(PROLIFIC)


def panel_page(browser):  # noqa: F811
    """A page whose redirects to Prolific are listed in the returned list (and answered here, never sent)."""
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    visited = []
    page.on("response", lambda r: visited.append(r.headers["location"]) if to_prolific(r) else None)
    page.route("https://app.prolific.com/**",
               lambda route: route.fulfill(status=200, content_type="text/html", body="<p>Prolific</p>"))
    return page, visited


@pytest.mark.django_db(transaction=True)
def test_a_preview_in_the_browser_leaves_the_database_unchanged(browser, live_server, study):  # noqa: F811
    Experiment.objects.filter(pk=study.pk).update(state=Experiment.State.DRAFT, catch_fail_action="flag")
    study.refresh_from_db()
    key = preview.preview_key(study, hours=1)
    before = database()
    page, visited = panel_page(browser)
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(f"{live_server.url}/e/{study.slug}/preview/?key={key}")
    assert "nothing is recorded" in page.inner_text(".preview-banner")
    page.click("button.start")
    answered = 0
    while "/preview/done/" not in page.url:
        page.wait_for_selector("#pair[data-ready]")
        token = page.input_value("input[name=trial]")
        page.click("button.side >> nth=0")
        answered += 1
        page.wait_for_function(
            "t => location.pathname.endsWith('/preview/done/') || "
            "(document.querySelector('input[name=trial]') || {}).value !== t", arg=token)
    assert answered == 5  # the rater's session: 1 practice and 4 trials
    note = page.inner_text(".preview-note")
    assert "Nothing was recorded" in note and PROLIFIC in note
    assert visited == [] and failed == []
    assert database() == before


@pytest.mark.django_db(transaction=True)
def test_a_declined_consent_reaches_prolific_with_the_no_consent_code(browser, live_server, study):  # noqa: F811
    page, visited = panel_page(browser)
    page.goto(f"{live_server.url}/e/{study.slug}/?{PANEL.format(pid=1)}")
    with page.expect_response(to_prolific):
        page.click("button.decline")
    assert visited == [f"{PROLIFIC}NOCONS1"]
    rater = Rater.objects.get()
    assert (rater.external_id, rater.outcome, rater.trials.count()) == ("p-1", "declined", 0)


@pytest.mark.django_db(transaction=True)
def test_a_failed_catch_trial_screens_out_to_prolific_with_the_screen_out_code(browser, live_server, study):  # noqa: F811
    page, visited = panel_page(browser)
    page.goto(f"{live_server.url}/e/{study.slug}/?{PANEL.format(pid=2)}")
    page.click("button.start")
    kinds = []
    while Trial.Kind.CATCH not in kinds:
        page.wait_for_selector("#pair[data-ready]")
        token = page.input_value("input[name=trial]")
        trial = Trial.objects.get(token=token)
        kinds.append(trial.kind)
        right = trial.real_side == "L"
        wrong = trial.kind == Trial.Kind.CATCH
        if wrong:
            with page.expect_response(to_prolific):
                page.click(f"button.side >> nth={1 if right else 0}")
        else:
            page.click(f"button.side >> nth={0 if right else 1}")
            page.wait_for_function("t => document.querySelector('input[name=trial]').value !== t", arg=token)
    assert visited == [f"{PROLIFIC}SCREEN1"] and kinds[-1] == "catch" and kinds.count("catch") == 1
    rater = Rater.objects.get()
    assert (rater.outcome, rater.flagged) == ("screened_out", True)
