"""Reads: what the dashboard and the report need, as plain rows (the report's judgments as numpy columns)."""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from operator import itemgetter
from statistics import median

import numpy as np
from django.db import connection, connections
from django.db.models import Case, Count, F, Max, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from .exports import Outcome, rater_outcome
from .models import Colorization, Experiment, ExperimentImage, Method, Rater, Slot, Trial


def judgment_columns(*, experiment: Experiment, kinds: tuple[str, ...] = (Trial.Kind.SCORED,),
                     late: bool = False) -> dict:
    """The answered trials of ``kinds`` as numpy columns, in rater then position order, for a report.

    Returns ``{"columns": ..., "labels": ..., "left_out": ...}``. Columns, one entry
    per trial: ``rater``, ``image`` (the experiment image) and ``method`` as database
    ids, ``kind`` (the trial kind's text), ``chose_generated`` (1 or 0),
    ``class_index`` (-1 unknown), ``counted``, ``position``, ``exposure_ms`` (-1
    untimed), ``focus_lost`` (1, 0, -1 unknown), ``pilot`` (True for a trial of a
    rater who started during the pilot; from the raters' ids, no join per trial). ``labels`` maps each of ``rater``,
    ``image``, ``method`` from id to its token, source path or name. ``left_out``
    counts the trials of the experiment that are not judgments: ``practice``,
    ``unanswered`` (not practice) and ``not_counted`` (late scored answers). Scored
    trials count only when their answer filled one of the pair's K places;
    ``late=True`` also returns the others (``counted`` False), which still moved the
    rater's staircase.
    """
    trials = Trial.objects.filter(rater__experiment=experiment)
    rows = trials.filter(kind__in=kinds, answered__isnull=False)
    if not late:
        rows = rows.exclude(kind=Trial.Kind.SCORED, counted=False)
    # The trials' own columns only: a join per trial (colorization, image, source) would triple the time;
    # the colorizations' images and methods are looked up below, once per colorization.
    rows = rows.order_by("rater_id", "position").values_list(
        "rater_id", "colorization_id", "kind", Case(When(choice=F("real_side"), then=Value(0)), default=Value(1)),
        "counted", "position", Coalesce("exposure_ms", Value(-1)),
        Case(When(focus_lost__isnull=True, then=Value(-1)), When(focus_lost=True, then=Value(1)), default=Value(0)),
    )
    # Every value is already what the columns hold (the expressions are computed by the database): the cursor's
    # tuples as they come, without the per-row conversions of a queryset.
    sql, params = rows.query.get_compiler(using=rows.db).as_sql()
    with connections[rows.db].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    n = len(rows)
    names = ("rater", "colorization", "kind", "chose_generated", "counted", "position", "exposure_ms", "focus_lost")
    dtypes = (np.int64, np.int64, None, np.int8, bool, np.int64, np.int64, np.int8)
    columns = {}
    for k, (name, dtype) in enumerate(zip(names, dtypes)):
        values = map(itemgetter(k), rows)
        columns[name] = (np.array(list(values), dtype=str) if dtype is None
                         else np.fromiter(values, dtype=dtype, count=n))
    del rows
    # Each trial's image, method and class, by the ids of its colorization and image (rows sorted by id).
    pairs = np.array(Colorization.objects.filter(image__experiment=experiment).order_by("id").values_list(
        "id", "image_id", "method_id"), dtype=np.int64).reshape(-1, 3)
    at = np.searchsorted(pairs[:, 0], columns.pop("colorization"))
    columns["image"], columns["method"] = pairs[at, 1], pairs[at, 2]
    images = list(ExperimentImage.objects.filter(experiment=experiment).order_by("id").values_list(
        "id", "source__path", Coalesce("source__class_index", Value(-1))))
    image_ids = np.array([image for image, _, _ in images], dtype=np.int64)
    classes = np.array([class_index for _, _, class_index in images], dtype=np.int64)
    columns["class_index"] = classes[np.searchsorted(image_ids, columns["image"])]
    pilot_ids = list(Rater.objects.filter(experiment=experiment, pilot=True).values_list("id", flat=True))
    columns["pilot"] = np.isin(columns["rater"], np.array(pilot_ids, dtype=np.int64))
    labels = {
        "rater": dict(Rater.objects.filter(experiment=experiment).values_list("id", "token")),
        "image": {image: path for image, path, _ in images},
        "method": dict(Method.objects.filter(experiment=experiment).values_list("id", "name")),
    }
    left_out = trials.aggregate(
        practice=Count("id", filter=Q(kind=Trial.Kind.PRACTICE)),
        unanswered=Count("id", filter=~Q(kind=Trial.Kind.PRACTICE) & Q(answered__isnull=True)),
        not_counted=Count("id", filter=Q(kind=Trial.Kind.SCORED, answered__isnull=False, counted=False)),
    )
    return {"columns": columns, "labels": labels, "left_out": left_out}


def report_fingerprint(*, experiment: Experiment) -> tuple:
    """What an experiment's report depends on, in a few aggregate queries: equal fingerprints, equal reports.

    Its trials (how many, answered, the latest answer, the highest id: a new,
    answered or withdrawn trial changes one of them; answered trials are never
    changed again), its raters (how many, flagged, the highest id), its methods
    (each one's name, role and provenance) and colorizations (how many, the highest
    id), and the experiment's own fields that the report reads.
    """
    trials = Trial.objects.filter(rater__experiment=experiment).aggregate(
        n=Count("id"), n_answered=Count("answered"), last_answered=Max("answered"), last=Max("id"))
    raters = Rater.objects.filter(experiment=experiment).aggregate(
        n=Count("id"), flagged=Count("id", filter=Q(flagged=True)), last=Max("id"))
    colorizations = Colorization.objects.filter(method__experiment=experiment).aggregate(n=Count("id"), last=Max("id"))
    methods = list(Method.objects.filter(experiment=experiment).order_by("id").values_list(
        "id", "name", "role", "kind", "colorizer", "checkpoint_sha256", "params"))
    last_answered = trials.pop("last_answered")
    return (
        experiment.pk, experiment.slug, experiment.title, str(experiment.timing), experiment.catch_fail_threshold,
        str(experiment.created), sorted(trials.items()), str(last_answered), sorted(raters.items()),
        sorted(colorizations.items()), [repr(m) for m in methods],
    )


def method_progress(*, experiment: Experiment) -> list[dict]:
    """Per rated method: images, counted answers, and the K x images target."""
    target = experiment.raters_per_pair
    rows = (
        Method.objects.filter(experiment=experiment)
        .annotate(
            n_images=Count("colorizations", distinct=True),
            n_answers=Count("colorizations__slots", filter=Q(colorizations__slots__filled=True)),
        )
        .values("name", "colorizer", "checkpoint_sha256", "role", "n_images", "n_answers")
    )
    return [dict(row, n_target=row["n_images"] * target if row["role"] != Method.Role.CATCH else 0) for row in rows]


def experiment_summary(*, experiment: Experiment) -> dict:
    """Live progress: pairs complete, raters started, active, finished, flagged and declined, catch failures.

    A rater who declined consent is counted in ``raters_declined`` only, never as started or active.
    ``time_on_task``: the median time of the raters who finished and the Prolific estimated completion time it
    suggests (`time_on_task`).
    """
    k = experiment.raters_per_pair
    pairs = Slot.objects.filter(experiment=experiment).values("colorization_id").annotate(
        filled=Count("id", filter=Q(filled=True))
    )
    n_pairs = pairs.count()
    complete = pairs.filter(filled__gte=k).count()
    now = timezone.now()
    took_part = Q(declined__isnull=True)
    raters = experiment.raters.aggregate(
        n_started=Count("id", filter=took_part, distinct=True),
        n_finished=Count("id", filter=took_part & Q(finished__isnull=False), distinct=True),
        n_active=Count("id", filter=took_part & Q(finished__isnull=True, trials__lease_expires__gt=now), distinct=True),
        n_flagged=Count("id", filter=Q(flagged=True), distinct=True),
        n_declined=Count("id", filter=Q(declined__isnull=False), distinct=True),
    )
    catch = Trial.objects.filter(rater__experiment=experiment, kind=Trial.Kind.CATCH, answered__isnull=False)
    failed = sum(choice != real for choice, real in catch.values_list("choice", "real_side"))
    return {
        "experiment": experiment,
        "methods": method_progress(experiment=experiment),
        "pairs": n_pairs,
        "pairs_complete": complete,
        "answers": Slot.objects.filter(experiment=experiment, filled=True).count(),
        "answers_target": n_pairs * k,
        "late_answers": Trial.objects.filter(rater__experiment=experiment, kind=Trial.Kind.SCORED,
                                             answered__isnull=False, counted=False).count(),
        "catch_answered": catch.count(),
        "catch_failed": failed,
        **{f"raters_{key[2:]}": value for key, value in raters.items()},
        "time_on_task": time_on_task(experiment=experiment),
    }


def outcome_counts(*, experiment: Experiment) -> dict[str, int]:
    """How many participants' sessions ended each way (`vtt.exports.rater_outcome`: time-outs included), in the
    order of `Rater.Outcome`, the outcomes nobody reached left out."""
    now = timezone.now()
    counts = Counter(
        rater_outcome(outcome=outcome, started=started, experiment=experiment, now=now)
        for outcome, started in Rater.objects.filter(experiment=experiment).values_list("outcome", "started"))
    return {outcome: counts[outcome] for outcome in Rater.Outcome.values if counts[outcome]}


def rater_times(*, experiment: Experiment) -> list[dict]:
    """Time on task per rater who consented, in order of starting: one query.

    Keys: ``rater_id``, ``rater`` (the panel id, or the token's first 8 characters),
    ``outcome`` (`vtt.exports.rater_outcome`), ``pilot``, ``seconds``: ``finished -
    started`` for a finished session; for one in progress, the last answer's time -
    ``started`` (the time spent so far, as far as the server saw it), None before any
    answer. Both ends are the server's clock, so a rater's browser clock plays no part.
    Raters who declined consent spent no time on the task and are left out.
    """
    rows = (
        Rater.objects.filter(experiment=experiment, declined__isnull=True)
        .annotate(last_answer=Max("trials__answered"))
        .order_by("started", "id")
        .values_list("id", "token", "external_id", "started", "finished", "outcome", "pilot", "last_answer")
    )
    now = timezone.now()
    return [{"rater_id": rater_id, "rater": external_id or token[:8], "pilot": pilot,
             "outcome": rater_outcome(outcome=outcome, started=started, experiment=experiment,
                                      now=now),
             "seconds": session_seconds(started, finished, last_answer)}
            for rater_id, token, external_id, started, finished, outcome, pilot, last_answer in rows]


def session_seconds(started, finished, last_answer) -> float | None:
    """A consenting rater's time on task: ``finished - started``, or ``last_answer - started`` while in
    progress; None before any answer."""
    end = finished or last_answer
    return max((end - started).total_seconds(), 0.0) if end is not None else None


# The percentile of completed raters' times that `time_on_task` suggests as Prolific's estimated completion time.
ESTIMATE_PERCENTILE = 75


def time_on_task(*, experiment: Experiment, times: list[dict] | None = None) -> dict:
    """The time completed raters took, and the estimated completion time it suggests for Prolific.

    Over the raters whose session finished (outcomes ``completed`` and
    ``completed_flagged``, pilot raters included: a flagged rater still spent the
    whole session, and the pilot is where the time is first measured; sessions in
    progress are not over, so their times are too short). Keys: ``n_completed``,
    ``median_s`` (None without a completed rater) and ``estimate_minutes``: the
    `ESTIMATE_PERCENTILE`th percentile of those times (numpy's linear interpolation),
    rounded up to a whole minute, Prolific's unit. Not the median: Prolific pays the
    reward set for the estimated time, and times out a participant who takes much
    longer than it, so an estimate at the median would underpay, and risk timing out,
    half of the participants; at the 75th percentile three in four finish within the
    time they are paid for. ``times``: the rows of `rater_times`, when already read.
    """
    times = rater_times(experiment=experiment) if times is None else times
    done = [t["seconds"] for t in times
            if t["outcome"] in (Outcome.COMPLETED, Outcome.COMPLETED_FLAGGED) and t["seconds"] is not None]
    if not done:
        return {"n_completed": 0, "median_s": None, "estimate_minutes": None,
                "estimate_percentile": ESTIMATE_PERCENTILE}
    return {
        "n_completed": len(done),
        "median_s": float(np.median(done)),
        "estimate_minutes": max(1, math.ceil(float(np.percentile(done, ESTIMATE_PERCENTILE)) / 60)),
        "estimate_percentile": ESTIMATE_PERCENTILE,
    }


def _size(width, height) -> str:
    return f"{width}\u00d7{height}" if width and height else ""


def rater_viewing(*, experiment: Experiment) -> list[dict]:
    """One row per rater, in order of starting: who, when, and how they saw the pairs.

    Keys: ``rater`` (the panel id, or the token's first 8 characters), ``started``,
    ``finished`` and ``declined`` (datetimes or None), ``screen`` and ``window``
    (e.g. "1920×1080" in CSS px, "" when not reported), ``device_pixel_ratio``,
    ``color_gamut``, ``pointer``, ``touch_points`` (None when not reported),
    ``user_agent``, ``flagged``, and over their answered trials (practice
    included): ``n_answered``, ``n_looked_away`` (the page lost focus),
    ``n_fullscreen`` and ``median_display_px`` (None when no trial reported it).
    """
    answered = Q(trials__answered__isnull=False)
    raters = (
        Rater.objects.filter(experiment=experiment)
        .annotate(
            n_answered=Count("trials", filter=answered),
            n_looked_away=Count("trials", filter=answered & Q(trials__focus_lost=True)),
            n_fullscreen=Count("trials", filter=answered & Q(trials__fullscreen=True)),
        )
        .order_by("started", "id")
    )
    sizes: dict[int, list[int]] = {}
    for rater_id, px in Trial.objects.filter(
        rater__experiment=experiment, answered__isnull=False, display_px__isnull=False
    ).values_list("rater_id", "display_px"):
        sizes.setdefault(rater_id, []).append(px)
    rows = []
    for r in raters:
        viewing = r.viewing if isinstance(r.viewing, dict) else {}
        rows.append({
            "rater": r.external_id or r.token[:8], "started": r.started, "finished": r.finished,
            "declined": r.declined, "flagged": r.flagged,
            "screen": _size(viewing.get("screen_width"), viewing.get("screen_height")),
            "window": _size(viewing.get("window_width"), viewing.get("window_height")),
            "device_pixel_ratio": viewing.get("device_pixel_ratio"), "color_gamut": viewing.get("color_gamut"),
            "pointer": viewing.get("pointer"), "touch_points": viewing.get("touch_points"),
            "user_agent": r.user_agent, "n_answered": r.n_answered, "n_looked_away": r.n_looked_away,
            "n_fullscreen": r.n_fullscreen,
            "median_display_px": median(sizes[r.pk]) if r.pk in sizes else None,
        })
    return rows


def experiment_summaries() -> list[dict]:
    return [experiment_summary(experiment=e) for e in Experiment.objects.all()]


def pair_files(*, experiment: Experiment, methods: list[str] | None = None) -> tuple[list[str], list[dict]]:
    """The stored files of an experiment's images: (method names, one row per image).

    Methods are the tested ones in name order (not the controls: the ground truth is the
    real image again), or ``methods`` in the order given; each row is ``{"image": source path, "real": file,
    "files": {method: file}}``, rows in source order, only images every method colorized.
    """
    tested = Method.objects.filter(experiment=experiment, role=Method.Role.TESTED)
    names = methods if methods is not None else list(tested.order_by("name").values_list("name", flat=True))
    unknown = sorted(set(names) - set(Method.objects.filter(experiment=experiment).values_list("name", flat=True)))
    if unknown:
        raise ValueError(f"experiment {experiment.slug!r} has no method {', '.join(map(repr, unknown))}")
    rows: dict[int, dict] = {}
    for image_id, path, real, method, file in (
        experiment.images.filter(colorizations__method__name__in=names)
        .order_by("source__path")
        .values_list("id", "source__path", "real_file", "colorizations__method__name", "colorizations__file")
    ):
        rows.setdefault(image_id, {"image": path, "real": real, "files": {}})["files"][method] = file
    return names, [row for row in rows.values() if len(row["files"]) == len(names)]


_PENDING_IMAGE = f"""
    SELECT t.left_image, t.real_side, c.file, i.real_file
    FROM {Trial._meta.db_table} t JOIN {Rater._meta.db_table} r ON r.id = t.rater_id
    JOIN {Colorization._meta.db_table} c ON c.id = t.colorization_id
    JOIN {ExperimentImage._meta.db_table} i ON i.id = c.image_id
    WHERE (t.left_image = %s OR t.right_image = %s) AND t.answered IS NULL
      AND r.token IN ({{tokens}}) AND r.declined IS NULL AND r.finished IS NULL
"""


def pending_image(*, rater_tokens: Sequence[str], name: str) -> str | None:
    """The stored file behind image URL ``name`` of a pending trial of one of these raters (one query).

    Every trial has its own two image names (`Trial.left_image`, `Trial.right_image`):
    one that names another rater's trial, an answered trial, or no trial at all gives
    None, as does a rater who declined or whose session ended (screened out, returned,
    timed out: their pending trials are never answered).
    """
    if not rater_tokens:
        return None
    with connection.cursor() as cursor:  # written out: it runs for every image a rater loads
        cursor.execute(_PENDING_IMAGE.format(tokens=", ".join(["%s"] * len(rater_tokens))), [name, name, *rater_tokens])
        trial = cursor.fetchone()
    if trial is None:
        return None
    left_image, real_side, file, real_file = trial
    left, right = (real_file, file) if real_side == Trial.Side.LEFT else (file, real_file)
    return left if name == left_image else right
