"""Liang et al. (2016): patch-wise CNN colorization in YUV, refined by a guided filter.

Liang, Su, Xiao, Guo, Luo, "Deep Patch-wise Colorization Model for Grayscale
Images", SIGGRAPH Asia 2016 Technical Briefs. No code was published. What the
paper fixes is kept: YUV; two networks of one architecture, one for U and one
for V; a 64 x 64 gray patch in, the chroma of its centre 56 x 56 out; kernels of
11 x 11, 4 x 4, 3 x 3 and 1 x 1; SGD with a mean squared error for the first
iterations (100), then the loss written ``min sum U log(U^)``; whole images
colorized patch by patch; a guided filter (He et al.) with the gray image as
guide, "filter size 40", eps 1e-4, as refinement.

What the paper leaves open, chosen here
---------------------------------------
Network (each of U and V; `PatchNet`)::

    Y patch (N, 1, 64, 64)
    conv 11x11, width w1, reflect padding 5, ReLU   -> (N, w1, 64, 64)
    conv  4x4,  width w2, no padding,        ReLU   -> (N, w2, 61, 61)
    conv  4x4,  width w3, no padding,        ReLU   -> (N, w3, 58, 58)
    conv  3x3,  width w4, no padding,        ReLU   -> (N, w4, 56, 56)
    conv  1x1,  1 output, sigmoid                   -> (N, 1, 56, 56)

* Layers and padding: 64 -> 56 takes a total shrink of 8. A 4 x 4 kernel shifts
  the output by half a pixel, so it comes twice (the two half-pixel shifts add
  up to one) and the centre of every output pixel's receptive field (19 x 19) is
  exactly the input pixel it predicts; 3 + 3 + 2 unpadded pixels make the 8.
  The 11 x 11 layer pads by 5 with reflection rather than zeros, so no dark
  frame enters the patch edges (its outputs within 5 pixels of the patch edge
  see mirrored pixels).
* Widths (w1..w4) = (64, 64, 64, 32): SRCNN-sized (64 maps after the big
  first kernel); 315,010 parameters for the two networks.
* Initialisation: Kaiming-normal for the ReLU layers, zero bias; the output
  layer has zero weights and bias, so an untrained model predicts grey
  (U = V = 0) and training starts from the colourless answer.
* Input: Y - 0.5. Output: a sigmoid s, mapped to the chroma's full BT.601
  range, U = (s - 1/2) * 2 U_max with U_max = 0.436 (V_max = 0.615), so a
  prediction is always a valid chroma value. Both losses compare s with the
  true chroma scaled the same way, t = U / (2 U_max) + 1/2 in [0, 1], and
  average over pixels and over U and V; the first is the MSE (s - t)^2.
* The second loss. ``sum U log U^`` is a cross-entropy, which has its minimum
  at U^ = U only over distributions (a plain -sum U log U^ with U > 0 is
  minimised by making U^ large, and U is signed). So each pixel's t is read
  as a two-outcome distribution (t, 1 - t) and s as the predicted one; the
  loss is their binary cross-entropy minus the target's entropy (a constant
  with no gradient), i.e. the binary KL divergence::

      KL(t || s) = t log(t / s) + (1 - t) log((1 - t) / (1 - s))

  It is zero exactly at s = t, as the MSE is, so switching losses keeps the
  optimum and a perfect fit reports 0. Near the optimum KL is about
  (s - t)^2 / (2 t (1 - t)), i.e. 2 (s - t)^2 at t = 1/2, so training
  minimises KL / 2, which equals the MSE there (see Training). Its gradient on
  the sigmoid's input is proportional to s - t, so saturated outputs still
  learn, and relative to the MSE it weighs errors on strongly coloured pixels
  (t near 0 or 1) more, which counters the pull towards grey. A softmax over
  quantized chroma would also be a cross-entropy, but it would change the
  architecture the paper gives (one output map per channel).
* Gray input: the platform hands over CIE L*. The gray image's sRGB is
  lab_to_rgb(L*, 0, 0), a neutral grey whose BT.601 luma Y equals its value;
  the networks take that Y. Training computes its input the same way (through
  L*), not as the photo's own luma, so that the networks see at training the
  input they get at test. The predicted U, V join that Y, go through
  yuv_to_rgb (clipped to [0, 1]) and rgb_to_lab, and the a*b* are returned
  (the platform puts the true L* back).
* Tiling (`predict_uv`, ``patch`` = 64): the image is padded by 4 pixels on every side, plus
  whatever reaches a multiple of 56 at the bottom and the right, by mirror
  reflection (repeated for images smaller than the padding); 64 x 64 patches
  at a stride of 56 are run as one batch (in chunks of `max_patches_per_pass`)
  and their centres are stitched edge to edge and cropped to the image. Tiles
  do not overlap, and the 19 x 19 receptive field reaches 5 pixels past the
  4-pixel margin, so pixels within 5 pixels of a tile seam are predicted from
  a partly mirrored neighbourhood; the guided filter (an 81 x 81 window)
  smooths what seams remain.
* Refinement: ``guided_filter(Y, U)`` and ``(Y, V)`` with radius 40 (window
  81 x 81; "filter size 40" could also be a 40-pixel window, see
  `colorizers.guided_filter`) and eps 1e-4 on Y in [0, 1], applied to U and V
  before the conversion to RGB (the guide is the gray image, so what is
  filtered is the predicted chroma).
* Training (`train_step`, driven by `colorizers.training`): every crop of the
  batch is one patch; the trainer scales each image to a shorter side of 256,
  the size the platform presents, so that patches show objects at the scale
  they have at test time (its default, 8/7 of the crop, would shrink whole
  photos to 73 pixels), and cuts a random 64 x 64 crop, mirrored with
  probability 1/2. Steps 0 .. mse_iters - 1 minimise the MSE, later steps half
  the KL above (half, so that for near-grey pixels, t near 1/2, loss and
  gradient are the MSE's and the switch does not jolt the step size). Plain
  SGD, momentum 0.9, batch 64, no weight decay, no schedule; the paper states
  SGD and the switch at 100 iterations, nothing else, so no default run length
  is given (``--steps`` is required). lr 1.0 looks large because the losses are
  means over pixels of chroma scaled to [0, 1], whose spread in photos is small
  (a per-pixel MSE of about 0.01 at the start); it was set coarsely on CPU
  runs of the default widths at batch 8: 10 diverged within 50 steps, 0.3 to 3
  were stable, 1 is in the middle.

`colorize` is deterministic: there is no noise, ``generator`` is ignored, and an
image's output does not depend on the other images of its batch.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .color import lab_to_rgb, rgb_to_lab, rgb_to_yuv, yuv_to_rgb
from .guided_filter import guided_filter
from .quantization import float32
from .registry import register
from .training import TrainableColorizer, TrainBatch, TrainingForward

__all__ = [
    "Liang2016Config", "PatchNet", "Liang2016", "liang2016",
    "binary_kl_with_logits", "gray_luma", "reflect_pad",
]

MARGIN = 4   # (64 - 56) / 2: pixels of context on each side of a predicted patch
# largest |U| and |V| of BT.601 YUV over the sRGB cube (pure blue, pure red)
UV_MAX = (0.492111 * (1 - 0.114), 0.877283 * (1 - 0.299))


@dataclass(frozen=True)
class Liang2016Config:
    """Constructor arguments of `Liang2016`: the networks, the loss, the refinement."""

    widths: tuple[int, int, int, int] = (64, 64, 64, 32)  # maps after the 11x11, 4x4, 4x4, 3x3 convs
    patch: int = 64             # test-time tile side; its centre patch - 8 is predicted
    mse_iters: int = 100        # training steps with the MSE before the KL loss
    refine: bool = True         # apply the guided filter at test time
    gf_radius: int = 40         # guided filter window half-width (window 2r + 1)
    gf_eps: float = 1e-4        # guided filter eps, on Y in [0, 1]

    def __post_init__(self) -> None:
        widths = tuple(self.widths)
        if len(widths) != 4 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be 4 positive integers, got {self.widths!r}")
        object.__setattr__(self, "widths", widths)
        if isinstance(self.patch, bool) or not isinstance(self.patch, int) or self.patch <= 2 * MARGIN:
            raise ValueError(f"patch must be an integer above {2 * MARGIN}, got {self.patch!r}")
        for name in ("mse_iters", "gf_radius"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not self.gf_eps > 0:
            raise ValueError(f"gf_eps must be positive, got {self.gf_eps!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON and checkpoints (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def binary_kl_with_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary KL divergence KL(t || sigmoid(logits)) over all elements, t in [0, 1].

    Binary cross-entropy minus the target's entropy: the same gradient, zero at a
    perfect fit. xlogy makes 0 log 0 = 0 at t = 0 or 1.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    entropy = -(torch.xlogy(target, target) + torch.xlogy(1 - target, 1 - target))
    return (bce - entropy).mean()


class PatchNet(nn.Module):
    """One chroma channel: gray patch (N, 1, S, S) -> logits of its centre (N, 1, S - 8, S - 8)."""

    def __init__(self, widths: tuple[int, int, int, int]) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.conv1 = nn.Conv2d(1, w1, 11, padding=5, padding_mode="reflect")
        self.conv2 = nn.Conv2d(w1, w2, 4)
        self.conv3 = nn.Conv2d(w2, w3, 4)
        self.conv4 = nn.Conv2d(w3, w4, 3)
        self.out = nn.Conv2d(w4, 1, 1)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(y))         # (N, w1, S, S)
        x = F.relu(self.conv2(x))         # (N, w2, S - 3, S - 3)
        x = F.relu(self.conv3(x))         # (N, w3, S - 6, S - 6)
        x = F.relu(self.conv4(x))         # (N, w4, S - 8, S - 8)
        return self.out(x)                # (N, 1, S - 8, S - 8) logits


@register("liang2016")
class Liang2016(TrainableColorizer):
    """Liang et al. (2016), see the module docstring; keyword arguments as `Liang2016Config`.

    ``from_checkpoint`` (from `TrainableColorizer`) rebuilds the model with the
    checkpoint's config and loads its weights strictly; CheckpointError names the path.
    """

    #: patches per network call in `predict_uv` (bounds memory on large images)
    max_patches_per_pass: int = 256

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        known = {f.name for f in fields(Liang2016Config)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown liang2016 option(s) {unknown}; known: {sorted(known)}")
        self.cfg = Liang2016Config(**kwargs)
        self.config = self.cfg.to_dict()
        self.net_u = PatchNet(self.cfg.widths)
        self.net_v = PatchNet(self.cfg.widths)
        self.register_buffer("uv_max", torch.tensor(UV_MAX).view(1, 2, 1, 1), persistent=False)

    # --- inference ----------------------------------------------------------------

    def forward(
        self,
        L: torch.Tensor,
        *,
        generator: list[torch.Generator] | None = None,
        reference_ab: torch.Tensor | None = None,
    ) -> torch.Tensor:
        y = gray_luma(L)                                               # (B, 1, H, W) in [0, 1]
        uv = self.predict_uv(y)                                        # (B, 2, H, W)
        if self.cfg.refine:
            uv = guided_filter(y, uv, radius=self.cfg.gf_radius, eps=self.cfg.gf_eps)
        rgb = yuv_to_rgb(torch.cat((y, uv), dim=1)).clamp(0, 1)        # (B, 3, H, W)
        return rgb_to_lab(rgb)[:, 1:]                                  # (B, 2, H, W)

    def predict_uv(self, y: torch.Tensor) -> torch.Tensor:
        """Chroma U, V (B, 2, H, W) of gray Y (B, 1, H, W), tile by tile, before refinement."""
        B, _, H, W = y.shape
        S = self.cfg.patch
        step = S - 2 * MARGIN                                          # 56
        nh, nw = math.ceil(H / step), math.ceil(W / step)
        padded = reflect_pad(y, MARGIN, nh * step - H + MARGIN, MARGIN, nw * step - W + MARGIN)
        patches = F.unfold(padded, S, stride=step)                     # (B, S*S, nh*nw)
        patches = patches.transpose(1, 2).reshape(-1, 1, S, S)         # (B*nh*nw, 1, S, S)
        centres = torch.cat([
            self._chroma(chunk) for chunk in patches.split(self.max_patches_per_pass)
        ])                                                             # (B*nh*nw, 2, step, step)
        centres = centres.view(B, nh, nw, 2, step, step)
        uv = centres.permute(0, 3, 1, 4, 2, 5).reshape(B, 2, nh * step, nw * step)
        return uv[:, :, :H, :W]

    def _logits(self, y: torch.Tensor) -> torch.Tensor:
        """Logits (N, 2, S - 8, S - 8) of the two networks for gray patches (N, 1, S, S)."""
        x = y - 0.5
        return torch.cat((self.net_u(x), self.net_v(x)), dim=1)

    def _chroma(self, y: torch.Tensor) -> torch.Tensor:
        """U, V (N, 2, S - 8, S - 8) of the centres of gray patches (N, 1, S, S)."""
        return (torch.sigmoid(self._logits(y)) - 0.5) * (2 * self.uv_max)

    # --- training (the protocol of colorizers.training) ---------------------------------

    @classmethod
    def default_train_config(cls) -> dict[str, Any]:
        """SGD with momentum on 64 x 64 crops of images whose shorter side is 256 (no default ``steps``)."""
        return {
            "batch_size": 64, "crop": 64, "resize": 256,
            "lr": 1.0, "momentum": 0.9, "weight_decay": 0.0,
        }

    def configure_optimizers(self, config: Mapping[str, Any]) -> dict[str, tuple]:
        """One SGD over both networks (SGD is per parameter, so this is two SGDs in one)."""
        sgd = torch.optim.SGD(
            self.parameters(), lr=config["lr"], momentum=config["momentum"],
            weight_decay=config.get("weight_decay", 0.0),
        )
        return {"net": (sgd, None)}

    def training_forwards(self) -> dict[str, TrainingForward]:
        return {"logits": TrainingForward(self._logits, [self])}

    def train_step(self, batch: TrainBatch, step: int, optimizers: Mapping[str, tuple]) -> dict[str, float]:
        """One SGD step on the crops ``batch.rgb`` (B, 3, S, S): each is one patch.

        Steps before ``mse_iters`` minimise the MSE, later ones half the binary KL (both
        on the chroma scaled to [0, 1]); both are returned, ``loss`` being the one used.
        """
        optimizer, _ = optimizers["net"]
        rgb = batch.rgb.float()
        if min(rgb.shape[-2:]) <= 2 * MARGIN:
            raise ValueError(f"liang2016 needs crops above {2 * MARGIN} pixels, got {tuple(rgb.shape[-2:])}")
        with float32(rgb.device):      # the batch and its targets in float32 under bf16 autocast too
            y = gray_luma(rgb_to_lab(rgb)[:, :1])                      # (B, 1, S, S)
            uv = rgb_to_yuv(rgb)[:, 1:, MARGIN:-MARGIN, MARGIN:-MARGIN]    # (B, 2, S - 8, S - 8)
            target = (uv / (2 * self.uv_max) + 0.5).clamp(0, 1)
        logits = self.replica("logits")(y).float()                     # (B, 2, S - 8, S - 8); losses in float32
        mse = F.mse_loss(torch.sigmoid(logits), target)
        kl = binary_kl_with_logits(logits, target)
        loss = mse if step < self.cfg.mse_iters else kl / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), "mse": mse.item(), "kl": kl.item()}


def liang2016(**kwargs: Any) -> Liang2016:
    """Liang et al. 2016's model (defaults: two networks of 157,505 parameters each)."""
    return Liang2016(**kwargs)


def gray_luma(L: torch.Tensor) -> torch.Tensor:
    """BT.601 luma Y (B, 1, H, W) in [0, 1] of the neutral grey with lightness L* (B, 1, H, W).

    lab_to_rgb(L*, 0, 0) has R = G = B, and the luma weights sum to 1, so Y is that value.
    """
    lab = torch.cat((L, torch.zeros_like(L), torch.zeros_like(L)), dim=1)   # (B, 3, H, W)
    return lab_to_rgb(lab)[:, :1]


def reflect_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Pad (..., H, W) by mirror reflection (edge pixel not repeated), for any pad size.

    Unlike F.pad(mode="reflect"), a pad wider than the image keeps reflecting
    back and forth (period 2 (n - 1)); a side of one pixel is repeated.
    """
    H, W = x.shape[-2:]
    rows = _reflect_index(H, top, bottom, x.device)
    cols = _reflect_index(W, left, right, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def _reflect_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Source index of each position -before .. n + after - 1 under mirror reflection."""
    pos = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(pos)
    period = 2 * (n - 1)
    pos = pos.remainder(period)
    return torch.where(pos < n, pos, period - pos)
