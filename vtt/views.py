"""HTTP views: thin wrappers around `vtt.services` (writes) and `vtt.selectors` (reads).

No response reveals which side of a pair is real before the rater answers: both
images come from `image`, under random names, with identical headers.
"""
from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from . import selectors, services
from .generation import pairs_dir
from .models import Experiment, Rater, Trial

_IMAGE_NAME = re.compile(r"^[0-9a-f]{32}\.jpg$")


def _session_key(experiment: Experiment) -> str:
    return f"vtt-rater-{experiment.pk}"


def _current_rater(request: HttpRequest, experiment: Experiment) -> Rater | None:
    token = request.session.get(_session_key(experiment))
    return Rater.objects.filter(experiment=experiment, token=token).first() if token else None


def _rejected(request: HttpRequest, exc: services.TrialRejected) -> HttpResponse:
    return render(request, "vtt/error.html", {"message": str(exc)}, status=exc.status)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    experiments = Experiment.objects.filter(state=Experiment.State.OPEN)
    return render(request, "vtt/index.html", {"experiments": experiments})


@require_GET
def landing(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    panel = {k: request.GET.get(k, "")[:200] for k in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")}
    return render(
        request,
        "vtt/landing.html",
        {"experiment": experiment, "panel": panel, "resuming": _current_rater(request, experiment) is not None},
    )


@require_POST
def start(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    if _current_rater(request, experiment) is None:
        try:
            rater = services.rater_start(
                experiment=experiment,
                external_id=request.POST.get("PROLIFIC_PID", "")[:200],
                study_id=request.POST.get("STUDY_ID", "")[:200],
                session_id=request.POST.get("SESSION_ID", "")[:200],
                user_agent=request.headers.get("User-Agent", ""),
            )
        except services.TrialRejected as exc:
            return _rejected(request, exc)
        request.session[_session_key(experiment)] = rater.token
    return redirect("vtt:trial", slug=slug)


@require_GET
def trial(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    rater = _current_rater(request, experiment)
    if rater is None:
        return redirect("vtt:landing", slug=slug)
    try:
        current = services.trial_next(rater=rater)
    except services.TrialRejected as exc:
        return _rejected(request, exc)
    if current is None:
        return redirect("vtt:done", slug=slug)
    real = current.colorization.image.real_file
    fake = current.colorization.file
    left, right = (real, fake) if current.real_side == Trial.Side.LEFT else (fake, real)
    progress = services.rater_progress(rater=rater)
    context = {
        "experiment": experiment,
        "trial": current,
        "left_url": reverse("vtt:image", args=[left]),
        "right_url": reverse("vtt:image", args=[right]),
        "number": progress.answered + 1,
        "total": progress.total,
    }
    return render(request, "vtt/trial.html", context)


@require_POST
def answer(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    rater = _current_rater(request, experiment)
    if rater is None:
        return _rejected(request, services.TrialRejected("no rater session for this experiment", status=403))
    try:
        services.trial_answer(
            rater=rater,
            token=request.POST.get("trial", ""),
            choice=request.POST.get("choice", ""),
            response_ms=request.POST.get("response_ms"),
        )
    except services.TrialRejected as exc:
        return _rejected(request, exc)
    return redirect("vtt:trial", slug=slug)


@require_GET
def done(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    rater = _current_rater(request, experiment)
    if rater is None or rater.finished is None:
        return redirect("vtt:landing", slug=slug)
    if experiment.completion_url:
        return redirect(experiment.completion_url)
    return render(request, "vtt/done.html", {"experiment": experiment})


@require_GET
def image(request: HttpRequest, name: str) -> HttpResponse:
    """Serve a pair image with headers that are the same for every image but its length.

    No Last-Modified, no ETag and no file name: the real image is rendered before the colorized ones,
    and a timestamp would tell them apart.
    """
    if not _IMAGE_NAME.match(name):
        return HttpResponseBadRequest("bad image name")
    try:
        data = (Path(pairs_dir()) / name).read_bytes()  # tens of kB: no streaming needed
    except FileNotFoundError:
        raise Http404("no such image") from None
    response = HttpResponse(data, content_type="image/jpeg")
    response["Cache-Control"] = f"private, max-age={settings.VTT_IMAGE_CACHE_SECONDS}, immutable"
    return response


@staff_member_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    experiments = [
        {"experiment": e, "methods": selectors.method_progress(experiment=e), "raters": e.raters.count(),
         "finished": e.raters.filter(finished__isnull=False).count()}
        for e in Experiment.objects.all()
    ]
    return render(request, "vtt/dashboard.html", {"experiments": experiments})
