"""Reads: what the dashboard and the report need, as plain rows."""
from __future__ import annotations

from django.db.models import Count, Q

from .models import Experiment, Method, Trial


def judgments(*, experiment: Experiment, kinds: tuple[str, ...] = (Trial.Kind.SCORED,)) -> list[dict]:
    """One dict per answered trial: rater, image, method, chose_generated, trial_kind, class_index."""
    rows = (
        Trial.objects.filter(rater__experiment=experiment, kind__in=kinds, answered__isnull=False)
        .order_by("id")
        .values_list(
            "rater__token", "colorization__image__source__path", "colorization__method__name", "kind",
            "colorization__image__source__class_index", "rater__flagged", "choice", "real_side",
        )
    )
    return [
        {"rater": rater, "image": image, "method": method, "trial_kind": kind, "class_index": class_index,
         "flagged": flagged, "chose_generated": choice != real_side}
        for rater, image, method, kind, class_index, flagged, choice, real_side in rows
    ]


def method_progress(*, experiment: Experiment) -> list[dict]:
    """Per method: images colorized, answered scored trials, and the target count."""
    target = experiment.raters_per_pair
    rows = (
        Method.objects.filter(experiment=experiment)
        .annotate(
            n_images=Count("colorizations", distinct=True),
            n_answers=Count(
                "colorizations__trials",
                filter=Q(colorizations__trials__kind=Trial.Kind.SCORED, colorizations__trials__answered__isnull=False),
            ),
        )
        .values("name", "colorizer", "checkpoint_sha256", "is_control", "n_images", "n_answers")
    )
    return [dict(row, n_target=row["n_images"] * target) for row in rows]
