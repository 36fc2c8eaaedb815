"""The VTT report: `Judgments` in, a report dict out; the numbers all come from `evaluation`.

`build_report` scores the judgments (read by `vtt.judgments`), `experiment_report`
does so for an experiment in the database, and `cached_experiment_report` keeps that
report until the experiment's answers change (the staff page). `table_fields`,
`table_rows` and `to_json` give its table and JSON; `vtt.report_figure` draws it and
`vtt.report_html` renders it as HTML. With the stored automatic metrics of the pairs
(``vtt_report --metrics``, the staff page) it adds their section, `vtt.report_metrics`.

The defaults that the command line (`vtt_report`), the staff page and the functions
here share live in one place: `DEFAULT_CI_METHOD` and `CI_METHODS` (each method's
VTT interval), `DEFAULT_COMPARE_METHOD` and `COMPARE_METHODS` (the pairwise
differences), `DEFAULT_N_BOOT`, `DEFAULT_SEED`, `DEFAULT_CONFIDENCE`.

With adaptive exposures (an experiment whose ``timing`` is ``staircase``, HYPE_time)
each method also gets its threshold exposure, `evaluation.hype_time` of its
staircases: each (rater, method)'s answered scored trials in position order, late
answers included (they moved the rater's staircase), with their ``exposure_ms``.

Each warning of an `evaluation` function becomes a note of the report, prefixed with
what it is about: a method (``zhang2016: ...``), its agreement or threshold
(``zhang2016 agreement: ...``, ``zhang2016 threshold: ...``), a pair of methods
(``zhang2016 vs lal2017: ...``), all pairs (``pairwise comparisons: ...``) or the
raters (``rater quality: ...``).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from django.core.cache import cache

import evaluation
from evaluation import staircase

from . import pair_metrics, selectors
from .judgments import (
    CATCH, PRACTICE, SCORED, Judgments, experiment_judgments, experiment_methods, no_cyclic_gc, rater_labels,
)

# The interval of each method's VTT (`evaluation.score`'s ``method``), with what each does, for --help.
CI_METHODS = {
    "cluster": "two-way cluster-robust over images and raters (Cameron, Gelbach and Miller 2011): Wilson's interval at "
               "the effective number of trials, Student's t on the effective number of raters or images minus 1; "
               "calibrated by simulation (BENCHMARKS.md)",
    "bootstrap": "pigeonhole bootstrap over images and raters, its resamples shrunk to the two-way cluster-robust "
                 "variance",
    "pigeonhole": "pigeonhole bootstrap over images and raters, uncorrected (counts the judgment noise three times: "
                  "too wide)",
    "wilson": "Wilson's score interval for independent trials (too narrow when raters and images recur)",
}
DEFAULT_CI_METHOD = "cluster"
COMPARE_METHODS = {
    "cluster": "paired two-way cluster-robust standard error (the same images and raters under both methods) with "
               "Student's t on the effective number of raters or images minus 1",
    "bootstrap": "paired pigeonhole bootstrap (the same images and raters drawn for both methods), its resamples "
                 "shrunk to the two-way cluster-robust variance",
    "pigeonhole": "paired pigeonhole bootstrap, uncorrected (conservative)",
}
DEFAULT_COMPARE_METHOD = "cluster"
# What every VTT score and interval of the report estimates (the report's "estimand").
ESTIMAND = ("the trial-weighted fooling rate: the expected fraction of scored trials in which the rater picks the "
            "colorized image, over the populations of images and raters, every trial counting once (a rater who "
            "answered more trials weighs more)")
DEFAULT_CONFIDENCE = 0.95
DEFAULT_N_BOOT = 2000
DEFAULT_SEED = 0
# Catch-trial failure rate above which a rater is flagged when the judgments do not say (a CSV).
DEFAULT_MAX_FAIL_RATE = 0.25

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
CACHE_PREFIX = "vtt-report:"
_WNID = re.compile(r"\bn\d{8}\b")
_PAIR = re.compile(r"\b(\d+) vs (\d+)\b")
_PAIRS_COUNT = re.compile(r"^(\d+) pair\(s\)")


def published_scores() -> dict:
    """The published numbers of `data/published/vtt.json`, with their sources."""
    return json.loads(PUBLISHED_FILE.read_text(encoding="utf-8"))


def _none(x):
    """JSON has no NaN: undefined numbers become None."""
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


@contextmanager
def _notes(notes: list[str], about):
    """Collect the RuntimeWarnings of the enclosed calls into ``notes``, each as ``"<about>: <message>"``.

    ``about`` is a text, or a function of the message that gives it and the message
    (possibly reworded). Other warnings are passed on; a note already there is not repeated.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        yield
    for w in caught:
        if not issubclass(w.category, RuntimeWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            continue
        label, message = about(str(w.message)) if callable(about) else (about, str(w.message))
        if message.startswith(f"{label}: "):  # the message already names it
            message = message[len(label) + 2:]
        note = f"{label}: {message}"
        if note not in notes:
            notes.append(note)


def _comparison_subject(names: dict[int, str], pairs: list[tuple[int, int]]):
    """For `_notes`: a comparison warning's subject, with the method codes it names replaced by the names.

    The methods go to `evaluation.compare_all` as integer codes (faster to sort than
    names), so a pair appears in its messages as "<code> vs <code>". A message is about
    one pair when only one pair is compared, or when it names one pair and counts no
    more than one; otherwise it is about the "pairwise comparisons".
    """
    compared = set(pairs)

    def about(message: str) -> tuple[str, str]:
        named = []

        def name(match):
            pair = (int(match.group(1)), int(match.group(2)))
            if pair not in compared:
                return match.group(0)
            text = f"{names[pair[0]]} vs {names[pair[1]]}"
            if text not in named:
                named.append(text)
            return text

        message = _PAIR.sub(name, message)
        counted = _PAIRS_COUNT.match(message)
        if len(pairs) == 1:
            return f"{names[pairs[0][0]]} vs {names[pairs[0][1]]}", message
        if len(named) == 1 and (counted is None or int(counted.group(1)) == 1):
            return named[0], message
        return "pairwise comparisons", message

    return about


def _groups(codes: np.ndarray, n: int) -> list[np.ndarray]:
    """Indices of each code 0..n-1, by one stable sort (no loop over the judgments)."""
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=n))
    return np.split(order, bounds[:-1])


def _n_distinct(codes: np.ndarray, n: int) -> int:
    return int(np.count_nonzero(np.bincount(codes, minlength=n)))


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
    labels = j.rater_labels[quality.raters].tolist()
    n_scored = scored_per_rater[quality.raters].tolist()
    fooled = fooled_per_rater[quality.raters].tolist()
    accuracy = quality.catch_accuracy.tolist()
    per_rater = [
        {"rater": names.get(label, label), "n_scored": n, "vtt": f / n if n else None, "n_catch": n_catch,
         "n_failed": n_failed, "catch_accuracy": None if a != a else a, "flagged": flag}
        for label, n, f, n_catch, n_failed, a, flag in zip(
            labels, n_scored, fooled, quality.n_catch.tolist(), quality.n_failed.tolist(), accuracy,
            quality.flagged.tolist())
    ]
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


def _role(methods: dict[str, dict], name: str) -> str:
    """A method's role: as ``methods`` says, else that of the registered control of that name, else tested."""
    return methods.get(name, {}).get("role") or CONTROL_ROLES.get(name, "tested")


def _method_rows(j: Judgments, kept: np.ndarray, methods: dict[str, dict], notes: list[str], **interval) -> list[dict]:
    """Per method with kept judgments: VTT and its interval, agreement, role and provenance; tested methods
    first, by VTT, then the controls."""
    y = j.answer[kept].astype(np.float64)
    img, rat, meth = j.image[kept], j.rater[kept], j.method[kept]
    groups = _groups(meth, j.method_labels.size)
    rows = []
    for g in np.flatnonzero(np.bincount(meth, minlength=j.method_labels.size)).tolist():
        idx = groups[g]
        name = str(j.method_labels[g])
        with _notes(notes, name):
            res = evaluation.score(y[idx], img[idx], rat[idx], **interval)
        with _notes(notes, f"{name} agreement"):
            agree = evaluation.agreement(y[idx], img[idx])
        info = methods.get(name, {})
        role = _role(methods, name)
        rows.append({
            "method": name, "n_trials": res.n_trials, "n_images": res.n_images, "n_raters": res.n_raters,
            "vtt": res.score, "ci_low": _none(res.ci_low), "ci_high": _none(res.ci_high),
            "ci_method": res.method, "confidence": res.confidence, "role": role, "is_control": role != "tested",
            "agreement_alpha": _none(agree.alpha), "agreement_units": agree.n_units,
            "provenance": info.get("provenance"),
        })
    rows.sort(key=lambda r: (r["is_control"], -r["vtt"], r["method"]))
    return rows


def _comparisons(j: Judgments, kept: np.ndarray, rows: list[dict], notes: list[str], **settings) -> list[dict]:
    """Every pair of the scored methods, in table order, Holm-adjusted together (`evaluation.compare_all`)."""
    if len(rows) < 2:
        return []
    code = {str(name): g for g, name in enumerate(j.method_labels.tolist())}
    names = {g: name for name, g in code.items()}
    order = [code[r["method"]] for r in rows]
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]
    with _notes(notes, _comparison_subject(names, pairs)):
        results = evaluation.compare_all(j.answer[kept], j.image[kept], j.rater[kept], j.method[kept],
                                         pairs=pairs, **settings)
    comparisons = []
    for c in results:
        row = {k: _none(v) for k, v in vars(c).items()}
        row["method_a"], row["method_b"] = names[int(c.method_a)], names[int(c.method_b)]
        comparisons.append(row)
    return comparisons


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


def _thresholds(j: Judgments, trials: np.ndarray, rows: list[dict], notes: list[str], *, confidence: float,
                n_boot: int, seed: int) -> dict:
    """HYPE_time per method row (added to the rows), and the section that describes them."""
    meth = j.method[trials]
    for row in rows:
        g = int(np.flatnonzero(j.method_labels == row["method"])[0])
        idx = trials[meth == g]
        row.update(NO_THRESHOLD)
        if not idx.size:
            continue
        with _notes(notes, f"{row['method']} threshold"):
            res = evaluation.hype_time(j.exposure[idx], j.rater[idx], confidence=confidence, n_boot=n_boot,
                                       seed=seed)
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


def build_report(judgments: Judgments, *, methods: dict[str, dict] | None = None,
                 ci_method: str = DEFAULT_CI_METHOD, confidence: float = DEFAULT_CONFIDENCE,
                 n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED,
                 compare_method: str = DEFAULT_COMPARE_METHOD, include_flagged: bool = False,
                 max_fail_rate: float = DEFAULT_MAX_FAIL_RATE, left_out: dict | None = None,
                 published: bool = False, rater_names: dict[str, str] | None = None,
                 exclude_looked_away: bool = False, include_pilot: bool = False, metrics=None) -> dict:
    """Score every method, compare every pair, and describe raters, classes and what was left out.

    ``methods`` maps a method name to its ``role`` (tested, calibration or catch) and
    ``provenance``; names not in it get the role of the registered control of that
    name, else tested. ``left_out`` counts the trials the judgments do not hold
    (practice, unanswered, not counted); by default they are counted in the
    judgments. ``exclude_looked_away`` leaves out the scored trials during which
    the page lost focus (``focus_lost``), from the VTT and the thresholds alike;
    ``left_out["looked_away"]`` counts them (those of raters already left out as
    flagged aside). The trials of pilot raters (``judgments.pilot``: raters who
    started while the experiment was in pilot) are left out of everything, raters
    and flags included, unless ``include_pilot``; ``left_out["pilot_raters"]`` and
    ``left_out["pilot_judgments"]`` (their answered, counted scored trials) count
    them, and ``report["pilot"]`` says so whether they were left out or not. The
    ``left_out`` counts given by the caller (practice, unanswered, not counted) are
    over all raters, pilot included. Raises ValueError (from `evaluation`) for invalid settings.
    The warnings of `evaluation` (degenerate intervals, few clusters) become the
    report's ``notes``, each prefixed with the method, pair or step it is about.

    With staircase timing (``judgments.timing``; for unknown timing, when some
    rater's staircase of a method shows more than one exposure) every method row
    gets ``threshold_ms`` with ``threshold_ci_low``, ``threshold_ci_high``,
    ``threshold_n_raters`` and ``threshold_n_trials`` (`evaluation.hype_time` of
    its staircases), and ``report["staircase"]`` describes them; otherwise these
    are None.

    ``metrics``: the stored automatic metrics of the experiment's pairs
    (`vtt.pair_metrics.table`); with them ``report["metrics"]`` gives each method's
    metrics and their agreement with the VTT (`vtt.report_metrics`), from the same
    judgments as the VTT. Without them there is no such key.
    """
    with no_cyclic_gc():
        return _build_report(judgments, methods=methods, ci_method=ci_method, confidence=confidence, n_boot=n_boot,
                             seed=seed, compare_method=compare_method, include_flagged=include_flagged,
                             max_fail_rate=max_fail_rate, left_out=left_out, published=published,
                             rater_names=rater_names, exclude_looked_away=exclude_looked_away,
                             include_pilot=include_pilot, metrics=metrics)


def _build_report(j: Judgments, *, methods, ci_method, confidence, n_boot, seed, compare_method, include_flagged,
                  max_fail_rate, left_out, published, rater_names, exclude_looked_away, include_pilot,
                  metrics) -> dict:
    pilot_scored = (j.answer >= 0) & (j.kind == SCORED) & j.counted & j.pilot
    pilot = {"n_raters": _n_distinct(j.rater[j.pilot], j.rater_labels.size), "n_judgments": int(pilot_scored.sum()),
             "excluded": not include_pilot}
    if not include_pilot:
        j = j.without_pilot()
    answered = j.answer >= 0
    catch = answered & (j.kind == CATCH)
    scored = answered & (j.kind == SCORED) & j.counted
    left = {**(_left_out(j) if left_out is None else left_out), "catch": int(catch.sum())}
    looked_away = answered & (j.kind == SCORED) & (j.focus_lost == 1)
    notes: list[str] = []

    # Raters are judged on their answered catch and scored trials.
    used = catch | scored
    with _notes(notes, "rater quality"):
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
    rows = _method_rows(j, kept, methods or {}, notes, method=ci_method, confidence=confidence, n_boot=n_boot,
                        seed=seed)
    stair_trials = _staircase_trials(j, raters_kept)
    stairs = None
    if _is_staircase(j, stair_trials):
        stairs = _thresholds(j, stair_trials, rows, notes, confidence=confidence, n_boot=n_boot, seed=seed)
    else:
        for row in rows:
            row.update(NO_THRESHOLD)
    comparisons = _comparisons(j, kept, rows, notes, method=compare_method, confidence=confidence, n_boot=n_boot,
                               seed=seed)

    report = {
        "title": j.title, "estimand": ESTIMAND, "experiment": j.experiment, "source": j.source,
        "settings": {"ci_method": ci_method, "confidence": confidence, "n_boot": n_boot, "seed": seed,
                     "compare_method": compare_method, "include_flagged": include_flagged,
                     "include_pilot": include_pilot,
                     "max_fail_rate": float(max_fail_rate), "exclude_looked_away": exclude_looked_away},
        "n_judgments": int(kept.sum()), "n_images": _n_distinct(j.image[kept], j.image_labels.size),
        "n_raters": _n_distinct(j.rater[kept], j.rater_labels.size),
        "methods": rows, "comparisons": comparisons, "raters": raters,
        "classes": _class_section(j, kept, [r["method"] for r in rows]),
        "left_out": {**left, "flagged_raters": raters["n_excluded_raters"],
                     "judgments_of_flagged_raters": raters["n_excluded_judgments"],
                     "looked_away": int(looked_away_kept.sum()) if exclude_looked_away else 0,
                     "pilot_raters": 0 if include_pilot else pilot["n_raters"],
                     "pilot_judgments": 0 if include_pilot else pilot["n_judgments"]},
        # The pilot's raters and scored judgments, left out or not.
        "pilot": pilot,
        # Scored judgments (of the raters kept) during which the page lost focus, left out or not.
        "looked_away": {"n_judgments": int(looked_away_kept.sum()), "excluded": exclude_looked_away},
        "staircase": stairs,
        "notes": notes,
    }
    if published:
        report["published"] = published_scores()
    if metrics is not None:
        from .report_metrics import metrics_section  # scipy's linear algebra: only for reports that ask

        with _notes(notes, "metrics"):
            roles = {name: _role(methods or {}, name) for name in metrics.methods}
            report["metrics"] = metrics_section(j, kept, rows, metrics, roles=roles, confidence=confidence,
                                                n_boot=n_boot, seed=seed)
    return report


def table_fields(report: dict) -> list[str]:
    """The columns of the per-method table: the documented fields, the thresholds with a staircase, then role."""
    return [*TABLE_FIELDS, *(THRESHOLD_FIELDS if report.get("staircase") else []), "role"]


def table_rows(report: dict) -> list[dict]:
    """The per-method table, with the columns of `table_fields`."""
    fields = table_fields(report)
    return [{k: row[k] for k in fields} for row in report["methods"]]


def to_json(report: dict) -> str:
    """The report as JSON text, indented by 2, each row of the long tables (raters, classes) on one line.

    Those rows (tens of thousands of raters in a large experiment) go through the
    json module's C encoder; its indenting encoder is pure Python, and 10 times slower.
    Undefined numbers are already None.
    """
    nonce = uuid.uuid4().hex
    tables = {}

    def later(rows: list) -> str:
        key = f"rows-{len(tables)}-{nonce}"
        tables[key] = rows
        return key

    outline = {**report, "raters": {**report["raters"], "per_rater": later(report["raters"]["per_rater"])},
               "classes": {**report["classes"], "rows": later(report["classes"]["rows"])}}
    with no_cyclic_gc():
        text = json.dumps(outline, indent=2, allow_nan=False)
        one_line = json.JSONEncoder(separators=(", ", ": "), allow_nan=False).encode
        for key, rows in tables.items():
            at = text.index(f'"{key}"')
            line = text[text.rindex("\n", 0, at) + 1:at]  # the key before it, after the indent
            indent = line[:len(line) - len(line.lstrip(" "))]
            block = ("[\n" + ",\n".join(indent + "  " + one_line(row) for row in rows) + "\n" + indent + "]"
                     if rows else "[]")
            text = text[:at] + block + text[at + len(key) + 2:]
    return text


def experiment_report(experiment, *, include_flagged: bool = False, ci_method: str = DEFAULT_CI_METHOD,
                      confidence: float = DEFAULT_CONFIDENCE, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED,
                      compare_method: str = DEFAULT_COMPARE_METHOD, max_fail_rate: float | None = None,
                      published: bool = False, exclude_looked_away: bool = False, include_pilot: bool = False,
                      judgments: tuple | None = None, metrics: bool = False, features: bool = True) -> dict:
    """The report of an experiment from the database; flags use its ``catch_fail_threshold``; pilot raters are
    left out unless ``include_pilot``. ``judgments``: what `experiment_judgments` returns, when the caller has
    already read it (it is read here otherwise). ``metrics``: add the section of the automatic metrics stored
    for its pairs (`vtt.pair_metrics.table`; nothing is computed here), with FID unless not ``features``."""
    judgments, left_out = experiment_judgments(experiment) if judgments is None else judgments
    if max_fail_rate is None:
        max_fail_rate = experiment.catch_fail_threshold
    return build_report(
        judgments, methods=experiment_methods(experiment), ci_method=ci_method, confidence=confidence,
        n_boot=n_boot, seed=seed, compare_method=compare_method, include_flagged=include_flagged,
        max_fail_rate=max_fail_rate, left_out=left_out, published=published, rater_names=rater_labels(experiment),
        exclude_looked_away=exclude_looked_away, include_pilot=include_pilot,
        metrics=pair_metrics.table(experiment, features=features) if metrics else None,
    )


def cached(experiment, name: str, compute, *depends_on, fingerprint: tuple | None = None):
    """``compute()`` for ``experiment``, kept in Django's cache until its answers (or settings) change.

    The key is `name`, the experiment's `selectors.report_fingerprint`, the report's
    defaults and `depends_on` (whatever else the result reads): a view with the same
    answers, raters, methods and settings reads the value back, a new answer (or
    rater, method, change of the experiment's settings) computes it anew. With the
    default local-memory cache each server process keeps its own copy. ``fingerprint``: the experiment's
    fingerprint when the caller has it already (a page with several cached parts reads it once).
    """
    if fingerprint is None:
        fingerprint = selectors.report_fingerprint(experiment=experiment)
    key = CACHE_PREFIX + hashlib.sha256(repr((
        name, fingerprint, DEFAULT_CI_METHOD, DEFAULT_COMPARE_METHOD,
        DEFAULT_CONFIDENCE, DEFAULT_N_BOOT, DEFAULT_SEED, depends_on,
    )).encode()).hexdigest()
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, timeout=None)
    return value


def cached_experiment_report(experiment, fingerprint: tuple | None = None) -> dict:
    """`experiment_report` with its defaults and the metrics stored for its pairs (those of ``vtt_report
    --experiment SLUG --metrics``, computing nothing, FID aside), once per state of the experiment's answers and
    of its stored metrics (see `cached`)."""
    return cached(experiment, "report", lambda: experiment_report(experiment, metrics=True, features=False),
                  pair_metrics.fingerprint(experiment), fingerprint=fingerprint)
