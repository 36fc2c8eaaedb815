"""How raters saw the pairs: export columns, the staff summary and viewing table, declined raters, the admin."""
from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.contrib.admin.sites import site
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from tests.test_vtt_report import make_experiment, trial
from vtt import exports, selectors
from vtt.models import Colorization, Experiment, Rater, Trial

pytestmark = pytest.mark.django_db
AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36"
VIEWING = {"screen_width": 1920, "screen_height": 1080, "window_width": 1600, "window_height": 900,
           "device_pixel_ratio": 1.25, "color_gamut": "p3", "pointer": "fine", "touch_points": 0}


@pytest.fixture
def viewed() -> Experiment:
    """Ann (full viewing report) answers three trials, looks away in one, is in fullscreen for two; Bob reports
    nothing and answers one; Cy declines consent; Dee has started, holds an unexpired lease and has answered nothing."""
    experiment = make_experiment("v", n_images=3)
    pairs = list(Colorization.objects.filter(image__experiment=experiment, method__name="mean_chroma").order_by("id"))
    ann = Rater.objects.create(experiment=experiment, external_id="ann", user_agent=AGENT, viewing=VIEWING)
    for i, (px, lost, full) in enumerate([(256, False, True), (300, True, True), (256, None, False)]):
        t = trial(ann, pairs[i], Trial.Kind.SCORED, i == 0)
        Trial.objects.filter(pk=t.pk).update(display_px=px, focus_lost=lost, fullscreen=full, exposure_ms=1000)
    Rater.objects.filter(pk=ann.pk).update(finished=timezone.now())
    bob = Rater.objects.create(experiment=experiment, external_id="bob")
    trial(bob, pairs[0], Trial.Kind.SCORED, False)
    Rater.objects.create(experiment=experiment, external_id="cy", user_agent=AGENT, declined=timezone.now())
    dee = Rater.objects.create(experiment=experiment)
    Trial.objects.filter(pk=trial(dee, pairs[1], Trial.Kind.SCORED, None).pk).update(
        lease_expires=timezone.now() + timedelta(minutes=5))
    return experiment


def test_the_export_has_each_trials_viewing_and_each_raters_conditions(viewed):
    rows = list(exports.trial_rows(experiment=viewed))
    assert [r["external_id"] for r in rows] == ["ann"] * 3 + ["bob", ""]  # the declined rater has no rows
    first, second, third = rows[:3]
    assert (first["exposure_ms"], first["display_px"], first["focus_lost"], first["fullscreen"]) == (1000, 256, False,
                                                                                                     True)
    assert second["focus_lost"] is True and third["focus_lost"] is None
    assert {k: first[k] for k in exports.VIEWING_KEYS} == VIEWING
    assert first["user_agent"] == AGENT and first["declined"] is False
    assert all(rows[3][k] is None for k in exports.VIEWING_KEYS) and rows[3]["exposure_ms"] is None


def test_the_csv_export_writes_the_new_columns_as_cells(viewed):
    out = io.StringIO()
    exports.write_csv(exports.trial_rows(experiment=viewed), out)
    reader = csv.DictReader(io.StringIO(out.getvalue()))
    assert reader.fieldnames == exports.COLUMNS
    for column in ("exposure_ms", "display_px", "focus_lost", "fullscreen", "declined", "user_agent",
                   "screen_width", "device_pixel_ratio", "color_gamut", "pointer", "touch_points"):
        assert column in reader.fieldnames
    ann = [r for r in reader if r["external_id"] == "ann"]
    assert [(r["focus_lost"], r["fullscreen"], r["display_px"]) for r in ann] == [
        ("0", "1", "256"), ("1", "1", "300"), ("", "0", "256")]
    assert (ann[0]["device_pixel_ratio"], ann[0]["color_gamut"], ann[0]["touch_points"]) == ("1.25", "p3", "0")


def test_the_json_export_through_the_staff_url_has_the_new_fields(viewed, admin_client):
    data = json.loads(b"".join(admin_client.get(reverse("vtt:export", args=["v", "json"])).streaming_content))
    assert set(data["trials"][0]) == set(exports.COLUMNS)
    assert data["trials"][1]["focus_lost"] is True and data["trials"][0]["device_pixel_ratio"] == 1.25


def test_declined_raters_are_counted_apart_and_not_as_started_or_active(viewed):
    summary = selectors.experiment_summary(experiment=viewed)
    assert summary["raters_declined"] == 1
    assert summary["raters_started"] == 3  # ann, bob, dee
    assert summary["raters_active"] == 1 and summary["raters_finished"] == 1  # dee holds a lease; ann finished


def test_the_dashboard_shows_the_declined_count(viewed, admin_client):
    html = admin_client.get(reverse("vtt:dashboard")).content.decode()
    assert "<th>declined</th>" in html and "<td>1</td><td>1</td><td>0</td><td>1</td>" in html


def test_rater_viewing_has_one_row_per_rater_with_their_conditions_and_trial_counts(viewed):
    rows = {r["rater"]: r for r in selectors.rater_viewing(experiment=viewed)}
    assert list(rows)[:3] == ["ann", "bob", "cy"]  # in order of starting
    ann = rows["ann"]
    assert (ann["screen"], ann["window"], ann["device_pixel_ratio"], ann["color_gamut"], ann["pointer"]) == (
        "1920\u00d71080", "1600\u00d7900", 1.25, "p3", "fine")
    assert (ann["n_answered"], ann["n_looked_away"], ann["n_fullscreen"], ann["median_display_px"]) == (3, 1, 2, 256)
    assert ann["finished"] is not None and ann["declined"] is None
    assert (rows["bob"]["screen"], rows["bob"]["n_answered"], rows["bob"]["median_display_px"]) == ("", 1, None)
    assert rows["cy"]["declined"] is not None and rows["cy"]["n_answered"] == 0
    dee = next(r for name, r in rows.items() if name not in {"ann", "bob", "cy"})
    assert len(dee["rater"]) == 8 and dee["n_answered"] == 0  # an anonymous rater: the token's first characters


def test_the_staff_experiment_page_shows_the_viewing_table(viewed):
    request = RequestFactory().get("/staff/e/v/")
    context = {"experiment": viewed, "summary": selectors.experiment_summary(experiment=viewed),
               "viewing": selectors.rater_viewing(experiment=viewed), "vtt_report": None}
    html = render_to_string("vtt/experiment.html", context, request=request)
    assert html.count('class="vtt-viewing-rater') == 4 and html.count("vtt-declined") == 1
    assert "1920\u00d71080" in html and "declined consent (no trials, not counted as started)" in html
    assert f'title="{AGENT}"' in html and AGENT not in html.replace(f'title="{AGENT}"', "")  # truncated in the cell
    assert "<td>1</td>" in html.split("declined consent")[1].split("</tr>")[0]


def test_the_admin_puts_the_new_experiment_fields_in_fieldsets(admin_client):
    fieldsets = dict(site._registry[Experiment].fieldsets)
    assert fieldsets["Timing"]["fields"] == ["timing", "exposure_ms"]
    assert fieldsets["Display and devices"]["fields"] == ["display_size", "allow_mobile", "require_fullscreen"]
    panel = next(options["fields"] for name, options in fieldsets.items() if (name or "").startswith("Panel and outcomes"))
    assert {"no_consent_code", "catch_fail_action", "screened_out_code", "no_pairs_code", "returned_code",
            "timed_out_code", "session_minutes"} <= set(panel)
    named = [f for _, options in site._registry[Experiment].fieldsets for f in options["fields"]]
    assert len(named) == len(set(named))
    html = admin_client.get(reverse("admin:vtt_experiment_add")).content.decode()
    for field in ("timing", "display_size", "allow_mobile", "require_fullscreen", "no_consent_code"):
        assert f'id="id_{field}"' in html


def test_the_live_staff_page_counts_declined_raters(viewed, admin_client):
    html = admin_client.get(reverse("vtt:experiment", args=["v"])).content.decode()
    assert "declined consent (no trials, not counted as started)</th><td>1</td>" in html
