"""The experiment a management command names, or a CommandError that lists the known ones."""
from __future__ import annotations

from django.core.management.base import CommandError

from vtt.models import Experiment


def named(slug: str, *, hint: str = "") -> Experiment:
    """The experiment whose slug is `slug`; else a CommandError naming the known slugs (and `hint`, if given)."""
    experiment = Experiment.objects.filter(slug=slug).first()
    if experiment is None:
        known = ", ".join(Experiment.objects.order_by("slug").values_list("slug", flat=True)) or "none"
        raise CommandError(f"no experiment {slug!r} (known: {known}){': ' + hint if hint else ''}")
    return experiment
