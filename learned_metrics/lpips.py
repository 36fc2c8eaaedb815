"""LPIPS, the learned perceptual image distance of Zhang et al., CVPR 2018, version 0.1.

Zhang, Isola, Efros, Shechtman, Wang, "The Unreasonable Effectiveness of Deep Features
as a Perceptual Metric", CVPR 2018 (arXiv:1801.03924). The computation is that of the
authors' ``lpips`` package (richzhang/PerceptualSimilarity, BSD-2; ``lpips/lpips.py``,
``lpips/pretrained_networks.py``), which is what their released weights were fitted with:

    x in [-1, 1] (sRGB / 127.5 - 1)      two images of the same size, (N, 3, H, W)
    (x - shift) / scale                  lpips' ScalingLayer: shift (-.030, -.088, -.188),
                                         scale (.458, .448, .450); the v0.1 fix of v0.0
    backbone taps                        alex: relu1..relu5 of AlexNet
                                         vgg: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of VGG16
    f / (||f||_channels + 1e-10)         unit length along channels at every position
    (f0 - f1) ** 2                       per channel and position
    lin_k: 1x1 conv C_k -> 1, no bias    the learned, non-negative channel weights
    mean over positions, sum over taps   the distance, one number per image pair

The user supplies two weights files; nothing is downloaded:

- the linear layers: the ``lpips`` package's ``weights/v0.1/alex.pth`` or
  ``weights/v0.1/vgg.pth``, keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight``,
  each of shape (1, C_k, 1, 1) (index 0 of lpips' NetLinLayer is a dropout, which
  holds no weights and is off in eval mode);
- the backbone: torchvision's ImageNet weights for AlexNet (``alexnet-owt-7be5be79.pth``)
  or VGG16 (``vgg16-397923af.pth``), the ones lpips itself builds on. Only their
  ``features.N.weight`` / ``features.N.bias`` are used, at torchvision's own indices;
  their ``classifier.*`` entries are ignored.

Departures from the ``lpips`` package, none of which changes a distance: the model
returns one distance per pair, shape (N,), instead of (N, 1, 1, 1); the two images of a
pair go through the backbone as one batch; only the alex and vgg backbones of version
0.1 are offered (no squeeze, no v0.0, no spatial maps, no training). The backbone stops
at its last tap: torchvision's final max-pool holds no weights and LPIPS never uses it.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import LearnedMetricError

__all__ = ["LPIPS", "NETS", "load_lpips", "lpips_distance"]

SHIFT = (-0.030, -0.088, -0.188)  # lpips' ScalingLayer, per RGB channel, on inputs in [-1, 1]
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips' normalize_tensor: added to the channel norm, not under the square root


def _alexnet_features() -> nn.Sequential:
    """torchvision's ``AlexNet.features`` (the "one weird trick" variant) up to relu5, index 11."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),  # 0, 1: relu1
        nn.MaxPool2d(kernel_size=3, stride=2),  # 2
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(),  # 3, 4: relu2
        nn.MaxPool2d(kernel_size=3, stride=2),  # 5
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),  # 6, 7: relu3
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),  # 8, 9: relu4
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),  # 10, 11: relu5
    )


# torchvision's VGG configuration "D" (VGG16) without its final "M": 3x3 convs, padding 1, each followed by a ReLU.
_VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``VGG.features`` for VGG16 (no batch norm) up to relu5_3, index 29."""
    layers: list[nn.Module] = []
    channels = 3
    for entry in _VGG16_CFG:
        if entry == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(entry), kernel_size=3, padding=1), nn.ReLU()]
            channels = int(entry)
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class NetSpec:
    """One LPIPS backbone: how to build it, where it is tapped, and which files it needs."""

    features: Callable[[], nn.Sequential]
    taps: tuple[int, ...]  # indices into ``features`` whose outputs are compared (the ReLUs lpips slices after)
    channels: tuple[int, ...]  # channels at each tap: the input width of lin0..lin4
    min_size: int  # smallest height and width whose last tap is still at least 1x1
    lin_file: str  # the lpips package's file of linear layers
    backbone_file: str  # torchvision's ImageNet weights


NETS: dict[str, NetSpec] = {
    "alex": NetSpec(_alexnet_features, taps=(1, 4, 7, 9, 11), channels=(64, 192, 384, 256, 256), min_size=31,
                    lin_file="weights/v0.1/alex.pth", backbone_file="alexnet-owt-7be5be79.pth"),
    "vgg": NetSpec(_vgg16_features, taps=(3, 8, 15, 22, 29), channels=(64, 128, 256, 512, 512), min_size=16,
                   lin_file="weights/v0.1/vgg.pth", backbone_file="vgg16-397923af.pth"),
}


class NetLinLayer(nn.Module):
    """lpips' 1x1 linear layer, C -> 1 without bias, behind a dropout so that the weight sits at
    ``model.1``, the key of the released files."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _unit_normalize(features: torch.Tensor) -> torch.Tensor:
    """Each position's feature vector divided by its length (+ EPS), as lpips' normalize_tensor."""
    return features / (torch.sqrt(torch.sum(features ** 2, dim=1, keepdim=True)) + EPS)


class LPIPS(nn.Module):
    """LPIPS v0.1 with an AlexNet (``net="alex"``) or VGG16 (``net="vgg"``) backbone.

    State-dict keys are those of the two released files: ``features.N.weight/bias``
    (torchvision's) and ``lin0.model.1.weight`` ... ``lin4.model.1.weight`` (lpips').
    The ScalingLayer constants are non-persistent buffers, so they move with ``.to()``
    but are not expected in either file. Build it with weights through `load_lpips`.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in NETS:
            raise ValueError(f"Unknown net {net!r}; expected one of {', '.join(map(repr, NETS))}")
        spec = NETS[net]
        self.net = net
        self.taps = spec.taps
        self.min_size = spec.min_size
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.features = spec.features()
        for k, channels in enumerate(spec.channels):  # attributes, not a ModuleList: the files' keys are lin{k}.*
            self.add_module(f"lin{k}", NetLinLayer(channels))

    def lins(self) -> list[NetLinLayer]:
        """lin0 ... lin4, in tap order."""
        return [getattr(self, f"lin{k}") for k in range(len(self.taps))]

    def tap(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's activations at the taps, for scaled inputs (N, 3, H, W)."""
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                outputs.append(x)
        return outputs

    def forward(self, in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
        """Distances between image pairs (N, 3, H, W) with values in [-1, 1]; returns (N,)."""
        n = in0.shape[0]
        scaled = (torch.cat([in0, in1]) - self.shift) / self.scale  # (2N, 3, H, W): one pass for both sides
        total = torch.zeros(n, 1, device=in0.device, dtype=in0.dtype)
        for feats, lin in zip(self.tap(scaled), self.lins()):
            diff = (_unit_normalize(feats[:n]) - _unit_normalize(feats[n:])) ** 2  # (N, C_k, H_k, W_k)
            total = total + lin(diff).mean(dim=(2, 3))  # (N, 1)
        return total[:, 0]


def _few(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(map(repr, keys[:limit]))
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _read_state_dict(path: str | os.PathLike[str], expected: Mapping[str, tuple[int, ...]], *,
                     what: str, ignored_prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The file's tensors under exactly the ``expected`` keys and shapes, or a LearnedMetricError
    naming the file. ``what`` says which file was expected, for the message."""
    path = Path(path)
    if not path.is_file():
        raise LearnedMetricError(f"{path}: no such file; expected {what}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, text, unsafe pickle, zip of something else: all say the same to the user
        detail = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
        raise LearnedMetricError(f"{path}: cannot be read as a PyTorch weights file ({reason}); expected {what}") \
            from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):  # a checkpoint wrapping one
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise LearnedMetricError(f"{path}: holds a {type(obj).__name__}, not a state dict; expected {what}")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise LearnedMetricError(f"{path}: entry {key!r} holds a {type(value).__name__}, not a tensor, "
                                     f"so this is not a state dict; expected {what}")
        if ignored_prefix is None or not key.startswith(ignored_prefix):
            state[key] = value
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        problems = ([f"missing keys {_few(missing)}"] if missing else []) + \
                   ([f"unexpected keys {_few(unexpected)}"] if unexpected else [])
        raise LearnedMetricError(f"{path}: {'; '.join(problems)}; expected {what}")
    wrong = [f"{key!r} has shape {tuple(state[key].shape)}, expected {shape}"
             for key, shape in expected.items() if tuple(state[key].shape) != shape]
    if wrong:
        raise LearnedMetricError(f"{path}: {'; '.join(wrong[:5])}; expected {what}")
    not_float = [key for key, value in state.items() if not value.is_floating_point()]
    if not_float:
        raise LearnedMetricError(f"{path}: {_few(not_float)} hold {state[not_float[0]].dtype}, not floating-point "
                                 f"weights; expected {what}")
    return state


def load_lpips(lin_path: str | os.PathLike[str], backbone_path: str | os.PathLike[str], net: str = "alex",
               device: str | torch.device = "cpu") -> LPIPS:
    """LPIPS v0.1 built from the user's two weights files, in eval mode on ``device``.

    Parameters
    ----------
    lin_path
        The linear layers: the ``lpips`` package's ``weights/v0.1/alex.pth`` (or ``vgg.pth``
        for ``net="vgg"``), from richzhang/PerceptualSimilarity.
    backbone_path
        torchvision's ImageNet weights: ``alexnet-owt-7be5be79.pth`` for ``net="alex"``,
        ``vgg16-397923af.pth`` for ``net="vgg"``. Their ``classifier.*`` entries are ignored.
    net
        ``"alex"`` (the package's default, and the one its authors recommend as a metric)
        or ``"vgg"``.
    device
        Where the returned model lives; `lpips_distance` computes there.

    Both files are read with ``torch.load(..., map_location="cpu", weights_only=True)``,
    which runs no code from them, and loaded strictly: a file that is missing, unreadable,
    not a state dict, or has missing, unexpected or wrongly shaped entries raises a
    `LearnedMetricError` that names the file and what is wrong. A state dict wrapped under
    a ``"state_dict"`` key is accepted.
    """
    model = LPIPS(net)
    spec = NETS[net]
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    lins = _read_state_dict(
        lin_path, {k: s for k, s in shapes.items() if k.startswith("lin")},
        what=f"the LPIPS v0.1 linear layers for net={net!r} (the lpips package's {spec.lin_file})")
    backbone = _read_state_dict(
        backbone_path, {k: s for k, s in shapes.items() if k.startswith("features.")}, ignored_prefix="classifier.",
        what=f"torchvision's ImageNet weights for net={net!r} ({spec.backbone_file})")
    model.load_state_dict({**backbone, **lins}, strict=True)
    return model.to(device).eval()


def _images_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 sRGB (B, H, W, 3) -> float32 (B, 3, H, W) in [-1, 1]: x / 127.5 - 1, rounded to float32 once,
    as lpips' im2tensor does in float64 before its cast."""
    batch = torch.from_numpy(np.array(images)).to(device)  # a writable copy: the caller's array may be read-only
    return (batch.permute(0, 3, 1, 2).double() / 127.5 - 1.0).float()


def lpips_distance(model: LPIPS, real: np.ndarray, fake: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """The LPIPS distance between each real image and the fake one at the same index.

    Parameters
    ----------
    model
        From `load_lpips`. It computes on whatever device it is on: CUDA if the caller
        moved it there, else the CPU.
    real, fake
        uint8 sRGB images of the same shape (N, H, W, 3), H and W at least
        ``model.min_size`` (31 for alex, 16 for vgg); scaled to [-1, 1] as x / 127.5 - 1,
        lpips' own conversion.
    batch_size
        Pairs per forward pass; caps memory and does not change the results.

    Returns
    -------
    numpy.ndarray
        float64, shape (N,); 0 for identical images.

    Runs under ``torch.no_grad()`` in eval mode (dropout off), restoring the model's
    training flag afterwards.
    """
    for name, images in (("real", real), ("fake", fake)):
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            found = images.dtype if isinstance(images, np.ndarray) else type(images).__name__
            raise ValueError(f"`{name}` must be a uint8 numpy array of sRGB images, got {found}")
        if images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"`{name}` must have shape (N, H, W, 3), got {images.shape}")
    if real.shape != fake.shape:
        raise ValueError(f"`real` and `fake` must have the same shape, got {real.shape} and {fake.shape}")
    if min(real.shape[1:3]) < model.min_size:
        raise ValueError(f"images of {real.shape[1]}x{real.shape[2]} are too small for LPIPS with net={model.net!r}, "
                         f"which needs at least {model.min_size}x{model.min_size}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    device = next(model.parameters()).device
    distances = np.empty(len(real), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(real), batch_size):
                stop = start + batch_size
                batch = model(_images_tensor(real[start:stop], device), _images_tensor(fake[start:stop], device))
                distances[start:stop] = batch.double().cpu().numpy()
    finally:
        model.train(was_training)
    return distances
