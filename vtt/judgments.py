"""Reading judgments: trials as `Judgments` columns, from a CSV file or from the database.

`read_judgments_csv` reads the platform's export, or any CSV with the columns
``rater, image, method, chose_generated`` and optionally ``trial_kind``,
``class_index``, ``counted``, ``experiment``, ``position``, ``exposure_ms``,
``focus_lost``, ``pilot``; a problem is a `JudgmentsError` naming the line and column.
`experiment_judgments` reads an experiment's answered trials, `experiment_methods`
its methods' roles and provenance, `rater_labels` what a report calls its raters.

Both readers work column by column: the loops over the trials run in C (`bytes.split`,
``dict.fromkeys``, ``map``, numpy), the Python code once per distinct value (a rater,
an image, a cell's text). A plain CSV (no quotes, no carriage returns) is split by
`bytes.split`; any other is read by the `csv` module, which also finds the line of a
malformed row. The cyclic garbage collector is paused while millions of values are
built (it would rescan them, to no purpose, dozens of times).
"""
from __future__ import annotations

import csv
import gc
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import repeat
from operator import itemgetter
from pathlib import Path

import numpy as np
from django.db.models import Count, Min

from . import selectors
from .models import Method, Rater

SCORED, CATCH, PRACTICE = 0, 1, 2
KINDS = {"scored": SCORED, "catch": CATCH, "practice": PRACTICE}
REQUIRED_COLUMNS = ("rater", "image", "method", "chose_generated")
OPTIONAL_COLUMNS = ("trial_kind", "class_index", "counted", "experiment", "position", "exposure_ms", "focus_lost",
                    "pilot")
_TRUE, _FALSE = {"1", "true", "True", "TRUE"}, {"0", "false", "False", "FALSE"}
# Rows per piece of a plain CSV split at once: bounds the memory of the split fields.
_CHUNK_ROWS = 100_000


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
    unknown), ``pilot`` True for a trial of a rater who started during the
    experiment's pilot (all False when not known: a CSV without the column);
    ``timing`` is the experiment's (``fixed`` or ``staircase``), None when
    not known (a CSV). Labels are sorted, so that the codes (and hence the bootstrap
    draws) do not depend on the order of the trials.
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
    pilot: np.ndarray | None = None

    def __post_init__(self):
        n = self.rater.size
        for name, dtype in (("position", np.int64), ("exposure", np.int64), ("focus_lost", np.int8)):
            values = getattr(self, name)
            object.__setattr__(self, name, np.full(n, -1, dtype=dtype) if values is None
                               else np.asarray(values, dtype=dtype))
        object.__setattr__(self, "pilot", np.zeros(n, dtype=bool) if self.pilot is None
                           else np.asarray(self.pilot, dtype=bool))

    def without_pilot(self) -> "Judgments":
        """The same judgments without the trials of pilot raters; labels are kept (a method or image that only
        the pilot judged keeps its label, with no trial)."""
        keep = ~self.pilot
        if keep.all():
            return self
        arrays = ("rater", "image", "method", "kind", "answer", "class_index", "counted", "position", "exposure",
                  "focus_lost", "pilot")
        return replace(self, **{name: getattr(self, name)[keep] for name in arrays})

    def __len__(self) -> int:
        return self.rater.size


@contextmanager
def no_cyclic_gc():
    """Pause the cyclic garbage collector (reference counting still frees everything) and restore it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- the CSV file -------------------------------------------------------------------------------------------


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


def _text(label: str | bytes) -> str:
    return label.decode("utf-8") if isinstance(label, bytes) else label


def _factorize(column: list) -> tuple[list[str], np.ndarray]:
    """The sorted distinct values of a column (as text) and the index of each entry among them.

    Entries are str, or bytes of UTF-8 text (whose byte order is the order of the text);
    the loops over the entries run in C (``dict.fromkeys``, ``map``), the Python ones over
    distinct values.
    """
    labels = sorted(dict.fromkeys(column))
    index = {label: i for i, label in enumerate(labels)}
    codes = np.fromiter(map(index.__getitem__, column), dtype=np.int64, count=len(column))
    return [_text(label) for label in labels], codes


def _mapped(path: Path, column: str, values: list, convert) -> np.ndarray:
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


def _header_columns(name: str, header: list[str] | None) -> list[str]:
    """The known columns the header names, in REQUIRED_COLUMNS + OPTIONAL_COLUMNS order; errors for a bad header."""
    if not header:
        raise JudgmentsError(
            f"{name} is empty: expected a header line with the columns {', '.join(REQUIRED_COLUMNS)}"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise JudgmentsError(
            f"{name}, line 1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(the header has: {', '.join(header)})"
        )
    twice = sorted({c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if header.count(c) > 1})
    if twice:
        raise JudgmentsError(f"{name}, line 1: column {twice[0]!r} appears more than once")
    return [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in header]


def _plain_columns(data: bytes) -> tuple[list[str], dict[str, list[bytes]]] | None:
    """The header and the known columns of a plain CSV, split by `bytes.split`; None when the file is not plain.

    Plain: UTF-8, no quote, carriage return or NUL, no field longer than the `csv` module's
    limit, and every non-blank line with as many fields as the header. On those the `csv`
    module splits exactly at the commas and newlines, so this gives the same fields; for
    any other file (or to name the line of a problem) the caller reads it with the `csv` module.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b'"' in data or b"\r" in data or b"\0" in data:
        return None
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    lines = data.split(b"\n")
    header = next(csv.reader([lines[0].decode("utf-8")]), None)
    if not header:
        return None
    header = [h.strip() for h in header]
    lines = list(filter(None, lines[1:]))
    width = len(header)
    commas = np.fromiter(map(bytes.count, lines, repeat(b",")), dtype=np.int64, count=len(lines))
    if np.any(commas != width - 1) or max(map(len, lines), default=0) > csv.field_size_limit():
        return None
    wanted = {c: header.index(c) for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if header.count(c) == 1}
    columns: dict[str, list[bytes]] = {c: [] for c in wanted}
    for start in range(0, len(lines), _CHUNK_ROWS):
        fields = b",".join(lines[start:start + _CHUNK_ROWS]).split(b",")  # row-major, `width` per row
        for c, k in wanted.items():
            columns[c].extend(fields[k::width])
    return header, columns


def _csv_columns(path: Path, name: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header and the known columns of any CSV, by the `csv` module; errors name the line."""
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise JudgmentsError(f"cannot read {name}: {exc.strerror or exc}") from None
    with f:
        reader = csv.reader(f)
        width = 0
        try:
            header = next(reader, None)
            header = [h.strip() for h in header] if header else header
            columns = _header_columns(name, header)
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
    if any(map(itemgetter(-1), records)):
        raise _width_error(path, width)
    # Column by column (map(itemgetter) reuses the strings; zip(*records) would build new tuples, 6x slower).
    return header, {c: list(map(itemgetter(k), records)) for k, c in enumerate(columns)}


def read_judgments_csv(path: str | Path) -> Judgments:
    """Judgments from a CSV: the platform's export or any file with the required columns.

    Required columns: ``rater, image, method, chose_generated`` (1, 0 or blank for
    unanswered). Optional: ``trial_kind`` (scored, catch or practice; default
    scored), ``class_index`` (ImageNet class, blank if unknown), ``counted``
    (0 marks a scored answer that did not count), ``experiment`` (one value),
    ``position`` (the trial's place in the rater's session; without it the rows
    are taken in file order), ``exposure_ms`` (how long the pair was shown, blank
    if untimed) and ``focus_lost`` (1 when the rater looked away, blank if
    unknown), ``pilot`` (1 for a trial of a rater who started during the pilot;
    without the column no rater is pilot). Other columns are ignored; the ``flagged`` column of the export is
    too, as flags are recomputed from the catch trials. Raises `JudgmentsError`
    naming the line and column of the first problem.
    """
    path = Path(path)
    name = path.name
    with no_cyclic_gc():
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise JudgmentsError(f"cannot read {name}: {exc.strerror or exc}") from None
        plain = _plain_columns(raw)
        del raw
        if plain is not None:
            header, data = plain
            _header_columns(name, header)
        else:
            header, data = _csv_columns(path, name)
        return _judgments(path, data)


def _judgments(path: Path, data: dict[str, list]) -> Judgments:
    """`Judgments` from the text columns of a CSV (str, or bytes of UTF-8 text); errors name the line and column."""
    name = path.name
    n = len(data["rater"])
    if not n:
        raise JudgmentsError(f"{name} has a header but no judgments")
    codes = {}
    for column in ("rater", "image", "method"):
        labels, index = _factorize(data.pop(column))
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
    pilot = _mapped(path, "pilot", data["pilot"], lambda t: _flag(t, blank=0)) != 0 if "pilot" in data else None
    experiment = None
    if "experiment" in data:
        slugs = sorted(map(_text, set(data["experiment"])))
        if len(slugs) > 1:
            raise JudgmentsError(f"{name} holds trials of {len(slugs)} experiments ({', '.join(slugs[:5])}); "
                                 "report one experiment at a time")
        experiment = slugs[0] or None
    return Judgments(
        rater=codes["rater"][0], rater_labels=codes["rater"][1], image=codes["image"][0],
        image_labels=codes["image"][1], method=codes["method"][0], method_labels=codes["method"][1],
        kind=kind.astype(np.int8), answer=answer.astype(np.int8), class_index=class_index.astype(np.int64),
        counted=counted.astype(bool), source=f"CSV file {name}", title=experiment or name, experiment=experiment,
        position=position, exposure=exposure, focus_lost=focus_lost, pilot=pilot,
    )


# --- the database -------------------------------------------------------------------------------------------


def _coded(ids: np.ndarray, labels: dict[int, str]) -> tuple[np.ndarray, np.ndarray]:
    """Codes into the sorted distinct labels of ``ids`` (database ids, each with its label), and those labels."""
    distinct, inverse = np.unique(ids, return_inverse=True)
    names = np.array([labels[i] for i in distinct.tolist()], dtype=str)
    sorted_names, rank = np.unique(names, return_inverse=True)
    return rank.ravel()[inverse.ravel()], sorted_names


def experiment_judgments(experiment) -> tuple[Judgments, dict]:
    """Answered scored and catch trials of ``experiment``, and the counts of the trials left out.

    Late scored answers (``counted`` False) are in the judgments, for the staircases
    they moved; the VTT leaves them out. Read column by column
    (`selectors.judgment_columns`): raters, images and methods as database ids,
    labelled once each.
    """
    with no_cyclic_gc():
        read = selectors.judgment_columns(experiment=experiment, kinds=tuple(k for k in KINDS if k != "practice"),
                                          late=True)
        columns, labels = read["columns"], read["labels"]
        rater, rater_labels = _coded(columns["rater"], labels["rater"])
        image, image_labels = _coded(columns["image"], labels["image"])
        method, method_labels = _coded(columns["method"], labels["method"])
        kind = np.full(columns["kind"].size, SCORED, dtype=np.int8)
        for value, code in KINDS.items():
            kind[columns["kind"] == value] = code
        judgments = Judgments(
            rater=rater, rater_labels=rater_labels, image=image, image_labels=image_labels, method=method,
            method_labels=method_labels, kind=kind, answer=columns["chose_generated"].astype(np.int8),
            class_index=columns["class_index"], counted=columns["counted"].astype(bool),
            source=f"experiment {experiment.slug}", title=experiment.title, experiment=experiment.slug,
            position=columns["position"], exposure=columns["exposure_ms"], focus_lost=columns["focus_lost"],
            timing=str(experiment.timing), pilot=columns["pilot"],
        )
    return judgments, read["left_out"]


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
