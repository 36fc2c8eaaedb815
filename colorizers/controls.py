"""Control methods that every Visual Turing Test runs beside the real models.

* ``ground_truth``: the true chroma. A perfect colorizer; observers should pick
  it as "real" about 50% of the time. Anything far from 50% measures a flaw of
  the test itself (rendering differences, position bias), not of a model.
* ``grayscale``: no chroma at all. The obvious catch trial: an attentive
  observer almost never calls it real.
* ``mean_chroma``: an honest classical baseline, the mean a*b* of the training
  set as a function of L*. Any learned model should beat it.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

import torch

from .base import Colorizer
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .color import rgb_to_lab
from .registry import register

__all__ = ["GroundTruth", "Grayscale", "MeanChroma"]


@register("ground_truth")
class GroundTruth(Colorizer):
    """Returns a copy of the reference a*b* it is handed (calibration: ~50%)."""

    needs_reference = True

    def forward(
        self,
        L: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        reference_ab: torch.Tensor | None = None,
    ) -> torch.Tensor:
        assert reference_ab is not None  # checked by Colorizer.colorize
        return reference_ab.to(device=L.device, dtype=torch.float32, copy=True)


@register("grayscale")
class Grayscale(Colorizer):
    """Returns a* = b* = 0: the image stays grey (catch trial)."""

    def forward(
        self,
        L: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        reference_ab: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return L.new_zeros(L.shape[0], 2, *L.shape[2:])                 # (B, 2, H, W)


@register("mean_chroma")
class MeanChroma(Colorizer):
    """Mean a*b* of the training pixels as a function of L*.

    L* in [0, 100] is split into ``n_bins`` equal bins; `fit` stores per bin the
    mean a* and mean b* of all training pixels whose L* falls in it (L* = 100
    belongs to the last bin). A bin without pixels gets the mean over all pixels.

    Prediction interpolates linearly between bin centres (and holds the end
    values below the first centre and above the last) rather than looking up
    the pixel's bin. A plain lookup makes chroma a step function of L*, so a
    smooth gradient (sky, skin) shows false colour contours where it crosses a
    bin edge, an artefact observers would notice that says nothing about how
    good "mean colour per lightness" is; interpolation keeps chroma continuous
    in L* and gives the same value at every bin centre.

    Buffers
    -------
    ab_mean : (2, n_bins) float32, mean a* (row 0) and b* (row 1) per bin.
    """

    needs_checkpoint = True

    def __init__(self, n_bins: int = 20) -> None:
        super().__init__()
        if n_bins < 1:
            raise ValueError(f"n_bins must be at least 1, got {n_bins}")
        self.n_bins = n_bins
        self.register_buffer("ab_mean", torch.zeros(2, n_bins))

    def params(self) -> dict[str, Any]:
        return {"n_bins": self.n_bins}

    @classmethod
    def fit(cls, images: Iterable[torch.Tensor], *, n_bins: int = 20) -> "MeanChroma":
        """Estimate the table from sRGB images.

        Parameters
        ----------
        images : iterable of float tensors (3, H, W), sRGB in [0, 1], of any
            sizes. RGB rather than Lab so that the training statistics go
            through the same `rgb_to_lab` as the test images; every image is
            consumed once, so a generator can stream a large set.
        n_bins : number of equal L* bins over [0, 100].

        Every pixel counts once, so larger images weigh more. Sums are kept in
        float64 so that millions of pixels do not lose precision.
        """
        model = cls(n_bins)
        sums = torch.zeros(n_bins, 2, dtype=torch.float64)
        counts = torch.zeros(n_bins, dtype=torch.float64)
        for i, rgb in enumerate(images):
            if rgb.ndim != 3 or rgb.shape[0] != 3:
                raise ValueError(f"image {i} must have shape (3, H, W), got {tuple(rgb.shape)}")
            lab = rgb_to_lab(rgb.float().cpu()).flatten(1).double()     # (3, H*W)
            idx = model._bin_index(lab[0])                              # (H*W,)
            sums.index_add_(0, idx, lab[1:].T)
            counts.index_add_(0, idx, torch.ones_like(lab[0]))
        total = counts.sum()
        if total == 0:
            raise ValueError("MeanChroma.fit got no pixels")
        global_mean = sums.sum(0) / total                               # (2,)
        ab = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], global_mean)
        model.ab_mean.copy_(ab.T.float())
        return model

    def forward(
        self,
        L: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        reference_ab: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # position in units of bins, centre of bin k at k
        pos = (L[:, 0] * (self.n_bins / 100) - 0.5).clamp(0, self.n_bins - 1)  # (B, H, W)
        lo = pos.floor().long()
        hi = (lo + 1).clamp(max=self.n_bins - 1)
        table = self.ab_mean.to(L.device)
        ab = torch.lerp(table[:, lo], table[:, hi], pos - lo)          # (2, B, H, W)
        return ab.permute(1, 0, 2, 3)                                   # (B, 2, H, W)

    def save(self, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> None:
        """Write the table and ``params()`` as a checkpoint (see `colorizers.checkpoint`)."""
        save_checkpoint(
            path, model_name=self.name, state_dict=self.state_dict(),
            config=self.params(), extra=extra,
        )

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> "MeanChroma":
        """Load a model written by `save`; its configuration comes from the file.

        Raises CheckpointError (naming ``path``) for every problem with the file,
        including a table whose shape does not match the recorded ``n_bins``.
        """
        if path is None:
            raise ValueError(f"colorizer {cls.name!r} needs a checkpoint path")
        if kwargs:
            raise TypeError(
                f"{cls.name!r} takes its configuration from the checkpoint, "
                f"got keyword arguments {sorted(kwargs)}"
            )
        ckpt = load_checkpoint(path, expected_model=cls.name)
        try:
            model = cls(**ckpt["config"])
            model.load_state_dict(ckpt["state_dict"], strict=True)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path} does not fit {cls.name!r}: {exc}") from exc
        return model

    def _bin_index(self, L: torch.Tensor) -> torch.Tensor:
        """Bin of each L* value; L* = 100 and beyond go to the last bin."""
        return (L * (self.n_bins / 100)).floor().long().clamp(0, self.n_bins - 1)
