"""Preview: an experiment's rater experience, page for page, with nothing recorded and no place taken.

Who may preview: staff users, and anyone with a signed preview link (`preview_key`; staff
page, or ``manage.py experiment preview-link SLUG``). A link names one experiment and
the moment it expires; it is signed with the project's SECRET_KEY, so one that was
altered, made for another experiment or expired is refused (`check_key`).

Nothing is written to the database. The preview's state lives in the browser's session,
which is a signed cookie (``SESSION_ENGINE`` signed_cookies): the session's trials as
[kind, colorization id, method id], the real sides, the answers so far and how it ended.
The pages are the rater's (landing, trial, stop, done), with a banner, posting to the
preview's own addresses; the images are served, like the rater's, under opaque names
that belong to one trial of one preview (an HMAC of the preview's random id and the
trial's place), with the same headers. The cookie can be read (signed, not encrypted), so
it holds each real side XOR a secret bit derived the same way: the preview shows no more
than a rater sees.

The session is planned like a rater's (`vtt.services.session_plan`: practice, scored and
catch trials, balanced sides), but its pairs are drawn from all of the experiment's pairs
without looking at places, since it takes none: each method rated least often so far
first (mixed design) or one method drawn at random (single design), never an image twice,
never two identical images, practice from the tested methods, catch trials from the catch
method. Timing (fixed or staircase), practice feedback and the catch-trial rule (flagged
or screened out, `Experiment.catch_fail_action`) work as in a real session; the end page
says which outcome the session reached and where a participant would have been sent,
without sending anyone. ``session_minutes`` is not applied to a preview.
"""
from __future__ import annotations

import hashlib
import hmac
import random
import secrets
from collections import Counter
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.core import signing
from django.utils import timezone

from .models import Colorization, Experiment, Method, Rater, Trial
from .services import (SCORED_ROLES, TrialRejected, flagged_by_catch, identical, screened_out_by_catch,
                       session_plan, trial_exposure)

SALT = "vtt.preview"
DEFAULT_HOURS = 72  # a link's life when none is asked for: long enough for a colleague or a reviewer to try it
MAX_HOURS = 24 * 90
STATE_KEY = "vtt-preview-"  # + experiment id: the preview's state in the session
LINK_KEY = "vtt-preview-key-"  # + experiment id: the signed link the preview was opened with


class PreviewDenied(Exception):
    """A preview that may not be shown: not staff and no valid link (HTTP 403)."""

    status = 403


def preview_key(experiment: Experiment, *, hours: float = DEFAULT_HOURS, now: datetime | None = None) -> str:
    """A signed key that lets its holder preview ``experiment`` for ``hours`` (at most `MAX_HOURS`)."""
    if not 0 < hours <= MAX_HOURS:
        raise ValueError(f"a preview link lasts more than 0 and at most {MAX_HOURS} hours, got {hours}")
    until = (now or timezone.now()) + timedelta(hours=hours)
    return signing.dumps({"e": experiment.pk, "u": int(until.timestamp())}, salt=SALT)


def key_expiry(key: str) -> datetime:
    """When a key made by `preview_key` expires (its signature unchecked: for display only)."""
    return datetime.fromtimestamp(signing.loads(key, salt=SALT)["u"], tz=dt_timezone.utc)


def check_key(experiment: Experiment, key: str, *, now: datetime | None = None) -> None:
    """Raise `PreviewDenied` unless ``key`` is a valid, unexpired preview key of ``experiment``."""
    try:
        data = signing.loads(key, salt=SALT)
    except signing.BadSignature:
        raise PreviewDenied("This preview link is not valid: it was altered or made by another installation.") \
            from None
    if not isinstance(data, dict) or data.get("e") != experiment.pk or not isinstance(data.get("u"), int):
        raise PreviewDenied("This preview link is for another experiment.")
    until = datetime.fromtimestamp(data["u"], tz=dt_timezone.utc)
    if (now or timezone.now()) >= until:
        raise PreviewDenied(f"This preview link expired on {until:%Y-%m-%d %H:%M} UTC: ask for a new one.")


def authorize(request, experiment: Experiment, key: str | None = None) -> None:
    """Let staff and holders of a valid link in; ``key`` is the link's (landing page), else the one the session
    remembers. Raises `PreviewDenied`."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return
    key = key if key is not None else request.session.get(f"{LINK_KEY}{experiment.pk}", "")
    if not key:
        raise PreviewDenied("A preview is for staff, or for holders of a preview link: ask the experimenter for one "
                            "(manage.py experiment preview-link SLUG).")
    check_key(experiment, key)
    # Written only when it changes: writing marks the session modified, and the session is the signed cookie
    # that also holds the preview's state, so every response would carry the cookie. An image request sent
    # before an answer and answered after it would then put back the state from before the answer (seen as
    # "no such trial in this session" for the next answer on a loaded machine).
    if request.session.get(f"{LINK_KEY}{experiment.pk}") != key:
        request.session[f"{LINK_KEY}{experiment.pk}"] = key


# --- the session ---------------------------------------------------------------------------


def _secret(preview_id: str, what: str) -> str:
    """32 hexadecimal digits that only the server can derive from the preview's id: names and side masks."""
    message = f"{SALT}:{preview_id}:{what}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()[:32]


def _mask(preview_id: str, position: int) -> int:
    return int(_secret(preview_id, f"{position}:side"), 16) & 1


def _draw(experiment: Experiment, plan: list[list[str]], rng: random.Random) -> tuple[list[list], list[str]]:
    """The pairs of a preview session for ``plan``, and the real side of each (reads only)."""
    rated = list(Method.objects.filter(experiment=experiment, role__in=SCORED_ROLES).values_list("id", flat=True))
    if experiment.design == Experiment.Design.SINGLE and rated:
        rated = [rng.choice(rated)]
    seen: list[int] = []
    counts: Counter = Counter()
    trials, sides = [], []
    for kind, side in plan:
        if kind == Trial.Kind.SCORED:
            order = sorted(rng.sample(rated, len(rated)), key=lambda m: counts[m])
            pools = [Colorization.objects.filter(method_id=m).exclude(identical()) for m in order]
        elif kind == Trial.Kind.CATCH:
            pools = [Colorization.objects.filter(method__experiment=experiment, method__role=Method.Role.CATCH)]
        else:
            pools = [Colorization.objects.filter(method__experiment=experiment, method__role=Method.Role.TESTED)
                     .exclude(identical())]
        for pool in pools:
            picked = list(pool.exclude(image_id__in=seen).order_by("?").values_list("id", "image_id", "method_id")[:1])
            if picked:
                colorization_id, image_id, method_id = picked[0]
                seen.append(image_id)
                if kind == Trial.Kind.SCORED:
                    counts[method_id] += 1
                trials.append([kind, colorization_id, method_id])
                sides.append(side)
                break
    return trials, sides


def start(request, experiment: Experiment) -> dict:
    """A new preview session in the request's session (replacing any earlier one of this experiment)."""
    preview_id = secrets.token_hex(16)
    trials, sides = _draw(experiment, session_plan(experiment), random.Random(secrets.randbits(64)))
    masked = "".join(str(int(side == Trial.Side.RIGHT) ^ _mask(preview_id, i)) for i, side in enumerate(sides))
    state = {"id": preview_id, "trials": trials, "sides": masked, "answers": "", "outcome": ""}
    if not any(kind == Trial.Kind.SCORED for kind, _, _ in trials):
        state["outcome"] = Rater.Outcome.NO_PAIRS
    request.session[f"{STATE_KEY}{experiment.pk}"] = state
    return state


def end(request, experiment: Experiment, outcome: str) -> dict:
    """End the preview session as ``returned`` ("Stop taking part"; one already ended keeps its outcome), or, for
    ``declined`` (the landing page's "I do not agree"), replace it with one that ended before its first trial."""
    state = current(request, experiment)
    if state is None or outcome == Rater.Outcome.DECLINED:
        state = {"id": secrets.token_hex(16), "trials": [], "sides": "", "answers": "", "outcome": ""}
    if not state.get("outcome"):
        state["outcome"] = outcome
    request.session[f"{STATE_KEY}{experiment.pk}"] = state
    return state


def current(request, experiment: Experiment) -> dict | None:
    """The preview session of this browser, or None."""
    state = request.session.get(f"{STATE_KEY}{experiment.pk}")
    return state if isinstance(state, dict) and isinstance(state.get("trials"), list) else None


def _side(state: dict, position: int) -> str:
    bit = int(state["sides"][position]) ^ _mask(state["id"], position)
    return Trial.Side.RIGHT if bit else Trial.Side.LEFT


def _rows(state: dict) -> list[dict]:
    """The preview's trials in the shape the engine's rules read (`vtt.services.flagged_by_catch`,
    `vtt.services.trial_exposure`)."""
    answers = state["answers"]
    return [{"kind": kind, "real_side": _side(state, i), "choice": answers[i] if i < len(answers) else "",
             "position": i + 1, "colorization__method_id": method_id}
            for i, (kind, _, method_id) in enumerate(state["trials"])]


def shown(experiment: Experiment, state: dict) -> list[dict]:
    """The current trial and the next (preloaded), as `vtt.views._trial_payload` gives them, minus the URLs: each
    has ``token``, ``practice``, ``number``, ``total``, ``left_image``, ``right_image``, ``exposure_ms`` and
    ``position`` (0-based, the server's own)."""
    if state.get("outcome"):
        return []
    trials = state["trials"]
    n_practice = sum(kind == Trial.Kind.PRACTICE for kind, _, _ in trials)
    rows = _rows(state)
    out = []
    for position in range(len(state["answers"]), min(len(state["answers"]) + 2, len(trials))):
        practice = trials[position][0] == Trial.Kind.PRACTICE
        out.append({
            "token": _secret(state["id"], f"{position}:trial"), "practice": practice,
            "number": position + 1 if practice else position + 1 - n_practice,
            "total": n_practice if practice else len(trials) - n_practice,
            "left_image": _secret(state["id"], f"{position}:L"), "right_image": _secret(state["id"], f"{position}:R"),
            "exposure_ms": trial_exposure(experiment, rows, rows[position]) if not out else None,
            "position": position,  # for the server only (`image_file`): the page gets the others
        })
    return out


def answer(request, experiment: Experiment, state: dict, *, token: str, choice: str) -> dict:
    """Take the answer ``choice`` to the current trial ``token``; returns {"kind", "real_side", "duplicate"}.

    The session ends when the plan is done (completed, or completed_flagged by the catch rule) or when the
    catch rule screens the participant out, as in a real session; nothing is recorded.
    """
    if choice not in Trial.Side.values:
        raise TrialRejected(f"choice must be one of {', '.join(Trial.Side.values)}")
    position = len(state["answers"])
    if position and token == _secret(state["id"], f"{position - 1}:trial") and state["answers"][-1] == choice:
        return {"kind": state["trials"][position - 1][0], "real_side": _side(state, position - 1), "duplicate": True}
    if state.get("outcome"):
        raise TrialRejected("this session has ended", status=409)
    if position >= len(state["trials"]) or token != _secret(state["id"], f"{position}:trial"):
        raise TrialRejected("no such trial in this session", status=404)
    state["answers"] += choice
    kind = state["trials"][position][0]
    rows = _rows(state)
    threshold = experiment.catch_fail_threshold
    if kind == Trial.Kind.CATCH and experiment.catch_fail_action == Experiment.CatchFailAction.SCREEN_OUT \
            and screened_out_by_catch(rows, [[row["kind"], ""] for row in rows], threshold):
        state["outcome"] = Rater.Outcome.SCREENED_OUT
    elif len(state["answers"]) == len(state["trials"]):
        flagged = flagged_by_catch(rows, threshold)
        state["outcome"] = Rater.Outcome.COMPLETED_FLAGGED if flagged else Rater.Outcome.COMPLETED
    request.session[f"{STATE_KEY}{experiment.pk}"] = state
    return {"kind": kind, "real_side": _side(state, position), "duplicate": False}


def image_file(experiment: Experiment, state: dict | None, name: str) -> str | None:
    """The stored file behind preview image ``name`` while its trial is current or next; None otherwise."""
    if state is None:
        return None
    for trial in shown(experiment, state):
        for side, key in ((Trial.Side.LEFT, "left_image"), (Trial.Side.RIGHT, "right_image")):
            if hmac.compare_digest(trial[key], name):
                files = Colorization.objects.filter(pk=state["trials"][trial["position"]][1]) \
                    .values_list("file", "image__real_file").first()
                if files is None:
                    return None
                file, real_file = files
                return real_file if _side(state, trial["position"]) == side else file
    return None
