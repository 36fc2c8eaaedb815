"""Statistics of Visual Turing Test (VTT) results.

score
    VTT score (fraction of trials where the generated image was picked) with a
    two-way cluster bootstrap or a Wilson confidence interval.
VTTResult
    Result of `score`.

Depends on numpy and scipy only.
"""
from .vtt import VTTResult, score

__all__ = ["score", "VTTResult"]
