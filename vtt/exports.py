"""Every trial of an experiment as rows, for the CSV and JSON exports (and `vtt_report --judgments-csv`)."""
from __future__ import annotations

import csv
from typing import IO, Iterable, Iterator

from .models import Experiment, Trial

# The viewing conditions a rater's browser reported (`Rater.viewing`, see vtt.services.clean_viewing).
VIEWING_KEYS = [
    "screen_width", "screen_height", "window_width", "window_height", "device_pixel_ratio", "color_gamut", "pointer",
    "touch_points",
]
COLUMNS = [
    "experiment", "rater", "external_id", "flagged", "position", "trial_kind", "image", "class_index", "method",
    "real_side", "choice", "chose_generated", "counted", "shown", "answered", "response_ms",
    "exposure_ms", "display_px", "focus_lost", "fullscreen",
    "declined", "user_agent", *VIEWING_KEYS,
]


def trial_rows(*, experiment: Experiment) -> Iterator[dict]:
    """One dict per trial shown, answered or not, in rater then position order.

    ``chose_generated`` is None until answered; ``counted`` is False for practice and
    catch trials and for a late answer that found its pair already complete.
    Per trial: ``exposure_ms`` (how long the pair was shown; None: untimed),
    ``display_px`` (the side of each image as displayed, CSS px), ``focus_lost``
    (the page lost focus or was hidden during the trial: the rater looked away) and
    ``fullscreen``; None where the browser did not say. Per rater, repeated on each
    of their rows: ``declined``, ``user_agent`` and the viewing conditions of
    `VIEWING_KEYS` (None where not reported). Raters who declined consent have no
    trials, so they never appear here (``declined`` is False on every row); the
    staff summary counts them (`vtt.selectors.experiment_summary`) and lists them
    (`vtt.selectors.rater_viewing`).
    """
    trials = (
        Trial.objects.filter(rater__experiment=experiment)
        .order_by("rater__started", "rater_id", "position")
        .values_list(
            "rater__token", "rater__external_id", "rater__flagged", "position", "kind",
            "colorization__image__source__path", "colorization__image__source__class_index",
            "colorization__method__name", "real_side", "choice", "counted", "shown", "answered", "response_ms",
            "exposure_ms", "display_px", "focus_lost", "fullscreen", "rater__declined", "rater__user_agent",
            "rater__viewing",
        )
        .iterator(chunk_size=5000)
    )
    for (rater, external_id, flagged, position, kind, image, class_index, method, real_side, choice, counted,
         shown, answered, response_ms, exposure_ms, display_px, focus_lost, fullscreen, declined, user_agent,
         viewing) in trials:
        viewing = viewing if isinstance(viewing, dict) else {}
        yield {
            "experiment": experiment.slug, "rater": rater, "external_id": external_id, "flagged": flagged,
            "position": position, "trial_kind": kind, "image": image, "class_index": class_index, "method": method,
            "real_side": real_side, "choice": choice or None,
            "chose_generated": (choice != real_side) if choice else None, "counted": counted,
            "shown": shown.isoformat(), "answered": answered.isoformat() if answered else None,
            "response_ms": response_ms, "exposure_ms": exposure_ms, "display_px": display_px,
            "focus_lost": focus_lost, "fullscreen": fullscreen, "declined": declined is not None,
            "user_agent": user_agent, **{key: viewing.get(key) for key in VIEWING_KEYS},
        }


def write_csv(rows: Iterable[dict], out: IO[str]) -> None:
    """CSV with a header; booleans as 1/0 and missing values as empty cells."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (int(v) if isinstance(v, bool) else ("" if v is None else v)) for k, v in row.items()})
