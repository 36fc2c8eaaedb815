"""Writes on the rater side: opening experiments, starting raters, handing out trials, answers.

Views and commands call these; nothing else writes raters, trials or slots. Every
function is keyword-only and runs in one transaction.

The assignment engine
---------------------
Every rated (image, method) pair has K `Slot` rows (K = ``raters_per_pair``). A
scored trial holds a lease on one slot; its answer fills it. So a pair can never
get more than K counted answers, and it has exactly K once every slot is filled.
A lease that runs out (``lease_seconds``) frees the slot for the next rater; an
answer that arrives on an expired lease fills its own slot if nobody took it, or
another free slot of the same pair, and otherwise is kept with ``counted=False``
(never scored, never lost).

A rater never sees a source image twice, whatever the method or the kind of
trial: once seen (in practice, catch or scored trials), the true colours are
known. Slots are handed out lowest index first, in a random order within an
index, so every pair gets its first rater before any gets its second.

Concurrency: every request of a rater locks the rater's row, so one request of a
rater at a time changes their session, and the experiment's row in share mode, so
that raters go on side by side while a change of state waits for them (`_locked`).
On PostgreSQL one statement picks the slot with ``SELECT ... FOR UPDATE SKIP
LOCKED`` (concurrent raters never wait for each other's candidate rows), inserts the
trial and leases the slot to it (`_take_place`); it walks the partial index
``slot_pick_idx`` of a method's free slots in hand-out order. SQLite runs
transactions as ``BEGIN IMMEDIATE`` (see settings), one writer at a time, and leases
with a compare-and-set ``UPDATE`` that only succeeds on a free slot.

What a pair may be: never two identical files (a `Colorization` whose bytes equal
its real image's, such as the ``ground_truth`` control, tells a rater nothing and,
with practice feedback, names one of two identical images "the true colors"); catch
trials aside, which are meant to be easy. `experiment_open` refuses a rated method
with such pairs and no slot or trial is ever made of one. Practice trials come only
from the tested methods, never a control.

Image URLs: every trial has its own two opaque image names (`Trial.left_image`,
`Trial.right_image`), served only to its rater while it is pending
(`vtt.selectors.pending_image`), so no URL appears in two trials, sessions or raters.

Timing: with ``timing = staircase`` (HYPE_time) each trial's exposure is set when it
becomes the rater's current trial, from the answers of the rater's earlier trials of
the same method (`evaluation.staircase`); practice and catch trials are shown at the
start exposure. With fixed timing it is the experiment's ``exposure_ms``.

The life of a study (draft, pilot, open, paused, closed) is described at `TRANSITIONS`;
`rater_start` says who is admitted in each state. Pilot raters (``Rater.pilot``) take
places like any rater while the pilot runs; opening the study frees them, so the main
study's pairs get their K answers from its own raters.

A rater's session is planned when they start (`Rater.plan`): the practice trials
first, then ``trials_per_rater`` trials, of which round(rate x trials) are catch
trials at random positions; the real image's side is a shuffled, balanced sequence over the
non-practice trials (as many left as right, to one), so the side predicts nothing.
"""
from __future__ import annotations

import functools
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from evaluation import quality, staircase

from .models import Colorization, Experiment, Method, Rater, Slot, Trial

MAX_RESPONSE_MS = 10 * 60 * 1000
SCORED_ROLES = (Method.Role.TESTED, Method.Role.CALIBRATION)
MAX_DISPLAY_PX = 10_000
_random = random.SystemRandom()


def identical(prefix: str = "") -> Q:
    """A colorization whose file is its real image's, byte for byte (hashes known); ``prefix`` reaches it
    from another model, e.g. ``"colorization__"`` from a slot."""
    return Q(**{f"{prefix}sha256": F(f"{prefix}image__real_sha256")}) & ~Q(**{f"{prefix}sha256": ""})


class TrialRejected(Exception):
    """A request that cannot be accepted; ``status`` is the HTTP status to send."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# --- experiments -------------------------------------------------------------------------


# The life of a study. Each transition is a service that locks the experiment's row, checks, writes, in one
# transaction; a refused one raises TrialRejected and writes nothing.
#   draft -> pilot, open, closed   (a draft that will never run can be closed)
#   pilot -> open, closed          (not paused: paused does not remember that it was a pilot, and a pilot is already
#                                   capped by ``pilot_raters``; close the pilot, or open the study)
#   open -> paused, closed
#   paused -> open, closed
#   closed -> nothing: final. Its raters were sent back to their panel and its report is the study's; more answers
#                       belong in a new experiment.
# Nothing goes back to draft: raters in the middle of a session would be stopped, and the settings can be edited in
# any state anyway.
TRANSITIONS = {
    Experiment.State.DRAFT: (Experiment.State.PILOT, Experiment.State.OPEN, Experiment.State.CLOSED),
    Experiment.State.PILOT: (Experiment.State.OPEN, Experiment.State.CLOSED),
    Experiment.State.OPEN: (Experiment.State.PAUSED, Experiment.State.CLOSED),
    Experiment.State.PAUSED: (Experiment.State.OPEN, Experiment.State.CLOSED),
    Experiment.State.CLOSED: (),
}
# States in which raters who started go on (new ones: pilot and open only, see `rater_start`).
RUNNING = (Experiment.State.PILOT, Experiment.State.OPEN, Experiment.State.PAUSED)


def _transition(experiment: Experiment, to: str) -> Experiment:
    """The experiment's row, locked, once the move from its current state to ``to`` is known to be allowed."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if to not in TRANSITIONS[experiment.state]:
        allowed = ", ".join(TRANSITIONS[experiment.state]) or "none: a closed experiment is final"
        raise TrialRejected(
            f"experiment {experiment.slug!r} is {experiment.state}: it cannot be set to {to} "
            f"(from {experiment.state}: {allowed})", status=409,
        )
    return experiment


def _check_ready(experiment: Experiment) -> None:
    """What raters need before any starts: the panel's codes, a catch method if catch trials are asked for, pairs
    to rate, none of two identical images."""
    problems = experiment.outcome_problems()
    if problems:
        raise TrialRejected(f"experiment {experiment.slug!r} cannot send participants back to its panel: "
                            + "; ".join(f"{field}: {message}" for field, message in sorted(problems.items())))
    if experiment.catch_trial_rate > 0 and not experiment.methods.filter(role=Method.Role.CATCH).exists():
        raise TrialRejected(
            f"experiment {experiment.slug!r} asks for catch trials (rate {experiment.catch_trial_rate}) but has "
            "no catch method: generate the 'grayscale' control, or set the catch-trial rate to 0"
        )
    if not experiment.methods.filter(role__in=SCORED_ROLES).exists():
        raise TrialRejected(f"experiment {experiment.slug!r} has no method to rate")
    same = (
        Colorization.objects.filter(identical(), method__experiment=experiment, method__role__in=SCORED_ROLES)
        .values("method__name").annotate(n=Count("id")).order_by("method__name")
    )
    if same:
        named = ", ".join(f"{row['method__name']!r} ({row['n']} images)" for row in same)
        raise TrialRejected(
            f"experiment {experiment.slug!r}: {named} would show pairs of two identical images (the "
            "colorization's file is the real image's, byte for byte), which tell a rater nothing; the engine "
            "never shows them. Delete the method (the ground_truth control is such a method) or regenerate it."
        )
    if not Colorization.objects.filter(method__experiment=experiment, method__role__in=SCORED_ROLES).exists():
        raise TrialRejected(
            f"experiment {experiment.slug!r} has no pairs to rate: generate them with "
            f"`manage.py generate_pairs --experiment {experiment.slug}`"
        )


def experiment_open(*, experiment: Experiment) -> int:
    """Open the experiment to raters (from draft, pilot or paused); returns the places (slots) created.

    Creates the missing slots of every rated pair. Coming from a pilot, the places that
    pilot raters filled or leased are freed (`_release_pilot`): the pilot's answers are
    kept, marked pilot, but every pair still gets its K answers from the main study.
    """
    with transaction.atomic():
        experiment = _transition(experiment, Experiment.State.OPEN)
        _check_ready(experiment)
        created = slots_sync(experiment=experiment)
        _release_pilot(experiment)
        experiment.state = Experiment.State.OPEN
        experiment.save(update_fields=["state"])
        return created


def experiment_pilot(*, experiment: Experiment) -> int:
    """Open a draft to a pilot: the same checks and places as `experiment_open`, at most ``pilot_raters`` raters,
    each marked pilot (`rater_start`); returns the places created."""
    with transaction.atomic():
        experiment = _transition(experiment, Experiment.State.PILOT)
        _check_ready(experiment)
        created = slots_sync(experiment=experiment)
        experiment.state = Experiment.State.PILOT
        experiment.save(update_fields=["state"])
        return created


def experiment_pause(*, experiment: Experiment) -> None:
    """Pause an open experiment: no new rater starts; those who started may finish (their trials go on)."""
    with transaction.atomic():
        experiment = _transition(experiment, Experiment.State.PAUSED)
        experiment.state = Experiment.State.PAUSED
        experiment.save(update_fields=["state"])


def _release_pilot(experiment: Experiment) -> int:
    """Free the places that pilot raters' trials hold (filled or leased), so that the main study fills them.

    Their trials keep their answers and ``counted`` as they were (the pilot's report
    reads them); a pilot rater still in a session gets no scored trial any more (`_assign`).
    """
    return Slot.objects.filter(experiment=experiment, trial__rater__pilot=True).update(
        trial=None, filled=False, lease_expires=None)


def slots_sync(*, experiment: Experiment) -> int:
    """Give every rated colorization K slots (idempotent); refuses to change K once rated."""
    k = experiment.raters_per_pair
    if experiment.slots.filter(index__gte=k).exists():
        raise TrialRejected(
            f"experiment {experiment.slug!r} already has pairs with more than {k} places: "
            "raters_per_pair cannot be lowered once slots exist"
        )
    existing = set(experiment.slots.values_list("colorization_id", "index"))
    rng = random.Random()
    new = [
        Slot(experiment=experiment, colorization_id=cid, method_id=method_id, image_id=image_id, index=i,
             order=rng.randrange(2**31))
        for cid, method_id, image_id in Colorization.objects.filter(
            method__experiment=experiment, method__role__in=SCORED_ROLES
        ).exclude(identical()).order_by("id").values_list("id", "method_id", "image_id")
        for i in range(k)
        if (cid, i) not in existing
    ]
    Slot.objects.bulk_create(new, batch_size=2000)
    if new and connection.vendor == "postgresql":
        # Fresh statistics: the planner, left with those of an empty table until autovacuum comes, sorts every
        # free place of a method for each pick (60 ms at 250,000 places) instead of walking `slot_pick_idx`.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Slot._meta.db_table}")
    return len(new)


def experiment_close(*, experiment: Experiment) -> None:
    """Close the experiment (from any state but closed): no rater starts, answers or gets a trial any more."""
    with transaction.atomic():
        experiment = _transition(experiment, Experiment.State.CLOSED)
        experiment.state = Experiment.State.CLOSED
        experiment.save(update_fields=["state"])


# The settings a person sets (the admin's editable fields, `manage.py experiment create|configure`): every
# editable field but the state (set by the transitions above) and what describes the images (``split``,
# ``image_size``, ``preprocessing``: set by generate_pairs, read-only in the admin).
NOT_SETTINGS = ("id", "state", "split", "image_size", "preprocessing")


def experiment_settings() -> list:
    """The model fields of `Experiment` that are its settings (see NOT_SETTINGS), in the model's order."""
    return [f for f in Experiment._meta.concrete_fields if f.editable and f.name not in NOT_SETTINGS]


def experiment_create(*, slug: str, **values) -> Experiment:
    """A new draft experiment with ``values`` (settings by field name), validated by ``full_clean`` first.

    Raises Django's ValidationError (every field's problems at once) and writes nothing when a value is invalid,
    the slug is taken, or a setting is unknown.
    """
    _known(values)
    experiment = Experiment(slug=slug, **values)
    experiment.full_clean()
    with transaction.atomic():
        experiment.save()
    return experiment


def experiment_configure(*, experiment: Experiment, **values) -> Experiment:
    """Change the settings ``values`` of an experiment, validated by ``full_clean``, in one transaction.

    A running experiment (pilot, open, paused) whose ``raters_per_pair`` grows gets the new places at once
    (`slots_sync`); lowering it once places exist is refused (TrialRejected), like `slots_sync`. Any error
    writes nothing.
    """
    _known(values)
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        for name, value in values.items():
            setattr(experiment, name, value)
        experiment.full_clean()
        experiment.save()
        if experiment.state in RUNNING and "raters_per_pair" in values:
            slots_sync(experiment=experiment)
    return experiment


def _known(values: dict) -> None:
    from django.core.exceptions import ValidationError

    names = {f.name for f in experiment_settings()}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValidationError({name: f"not a setting of an experiment (settings: {', '.join(sorted(names))})"
                               for name in unknown})


# The service of each state a person can ask for (the dashboard, `manage.py experiment`).
SET_STATE = {
    Experiment.State.PILOT: experiment_pilot,
    Experiment.State.OPEN: experiment_open,
    Experiment.State.PAUSED: experiment_pause,
    Experiment.State.CLOSED: experiment_close,
}


def experiment_set_state(*, experiment: Experiment, state: str):
    """Move the experiment to ``state`` by its service; an unknown state or a refused move writes nothing."""
    if state not in SET_STATE:
        raise TrialRejected(f"no such state {state!r}: one of {', '.join(SET_STATE)}")
    return SET_STATE[state](experiment=experiment)


# --- raters ------------------------------------------------------------------------------


def session_plan(experiment: Experiment) -> list[list[str]]:
    """[kind, real side] for each position of a new session; see the module docstring.

    ``trials_per_rater`` counts every trial after the practice, catch trials included,
    so that the page's "n of N" is the session the rater will do. A rater never sees
    an image twice, so a session never plans more trials than the experiment has
    images.
    """
    n_images = experiment.images.count()
    n_practice = min(experiment.practice_trials, n_images)
    n_trials = min(experiment.trials_per_rater, n_images - n_practice)
    n_catch = min(round(n_trials * experiment.catch_trial_rate), max(n_trials - 1, 0))
    main = [Trial.Kind.SCORED] * (n_trials - n_catch) + [Trial.Kind.CATCH] * n_catch
    _random.shuffle(main)
    sides = [Trial.Side.LEFT, Trial.Side.RIGHT] * (len(main) // 2) + [_random.choice(Trial.Side.values)] * (len(main) % 2)
    _random.shuffle(sides)
    practice = [[Trial.Kind.PRACTICE, _random.choice(Trial.Side.values)] for _ in range(n_practice)]
    return practice + [[kind, side] for kind, side in zip(main, sides)]


def _single_method(experiment: Experiment) -> Method | None:
    """Single-method design: the rated method with the most places not yet filled or leased."""
    now = timezone.now()
    demand = (
        Method.objects.filter(experiment=experiment, role__in=SCORED_ROLES)
        .annotate(
            open_slots=Count(
                "colorizations__slots",
                filter=Q(colorizations__slots__filled=False)
                & (Q(colorizations__slots__trial__isnull=True) | Q(colorizations__slots__lease_expires__lt=now)),
            )
        )
        .order_by("-open_slots", "id")
    )
    return demand.first()


_MOBILE_AGENT = re.compile(r"Mobi|Android|iPhone|iPad|iPod|Tablet|Silk|Kindle|PlayBook", re.I)
_GAMUTS = {"srgb", "p3", "rec2020"}
_POINTERS = {"fine", "coarse", "none"}
MAX_VIEWING_CHARS = 2000


def clean_viewing(raw: str | dict | None) -> dict:
    """The viewing conditions a browser reported, as a dict of known keys with sane values.

    Keys: ``screen_width``, ``screen_height``, ``window_width``, ``window_height`` (CSS
    pixels, 1 to 100,000), ``device_pixel_ratio`` (0.1 to 16), ``color_gamut`` (the
    widest of the ``color-gamut`` media query's srgb, p3, rec2020 that matched),
    ``pointer`` (the ``pointer`` media query: fine, coarse, none) and ``touch_points``
    (``navigator.maxTouchPoints``, 0 to 100). Anything else, malformed or absurd, is
    dropped: a report that cannot be read records nothing and never stops a rater.
    """
    if isinstance(raw, str):
        if len(raw) > MAX_VIEWING_CHARS:
            return {}
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    if not isinstance(raw, dict):
        return {}
    out: dict = {}
    for key in ("screen_width", "screen_height", "window_width", "window_height"):
        value = raw.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value <= 100_000:
            out[key] = int(value)
    dpr = raw.get("device_pixel_ratio")
    if isinstance(dpr, (int, float)) and not isinstance(dpr, bool) and 0.1 <= dpr <= 16:
        out["device_pixel_ratio"] = round(float(dpr), 3)
    if raw.get("color_gamut") in _GAMUTS:
        out["color_gamut"] = raw["color_gamut"]
    if raw.get("pointer") in _POINTERS:
        out["pointer"] = raw["pointer"]
    touch = raw.get("touch_points")
    if isinstance(touch, int) and not isinstance(touch, bool) and 0 <= touch <= 100:
        out["touch_points"] = touch
    return out


def is_mobile(user_agent: str, viewing: dict) -> bool:
    """A phone or tablet: by its user agent, a coarse primary pointer, or an iPad that calls itself a Mac."""
    return bool(
        _MOBILE_AGENT.search(user_agent or "")
        or viewing.get("pointer") == "coarse"
        or ("Macintosh" in (user_agent or "") and viewing.get("touch_points", 0) > 1)
    )


def rater_start(
    *, experiment: Experiment, external_id: str = "", study_id: str = "", session_id: str = "", user_agent: str = "",
    viewing: str | dict | None = None,
) -> Rater:
    """A new rater, or the existing one of a panel participant who comes back.

    A phone or tablet is refused (403) when the experiment excludes them; a panel
    participant who declined consent cannot start.

    Admission by state: open admits anyone; pilot admits at most ``pilot_raters``
    raters (those who started and did not decline), each marked ``pilot``, then
    refuses with "the pilot is full" (403); paused admits only a panel participant
    who comes back (those who started may finish), draft and closed nobody. A new
    rater is created under a lock on the experiment's row (``FOR NO KEY UPDATE``:
    it waits for the transitions, which lock the row too, and for other starts, not
    for the foreign-key checks of other inserts), so the pilot's cap holds under
    concurrent starts and no one is admitted by a state already changed.
    """
    if experiment.state not in RUNNING:
        raise TrialRejected("this experiment is not open", status=403)
    viewing = clean_viewing(viewing)
    with transaction.atomic():
        if external_id:
            rater = Rater.objects.filter(experiment=experiment, external_id=external_id).first()
            if rater is not None:
                if rater.declined is not None:
                    raise TrialRejected("you chose not to take part in this study", status=403)
                return rater
        experiment = Experiment.objects.select_for_update(no_key=True).get(pk=experiment.pk)
        if experiment.state == Experiment.State.PAUSED:
            raise TrialRejected("This study is paused: it takes no new participants for now. Please try again later.",
                                status=403)
        if experiment.state not in RUNNING:
            raise TrialRejected("this experiment is not open", status=403)
        pilot = experiment.state == Experiment.State.PILOT
        if pilot and Rater.objects.filter(experiment=experiment, pilot=True, declined__isnull=True).count() \
                >= experiment.pilot_raters:
            raise TrialRejected("The pilot of this study is full: it takes no more participants for now.",
                                status=403)
        if not experiment.allow_mobile and is_mobile(user_agent, viewing):
            raise TrialRejected(
                "This study needs a desktop or laptop computer: it cannot be taken on a phone or tablet.", status=403
            )
        method = _single_method(experiment) if experiment.design == Experiment.Design.SINGLE else None
        free = _free_slots(experiment, timezone.now())
        if not (free.filter(method=method) if method else free).exists():
            # Every place is taken: the participant is told at once, with the no-pairs code, not after the practice.
            return Rater.objects.create(
                experiment=experiment, external_id=external_id, study_id=study_id, session_id=session_id,
                user_agent=user_agent[:400], viewing=viewing, plan=[], pilot=pilot, finished=timezone.now(),
                outcome=Rater.Outcome.NO_PAIRS,
            )
        rater = Rater.objects.create(
            experiment=experiment,
            external_id=external_id,
            study_id=study_id,
            session_id=session_id,
            user_agent=user_agent[:400],
            viewing=viewing,
            plan=session_plan(experiment),
            method=method,
            methods=[method.pk] if method else list(
                Method.objects.filter(experiment=experiment, role__in=SCORED_ROLES).values_list("id", flat=True)),
            pilot=pilot,
        )
        return rater


def rater_decline(
    *, experiment: Experiment, rater: Rater | None = None, external_id: str = "", study_id: str = "",
    session_id: str = "", user_agent: str = "", viewing: str | dict | None = None,
) -> Rater:
    """Record that a person did not consent: a rater with ``declined`` set, no plan, no trial, no place.

    ``rater`` is the browser's current rater, if any. A rater who has already been
    handed a trial cannot decline any more (409); declining twice changes nothing.
    Taken in pilot, open or paused (a decline takes no place); a person who declines
    during the pilot is marked pilot, like the raters of the pilot.
    """
    if experiment.state not in RUNNING:
        raise TrialRejected("this experiment is not open", status=403)
    with transaction.atomic():
        if rater is None and external_id:
            rater = Rater.objects.filter(experiment=experiment, external_id=external_id).first()
        if rater is not None:
            rater = _locked(rater)
            if rater.declined is not None:
                return rater
            if rater.trials.exists():
                raise TrialRejected("you have already started this study: close the tab to stop", status=409)
            rater.declined, rater.plan, rater.method, rater.methods = timezone.now(), [], None, []
            rater.outcome = Rater.Outcome.DECLINED
            rater.save(update_fields=["declined", "plan", "method", "methods", "outcome"])
            return rater
        return Rater.objects.create(
            experiment=experiment, external_id=external_id, study_id=study_id, session_id=session_id,
            user_agent=user_agent[:400], viewing=clean_viewing(viewing), plan=[], declined=timezone.now(),
            pilot=experiment.state == Experiment.State.PILOT, outcome=Rater.Outcome.DECLINED,
        )


# --- trials ------------------------------------------------------------------------------


def _free_slots(experiment: Experiment, now):
    return Slot.objects.filter(experiment=experiment, filled=False).filter(
        Q(trial__isnull=True) | Q(lease_expires__lt=now)
    )


@dataclass(frozen=True)
class Shown:
    """A pending trial as the page shows it: its token, place in the session, image names and exposure."""

    token: str
    practice: bool
    number: int       # 1-based among the practice trials, or among the scored and catch trials
    total: int        # of the same part of the session
    left_image: str   # the opaque names of its two image URLs
    right_image: str
    exposure_ms: int | None  # set once it is the current trial (None: untimed, or not yet current)


# The statements run by every answer are written out (here, in `_locked`, `_take_place` and
# `selectors.pending_image`): on that path Django's query compiler took more time than the database
# (`benchmarks/answer_path.py`). Each goes through a primary-key, unique or `slot_pick_idx` index.

# What the engine needs of a rater's trials, in one statement: a row per trial, its keys `_ROW`. ``answered``
# is only ever tested for None here (the trials are answered in order: the latest answered is the last).
_ROW = ("id", "token", "kind", "position", "real_side", "answered", "choice", "colorization_id", "colorization__image_id",
        "colorization__method_id", "left_image", "right_image", "exposure_ms")
_ROWS = f"""
    SELECT t.id, t.token, t.kind, t.position, t.real_side, t.answered, t.choice, t.colorization_id, c.image_id,
           c.method_id, t.left_image, t.right_image, t.exposure_ms
    FROM {Trial._meta.db_table} t JOIN {Colorization._meta.db_table} c ON c.id = t.colorization_id
    WHERE t.rater_id = %s ORDER BY t.position
"""


def _rows(rater: Rater) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(_ROWS, [rater.pk])
        return [dict(zip(_ROW, row)) for row in cursor.fetchall()]


def _shown(row: dict, plan: list) -> Shown:
    n_practice = sum(kind == Trial.Kind.PRACTICE for kind, _ in plan)
    practice = row["kind"] == Trial.Kind.PRACTICE
    return Shown(
        token=row["token"], practice=practice,
        number=row["position"] if practice else row["position"] - n_practice,
        total=n_practice if practice else len(plan) - n_practice,
        left_image=row["left_image"], right_image=row["right_image"], exposure_ms=row["exposure_ms"],
    )


def _candidates(slot_query):
    """The id of the first free slot in hand-out order; on PostgreSQL row-locked, skipping locked rows."""
    ordered = slot_query.order_by("index", "order")
    if connection.features.has_select_for_update_skip_locked:
        ordered = ordered.select_for_update(skip_locked=True, of=("self",))
    return ordered.values_list("id", flat=True)[:1]


# PostgreSQL: the pick (`PICK`), the new trial and the lease in one statement. The first free place of one method in
# hand-out order, of an image the rater has not seen, is row-locked (skipping places other transactions hold),
# the trial is inserted on its colorization and the place leased to the trial. It walks `slot_pick_idx` from its
# start: the places it passes over are those leased now and those of the rater's images, a few hundred at most.
PICK = """
    SELECT id, colorization_id, image_id FROM {slot}
    WHERE experiment_id = %s AND method_id = %s AND NOT filled AND (trial_id IS NULL OR lease_expires < %s)
      AND NOT (image_id = ANY(%s::bigint[]))
    ORDER BY index, "order" LIMIT 1
    FOR UPDATE SKIP LOCKED
""".format(slot=Slot._meta.db_table)
_TAKE_PLACE = """
WITH pick AS ({pick}), new AS (
    INSERT INTO {trial} ({{columns}}, colorization_id) SELECT {{values}}, colorization_id FROM pick RETURNING id
)
UPDATE {slot} SET trial_id = new.id, lease_expires = %s FROM new, pick WHERE {slot}.id = pick.id
RETURNING new.id, pick.colorization_id, pick.image_id
""".format(pick=PICK, slot=Slot._meta.db_table, trial=Trial._meta.db_table)


@functools.cache
def _take_place_statement() -> tuple[list, str]:
    """The fields a new trial's row is written from (its colorization's aside) and `_TAKE_PLACE` with their
    columns, made once (PostgreSQL only)."""
    fields = [f for f in Trial._meta.concrete_fields if not f.primary_key and f.attname != "colorization_id"]
    return fields, _TAKE_PLACE.format(columns=", ".join(connection.ops.quote_name(f.column) for f in fields),
                                      values=", ".join(["%s"] * len(fields)))


def _take_place(trial: Trial, experiment: Experiment, method_id: int, seen: list[int], now) -> int | None:
    """Save the unsaved scored ``trial`` on a free place of ``method_id`` of an image not in ``seen``, the place
    leased to it until ``trial.lease_expires``; returns the image's id, or None (nothing saved) when there is none.

    On PostgreSQL one statement (`_TAKE_PLACE`); on SQLite, whose transactions here take the write lock at
    their start (``transaction_mode`` IMMEDIATE), the pick, the insert and a compare-and-set of the lease.
    """
    if connection.vendor == "postgresql":
        fields, sql = _take_place_statement()
        values = [f.get_db_prep_save(f.pre_save(trial, add=True), connection) for f in fields]
        with connection.cursor() as cursor:
            cursor.execute(sql, [experiment.pk, method_id, now, seen, *values, trial.lease_expires])
            taken = cursor.fetchone()
        if taken is None:
            return None
        trial.pk, trial.colorization_id, image_id = taken
        trial._state.adding, trial._state.db = False, connection.alias
        return image_id
    free = _free_slots(experiment, now).filter(method_id=method_id).exclude(image_id__in=seen)
    for _ in range(3):  # a lost compare-and-set (a race the locks did not prevent) retries
        picked = free.order_by("index", "order").values_list("id", "colorization_id", "image_id").first()
        if picked is None:
            return None
        slot_id, trial.colorization_id, image_id = picked
        trial.save(force_insert=True)
        if free.filter(pk=slot_id).update(trial_id=trial.pk, lease_expires=trial.lease_expires):
            return image_id
        trial.delete()
        trial.pk = None
    return None


def _assign(rater: Rater, rows: list[dict], position: int, kind: str, side: str, now) -> dict | None:
    """Create the trial at ``position`` and return its row; None when no suitable pair is left."""
    experiment = rater.experiment
    seen = [row["colorization__image_id"] for row in rows]
    new = {"rater": rater, "kind": kind, "position": position, "real_side": side}
    if kind == Trial.Kind.SCORED:
        if rater.pilot and experiment.state != Experiment.State.PILOT:
            return None  # the pilot is over: its places went back to the main study (`_release_pilot`)
        # The methods this rater has seen least so far, ties at random.
        counts = Counter(row["colorization__method_id"] for row in rows if row["kind"] == Trial.Kind.SCORED)
        method_ids = list(rater.methods)
        _random.shuffle(method_ids)
        method_ids.sort(key=lambda m: counts[m])
        trial = Trial(lease_expires=now + timedelta(seconds=experiment.lease_seconds), **new)
        for method_id in method_ids:
            image_id = _take_place(trial, experiment, method_id, seen, now)
            if image_id is not None:
                return _row(trial, image_id, method_id)
        return None
    picked = _draw(experiment, Method.Role.CATCH if kind == Trial.Kind.CATCH else Method.Role.TESTED, seen)
    if picked is None:
        return None
    colorization_id, image_id, method_id = picked
    trial = Trial.objects.create(colorization_id=colorization_id, **new)
    return _row(trial, image_id, method_id)


def _draw(experiment: Experiment, role: str, seen: list[int]) -> tuple[int, int, int] | None:
    """A pair at random for a practice trial (``role`` tested: never a control, never two identical images) or a
    catch trial (the catch method's pairs, meant to be easy, are never refused), of an image not in ``seen``:
    (colorization, image, method), or None when none is left.

    A method at random, then its first pair from a random point of `Colorization.order`, wrapping around: one
    or two index lookups where shuffling every pair (``ORDER BY random()``) read all 50,000 of ctest10k's. A
    pair's chance is the gap before it in that random order, not exactly 1/n; these trials are never scored.
    """
    method_ids = list(Method.objects.filter(experiment=experiment, role=role).values_list("id", flat=True))
    _random.shuffle(method_ids)
    start = _random.randrange(2**31)
    for method_id in method_ids:
        pool = Colorization.objects.filter(method_id=method_id).exclude(image_id__in=seen)
        if role == Method.Role.TESTED:
            pool = pool.exclude(identical())
        for part in (pool.filter(order__gte=start), pool.filter(order__lt=start)):
            picked = part.order_by("order").values_list("id", "image_id", "method_id").first()
            if picked is not None:
                return picked
    return None


def _row(trial: Trial, image_id: int, method_id: int) -> dict:
    """A new trial in the shape of `_rows`."""
    return {"id": trial.pk, "token": trial.token, "kind": trial.kind, "position": trial.position,
            "real_side": trial.real_side, "answered": None, "choice": "", "colorization_id": trial.colorization_id,
            "colorization__image_id": image_id, "colorization__method_id": method_id,
            "left_image": trial.left_image, "right_image": trial.right_image, "exposure_ms": None}


def trial_exposure(experiment: Experiment, rows: list[dict], row: dict) -> int | None:
    """The exposure of trial ``row`` as it becomes current: fixed, or its staircase's next step."""
    if experiment.timing != Experiment.Timing.STAIRCASE:
        return experiment.exposure_ms
    if row["kind"] != Trial.Kind.SCORED:
        return staircase.START_MS
    answers = [r["choice"] == r["real_side"] for r in rows
               if r["kind"] == Trial.Kind.SCORED and r["choice"] and r["position"] < row["position"]
               and r["colorization__method_id"] == row["colorization__method_id"]]
    return staircase.next_exposure(answers)


def _end(rater: Rater, outcome: str, now, *, release_filled: bool = False) -> None:
    """End the rater's session with ``outcome`` at ``now``, giving back the places its pending trials lease.

    With ``release_filled`` (a participant screened out) the places its answers filled go back to the pool too,
    and those answers are kept with ``counted`` False: the pairs get their K answers from raters who passed.
    """
    places = Slot.objects.filter(trial__rater=rater)
    if release_filled:
        Trial.objects.filter(rater=rater, kind=Trial.Kind.SCORED, counted=True).update(counted=False)
    else:
        places = places.filter(filled=False)
    places.update(trial=None, filled=False, lease_expires=None)
    Trial.objects.filter(rater=rater, answered__isnull=True).update(lease_expires=None)
    rater.finished, rater.outcome = now, outcome
    rater.save(update_fields=["finished", "outcome"])


def screened_out_by_catch(rows: list[dict], plan: list, threshold: float) -> bool:
    """The catch rule is certain to flag the rater: the catch trials failed so far exceed ``threshold`` of the
    session's planned catch trials, so that even all the others right would leave the rater flagged
    (`evaluation.quality`'s rule on the whole session, ``n_failed / n_catch > threshold``)."""
    planned = sum(kind == Trial.Kind.CATCH for kind, _ in plan)
    failed = sum(row["kind"] == Trial.Kind.CATCH and bool(row["choice"]) and row["choice"] != row["real_side"]
                 for row in rows)
    return planned > 0 and failed / planned > threshold


_COLUMNS: dict[tuple[str, type], tuple[str, list]] = {}  # (database, model): its SELECT and its columns' converters


def _one(model, where: str, params: list):
    """The first row of ``model``'s table selected by ``where`` (a WHERE clause and what follows it), as an
    instance made and converted as the ORM makes it (`Model.from_db`), or None."""
    key = (connection.alias, model)
    if key not in _COLUMNS:
        fields = model._meta.concrete_fields
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        cols = [f.get_col(model._meta.db_table) for f in fields]
        converters = [(col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)) for col in cols]
        _COLUMNS[key] = (f"SELECT {columns} FROM {model._meta.db_table} ", converters)
    select, converters = _COLUMNS[key]
    with connection.cursor() as cursor:
        cursor.execute(select + where, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for value, (col, convert) in zip(row, converters):
        for converter in convert:
            value = converter(value, col, connection)
        values.append(value)
    return model.from_db(connection.alias, None, values)


@dataclass(frozen=True)
class SessionRater:
    """A rater as a request names them: the experiment's slug and the rater tokens of the browser's session (one
    per experiment it takes part in); `_locked` finds the rater without a query of its own."""

    slug: str
    tokens: tuple[str, ...]


def _locked(rater: Rater | SessionRater) -> Rater:
    """The rater's row, locked, with its experiment: one request of a rater at a time changes their session.

    Two statements, written out (they run on every request of a rater): the experiment's row, then the rater's.
    On PostgreSQL the experiment's row is locked in share mode (``FOR KEY SHARE``): the requests of many raters
    go on side by side, while a change of state (`_transition`, ``FOR UPDATE``) waits for those under way, and
    those that follow see it (a pilot rater's answer, say, never fills a place that opening the study has just
    given back). A `SessionRater` that names no rater of the experiment is refused: 404 when the experiment
    does not exist, 403 otherwise.
    """
    postgresql = connection.vendor == "postgresql"
    named = isinstance(rater, SessionRater)
    experiment = _one(Experiment, f"WHERE {'slug' if named else 'id'} = %s" + (" FOR KEY SHARE" if postgresql else ""),
                      [rater.slug if named else rater.experiment_id])
    if experiment is None:
        raise TrialRejected("no such experiment", status=404)
    if named and not rater.tokens:
        raise TrialRejected("no rater session for this experiment", status=403)
    which = f"token IN ({', '.join(['%s'] * len(rater.tokens))})" if named else "id = %s"
    found = _one(Rater, f"WHERE experiment_id = %s AND {which} ORDER BY id LIMIT 1" + (" FOR UPDATE" if postgresql else ""),
                 [experiment.pk, *(rater.tokens if named else [rater.pk])])
    if found is None:
        if named:
            raise TrialRejected("no rater session for this experiment", status=403)
        raise Rater.DoesNotExist(f"rater {rater.pk} of experiment {experiment.pk}")
    found.experiment = experiment
    return found


def _next(rater: Rater, rows: list[dict], *, ahead: int, renew: bool, now) -> list[Shown]:
    """Pending trials, topped up to 1 + ``ahead`` from the plan; finishes the rater when none is left."""
    experiment = rater.experiment
    pending = [row for row in rows if row["answered"] is None]
    leased = [row["id"] for row in pending if row["kind"] == Trial.Kind.SCORED]
    if renew and leased:
        until = now + timedelta(seconds=experiment.lease_seconds)
        Slot.objects.filter(trial__in=leased, filled=False).update(lease_expires=until)
        Trial.objects.filter(pk__in=leased).update(lease_expires=until)
    shown = [row for row in pending]
    position = rows[-1]["position"] if rows else 0
    while len(shown) < 1 + ahead and position < len(rater.plan):
        kind, side = rater.plan[position]
        position += 1
        row = _assign(rater, rows, position, kind, side, now)
        if row is None:
            if kind == Trial.Kind.SCORED:
                # No pair left for this rater: the session ends after what is pending.
                rater.plan = rater.plan[: position - 1]
                rater.save(update_fields=["plan"])
                break
            # No image left for a practice or catch trial: drop it from the plan, so that
            # the page's count stays the number of trials the rater will actually do.
            position -= 1
            rater.plan = rater.plan[:position] + rater.plan[position + 1:]
            rater.save(update_fields=["plan"])
            continue
        rows.append(row)  # later assignments must not show its image again
        shown.append(row)
    if not shown:
        if rater.finished is None:
            if not any(row["kind"] == Trial.Kind.SCORED for row in rows):
                outcome = Rater.Outcome.NO_PAIRS  # no pair was left for this rater: nothing of theirs is scored
            elif flagged_by_catch(rows, experiment.catch_fail_threshold):
                outcome = Rater.Outcome.COMPLETED_FLAGGED
            else:
                outcome = Rater.Outcome.COMPLETED
            _end(rater, outcome, now)
    elif shown[0]["exposure_ms"] is None:
        exposure = trial_exposure(experiment, rows, shown[0])
        if exposure is not None:
            Trial.objects.filter(pk=shown[0]["id"]).update(exposure_ms=exposure)
            shown[0]["exposure_ms"] = exposure
    return [_shown(row, rater.plan) for row in shown]  # after the plan may have been shortened


def trial_next(*, rater: Rater, ahead: int = 1, renew: bool = False) -> list[Shown]:
    """The rater's current trial and up to ``ahead`` following ones (to preload); [] when done.

    Pending trials are shown again after a reload; with ``renew`` (a page load) their
    leases start again while their slots are still theirs.
    """
    if rater.experiment.state not in RUNNING:
        raise TrialRejected("this experiment is not open", status=403)
    with transaction.atomic():
        rater = _locked(rater)
        if rater.declined is not None:
            raise TrialRejected("you chose not to take part in this study", status=403)
        if rater.finished is not None:
            return []
        now = timezone.now()
        if rater.experiment.past_time_limit(rater.started, now):
            _end(rater, Rater.Outcome.TIMED_OUT, now)
            return []
        return _next(rater, _rows(rater), ahead=ahead, renew=renew, now=now)


def rater_return(*, rater: Rater) -> Rater:
    """The participant stops taking part during the session ("Stop taking part"): outcome ``returned``.

    Their answers are kept and count; the places their pending trials lease go back to the
    pool. A session that has already ended is left as it is (a repeated click changes nothing).
    """
    with transaction.atomic():
        rater = _locked(rater)
        if rater.declined is None and rater.finished is None:
            _end(rater, Rater.Outcome.RETURNED, timezone.now())
        return rater


def _fill(row: dict, colorization_id: int, experiment: Experiment, now) -> bool:
    """Fill a slot of the trial's pair with its answer; False if the pair already has K."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Slot._meta.db_table} SET filled = %s, lease_expires = NULL "
                       "WHERE trial_id = %s AND NOT filled", [True, row["id"]])
        if cursor.rowcount:
            return True
    # The lease ran out and the slot went to someone else: take another free place.
    others = _free_slots(experiment, now).filter(colorization_id=colorization_id)
    for slot_id in _candidates(others):
        if Slot.objects.filter(pk=slot_id).filter(Q(trial__isnull=True) | Q(lease_expires__lt=now), filled=False).update(
            trial_id=row["id"], filled=True, lease_expires=None
        ):
            return True
    return False


def flagged_by_catch(rows: list[dict], threshold: float) -> bool:
    """The exclusion rule of `evaluation.quality` on this rater's answered catch trials."""
    catch = [row for row in rows if row["kind"] == Trial.Kind.CATCH and row["choice"]]
    if not catch:
        return False
    correct = [row["choice"] == row["real_side"] for row in catch]
    return bool(quality([0] * len(catch), [True] * len(catch), correct, max_fail_rate=threshold).flagged[0])


@dataclass(frozen=True)
class Answer:
    """The outcome of an answer: the trial answered, whether it was a repeat, and what comes next."""

    kind: str
    choice: str
    real_side: str
    duplicate: bool          # the same answer was already recorded (a retry): nothing was written
    pending: list[Shown]     # the rater's current trial and the preloaded next; [] when done


_FLAGS = {"1": True, "true": True, "0": False, "false": False}


def _flag(value) -> bool | None:
    """A browser's yes/no report ('1', '0', 'true', 'false'); anything else is unknown (None)."""
    if value is None or isinstance(value, bool):
        return value
    return _FLAGS.get(str(value).strip().lower())


def _pixels(value) -> int | None:
    """A displayed size in CSS pixels, rounded; unknown (None) when malformed or out of 0..MAX_DISPLAY_PX."""
    try:
        number = round(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 <= number <= MAX_DISPLAY_PX else None


def trial_answer(
    *, rater: Rater | SessionRater, token: str, choice: str, response_ms: str | int | None, ahead: int = 1,
    display_px=None, focus_lost=None, fullscreen=None,
) -> Answer:
    """Record the rater's choice on their trial ``token`` and hand out what follows, in one transaction.

    Repeating the answer of the rater's latest answered trial (a double click, a retry
    after a network error) is accepted and writes nothing; any other change or replay
    of an answered trial is refused. The viewing conditions of the trial (``display_px``,
    ``focus_lost``, ``fullscreen``) are recorded when they can be read and dropped when
    not: they never stop an answer. ``rater`` may be a `SessionRater`, found as the row is locked.
    """
    if choice not in Trial.Side.values:
        raise TrialRejected(f"choice must be one of {', '.join(Trial.Side.values)}")
    try:
        response = None if response_ms in (None, "") else int(response_ms)
    except (TypeError, ValueError):
        raise TrialRejected("response_ms must be a whole number of milliseconds") from None
    if response is not None and not 0 <= response <= MAX_RESPONSE_MS:
        raise TrialRejected(f"response_ms must be between 0 and {MAX_RESPONSE_MS}")
    if not isinstance(token, str) or len(token) != 32:
        raise TrialRejected("no such trial in this session", status=404)
    with transaction.atomic():
        rater = _locked(rater)
        if rater.experiment.state not in RUNNING:
            raise TrialRejected("this experiment is not open", status=403)
        if rater.declined is not None:
            raise TrialRejected("you chose not to take part in this study", status=403)
        rows = _rows(rater)
        row = next((r for r in rows if r["token"] == token), None)
        if row is None:
            raise TrialRejected("no such trial in this session", status=404)
        now = timezone.now()
        if row["answered"] is not None:
            latest = max((r for r in rows if r["answered"] is not None), key=lambda r: r["position"])
            if row["choice"] == choice and latest is row:
                pending = [_shown(r, rater.plan) for r in rows if r["answered"] is None]
                return Answer(row["kind"], choice, row["real_side"], duplicate=True, pending=pending)
            raise TrialRejected("this trial was already answered", status=409)
        if rater.finished is not None:
            raise TrialRejected("this session has ended", status=409)
        if any(r["answered"] is None and r["position"] < row["position"] for r in rows):
            raise TrialRejected("answer the trials in order", status=409)
        counted = False
        # A pilot rater answering after the pilot ended fills no place of the main study (kept, not counted).
        if row["kind"] == Trial.Kind.SCORED and not (rater.pilot and rater.experiment.state != Experiment.State.PILOT):
            counted = _fill(row, row["colorization_id"], rater.experiment, now)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Trial._meta.db_table} SET choice = %s, response_ms = %s, answered = %s, counted = %s, "
                "display_px = %s, focus_lost = %s, fullscreen = %s WHERE id = %s",
                [choice, response, Trial._meta.get_field("answered").get_db_prep_save(now, connection), counted,
                 _pixels(display_px), _flag(focus_lost), _flag(fullscreen), row["id"]])
        row.update(choice=choice, answered=now)
        experiment = rater.experiment
        if row["kind"] == Trial.Kind.CATCH:
            flagged = flagged_by_catch(rows, experiment.catch_fail_threshold)
            if flagged != rater.flagged:
                rater.flagged = flagged
                Rater.objects.filter(pk=rater.pk).update(flagged=flagged)
            if experiment.catch_fail_action == Experiment.CatchFailAction.SCREEN_OUT \
                    and screened_out_by_catch(rows, rater.plan, experiment.catch_fail_threshold):
                _end(rater, Rater.Outcome.SCREENED_OUT, now, release_filled=True)
                return Answer(row["kind"], choice, row["real_side"], duplicate=False, pending=[])
        if experiment.past_time_limit(rater.started, now) and row["position"] < len(rater.plan):
            # The answer is kept; the session ends instead of going on.
            _end(rater, Rater.Outcome.TIMED_OUT, now)
            return Answer(row["kind"], choice, row["real_side"], duplicate=False, pending=[])
        pending = _next(rater, rows, ahead=ahead, renew=False, now=now)
        return Answer(row["kind"], choice, row["real_side"], duplicate=False, pending=pending)
