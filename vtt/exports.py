"""Every trial of an experiment as rows, for the CSV and JSON exports (and `vtt_report --judgments-csv`).

The exports stream: `trial_rows` reads the trials with ``QuerySet.iterator(chunk_size=CHUNK_ROWS)`` (the
database cursor hands over `CHUNK_ROWS` rows at a time; on PostgreSQL a server-side cursor), and `csv_chunks`
and `json_chunks` turn them into pieces of text of about `BUFFER_CHARS` characters, which the staff view sends
as a `StreamingHttpResponse`. The memory a download holds is then one chunk of rows and one buffer, whatever
the number of trials (measured in tests/test_exports.py and benchmarks/exports.py, see BENCHMARKS.md).
"""
from __future__ import annotations

import csv
import io
import json
from typing import IO, Iterable, Iterator

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from .models import Experiment, Rater, Trial

# The viewing conditions a rater's browser reported (`Rater.viewing`, see vtt.services.clean_viewing).
VIEWING_KEYS = [
    "screen_width", "screen_height", "window_width", "window_height", "device_pixel_ratio", "color_gamut", "pointer",
    "touch_points",
]
# The columns of the earlier exports first, in their order (readers that index columns by position keep
# working; `vtt.judgments.read_judgments_csv` reads columns by name), then the per-rater fields added since.
COLUMNS = [
    "experiment", "rater", "external_id", "flagged", "position", "trial_kind", "image", "class_index", "method",
    "real_side", "choice", "chose_generated", "counted", "shown", "answered", "response_ms",
    "exposure_ms", "display_px", "focus_lost", "fullscreen",
    "declined", "user_agent", *VIEWING_KEYS,
    "study_id", "session_id", "pilot", "outcome", "rater_started", "rater_finished",
]
# Rows the database cursor hands over at a time: large enough that the per-chunk query overhead is small,
# small enough that a chunk of rows stays a few MiB.
CHUNK_ROWS = 2000
# Characters of CSV or JSON text gathered before a piece is sent: about a network write's worth, so that a
# download is a few thousand writes rather than one per row, and the buffer stays far below a chunk of rows.
BUFFER_CHARS = 64 * 1024


# How a rater's session ended (stored on the rater when it ends: `vtt.services`).
Outcome = Rater.Outcome


def rater_outcome(*, outcome: str, started, experiment: Experiment, now) -> str:
    """A rater's outcome as of ``now``: the stored ``Rater.outcome``, except that a session still in progress past
    the experiment's ``session_minutes`` (`Experiment.past_time_limit`) is ``timed_out`` (the service records that
    only when the participant comes back; one who never does has timed out all the same). Without a limit, an
    abandoned session stays ``in_progress``: nothing tells it apart from a slow one.
    """
    if outcome == Outcome.IN_PROGRESS and experiment.past_time_limit(started, now):
        return Outcome.TIMED_OUT
    return outcome


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def trial_rows(*, experiment: Experiment, chunk_size: int | None = None) -> Iterator[dict]:
    """One dict per trial shown, answered or not, in rater then position order, read ``chunk_size`` at a time
    (default `CHUNK_ROWS`).

    ``chose_generated`` is None until answered; ``counted`` is False for practice and
    catch trials and for a late answer that found its pair already complete.
    Per trial: ``exposure_ms`` (how long the pair was shown; None: untimed),
    ``display_px`` (the side of each image as displayed, CSS px), ``focus_lost``
    (the page lost focus or was hidden during the trial: the rater looked away) and
    ``fullscreen``; None where the browser did not say. Per rater, repeated on each
    of their rows: the panel's ids (``external_id``, ``study_id``, ``session_id``;
    "" without a panel), ``declined``, ``user_agent``, the viewing conditions of
    `VIEWING_KEYS` (None where not reported), ``pilot`` (started while the experiment
    was in pilot), ``outcome`` (`rater_outcome`: the stored outcome, time-outs included), ``rater_started`` and
    ``rater_finished`` (ISO 8601, None while in progress). Raters who declined consent
    have no trials, so they never appear here (``declined`` is False on every row);
    the staff summary counts them (`vtt.selectors.experiment_summary`), lists them
    (`vtt.selectors.rater_viewing`) and the pay sheet has them (`vtt.payments`).
    """
    now = timezone.now()
    trials = (
        Trial.objects.filter(rater__experiment=experiment)
        .order_by("rater__started", "rater_id", "position")
        .values_list(
            "rater__token", "rater__external_id", "rater__flagged", "position", "kind",
            "colorization__image__source__path", "colorization__image__source__class_index",
            "colorization__method__name", "real_side", "choice", "counted", "shown", "answered", "response_ms",
            "exposure_ms", "display_px", "focus_lost", "fullscreen", "rater__declined", "rater__user_agent",
            "rater__viewing", "rater__study_id", "rater__session_id", "rater__pilot", "rater__started",
            "rater__finished", "rater__outcome",
        )
        .iterator(chunk_size=chunk_size or CHUNK_ROWS)
    )
    for (rater, external_id, flagged, position, kind, image, class_index, method, real_side, choice, counted,
         shown, answered, response_ms, exposure_ms, display_px, focus_lost, fullscreen, declined, user_agent,
         viewing, study_id, session_id, pilot, started, finished, outcome) in trials:
        viewing = viewing if isinstance(viewing, dict) else {}
        yield {
            "experiment": experiment.slug, "rater": rater, "external_id": external_id, "flagged": flagged,
            "position": position, "trial_kind": kind, "image": image, "class_index": class_index, "method": method,
            "real_side": real_side, "choice": choice or None,
            "chose_generated": (choice != real_side) if choice else None, "counted": counted,
            "shown": shown.isoformat(), "answered": _iso(answered),
            "response_ms": response_ms, "exposure_ms": exposure_ms, "display_px": display_px,
            "focus_lost": focus_lost, "fullscreen": fullscreen, "declined": declined is not None,
            "user_agent": user_agent, **{key: viewing.get(key) for key in VIEWING_KEYS},
            "study_id": study_id, "session_id": session_id, "pilot": pilot,
            "outcome": rater_outcome(outcome=outcome, started=started, experiment=experiment,
                                     now=now),
            "rater_started": _iso(started), "rater_finished": _iso(finished),
        }


def csv_cell(value):
    """A CSV cell: booleans as 1/0 (what `read_judgments_csv` reads), missing values as empty cells."""
    return int(value) if isinstance(value, bool) else ("" if value is None else value)


def csv_chunks(rows: Iterable[dict], *, buffer_chars: int = BUFFER_CHARS) -> Iterator[str]:
    """The CSV of `COLUMNS` (header first) as pieces of about ``buffer_chars`` characters, row by row.

    The `csv` module writes each row into a `io.StringIO` buffer that is handed on and
    emptied once it holds ``buffer_chars`` characters, so the text in memory is at most
    one buffer and one row.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([csv_cell(row[column]) for column in COLUMNS])
        if buffer.tell() >= buffer_chars:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_chunks(rows: Iterable[dict], *, experiment: Experiment, buffer_chars: int = BUFFER_CHARS) -> Iterator[str]:
    """``{"experiment": slug, "trials": [row, ...]}`` as pieces of about ``buffer_chars`` characters.

    The document the earlier export sent whole, written one trial at a time: the
    opening, each row by `json.dumps` (`DjangoJSONEncoder`, as Django's `JsonResponse`
    uses) on a line of its own with a comma before all but the first, and the closing
    brackets. The concatenated pieces are one valid JSON document, empty list included.
    """
    encoder = DjangoJSONEncoder(ensure_ascii=False)
    parts = [f'{{"experiment": {json.dumps(experiment.slug)}, "trials": [']
    size, separator = len(parts[0]), "\n"
    for row in rows:
        text = encoder.encode(row)
        parts.append(separator)
        parts.append(text)
        size += len(text) + 2
        separator = ",\n"
        if size >= buffer_chars:
            yield "".join(parts)
            parts, size = [], 0
    parts.append("\n]}\n")
    yield "".join(parts)


def write_csv(rows: Iterable[dict], out: IO[str]) -> None:
    """The CSV of `csv_chunks` written to a text stream: header, booleans as 1/0, missing values as empty cells."""
    for chunk in csv_chunks(rows):
        out.write(chunk)
