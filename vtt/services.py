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

Concurrency: on PostgreSQL the slot is picked with ``SELECT ... FOR UPDATE SKIP
LOCKED``, so concurrent raters never wait for each other's candidate rows; the
lease itself is a compare-and-set ``UPDATE`` that only succeeds on a free slot,
which is what keeps the invariants on any database. SQLite runs transactions as
``BEGIN IMMEDIATE`` (see settings), one writer at a time.

A rater's session is planned when they start (`Rater.plan`): the practice trials
first, then the scored trials with round(rate x scored) catch trials at random
positions; the real image's side is a shuffled, balanced sequence over the
non-practice trials (as many left as right, to one), so the side predicts nothing.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from .models import Colorization, Experiment, Method, Rater, Slot, Trial

MAX_RESPONSE_MS = 10 * 60 * 1000
SCORED_ROLES = (Method.Role.TESTED, Method.Role.CALIBRATION)
_random = random.SystemRandom()


class TrialRejected(Exception):
    """A request that cannot be accepted; ``status`` is the HTTP status to send."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Progress:
    """Where a rater is: answered trials of each part of the session."""

    practice_done: int
    practice_total: int
    main_done: int
    main_total: int

    @property
    def finished(self) -> bool:
        return self.practice_done >= self.practice_total and self.main_done >= self.main_total


# --- experiments -------------------------------------------------------------------------


def experiment_open(*, experiment: Experiment) -> int:
    """Create the missing slots of every rated pair and open the experiment; returns slots created."""
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if experiment.catch_trial_rate > 0 and not experiment.methods.filter(role=Method.Role.CATCH).exists():
            raise TrialRejected(
                f"experiment {experiment.slug!r} asks for catch trials (rate {experiment.catch_trial_rate}) but has "
                "no catch method: generate the 'grayscale' control, or set the catch-trial rate to 0"
            )
        if not experiment.methods.filter(role__in=SCORED_ROLES).exists():
            raise TrialRejected(f"experiment {experiment.slug!r} has no method to rate")
        created = slots_sync(experiment=experiment)
        experiment.state = Experiment.State.OPEN
        experiment.save(update_fields=["state"])
        return created


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
        Slot(experiment=experiment, colorization_id=cid, index=i, order=rng.randrange(2**31))
        for cid in Colorization.objects.filter(method__experiment=experiment, method__role__in=SCORED_ROLES)
        .order_by("id")
        .values_list("id", flat=True)
        for i in range(k)
        if (cid, i) not in existing
    ]
    Slot.objects.bulk_create(new, batch_size=2000)
    return len(new)


def experiment_close(*, experiment: Experiment) -> None:
    Experiment.objects.filter(pk=experiment.pk).update(state=Experiment.State.CLOSED)


# --- raters ------------------------------------------------------------------------------


def _plan(experiment: Experiment) -> list[list[str]]:
    """[kind, real side] for each position of a new session; see the module docstring."""
    n_scored = experiment.trials_per_rater
    n_catch = round(n_scored * experiment.catch_trial_rate)
    main = [Trial.Kind.SCORED] * n_scored + [Trial.Kind.CATCH] * n_catch
    _random.shuffle(main)
    sides = [Trial.Side.LEFT, Trial.Side.RIGHT] * (len(main) // 2) + [_random.choice(Trial.Side.values)] * (len(main) % 2)
    _random.shuffle(sides)
    practice = [[Trial.Kind.PRACTICE, _random.choice(Trial.Side.values)] for _ in range(experiment.practice_trials)]
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


def rater_start(
    *, experiment: Experiment, external_id: str = "", study_id: str = "", session_id: str = "", user_agent: str = ""
) -> Rater:
    """A new rater, or the existing one of a panel participant who comes back."""
    if experiment.state != Experiment.State.OPEN:
        raise TrialRejected("this experiment is not open", status=403)
    with transaction.atomic():
        if external_id:
            rater = Rater.objects.filter(experiment=experiment, external_id=external_id).first()
            if rater is not None:
                return rater
        rater = Rater.objects.create(
            experiment=experiment,
            external_id=external_id,
            study_id=study_id,
            session_id=session_id,
            user_agent=user_agent[:400],
            plan=_plan(experiment),
            method=_single_method(experiment) if experiment.design == Experiment.Design.SINGLE else None,
        )
        return rater


def rater_progress(*, rater: Rater) -> Progress:
    kinds = [kind for kind, _ in rater.plan]
    answered = rater.trials.filter(answered__isnull=False).values_list("kind", flat=True)
    practice_done = sum(kind == Trial.Kind.PRACTICE for kind in answered)
    return Progress(
        practice_done=practice_done,
        practice_total=kinds.count(Trial.Kind.PRACTICE),
        main_done=len(answered) - practice_done,
        main_total=len(kinds) - kinds.count(Trial.Kind.PRACTICE),
    )


# --- trials ------------------------------------------------------------------------------


def _free_slots(experiment: Experiment, now):
    return Slot.objects.filter(experiment=experiment, filled=False).filter(
        Q(trial__isnull=True) | Q(lease_expires__lt=now)
    )


def _candidates(slot_query):
    """Free slots in hand-out order; on PostgreSQL the first is row-locked, skipping locked rows."""
    ordered = slot_query.order_by("index", "order")
    if connection.features.has_select_for_update_skip_locked:
        ordered = ordered.select_for_update(skip_locked=True, of=("self",))
    return ordered.values_list("id", "colorization_id")[:1]


def _lease(slot_id: int, trial: Trial, now) -> bool:
    """Compare-and-set: give slot ``slot_id`` to ``trial`` only while it is still free."""
    return bool(
        _free_slots(trial.rater.experiment, now).filter(pk=slot_id).update(trial=trial, lease_expires=trial.lease_expires)
    )


def _assign(rater: Rater, position: int, kind: str, side: str, now) -> Trial | None:
    """Create the trial at ``position``; None when no suitable pair is left for this rater."""
    experiment = rater.experiment
    seen = Trial.objects.filter(rater=rater).values("colorization__image_id")
    if kind == Trial.Kind.SCORED:
        if rater.method_id:
            method_ids = [rater.method_id]
        else:  # the methods this rater has seen least so far, ties at random
            counts = dict(
                rater.trials.filter(kind=Trial.Kind.SCORED).values_list("colorization__method_id").annotate(n=Count("id"))
            )
            method_ids = list(
                Method.objects.filter(experiment=experiment, role__in=SCORED_ROLES).values_list("id", flat=True)
            )
            _random.shuffle(method_ids)
            method_ids.sort(key=lambda m: counts.get(m, 0))
        expires = now + timedelta(seconds=experiment.lease_seconds)
        for method_id in method_ids:
            slots = _free_slots(experiment, now).filter(colorization__method_id=method_id).exclude(
                colorization__image_id__in=seen
            )
            for _ in range(3):  # a lost compare-and-set (a race the locks did not prevent) retries
                picked = list(_candidates(slots))
                if not picked:
                    break
                slot_id, colorization_id = picked[0]
                trial = Trial.objects.create(
                    rater=rater, colorization_id=colorization_id, kind=kind, position=position,
                    real_side=side, lease_expires=expires,
                )
                if _lease(slot_id, trial, now):
                    return trial
                trial.delete()
        return None
    roles = [Method.Role.CATCH] if kind == Trial.Kind.CATCH else list(SCORED_ROLES)
    candidates = list(
        Colorization.objects.filter(method__experiment=experiment, method__role__in=roles)
        .exclude(image_id__in=seen)
        .values_list("id", flat=True)
    )
    if not candidates:
        return None
    return Trial.objects.create(
        rater=rater, colorization_id=_random.choice(candidates), kind=kind, position=position, real_side=side
    )


def _finish(rater: Rater) -> None:
    if rater.finished is None:
        rater.finished = timezone.now()
        rater.save(update_fields=["finished"])


def trial_next(*, rater: Rater, ahead: int = 1, renew: bool = False) -> list[Trial]:
    """The rater's current trial and up to ``ahead`` following ones (to preload); [] when done.

    Pending trials are shown again after a reload; with ``renew`` (a page load) their
    leases start again while their slots are still theirs.
    """
    experiment = rater.experiment
    if experiment.state != Experiment.State.OPEN:
        raise TrialRejected("this experiment is not open", status=403)
    with transaction.atomic():
        rater = Rater.objects.select_for_update().select_related("experiment").get(pk=rater.pk)
        if rater.finished is not None:
            return []
        now = timezone.now()
        pending = list(rater.trials.filter(answered__isnull=True).order_by("position"))
        leased = [t.pk for t in pending if t.kind == Trial.Kind.SCORED]
        if renew and leased:
            until = now + timedelta(seconds=experiment.lease_seconds)
            Slot.objects.filter(trial__in=leased, filled=False).update(lease_expires=until)
            Trial.objects.filter(pk__in=leased).update(lease_expires=until)
        position = rater.trials.order_by("-position").values_list("position", flat=True).first() or 0
        while len(pending) < 1 + ahead and position < len(rater.plan):
            kind, side = rater.plan[position]
            position += 1
            trial = _assign(rater, position, kind, side, now)
            if trial is None:
                if kind == Trial.Kind.SCORED:
                    # No pair left for this rater: the session ends after what is pending.
                    rater.plan = rater.plan[: position - 1]
                    rater.save(update_fields=["plan"])
                    break
                continue  # no image left for a practice or catch trial: skip it
            pending.append(trial)
        if not pending:
            _finish(rater)
        return pending


def _fill(trial: Trial, now) -> bool:
    """Fill a slot of the trial's pair with its answer; False if the pair already has K."""
    own = Slot.objects.select_for_update().filter(trial=trial, filled=False).first()
    if own is not None:
        own.filled = True
        own.lease_expires = None
        own.save(update_fields=["filled", "lease_expires"])
        return True
    # The lease ran out and the slot went to someone else: take another free place.
    others = _free_slots(trial.rater.experiment, now).filter(colorization_id=trial.colorization_id)
    for slot_id, _ in _candidates(others):
        if _lease(slot_id, trial, now):
            Slot.objects.filter(pk=slot_id).update(filled=True, lease_expires=None)
            return True
    return False


def _update_flag(rater: Rater) -> None:
    catch = list(
        rater.trials.filter(kind=Trial.Kind.CATCH, answered__isnull=False).values_list("choice", "real_side")
    )
    failed = sum(choice != real for choice, real in catch)
    flagged = bool(catch) and failed / len(catch) > rater.experiment.catch_fail_threshold
    if flagged != rater.flagged:
        rater.flagged = flagged
        rater.save(update_fields=["flagged"])


@dataclass(frozen=True)
class Answer:
    trial: Trial
    duplicate: bool   # the same answer was already recorded (a retry): nothing was written


def trial_answer(*, rater: Rater, token: str, choice: str, response_ms: str | int | None) -> Answer:
    """Record the rater's choice on their trial ``token``.

    Repeating the answer of the rater's latest answered trial (a double click, a retry
    after a network error) is accepted and writes nothing; any other change or replay
    of an answered trial is refused.
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
        trial = Trial.objects.select_for_update().select_related("rater__experiment").filter(token=token, rater=rater).first()
        if trial is None:
            raise TrialRejected("no such trial in this session", status=404)
        if trial.rater.experiment.state != Experiment.State.OPEN:
            raise TrialRejected("this experiment is not open", status=403)
        if trial.answered is not None:
            latest = rater.trials.filter(answered__isnull=False).order_by("-answered", "-position").first()
            if trial.choice == choice and latest == trial:
                return Answer(trial, duplicate=True)
            raise TrialRejected("this trial was already answered", status=409)
        earlier = rater.trials.filter(answered__isnull=True, position__lt=trial.position).exists()
        if earlier:
            raise TrialRejected("answer the trials in order", status=409)
        now = timezone.now()
        trial.choice = choice
        trial.response_ms = response
        trial.answered = now
        if trial.kind == Trial.Kind.SCORED:
            trial.counted = _fill(trial, now)
        trial.save(update_fields=["choice", "response_ms", "answered", "counted"])
        if trial.kind == Trial.Kind.CATCH:
            _update_flag(trial.rater)
        return Answer(trial, duplicate=False)
