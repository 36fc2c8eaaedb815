"""The report's figure: each method's VTT with its interval and the 50% line, as a self-contained inline SVG.

`figure_svg` draws it from a report dict (`vtt.report.build_report`): our methods,
then the controls, then (with ``--published``) the reference papers' published numbers,
set apart and labelled. `percent` formats a fraction as the report prints it.
"""
from __future__ import annotations

import math

from django.utils.html import escape


def percent(x, digits=1) -> str:
    """A fraction as a percentage with ``digits`` decimals; "n/a" for None."""
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def figure_svg(report: dict) -> str:
    """VTT per method with its interval and the 50% line, as a self-contained inline SVG."""
    ours = report["methods"]
    published = report.get("published", {}).get("scores", []) if report.get("published") else []
    sections = [r for r in ours if not r["is_control"]], [r for r in ours if r["is_control"]]
    labels = [r["method"] + (f" ({r['role']} control)" if r["is_control"] else "") for r in ours]
    labels += [p["method"] for p in published]
    # About 7.3 px per character of 13 px sans-serif text.
    label_w = int(max(150, min(330, 7.3 * max(map(len, labels), default=10) + 24)))
    plot_w, right, row_h, top, bottom, gap, header = 440, 20, 26, 34, 44, 12, 20
    n_rows = len(ours) + len(published)
    gaps = sum(1 for s in (*sections, published) if s) - 1
    height = top + row_h * n_rows + gap * max(gaps, 0) + (header if published else 0) + bottom
    width = label_w + plot_w + right
    highs = [r["ci_high"] if r["ci_high"] is not None else r["vtt"] for r in ours] + [p["vtt"] for p in published]
    x_max = min(1.0, max(0.6, math.ceil(max(highs, default=0.5) * 10 - 1e-9) / 10))

    def x(v: float) -> float:
        return round(label_w + plot_w * v / x_max, 1)

    level = f"{report['settings']['confidence']:.0%}"
    parts = [
        f'<svg class="vtt-figure" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="vtt-figure-title" '
        'font-family="system-ui, sans-serif" font-size="13">',
        f'<title id="vtt-figure-title">VTT score per method with its {level} interval; 50% means the colorized '
        'image could not be told from the real one</title>',
    ]
    plot_bottom = height - bottom
    for tick in range(0, int(round(x_max * 10)) + 1):
        v = tick / 10
        parts.append(f'<line x1="{x(v)}" y1="{top - 6}" x2="{x(v)}" y2="{plot_bottom}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{x(v)}" y="{plot_bottom + 16}" text-anchor="middle" fill="#555">{tick * 10}%</text>')
    parts.append(f'<text x="{label_w + plot_w / 2}" y="{plot_bottom + 36}" text-anchor="middle" fill="#333">'
                 'VTT: trials in which the colorized image was picked as the real one</text>')
    parts.append(f'<line class="vtt-fifty" x1="{x(0.5)}" y1="{top - 10}" x2="{x(0.5)}" y2="{plot_bottom}" '
                 'stroke="#b00020" stroke-width="1.5" stroke-dasharray="5 4"/>')
    parts.append(f'<text x="{x(0.5)}" y="{top - 14}" text-anchor="middle" fill="#b00020">50%: indistinguishable</text>')

    y_pos = top
    for section in (*sections, published):
        if not section:
            continue
        if y_pos > top:
            y_pos += gap
        if section is published:
            parts.append(f'<text class="vtt-published-label" x="{label_w - 10}" y="{y_pos + 14}" text-anchor="end" '
                         f'fill="#666">{escape(report["published"]["label"])}:</text>')
            y_pos += header
        for row in section:
            cy = y_pos + row_h / 2
            if section is published:
                label = row["method"]
                tip = f"{row['method']}: {row['reported']}, {row['source']}; {report['published']['label']}"
                cx = x(row["vtt"])
                parts.append(
                    f'<g class="vtt-published" data-method="{escape(row["method"])}"><title>{escape(tip)}</title>'
                    f'<text x="{label_w - 10}" y="{cy + 4}" text-anchor="end" fill="#666" font-style="italic">'
                    f'{escape(label)}</text>'
                    f'<path d="M{cx} {cy - 6} L{cx + 6} {cy} L{cx} {cy + 6} L{cx - 6} {cy} Z" fill="white" '
                    'stroke="#666" stroke-width="1.5"/></g>'
                )
            else:
                colour = "#777" if row["is_control"] else "#1f4e9c"
                label = row["method"] + (f" ({row['role']} control)" if row["is_control"] else "")
                tip = (f"{row['method']}: VTT {percent(row['vtt'])}, {level} interval [{percent(row['ci_low'])}, "
                       f"{percent(row['ci_high'])}] ({row['ci_method']}), {row['n_trials']} trials")
                mark = [f'<g class="vtt-mark" data-method="{escape(row["method"])}"><title>{escape(tip)}</title>',
                        f'<text x="{label_w - 10}" y="{cy + 4}" text-anchor="end" fill="#222">{escape(label)}</text>']
                if row["ci_low"] is not None and row["ci_high"] is not None:
                    lo, hi = x(row["ci_low"]), x(row["ci_high"])
                    mark.append(f'<line x1="{lo}" y1="{cy}" x2="{hi}" y2="{cy}" stroke="{colour}" stroke-width="2"/>')
                    for end in (lo, hi):
                        mark.append(f'<line x1="{end}" y1="{cy - 5}" x2="{end}" y2="{cy + 5}" stroke="{colour}" '
                                    'stroke-width="2"/>')
                mark.append(f'<circle cx="{x(row["vtt"])}" cy="{cy}" r="5" fill="{colour}"/></g>')
                parts.extend(mark)
            y_pos += row_h
    parts.append("</svg>")
    return "\n".join(parts)
