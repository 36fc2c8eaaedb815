"""The VTT report: judgments in, one row per method out (the numbers come from `evaluation`)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict

import evaluation


def method_scores(rows: list[dict], *, ci_method: str, confidence: float, n_boot: int, seed: int) -> list[dict]:
    """Score each method's judgments; ``rows`` as from `vtt.selectors.judgments`."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_method[row["method"]].append(row)
    table = []
    for method in sorted(by_method):
        group = by_method[method]
        result = evaluation.score(
            [r["chose_generated"] for r in group],
            [r["image"] for r in group],
            [r["rater"] for r in group],
            method=ci_method,
            confidence=confidence,
            n_boot=n_boot,
            seed=seed,
        )
        fields = asdict(result)
        table.append(
            {
                "method": method,
                "n_trials": fields["n_trials"],
                "n_images": fields["n_images"],
                "n_raters": fields["n_raters"],
                "vtt": fields["score"],
                "ci_low": fields["ci_low"],
                "ci_high": fields["ci_high"],
                "ci_method": fields["method"],
                "confidence": fields["confidence"],
            }
        )
    return table
