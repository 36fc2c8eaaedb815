"""How many raters an experiment still needs, and the pre-registered stopping rule.

`plan` turns a report's judgments (the same judgments the report scored: answered, counted, scored trials of
the raters not flagged) into, per method, "now +-x; to reach +-y, about N more raters (cost)" and the
minimal detectable difference of each pair of tested methods, with `evaluation.planning`'s variance
components. `manage.py vtt_plan` prints it; `experiment_plan_context` gives it, with the stopping rule's
status, to ``templates/vtt/_plan.html`` under the single variable ``vtt_plan``.

Units: every half-width, target and rate shown or accepted here is in percentage points (``3`` is +-3 points,
a fraction of 0.03), as in the report.

The stopping rule
-----------------
An experiment may pre-register a target half-width (``Experiment.precision_target``, points) and a look
schedule: a look after every ``look_every`` finished raters, at most ``max_looks`` looks. At look j the data
are the judgments of the first ``j * look_every`` raters to finish (by finishing time; raters still rating
then, and later ones, are not in it), scored as the report scores them. The experiment is *precise enough*
at the first look where every tested method's interval half-width is below the target; the controls (the
ground-truth calibration, catch methods) are left out of the rule, because they check the protocol rather
than measure a method, and the calibration control, near 50%, would otherwise always be the widest interval
and decide alone. `precision_status` says where the latest scheduled look stands; it depends only on the
schedule and on those raters' judgments, so viewing a page neither adds a look nor changes one, and raters
who finish between looks change nothing until the next look.

Looking repeatedly and stopping when the intervals happen to be narrow can cost coverage: a half-width that is
small partly by chance, and a rate estimate far from 50% (which has a smaller binomial variance), are both more
likely at the stop. Measured by ``python benchmarks/planning.py --part stopping`` (crossed logistic effects of
`benchmarks.crossed`; the PixColor-like design and its K = 3, heavy-heterogeneity and one-method-per-rater
variations, 188 to 312 raters, 4 tested methods, 10 looks, a target first met around the middle; 200 runs
each), the 95% intervals at the stop covered 93.1% to 95.6% of the true rates where those of the whole design
covered 92.2% to 95.3%: differences of -0.8 to +0.9 points, within the simulation's standard error (0.7 to 0.9
points). (The 92.2% is the heavy-heterogeneity design's fixed-n coverage, a property of the interval, not of
stopping.) The cost is not material because with hundreds of raters a half-width is almost a fixed function of
the number of raters: whether it is below the target hardly depends on the answers. What keeps it so is the
schedule: a bounded number of pre-registered looks, none added by page views. So the looks use the report's
own level, ``LOOK_CONFIDENCE`` = 95%, and the intervals the rule judges are the ones the report prints at the
look. Looking at 97% instead covered 95.3% to 96.9% at the stop and needed 19% to 24% more raters.
With few raters (tens) the half-widths vary more from run to run and the cost may be larger; that was not
measured.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from itertools import combinations

import numpy as np
from django.core.cache import cache

import evaluation
from evaluation import planning as stats

from . import judgments as reading
from . import report as report_module

# Confidence level of the intervals at the looks of the stopping rule (see the module docstring).
LOOK_CONFIDENCE = 0.95


class PlanError(ValueError):
    """Input the planner cannot use; the message says what and why."""


# --- the pilot: the report's judgments ----------------------------------------------------------------------


def kept_judgments(judgments, report: dict) -> dict:
    """The judgments the report scored, as columns: ``y`` (0/1), ``image``, ``rater``, ``method`` (str labels).

    The same selection as `vtt.report.build_report` with the report's settings (answered, counted scored
    trials; raters flagged by their catch trials left out unless the report kept them; trials during which the
    page lost focus left out if the report left them out). Each method's number of judgments and VTT are checked
    against the report's rows, so that the plan and the report are about the same data.
    """
    j = judgments
    settings = report["settings"]
    answered = j.answer >= 0
    catch = answered & (j.kind == reading.CATCH)
    scored = answered & (j.kind == reading.SCORED) & j.counted
    used = catch | scored
    kept = scored
    if used.any():
        quality = evaluation.quality(j.rater[used], catch[used], 1 - j.answer[used],
                                     max_fail_rate=settings["max_fail_rate"])
        flagged = np.zeros(j.rater_labels.size, dtype=bool)
        flagged[quality.raters[quality.flagged]] = True
        if not settings["include_flagged"]:
            kept = kept & ~flagged[j.rater]
    if settings.get("exclude_looked_away"):
        kept = kept & ~(j.focus_lost == 1)
    if not settings.get("include_pilot", False):  # pilot raters are left out unless the report kept them
        kept = kept & ~j.pilot
    out = {"y": j.answer[kept].astype(np.float64), "image": j.image_labels[j.image[kept]].astype(str),
           "rater": j.rater_labels[j.rater[kept]].astype(str), "method": j.method_labels[j.method[kept]].astype(str)}
    for row in report["methods"]:
        sel = out["method"] == row["method"]
        n = int(sel.sum())
        if n != row["n_trials"] or not math.isclose(float(out["y"][sel].mean()) if n else -1.0, row["vtt"]):
            raise PlanError(f"the planner's judgments of {row['method']} ({n}) do not match the report's "
                            f"({row['n_trials']}); the report's exclusion rules have changed")
    return out


# --- the plan -------------------------------------------------------------------------------------------------


def _pts(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else 100 * x


def _half(row):
    if row.get("ci_low") is None or row.get("ci_high") is None:
        return None
    return (row["ci_high"] - row["ci_low"]) / 2


def _mixing(data) -> str:
    """'mixed' when some rater judged two methods, else 'single'."""
    pairs = np.unique(np.stack([data["rater"], data["method"]]), axis=1)
    return "mixed" if np.unique(pairs[0]).size < pairs.shape[1] else "single"


def plan(data: dict, report: dict, *, n_images=None, k=None, trials_per_rater=None, mixing=None, target=None,
         price_per_rater=None, confidence=None, design_images: dict | None = None) -> dict:
    """Per method: the pilot's components, "now", the design's prediction and the raters a target needs.

    Parameters
    ----------
    data : dict
        The pilot's judgments, from `kept_judgments`.
    report : dict
        The report of the same judgments (for "now": its intervals, and its method rows and roles).
    n_images, k, trials_per_rater : numbers, optional
        The design: images, raters per (image, method) and judgments of each method per rater. Defaults per
        method: ``design_images[method]`` (an experiment's colorized images) or the images the pilot judged;
        the pilot's mean judgments per image; the pilot's mean judgments of the method per rater.
    mixing : {'mixed', 'single'}, optional
        Whether raters see every method; default: 'mixed' when some pilot rater judged two methods.
    target : float, optional
        Target half-width in percentage points.
    price_per_rater : float, optional
        Price of one more rater (any currency), for the cost.
    confidence : float, optional
        Level of the intervals; default the report's.

    Returns
    -------
    dict with ``methods`` (one dict per report row: components, ``now``, ``design``, ``needed``, ``line``),
    ``pairs`` (minimal detectable differences of tested pairs at the design), ``summary`` (raters for all
    tested methods to reach the target) and the settings.
    """
    confidence = report["settings"]["confidence"] if confidence is None else confidence
    if target is not None and not 0 < target < 50:
        raise PlanError(f"the target half-width must be between 0 and 50 percentage points, got {target:g}")
    if price_per_rater is not None and not price_per_rater >= 0:
        raise PlanError(f"the price per rater must be 0 or more, got {price_per_rater:g}")
    for name, value in (("images", n_images), ("k", k), ("trials per rater", trials_per_rater)):
        if value is not None and not value > 0:
            raise PlanError(f"the design's {name} must be positive, got {value:g}")
    if not report["methods"]:
        raise PlanError("no scored judgments to plan from (none answered yet, or all from flagged raters)")
    mixing = mixing or _mixing(data)
    rows, comps = [], {}
    for row in report["methods"]:
        sel = data["method"] == row["method"]
        try:
            comp = stats.components(data["y"][sel], data["image"][sel], data["rater"][sel])
        except ValueError as exc:
            rows.append({"method": row["method"], "role": row["role"], "is_control": row["is_control"],
                         "vtt": 100 * row["vtt"], "error": str(exc),
                         "line": f"{row['method']}: cannot plan yet ({exc})"})
            continue
        comps[row["method"]] = comp
        images = n_images or (design_images or {}).get(row["method"]) or comp.n_images
        t = trials_per_rater or comp.trials_per_rater
        k_now = comp.n_trials / images  # the pilot's judgments spread over the design's images
        k_design = k or comp.raters_per_image
        design = stats.predict(comp, images, k_design, t, confidence=confidence)
        model_now = stats.predict(comp, images, k_now, t, confidence=confidence)
        entry = {
            "method": row["method"], "role": row["role"], "is_control": row["is_control"], "vtt": 100 * row["vtt"],
            "components": {"sd_image": 100 * math.sqrt(comp.image), "sd_rater": 100 * math.sqrt(comp.rater),
                           "sd_residual": 100 * math.sqrt(comp.residual), "clipped": list(comp.clipped)},
            "n_trials": comp.n_trials, "n_images": comp.n_images, "n_raters": comp.n_raters,
            "trials_per_rater": t, "k_now": k_now, "images": images,
            "now": _pts(_half(row)), "now_model": 100 * model_now.half_width,
            "design": {"k": k_design, "half_width": 100 * design.half_width, "df": design.df,
                       "raters": design.n_raters, "floor": 100 * design.floor},
            "needed": None,
        }
        if target is not None:
            need = stats.raters_needed(comp, target / 100, n_images=images, k=k_now, trials_per_rater=t,
                                       n_raters_now=comp.n_raters, confidence=confidence,
                                       price_per_rater=price_per_rater)
            entry["needed"] = {
                "reachable": need.reachable, "k": need.k_needed, "more_raters": need.more_raters,
                "cost": need.cost, "floor": 100 * need.floor, "images_needed": need.images_needed,
                "raters_for_images": need.raters_for_images,
            }
        entry["line"] = _line(entry, target, images)
        rows.append(entry)
    tested = [r for r in rows if not r["is_control"] and "error" not in r]
    pair_rows = []
    names = [r["method"] for r in tested]
    if len(names) < 2:
        names = [r["method"] for r in rows if "error" not in r]
    for a, b in combinations(names, 2):
        try:
            diff = stats.difference_components(data["y"], data["image"], data["rater"], data["method"], (a, b))
        except ValueError:
            continue
        ra = next(r for r in rows if r["method"] == a)
        images = n_images or ra["images"]
        pred, mdd = stats.predict_difference(diff, images, k or ra["design"]["k"], ra["trials_per_rater"],
                                             mixing=mixing, confidence=confidence)
        pair_rows.append({"method_a": a, "method_b": b, "difference": 100 * diff.difference,
                          "mdd": 100 * mdd, "se": 100 * pred.standard_error,
                          "half_width": 100 * pred.half_width, "rater_identified": diff.rater_identified,
                          "line": f"{a} - {b}: now {100 * diff.difference:+.1f} points; at the design the smallest "
                                  f"difference detectable with 80% power at the 5% level is {100 * mdd:.1f} points"})
    summary = None
    if target is not None and tested:
        needs = [r["needed"] for r in tested]
        if all(n["reachable"] for n in needs):
            more = (max if mixing == "mixed" else sum)(n["more_raters"] for n in needs)
            cost = None if price_per_rater is None else more * price_per_rater
            summary = {"reachable": True, "more_raters": more, "cost": cost,
                       "line": f"every tested method within +-{target:g} points: about {more} more raters"
                               + (f" ({_money(cost)})" if cost is not None else "")
                               + ("" if mixing == "mixed" else " (each sees one method)")}
        else:
            stuck = [r["method"] for r in tested if not r["needed"]["reachable"]]
            summary = {"reachable": False, "more_raters": None, "cost": None,
                       "line": f"+-{target:g} points is out of reach with these images for {', '.join(stuck)}"}
    return {"methods": rows, "pairs": pair_rows, "summary": summary, "target": target, "mixing": mixing,
            "confidence": confidence, "level": f"{confidence:.0%}", "price_per_rater": price_per_rater,
            "design": {"n_images": n_images, "k": k, "trials_per_rater": trials_per_rater}}


def _money(x) -> str:
    return f"cost {x:,.2f}"


def _line(entry, target, images) -> str:
    now = entry["now"]
    head = f"{entry['method']}: now " + ("n/a" if now is None else f"+-{now:.1f} points")
    need = entry["needed"]
    if target is None:
        d = entry["design"]
        return f"{head}; at the design (K = {d['k']:.3g} raters per image): +-{d['half_width']:.1f}"
    if need["reachable"]:
        if need["more_raters"] == 0:
            return f"{head}; +-{target:g} is reached with the raters so far (model: +-{entry['now_model']:.1f})"
        cost = "" if need["cost"] is None else f" ({_money(need['cost'])})"
        return (f"{head}; to reach +-{target:g}, about {need['more_raters']} more raters{cost} "
                f"(K = {need['k']:.1f} raters per image)")
    more_images = ("" if need["images_needed"] is None else
                   f"; about {need['images_needed']} images at the same K would reach it")
    return (f"{head}; +-{target:g} is out of reach with these {images:g} images: however many raters, the "
            f"image effects alone leave +-{need['floor']:.1f}{more_images}")


# --- the stopping rule --------------------------------------------------------------------------------------


def _look_raters(experiment, include_pilot: bool = False):
    """The finished raters in the order they finished; the pilot's only with ``include_pilot`` (the looks are
    the main study's, as its report is)."""
    from .models import Rater

    raters = Rater.objects.filter(experiment=experiment, finished__isnull=False, declined__isnull=True)
    if not include_pilot:
        raters = raters.filter(pilot=False)
    return list(raters.order_by("finished", "id").values_list("token", flat=True))


def _subset(judgments, keep):
    fields = ("rater", "image", "method", "kind", "answer", "class_index", "counted", "position", "exposure",
              "focus_lost", "pilot")
    return dataclasses.replace(judgments, **{f: getattr(judgments, f)[keep] for f in fields})


def precision_status(experiment, report: dict | None = None) -> dict:
    """Where the pre-registered stopping rule stands at the latest scheduled look (see the module docstring).

    Returns a dict: ``enabled`` (False when the experiment has no target or no schedule; nothing else is then
    meaningful), ``target`` (points), ``look_every``, ``max_looks``, ``confidence`` (the looks' level,
    `LOOK_CONFIDENCE`), ``n_finished`` (raters finished so far), ``look`` (the latest look taken, 0 before the
    first), ``look_raters`` (raters in it), ``next_look_at`` (finished raters at the next look; None after the
    last), ``precise`` (every tested method's half-width below the target at that look), ``methods`` (per
    method at the look: ``half_width`` in points or None, ``below``, ``is_control``; controls are listed but
    do not count), ``not_precise`` (tested methods at or above the target, or without an interval),
    ``final`` (the last scheduled look has been taken) and ``message``, one sentence for a page.

    `report` (optional) gives the exclusion settings of the report being shown (flagged raters, looked-away
    trials, pilot raters); by default those of `vtt.report.experiment_report`.
    """
    target, every, most = experiment.precision_target, experiment.look_every, experiment.max_looks
    if target is None or not every:
        return {"enabled": False, "message": "no stopping rule registered (precision target and look schedule)"}
    settings = (report or {}).get("settings", {})
    include_flagged = bool(settings.get("include_flagged", False))
    away = bool(settings.get("exclude_looked_away", False))
    max_fail = settings.get("max_fail_rate", experiment.catch_fail_threshold)
    include_pilot = bool(settings.get("include_pilot", False))
    finished = _look_raters(experiment, include_pilot)
    look = min(len(finished) // every, most)
    status = {"enabled": True, "target": float(target), "look_every": every, "max_looks": most,
              "confidence": LOOK_CONFIDENCE, "level": f"{LOOK_CONFIDENCE:.0%}", "n_finished": len(finished),
              "look": look, "look_raters": look * every,
              "next_look_at": (look + 1) * every if look < most else None, "final": look >= most,
              "precise": False, "methods": [], "not_precise": []}
    if look == 0:
        status["message"] = (f"no look yet: the first is at {every} finished raters ({len(finished)} so far); "
                             f"target +-{target:g} points")
        return status
    raters = tuple(finished[:look * every])
    # A look's data never change once it is taken: its intervals are kept in Django's cache (as the report is)
    # under the look and its last rater, so that a page view computes nothing until the next look.
    key = "vtt-look:" + hashlib.sha256(repr((
        experiment.pk, look, raters[-1], len(raters), float(target), include_flagged, away, float(max_fail),
        include_pilot)).encode()).hexdigest()
    methods = cache.get(key)
    if methods is None:
        judgments, _ = reading.experiment_judgments(experiment)
        keep = np.isin(judgments.rater_labels[judgments.rater], np.asarray(raters, dtype=str))
        at_look = report_module.build_report(
            _subset(judgments, keep), methods=reading.experiment_methods(experiment), confidence=LOOK_CONFIDENCE,
            include_flagged=include_flagged, max_fail_rate=max_fail, exclude_looked_away=away,
            include_pilot=include_pilot)
        methods = []
        for row in at_look["methods"]:
            half = _pts(_half(row))
            methods.append({"method": row["method"], "is_control": row["is_control"], "role": row["role"],
                            "half_width": half, "below": half is not None and half < target,
                            "vtt": 100 * row["vtt"]})
        cache.set(key, methods, timeout=None)
    tested = [m for m in methods if not m["is_control"]]
    not_precise = [m["method"] for m in tested if not m["below"]]
    precise = bool(tested) and not not_precise
    status.update(methods=methods, not_precise=not_precise, precise=precise)
    where = f"at look {look} of {most} ({look * every} finished raters, {LOOK_CONFIDENCE:.0%} intervals)"
    if precise:
        status["message"] = f"precise enough {where}: every tested method within +-{target:g} points"
    elif not tested:
        status["message"] = f"{where}: no tested method has scored judgments yet"
    else:
        then = ("the last scheduled look: the rule did not stop the experiment" if status["final"]
                else f"next look at {(look + 1) * every} finished raters")
        status["message"] = (f"not yet precise {where}: {', '.join(not_precise)} at or above +-{target:g} "
                             f"points; {then}")
    return status


# --- the staff page -----------------------------------------------------------------------------------------


def experiment_plan_context(experiment, report: dict, *, target=None, price_per_rater=None) -> dict:
    """Context for ``{% include "vtt/_plan.html" %}``: ``{"vtt_plan": ...}``.

    `report` is the experiment's report dict (`vtt.report.experiment_report`, or the staff page's cached one);
    the plan is made from the same judgments with the same exclusions. `target` (points) defaults to the
    experiment's pre-registered ``precision_target``; without either, each line gives the half-width at the
    experiment's design (its ``raters_per_pair``). Keys of ``vtt_plan``: ``lines`` (one sentence per method),
    ``summary`` (or None), ``pairs`` (sentences on the minimal detectable differences), ``precision`` (the
    `precision_status` dict), ``level``, ``error`` (a sentence when there is nothing to plan from, else None)
    and ``data`` (the whole `plan` dict).
    """
    target = experiment.precision_target if target is None else target
    precision = precision_status(experiment, report)
    out = {"lines": [], "summary": None, "pairs": [], "precision": precision, "error": None, "data": None,
           "level": f"{report['settings']['confidence']:.0%}", "target": target}
    if not report["methods"]:
        out["error"] = "no scored judgments yet to plan from"
        return {"vtt_plan": out}
    judgments, _ = reading.experiment_judgments(experiment)
    try:
        data = plan(kept_judgments(judgments, report), report, k=experiment.raters_per_pair, target=target,
                    price_per_rater=price_per_rater, mixing=str(experiment.design),
                    design_images=design_images(experiment))
    except PlanError as exc:
        out["error"] = str(exc)
        return {"vtt_plan": out}
    out.update(lines=[m["line"] for m in data["methods"]], summary=data["summary"],
               pairs=[p["line"] for p in data["pairs"]], data=data)
    return {"vtt_plan": out}


def cached_plan_context(experiment, report: dict, fingerprint: tuple | None = None) -> dict:
    """`experiment_plan_context` of the staff page's report, computed once per state of the answers and of the
    experiment's design and stopping rule (`vtt.report.cached`)."""
    return report_module.cached(
        experiment, "plan", lambda: experiment_plan_context(experiment, report), experiment.precision_target,
        experiment.look_every, experiment.max_looks, experiment.raters_per_pair, str(experiment.design),
        fingerprint=fingerprint)


def design_images(experiment) -> dict:
    """Colorized images per method of an experiment: the images its design will have judged."""
    return {name: info["provenance"]["n_images"]
            for name, info in reading.experiment_methods(experiment).items()
            if info["provenance"].get("n_images")}
