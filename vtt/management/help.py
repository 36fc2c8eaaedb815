"""What the commands' --help shares: Django's layout, keeping the lines of an epilog that has several."""
from __future__ import annotations

from django.core.management.base import DjangoHelpFormatter

from colorizers.train import KeepLinesFormatter as KeepLines


class KeepLinesFormatter(KeepLines, DjangoHelpFormatter):
    """Django's help layout (its own options last), with `colorizers.train.KeepLinesFormatter`'s epilog."""
