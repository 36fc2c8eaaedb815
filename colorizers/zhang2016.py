"""Zhang, Isola, Efros, "Colorful Image Colorization", ECCV 2016 (``zhang2016``).

A VGG-style network maps L* to a distribution over the 313 quantized a*b* bins
at 1/4 resolution, trained with the class-rebalanced, soft-encoded cross-entropy
and decoded with the annealed mean (`colorizers.quantization` holds all of that).

The layout is the authors' PyTorch ``eccv16`` module (richzhang/colorization,
BSD-2), layer for layer, so that their released weights file loads strictly:

    model1  conv 64, conv 64 /2                  ReLU after each conv, then BatchNorm
    model2  conv 128, conv 128 /2
    model3  conv 256 x2, conv 256 /2
    model4  conv 512 x3
    model5  conv 512 x3, dilation 2
    model6  conv 512 x3, dilation 2
    model7  conv 512 x3
    model8  deconv 4x4 stride 2 to 256, conv 256 x2 (ReLU each), 1x1 conv to 313 logits
    model_out  1x1 conv 313 -> 2 without bias: the bin centres / 110

State-dict keys ``model1.0.weight`` ... ``model8.6.bias`` and ``model_out.weight``
(2, 313, 1, 1); 32,236,011 parameters at full width (the paper's 32.2 M). Input
(L* - 50) / 100, output a*b* = 110 * decoded.

Decoding. The ``eccv16`` module's own path is softmax -> ``model_out`` -> x4
bilinear -> x110: the expectation over the bins of softmax(logits), i.e. the
annealed mean at T = 1. The paper decodes with T = 0.38 (the authors' Caffe
deploy net scales its logits by 2.606 before the softmax); whether their PyTorch
conversion folded that scale into ``model8.6`` is not documented, but their
PyTorch module is what their weights were released to be run with. So the
decoding temperature is an inference setting (``temperature``, in
`inference_options`), recorded in `params`:

* a file in the authors' layout (a plain ``eccv16`` state dict) defaults to
  T = 1 and then colorizes exactly as the authors' module does (tested against
  a functional re-statement of their layer list to 1e-3 a*b*);
* a checkpoint trained here records its T in its config (the paper's 0.38 by
  default) and decodes with it;
* either accepts ``temperature=...`` from `from_checkpoint` as an override.

The model is deterministic: ``colorize`` ignores ``generator``.

Choices (departures from the paper and from the authors' code, and why)
------------------------------------------------------------------------
* **Bins**: the authors' 313 centres in the authors' order
  (`colorizers.quantization.ab_bins`, shipped from their ``pts_in_hull``),
  so that channel i means the same colour in their weights and in ours.
* **Decoding temperature**: see above. An authors' file decodes at T = 1
  (their module's output) unless told otherwise; trained checkpoints at the
  paper's 0.38. The annealed mean runs in float32 whatever the network's dtype.
* Widths scale with ``width_mult`` (1.0 = the paper), for small demo models; the
  depth, strides and dilations never change.
* Inputs whose sides are not multiples of 8 are padded (replicate) up to the next
  multiple and the output cropped back, so that the x4 upsampling lands exactly
  on the input's pixels (the authors' module returns a map of another size for
  such inputs; for multiples of 8 the two agree).
* Initialisation: PyTorch's defaults (the authors used a data-dependent
  k-means initialisation, Kraehenbuehl et al. 2016, to train from scratch).
* ``model_out`` is fixed (not trained): it holds the bin centres / 110, as the
  authors' deploy net sets it. Decoding and the training targets read the
  centres from it (`bin_centres`), so weights and bins always agree.
* The class-rebalancing prior is estimated by `prepare` from the training data
  the trainer is given (ImageNet in the paper; up to ``prior_images`` = 50,000
  images, plenty for a 313-bin histogram) on the bin list the loss uses
  (`load_prepared` refuses a prior built on another list), and travels in the
  checkpoint, not in the state dict, which stays exactly the ``eccv16`` one.
* Soft encoding over the paper's 5 neighbours (``neighbours``; the authors'
  Caffe layer used 10), lambda 0.5, sigma 5: see `colorizers.quantization`.
* Training recipe (`default_train_config`): the paper's Adam, beta (0.9, 0.99),
  weight decay 1e-3 as an L2 term on the gradient (Caffe's weight decay, which
  is what ``torch.optim.Adam`` does), lr 3e-5 divided by 10 at 225k of 450k
  iterations, batch 40 of 176 x 176 random crops (mirrored) of images whose
  shorter side is scaled to 256 (``resize``), the authors' data scales.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError
from .color import rgb_to_lab
from .quantization import (
    SIGMA, TEMPERATURE, ab_bins, bin_histogram, empirical_prior, float32, rebalanced_cross_entropy,
    rebalancing_weights,
)
from .registry import register
from .training import TrainableColorizer, TrainBatch, TrainingForward

__all__ = [
    "Zhang2016Config", "Zhang2016", "zhang2016", "eccv16_blocks", "estimate_prior", "estimate_prepared",
    "check_temperature", "L_CENT", "L_NORM", "AB_NORM", "AUTHORS_TEMPERATURE",
]

L_CENT, L_NORM, AB_NORM = 50.0, 100.0, 110.0
AUTHORS_TEMPERATURE = 1.0   # the eccv16 module's own decoding: softmax, then model_out
TEMPERATURE_HELP = ("annealed-mean decoding temperature T > 0: softmax(logits / T), then the mean over the "
                    "313 bins; 1 = the plain mean, towards 0 = the most likely bin (default: the checkpoint's, "
                    "the paper's 0.38 when trained here; 1.0, the authors' module, for their released weights)")

# block: (convs, output width, stride of the last conv, dilation); model8 is built apart
_BLOCKS = {
    "model1": (2, 64, 2, 1),
    "model2": (2, 128, 2, 1),
    "model3": (3, 256, 2, 1),
    "model4": (3, 512, 1, 1),
    "model5": (3, 512, 1, 2),
    "model6": (3, 512, 1, 2),
    "model7": (3, 512, 1, 1),
}
_MODEL8_WIDTH = 256


@dataclass
class Zhang2016Config:
    """Constructor arguments of `Zhang2016` (defaults: the paper)."""

    width_mult: float = 1.0            # channel widths x this; 1.0 = 64 ... 512
    temperature: float = TEMPERATURE   # annealed-mean T at test time (an authors' file: 1.0)
    neighbours: int = 5                # soft-encoding neighbours (paper 5, authors' code 10)
    sigma: float = SIGMA               # soft-encoding Gaussian
    rebalance_lambda: float = 0.5      # mix of prior and uniform in the rebalancing weights
    chroma_threshold: float = 5.0      # images without |a*| or |b*| above it are left out of the loss


def check_temperature(value: Any) -> float:
    """``value`` as a float if it is a finite positive number, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"temperature must be a finite positive number, got {value!r}")
    return float(value)


def _width(channels: int, width_mult: float) -> int:
    return max(1, round(channels * width_mult))


def eccv16_blocks(width_mult: float = 1.0, num_bins: int = 313) -> dict[str, nn.Sequential]:
    """The ``eccv16`` trunk: ``model1`` ... ``model8`` (L in, ``num_bins`` logits at 1/4 out)."""
    blocks: dict[str, nn.Sequential] = {}
    cin = 1
    for name, (convs, width, stride, dilation) in _BLOCKS.items():
        cout = _width(width, width_mult)
        layers: list[nn.Module] = []
        for i in range(convs):
            layers += [
                nn.Conv2d(cin if i == 0 else cout, cout, 3, stride=stride if i == convs - 1 else 1,
                          padding=dilation, dilation=dilation),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.BatchNorm2d(cout))
        blocks[name] = nn.Sequential(*layers)
        cin = cout
    c8 = _width(_MODEL8_WIDTH, width_mult)
    blocks["model8"] = nn.Sequential(
        nn.ConvTranspose2d(cin, c8, 4, stride=2, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c8, c8, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c8, c8, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c8, num_bins, 1),
    )
    return blocks


def pad_to_multiple(x: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    """Replicate-pad the bottom and right of (B, C, H, W) up to multiples of ``multiple``."""
    H, W = x.shape[-2:]
    pad_h, pad_w = -H % multiple, -W % multiple
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x


@register("zhang2016")
class Zhang2016(TrainableColorizer):
    """Zhang et al. 2016's classification colorizer (see the module docstring)."""

    inference_options = {"temperature": TEMPERATURE_HELP}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        cfg = Zhang2016Config(**kwargs)
        cfg.temperature = check_temperature(cfg.temperature)
        if cfg.width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {cfg.width_mult}")
        self.config = asdict(cfg)
        self.cfg = cfg
        bins = ab_bins()                                                   # (313, 2)
        for name, block in eccv16_blocks(cfg.width_mult, len(bins)).items():
            self.add_module(name, block)
        self.model_out = nn.Conv2d(len(bins), 2, 1, bias=False)
        with torch.no_grad():
            self.model_out.weight.copy_(bins.T[:, :, None, None] / AB_NORM)
        self.model_out.weight.requires_grad_(False)
        # rebalancing weights: training only, from `prepare`; not part of the eccv16 state dict
        self.register_buffer("class_weights", torch.ones(len(bins)), persistent=False)

    # --- inference -----------------------------------------------------------

    def bin_centres(self) -> torch.Tensor:
        """(Q, 2) a*b* bin centres, read from ``model_out`` (so loaded weights define them)."""
        return self.model_out.weight.detach().float().flatten(1).T * AB_NORM

    def logits(self, L: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) L*, sides multiples of 8 -> (B, 313, H/4, W/4) logits."""
        x = ((L - L_CENT) / L_NORM).to(self.model1[0].weight.dtype)
        for block in (self.model1, self.model2, self.model3, self.model4, self.model5, self.model6, self.model7):
            x = block(x)
        return self.model8(x)

    def decode(self, logits: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        """Annealed mean in float32 (autocast or not): (B, 313, h, w) -> (B, 2, h, w) a*b*."""
        T = self.cfg.temperature if temperature is None else temperature
        with float32(logits.device):
            probs = torch.softmax(logits.float() / T, dim=1)
            return F.conv2d(probs, self.model_out.weight.float()) * AB_NORM

    def forward(self, L, *, generator=None, reference_ab=None) -> torch.Tensor:
        H, W = L.shape[-2:]
        ab = self.decode(self.logits(pad_to_multiple(L)))                  # (B, 2, H'/4, W'/4)
        ab = F.interpolate(ab, scale_factor=4, mode="bilinear", align_corners=False)
        return ab[..., :H, :W]

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> "Zhang2016":
        """Load a checkpoint written by ``train_colorizer``, or the authors' released weights.

        A plain state dict with the ``eccv16`` keys (the authors' PyTorch file)
        loads strictly into the full-width model, decoding at T = 1 as their
        module does. ``kwargs`` are inference settings (`inference_options`)
        for either kind of file; a bad value is a CheckpointError naming ``path``.
        """
        if path is None:
            raise ValueError(f"colorizer {cls.name!r} needs a checkpoint path")
        cls.check_inference_options(kwargs)
        raw = _plain_state_dict(path)
        if raw is None:
            return super().from_checkpoint(path, **kwargs)
        try:
            model = cls(**{"temperature": AUTHORS_TEMPERATURE, **kwargs})
        except ValueError as exc:
            raise CheckpointError(f"{path} does not fit {cls.name!r}: {exc}") from exc
        try:
            model.load_state_dict(raw, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path} is not an eccv16 state dict of this layout: {exc}") from exc
        return model.eval()

    # --- training ------------------------------------------------------------

    @classmethod
    def default_train_config(cls) -> dict[str, Any]:
        return {
            "batch_size": 40, "resize": 256, "crop": 176, "steps": 450_000,
            "lr": 3e-5, "betas": [0.9, 0.99], "weight_decay": 1e-3,
            "lr_milestones": [225_000], "lr_gamma": 0.1,
            "prior_images": 50_000,   # images the ab prior is estimated from (the whole set if fewer)
        }

    def configure_optimizers(self, config: Mapping[str, Any]) -> dict[str, tuple]:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=config["lr"], betas=tuple(config["betas"]),
                                     weight_decay=config["weight_decay"])
        return {"net": (optimizer, _step_schedule(optimizer, config))}

    @classmethod
    def prepare(cls, config: Mapping[str, Any], batches: Iterable[TrainBatch]) -> dict[str, Any]:
        return estimate_prepared(batches, ab_bins(), limit=config.get("prior_images"))

    def load_prepared(self, prepared: Mapping[str, Any]) -> None:
        self.class_weights.copy_(_class_weights(prepared, self.bin_centres(), self.cfg.rebalance_lambda))

    def training_forwards(self) -> dict[str, TrainingForward]:
        return {"logits": TrainingForward(self.logits, [self])}

    def train_step(self, batch: TrainBatch, step: int, optimizers: Mapping[str, tuple]) -> dict[str, float]:
        optimizer, scheduler = optimizers["net"]
        with float32(batch.rgb.device):    # the batch and its targets in float32 under bf16 autocast too
            lab = rgb_to_lab(batch.rgb)                                    # (B, 3, H, W) float32
        logits = self.replica("logits")(lab[:, :1])
        loss = self.loss(logits.float(), lab[:, 1:])                       # the loss in float32 on any device
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {"loss": loss.item()}

    def loss(self, logits: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """The rebalanced soft-encoded cross-entropy of ``logits`` against true ``ab``."""
        return rebalanced_cross_entropy(
            logits, ab, self.bin_centres(), self.class_weights, neighbours=self.cfg.neighbours,
            sigma=self.cfg.sigma, chroma_threshold=self.cfg.chroma_threshold,
        )


def zhang2016(**kwargs: Any) -> Zhang2016:
    """Zhang et al. 2016's network (``width_mult=1.0``: the paper's, 32.2 M parameters)."""
    return Zhang2016(**kwargs)


# --- shared with lal2017 ------------------------------------------------------

def estimate_prior(batches: Iterable[TrainBatch], centres: torch.Tensor, *, limit: int | None = None) -> torch.Tensor:
    """The smoothed empirical a*b* prior (Q,) on ``centres`` (Q, 2), of up to ``limit`` training images.

    ``centres`` must be the list the loss soft-encodes its targets on (a model's
    bin centres): entry q of the prior is the mass of ``centres[q]``.
    """
    centres = centres.detach().float().cpu()
    counts = torch.zeros(len(centres), dtype=torch.float64)
    seen = 0
    for batch in batches:
        take = batch.rgb if limit is None else batch.rgb[: max(0, limit - seen)]
        if len(take):
            counts += bin_histogram(rgb_to_lab(take)[:, 1:], centres.to(take.device)).cpu()
        seen += len(take)
        if limit is not None and seen >= limit:
            break
    return empirical_prior(counts, centres)


def estimate_prepared(batches: Iterable[TrainBatch], centres: torch.Tensor, *, limit: int | None) -> dict[str, Any]:
    """`prepare`'s statistics: the prior and the bin list it was built on."""
    return {"ab_prior": estimate_prior(batches, centres, limit=limit), "ab_bins": centres.detach().float().cpu()}


def _class_weights(prepared: Mapping[str, Any], centres: torch.Tensor, lam: float) -> torch.Tensor:
    """Rebalancing weights from ``prepared``, refusing a prior built on a list other than ``centres``."""
    num_bins = len(centres)
    prior = prepared.get("ab_prior")
    if not isinstance(prior, torch.Tensor) or prior.shape != (num_bins,):
        raise ValueError(f"prepared statistics need an 'ab_prior' of shape ({num_bins},)")
    built_on = prepared.get("ab_bins")        # absent in checkpoints written before it was recorded
    if built_on is not None and (not isinstance(built_on, torch.Tensor) or built_on.shape != centres.shape
                                 or not torch.allclose(built_on.float().cpu(), centres.detach().float().cpu(),
                                                       atol=1e-3)):
        raise ValueError("the prepared a*b* prior was built on another bin list than this model's bin centres")
    return rebalancing_weights(prior, lam=lam)


def _step_schedule(optimizer: torch.optim.Optimizer, config: Mapping[str, Any]):
    """lr x ``lr_gamma`` at each of ``lr_milestones`` (steps), as a per-step LambdaLR."""
    milestones, gamma = sorted(config.get("lr_milestones", [])), config.get("lr_gamma", 0.1)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: gamma ** sum(step >= m for m in milestones))


def _plain_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor] | None:
    """The file's state dict if it is a bare ``eccv16`` one (the authors' format), else None."""
    try:   # memory-mapped: a look at the keys does not read a training checkpoint's optimiser state
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:       # missing, corrupt, unsafe or a legacy (non-zip) file: load_checkpoint words the error
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return None
    if isinstance(obj, dict) and "model1.0.weight" in obj and "format" not in obj:
        return obj
    return None
