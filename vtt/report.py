"""The VTT report: judgments in, a report dict out; the numbers all come from `evaluation`.

Judgments come from the database (`experiment_judgments`) or from a CSV file
(`read_judgments_csv`: the platform's export, or any CSV with the columns
``rater, image, method, chose_generated`` and optionally ``trial_kind``,
``class_index``, ``counted``, ``position``, ``exposure_ms``, ``focus_lost``).
`build_report` scores them; `figure_svg`, `html_context` and `render_html`
present the result.

With adaptive exposures (an experiment whose ``timing`` is ``staircase``, HYPE_time)
each method also gets its threshold exposure, `evaluation.hype_time` of its
staircases: each (rater, method)'s answered scored trials in position order, late
answers included (they moved the rater's staircase), with their ``exposure_ms``.

The staff pages include ``templates/vtt/_report_body.html`` with the context of
`experiment_context(experiment)`: a single variable, ``vtt_report`` (see
`html_context` for its keys).
"""
from __future__ import annotations

import csv
import json
import math
import re
import warnings
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

import numpy as np
from django.db.models import Count, Min, Q
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import mark_safe

import evaluation
from evaluation import staircase

from . import selectors
from .models import Method, Rater, Trial

SCORED, CATCH, PRACTICE = 0, 1, 2
KINDS = {"scored": SCORED, "catch": CATCH, "practice": PRACTICE}
REQUIRED_COLUMNS = ("rater", "image", "method", "chose_generated")
OPTIONAL_COLUMNS = ("trial_kind", "class_index", "counted", "experiment", "position", "exposure_ms", "focus_lost")
TABLE_FIELDS = ["method", "n_trials", "n_images", "n_raters", "vtt", "ci_low", "ci_high", "ci_method", "confidence"]
# Added to the table (the csv format) when the report has staircase thresholds.
THRESHOLD_FIELDS = ["threshold_ms", "threshold_ci_low", "threshold_ci_high"]
STAIRCASE = "staircase"
# A method row's threshold fields when it has no staircase.
NO_THRESHOLD = {"threshold_ms": None, "threshold_ci_low": None, "threshold_ci_high": None, "threshold_n_raters": 0,
                "threshold_n_trials": 0}
# Roles of the registered controls, for judgments that do not say (a CSV).
CONTROL_ROLES = {"ground_truth": "calibration", "grayscale": "catch"}
PUBLISHED_FILE = Path(__file__).resolve().parent.parent / "data" / "published" / "vtt.json"
_TRUE, _FALSE = {"1", "true", "True", "TRUE"}, {"0", "false", "False", "FALSE"}
_WNID = re.compile(r"\bn\d{8}\b")


class JudgmentsError(ValueError):
    """Judgments that cannot be read; the message names the file, line and column."""


@dataclass(frozen=True, eq=False)
class Judgments:
    """Trials as columns: integer codes into the label arrays, one entry per trial.

    ``answer`` is 1 (picked the colorized image), 0 (picked the real one) or -1
    (unanswered); ``class_index`` is -1 when unknown; ``counted`` is False for a
    scored answer that did not fill one of its pair's K places. ``position`` is the
    trial's place in its rater's session (-1 unknown: the order of the rows then
    stands for it), ``exposure`` how long the pair was shown in ms (-1: untimed or
    unknown), ``focus_lost`` 1 when the page lost focus during the trial (0 no, -1
    unknown); ``timing`` is the experiment's (``fixed`` or ``staircase``), None when
    not known (a CSV).
    """

    rater: np.ndarray
    rater_labels: np.ndarray
    image: np.ndarray
    image_labels: np.ndarray
    method: np.ndarray
    method_labels: np.ndarray
    kind: np.ndarray
    answer: np.ndarray
    class_index: np.ndarray
    counted: np.ndarray
    source: str
    title: str = ""
    experiment: str | None = None
    position: np.ndarray | None = None
    exposure: np.ndarray | None = None
    focus_lost: np.ndarray | None = None
    timing: str | None = None

    def __post_init__(self):
        n = self.rater.size
        for name, dtype in (("position", np.int64), ("exposure", np.int64), ("focus_lost", np.int8)):
            values = getattr(self, name)
            object.__setattr__(self, name, np.full(n, -1, dtype=dtype) if values is None
                               else np.asarray(values, dtype=dtype))

    @classmethod
    def from_columns(cls, *, rater, image, method, kind, answer, class_index, counted, source, title="",
                     experiment=None, position=None, exposure=None, focus_lost=None, timing=None) -> "Judgments":
        codes = {}
        for name, values in (("rater", rater), ("image", image), ("method", method)):
            labels, inverse = np.unique(np.asarray(values), return_inverse=True)
            codes[name] = (inverse.ravel(), labels)
        return cls(
            rater=codes["rater"][0], rater_labels=codes["rater"][1], image=codes["image"][0],
            image_labels=codes["image"][1], method=codes["method"][0], method_labels=codes["method"][1],
            kind=np.asarray(kind, dtype=np.int8), answer=np.asarray(answer, dtype=np.int8),
            class_index=np.asarray(class_index, dtype=np.int64), counted=np.asarray(counted, dtype=bool),
            source=source, title=title, experiment=experiment, position=position, exposure=exposure,
            focus_lost=focus_lost, timing=timing,
        )

    def __len__(self) -> int:
        return self.rater.size


# --- reading judgments ---------------------------------------------------------------------------------------


def _record_line(path: Path, record: int) -> int:
    """The line on which the ``record``-th data record (from 0, blank lines skipped) ends."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader, None)
        for i, _ in enumerate(filter(None, reader)):
            if i == record:
                return reader.line_num
    return -1


def _width_error(path: Path, width: int) -> JudgmentsError:
    """The first record whose number of fields differs from the header's (a rescan, on the error path only)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader, None)
        for row in filter(None, reader):
            if len(row) != width:
                return JudgmentsError(f"{path.name}, line {reader.line_num}: expected {width} fields as in the "
                                      f"header, got {len(row)}")
    return JudgmentsError(f"{path.name}: rows of different lengths")


def _fail(path: Path, record: int, column: str, message: str) -> JudgmentsError:
    return JudgmentsError(f"{path.name}, line {_record_line(path, record)}, column {column!r}: {message}")


def _factorize(column: list[str]) -> tuple[list[str], np.ndarray]:
    """The sorted distinct values of a column and the index of each entry among them.

    Sorted, so that the codes (and hence the bootstrap draws) do not depend on the order of the rows;
    the loops over the entries run in C (``dict.fromkeys``, ``map``), the Python ones over distinct values.
    """
    labels = sorted(dict.fromkeys(column))
    index = {label: i for i, label in enumerate(labels)}
    return labels, np.fromiter(map(index.__getitem__, column), dtype=np.int64, count=len(column))


def _mapped(path: Path, column: str, values: list[str], convert) -> np.ndarray:
    """``convert`` applied to each distinct value of a column (None: invalid, with a message), per entry."""
    labels, codes = _factorize(values)
    out = []
    for k, label in enumerate(labels):
        value, problem = convert(label.strip())
        if problem:
            raise _fail(path, int(np.argmax(codes == k)), column, f"{problem}, got {label!r}")
        out.append(value)
    return np.asarray(out)[codes] if out else np.zeros(0)


def _flag(text: str, blank: int | None = None):
    if text in _TRUE:
        return 1, None
    if text in _FALSE:
        return 0, None
    if blank is not None and text == "":
        return blank, None
    return None, "expected 1, 0 or blank" if blank is not None else "expected 1 or 0"


def _kind(text: str):
    return (KINDS[text], None) if text in KINDS else (None, "expected scored, catch or practice")


def _whole_number(error: str, minimum: int = 0):
    """A cell parser for an optional whole number of at least ``minimum`` (blank: -1), else ``error``."""

    def parse(text: str):
        if text == "":
            return -1, None
        if text.isdigit() and int(text) >= minimum:
            return int(text), None
        return None, error

    return parse


_class = _whole_number("expected a class number (0, 1, ...) or blank")
_position = _whole_number("expected a position in the session (1, 2, ...) or blank")
_exposure = _whole_number("expected an exposure in whole milliseconds (e.g. 500) or blank if untimed", minimum=1)


def read_judgments_csv(path: str | Path) -> Judgments:
    """Judgments from a CSV: the platform's export or any file with the required columns.

    Required columns: ``rater, image, method, chose_generated`` (1, 0 or blank for
    unanswered). Optional: ``trial_kind`` (scored, catch or practice; default
    scored), ``class_index`` (ImageNet class, blank if unknown), ``counted``
    (0 marks a scored answer that did not count), ``experiment`` (one value),
    ``position`` (the trial's place in the rater's session; without it the rows
    are taken in file order), ``exposure_ms`` (how long the pair was shown, blank
    if untimed) and ``focus_lost`` (1 when the rater looked away, blank if
    unknown). Other columns are ignored; the ``flagged`` column of the export is
    too, as flags are recomputed from the catch trials. Raises `JudgmentsError`
    naming the line and column of the first problem.
    """
    path = Path(path)
    name = path.name
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise JudgmentsError(f"cannot read {name}: {exc.strerror or exc}") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if not header:
                raise JudgmentsError(
                    f"{name} is empty: expected a header line with the columns {', '.join(REQUIRED_COLUMNS)}"
                )
            header = [h.strip() for h in header]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise JudgmentsError(
                    f"{name}, line 1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                    f"(the header has: {', '.join(header)})"
                )
            twice = sorted({c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if header.count(c) > 1})
            if twice:
                raise JudgmentsError(f"{name}, line 1: column {twice[0]!r} appears more than once")
            columns = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in header]
            width = len(header)
            # One pass in C, keeping only the needed fields: the last field makes a short row fail with
            # IndexError, and the slice past it is non-empty for a long row. Blank lines are skipped.
            getter = itemgetter(*[header.index(c) for c in columns], width - 1, slice(width, None))
            records = list(map(getter, filter(None, reader)))
        except IndexError:
            raise _width_error(path, width) from None
        except csv.Error as exc:
            raise JudgmentsError(f"{name}, line {reader.line_num}: {exc}") from None
        except UnicodeDecodeError:
            raise JudgmentsError(f"{name} is not UTF-8 text") from None
    if not records:
        raise JudgmentsError(f"{name} has a header but no judgments")
    # Column by column (map(itemgetter) reuses the strings; zip(*records) would build new tuples, 6x slower).
    if any(map(itemgetter(-1), records)):
        raise _width_error(path, width)
    data = {c: list(map(itemgetter(k), records)) for k, c in enumerate(columns)}
    n = len(records)
    del records

    codes = {}
    for column in ("rater", "image", "method"):
        labels, index = _factorize(data[column])
        for k, label in enumerate(labels):
            if not label.strip():
                raise _fail(path, int(np.argmax(index == k)), column,
                            "blank; every trial needs a rater, image and method")
        codes[column] = (index, np.array(labels, dtype=str))
    answer = _mapped(path, "chose_generated", data["chose_generated"], lambda t: _flag(t, blank=-1))
    kind = (_mapped(path, "trial_kind", data["trial_kind"], _kind) if "trial_kind" in data
            else np.full(n, SCORED))
    counted = (_mapped(path, "counted", data["counted"], lambda t: _flag(t, blank=1)) != 0 if "counted" in data
               else np.ones(n, dtype=bool))
    class_index = (_mapped(path, "class_index", data["class_index"], _class) if "class_index" in data
                   else np.full(n, -1))
    position = _mapped(path, "position", data["position"], _position) if "position" in data else None
    exposure = _mapped(path, "exposure_ms", data["exposure_ms"], _exposure) if "exposure_ms" in data else None
    focus_lost = (_mapped(path, "focus_lost", data["focus_lost"], lambda t: _flag(t, blank=-1))
                  if "focus_lost" in data else None)
    experiment = None
    if "experiment" in data:
        slugs = sorted(dict.fromkeys(data["experiment"]))
        if len(slugs) > 1:
            raise JudgmentsError(f"{name} holds trials of {len(slugs)} experiments ({', '.join(slugs[:5])}); "
                                 "report one experiment at a time")
        experiment = slugs[0] or None
    return Judgments(
        rater=codes["rater"][0], rater_labels=codes["rater"][1], image=codes["image"][0],
        image_labels=codes["image"][1], method=codes["method"][0], method_labels=codes["method"][1],
        kind=kind.astype(np.int8), answer=answer.astype(np.int8), class_index=class_index.astype(np.int64),
        counted=counted.astype(bool), source=f"CSV file {name}", title=experiment or name, experiment=experiment,
        position=position, exposure=exposure, focus_lost=focus_lost,
    )


def experiment_judgments(experiment) -> tuple[Judgments, dict]:
    """Answered scored and catch trials of ``experiment``, and the counts of the trials left out.

    Late scored answers (``counted`` False) are in the judgments, for the staircases
    they moved; the VTT leaves them out.
    """
    rows = selectors.judgments(experiment=experiment, kinds=(Trial.Kind.SCORED, Trial.Kind.CATCH), late=True)
    trials = Trial.objects.filter(rater__experiment=experiment)
    left_out = trials.aggregate(
        practice=Count("id", filter=Q(kind=Trial.Kind.PRACTICE)),
        unanswered=Count("id", filter=~Q(kind=Trial.Kind.PRACTICE) & Q(answered__isnull=True)),
        not_counted=Count("id", filter=Q(kind=Trial.Kind.SCORED, answered__isnull=False, counted=False)),
    )
    judgments = Judgments.from_columns(
        rater=np.array([r["rater"] for r in rows], dtype=str),
        image=np.array([r["image"] for r in rows], dtype=str),
        method=np.array([r["method"] for r in rows], dtype=str),
        kind=np.array([KINDS[r["trial_kind"]] for r in rows], dtype=np.int8),
        answer=np.array([int(bool(r["chose_generated"])) for r in rows], dtype=np.int8),
        class_index=np.array([-1 if r["class_index"] is None else r["class_index"] for r in rows], dtype=np.int64),
        counted=np.array([r["counted"] for r in rows], dtype=bool),
        source=f"experiment {experiment.slug}", title=experiment.title, experiment=experiment.slug,
        position=np.array([r["position"] for r in rows], dtype=np.int64),
        exposure=np.array([-1 if r["exposure_ms"] is None else r["exposure_ms"] for r in rows], dtype=np.int64),
        focus_lost=np.array([-1 if r["focus_lost"] is None else int(r["focus_lost"]) for r in rows], dtype=np.int8),
        timing=str(experiment.timing),
    )
    return judgments, left_out


def experiment_methods(experiment) -> dict[str, dict]:
    """Role and provenance of each method of ``experiment``: colorizer, checkpoint, seeds, images."""
    out = {}
    methods = Method.objects.filter(experiment=experiment).annotate(
        n_images=Count("colorizations", distinct=True),
        n_seeds=Count("colorizations__seed", distinct=True),
        seed_min=Min("colorizations__seed"),
    )
    for m in methods:
        out[m.name] = {
            "role": str(m.role),
            "provenance": {
                "kind": m.kind, "colorizer": m.colorizer, "checkpoint_sha256": m.checkpoint_sha256,
                "params": m.params, "n_images": m.n_images, "n_seeds": m.n_seeds,
                "seed": m.seed_min if m.n_seeds == 1 else None,
            },
        }
    return out


def rater_labels(experiment) -> dict[str, str]:
    """Rater token -> what the report shows: the panel id, or the token's first 8 characters."""
    return {token: external or token[:8]
            for token, external in Rater.objects.filter(experiment=experiment).values_list("token", "external_id")}


def published_scores() -> dict:
    """The published numbers of `data/published/vtt.json`, with their sources."""
    return json.loads(PUBLISHED_FILE.read_text(encoding="utf-8"))


# --- the report ---------------------------------------------------------------------------------------------


def _none(x):
    """JSON has no NaN: undefined numbers become None."""
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _groups(codes: np.ndarray, n: int) -> list[np.ndarray]:
    """Indices of each code 0..n-1, by one stable sort (no loop over the judgments)."""
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=n))
    return np.split(order, bounds[:-1])


def _left_out(j: Judgments) -> dict:
    answered = j.answer >= 0
    return {
        "practice": int((j.kind == PRACTICE).sum()),
        "unanswered": int(((j.answer < 0) & (j.kind != PRACTICE)).sum()),
        "not_counted": int((answered & (j.kind == SCORED) & ~j.counted).sum()),
    }


def _rater_section(j: Judgments, quality, scored: np.ndarray, catch: np.ndarray, excluded: np.ndarray,
                   include_flagged: bool, names: dict[str, str]) -> dict:
    """Per rater: scored trials, own VTT, catch trials and flag; and the summary of the exclusions."""
    n_rater = j.rater_labels.size
    scored_per_rater = np.bincount(j.rater[scored], minlength=n_rater)
    fooled_per_rater = np.bincount(j.rater[scored], j.answer[scored], minlength=n_rater)
    per_rater = []
    for q, code in enumerate(quality.raters.tolist()):
        label = str(j.rater_labels[code])
        n = int(scored_per_rater[code])
        per_rater.append({
            "rater": names.get(label, label), "n_scored": n, "vtt": float(fooled_per_rater[code] / n) if n else None,
            "n_catch": int(quality.n_catch[q]), "n_failed": int(quality.n_failed[q]),
            "catch_accuracy": _none(float(quality.catch_accuracy[q])), "flagged": bool(quality.flagged[q]),
        })
    n_m = j.method_labels.size
    n_c = np.bincount(j.method[catch], minlength=n_m)
    ok_c = np.bincount(j.method[catch], 1 - j.answer[catch], minlength=n_m)
    n_catch = int(quality.n_catch.sum())
    flagged_with_scores = quality.flagged & (scored_per_rater[quality.raters] > 0)
    return {
        "n_raters": int(np.count_nonzero(scored_per_rater)), "n_with_catch": int(np.count_nonzero(quality.n_catch)),
        "catch_accuracy": float(1 - quality.n_failed.sum() / n_catch) if n_catch else None,
        "catch_by_method": [{"method": str(j.method_labels[g]), "n_catch": int(n_c[g]),
                             "accuracy": float(ok_c[g] / n_c[g])} for g in np.flatnonzero(n_c)],
        "max_fail_rate": quality.max_fail_rate,
        "rule": f"more than {quality.max_fail_rate:.0%} of their catch trials failed (raters without catch trials "
                "are never flagged)",
        "n_flagged": quality.n_flagged, "flagged_excluded": not include_flagged,
        "n_excluded_raters": 0 if include_flagged else int(flagged_with_scores.sum()),
        "n_excluded_judgments": 0 if include_flagged else int(excluded.sum()),
        "per_rater": per_rater,
    }


def _method_rows(j: Judgments, kept: np.ndarray, methods: dict[str, dict], **interval) -> list[dict]:
    """Per method with kept judgments: VTT and its interval, agreement, role and provenance; tested methods
    first, by VTT, then the controls."""
    y = j.answer[kept].astype(np.float64)
    img, rat, meth = j.image[kept], j.rater[kept], j.method[kept]
    groups = _groups(meth, j.method_labels.size)
    rows = []
    for g in np.flatnonzero(np.bincount(meth, minlength=j.method_labels.size)).tolist():
        idx = groups[g]
        name = str(j.method_labels[g])
        res = evaluation.score(y[idx], img[idx], rat[idx], **interval)
        agree = evaluation.agreement(y[idx], img[idx])
        info = methods.get(name, {})
        role = info.get("role") or CONTROL_ROLES.get(name, "tested")
        rows.append({
            "method": name, "n_trials": res.n_trials, "n_images": res.n_images, "n_raters": res.n_raters,
            "vtt": res.score, "ci_low": _none(res.ci_low), "ci_high": _none(res.ci_high),
            "ci_method": res.method, "confidence": res.confidence, "role": role, "is_control": role != "tested",
            "agreement_alpha": _none(agree.alpha), "agreement_units": agree.n_units,
            "provenance": info.get("provenance"),
        })
    rows.sort(key=lambda r: (r["is_control"], -r["vtt"], r["method"]))
    return rows


def _class_section(j: Judgments, kept: np.ndarray, names: list[str]) -> dict:
    """Per ImageNet class with a known index: images, and trials and raw VTT per method (no intervals)."""
    section = {"methods": names, "rows": []}
    known = kept & (j.class_index >= 0)
    if not known.any():
        return section
    class_ids, class_code = np.unique(j.class_index[known], return_inverse=True)
    class_code = class_code.ravel()
    n_m, n_i = j.method_labels.size, j.image_labels.size
    cell = class_code * n_m + j.method[known]
    n_t = np.bincount(cell, minlength=class_ids.size * n_m).reshape(-1, n_m)
    n_y = np.bincount(cell, j.answer[known], minlength=class_ids.size * n_m).reshape(-1, n_m)
    class_image = np.unique(class_code * n_i + j.image[known])  # sorted: by class, then image
    n_img = np.bincount(class_image // n_i, minlength=class_ids.size)
    first = class_image[np.r_[0, np.cumsum(n_img)[:-1]]] % n_i
    columns = [int(np.flatnonzero(j.method_labels == name)[0]) for name in names]
    for c, class_id in enumerate(class_ids.tolist()):
        wnid = _WNID.search(str(j.image_labels[first[c]]))
        section["rows"].append({
            "class_index": class_id, "wnid": wnid.group(0) if wnid else None, "n_images": int(n_img[c]),
            "cells": [{"n_trials": int(n_t[c, g]), "vtt": float(n_y[c, g] / n_t[c, g]) if n_t[c, g] else None}
                      for g in columns],
        })
    return section


def _staircase_trials(j: Judgments, keep: np.ndarray) -> np.ndarray:
    """Indices of the timed answered scored trials in ``keep`` (late answers too), by rater, position, row."""
    timed = np.flatnonzero(keep & (j.answer >= 0) & (j.kind == SCORED) & (j.exposure > 0))
    return timed[np.lexsort((timed, j.position[timed], j.rater[timed]))]


def _is_staircase(j: Judgments, trials: np.ndarray) -> bool:
    """The judgments' timing, or for unknown timing (a CSV): does any (rater, method) show two exposures?"""
    if j.timing is not None:
        return j.timing == STAIRCASE
    if trials.size == 0:
        return False
    key = j.rater[trials].astype(np.int64) * j.method_labels.size + j.method[trials]
    pairs = np.unique(np.stack([key, j.exposure[trials]]), axis=1)[0]
    return bool(np.unique(pairs).size < pairs.size)


def _thresholds(j: Judgments, trials: np.ndarray, rows: list[dict], *, confidence: float, n_boot: int,
                seed: int) -> dict:
    """HYPE_time per method row (added to the rows), and the section that describes them."""
    meth = j.method[trials]
    for row in rows:
        g = int(np.flatnonzero(j.method_labels == row["method"])[0])
        idx = trials[meth == g]
        row.update(NO_THRESHOLD)
        if not idx.size:
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            res = evaluation.hype_time(j.exposure[idx], j.rater[idx], confidence=confidence, n_boot=n_boot,
                                       seed=seed)
        for w in caught:
            warnings.warn(f"{row['method']}, threshold exposure: {w.message}", w.category, stacklevel=2)
        row.update(threshold_ms=res.score, threshold_ci_low=_none(res.ci_low), threshold_ci_high=_none(res.ci_high),
                   threshold_n_raters=res.n_raters, threshold_n_trials=res.n_trials)
    return {
        "n_trials": int(trials.size),
        "n_late": int((~j.counted[trials]).sum()),
        "rule": f"{staircase.DOWN_AFTER}-down/1-up staircase per rater and method, {staircase.START_MS} ms at the "
                f"start, {staircase.FLOOR_MS} to {staircase.CEILING_MS} ms in steps of {staircase.STEP_MS} ms",
        "estimator": "each rater's threshold is the mean exposure over the second half of their staircase's "
                     "trials; a method's is the mean over its raters, with a percentile bootstrap interval over "
                     "raters",
    }


def build_report(judgments: Judgments, *, methods: dict[str, dict] | None = None, ci_method: str = "bootstrap",
                 confidence: float = 0.95, n_boot: int = 2000, seed: int = 0, compare_method: str = "bootstrap",
                 include_flagged: bool = False, max_fail_rate: float = 0.25, left_out: dict | None = None,
                 published: bool = False, rater_names: dict[str, str] | None = None,
                 exclude_looked_away: bool = False) -> dict:
    """Score every method, compare every pair, and describe raters, classes and what was left out.

    ``methods`` maps a method name to its ``role`` (tested, calibration or catch) and
    ``provenance``; names not in it get the role of the registered control of that
    name, else tested. ``left_out`` counts the trials the judgments do not hold
    (practice, unanswered, not counted); by default they are counted in the
    judgments. ``exclude_looked_away`` leaves out the scored trials during which
    the page lost focus (``focus_lost``), from the VTT and the thresholds alike;
    ``left_out["looked_away"]`` counts them (those of raters already left out as
    flagged aside). Raises ValueError (from `evaluation`) for invalid settings.
    The warnings of `evaluation` (degenerate intervals, empty resamples) become
    the report's ``notes``.

    With staircase timing (``judgments.timing``; for unknown timing, when some
    rater's staircase of a method shows more than one exposure) every method row
    gets ``threshold_ms`` with ``threshold_ci_low``, ``threshold_ci_high``,
    ``threshold_n_raters`` and ``threshold_n_trials`` (`evaluation.hype_time` of
    its staircases), and ``report["staircase"]`` describes them; otherwise these
    are None.
    """
    j = judgments
    answered = j.answer >= 0
    catch = answered & (j.kind == CATCH)
    scored = answered & (j.kind == SCORED) & j.counted
    left = {**(_left_out(j) if left_out is None else left_out), "catch": int(catch.sum())}
    looked_away = answered & (j.kind == SCORED) & (j.focus_lost == 1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        # Raters are judged on their answered catch and scored trials.
        used = catch | scored
        quality = evaluation.quality(j.rater[used], catch[used], 1 - j.answer[used], max_fail_rate=max_fail_rate)
        flagged = np.zeros(j.rater_labels.size, dtype=bool)
        flagged[quality.raters[quality.flagged]] = True
        excluded = scored & flagged[j.rater]
        raters_kept = np.ones(j.rater.size, dtype=bool) if include_flagged else ~flagged[j.rater]
        looked_away_kept = scored & looked_away & raters_kept  # before the option takes them out
        if exclude_looked_away:
            raters_kept &= ~looked_away
        kept = scored & raters_kept
        raters = _rater_section(j, quality, scored, catch, excluded, include_flagged, rater_names or {})
        rows = _method_rows(j, kept, methods or {}, method=ci_method, confidence=confidence, n_boot=n_boot,
                            seed=seed)
        stair_trials = _staircase_trials(j, raters_kept)
        stairs = None
        if _is_staircase(j, stair_trials):
            stairs = _thresholds(j, stair_trials, rows, confidence=confidence, n_boot=n_boot, seed=seed)
        else:
            for row in rows:
                row.update(NO_THRESHOLD)
        comparisons = []
        if len(rows) >= 2:  # every pair of the scored methods, in table order, Holm-adjusted together
            order = [r["method"] for r in rows]
            results = evaluation.compare_all(
                j.answer[kept], j.image[kept], j.rater[kept], j.method_labels[j.method[kept]],
                pairs=[(a, b) for i, a in enumerate(order) for b in order[i + 1:]], method=compare_method,
                confidence=confidence, n_boot=n_boot, seed=seed,
            )
            comparisons = [{k: _none(v) for k, v in vars(c).items()} for c in results]
    notes = []
    for w in caught:
        if not issubclass(w.category, RuntimeWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif str(w.message) not in notes:
            notes.append(str(w.message))

    report = {
        "title": j.title, "experiment": j.experiment, "source": j.source,
        "settings": {"ci_method": ci_method, "confidence": confidence, "n_boot": n_boot, "seed": seed,
                     "compare_method": compare_method, "include_flagged": include_flagged,
                     "max_fail_rate": float(max_fail_rate), "exclude_looked_away": exclude_looked_away},
        "n_judgments": int(kept.sum()), "n_images": int(np.unique(j.image[kept]).size),
        "n_raters": int(np.unique(j.rater[kept]).size),
        "methods": rows, "comparisons": comparisons, "raters": raters,
        "classes": _class_section(j, kept, [r["method"] for r in rows]),
        "left_out": {**left, "flagged_raters": raters["n_excluded_raters"],
                     "judgments_of_flagged_raters": raters["n_excluded_judgments"],
                     "looked_away": int(looked_away_kept.sum()) if exclude_looked_away else 0},
        # Scored judgments (of the raters kept) during which the page lost focus, left out or not.
        "looked_away": {"n_judgments": int(looked_away_kept.sum()), "excluded": exclude_looked_away},
        "staircase": stairs,
        "notes": notes,
    }
    if published:
        report["published"] = published_scores()
    return report


def table_fields(report: dict) -> list[str]:
    """The columns of the per-method table: the documented fields, the thresholds with a staircase, then role."""
    return [*TABLE_FIELDS, *(THRESHOLD_FIELDS if report.get("staircase") else []), "role"]


def table_rows(report: dict) -> list[dict]:
    """The per-method table, with the columns of `table_fields`."""
    fields = table_fields(report)
    return [{k: row[k] for k in fields} for row in report["methods"]]


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, allow_nan=False)


# --- the figure and the HTML ---------------------------------------------------------------------------------


def _pct(x, digits=1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def figure_svg(report: dict) -> str:
    """VTT per method with its interval and the 50% line, as a self-contained inline SVG."""
    ours = report["methods"]
    published = report.get("published", {}).get("scores", []) if report.get("published") else []
    sections = [r for r in ours if not r["is_control"]], [r for r in ours if r["is_control"]]
    labels = [r["method"] + (f" ({r['role']} control)" if r["is_control"] else "") for r in ours]
    labels += [p["method"] for p in published]
    # About 7.3 px per character of 13 px sans-serif text.
    label_w = int(max(150, min(330, 7.3 * max(map(len, labels), default=10) + 24)))
    plot_w, right, row_h, top, bottom, gap, header = 440, 20, 26, 34, 44, 12, 20
    n_rows = len(ours) + len(published)
    gaps = sum(1 for s in (*sections, published) if s) - 1
    height = top + row_h * n_rows + gap * max(gaps, 0) + (header if published else 0) + bottom
    width = label_w + plot_w + right
    highs = [r["ci_high"] if r["ci_high"] is not None else r["vtt"] for r in ours] + [p["vtt"] for p in published]
    x_max = min(1.0, max(0.6, math.ceil(max(highs, default=0.5) * 10 - 1e-9) / 10))

    def x(v: float) -> float:
        return round(label_w + plot_w * v / x_max, 1)

    level = f"{report['settings']['confidence']:.0%}"
    parts = [
        f'<svg class="vtt-figure" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="vtt-figure-title" '
        'font-family="system-ui, sans-serif" font-size="13">',
        f'<title id="vtt-figure-title">VTT score per method with its {level} interval; 50% means the colorized '
        'image could not be told from the real one</title>',
    ]
    plot_bottom = height - bottom
    for tick in range(0, int(round(x_max * 10)) + 1):
        v = tick / 10
        parts.append(f'<line x1="{x(v)}" y1="{top - 6}" x2="{x(v)}" y2="{plot_bottom}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{x(v)}" y="{plot_bottom + 16}" text-anchor="middle" fill="#555">{tick * 10}%</text>')
    parts.append(f'<text x="{label_w + plot_w / 2}" y="{plot_bottom + 36}" text-anchor="middle" fill="#333">'
                 'VTT: trials in which the colorized image was picked as the real one</text>')
    parts.append(f'<line class="vtt-fifty" x1="{x(0.5)}" y1="{top - 10}" x2="{x(0.5)}" y2="{plot_bottom}" '
                 'stroke="#b00020" stroke-width="1.5" stroke-dasharray="5 4"/>')
    parts.append(f'<text x="{x(0.5)}" y="{top - 14}" text-anchor="middle" fill="#b00020">50%: indistinguishable</text>')

    y_pos = top
    for section in (*sections, published):
        if not section:
            continue
        if y_pos > top:
            y_pos += gap
        if section is published:
            parts.append(f'<text class="vtt-published-label" x="{label_w - 10}" y="{y_pos + 14}" text-anchor="end" '
                         f'fill="#666">{escape(report["published"]["label"])}:</text>')
            y_pos += header
        for row in section:
            cy = y_pos + row_h / 2
            if section is published:
                label = row["method"]
                tip = f"{row['method']}: {row['reported']}, {row['source']}; {report['published']['label']}"
                cx = x(row["vtt"])
                parts.append(
                    f'<g class="vtt-published" data-method="{escape(row["method"])}"><title>{escape(tip)}</title>'
                    f'<text x="{label_w - 10}" y="{cy + 4}" text-anchor="end" fill="#666" font-style="italic">'
                    f'{escape(label)}</text>'
                    f'<path d="M{cx} {cy - 6} L{cx + 6} {cy} L{cx} {cy + 6} L{cx - 6} {cy} Z" fill="white" '
                    'stroke="#666" stroke-width="1.5"/></g>'
                )
            else:
                colour = "#777" if row["is_control"] else "#1f4e9c"
                label = row["method"] + (f" ({row['role']} control)" if row["is_control"] else "")
                tip = (f"{row['method']}: VTT {_pct(row['vtt'])}, {level} interval [{_pct(row['ci_low'])}, "
                       f"{_pct(row['ci_high'])}] ({row['ci_method']}), {row['n_trials']} trials")
                mark = [f'<g class="vtt-mark" data-method="{escape(row["method"])}"><title>{escape(tip)}</title>',
                        f'<text x="{label_w - 10}" y="{cy + 4}" text-anchor="end" fill="#222">{escape(label)}</text>']
                if row["ci_low"] is not None and row["ci_high"] is not None:
                    lo, hi = x(row["ci_low"]), x(row["ci_high"])
                    mark.append(f'<line x1="{lo}" y1="{cy}" x2="{hi}" y2="{cy}" stroke="{colour}" stroke-width="2"/>')
                    for end in (lo, hi):
                        mark.append(f'<line x1="{end}" y1="{cy - 5}" x2="{end}" y2="{cy + 5}" stroke="{colour}" '
                                    'stroke-width="2"/>')
                mark.append(f'<circle cx="{x(row["vtt"])}" cy="{cy}" r="5" fill="{colour}"/></g>')
                parts.extend(mark)
            y_pos += row_h
    parts.append("</svg>")
    return "\n".join(parts)


def html_context(report: dict) -> dict:
    """What ``templates/vtt/_report_body.html`` needs, under the single key ``vtt_report``.

    Keys of ``vtt_report``: ``title``, ``source``, ``settings`` (with ``level``, e.g.
    "95%"), ``figure`` (safe SVG), ``methods`` and ``controls`` (rows with
    formatted ``vtt_text``, ``interval_text``, ``alpha_text``), ``comparisons``,
    ``raters`` (with ``flagged_rows``), ``left_out``, ``looked_away``, ``staircase``
    (None without adaptive exposures; the method rows then have ``threshold_text`` and
    ``threshold_interval_text``), ``classes``, ``provenance``, ``published`` (or None)
    and ``notes``; the report dict itself is ``data``.
    """
    level = f"{report['settings']['confidence']:.0%}"

    def method_row(row):
        alpha = row.get("agreement_alpha")
        low, high = row.get("threshold_ci_low"), row.get("threshold_ci_high")
        return {**row, "vtt_text": _pct(row["vtt"]),
                "interval_text": f"{_pct(row['ci_low'])} to {_pct(row['ci_high'])}",
                "alpha_text": "n/a" if alpha is None else f"{alpha:.2f}",
                "threshold_text": "n/a" if row.get("threshold_ms") is None else f"{row['threshold_ms']:.0f} ms",
                "threshold_interval_text": "n/a" if low is None else f"{low:.0f} to {high:.0f} ms"}

    def p_text(p):
        return "n/a" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")

    comparisons = [{**c, "difference_text": f"{100 * c['difference']:+.1f} pts",
                    "interval_text": "n/a" if c["ci_low"] is None else
                    f"{100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f}",
                    "p_text": p_text(c["pvalue"]), "p_holm_text": p_text(c["pvalue_holm"]),
                    "significant": c["pvalue_holm"] is not None and c["pvalue_holm"] < 1 - report["settings"]["confidence"]}
                   for c in report["comparisons"]]
    raters = report["raters"]
    flagged = [{**r, "accuracy_text": _pct(r["catch_accuracy"], 0)} for r in raters["per_rater"] if r["flagged"]]
    provenance = []
    for row in report["methods"]:
        p = row.get("provenance") or {}
        seed = p.get("seed")
        provenance.append({
            "method": row["method"], "role": row["role"], "known": bool(p), "kind": p.get("kind", ""),
            "colorizer": p.get("colorizer", ""), "checkpoint": p.get("checkpoint_sha256", ""),
            "checkpoint_short": (p.get("checkpoint_sha256") or "")[:12],
            "seed_text": "" if not p else (str(seed) if seed is not None else
                                           f"{p.get('n_seeds', 0)} seeds, one per image (derived from the run seed)"),
            "n_images": p.get("n_images", ""), "params": json.dumps(p.get("params") or {}, sort_keys=True),
        })
    classes = report["classes"]
    class_rows = [{**c, "cells": [None if cell["vtt"] is None else f"{_pct(cell['vtt'], 0)} ({cell['n_trials']})"
                                  for cell in c["cells"]]} for c in classes["rows"]]
    published = report.get("published")
    if published:
        published = {**published, "scores": [{**s, "vtt_text": _pct(s["vtt"], 2)} for s in published["scores"]]}
    return {"vtt_report": {
        "data": report, "title": report["title"], "source": report["source"],
        "settings": {**report["settings"], "level": level, "alpha": f"{1 - report['settings']['confidence']:.3g}"},
        "n_judgments": report["n_judgments"], "n_images": report["n_images"], "n_raters": report["n_raters"],
        "figure": mark_safe(figure_svg(report)) if report["methods"] else "",
        "methods": [method_row(r) for r in report["methods"] if not r["is_control"]],
        "controls": [method_row(r) for r in report["methods"] if r["is_control"]],
        "comparisons": comparisons, "n_pairs": len(comparisons),
        "raters": {**raters, "flagged_rows": flagged[:50], "flagged_more": max(0, len(flagged) - 50),
                   "catch_accuracy_text": _pct(raters["catch_accuracy"]),
                   "catch_by_method": [{**c, "accuracy_text": _pct(c["accuracy"])} for c in raters["catch_by_method"]]},
        "left_out": report["left_out"], "classes": {"methods": classes["methods"], "rows": class_rows},
        "provenance": provenance, "published": published, "notes": report["notes"],
        "looked_away": report["looked_away"], "staircase": report["staircase"],
    }}


def render_html(report: dict) -> str:
    """The whole report as one self-contained HTML page (inline style and SVG, no external assets)."""
    return render_to_string("vtt/report.html", html_context(report))


def experiment_report(experiment, *, include_flagged: bool = False, ci_method: str = "bootstrap",
                      confidence: float = 0.95, n_boot: int = 2000, seed: int = 0, compare_method: str = "bootstrap",
                      max_fail_rate: float | None = None, published: bool = False,
                      exclude_looked_away: bool = False) -> dict:
    """The report of an experiment from the database; flags use its ``catch_fail_threshold``."""
    judgments, left_out = experiment_judgments(experiment)
    if max_fail_rate is None:
        max_fail_rate = experiment.catch_fail_threshold
    return build_report(
        judgments, methods=experiment_methods(experiment), ci_method=ci_method, confidence=confidence,
        n_boot=n_boot, seed=seed, compare_method=compare_method, include_flagged=include_flagged,
        max_fail_rate=max_fail_rate, left_out=left_out, published=published, rater_names=rater_labels(experiment),
        exclude_looked_away=exclude_looked_away,
    )


def experiment_context(experiment, **options) -> dict:
    """Context for ``{% include "vtt/_report_body.html" %}`` on a staff page: ``{"vtt_report": ...}``.

    ``options`` as for `experiment_report` (e.g. ``n_boot=500`` for a faster page).
    """
    return html_context(experiment_report(experiment, **options))
