"""The report's automatic metrics: each method's values, and how well each metric predicts the human verdict.

`metrics_section` takes the judgments the report scores and the stored metrics of the
experiment's pairs (`vtt.pair_metrics.table`) and gives:

- per method, each metric's mean over its pairs (all its pairs with a value, rated or
  not) with a Student's t interval over images (`evaluation.metric_agreement.mean_interval`),
  and its FID when the Inception features are stored;
- per metric, across the tested methods, Kendall's tau between the metric and the VTT
  score with a bootstrap interval over images (`evaluation.metric_agreement.rank_agreement`);
- per metric, across pairs, the AUC with which it tells a pair that fooled at least half
  of its raters from one that did not (`pair_prediction`), over pairs with at least
  `MIN_RATERS` kept judgments;
- the points of a scatter of each metric against each pair's fooling rate (a random
  `MAX_SCATTER` of them when there are more).

Only the tested methods enter the agreement: the controls (the real colours, no colour
at all) would make any metric look predictive. The judgments are those the VTT uses (the
report's exclusions apply). All numbers come from `evaluation`; nothing here computes one.
"""
from __future__ import annotations

import math

import numpy as np

from evaluation import fid as fid_stats
from evaluation import metric_agreement

from .judgments import Judgments
from .pair_metrics import METRICS, MetricTable

MIN_RATERS = 3
# FID's rank correlation recomputes FID per bootstrap resample and method; above this many images that is minutes
# of work per report, and the report gives FID per method without it.
FID_BOOT_MAX_IMAGES = 500
# Points of a scatter plot: beyond this many rated pairs (ctest10k has 50,000) a random subset of them, the same for
# every metric, keeps the HTML report and the staff page light; the report says how many are shown.
MAX_SCATTER = 2000


def _number(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def _fid_of(table: MetricTable):
    """FID per method (rows of the table) for a resample's image multiplicities, or None without features."""
    if table.fake_features is None or table.real_features is None:
        return None
    real, fake = table.real_features, table.fake_features
    real_ok = ~np.isnan(real).any(axis=1)

    def per_method(counts: np.ndarray, rows: list[int] | None = None) -> np.ndarray:
        rows = range(fake.shape[0]) if rows is None else rows
        out = []
        for m in rows:
            ok = real_ok & ~np.isnan(fake[m]).any(axis=1) & (counts > 0)
            if ok.sum() < 2:
                out.append(np.nan)
                continue
            take = np.repeat(np.flatnonzero(ok), counts[ok])
            out.append(fid_stats.frechet_distance(real[take].astype(np.float64), fake[m][take].astype(np.float64)))
        return np.array(out, dtype=np.float64)

    return per_method


def metrics_section(j: Judgments, kept: np.ndarray, rows: list[dict], table: MetricTable, *, roles: dict[str, str],
                    confidence: float, n_boot: int, seed: int) -> dict:
    """The report's ``metrics`` section (see the module's docstring); warnings of `evaluation` pass through.

    ``rows``: the report's method rows (those with scored judgments); ``roles``: every method's role (tested,
    calibration or catch), for the methods without scored judgments (a catch control has none).
    """
    by_name = {m: k for k, m in enumerate(table.methods)}
    n_images = len(table.images)
    fid_of = _fid_of(table)
    shown = [m for m in METRICS if (m.per_pair and np.isfinite(table.values[m.name]).any())
             or (not m.per_pair and fid_of is not None)]
    scored = {r["method"]: r for r in rows}
    fid_all = fid_of(np.ones(n_images, dtype=np.int64)) if fid_of is not None else None
    ordered = [r["method"] for r in rows if r["method"] in by_name]
    ordered += [m for m in table.methods if m not in scored]
    method_rows = []
    for name in ordered:
        k = by_name[name]
        row = scored.get(name, {})
        values = {}
        for metric in shown:
            if metric.per_pair:
                mean, low, high, n = metric_agreement.mean_interval(table.values[metric.name][k], confidence)
                values[metric.name] = {"mean": _number(mean), "ci_low": _number(low), "ci_high": _number(high),
                                       "n": n}
            else:
                values[metric.name] = {"mean": _number(fid_all[k]), "ci_low": None, "ci_high": None,
                                       "n": int((~np.isnan(table.fake_features[k]).any(axis=1)).sum())}
        role = row.get("role") or roles.get(name, "tested")
        method_rows.append({
            "method": name, "role": role, "is_control": role != "tested",
            "vtt": row.get("vtt"), "n_pairs": table.n_pairs[name], "n_computed": table.n_computed[name],
            "identical": table.identical[name], "values": values,
        })
    section = {
        "metrics": [{"name": m.name, "label": m.label, "direction": m.direction, "description": m.description,
                     "per_pair": m.per_pair} for m in shown],
        "methods": method_rows, "notes": list(table.notes), "min_raters": MIN_RATERS,
        "agreement": _agreement(j, kept, rows, table, shown, fid_of, confidence=confidence, n_boot=n_boot,
                                seed=seed) if shown else None,
    }
    return section


def _agreement(j: Judgments, kept: np.ndarray, rows: list[dict], table: MetricTable, shown, fid_of, *,
               confidence: float, n_boot: int, seed: int) -> dict:
    """Rank correlations across the tested methods, AUCs and scatter points across their pairs."""
    tested = [r["method"] for r in rows if not r["is_control"] and r["method"] in table.methods]
    table_rows = [table.methods.index(m) for m in tested]
    code = {str(name): g for g, name in enumerate(j.method_labels.tolist())}
    # The kept judgments of the tested methods, coded as rows of `tested` and columns of the table's images.
    method_of_code = np.full(j.method_labels.size, -1, dtype=np.int64)
    for k, name in enumerate(tested):
        method_of_code[code[name]] = k
    image_at = {p: k for k, p in enumerate(table.images)}
    image_of_code = np.array([image_at.get(str(p), -1) for p in j.image_labels.tolist()], dtype=np.int64)
    use = kept & (method_of_code[j.method] >= 0) & (image_of_code[j.image] >= 0)
    y = j.answer[use].astype(np.int64)
    image, method = image_of_code[j.image[use]], method_of_code[j.method[use]]
    per_pair = [m for m in shown if m.per_pair]
    values = {m.name: table.values[m.name][table_rows] for m in per_pair}
    direction = {m.name: m.direction for m in shown}
    set_metrics = {}
    fid_note = None
    if fid_of is not None and any(not m.per_pair for m in shown):
        if len(table.images) <= FID_BOOT_MAX_IMAGES:
            set_metrics["fid"] = lambda counts: fid_of(counts, table_rows)
        else:
            fid_note = (f"FID's rank correlation is not computed above {FID_BOOT_MAX_IMAGES} images (its bootstrap "
                        "recomputes FID for every resample and method); its values per method are in the table")
    shape = (len(tested), len(table.images))
    labels = {m.name: m.label for m in shown}
    if not tested:
        reason = "no tested method has scored judgments yet"
        blank = {"ci_low": None, "ci_high": None, "estimable": False, "reason": reason, "n_boot": 0,
                 "n_undefined": 0}
        names = [m.name for m in per_pair] + list(set_metrics) + (["fid"] if fid_note else [])
        return {"methods": [], "n_judgments": 0, "n_rated_pairs": 0, "scatter": {}, "scatter_total": {},
                "note": fid_note,
                "rank": [{"metric": n, "label": labels[n], "tau": None, "n_methods": 0, "n_images": 0, **blank}
                         for n in names if n in labels],
                "pairs": [{"metric": m.name, "label": m.label, "auc": None, "n_pairs": 0, "n_fooled": 0, **blank}
                          for m in per_pair]}
    rank = metric_agreement.rank_agreement(y, image, method, values, direction, set_metrics=set_metrics,
                                           confidence=confidence, n_boot=n_boot, seed=seed, shape=shape)
    pairs = metric_agreement.pair_prediction(y, image, method, values, direction, min_raters=MIN_RATERS,
                                             confidence=confidence, n_boot=n_boot, seed=seed)
    counts, rates = metric_agreement.pair_rates(y, image, method, *shape)
    rated = counts >= MIN_RATERS
    plotted = rated.copy()
    if rated.sum() > MAX_SCATTER:  # the same pairs for every metric and every run (seeded by `seed`)
        plotted[:] = False
        plotted.flat[np.random.default_rng(seed).choice(np.flatnonzero(rated), MAX_SCATTER, replace=False)] = True
    scatter, scatter_total = {}, {}
    for name, v in values.items():
        scatter_total[name] = int((rated & np.isfinite(v)).sum())
        m_idx, i_idx = np.nonzero(plotted & np.isfinite(v))
        scatter[name] = [{"method": tested[a], "value": float(v[a, b]), "rate": float(rates[a, b]),
                          "n": int(counts[a, b])} for a, b in zip(m_idx.tolist(), i_idx.tolist())]

    def as_dict(result) -> dict:
        out = {k: (_number(v) if isinstance(v, float) else v) for k, v in vars(result).items()}
        out["label"] = labels[result.metric]
        return out

    return {
        "methods": tested, "n_judgments": int(y.size), "n_rated_pairs": int(rated.sum()),
        "rank": [as_dict(r) for r in rank], "pairs": [as_dict(p) for p in pairs], "scatter": scatter,
        "scatter_total": scatter_total, "note": fid_note,
    }
