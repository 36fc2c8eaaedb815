"""The one interface every colorization model implements.

A colorizer takes a batch of grayscale images as CIE L* (D65, 0..100) and returns
the chroma it predicts as CIE a*b* in the same units, at the same spatial size::

    L  : float32 tensor (B, 1, H, W), values in [0, 100]
    ab : float32 tensor (B, 2, H, W), values roughly in [-110, 110]

Why a*b* out rather than RGB: the platform renders *both* images of a pair through
one code path (the source's own L* joined with a chroma, then Lab -> sRGB -> JPEG),
so that luminance is identical to the bit and nothing but the chroma differs.
Models that think in another space (YUV, YCbCr) convert their prediction to a*b*
with `colorizers.color` before returning; a model that produces RGB returns
`rgb_to_lab(rgb)[:, 1:]` and lets the platform put the true L* back.

Determinism: `colorize` receives ``generator``: a list of seeded `torch.Generator`,
one per image of the batch (or None for a deterministic model). A stochastic model
draws each image's noise from that image's own generator, so an image's colorization
depends on its seed alone, never on which other images shared its batch (a resumed
run then gives the same bytes as a clean one). The same seeds, weights and input
give the same output on the same device.

Controls that are allowed to look at the answer (the `ground_truth` calibration
method) set ``needs_reference = True`` and receive the true a*b* as
``reference_ab``; every other colorizer must never be given it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["Colorizer", "ColorizerInfo"]


@dataclass(frozen=True)
class ColorizerInfo:
    """What a report needs to know about where a colorization came from."""

    name: str                      # registry name, e.g. "zhang2016"
    params: dict[str, Any] = field(default_factory=dict)   # JSON-serialisable configuration
    checkpoint_sha256: str = ""    # content hash of the weights file, "" when there is none


class Colorizer(nn.Module):
    """Base class: subclasses implement `forward(L, *, generator, reference_ab)`."""

    #: registry name, set by `colorizers.registry.register`
    name: ClassVar[str] = ""
    #: True only for controls that are handed the true chroma (never a real model)
    needs_reference: ClassVar[bool] = False
    #: True when `from_checkpoint` needs a file (a trained model); False for fixed controls
    needs_checkpoint: ClassVar[bool] = False
    #: Inference settings `from_checkpoint` accepts as keyword arguments (e.g. a decoding
    #: temperature), each described for ``--help``; they never change the architecture,
    #: and `params` records the value used.
    inference_options: ClassVar[dict[str, str]] = {}

    def params(self) -> dict[str, Any]:
        """JSON-serialisable configuration recorded beside every colorization."""
        return {}

    @classmethod
    def from_checkpoint(cls, path: str | None = None, **kwargs: Any) -> "Colorizer":
        """Build the model and load its weights from ``path`` (if it takes any).

        ``kwargs`` are inference settings (`inference_options`); anything else is a TypeError.
        """
        if path is not None and not cls.needs_checkpoint:
            raise ValueError(f"colorizer {cls.name!r} takes no checkpoint, got {path!r}")
        cls.check_inference_values(kwargs)
        return cls(**kwargs)

    @classmethod
    def check_inference_values(cls, settings: dict[str, Any]) -> None:
        """TypeError for a name that is no inference setting; a subclass adds ValueError for a bad value.

        Loaders call it before they read a file, so a bad setting is named before any I/O.
        """
        cls.check_inference_options(settings)

    @classmethod
    def check_inference_options(cls, settings: dict[str, Any]) -> None:
        """TypeError naming what is not an inference setting of this colorizer."""
        unknown = sorted(set(settings) - set(cls.inference_options))
        if unknown:
            known = ", ".join(cls.inference_options) or "none"
            raise TypeError(f"{cls.name!r} has no inference setting {', '.join(map(repr, unknown))} "
                            f"(its settings: {known})")

    @torch.no_grad()
    def colorize(
        self,
        L: torch.Tensor,
        *,
        generator: list[torch.Generator] | None = None,
        reference_ab: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Validate the batch, run `forward`, and check what comes back.

        Returns a float32 (B, 2, H, W) a*b* tensor on ``L``'s device.
        """
        if L.ndim != 4 or L.shape[1] != 1:
            raise ValueError(f"L must have shape (B, 1, H, W), got {tuple(L.shape)}")
        if generator is not None and len(generator) != L.shape[0]:
            raise ValueError(f"need one generator per image: {L.shape[0]} images, {len(generator)} generators")
        if self.needs_reference:
            if reference_ab is None:
                raise ValueError(f"colorizer {self.name!r} needs the reference chroma")
            if reference_ab.shape != (L.shape[0], 2, *L.shape[2:]):
                raise ValueError(
                    f"reference_ab must have shape {(L.shape[0], 2, *L.shape[2:])}, "
                    f"got {tuple(reference_ab.shape)}"
                )
        elif reference_ab is not None:
            raise ValueError(f"colorizer {self.name!r} must not be given the true chroma")
        was_training = self.training
        self.eval()
        try:
            ab = self(L.float(), generator=generator, reference_ab=reference_ab)
        finally:
            self.train(was_training)
        expected = (L.shape[0], 2, *L.shape[2:])
        if tuple(ab.shape) != expected:
            raise RuntimeError(
                f"colorizer {self.name!r} returned shape {tuple(ab.shape)}, expected {expected}"
            )
        return ab.float()

    def forward(
        self,
        L: torch.Tensor,
        *,
        generator: list[torch.Generator] | None = None,
        reference_ab: torch.Tensor | None = None,
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
