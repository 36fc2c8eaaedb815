"""Royer, Kolesnikov, Lampert, "Probabilistic Image Colorization" (BMVC 2017): ``royer2017``.

A feed-forward embedding network reads the luminance at the working resolution (128x128)
and yields a feature map at a quarter of it (32x32); a PixelCNN++ decoder models the
chroma on that grid autoregressively, conditioned on the embedding in every block, with
a mixture of discretized logistics over (a*, b*). Each call samples a new colorization
(`Royer2017.sample` draws several per image); the sampled chroma is upsampled bilinearly
and joined with the true L* by the platform.
The embedding's first ``8 * n_mix`` channels are also mixture parameters, trained with
the same loss: the auxiliary feed-forward predictor (``mode="auxiliary"``).

Pipeline of `Royer2017.colorize` (L* of any size in, a*b* of the same size out)::

    L* (B,1,H,W) --bicubic--> (B,1,128,128) --(L-50)/50--> embedding net --> (B,160,32,32)
    L at 32x32 (every 4th pixel) + embedding --> raster-scan sampling of ((a-0.5)/127.5, (b+0.5)/127.5)
    on 256 levels --> a* = 127.5 x + 0.5, b* = 127.5 x - 0.5 --> bilinear (corners aligned) to (H, W)

Choices: where the paper and the authors' code (github.com/ameroyer/PIC) leave room, and
every departure from them. The reference is the authors' code; what differs says why.

Followed from the authors' code:

* Chroma scaling: a* -> (a* - 0.5) / 127.5 and b* -> (b* + 0.5) / 127.5 (their
  ``pcnn_norm``: skimage's ranges [-127, 128] and [-128, 127] onto [-1, 1]). The 256
  levels of the discretized logistics, spaced 2/255, are then the integer a*, b* values,
  and the NLL, in bits per dimension over the 2 x 32 x 32 chroma values, is on the scale
  of the paper's. Targets and samples are clamped to [-1, 1], as theirs (never binding
  for sRGB colours: |a*|, |b*| < 110).
* Resolutions: the chroma targets and the L that the mixture's coefficients read are the
  working-size image at every 4th pixel, rows and columns 0, 4, 8, ... (`_downsample`):
  the authors' ``tf.image.resize_bilinear`` (TensorFlow 1, ``align_corners=False``,
  before ``half_pixel_centers`` existed) maps output pixel i to input pixel 4i exactly
  when the factor is 4, so their "bilinear" downsampling is this subsampling. The sampled
  chroma is upsampled bilinearly with the corners aligned, as their ``scipy.ndimage.zoom(
  order=1)``. L* is resized to the working size bicubically (antialiased), as the
  authors resize the RGB images of their data set (``scipy.misc.imresize(...,
  'bicubic')``) and as the trainer does; training images not at the working size are
  resized (RGB, bicubic) before the conversion to Lab, and centre-cropped to a square
  first if they are not square (the trainer's crops always are).
* Training data (`default_train_config`): whole images stretched to 128x128 (the
  trainer's ``resize_mode: "stretch"``), as their ``imagenet-128.hdf5``; mirrored.
* Mixture: 8 outputs per component in the authors' order and parametrisation (logit; a
  on L, b on L, b on a coefficients; mean and log-scale of a; of b; see
  `colorizers.pixelcnnpp`); log-scales clamped at -7; the component drawn by Gumbel-max.
* Architecture: the embedding network and decoder of their ImageNet model (widths,
  blocks, dilations, 3x3 shifted kernels, the 1x1 conditioning in every decoder block,
  channels of ones on both inputs, the 160-channel embedding whose first 80 channels
  are the auxiliary predictor), dropout 0.5 in every gated block, the embedding's
  included; loss = decoder bpd + auxiliary bpd; Adam (0.95, 0.9995, eps 1e-6), lr 1.6e-4
  x 0.99999 per step, batch 64.
* Polyak averaging (``polyak=True``): the module keeps a second copy of the network,
  ``net_avg`` (buffers, not parameters), started at the initial weights and updated
  after every step with the constant decay 0.999, as their
  ``tf.train.ExponentialMovingAverage`` (no warm-up: a short run's average is still
  mostly the initial weights; the demo model has no average). A checkpoint then holds
  both ``net.*`` (to go on training) and ``net_avg.*``; colorizing uses ``net_avg``.

Departures, and why:

* Weights: plain convolutions with PyTorch's default initialisation instead of weight
  normalisation with data-dependent initialisation (the second convolution of every
  gated block still starts at 0.1 of its initial scale, their ``init_scale``): weight
  normalisation with a data-dependent first pass would be a second code path for one
  model, and the trained weights cannot be ported anyway (next item).
* Decoder input: the (a, b) canvas plus a channel of ones. The authors' decoder reads
  the preceding pixels as RGB (the downsampled colour image when training, the sampled
  pixels converted to RGB when sampling), which also carries their L; here L reaches the
  decoder through the embedding and the mixture's L coefficients, so that a sample
  never goes through a Lab -> RGB -> Lab round trip per pixel.
* Discrete data and samples: the targets are rounded to the 256 levels (integer a*, b*)
  and samples are drawn on them (so b's mean reads the discretized a), which makes the
  likelihood a distribution over the levels and the sampler sample exactly that
  distribution. The authors evaluate the same bin probabilities at the unrounded values
  and sample continuous values (clamped), whose rounding is this distribution.
* Temperature: T scales the Gumbel noise (component probabilities softmax(logits / T))
  and the logistic noise; T = 0 gives each pixel's most probable component's location,
  still autoregressively. The authors' only setting, ``scale_var`` (1 or 0), scales the
  logistic noise alone, so their "mode" still draws the component at random; at T = 1
  the two agree.
* ``mode="auxiliary"`` decodes the auxiliary predictor deterministically (the most
  probable component's location per pixel, no autoregression); the authors sample it
  pixel by pixel independently, which gives speckle rather than a colorization.
* Mirroring: the trainer mirrors each image with probability 1/2; the authors flip a
  whole batch or none (one coin per batch). The per-image flip has the same
  distribution for any one image and does not correlate the images of a batch.
* Data order: the trainer's stream (a fresh permutation per epoch, batches running
  across epoch boundaries) instead of their per-epoch batches dropping the remainder.
* Embedding batches of more than 32 images are embedded 32 at a time (memory).

Sampling speed: the authors sample naively, running the whole decoder once per pixel
(1,024 passes per image). ``sampler="cached"`` (the default) computes every layer's
output once per pixel from per-layer caches (`colorizers.pixelcnnpp.CachedSampler`), about
the cost of one decoder pass per image, and draws the same samples from the same noise;
on a CUDA device its row step is replayed as a CUDA graph. ``sampler="naive"`` is the
reference.

Default configuration (`Royer2017()`): 128x128 working size, embedding widths 64, 128,
256, 512 with 2 gated blocks per stage, 3 blocks at dilation 2 and 3 at dilation 4, a
160-channel embedding; decoder of 4 gated blocks per stream, 160 channels, 3x3 shifted
kernels (the authors' code), 10 logistics: 110.6 M parameters in ``net``, 98.9 M of them in
the embedding (84.9 M in its 512-channel dilated blocks) and 11.7 M in the decoder.

References
----------
A. Royer, A. Kolesnikov, C. H. Lampert, "Probabilistic Image Colorization", BMVC 2017;
code: github.com/ameroyer/PIC (TensorFlow).
T. Salimans et al., "PixelCNN++", ICLR 2017.
"""
from __future__ import annotations

import copy
import math
import os
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import save_checkpoint
from .color import rgb_to_lab
from .pixelcnnpp import (
    PARAMS_PER_COMPONENT, GatedResidual, PixelCNNDecoder, draw_noise, mixture_bits_per_dim,
    mixture_sample, quantize, sample_cached, sample_naive,
)
from .quantization import float32
from .registry import register
from .training import TrainableColorizer, TrainingForward

__all__ = ["EmbeddingNet", "PICNet", "Royer2017", "DEMO_CONFIG", "ab_to_unit", "unit_to_ab"]

L_CENTRE, L_HALF_RANGE = 50.0, 50.0   # L* in [0, 100] -> [-1, 1]
AB_OFFSETS = (0.5, -0.5)               # a* -> (a* - 0.5) / 127.5, b* -> (b* + 0.5) / 127.5 (the authors')
AB_HALF_RANGE = 127.5
DOWNSCALE = 4                          # the chroma grid is 1/4 of the working size
EMBED_CHUNK = 32                       # images embedded at once when colorizing
MODES = ("sample", "auxiliary")
SAMPLERS = ("cached", "naive")

#: a small configuration that trains on a CPU in minutes (the demo checkpoint; 1.1 M parameters)
DEMO_CONFIG: dict[str, Any] = {
    "working_size": 64, "embed_widths": [16, 32, 64, 64], "embed_blocks": 1,
    "embed_dilations": [2, 4], "embed_dilated_blocks": 1, "embed_channels": 48,
    "channels": 32, "n_blocks": 2, "n_mix": 5, "dropout": 0.1, "polyak": False,
}


def ab_to_unit(ab: torch.Tensor) -> torch.Tensor:
    """a*b* (B, 2, ...) -> the model's [-1, 1] scale: ((a* - 0.5) / 127.5, (b* + 0.5) / 127.5)."""
    offsets = ab.new_tensor(AB_OFFSETS).view(2, *([1] * (ab.ndim - 2)))
    return (ab - offsets) / AB_HALF_RANGE


def unit_to_ab(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `ab_to_unit`: the levels -1 + 2k/255 become a* = k - 127, b* = k - 128."""
    offsets = x.new_tensor(AB_OFFSETS).view(2, *([1] * (x.ndim - 2)))
    return x * AB_HALF_RANGE + offsets


def _downsample(x: torch.Tensor) -> torch.Tensor:
    """(..., S, S) -> (..., S/4, S/4): rows and columns 0, 4, 8, ...

    What TensorFlow 1's ``resize_bilinear(align_corners=False)`` (the authors'
    ``downsample_tf``) computes for a factor of 4: output pixel i reads input coordinate
    4i, an integer, so the interpolation weight of its neighbour is 0.
    """
    return x[..., ::DOWNSCALE, ::DOWNSCALE]


def _same_conv(in_channels: int, out_channels: int, dilation: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)


class EmbeddingNet(nn.Module):
    """The grayscale embedding network: (B, 1, S, S) luminance in [-1, 1] -> (B, E, S/4, S/4).

    conv3x3 w0; ``blocks`` gated blocks; conv3x3 stride 2 to w1; ``blocks`` gated blocks;
    conv3x3 stride 2 to w2; ``blocks`` gated blocks; conv3x3 to w3; then per dilation d:
    ``dilated_blocks`` gated blocks with dilation d and a conv3x3 (to w3, the last one to
    ``out_channels``). The input gets a channel of ones, as in the authors' code.
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks: int = 2,
        dilations: Sequence[int] = (2, 4),
        dilated_blocks: int = 3,
        out_channels: int = 160,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths

        def stage(width: int, n: int, dilation: int = 1) -> nn.Sequential:
            return nn.Sequential(*(GatedResidual(width, _same_conv, dilation=dilation, dropout=dropout)
                                   for _ in range(n)))

        self.conv_in = nn.Conv2d(2, w0, 3, padding=1)
        self.stage1 = stage(w0, blocks)
        self.down1 = nn.Conv2d(w0, w1, 3, stride=2, padding=1)
        self.stage2 = stage(w1, blocks)
        self.down2 = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.stage3 = stage(w2, blocks)
        self.widen = nn.Conv2d(w2, w3, 3, padding=1)
        self.dilated = nn.ModuleList(stage(w3, dilated_blocks, d) for d in dilations)
        self.transitions = nn.ModuleList(
            nn.Conv2d(w3, out_channels if i == len(dilations) - 1 else w3, 3, padding=1)
            for i in range(len(dilations))
        )

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(torch.cat([L, torch.ones_like(L)], dim=1))        # (B, w0, S, S)
        x = self.stage1(x)
        x = self.stage2(self.down1(x))                                      # (B, w1, S/2, S/2)
        x = self.stage3(self.down2(x))                                      # (B, w2, S/4, S/4)
        x = self.widen(x)                                                   # (B, w3, S/4, S/4)
        for blocks, transition in zip(self.dilated, self.transitions):
            x = transition(blocks(x))
        return x                                                            # (B, E, S/4, S/4)


class PICNet(nn.Module):
    """Embedding network and decoder; `losses` gives the two training losses."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        c = config
        self.n_mix = c["n_mix"]
        self.embedding = EmbeddingNet(
            widths=c["embed_widths"], blocks=c["embed_blocks"], dilations=c["embed_dilations"],
            dilated_blocks=c["embed_dilated_blocks"], out_channels=c["embed_channels"],
            dropout=c["dropout"],
        )
        self.decoder = PixelCNNDecoder(
            in_channels=2, channels=c["channels"], n_blocks=c["n_blocks"],
            cond_channels=c["embed_channels"], n_outputs=PARAMS_PER_COMPONENT * c["n_mix"],
            kernel_size=c["kernel_size"], dropout=c["dropout"],
        )

    def aux_params(self, embedding: torch.Tensor) -> torch.Tensor:
        """The auxiliary predictor's mixture parameters: the first 8K channels."""
        return embedding[:, :PARAMS_PER_COMPONENT * self.n_mix]

    def losses(self, L: torch.Tensor, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced NLL of the decoder and of the auxiliary predictor, bits/dim.

        ``L`` (B, 1, S, S) in [-1, 1]; ``ab`` (B, 2, S/4, S/4) on the 256 levels.
        """
        emb = self.embedding(L)                                             # (B, E, S/4, S/4)
        L_small = _downsample(L)[:, 0]                                      # (B, S/4, S/4)
        # the mixtures' log-probabilities in float32 (under bf16 autocast the networks' outputs are bf16)
        bpd = mixture_bits_per_dim(self.decoder(ab, emb).float(), ab, L_small, self.n_mix)
        aux_bpd = mixture_bits_per_dim(self.aux_params(emb).float(), ab, L_small, self.n_mix)
        return bpd, aux_bpd


def _as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` into a buffer of the same name (the Polyak copy:
    state-dict keys as the network's, but not trained and not counted as parameters)."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                del m._parameters[name]
                m.register_buffer(name, p.detach().clone())
    return module


def _resize(x: torch.Tensor, size: int, lo: float, hi: float) -> torch.Tensor:
    """Bicubic resize of (B, C, H, W) to (size, size), antialiased when shrinking, clamped to [lo, hi]."""
    if x.shape[-2:] == (size, size):
        return x
    # float32: antialiased resizing has no bfloat16 kernel on the CPU (autocast may hand in bfloat16).
    out = F.interpolate(x.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(lo, hi).to(x.dtype)


def _centre_square(x: torch.Tensor) -> torch.Tensor:
    H, W = x.shape[-2:]
    s = min(H, W)
    top, left = (H - s) // 2, (W - s) // 2
    return x[..., top:top + s, left:left + s]


@register("royer2017")
class Royer2017(TrainableColorizer):
    """Probabilistic Image Colorization (Royer et al., BMVC 2017); see the module docstring.

    Parameters
    ----------
    working_size : side of the square the luminance is resized to (multiple of 4); the
        chroma is sampled at a quarter of it.
    embed_widths : the four widths of the embedding network's stages.
    embed_blocks : gated blocks per stage before the dilated part.
    embed_dilations, embed_dilated_blocks : dilation of each dilated stage, blocks in each.
    embed_channels : channels of the embedding (at least ``8 * n_mix``: the first ``8 *
        n_mix`` are the auxiliary predictor's mixture parameters).
    channels, n_blocks, kernel_size : decoder width, gated blocks per stream, kernel side.
    n_mix : logistic components of the mixture.
    dropout : dropout rate in every gated block during training.
    polyak : keep Polyak-averaged weights (``net_avg``) and colorize with them.
    mode : ``"sample"`` (autoregressive sampling) or ``"auxiliary"`` (the embedding's
        feed-forward predictor, decoded deterministically).
    temperature : sampling temperature >= 0 (1 samples the model; 0 is deterministic).
    sampler : ``"cached"`` (default) or ``"naive"`` (one full decoder pass per pixel).
    cuda_graph : capture the cached sampler's row step in a CUDA graph on CUDA devices.

    ``mode``, ``temperature``, ``sampler`` and ``cuda_graph`` are the inference settings
    (`inference_options`): a checkpoint's may be replaced in `from_checkpoint`.
    """

    needs_checkpoint = True
    inference_options = {
        "mode": "'sample' (default): autoregressive samples; 'auxiliary': the embedding network's feed-forward "
                "predictor, decoded deterministically",
        "temperature": "float >= 0, default 1: scales the mixture's component (logits / T) and logistic noise "
                       "(1 samples the model; 0 is deterministic)",
        "sampler": "'cached' (default) or 'naive': per-layer caches, or one decoder pass per pixel (the authors'; "
                   "the same samples, far slower)",
        "cuda_graph": "true (default) or false: on CUDA, replay the cached sampler's row step as a CUDA graph",
    }

    def __init__(
        self,
        *,
        working_size: int = 128,
        embed_widths: Sequence[int] = (64, 128, 256, 512),
        embed_blocks: int = 2,
        embed_dilations: Sequence[int] = (2, 4),
        embed_dilated_blocks: int = 3,
        embed_channels: int = 160,
        channels: int = 160,
        n_blocks: int = 4,
        kernel_size: int = 3,
        n_mix: int = 10,
        dropout: float = 0.5,
        polyak: bool = True,
        mode: str = "sample",
        temperature: float = 1.0,
        sampler: str = "cached",
        cuda_graph: bool = True,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "working_size": working_size, "embed_widths": list(embed_widths),
            "embed_blocks": embed_blocks, "embed_dilations": list(embed_dilations),
            "embed_dilated_blocks": embed_dilated_blocks, "embed_channels": embed_channels,
            "channels": channels, "n_blocks": n_blocks, "kernel_size": kernel_size,
            "n_mix": n_mix, "dropout": dropout, "polyak": polyak, "mode": mode,
            "temperature": temperature, "sampler": sampler, "cuda_graph": cuda_graph,
        }
        _check_config(self.config)
        self.n_mix = n_mix
        self.net = PICNet(self.config)
        self.net_avg: PICNet | None = None
        if polyak:
            self.net_avg = _as_buffers(copy.deepcopy(self.net))
        self._train_config: dict[str, Any] = {}

    def params(self) -> dict[str, Any]:
        """The configuration: architecture and the inference settings in use."""
        return dict(self.config)

    @classmethod
    def check_inference_values(cls, settings: dict[str, Any]) -> None:
        """TypeError for a name that is no inference setting, ValueError for a bad value."""
        cls.check_inference_options(settings)
        _check_inference_values(settings)

    # --- colorizing ----------------------------------------------------------------

    def forward(
        self,
        L: torch.Tensor,
        *,
        generator: list[torch.Generator] | None = None,
        reference_ab: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.sample(L, generator=generator)[:, 0]

    @torch.no_grad()
    def sample(
        self,
        L: torch.Tensor,
        *,
        n_samples: int = 1,
        generator: Sequence[torch.Generator] | None = None,
        temperature: float | None = None,
        sampler: str | None = None,
    ) -> torch.Tensor:
        """Draw ``n_samples`` colorizations of each image in one batch.

        Parameters
        ----------
        L : (B, 1, H, W) CIE L* in [0, 100], any H, W.
        n_samples : colorizations per image; image i's come from ``generator[i]``, in
            order, so sample 0 is what `colorize` returns for the same generator.
        generator : one seeded generator per image (None: the global RNG).
        temperature, sampler : override the configured ones for this call.

        Returns
        -------
        (B, n_samples, 2, H, W) a*b*, in L's dtype. With ``mode="auxiliary"`` every
        sample is the auxiliary predictor's deterministic decoding.
        """
        if n_samples < 1:
            raise ValueError(f"`n_samples` must be at least 1, got {n_samples}")
        B, _, H, W = L.shape
        net = self.net_avg if self.net_avg is not None else self.net
        dtype = net.embedding.conv_in.weight.dtype
        was_training = self.training
        self.eval()
        try:
            L_work = (_resize(L.to(dtype), self.config["working_size"], 0.0, 100.0) - L_CENTRE) / L_HALF_RANGE
            emb = torch.cat([net.embedding(chunk) for chunk in L_work.split(EMBED_CHUNK)])  # (B, E, h, w)
            L_small = _downsample(L_work)[:, 0]                                             # (B, h, w)
            if self.config["mode"] == "auxiliary":
                params = net.aux_params(emb).movedim(1, -1)                                  # (B, h, w, 8K)
                no_noise = (params.new_zeros(*params.shape[:-1], self.n_mix),
                            params.new_zeros(*params.shape[:-1], 2))
                ab = mixture_sample(params, L_small, *no_noise, 0.0, self.n_mix).movedim(-1, 1)
                ab = ab.repeat_interleave(n_samples, 0)                                      # (B n, 2, h, w)
            else:
                ab = self.sample_grid(emb.repeat_interleave(n_samples, 0), L_small.repeat_interleave(n_samples, 0),
                                      generator=generator, n_samples=n_samples, decoder=net.decoder,
                                      temperature=temperature, sampler=sampler)
            ab = F.interpolate(unit_to_ab(ab), size=(H, W), mode="bilinear", align_corners=True)
        finally:
            self.train(was_training)
        return ab.unflatten(0, (B, n_samples)).to(L.dtype)                                  # (B, n, 2, H, W)

    @torch.no_grad()
    def sample_grid(
        self,
        embedding: torch.Tensor,
        L_small: torch.Tensor,
        *,
        generator: Sequence[torch.Generator] | None = None,
        n_samples: int = 1,
        decoder: PixelCNNDecoder | None = None,
        temperature: float | None = None,
        sampler: str | None = None,
    ) -> torch.Tensor:
        """Sample chroma on the grid: (B n, 2, h, w) on the levels in [-1, 1] (see `ab_to_unit`).

        ``embedding`` (B n, E, h, w) and ``L_small`` (B n, h, w) (normalised luminance),
        each image's rows repeated ``n_samples`` times; the noise of image i's samples
        comes from ``generator[i]`` (see `colorizers.pixelcnnpp.draw_noise`). The decoder
        (by default the averaged one) runs in eval mode.
        """
        if decoder is None:
            decoder = (self.net_avg if self.net_avg is not None else self.net).decoder
        temperature = self.config["temperature"] if temperature is None else temperature
        Bn, _, h, w = embedding.shape
        gumbel, logistic = draw_noise(generator, Bn // n_samples, h, w, self.n_mix, n_samples=n_samples,
                                      device=embedding.device, dtype=embedding.dtype)
        was_training = decoder.training
        decoder.eval()
        try:
            if (sampler or self.config["sampler"]) == "naive":
                return sample_naive(decoder, embedding, L_small, gumbel, logistic, temperature)
            return sample_cached(decoder, embedding, L_small, gumbel, logistic, temperature,
                                 cuda_graph=self.config["cuda_graph"])
        finally:
            decoder.train(was_training)

    # --- training (the protocol of colorizers.training) -------------------------------

    @classmethod
    def default_train_config(cls) -> dict[str, Any]:
        """The paper's recipe: Adam (0.95, 0.9995), lr 1.6e-4 x 0.99999 per step, Polyak 0.999.

        ``batch_size`` 64 is the paper's 16 per GPU on 4 GPUs; ``eps`` 1e-6 is the authors'
        Adam epsilon. The data at the authors' scale: ``resize_mode`` ``"stretch"`` with
        ``crop`` 128 (and ``resize`` defaulting to the crop) gives whole images stretched
        to 128x128, as their ImageNet file (``imresize`` to 128x128, bicubic); the trainer
        mirrors half of them, the paper's horizontal flips. A smaller ``crop`` (the demo's
        64) gives whole images at that size. The paper states no run length (the authors'
        script leaves its 150-epoch default, which their lr decay would have reduced to
        nothing long before), so there is no ``steps``: pass ``--steps``.
        """
        return {"lr": 1.6e-4, "betas": [0.95, 0.9995], "eps": 1e-6, "lr_decay": 0.99999,
                "polyak_decay": 0.999, "batch_size": 64, "crop": 128, "resize_mode": "stretch"}

    def configure_optimizers(self, config: dict[str, Any]) -> dict[str, tuple[torch.optim.Optimizer, Any]]:
        """One Adam over ``net`` with an exponential learning-rate decay per step."""
        cfg = {**self.default_train_config(), **config}
        self._train_config = cfg
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"])
        return {"model": (opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg["lr_decay"]))}

    def prepare_batch(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sRGB (B, 3, H, W) in [0, 1] -> L (B, 1, S, S) in [-1, 1] and the target chroma
        (B, 2, S/4, S/4) on the 256 levels: every 4th pixel's (`_downsample`), rounded."""
        rgb = _resize(_centre_square(rgb.float()), self.config["working_size"], 0.0, 1.0)
        lab = rgb_to_lab(rgb)
        L = (lab[:, :1] - L_CENTRE) / L_HALF_RANGE
        ab = quantize(ab_to_unit(_downsample(lab[:, 1:])))
        return L, ab

    def training_forwards(self) -> dict[str, TrainingForward]:
        return {"losses": TrainingForward(self.net.losses, [self.net])}

    def train_step(self, batch: Any, step: int, optimizers: dict[str, tuple[Any, Any]]) -> dict[str, float]:
        """One optimisation step on ``batch.rgb`` (B, 3, crop, crop); returns loss = bpd +
        aux_bpd and both parts (teacher-forced, in bits per dimension)."""
        opt, scheduler = optimizers["model"]
        cfg = self._train_config or self.default_train_config()
        self.net.train()
        with float32(batch.rgb.device):    # the batch and its targets in float32 under bf16 autocast too
            L, ab = self.prepare_batch(batch.rgb)
        bpd, aux_bpd = self.replica("losses")(L, ab)
        loss = bpd + aux_bpd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        if self.net_avg is not None:
            self._update_average(cfg["polyak_decay"])
        return {"loss": loss.item(), "bpd": bpd.item(), "aux_bpd": aux_bpd.item()}

    @torch.no_grad()
    def _update_average(self, decay: float) -> None:
        """average <- decay * average + (1 - decay) * weights (constant decay, as the authors')."""
        averages = dict(self.net_avg.named_buffers())
        for name, p in self.net.named_parameters():
            averages[name].lerp_(p, 1 - decay)

    def num_parameters(self) -> dict[str, int]:
        """Parameters of the embedding network, the decoder and both (the Polyak copy not counted)."""
        counts = {name: sum(p.numel() for p in getattr(self.net, name).parameters())
                  for name in ("embedding", "decoder")}
        counts["total"] = counts["embedding"] + counts["decoder"]
        return counts

    @classmethod
    def demo_config(cls) -> dict[str, Any]:
        """The demo's small configuration (1.1 M parameters, a*b* on a 16x16 grid of a 64 px working size).

        No Polyak-averaged copy of the weights: it would double the shipped file, and the
        demo's runs are short. The demo's model (``data/demo/models/royer2017.pt``) is
        this configuration trained by ``data/demo/train_models.py``, which gives the exact
        command and its time (14 minutes here, on one CPU thread beside another run).
        """
        return copy.deepcopy(DEMO_CONFIG)

    # --- checkpoints ----------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> None:
        """Write weights and ``params()`` (see `colorizers.checkpoint`)."""
        save_checkpoint(path, model_name=self.name, state_dict=self.state_dict(),
                        config=self.params(), extra=extra)


def _check_inference_values(c: dict[str, Any]) -> None:
    """ValueError naming the first inference setting in ``c`` whose value is not allowed."""
    if "mode" in c and c["mode"] not in MODES:
        raise ValueError(f"`mode` must be 'sample' or 'auxiliary', got {c['mode']!r}")
    if "sampler" in c and c["sampler"] not in SAMPLERS:
        raise ValueError(f"`sampler` must be 'cached' or 'naive', got {c['sampler']!r}")
    if "temperature" in c:
        t = c["temperature"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ValueError(f"`temperature` must be a finite number >= 0, got {t!r}")
    if "cuda_graph" in c and not isinstance(c["cuda_graph"], bool):
        raise ValueError(f"`cuda_graph` must be true or false, got {c['cuda_graph']!r}")


def _check_config(c: dict[str, Any]) -> None:
    """Raise ValueError naming the first invalid configuration value."""
    def positive_int(key: str) -> None:
        if not isinstance(c[key], int) or isinstance(c[key], bool) or c[key] < 1:
            raise ValueError(f"`{key}` must be a positive integer, got {c[key]!r}")

    for key in ("working_size", "embed_blocks", "embed_dilated_blocks", "embed_channels",
                "channels", "n_blocks", "kernel_size", "n_mix"):
        positive_int(key)
    if c["working_size"] % DOWNSCALE:
        raise ValueError(f"`working_size` must be a multiple of {DOWNSCALE}, got {c['working_size']}")
    if len(c["embed_widths"]) != 4 or not all(isinstance(w, int) and w > 0 for w in c["embed_widths"]):
        raise ValueError(f"`embed_widths` must be four positive integers, got {c['embed_widths']!r}")
    if not c["embed_dilations"] or not all(isinstance(d, int) and d > 0 for d in c["embed_dilations"]):
        raise ValueError(f"`embed_dilations` must be positive integers, got {c['embed_dilations']!r}")
    if c["embed_channels"] < PARAMS_PER_COMPONENT * c["n_mix"]:
        raise ValueError(f"`embed_channels` must be at least {PARAMS_PER_COMPONENT} * n_mix = "
                         f"{PARAMS_PER_COMPONENT * c['n_mix']}, got {c['embed_channels']}")
    if c["kernel_size"] % 2 != 1:
        raise ValueError(f"`kernel_size` must be odd, got {c['kernel_size']}")
    if not 0 <= c["dropout"] < 1:
        raise ValueError(f"`dropout` must be in [0, 1), got {c['dropout']!r}")
    _check_inference_values(c)
