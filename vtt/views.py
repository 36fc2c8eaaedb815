"""HTTP views: thin wrappers around `vtt.services` (writes) and `vtt.selectors` (reads).

No response reveals which side of a pair is real before the rater answers: both
images come from `image`, under names that belong to one trial of one rater and are
served only while that trial is pending, with identical headers; catch trials look
like every other trial; only practice answers get feedback.
"""
from __future__ import annotations

import functools
import re
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from . import exports, payments, planning, preview, report, report_html, selectors, services
from .models import Experiment, Rater, Trial, pairs_dir

_IMAGE_NAME = re.compile(r"^[0-9a-f]{32}\.jpg$")
PROLIFIC_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc={code}"


SESSION_PREFIX = "vtt-rater-"  # + experiment id -> the token of this browser's rater in that experiment


def _session_key(experiment: Experiment) -> str:
    return f"{SESSION_PREFIX}{experiment.pk}"


def _current_rater(request: HttpRequest, experiment: Experiment) -> Rater | None:
    token = request.session.get(_session_key(experiment))
    return Rater.objects.filter(experiment=experiment, token=token).select_related("experiment").first() if token else None


def _urls(slug: str) -> dict[str, str]:
    """The addresses the rater's pages post to and go to (a preview has its own: `vtt.preview`)."""
    return {name: reverse(f"vtt:{name}", args=[slug]) for name in ("start", "decline", "trial", "answer", "done", "stop")}


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _rejected(request: HttpRequest, exc: services.TrialRejected) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return render(request, "vtt/error.html", {"message": str(exc)}, status=exc.status)


def _panel_ids(experiment: Experiment, data) -> dict[str, str]:
    """The participant, study and session ids a panel put in the study URL."""
    if experiment.panel == Experiment.Panel.PROLIFIC:
        pid, study, session = (data.get(k, "")[:200] for k in PROLIFIC_PARAMS)
        return {"external_id": pid, "study_id": study, "session_id": session}
    if experiment.panel == Experiment.Panel.CUSTOM and experiment.participant_param:
        return {"external_id": data.get(experiment.participant_param, "")[:200], "study_id": "", "session_id": ""}
    return {"external_id": "", "study_id": "", "session_id": ""}


def _trial_payload(trial: services.Shown | None) -> dict | None:
    """What the page needs to show one trial; never its kind beyond practice, never the real side."""
    if trial is None:
        return None
    return {
        "token": trial.token,
        "practice": trial.practice,
        "number": trial.number,
        "total": trial.total,
        "left": reverse("vtt:image", args=[f"{trial.left_image}.jpg"]),
        "right": reverse("vtt:image", args=[f"{trial.right_image}.jpg"]),
        "exposure_ms": trial.exposure_ms or 0,
    }


def _pending_payload(pending: list[services.Shown]) -> dict:
    return {"current": _trial_payload(pending[0] if pending else None),
            "next": _trial_payload(pending[1] if len(pending) > 1 else None)}


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    experiments = Experiment.objects.filter(state=Experiment.State.OPEN)
    return render(request, "vtt/index.html", {"experiments": experiments})


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """A trivial view: for load balancers, and the ceiling of the serving benchmark."""
    return HttpResponse("ok", content_type="text/plain")


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page names; send them to the icon the pages name."""
    return redirect(static("vtt/favicon.svg"), permanent=True)


@require_GET
def landing(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    ids = _panel_ids(experiment, request.GET)
    returning = _current_rater(request, experiment)
    if returning is None and ids["external_id"]:
        returning = Rater.objects.filter(experiment=experiment, external_id=ids["external_id"]).first()
    hidden = {k: request.GET.get(k, "")[:200] for k in (*PROLIFIC_PARAMS, experiment.participant_param) if k and k in request.GET}
    if returning is not None and returning.declined is not None:
        return render(request, "vtt/declined.html", {"experiment": experiment, "hidden": hidden})
    return render(
        request,
        "vtt/landing.html",
        {"experiment": experiment, "hidden": hidden, "returning": returning, "urls": _urls(slug),
         "outcome": returning.outcome if returning is not None else "",
         "code": experiment.code_for(returning) if returning is not None else ""},
    )


@require_POST
def start(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    rater = _current_rater(request, experiment)
    ids = _panel_ids(experiment, request.POST)
    if rater is None or (ids["external_id"] and ids["external_id"] != rater.external_id):
        try:
            rater = services.rater_start(experiment=experiment, user_agent=request.headers.get("User-Agent", ""),
                                         viewing=request.POST.get("viewing", ""), **ids)
        except services.TrialRejected as exc:
            return _rejected(request, exc)
        request.session[_session_key(experiment)] = rater.token
    if rater.finished is not None:  # finished, or no pair left for a new rater: the outcome's code
        return redirect("vtt:done", slug=slug)
    return redirect("vtt:trial", slug=slug)


@require_POST
def decline(request: HttpRequest, slug: str) -> HttpResponse:
    """"I do not agree": the session ends before any trial; a panel participant goes back with the no-consent code."""
    experiment = get_object_or_404(Experiment, slug=slug)
    ids = _panel_ids(experiment, request.POST)
    rater = _current_rater(request, experiment)
    if rater is not None and ids["external_id"] and ids["external_id"] != rater.external_id:
        rater = None  # another participant in this browser
    try:
        rater = services.rater_decline(experiment=experiment, rater=rater, user_agent=request.headers.get("User-Agent", ""),
                                       viewing=request.POST.get("viewing", ""), **ids)
    except services.TrialRejected as exc:
        return _rejected(request, exc)
    request.session[_session_key(experiment)] = rater.token
    return _ended(request, experiment, rater)


@require_GET
def trial(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    rater = _current_rater(request, experiment)
    if rater is None:
        return redirect("vtt:landing", slug=slug)
    try:
        pending = services.trial_next(rater=rater, renew=True)
    except services.TrialRejected as exc:
        return _rejected(request, exc)
    if not pending:
        return redirect("vtt:done", slug=slug)
    state = _pending_payload(pending)
    return _trial_page(request, experiment, state, _urls(slug))


def _trial_page(request: HttpRequest, experiment: Experiment, state: dict, urls: dict, *,
                preview: dict | None = None) -> HttpResponse:
    """The trial page of `state` (its current and next trials), posting to ``urls``; a preview's too."""
    state.update(size=experiment.shown_size, fullscreen=experiment.require_fullscreen,
                 masks=experiment.timing == Experiment.Timing.STAIRCASE,
                 answer_url=urls["answer"], done_url=urls["done"])
    context = {"experiment": experiment, "trial": state["current"], "state": state, "urls": urls, "preview": preview}
    return render(request, "vtt/trial.html", context)


def _session_tokens(request: HttpRequest) -> tuple[str, ...]:
    """The rater tokens of this browser's session, one per experiment it takes part in."""
    return tuple(value for key, value in request.session.items() if key.startswith(SESSION_PREFIX))


@require_POST
def answer(request: HttpRequest, slug: str) -> HttpResponse:
    """The rater's answer; the rater is found as their row is locked (`services.SessionRater`), so that an answer
    costs a few statements."""
    try:
        result = services.trial_answer(
            rater=services.SessionRater(slug, _session_tokens(request)),
            token=request.POST.get("trial", ""),
            choice=request.POST.get("choice", ""),
            response_ms=request.POST.get("response_ms"),
            display_px=request.POST.get("display_px"),
            focus_lost=request.POST.get("focus_lost"),
            fullscreen=request.POST.get("fullscreen"),
        )
    except services.TrialRejected as exc:
        return _rejected(request, exc)
    if not _wants_json(request):
        return redirect("vtt:trial", slug=slug)
    body = {
        "recorded": not result.duplicate,
        "feedback": (
            {"correct": result.choice == result.real_side, "real_side": result.real_side}
            if result.kind == Trial.Kind.PRACTICE else None
        ),
        **_pending_payload(result.pending),
        "done_url": reverse("vtt:done", args=[slug]),
    }
    return JsonResponse(body)


@require_GET
def done(request: HttpRequest, slug: str) -> HttpResponse:
    """Where a session that ended goes: back to the panel with its outcome's code, or a page that says how it ended."""
    experiment = get_object_or_404(Experiment, slug=slug)
    rater = _current_rater(request, experiment)
    if rater is None or (rater.finished is None and rater.declined is None):
        return redirect("vtt:landing", slug=slug)
    return _ended(request, experiment, rater)


def stop(request: HttpRequest, slug: str) -> HttpResponse:
    """"Stop taking part": GET asks to confirm, POST ends the session as returned (its answers are kept)."""
    experiment = get_object_or_404(Experiment, slug=slug)
    rater = _current_rater(request, experiment)
    if rater is None:
        return redirect("vtt:landing", slug=slug)
    if request.method == "POST":
        rater = services.rater_return(rater=rater)
    if rater.finished is not None or rater.declined is not None:
        return _ended(request, experiment, rater)
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    return render(request, "vtt/stop.html", {"experiment": experiment, "urls": _urls(slug)})


# Outcomes that go back to the panel even without a code (a custom panel may take none).
SENT_WITHOUT_CODE = (Rater.Outcome.COMPLETED, Rater.Outcome.COMPLETED_FLAGGED)


def _ended(request: HttpRequest, experiment: Experiment, rater: Rater, *, preview: dict | None = None) -> HttpResponse:
    """A session that ended: the participant goes back to the panel with the code of the rater's outcome
    (`Experiment.code_for`), or sees a page saying how the session ended, with the code where there is one.

    Sent back: a Prolific participant who came with PROLIFIC_PID (one without it gets the
    code on the page), or a custom panel's; a finished session goes back even without a
    code (a custom panel may need none), any other outcome only with its code, since a panel
    takes an empty code as a completion. A decline goes back only with a panel id. In a
    preview (``preview``: the context of `vtt.preview`) nothing is sent: the page says
    where the participant would have gone.
    """
    outcome = rater.outcome
    code = experiment.code_for(rater)
    identified = bool(rater.external_id) or (
        experiment.panel == Experiment.Panel.CUSTOM and outcome != Rater.Outcome.DECLINED)
    sent = bool(code) or outcome in SENT_WITHOUT_CODE
    back = _back_to_panel(experiment, code) if sent and identified and preview is None else None
    if back is not None:
        return back
    context = {"experiment": experiment, "code": code, "outcome": outcome, "preview": preview}
    if preview is not None and sent:
        panel = _back_to_panel(experiment, code)
        context["would_go_to"] = panel["Location"] if panel is not None else ""
    template = "vtt/declined.html" if outcome == Rater.Outcome.DECLINED else "vtt/done.html"
    return render(request, template, context)


def _back_to_panel(experiment: Experiment, code: str) -> HttpResponse | None:
    """The redirect that takes a participant back to the experiment's panel with ``code``; None without a panel.

    A code that is an http(s) URL is the panel's own address for that outcome (custom panels): it is used as it is.
    """
    if experiment.panel == Experiment.Panel.NONE:
        return None
    if code.startswith(("https://", "http://")):
        return redirect(code)
    code = quote(code, safe="")
    if experiment.panel == Experiment.Panel.PROLIFIC:
        return redirect(PROLIFIC_COMPLETE.format(code=code))
    if experiment.panel == Experiment.Panel.CUSTOM and experiment.completion_url:
        return redirect(experiment.completion_url.replace("{code}", code))
    return None


@require_GET
def image(request: HttpRequest, name: str) -> HttpResponse:
    """Serve one side of one of this rater's pending trials, with headers the same for every image but its length.

    ``name`` is the trial's own name for that side: another rater's trial, an answered
    trial or an unknown name is a 404, and nothing is written. No Last-Modified, no ETag
    and no file name: the real image is rendered before the colorized ones, and a
    timestamp would tell them apart.
    """
    if not _IMAGE_NAME.match(name):
        return HttpResponseBadRequest("bad image name")
    file = selectors.pending_image(rater_tokens=_session_tokens(request), name=name[:-4])
    if file is None:
        raise Http404("no such image")
    return _image_response(file)


def _image_response(file: str) -> HttpResponse:
    """A stored pair image, with the headers every image gets (its length aside); a 404 if the file is gone.

    With ``VTT_IMAGE_ACCEL_REDIRECT`` set (behind nginx, ``manage.py nginx_config``), the body is empty and
    ``X-Accel-Redirect: <prefix><file>`` tells nginx to send the file from its ``internal`` location, which
    adds no Last-Modified or ETag either; nginx keeps this Content-Type and Cache-Control and drops the
    X-Accel-Redirect header. The rater's right to the image is decided here either way.
    """
    path = pairs_dir() / file
    if settings.VTT_IMAGE_ACCEL_REDIRECT:
        if not path.is_file():
            raise Http404("no such image")
        response = HttpResponse(b"", content_type="image/jpeg")
        response["X-Accel-Redirect"] = settings.VTT_IMAGE_ACCEL_REDIRECT + quote(file)
    else:
        try:
            data = path.read_bytes()  # tens of kB: no streaming needed
        except FileNotFoundError:
            raise Http404("no such image") from None
        response = HttpResponse(data, content_type="image/jpeg")
    response["Cache-Control"] = f"private, max-age={settings.VTT_IMAGE_CACHE_SECONDS}, immutable"
    return response


# --- preview: the rater's pages with nothing recorded (vtt.preview) -----------------------------------------


def _preview_urls(slug: str) -> dict[str, str]:
    names = ("start", "decline", "trial", "answer", "done", "stop")
    urls = {name: reverse(f"vtt:preview_{name}", args=[slug]) for name in names}
    urls["restart"] = reverse("vtt:preview", args=[slug])
    return urls


def _previewing(view):
    """A preview view: called with the experiment once the request may preview it (staff, or a valid link: the
    ``key`` parameter, or the one the session remembers); otherwise the 403 page."""
    @functools.wraps(view)
    def wrapped(request: HttpRequest, slug: str, *args, **kwargs) -> HttpResponse:
        experiment = get_object_or_404(Experiment, slug=slug)
        try:
            preview.authorize(request, experiment, request.GET.get("key"))
        except preview.PreviewDenied as exc:
            return render(request, "vtt/error.html", {"message": str(exc)}, status=exc.status)
        return view(request, experiment, *args, **kwargs)
    return wrapped


def _preview_context(slug: str) -> dict:
    return {"restart": reverse("vtt:preview", args=[slug])}


@require_GET
@_previewing
def preview_landing(request: HttpRequest, experiment: Experiment) -> HttpResponse:
    """The landing page as a new participant sees it, whatever the experiment's state (a draft included)."""
    return render(request, "vtt/landing.html", {
        "experiment": experiment, "hidden": {}, "returning": None, "urls": _preview_urls(experiment.slug),
        "preview": _preview_context(experiment.slug)})


@require_POST
@_previewing
def preview_start(request: HttpRequest, experiment: Experiment) -> HttpResponse:
    preview.start(request, experiment)
    return redirect("vtt:preview_trial", slug=experiment.slug)


@require_POST
@_previewing
def preview_decline(request: HttpRequest, experiment: Experiment) -> HttpResponse:
    preview.end(request, experiment, Rater.Outcome.DECLINED)
    return _preview_ended(request, experiment)


def _preview_payload(slug: str, trial: dict) -> dict:
    names = {side: reverse("vtt:preview_image", args=[slug, f"{trial[f'{side}_image']}.jpg"])
             for side in ("left", "right")}
    return {"token": trial["token"], "practice": trial["practice"], "number": trial["number"],
            "total": trial["total"], **names, "exposure_ms": trial["exposure_ms"] or 0}


def _preview_pending(experiment: Experiment, state: dict) -> dict:
    """The preview's current and next trials as `_pending_payload` gives a rater's."""
    trials = [_preview_payload(experiment.slug, trial) for trial in preview.shown(experiment, state)]
    return {"current": trials[0] if trials else None, "next": trials[1] if len(trials) > 1 else None}


@require_GET
@_previewing
def preview_trial(request: HttpRequest, experiment: Experiment) -> HttpResponse:
    state = preview.current(request, experiment)
    if state is None:
        return redirect("vtt:preview", slug=experiment.slug)
    page = _preview_pending(experiment, state)
    if page["current"] is None:
        return redirect("vtt:preview_done", slug=experiment.slug)
    return _trial_page(request, experiment, page, _preview_urls(experiment.slug),
                       preview=_preview_context(experiment.slug))


@require_POST
@_previewing
def preview_answer(request: HttpRequest, experiment: Experiment) -> HttpResponse:
    """As `answer`, with the same JSON, but nothing recorded: ``recorded`` is always false."""
    state = preview.current(request, experiment)
    try:
        if state is None:
            raise services.TrialRejected("no preview session for this experiment", status=403)
        result = preview.answer(request, experiment, state, token=request.POST.get("trial", ""),
                                choice=request.POST.get("choice", ""))
    except services.TrialRejected as exc:
        return _rejected(request, exc)
    if not _wants_json(request):
        return redirect("vtt:preview_trial", slug=experiment.slug)
    practice = result["kind"] == Trial.Kind.PRACTICE
    return JsonResponse({
        "recorded": False,
        "feedback": ({"correct": request.POST["choice"] == result["real_side"], "real_side": result["real_side"]}
                     if practice else None),
        **_preview_pending(experiment, state),
        "done_url": reverse("vtt:preview_done", args=[experiment.slug]),
    })


@require_GET
@_previewing
def preview_done(request: HttpRequest, experiment: Experiment) -> HttpResponse:
    state = preview.current(request, experiment)
    if state is None or not state.get("outcome"):
        return redirect("vtt:preview", slug=experiment.slug)
    return _preview_ended(request, experiment)


@_previewing
def preview_stop(request: HttpRequest, experiment: Experiment) -> HttpResponse:
    if preview.current(request, experiment) is None:
        return redirect("vtt:preview", slug=experiment.slug)
    if request.method == "POST":
        preview.end(request, experiment, Rater.Outcome.RETURNED)
        return _preview_ended(request, experiment)
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    return render(request, "vtt/stop.html", {"experiment": experiment, "urls": _preview_urls(experiment.slug),
                                             "preview": _preview_context(experiment.slug)})


def _preview_ended(request: HttpRequest, experiment: Experiment) -> HttpResponse:
    """The end page of the preview's outcome (an unsaved rater carries it): what a participant would see, and where
    they would have been sent."""
    outcome = preview.current(request, experiment)["outcome"]
    return _ended(request, experiment, Rater(experiment=experiment, outcome=outcome),
                  preview=_preview_context(experiment.slug))


@require_GET
@_previewing
def preview_image(request: HttpRequest, experiment: Experiment, name: str) -> HttpResponse:
    """One side of the preview's current or next trial, with the rater's image headers (`image`)."""
    if not _IMAGE_NAME.match(name):
        return HttpResponseBadRequest("bad image name")
    file = preview.image_file(experiment, preview.current(request, experiment), name[:-4])
    if file is None:
        raise Http404("no such image")
    return _image_response(file)


@staff_member_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    summaries = selectors.experiment_summaries()
    for summary in summaries:  # where each pre-registered stopping rule stands at its latest look
        summary["precision"] = planning.precision_status(summary["experiment"])
        summary["transitions"] = services.TRANSITIONS[summary["experiment"].state]  # its state buttons
    return render(request, "vtt/dashboard.html", {"experiments": summaries})


@staff_member_required
@require_POST
def experiment_state(request: HttpRequest, slug: str) -> HttpResponse:
    """Move an experiment to the posted ``state`` (the dashboard's buttons; CSRF-protected, staff only).

    The service checks the move; a refused one changes nothing and comes back as an error message.
    """
    experiment = get_object_or_404(Experiment, slug=slug)
    state = request.POST.get("state", "")
    try:
        services.experiment_set_state(experiment=experiment, state=state)
    except services.TrialRejected as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{experiment.slug} is now {state}")
    return redirect("vtt:dashboard")


@staff_member_required
@require_GET
def experiment_detail(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    context = {
        "experiment": experiment,
        "summary": selectors.experiment_summary(experiment=experiment),
        "viewing": selectors.rater_viewing(experiment=experiment),
        "outcomes": selectors.outcome_counts(experiment=experiment),
    }
    key = preview.preview_key(experiment)
    context["preview_link"] = request.build_absolute_uri(
        f"{reverse('vtt:preview', args=[slug])}?{urlencode({'key': key})}")
    context["preview_until"] = preview.key_expiry(key)
    # The numbers of `vtt_report --experiment SLUG` and the plan made from them, computed once per state of the answers.
    fingerprint = selectors.report_fingerprint(experiment=experiment)
    data = report.cached_experiment_report(experiment, fingerprint)
    context.update(report_html.html_context(data))
    context.update(planning.cached_plan_context(experiment, data, fingerprint))
    return render(request, "vtt/experiment.html", context)


@staff_member_required
@require_GET
def export(request: HttpRequest, slug: str, fmt: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, slug=slug)
    if fmt not in {"csv", "json"}:
        raise Http404("export formats: csv, json")
    # Streamed: the rows are read and written a chunk at a time while the response is sent (vtt.exports).
    rows = exports.trial_rows(experiment=experiment)
    if fmt == "csv":
        response = StreamingHttpResponse(exports.csv_chunks(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(exports.json_chunks(rows, experiment=experiment),
                                         content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{experiment.slug}-trials.{fmt}"'
    return response


def _download(text: str, content_type: str, filename: str) -> HttpResponse:
    """A UTF-8 text file sent as an attachment named ``filename`` (the pay sheet and the Prolific files)."""
    response = HttpResponse(text, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@staff_member_required
@require_GET
def pay_sheet(request: HttpRequest, slug: str) -> HttpResponse:
    """The pay sheet (vtt.payments) as CSV: one row per participant; built whole, as it has one row per person."""
    experiment = get_object_or_404(Experiment, slug=slug)
    response = _download("", "text/csv", f"{experiment.slug}-pay-sheet.csv")
    payments.write_sheet(payments.pay_sheet(experiment=experiment), response)
    return response


@staff_member_required
@require_GET
def prolific_file(request: HttpRequest, slug: str, kind: str) -> HttpResponse:
    """Prolific's bulk approval (``approve``) or bulk bonus (``bonus``) file, as plain text (vtt.payments)."""
    experiment = get_object_or_404(Experiment, slug=slug)
    lines = {"approve": payments.approval_lines, "bonus": payments.bonus_lines}.get(kind)
    if lines is None:
        raise Http404("Prolific files: approve, bonus")
    text = "".join(f"{line}\n" for line in lines(payments.pay_sheet(experiment=experiment)))
    return _download(text, "text/plain", f"{experiment.slug}-prolific-{kind}.txt")
