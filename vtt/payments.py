"""The pay sheet of an experiment and the two files Prolific's bulk approval and bulk bonus take (reads only).

`pay_sheet` gives one row per participant; `approval_lines` and `bonus_lines` the files
to paste into (or upload to) Prolific's "Bulk approve" and "Bulk bonus" dialogs. Nothing
here writes to the database: approving and paying happen on the panel.

Who is approved: participants whose outcome is ``completed`` (finished, not flagged by
the catch trials). Flagged participants (``completed_flagged``) are left out of the
approval file so that the experimenter reviews them on the panel (approve, or reject
under the panel's attention-check rules). The other outcomes are not approved from
here: ``screened_out`` participants are paid by the panel's screening rules (Prolific
pays its fixed screen-out amount when they submit the screened-out code), and
``no_pairs``, ``returned``, ``timed_out``, ``declined`` and ``in_progress`` ones
submitted no completed study; each has its own code (`Experiment.OUTCOME_CODES`) so the
panel lists them apart, and the sheet says how each ended.

The bonus rule is the experiment's: `Experiment.bonus_amount` to each participant who
completed, was not flagged and whose catch-trial accuracy is at least
`Experiment.bonus_min_catch_accuracy`. Its bounds (0 to 50, 0 to 1) are the model's
validators, so an absurd or negative bonus never reaches a sheet through the admin or
`full_clean`.

A participant without a panel id (the study link opened without PROLIFIC_PID or the
custom panel's parameter) cannot be named in a Prolific file: their row says so in
``note`` and they appear in neither file.
"""
from __future__ import annotations

import csv
from decimal import Decimal
from typing import IO, Iterable

from django.db.models import Count, F, Max, Q
from django.utils import timezone

from .exports import Outcome, csv_cell, rater_outcome
from .models import Experiment, Rater, Trial
from .selectors import session_seconds

SHEET_COLUMNS = [
    "participant", "rater", "study_id", "session_id", "outcome", "time_on_task_s", "trials_answered",
    "catch_answered", "catch_accuracy", "flagged", "pilot", "approve", "bonus", "note",
]
NO_PANEL_ID = "no panel id: not in the Prolific files"
CENTS = Decimal("0.01")


def _bonus(experiment: Experiment, outcome: str, catch_accuracy: float | None) -> Decimal:
    """The experiment's bonus for one participant, to the cent.

    Unknown accuracy (no catch trial answered) meets the rule only when the rule asks
    for none (`bonus_min_catch_accuracy` 0): a bonus for attention needs evidence of it.
    """
    if outcome != Outcome.COMPLETED or experiment.bonus_amount <= 0:
        return Decimal("0.00")
    minimum = experiment.bonus_min_catch_accuracy
    if minimum > 0 and (catch_accuracy is None or catch_accuracy < minimum):
        return Decimal("0.00")
    return Decimal(experiment.bonus_amount).quantize(CENTS)


def pay_sheet(*, experiment: Experiment) -> list[dict]:
    """One row per participant, in order of starting (one query): the keys of `SHEET_COLUMNS`.

    ``participant``: the panel id ("" without one); ``rater``: the platform's token;
    ``time_on_task_s``: whole seconds as in `vtt.selectors.rater_times` (finished -
    started, or last answer - started in progress; None for declined participants
    and before any answer); ``trials_answered``: answered trials of every kind, practice
    included (each took the participant's time); ``catch_accuracy``: the share of
    answered catch trials where the real image was chosen, to 4 decimals (None
    without one); ``approve``: in the bulk approval file; ``bonus``: a `Decimal` to
    the cent; ``note``: why a row is not in the Prolific files, or "".
    """
    answered = Q(trials__answered__isnull=False)
    catch = answered & Q(trials__kind=Trial.Kind.CATCH)
    raters = (
        Rater.objects.filter(experiment=experiment)
        .annotate(
            n_answered=Count("trials", filter=answered),
            n_catch=Count("trials", filter=catch),
            n_catch_right=Count("trials", filter=catch & Q(trials__choice=F("trials__real_side"))),
            last_answer=Max("trials__answered"),
        )
        .order_by("started", "id")
        .values_list("token", "external_id", "study_id", "session_id", "started", "finished", "declined", "flagged",
                     "pilot", "n_answered", "n_catch", "n_catch_right", "last_answer", "outcome")
    )
    rows = []
    now = timezone.now()
    for (token, external_id, study_id, session_id, started, finished, declined, flagged, pilot, n_answered, n_catch,
         n_catch_right, last_answer, outcome) in raters:
        outcome = rater_outcome(outcome=outcome, started=started, experiment=experiment, now=now)
        accuracy = round(n_catch_right / n_catch, 4) if n_catch else None
        seconds = session_seconds(started, finished, last_answer)
        bonus = _bonus(experiment, outcome, accuracy)
        rows.append({
            "participant": external_id, "rater": token, "study_id": study_id, "session_id": session_id,
            "outcome": outcome,
            "time_on_task_s": None if declined is not None or seconds is None else round(seconds),
            "trials_answered": n_answered, "catch_answered": n_catch, "catch_accuracy": accuracy,
            "flagged": flagged, "pilot": pilot,
            "approve": bool(external_id) and outcome == Outcome.COMPLETED,
            "bonus": bonus, "note": "" if external_id else NO_PANEL_ID,
        })
    return rows


def approval_lines(rows: Iterable[dict]) -> list[str]:
    """Prolific's bulk approval: the panel id of each participant to approve (``approve``), one per line."""
    return [row["participant"] for row in rows if row["approve"]]


def bonus_lines(rows: Iterable[dict]) -> list[str]:
    """Prolific's bulk bonus: ``id,amount`` with two decimals, for positive bonuses of participants with a panel id."""
    return [f"{row['participant']},{row['bonus']:.2f}" for row in rows if row["participant"] and row["bonus"] > 0]


def write_sheet(rows: Iterable[dict], out: IO[str]) -> None:
    """The pay sheet as CSV: `SHEET_COLUMNS`, booleans as 1/0, missing values as empty cells, bonus to the cent."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SHEET_COLUMNS)
    for row in rows:
        writer.writerow([csv_cell(row[column]) for column in SHEET_COLUMNS])  # bonuses are quantized to the cent
