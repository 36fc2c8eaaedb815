"""Writes on the rater side: starting a session, handing out trials, recording answers.

Views call these and nothing else writes raters or trials. Every function is
keyword-only and atomic.

Assignment (this is the minimal engine; the rules it keeps): a rater is handed the
colorization that has the fewest answered-or-pending trials among those that still
need raters (fewer than ``raters_per_pair``) and whose source image the rater has not
seen yet, ties broken at random; the real image goes left or right at random. A
rater has at most one unanswered trial, which a reload shows again.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from .models import Colorization, Experiment, Rater, Trial

MAX_RESPONSE_MS = 10 * 60 * 1000


class TrialRejected(Exception):
    """An answer that cannot be accepted; ``status`` is the HTTP status to send."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Progress:
    answered: int
    total: int

    @property
    def finished(self) -> bool:
        return self.answered >= self.total


def rater_start(*, experiment: Experiment, external_id: str = "", study_id: str = "", session_id: str = "", user_agent: str = "") -> Rater:
    """A new rater, or the existing one of a panel participant who comes back."""
    if experiment.state != Experiment.State.OPEN:
        raise TrialRejected("this experiment is not open", status=403)
    with transaction.atomic():
        if external_id:
            rater, _ = Rater.objects.get_or_create(
                experiment=experiment,
                external_id=external_id,
                defaults={"study_id": study_id, "session_id": session_id, "user_agent": user_agent[:400]},
            )
            return rater
        return Rater.objects.create(experiment=experiment, user_agent=user_agent[:400])


def rater_progress(*, rater: Rater) -> Progress:
    answered = rater.trials.filter(kind=Trial.Kind.SCORED, answered__isnull=False).count()
    return Progress(answered=answered, total=rater.experiment.trials_per_rater)


def trial_next(*, rater: Rater) -> Trial | None:
    """The rater's pending trial, or a newly assigned one; None when the session is over."""
    experiment = rater.experiment
    if experiment.state != Experiment.State.OPEN:
        raise TrialRejected("this experiment is not open", status=403)
    with transaction.atomic():
        rater = Rater.objects.select_for_update().get(pk=rater.pk)
        pending = rater.trials.filter(answered__isnull=True).select_related("colorization__image").first()
        if pending is not None:
            return pending
        if rater_progress(rater=rater).finished:
            _finish(rater)
            return None
        seen = rater.trials.values("colorization__image_id")
        candidates = list(
            Colorization.objects.filter(image__experiment=experiment)
            .exclude(image_id__in=seen)
            .annotate(load=Count("trials", filter=Q(trials__kind=Trial.Kind.SCORED)))
            .filter(load__lt=experiment.raters_per_pair)
            .values_list("id", "load")
        )
        if not candidates:
            _finish(rater)
            return None
        least = min(load for _, load in candidates)
        chosen = random.SystemRandom().choice([cid for cid, load in candidates if load == least])
        position = rater.trials.count() + 1
        return Trial.objects.create(
            rater=rater,
            colorization_id=chosen,
            kind=Trial.Kind.SCORED,
            position=position,
            real_side=random.SystemRandom().choice(Trial.Side.values),
        )


def _finish(rater: Rater) -> None:
    if rater.finished is None:
        rater.finished = timezone.now()
        rater.save(update_fields=["finished"])


def trial_answer(*, rater: Rater, token: str, choice: str, response_ms: str | int | None) -> Trial:
    """Record the rater's choice on their trial ``token``; repeating the same answer is a no-op."""
    if choice not in Trial.Side.values:
        raise TrialRejected(f"choice must be one of {', '.join(Trial.Side.values)}")
    try:
        response = None if response_ms in (None, "") else int(response_ms)
    except (TypeError, ValueError):
        raise TrialRejected("response_ms must be a whole number of milliseconds") from None
    if response is not None and not 0 <= response <= MAX_RESPONSE_MS:
        raise TrialRejected(f"response_ms must be between 0 and {MAX_RESPONSE_MS}")
    with transaction.atomic():
        trial = Trial.objects.select_for_update().filter(token=token, rater=rater).first()
        if trial is None:
            raise TrialRejected("no such trial in this session", status=404)
        if rater.experiment.state != Experiment.State.OPEN:
            raise TrialRejected("this experiment is not open", status=403)
        if trial.answered is not None:
            if trial.choice == choice:
                return trial  # a retry or a double click: recorded once
            raise TrialRejected("this trial was already answered", status=409)
        trial.choice = choice
        trial.response_ms = response
        trial.answered = timezone.now()
        trial.save(update_fields=["choice", "response_ms", "answered"])
        return trial
