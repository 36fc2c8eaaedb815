"""PyTorch networks of learned image metrics (LPIPS, and FID's Inception); never imports Django.

Every network here runs on weights files the user supplies; nothing is downloaded.
Importing the package is cheap (no torch): the submodules are imported by name,
e.g. ``from learned_metrics.lpips import load_lpips, lpips_distance``.
"""
from __future__ import annotations

__all__ = ["LearnedMetricError"]


class LearnedMetricError(ValueError):
    """A weights file cannot be used: missing, unreadable, or not the layout the network needs.

    A ValueError, so callers that already report bad input keep working; the message
    names the file and says what is wrong with it.
    """
