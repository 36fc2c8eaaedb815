"""The streamed CSV and JSON exports: their columns, the outcome per rater, the report reading them, constant memory."""
from __future__ import annotations

import csv
import gc
import io
import json
import tracemalloc
from datetime import timedelta

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone

from tests.test_vtt_report import make_experiment, trial
from vtt import exports
from vtt.judgments import experiment_judgments, read_judgments_csv
from vtt.models import Colorization, Experiment, Rater, Trial

pytestmark = pytest.mark.django_db
# The columns of the export before it streamed, in their order: they stay first.
EARLIER_COLUMNS = [
    "experiment", "rater", "external_id", "flagged", "position", "trial_kind", "image", "class_index", "method",
    "real_side", "choice", "chose_generated", "counted", "shown", "answered", "response_ms", "exposure_ms",
    "display_px", "focus_lost", "fullscreen", "declined", "user_agent", *exports.VIEWING_KEYS,
]


@pytest.fixture
def ended() -> Experiment:
    """Four raters, one per outcome: ann completed (Prolific ids, pilot), bob completed but flagged, cy declined
    (no trials), dee in progress (no panel id)."""
    experiment = make_experiment("x", n_images=3)
    pairs = list(Colorization.objects.filter(image__experiment=experiment, method__name="mean_chroma").order_by("id"))
    catch = Colorization.objects.filter(image__experiment=experiment, method__name="grayscale").first()
    now = timezone.now()
    ann = Rater.objects.create(experiment=experiment, external_id="ann", study_id="S1", session_id="s-ann",
                               user_agent="UA ann", pilot=True)
    for pair in pairs:
        trial(ann, pair, Trial.Kind.SCORED, False)
    trial(ann, catch, Trial.Kind.CATCH, False)
    bob = Rater.objects.create(experiment=experiment, external_id="bob", study_id="S1", session_id="s-bob")
    trial(bob, pairs[0], Trial.Kind.SCORED, True)
    trial(bob, catch, Trial.Kind.CATCH, True)
    Rater.objects.filter(pk=ann.pk).update(finished=now, outcome=Rater.Outcome.COMPLETED)
    Rater.objects.filter(pk=bob.pk).update(finished=now, flagged=True, outcome=Rater.Outcome.COMPLETED_FLAGGED)
    Rater.objects.create(experiment=experiment, external_id="cy", declined=now, outcome=Rater.Outcome.DECLINED)
    dee = Rater.objects.create(experiment=experiment)
    trial(dee, pairs[1], Trial.Kind.SCORED, True)
    trial(dee, pairs[2], Trial.Kind.SCORED, None)
    return experiment


def download(client, slug: str, fmt: str) -> tuple[StreamingHttpResponse, str]:
    response = client.get(reverse("vtt:export", args=[slug, fmt]))
    assert response.status_code == 200 and isinstance(response, StreamingHttpResponse)
    body = b"".join(response.streaming_content).decode()
    return response, body


def test_the_outcome_is_the_stored_one_but_a_session_past_its_time_limit_has_timed_out():
    now = timezone.now()
    long_ago = now - timedelta(minutes=61)
    unlimited, hour, longer = (Experiment(session_minutes=m) for m in (None, 60, 62))
    for outcome in Rater.Outcome.values:
        assert exports.rater_outcome(outcome=outcome, started=now, experiment=unlimited, now=now) == outcome
        expected = "timed_out" if outcome == "in_progress" else outcome
        assert exports.rater_outcome(outcome=outcome, started=long_ago, experiment=hour, now=now) == expected
    assert exports.rater_outcome(outcome="in_progress", started=long_ago, experiment=longer, now=now) == "in_progress"
    assert exports.rater_outcome(outcome="in_progress", started=long_ago, experiment=unlimited, now=now) \
        == "in_progress"  # no limit: an abandoned session cannot be told from a slow one


def test_the_csv_keeps_the_earlier_columns_first_and_adds_every_recorded_field(ended, admin_client):
    response, body = download(admin_client, "x", "csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="x-trials.csv"'
    reader = csv.DictReader(io.StringIO(body))
    assert reader.fieldnames[:len(EARLIER_COLUMNS)] == EARLIER_COLUMNS
    assert reader.fieldnames == exports.COLUMNS
    assert {"study_id", "session_id", "pilot", "outcome", "rater_started", "rater_finished"} <= set(reader.fieldnames)
    rows = list(reader)
    by_rater = {}
    for row in rows:
        by_rater.setdefault(row["external_id"], []).append(row)
    assert list(by_rater) == ["ann", "bob", ""]  # cy declined: no trials
    ann, bob, dee = by_rater["ann"][0], by_rater["bob"][0], by_rater[""][0]
    assert (ann["study_id"], ann["session_id"], ann["user_agent"], ann["pilot"]) == ("S1", "s-ann", "UA ann", "1")
    assert (ann["outcome"], bob["outcome"], dee["outcome"]) == ("completed", "completed_flagged", "in_progress")
    assert ann["rater_finished"] and dee["rater_finished"] == "" and dee["rater_started"]
    assert by_rater[""][1]["chose_generated"] == "" and by_rater[""][1]["answered"] == ""


def test_the_report_reads_the_streamed_csv_as_it_reads_the_database(ended, admin_client, tmp_path):
    _, body = download(admin_client, "x", "csv")
    path = tmp_path / "x-trials.csv"
    path.write_text(body)
    from_csv = read_judgments_csv(path)
    from_db, _ = experiment_judgments(ended)
    assert from_csv.experiment == "x"
    answered = from_csv.answer >= 0
    assert int(answered.sum()) == len(from_db.answer)
    assert sorted(from_csv.answer[answered].tolist()) == sorted(from_db.answer.tolist())
    assert set(from_csv.rater_labels) == set(Rater.objects.filter(experiment=ended, declined__isnull=True)
                                               .values_list("token", flat=True))


def test_the_json_is_one_valid_document_with_the_rows_of_the_csv(ended, admin_client):
    response, body = download(admin_client, "x", "json")
    assert response["Content-Type"] == "application/json"
    data = json.loads(body)
    assert data["experiment"] == "x" and len(data["trials"]) == Trial.objects.filter(rater__experiment=ended).count()
    assert list(data["trials"][0]) == exports.COLUMNS
    assert data["trials"] == json.loads(json.dumps(list(exports.trial_rows(experiment=ended)), default=str))
    assert data["trials"][0]["pilot"] is True and data["trials"][-1]["outcome"] == "in_progress"


def test_an_experiment_without_trials_exports_a_header_and_an_empty_list(admin_client):
    make_experiment("empty", n_images=1)
    _, body = download(admin_client, "empty", "csv")
    assert body == ",".join(exports.COLUMNS) + "\n"
    _, body = download(admin_client, "empty", "json")
    assert json.loads(body) == {"experiment": "empty", "trials": []}


def test_the_text_comes_in_pieces_of_about_the_buffer_size(ended):
    rows = list(exports.trial_rows(experiment=ended)) * 50
    pieces = list(exports.csv_chunks(iter(rows), buffer_chars=4096))
    assert len(pieces) > 10 and all(len(p) < 4096 + 1000 for p in pieces)  # a buffer and at most one row
    out = io.StringIO()
    exports.write_csv(iter(rows), out)
    assert "".join(pieces) == out.getvalue()
    pieces = list(exports.json_chunks(iter(rows), experiment=ended, buffer_chars=4096))
    assert len(pieces) > 10 and all(len(p) < 4096 + 2000 for p in pieces)
    assert len(json.loads("".join(pieces))["trials"]) == len(rows)


def test_an_unknown_format_is_a_404_and_the_export_is_for_staff_only(ended, admin_client, client):
    assert admin_client.get(reverse("vtt:export", args=["x", "xml"])).status_code == 404
    assert admin_client.get(reverse("vtt:export", args=["nope", "csv"])).status_code == 404
    assert client.get(reverse("vtt:export", args=["x", "csv"])).status_code == 302  # to the login page


def _many_trials(slug: str, n: int) -> Experiment:
    """An experiment with ``n`` answered trials (100 per rater), made with bulk_create."""
    experiment = make_experiment(slug, n_images=5)
    pairs = list(Colorization.objects.filter(image__experiment=experiment).order_by("id"))
    raters = Rater.objects.bulk_create(
        [Rater(experiment=experiment, external_id=f"{slug}{r}", user_agent="UA", viewing={"screen_width": 1920})
         for r in range(n // 100)])
    now = timezone.now()
    Trial.objects.bulk_create(
        (Trial(rater=raters[k // 100], colorization=pairs[k % len(pairs)], kind=Trial.Kind.SCORED,
               position=k % 100 + 1, real_side="L", choice="R" if k % 3 else "L", answered=now,
               response_ms=900, counted=True) for k in range(n)), batch_size=5000)
    return experiment


def _peak_bytes(client, slug: str, fmt: str) -> tuple[int, int]:
    """The peak of Python's allocations while the export of ``slug`` is requested and read chunk by chunk."""
    gc.collect()
    tracemalloc.start()
    try:
        response = client.get(reverse("vtt:export", args=[slug, fmt]))
        sent = 0
        for chunk in response.streaming_content:
            sent += len(chunk)
        return tracemalloc.get_traced_memory()[1], sent
    finally:
        tracemalloc.stop()


# Trials in the large export; the small one has a tenth as many. The test reads 500 rows at a time instead of
# exports.CHUNK_ROWS, so that even the small export reads several chunks while the test stays short.
MANY = 20_000
TEST_CHUNK_ROWS = 500


def test_the_exports_memory_does_not_grow_with_the_number_of_trials(admin_client, monkeypatch):
    """Peak traced allocations while serving N/10 and N trials: a streamed export holds one chunk of rows and one
    buffer, so the two peaks are about equal (measured: within 3%); an export built whole would hold ten times
    as much for N. The 25% margin leaves room for allocator noise, far below the tenfold of an export held whole."""
    monkeypatch.setattr(exports, "CHUNK_ROWS", TEST_CHUNK_ROWS)
    _many_trials("small", MANY // 10)
    _many_trials("large", MANY)
    for fmt in ("csv", "json"):
        _peak_bytes(admin_client, "small", fmt)  # warm up: imports, caches, the session
        small, small_sent = _peak_bytes(admin_client, "small", fmt)
        large, large_sent = _peak_bytes(admin_client, "large", fmt)
        assert large_sent > 9 * small_sent  # the large export did send ten times the text
        print(f"{fmt}: peak {small / 2**20:.2f} MiB for {MANY // 10:,} trials, {large / 2**20:.2f} MiB for {MANY:,}")
        assert large < 1.25 * small, (fmt, small, large)
        assert large < 0.5 * large_sent  # far below the text the export sent
