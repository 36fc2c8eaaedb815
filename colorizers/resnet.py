"""The ResNet trunk of PixColor's conditioning network, in torchvision's layout.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition" (CVPR 2016):
bottleneck blocks (1x1, 3x3, 1x1 with expansion 4), the stride on the 3x3 conv as
torchvision's "ResNet v1.5" puts it. Only the stem and the first three stages are
built (PixColor's "ResNet-101 up to block 3", Table 2 of Guadarrama et al. 2017), and
the third stage keeps stride 1, so a 224x224 input gives 28x28 features.

Departures from Table 2's trunk, for torchvision's weights (PixColor's docstring lists
them with the rest): Table 2's first stage has strides 2,1,1 (a stride-2 first block
after the 7x7 stride-2 stem); here, as in torchvision, a 3x3 stride-2 max-pool follows
the stem and the first stage has stride 1, the same 56x56 at 224 in. The third stage
has stride 1 (torchvision's has 2), without dilation.

Modules carry torchvision's names (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer3.22.downsample.1``), so `load_torchvision_weights` copies a torchvision
``resnet101`` state dict into the trunk key for key. Stride 1 instead of 2 in
``layer3.0`` changes no weight shape.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import torch
from torch import nn

from .checkpoint import CheckpointError

__all__ = ["Bottleneck", "ResNetTrunk", "load_torchvision_weights"]

#: keys of a torchvision ResNet state dict that the trunk does not use
IGNORED_PREFIXES = ("layer4.", "fc.")


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck``: 1x1 reduce, 3x3 (strided), 1x1 expand, identity or projection."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetTrunk(nn.Module):
    """Stem and stages 1-3 of a bottleneck ResNet; output stride 8.

    Parameters
    ----------
    layers : blocks per stage; ``(3, 4, 23)`` is ResNet-101, ``(3, 4, 6)`` ResNet-50.
    width : channels of the stem and of stage 1's bottleneck (64 in torchvision);
        stages 2 and 3 use twice and four times as many, and every block outputs
        4x its bottleneck width, so the trunk outputs ``16 * width`` channels.

    Shapes: (B, 3, S, S) -> (B, 16 * width, S / 8, S / 8).
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 23), width: int = 64) -> None:
        super().__init__()
        if len(layers) != 3 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be three positive block counts, got {list(layers)}")
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        self.out_channels = 16 * width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = width
        stages = []
        # strides: 2 before stage 1 (the max-pool, for Table 2's stride-2 first block), 2 in stage 2, 1 in stage 3
        for planes, blocks, stride in zip((width, 2 * width, 4 * width), layers, (1, 2, 1)):
            stage = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(int(blocks) - 1)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3 = stages
        for m in self.modules():                         # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))          # (B, w, S/4, S/4)
        x = self.layer1(x)                                             # (B, 4w, S/4, S/4)
        x = self.layer2(x)                                             # (B, 8w, S/8, S/8)
        return self.layer3(x)                                          # (B, 16w, S/8, S/8)


def load_torchvision_weights(
    trunk: ResNetTrunk, source: str | os.PathLike[str] | Mapping[str, torch.Tensor]
) -> None:
    """Copy a torchvision-layout ResNet state dict into ``trunk``.

    ``source`` is a state dict or the path of a file holding one (read with
    ``torch.load(weights_only=True)``), e.g. torchvision's ``resnet101`` weights.
    Keys under ``layer4.`` and ``fc.`` are ignored. Every other key must belong to
    the trunk and every trunk parameter and buffer must be present with its shape
    (``num_batches_tracked`` may be absent, as in older files), so a file of another
    depth or width is refused rather than half loaded.

    Raises
    ------
    CheckpointError
        naming the file and the offending keys.
    """
    where = "state dict" if isinstance(source, Mapping) else str(source)
    if isinstance(source, Mapping):
        state = dict(source)
    else:
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"ResNet weights file not found: {source}") from None
        except Exception as exc:
            raise CheckpointError(
                f"{source} is not a readable torch state dict ({type(exc).__name__}: {exc})"
            ) from exc
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{source} holds a {type(state).__name__}, not a state dict")
    used = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
    own = trunk.state_dict()
    unexpected = sorted(set(used) - set(own))
    missing = sorted(k for k in set(own) - set(used) if not k.endswith("num_batches_tracked"))
    if unexpected or missing:
        raise CheckpointError(
            f"{where} does not fit the trunk (layers {_layers(trunk)}, width {trunk.conv1.out_channels}): "
            f"missing {_few(missing)}, unexpected {_few(unexpected)}"
        )
    wrong = [f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in used.items()
             if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise CheckpointError(f"{where} has tensors of other shapes: {_few(wrong)}")
    trunk.load_state_dict(used, strict=False)


def _layers(trunk: ResNetTrunk) -> list[int]:
    return [len(trunk.layer1), len(trunk.layer2), len(trunk.layer3)]


def _few(items: list[str], n: int = 5) -> str:
    if not items:
        return "none"
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more
