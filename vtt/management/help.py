"""What the commands' --help shares: Django's layout, keeping the lines of an epilog that has several."""
from __future__ import annotations

from django.core.management.base import DjangoHelpFormatter


class KeepLinesFormatter(DjangoHelpFormatter):
    """Django's help layout; a text of several lines (a list of settings) keeps its lines."""

    def _fill_text(self, text, width, indent):
        return text if "\n" in text else super()._fill_text(text, width, indent)
