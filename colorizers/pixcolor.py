"""PixColor, Guadarrama et al., "PixColor: Pixel Recursive Colorization" (BMVC 2017): ``pixcolor``.

Three networks, configured by default as the paper's Table 2:

* the conditioning network: a ResNet-101 up to block 3 (`colorizers.resnet`, stride 1 in
  the third stage) on the 224x224 gray image, then three 3x3 convolutions to 64 channels,
  giving a 28x28x64 feature map;
* a conditional gated PixelCNN (`colorizers.pixelcnn`) over the 28x28 chroma in YCbCr,
  each of Cr and Cb quantized to 32 bins, Cr before Cb at each pixel, trained by maximum
  likelihood with teacher forcing;
* the refinement network: the gray image and a 28x28 chroma (upsampled bilinearly) in,
  the chroma at 224x224 out; trained independently of the PixelCNN, on the ground-truth
  28x28 chroma with an L2 loss, and fed the PixelCNN's samples at test time.

Pipeline of `PixColor.colorize` (L* of any size in, a*b* of the same size out)::

    L* (B,1,H,W) --lab_to_rgb(L*, 0, 0), Y--> gray sRGB (B,3,H,W) --bilinear--> (B,3,224,224)
    --> conditioning net --> (B,64,28,28) --> PixelCNN sampling --> (B,2,28,28) bins (Cr, Cb)
    --> bin centres (Cb, Cr) + gray Y at 224 --> refinement net --> Cb, Cr (B,2,224,224)
    --bilinear--> (B,2,H,W), joined with the gray's Y --> YCbCr -> sRGB -> CIE Lab --> a*b*

The refinement network returns chroma only: the luminance of the result is the gray
image's, exactly (the platform then puts the source's own L* back).

Choices: every departure from the paper, and every detail it leaves open, with its reason.

Conditioning network

* Pretrained trunk (faithful only with ``trunk_weights``): the paper conditions on an
  ImageNet-pretrained ResNet-101. ``trunk_weights`` names a torchvision-layout state dict
  (e.g. torchvision's ResNet-101 ImageNet weights) that training starts the trunk from;
  without it the trunk trains from scratch, a departure from the paper that
  `configure_optimizers` warns about (``UserWarning``) and that the configuration records
  as ``trunk_init="scratch"`` (``"pretrained"`` otherwise), in `params` and so in every
  checkpoint and beside every colorization. The demo model is trained from scratch: no
  ImageNet weights are shipped, and 20 photos are its whole training set.
* Stride of stage 1: Table 2 gives "3 ResNet blocks 3x3 strides 2,1,1", a stride-2 first
  block after the 7x7 stride-2 stem. The trunk has torchvision's layout instead: a 3x3
  stride-2 max-pool after the stem, and stage 1 at stride 1. The feature sizes are the
  same (56x56 after stage 1 at 224); the reason is that torchvision's ImageNet weights
  were trained with the max-pool and load key for key only into that layout.
* Stride placement: torchvision's "ResNet v1.5" puts a block's stride on its 3x3 conv
  (Table 2 says "3x3 strides"; He et al.'s original ResNet strides the first 1x1 conv).
* Stage 3 at stride 1 (Table 2: "23 blocks stride 1"; torchvision: stride 2). No weight
  changes shape, so ImageNet weights still load, but that stage was pretrained at
  stride 2 and runs here without dilation (Table 2 names none), on 28x28 instead of
  14x14 features.
* After the trunk, Table 2's "3x Conv2D 3x3 s1 64": 3x3 conv + BatchNorm + ReLU twice,
  then a plain 3x3 conv (Table 2 names no normalisation or activation). The gray image
  is normalised with the ImageNet mean and deviation that torchvision's weights expect.
* "Gradient multiplier engaged at 100,000 steps" (Table 2) has two readings:
  (a) the multiplier on the trunk's gradient is 0 until step 100,000 and 1 after: the
  pretrained trunk is frozen while the randomly initialised networks above it learn,
  and then fine-tuned with them ("engaged" = the trunk's gradient is switched on);
  (b) the trunk trains normally until step 100,000 and from then on its gradient is
  scaled by some multiplier (e.g. below 1, to slow its fine-tuning).
  Implemented: (a), as train config ``trunk_frozen_steps`` (100,000; the trunk is also
  kept in eval mode, so its BatchNorm statistics stay ImageNet's while frozen). Why:
  protecting pretrained features from the large early gradients of freshly initialised
  layers is the usual purpose of such a schedule, and reading (b) needs a multiplier
  value that the paper does not give. A trunk trained from scratch has no features to
  protect, so it trains from step 0 and the schedule does not apply; the warning above
  says so, and ``trunk_init="scratch"`` records it.

Data and targets

* Gray input: the gray the model sees at test time is the sRGB gray of the source's L*
  (the BT.601 Y of ``lab_to_rgb(L*, 0, 0)`` in each of R, G, B), replicated into Table
  2's three input channels; training derives it the same way from each photo's L*, and
  the targets are the photo's own Cb, Cr (full-range BT.601 YCbCr, Cb, Cr in [-0.5,
  0.5]). The paper gives neither the YCbCr variant nor how the gray is made; this way
  the gray at training and at test time come from the same L*.
* Training images are centre-cropped to a square and resized (bilinear, antialiased) to
  the working size; at test time an image of any shape is resized (not cropped) to the
  224x224 square and the chroma resized back, so nothing is cut off (the paper does not
  say how it handles other shapes).
* Chroma grid: Cb and Cr of the working-size image averaged over 8x8 cells (the
  conditioning network's output stride), quantized to ``bins`` equal cells of
  [-0.5, 0.5]; a bin stands for its centre (the paper gives neither the downsampling
  nor the bin edges).
* "Colorness threshold" 0.05 (Table 2, undefined there): read as the mean chroma
  magnitude sqrt(Cb^2 + Cr^2) of a photo, with Cb and Cr scaled to [-1, 1] (the scale the
  PixelCNN sees); photos below it are left out of both losses, so nearly gray photos
  teach nothing. (On the 20 demo training photos it ranges from about 0.05 to 0.63.)

PixelCNN

* Van den Oord et al.'s gated PixelCNN with vertical and horizontal stacks (no blind
  spot); Table 2's "masked Conv2D 7x7" input layer is the two stacks' input convolutions,
  whose sum is exactly a 7x7 mask-A convolution. The conditioning map is added to every
  gated block's gates through 1x1 convolutions (Table 2 does not say how it enters).
  Inputs are bin centres scaled to [-1, 1]. Cr is modelled before Cb at each pixel, as
  the paper's factorisation p(y_i,r | y_<i, x) p(y_i,b | y_i,r, y_<i, x).

Refinement network

* Table 2's layers, each 3x3/5x5 conv followed by BatchNorm and ReLU (Table 2 names
  none); the first bilinear upsampling is x8 (7 -> 56 for 224), the second x4, so the
  output is chroma at the working size (Table 2 gives no factors). Input: Y and the
  upsampled Cb, Cr, each scaled to [-1, 1]; output halved into YCbCr units. It outputs
  chroma only; the result's luminance is the gray image's.
* Trained on the *quantized* ground-truth 28x28 chroma (the bin centres), the values it
  is fed at test time; the paper says "ground-truth chroma" without saying whether
  quantized.

Training

* Adam with beta1 0.9 (Table 2) and beta2 0.999, epsilon 1e-8 (PyTorch's defaults; not
  given); lr 3e-4 constant (no schedule is given); 360,000 steps of batch 64.
* Batch 64 on one device, where the paper ran 8 GPUs x 8 synchronously: the gradient is
  the same, but BatchNorm sees all 64 images rather than (presumably) 8 per replica.
* Both networks train in the same step on the same batch, each with its own loss and
  Adam; no gradient crosses between them, so they are trained independently as the
  paper says, only in one run.
* Initialisation: He (Kaiming) normal for the convolutions followed by BatchNorm, as
  torchvision's ResNet; PyTorch's defaults in the PixelCNN. Table 2's truncated normal
  of standard deviation 0.1 would saturate the gates of a PixelCNN without
  normalisation.

Sampling (inference settings, `PixColor.inference_options`)

* Gumbel-max with the logits divided by ``temperature`` (1, the default, samples the
  model's distribution; the paper does not name a temperature); all noise is drawn per
  image from its own generator before sampling (`colorizers.pixelcnn.gumbel_noise`), so
  an image's sample depends on its seed alone. With ``generator=None`` the global RNG is
  used. The cached sampler (Ramachandran et al. 2017; not in the paper) is the default;
  the naive one (``sampler="naive"``) draws the same samples (in float32, up to a rare
  bin where rounding breaks a near-tie differently) with 1,568 passes of the whole
  PixelCNN. ``tests/test_pixelcnn.py`` checks that both draw from the model's
  distribution (total variation against its exact per-pixel probabilities).
* The result is converted from YCbCr to CIE a*b* for the platform (see
  `colorizers.base`).

Default configuration (`PixColor()`, Table 2): 62,984,066 parameters: the conditioning
network 28,199,296 (its ResNet-101 trunk 27,535,424), the PixelCNN 1,987,328 and the
refinement network 32,797,442 (`PixColor.num_parameters`).

References
----------
S. Guadarrama, R. Dahl, D. Bieber, M. Norouzi, J. Shlens, K. Murphy, "PixColor: Pixel
Recursive Colorization", BMVC 2017.
A. van den Oord, N. Kalchbrenner, O. Vinyals, L. Espeholt, A. Graves, K. Kavukcuoglu,
"Conditional Image Generation with PixelCNN Decoders", NeurIPS 2016.
P. Ramachandran et al., "Fast Generation for Convolutional Autoregressive Models", ICLR
2017 workshop.
"""
from __future__ import annotations

import math
import numbers
import os
import warnings
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import save_checkpoint
from .color import lab_to_rgb, rgb_to_lab, rgb_to_ycbcr, ycbcr_to_rgb
from .pixelcnn import PixelCNN, bin_centres, gumbel_noise, nll
from .quantization import float32
from .registry import register
from .resnet import ResNetTrunk, load_torchvision_weights
from . import distributed
from .training import TrainableColorizer, TrainingForward

__all__ = ["PixColor", "ConditioningNetwork", "RefinementNetwork", "REFINEMENT_LAYERS"]

STRIDE = 8                                   # working size / chroma grid size
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAMPLERS = ("cached", "naive")
TRUNK_INITS = ("scratch", "pretrained")

#: Table 2's refinement network: (output channels at width 64, kernel, stride) per conv,
#: ("up", factor) for bilinear upsampling; a final 1x1 conv to 2 channels follows. The
#: convs reduce the side 32-fold, the upsamplings restore it (224: 7 -> 56 -> 224).
REFINEMENT_LAYERS: list[tuple] = [
    (64, 3, 2),
    (128, 3, 1), (128, 3, 2),
    (256, 3, 1), (256, 3, 2),
    (512, 3, 1), (512, 3, 1),
    (256, 3, 1),
    (512, 3, 2), (512, 3, 1), (512, 3, 2), (512, 3, 1),
    (1024, 5, 1),
    (512, 3, 1),
    (128, 3, 1), (128, 3, 1),
    ("up", 8),
    (64, 3, 1), (64, 3, 1),
    ("up", 4),
    (32, 3, 1), (32, 3, 1),
]


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConditioningNetwork(nn.Module):
    """ResNet trunk, then three 3x3 convs: (B, 3, S, S) gray sRGB -> (B, out, S/8, S/8)."""

    def __init__(self, layers: Sequence[int], width: int, out_channels: int) -> None:
        super().__init__()
        self.trunk = ResNetTrunk(layers, width)
        self.head = nn.Sequential(
            _conv_bn_relu(self.trunk.out_channels, out_channels),
            _conv_bn_relu(out_channels, out_channels),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, gray: torch.Tensor, *, train_trunk: bool = True) -> torch.Tensor:
        x = (gray - self.mean) / self.std
        if train_trunk:
            features = self.trunk(x)                                   # (B, 16w, S/8, S/8)
        else:                                                          # frozen: no gradient, fixed BN statistics
            was_training = self.trunk.training
            self.trunk.eval()
            try:
                with torch.no_grad():
                    features = self.trunk(x)
            finally:
                self.trunk.train(was_training)
        return self.head(features)                                     # (B, out, S/8, S/8)


class RefinementNetwork(nn.Module):
    """Table 2's refinement network: Y (B,1,S,S) and a low-resolution Cb, Cr -> Cb, Cr (B,2,S,S).

    ``width`` scales every layer's channels (64 is the paper's).
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for spec in REFINEMENT_LAYERS:
            if spec[0] == "up":
                layers.append(nn.Upsample(scale_factor=spec[1], mode="bilinear", align_corners=False))
                continue
            cout, kernel, stride = spec
            cout = max(1, cout * width // 64)
            layers.append(_conv_bn_relu(cin, cout, kernel, stride))
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.out = nn.Conv2d(cin, 2, 1)

    def forward(self, y: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(chroma, size=y.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([2 * y - 1, 2 * up], dim=1)                     # (B, 3, S, S) in about [-1, 1]
        return self.out(self.layers(x)) / 2                            # (B, 2, S, S) Cb, Cr


def _resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    size = (size, size) if isinstance(size, int) else size
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    # float32: antialiased resizing has no bfloat16 kernel on the CPU, and under autocast
    # the input may be bfloat16.
    return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)


def _centre_square(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top:top + s, left:left + s]


def gray_of(L: torch.Tensor) -> torch.Tensor:
    """The sRGB gray (B, 3, H, W) of L* (B, 1, H, W): R = G = B = the BT.601 Y of ``lab_to_rgb(L*, 0, 0)``."""
    rgb = lab_to_rgb(torch.cat([L, torch.zeros_like(L).expand(-1, 2, -1, -1)], dim=1))
    return rgb_to_ycbcr(rgb)[:, :1].expand(-1, 3, -1, -1)


def compose_ycbcr(y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
    """Join luminance Y (B, 1, H, W) and chroma (B, 2, H, W) into YCbCr; Y is kept exactly."""
    return torch.cat([y, cbcr], dim=1)


@register("pixcolor")
class PixColor(TrainableColorizer):
    """PixColor (Guadarrama et al., BMVC 2017); see the module docstring.

    Parameters
    ----------
    image_size : working side (224); a multiple of 32. The chroma grid is ``image_size / 8``.
    trunk_layers, trunk_width : bottleneck blocks per stage and base width of the ResNet
        trunk ((3, 4, 23) and 64: ResNet-101).
    cond_channels : channels of the conditioning map (64).
    pixelcnn_channels, pixelcnn_blocks : width and gated blocks of the PixelCNN (64, 10).
    first_kernel, block_kernel : its input-layer and gated-block kernel sizes (7, 5).
    hidden : channels of its masked 1x1 head (1024).
    bins : quantization bins per chroma channel (32).
    refine_width : base width of the refinement network (64).
    trunk_weights : a torchvision-layout ResNet state dict file (e.g. torchvision's
        ResNet-101 ImageNet weights) that the trunk starts from when training begins
        (`configure_optimizers` reads it, also when a run resumes, before the checkpoint's
        weights replace it); None trains it from scratch, unlike the paper (a warning at
        training time). A trained checkpoint holds the weights, so colorizing never reads
        the file: the path is provenance.
    trunk_init : provenance of the trunk's starting weights, recorded in `params`:
        ``"pretrained"`` (from ``trunk_weights`` or `load_trunk_weights`) or ``"scratch"``
        (the paper's gradient-multiplier schedule then does not apply). None (default)
        derives it from ``trunk_weights``, which is also how a checkpoint written before
        this setting existed is read; ``"scratch"`` together with ``trunk_weights`` is
        refused.
    temperature, sampler, cuda_graph : the inference settings (`inference_options`).
    """

    needs_checkpoint = True
    inference_options = {
        "temperature": "float > 0, default 1: divides the PixelCNN's logits when sampling (1 samples the model; "
                       "lower is more conservative)",
        "sampler": "'cached' (default) or 'naive': the cached sampler, or one PixelCNN pass per pixel and channel "
                   "(the same samples, far slower)",
        "cuda_graph": "true (default) or false: on CUDA, replay the cached sampler's row step as a CUDA graph",
    }

    def __init__(
        self,
        *,
        image_size: int = 224,
        trunk_layers: Sequence[int] = (3, 4, 23),
        trunk_width: int = 64,
        cond_channels: int = 64,
        pixelcnn_channels: int = 64,
        pixelcnn_blocks: int = 10,
        first_kernel: int = 7,
        block_kernel: int = 5,
        hidden: int = 1024,
        bins: int = 32,
        refine_width: int = 64,
        trunk_weights: str | None = None,
        trunk_init: str | None = None,
        temperature: float = 1.0,
        sampler: str = "cached",
        cuda_graph: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(image_size, int) or image_size < 32 or image_size % 32:
            raise ValueError(f"`image_size` must be a positive multiple of 32, got {image_size!r}")
        self.check_inference_values({"temperature": temperature, "sampler": sampler, "cuda_graph": cuda_graph})
        if trunk_init is None:
            trunk_init = "scratch" if trunk_weights is None else "pretrained"
        if trunk_init not in TRUNK_INITS:
            raise ValueError(f"`trunk_init` must be 'scratch' or 'pretrained', got {trunk_init!r}")
        if trunk_init == "scratch" and trunk_weights is not None:
            raise ValueError(f"`trunk_init` 'scratch' contradicts `trunk_weights` {trunk_weights!r}")
        if refine_width < 1:
            raise ValueError(f"`refine_width` must be positive, got {refine_width!r}")
        self.config: dict[str, Any] = {
            "image_size": image_size, "trunk_layers": [int(n) for n in trunk_layers],
            "trunk_width": trunk_width, "cond_channels": cond_channels,
            "pixelcnn_channels": pixelcnn_channels, "pixelcnn_blocks": pixelcnn_blocks,
            "first_kernel": first_kernel, "block_kernel": block_kernel, "hidden": hidden,
            "bins": bins, "refine_width": refine_width,
            "trunk_weights": None if trunk_weights is None else str(trunk_weights),
            "trunk_init": trunk_init,
            "temperature": float(temperature),
            "sampler": sampler, "cuda_graph": bool(cuda_graph),
        }
        self.image_size, self.grid, self.bins = image_size, image_size // STRIDE, bins
        self.conditioning = ConditioningNetwork(trunk_layers, trunk_width, cond_channels)
        self.pixelcnn = PixelCNN(
            channels=pixelcnn_channels, blocks=pixelcnn_blocks, first_kernel=first_kernel,
            block_kernel=block_kernel, hidden=hidden, bins=bins, cond_channels=cond_channels,
        )
        self.refinement = RefinementNetwork(refine_width)
        self._train_config: dict[str, Any] = {}

    def params(self) -> dict[str, Any]:
        """The configuration: architecture, trunk provenance (``trunk_weights``, ``trunk_init``), inference settings."""
        return dict(self.config)

    @classmethod
    def check_inference_values(cls, settings: dict[str, Any]) -> None:
        """ValueError naming an inference setting whose value is not allowed (names: `check_inference_options`)."""
        cls.check_inference_options(settings)
        if "temperature" in settings:
            t = settings["temperature"]
            if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 < t < math.inf:
                raise ValueError(f"`temperature` must be a positive number, got {t!r}")
        if "sampler" in settings and settings["sampler"] not in SAMPLERS:
            raise ValueError(f"`sampler` must be 'cached' or 'naive', got {settings['sampler']!r}")
        if "cuda_graph" in settings and not isinstance(settings["cuda_graph"], bool):
            raise ValueError(f"`cuda_graph` must be true or false, got {settings['cuda_graph']!r}")

    @classmethod
    def demo_config(cls) -> dict[str, Any]:
        """The demo's small configuration (0.93 M parameters, a 16x16 chroma grid, 128 px).

        The refinement network at 1/8 of Table 2's widths: at 1/4 it alone has 2 M
        parameters (8 MiB). The demo's model (``data/demo/models/pixcolor.pt``) is this
        configuration trained by ``data/demo/train_models.py``, which gives the exact
        command and its time (10 minutes here, on one CPU thread beside another run).
        """
        return {"image_size": 128, "trunk_layers": [1, 1, 1], "trunk_width": 16, "cond_channels": 32,
                "pixelcnn_channels": 32, "pixelcnn_blocks": 4, "first_kernel": 7, "block_kernel": 5,
                "hidden": 128, "bins": 32, "refine_width": 8}

    def num_parameters(self) -> dict[str, int]:
        """Parameters of each network and in all."""
        counts = {name: sum(p.numel() for p in getattr(self, name).parameters())
                  for name in ("conditioning", "pixelcnn", "refinement")}
        counts["trunk"] = sum(p.numel() for p in self.conditioning.trunk.parameters())
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    # --- colour conversions ------------------------------------------------------------

    def quantize(self, cbcr: torch.Tensor) -> torch.Tensor:
        """Cb, Cr (B, 2, h, w) in [-0.5, 0.5] -> bins (B, 2, h, w), channel 0 = Cr, 1 = Cb."""
        k = ((cbcr + 0.5) * self.bins).floor().clamp(0, self.bins - 1).long()
        return k.flip(1)

    def dequantize(self, bins: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Bins (B, 2, h, w) in PixelCNN order (Cr, Cb) -> bin centres Cb, Cr in YCbCr units."""
        centres = bin_centres(self.bins, dtype=dtype, device=bins.device) / 2
        return centres[bins.flip(1)]

    # --- colorizing ----------------------------------------------------------------------

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
        L : (B, 1, H, W) CIE L* in [0, 100].
        n_samples : colorizations per image; image i's come from ``generator[i]``, in
            order, so sample 0 is what `colorize` returns for the same generator.
        generator : one seeded generator per image (None: the global RNG).
        temperature, sampler : override the configured ones for this call.

        Returns
        -------
        (B, n_samples, 2, H, W) a*b*, in L's dtype.
        """
        if n_samples < 1:
            raise ValueError(f"`n_samples` must be at least 1, got {n_samples}")
        B, _, H, W = L.shape
        temperature = self.config["temperature"] if temperature is None else temperature
        sampler = self.config["sampler"] if sampler is None else sampler
        self.check_inference_values({"temperature": temperature, "sampler": sampler})
        dtype = next(self.parameters()).dtype
        was_training = self.training
        self.eval()
        try:
            gray = gray_of(L.to(dtype))                                # (B, 3, H, W)
            gray_s = _resize(gray, self.image_size).clamp(0, 1)        # (B, 3, S, S)
            cond = self.conditioning(gray_s)                           # (B, Cc, g, g)
            cond = cond.repeat_interleave(n_samples, 0)                # (B n, Cc, g, g)
            noise = gumbel_noise(generator, B, (self.grid, self.grid, 2, self.bins),
                                 n_samples=n_samples, device=L.device, dtype=dtype)
            bins = self.pixelcnn.sample(cond, noise, temperature=temperature,
                                        cached=sampler == "cached", cuda_graph=self.config["cuda_graph"])
            chroma = self.refinement(gray_s[:, :1].repeat_interleave(n_samples, 0),
                                     self.dequantize(bins, dtype))     # (B n, 2, S, S)
            ab = self.render_ab(gray[:, :1].repeat_interleave(n_samples, 0), _resize(chroma, (H, W)))
        finally:
            self.train(was_training)
        return ab.unflatten(0, (B, n_samples)).to(L.dtype)             # (B, n, 2, H, W)

    @staticmethod
    def render_ab(y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        """a*b* of the image with luminance Y (B,1,H,W) and chroma Cb, Cr (B,2,H,W)."""
        rgb = ycbcr_to_rgb(compose_ycbcr(y, cbcr)).clamp(0, 1)
        return rgb_to_lab(rgb)[:, 1:]

    # --- training (the protocol of colorizers.training) -----------------------------------

    @classmethod
    def default_train_config(cls) -> dict[str, Any]:
        """Table 2's recipe: Adam (beta1 0.9), lr 3e-4, batch 64, 360,000 steps, colorness 0.05.

        ``crop`` 224: the trainer's random crops have Table 2's working size (crops of
        another size are resized to ``image_size`` by `prepare_batch`).
        ``trunk_frozen_steps``: steps during which a pretrained trunk gets no gradient
        (Table 2's gradient multiplier, engaged at 100,000 steps; reading (a) of the module
        docstring). A trunk from scratch trains from step 0.
        """
        return {"lr": 3e-4, "betas": [0.9, 0.999], "batch_size": 64, "steps": 360_000, "crop": 224,
                "colorness_threshold": 0.05, "trunk_frozen_steps": 100_000}

    def configure_optimizers(self, config: dict[str, Any]) -> dict[str, tuple[torch.optim.Optimizer, Any]]:
        """Two Adams, trained independently: the conditioning net with the PixelCNN, and the refinement net.

        Training starts here, so the trunk is loaded from ``trunk_weights`` (when the model
        has them) before the optimizers are made. Without them the trunk trains from
        scratch, unlike the paper: a UserWarning says so (``trunk_init`` records it).
        """
        cfg = {**self.default_train_config(), **config}
        self._train_config = cfg
        if self.config["trunk_weights"]:
            self.load_trunk_weights(self.config["trunk_weights"])
        elif self.config["trunk_init"] == "scratch":
            warnings.warn(
                "pixcolor: TRAINING THE RESNET TRUNK FROM SCRATCH (no trunk_weights). The paper conditions on an "
                "ImageNet-pretrained ResNet-101 and freezes it for the first trunk_frozen_steps "
                f"({cfg['trunk_frozen_steps']:,}); a trunk from scratch trains from step 0 instead. The checkpoint "
                "and every colorization record trunk_init='scratch'. For the paper's recipe pass "
                "--config trunk_weights=PATH (torchvision's resnet101 state dict).",
                UserWarning, stacklevel=2)
        adam = dict(lr=cfg["lr"], betas=tuple(cfg["betas"]))
        pixelcnn = [*self.conditioning.parameters(), *self.pixelcnn.parameters()]
        return {
            "pixelcnn": (torch.optim.Adam(pixelcnn, **adam), None),
            "refinement": (torch.optim.Adam(self.refinement.parameters(), **adam), None),
        }

    def load_trunk_weights(self, source: str | os.PathLike[str] | dict[str, torch.Tensor]) -> None:
        """Start the trunk from torchvision-layout ResNet weights (`colorizers.resnet.load_torchvision_weights`).

        Recorded in `params`: ``trunk_init`` becomes ``"pretrained"`` and, for a file,
        ``trunk_weights`` its path (a state dict passed in memory leaves no path).
        """
        load_torchvision_weights(self.conditioning.trunk, source)
        self.config["trunk_init"] = "pretrained"
        if isinstance(source, (str, os.PathLike)):
            self.config["trunk_weights"] = str(source)

    def prepare_batch(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        """sRGB photos (B, 3, H, W) in [0, 1] -> what the networks see and predict.

        Returns gray (B, 3, S, S), y (B, 1, S, S), cbcr (B, 2, S, S), the 28x28 targets
        ``bins`` (B, 2, g, g; Cr, Cb) and their centres ``cbcr_low`` (B, 2, g, g; Cb, Cr).
        """
        rgb = _resize(_centre_square(rgb.float()), self.image_size).clamp(0, 1)
        dtype = next(self.parameters()).dtype
        gray = gray_of(rgb_to_lab(rgb)[:, :1]).to(dtype)
        cbcr = rgb_to_ycbcr(rgb)[:, 1:].to(dtype)
        bins = self.quantize(F.avg_pool2d(cbcr, STRIDE))
        return {"gray": gray, "y": gray[:, :1], "cbcr": cbcr, "bins": bins,
                "cbcr_low": self.dequantize(bins, dtype)}

    def predict(self, gray: torch.Tensor, bins: torch.Tensor, y: torch.Tensor, cbcr_low: torch.Tensor, *,
                train_trunk: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced: the PixelCNN's logits for the true ``bins`` and the refinement's Cb, Cr (B, 2, S, S)."""
        cond = self.conditioning(gray, train_trunk=train_trunk)
        x = bin_centres(self.bins, dtype=cond.dtype, device=cond.device)[bins]
        return self.pixelcnn(x, cond), self.refinement(y, cbcr_low)

    def training_forwards(self) -> dict[str, TrainingForward]:
        """Both networks in one forward (their parameters are disjoint and their losses are summed
        into one backward). Some parameters get no gradient, which DDP is told: the last gated
        block's conditioning of its vertical stack (that stack's last output feeds nothing), and a
        pretrained trunk during its frozen steps."""
        return {"networks": TrainingForward(self.predict, [self.conditioning, self.pixelcnn, self.refinement],
                                            unused_parameters=True)}

    def train_step(self, batch: Any, step: int, optimizers: dict[str, tuple[Any, Any]]) -> dict[str, float]:
        """One step of both networks on ``batch.rgb``, each with its own loss and optimizer.

        The two losses are summed into one backward pass: the networks share no
        parameter, so each gets exactly its own loss's gradient. Each loss is a mean
        over the photos of the global batch above the colorness threshold (counted over
        every rank); when there is none, nothing is updated.

        Returns ``loss`` (nll + refine_l2), ``nll`` (nats per chroma value, teacher-forced),
        ``bits_per_dim``, ``refine_l2`` (mean squared Cb, Cr error) and ``kept`` (the
        fraction of photos above the colorness threshold).
        """
        cfg = self._train_config or self.default_train_config()
        self.train()
        # float32 under bf16 autocast too: the colour conversions' 3x3 einsums would be lowered
        with torch.no_grad(), float32(batch.rgb.device):
            data = self.prepare_batch(batch.rgb)
            colorness = (2 * data["cbcr"]).square().sum(1).sqrt().flatten(1).mean(1)   # (B,)
            keep = (colorness >= cfg["colorness_threshold"]).to(data["cbcr"].dtype)
        kept_everywhere = distributed.all_sum(keep.sum().float())         # the global batch's count
        divisor = distributed.divisor_of_total(kept_everywhere)
        train_trunk = not (self.config["trunk_init"] == "pretrained" and step < cfg["trunk_frozen_steps"])

        def weighted(per_image: torch.Tensor) -> torch.Tensor:
            return (per_image * keep).sum() / divisor

        learn = bool(kept_everywhere > 0)      # the same on every rank: all update, or none
        with torch.set_grad_enabled(learn):
            logits, chroma = self.replica("networks")(data["gray"], data["bins"], data["y"], data["cbcr_low"],
                                                      train_trunk=train_trunk)
            nll_loss = weighted(nll(logits.float(), data["bins"]))             # losses in float32
            l2_loss = weighted((chroma.float() - data["cbcr"]).square().flatten(1).mean(1))
        if learn:
            for opt, _ in optimizers.values():
                opt.zero_grad(set_to_none=True)
            (nll_loss + l2_loss).backward()
            for opt, scheduler in optimizers.values():
                opt.step()
                if scheduler is not None:
                    scheduler.step()
        nll_value, l2_value = nll_loss.item(), l2_loss.item()
        return {"loss": nll_value + l2_value, "nll": nll_value, "bits_per_dim": nll_value / math.log(2),
                "refine_l2": l2_value, "kept": float(keep.sum()) / len(keep)}

    # --- checkpoints ----------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> None:
        """Write weights and ``params()`` (see `colorizers.checkpoint`)."""
        save_checkpoint(path, model_name=self.name, state_dict=self.state_dict(),
                        config=self.params(), extra=extra)
