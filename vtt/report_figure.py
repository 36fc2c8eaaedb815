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


# Method colours of the scatter plots (Okabe and Ito's palette, distinguishable with colour-blindness).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")


def _ticks(low: float, high: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(f for f in (1, 2, 5, 10) if raw <= f * step)
    return [k * step for k in range(math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9) + 1)]


def scatter_svg(points: list[dict], *, label: str, methods: list[str], name: str) -> str:
    """A metric (x) against each pair's fooling rate (y) as a self-contained inline SVG, one colour per method.

    ``points``: dicts with ``method``, ``value``, ``rate`` (the pair's share of raters
    fooled) and ``n`` (its raters); ``methods`` fixes the colours. The dashed line is
    50%, the fooling rate of a pair that cannot be told from the real image.
    """
    width, height, left, right, top, bottom = 340, 250, 48, 12, 22, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [p["value"] for p in points]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.04
    low, high = low - pad, high + pad
    colour = {m: PALETTE[k % len(PALETTE)] for k, m in enumerate(methods)}

    def x(v: float) -> float:
        return round(left + plot_w * (v - low) / (high - low), 1)

    def y(rate: float) -> float:
        return round(top + plot_h * (1 - rate), 1)

    parts = [f'<svg class="vtt-scatter" data-metric="{escape(name)}" xmlns="http://www.w3.org/2000/svg" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             'font-family="system-ui, sans-serif" font-size="11">',
             f'<title>{escape(label)} against the share of raters fooled, one dot per pair</title>']
    for rate in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{left}" y1="{y(rate)}" x2="{width - right}" y2="{y(rate)}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{left - 4}" y="{y(rate) + 4}" text-anchor="end" fill="#555">{rate:.0%}</text>')
    parts.append(f'<line x1="{left}" y1="{y(0.5)}" x2="{width - right}" y2="{y(0.5)}" stroke="#b00020" '
                 'stroke-dasharray="4 3"/>')
    for tick in _ticks(low, high):
        parts.append(f'<text x="{x(tick)}" y="{top + plot_h + 14}" text-anchor="middle" fill="#555">{tick:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle" fill="#333">'
                 f'{escape(label)}</text>')
    parts.append(f'<text x="{left}" y="{top - 8}" fill="#333">raters fooled</text>')
    for p in points:
        parts.append(f'<circle cx="{x(p["value"])}" cy="{y(p["rate"])}" r="3" fill="{colour[p["method"]]}" '
                     f'fill-opacity="0.55"><title>{escape(p["method"])}: {escape(label)} {p["value"]:.4g}, '
                     f'{p["rate"]:.0%} of {p["n"]} raters fooled</title></circle>')
    parts.append("</svg>")
    return "\n".join(parts)


def scatter_legend(methods: list[str]) -> list[dict]:
    """The method colours of `scatter_svg`, for the legend beside the plots."""
    return [{"method": m, "colour": PALETTE[k % len(PALETTE)]} for k, m in enumerate(methods)]
