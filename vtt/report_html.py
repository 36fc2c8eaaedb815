"""The report as HTML: the context of ``templates/vtt/_report_body.html`` and the self-contained page.

`html_context` turns a report dict (`vtt.report.build_report`) into what the template
needs, with the figure of `vtt.report_figure`; `render_html` renders the whole page
(``templates/vtt/report.html``, written by ``vtt_report --html``). The staff page of
an experiment includes ``templates/vtt/_report_body.html`` with the `html_context` of
the report ``vtt_report --experiment SLUG`` prints with its defaults, kept until the
experiment's answers change (`vtt.report.cached_experiment_report`).
"""
from __future__ import annotations

import json

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from . import report as reports
from .report_figure import figure_svg, percent, scatter_legend, scatter_svg


def html_context(report: dict) -> dict:
    """What ``templates/vtt/_report_body.html`` needs, under the single key ``vtt_report``.

    Keys of ``vtt_report``: ``title``, ``source``, ``settings`` (with ``level``, e.g.
    "95%"), ``figure`` (safe SVG), ``methods`` and ``controls`` (rows with
    formatted ``vtt_text``, ``interval_text``, ``alpha_text``), ``comparisons``,
    ``raters`` (with ``flagged_rows``), ``left_out``, ``looked_away``, ``pilot``, ``staircase``
    (None without adaptive exposures; the method rows then have ``threshold_text`` and
    ``threshold_interval_text``), ``classes``, ``provenance``, ``published`` (or None),
    ``metrics`` (None without ``--metrics``: the section of `vtt.report_metrics` with
    texts per cell, the agreement's rows and the scatter plots) and ``notes``; the
    report dict itself is ``data``.
    """
    level = f"{report['settings']['confidence']:.0%}"

    def method_row(row):
        alpha = row.get("agreement_alpha")
        low, high = row.get("threshold_ci_low"), row.get("threshold_ci_high")
        return {**row, "vtt_text": percent(row["vtt"]),
                "interval_text": f"{percent(row['ci_low'])} to {percent(row['ci_high'])}",
                "alpha_text": "n/a" if alpha is None else f"{alpha:.2f}",
                "threshold_text": "n/a" if row.get("threshold_ms") is None else f"{row['threshold_ms']:.0f} ms",
                "threshold_interval_text": "n/a" if low is None else f"{low:.0f} to {high:.0f} ms"}

    def p_text(p):
        return "n/a" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")

    comparisons = [{**c, "difference_text": f"{100 * c['difference']:+.1f} pts",
                    "interval_text": "n/a" if c["ci_low"] is None else
                    f"{100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f}",
                    "p_text": p_text(c["pvalue"]), "p_holm_text": p_text(c["pvalue_holm"]),
                    "significant": (c["pvalue_holm"] is not None
                                    and c["pvalue_holm"] < 1 - report["settings"]["confidence"])}
                   for c in report["comparisons"]]
    raters = report["raters"]
    flagged = [{**r, "accuracy_text": percent(r["catch_accuracy"], 0)} for r in raters["per_rater"] if r["flagged"]]
    provenance = []
    for row in report["methods"]:
        p = row.get("provenance") or {}
        seed = p.get("seed")
        provenance.append({
            "method": row["method"], "role": row["role"], "known": bool(p), "kind": p.get("kind", ""),
            "colorizer": p.get("colorizer", ""), "checkpoint": p.get("checkpoint_sha256", ""),
            "checkpoint_short": (p.get("checkpoint_sha256") or "")[:12],
            "seed_text": "" if not p else (str(seed) if seed is not None else
                                           f"{p.get('n_seeds', 0)} seeds, one per image (derived from the run seed)"),
            "n_images": p.get("n_images", ""), "params": json.dumps(p.get("params") or {}, sort_keys=True),
        })
    classes = report["classes"]
    class_rows = [{**c, "cells": [None if cell["vtt"] is None else f"{percent(cell['vtt'], 0)} ({cell['n_trials']})"
                                  for cell in c["cells"]]} for c in classes["rows"]]
    published = report.get("published")
    if published:
        published = {**published, "scores": [{**s, "vtt_text": percent(s["vtt"], 2)} for s in published["scores"]]}
    return {"vtt_report": {
        "data": report, "title": report["title"], "source": report["source"],
        "settings": {**report["settings"], "level": level, "alpha": f"{1 - report['settings']['confidence']:.3g}",
                     "ci_description": reports.CI_METHODS.get(report["settings"]["ci_method"], ""),
                     "compare_description": reports.COMPARE_METHODS.get(report["settings"]["compare_method"],
                                                                              "")},
        "n_judgments": report["n_judgments"], "n_images": report["n_images"], "n_raters": report["n_raters"],
        "figure": mark_safe(figure_svg(report)) if report["methods"] else "",
        "methods": [method_row(r) for r in report["methods"] if not r["is_control"]],
        "controls": [method_row(r) for r in report["methods"] if r["is_control"]],
        "comparisons": comparisons, "n_pairs": len(comparisons),
        "raters": {**raters, "flagged_rows": flagged[:50], "flagged_more": max(0, len(flagged) - 50),
                   "catch_accuracy_text": percent(raters["catch_accuracy"]),
                   "catch_by_method": [{**c, "accuracy_text": percent(c["accuracy"])}
                                       for c in raters["catch_by_method"]]},
        "left_out": report["left_out"], "classes": {"methods": classes["methods"], "rows": class_rows},
        "provenance": provenance, "published": published, "notes": report["notes"],
        "looked_away": report["looked_away"], "pilot": report.get("pilot"), "staircase": report["staircase"],
        "metrics": _metrics_context(report["metrics"], level) if report.get("metrics") else None,
    }}


def _metrics_context(section: dict, level: str) -> dict:
    """The metrics section as the template shows it: texts per cell, the agreement's rows and the scatter plots."""
    def number(v):
        return "n/a" if v is None else f"{v:.3g}"

    rows = []
    for row in section["methods"]:
        cells = []
        for m in section["metrics"]:
            v = row["values"][m["name"]]
            cells.append({"mean": number(v["mean"]), "n": v["n"],
                          "interval": "" if v["ci_low"] is None else f"{number(v['ci_low'])} to {number(v['ci_high'])}"})
        rows.append({**row, "cells": cells})
    agreement = section["agreement"]
    if agreement is None:  # no metric stored: the template says how to compute them
        return {**section, "rows": rows, "level": level}
    pairs = {p["metric"]: p for p in agreement["pairs"]}
    agreement_rows = []
    for r in agreement["rank"]:
        p = pairs.get(r["metric"])
        agreement_rows.append({
            "label": r["label"], "metric": r["metric"],
            "tau": f"{r['tau']:+.2f}" if r["estimable"] and r["tau"] is not None else "not estimable",
            "tau_interval": f"{r['ci_low']:+.2f} to {r['ci_high']:+.2f}" if r["ci_low"] is not None else "",
            "n_methods": r["n_methods"],
            "auc": "" if p is None else (f"{p['auc']:.2f}" if p["estimable"] else "not estimable"),
            "auc_interval": f"{p['ci_low']:.2f} to {p['ci_high']:.2f}" if p and p["ci_low"] is not None else "",
            "n_pairs": "" if p is None else p["n_pairs"], "n_fooled": "" if p is None else p["n_fooled"],
        })
    reasons = sorted({r["reason"] for r in agreement["rank"] + agreement["pairs"] if r["reason"]})
    labels = {m["name"]: m["label"] for m in section["metrics"]}
    scatters = [mark_safe(scatter_svg(points, label=labels[name], methods=agreement["methods"], name=name))
                for name, points in agreement["scatter"].items() if points]
    return {**section, "rows": rows, "level": level, "agreement_rows": agreement_rows, "reasons": reasons,
            "scatters": scatters, "legend": scatter_legend(agreement["methods"]),
            "n_rated_pairs": agreement["n_rated_pairs"], "tested": agreement["methods"], "note": agreement["note"],
            "scatter_shown": max((len(p) for p in agreement["scatter"].values()), default=0),
            "scatter_total": max(agreement["scatter_total"].values(), default=0)}


def render_html(report: dict) -> str:
    """The whole report as one self-contained HTML page (inline style and SVG, no external assets)."""
    return render_to_string("vtt/report.html", html_context(report))
