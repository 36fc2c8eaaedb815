"""A registry of colorizers by name, in the manner of torchvision's `get_model`."""
from __future__ import annotations

import textwrap
from typing import Callable, TypeVar

from .base import Colorizer

__all__ = ["register", "get_colorizer", "list_colorizers", "describe_inference_options"]

_REGISTRY: dict[str, type[Colorizer]] = {}
C = TypeVar("C", bound=type[Colorizer])


def register(name: str) -> Callable[[C], C]:
    """Class decorator: make ``cls`` available as ``get_colorizer(name)``."""

    def wrap(cls: C) -> C:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"colorizer name {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def get_colorizer(name: str) -> type[Colorizer]:
    """The colorizer class registered as ``name``; ValueError names the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ValueError(f"Unknown colorizer {name!r} (known: {known})") from None


def list_colorizers() -> list[str]:
    """Registered names, sorted."""
    return sorted(_REGISTRY)


def describe_inference_options(prefix: str = "  ") -> str:
    """One line per inference setting of every registered colorizer, ``NAME.KEY: what it does``, for --help."""
    lines = [textwrap.fill(f"{name}.{key}: {text}", width=79, initial_indent=prefix,
                           subsequent_indent=prefix + "    ", break_on_hyphens=False)
             for name in list_colorizers() for key, text in get_colorizer(name).inference_options.items()]
    return "\n".join(lines) or f"{prefix}(none)"
