"""The HTML report in a real browser: Debian's chromium driven by Playwright, headless, from a file:// URL."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from scipy.special import expit, logit

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
METHODS = {"zhang": 0.32, "mean_chroma": 0.2, "palette_like": 0.45, "ground_truth": 0.5}


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian's chromium is missing at {CHROMIUM}: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def judgments_csv(path: Path) -> None:
    """60 images, 5 raters per (image, method), 4 methods, 2 catch trials per rater; class indices known."""
    rng = np.random.default_rng(0)
    n_images, k, names = 60, 5, list(METHODS)
    per_image = k * len(names)
    n_raters = 59  # coprime with the 20 slots per image: every rater sees every method, no image twice
    img = np.repeat(np.arange(n_images), per_image)
    meth = np.tile(np.repeat(np.arange(len(names)), k), n_images)
    rat = np.arange(img.size) % n_raters
    p = expit(logit(np.array(list(METHODS.values())))[meth] + rng.normal(0, 0.5, n_images)[img])
    chose = rng.random(img.size) < p
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rater", "image", "method", "chose_generated", "trial_kind", "class_index"])
        for r, i, m, c in zip(rat, img, meth, chose):
            writer.writerow([f"rater{r}", f"n{1440764 + i % 7:08d}/val_{i:05d}.JPEG", names[m], int(c), "scored", i % 7])
        for r in range(n_raters):
            for i in range(2):
                writer.writerow([f"rater{r}", f"n{1440764:08d}/val_{i:05d}.JPEG", "grayscale",
                                 int(r == 0), "catch", 0])


def test_the_html_report_shows_the_figure_and_the_tables_in_a_browser(browser, tmp_path):
    source, html = tmp_path / "judgments.csv", tmp_path / "report.html"
    judgments_csv(source)
    call_command("vtt_report", "--judgments-csv", str(source), "--html", str(html), "--published", "--n-boot", "300",
                 stdout=io.StringIO(), stderr=io.StringIO())

    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(html.as_uri())

    figure = page.locator("svg.vtt-figure")
    assert figure.is_visible()
    box = figure.bounding_box()
    assert box["width"] > 400 and box["height"] > 150
    marks = page.locator("svg.vtt-figure g.vtt-mark")
    assert marks.count() == 4
    order = [marks.nth(i).get_attribute("data-method") for i in range(4)]
    assert order == ["palette_like", "zhang", "mean_chroma", "ground_truth"]  # tested by VTT, then the control
    # Each point sits left of the next higher score: positions follow the values in the table.
    cx = {name: float(page.locator(f'g.vtt-mark[data-method="{name}"] circle').get_attribute("cx")) for name in order}
    assert cx["mean_chroma"] < cx["zhang"] < cx["palette_like"]
    assert page.locator("svg.vtt-figure line.vtt-fifty").count() == 1
    assert page.get_by_text("50%: indistinguishable").is_visible()
    assert page.locator("svg.vtt-figure g.vtt-published").count() == 5

    methods = page.locator("table.vtt-methods tbody tr")
    assert methods.count() == 4
    assert methods.nth(3).locator("td").nth(0).inner_text() == "ground_truth"
    assert methods.nth(3).locator("td").nth(1).inner_text() == "calibration"
    assert page.locator("table.vtt-comparisons tbody tr").count() == 6
    assert page.locator("table.vtt-published tbody tr").count() == 5
    assert page.locator("table.vtt-classes tbody tr").count() == 7
    assert page.locator("table.vtt-flagged tbody tr").count() == 1  # rater0 failed both catch trials
    assert requests == [html.as_uri()]  # self-contained: nothing else was fetched
