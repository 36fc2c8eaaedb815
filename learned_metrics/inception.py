"""The Inception v3 of FID (Heusel et al. 2017), as pytorch-fid computes it, on weights the user supplies.

Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter, "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium", NeurIPS 2017 (arXiv:1706.08500). FID compares
the 2048-d "pool3" features of TensorFlow's Inception v3 graph of 2015-12-05; published FIDs
are comparable only when computed with that network. The features here are those of
pytorch-fid (mseitzer/pytorch-fid, Apache-2.0; ``src/pytorch_fid/inception.py``:
``fid_inception_v3`` and its FIDInceptionA/C/E_1/E_2 blocks), whose port of that graph is
the de-facto reference in PyTorch:

    uint8 sRGB (N, H, W, 3) / 255        float32 in [0, 1], as torchvision's ToTensor
    bilinear resize to 299 x 299         F.interpolate, align_corners=False, no antialiasing
    2 x - 1                              [-1, 1], the range of the TensorFlow graph
    Conv2d_1a_3x3 ... Mixed_7c           torchvision's Inception3 blocks, with the graph's pooling:
                                         3x3 average pools that skip the zero padding
                                         (count_include_pad=False) in Mixed_5b-5d, 6b-6e, 7b,
                                         and a 3x3 *max* pool in Mixed_7c's pool branch
    adaptive average pool                (N, 2048): the features FID takes its statistics of

The weights are pytorch-fid's released FID Inception weights, ``pt_inception-2015-12-05-6726825d.pth``
(a port of TensorFlow's 2015-12-05 Inception graph, published with pytorch-fid's releases as
"fid_weights"); the user downloads that file and passes its path to `load_inception`. Nothing
is downloaded here. Its state dict is that of torchvision's ``inception_v3(num_classes=1008,
aux_logits=False)``: ``Conv2d_1a_3x3.conv.weight``, ``Conv2d_1a_3x3.bn.{weight, bias,
running_mean, running_var}``, ..., ``Mixed_7c.branch_pool.bn.running_var``, ``fc.weight``
(1008, 2048), ``fc.bias``; no ``AuxLogits``. This module has exactly those names, so the file
loads strictly. ``fc`` is kept only so that it does: FID never uses the logits.

Departures from pytorch-fid, none of which changes a feature: only the 2048-d pool3 output is
offered (not the 64/192/768-d blocks), the network is built here rather than from torchvision
(which this project does not depend on), and ``num_batches_tracked`` entries, which only
training reads, may be absent from the file (PyTorch itself fills them in for state dicts
saved before they existed).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import LearnedMetricError

__all__ = ["FIDInceptionV3", "FEATURE_DIM", "INPUT_SIZE", "inception_features", "load_inception"]

FEATURE_DIM = 2048  # pool3, the output of the final average pool
INPUT_SIZE = 299  # pytorch-fid resizes every image to this, as the TensorFlow graph did
NUM_CLASSES = 1008  # the TensorFlow graph's classifier; only its shape matters here
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 0.001, TensorFlow's) and ReLU: torchvision's BasicConv2d."""

    def __init__(self, in_channels: int, out_channels: int, **conv: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's 3x3 "SAME" average pool: border windows average only the pixels inside the image.

    torchvision's blocks count the zero padding (the default ``count_include_pad=True``);
    pytorch-fid patches this, and so must anything that claims its features.
    """
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """Mixed_5b-5d, 35 x 35: pytorch-fid's FIDInceptionA (torchvision's InceptionA, TensorFlow's pooling)."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """Mixed_6a, 35 x 35 -> 17 x 17: torchvision's InceptionB, unchanged (its pool is a max pool)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), branch3x3dbl, branch_pool], 1)


class InceptionC(nn.Module):
    """Mixed_6b-6e, 17 x 17, factorized 7x7: pytorch-fid's FIDInceptionC."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        branch_pool = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """Mixed_7a, 17 x 17 -> 8 x 8: torchvision's InceptionD, unchanged (its pool is a max pool)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], 1)


class InceptionE(nn.Module):
    """Mixed_7b and 7c, 8 x 8, expanded filter banks: pytorch-fid's FIDInceptionE_1 (``pool="avg"``)
    and FIDInceptionE_2 (``pool="max"``).

    The TensorFlow graph pools Mixed_7c's pool branch with a 3x3 max pool where the paper and
    torchvision average (pytorch-fid takes it for a slip in that graph); FID's features are the
    graph's, so the max pool is kept.
    """

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"`pool` must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        pooled = _avg_pool_3x3(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's ``fid_inception_v3`` up to pool3: images in [0, 1], (N, 3, H, W) -> features (N, 2048).

    Attribute names are torchvision's Inception3's, so that the state dict is that of the
    released ``pt_inception-2015-12-05-6726825d.pth``. Build it with `load_inception`; a bare
    instance holds PyTorch's default initialisation, which means nothing for FID.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)  # in the file, never used: FID stops at pool3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1  # (N, 3, 299, 299) in [-1, 1]
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (N, 64, 147, 147)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (N, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (N, 192, 71, 71)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (N, 192, 35, 35)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # (N, 288, 35, 35)
        x = self.Mixed_6a(x)  # (N, 768, 17, 17)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # (N, 768, 17, 17)
        x = self.Mixed_7a(x)  # (N, 1280, 8, 8)
        x = self.Mixed_7c(self.Mixed_7b(x))  # (N, 2048, 8, 8)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)  # (N, 2048)


def _few(keys: list[str], limit: int = 5) -> str:
    """The first ``limit`` keys, quoted, and how many more: enough to recognise a layout."""
    shown = ", ".join(repr(key) for key in keys[:limit])
    return shown if len(keys) <= limit else f"{shown} and {len(keys) - limit} more"


def _read_state_dict(path: Path, expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file's tensors under exactly the keys and shapes of ``expected``, or a LearnedMetricError naming it."""
    what = f"pytorch-fid's FID Inception weights ({WEIGHTS_FILE})"
    if not path.is_file():
        raise LearnedMetricError(f"{path}: no such file; expected {what}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a text file, a truncated download, a pickle of arbitrary objects, ...
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise LearnedMetricError(f"{path}: cannot be read as a PyTorch weights file ({reason}); expected {what}") \
            from exc
    if not isinstance(obj, Mapping):
        raise LearnedMetricError(f"{path}: holds a {type(obj).__name__}, not a state dict; expected {what}")
    state = dict(obj)
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise LearnedMetricError(f"{path}: entry {key!r} holds a {type(value).__name__}, not a tensor; "
                                     f"expected {what}")
    for key in expected:  # counters that only training reads; PyTorch fills them in the same way
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    problems = ([f"missing {len(missing)} key(s): {_few(missing)}"] if missing else []) \
        + ([f"unexpected {len(unexpected)} key(s): {_few(unexpected)}"] if unexpected else [])
    if problems:
        raise LearnedMetricError(f"{path}: {'; '.join(problems)}; expected {what}")
    wrong = [f"{key!r} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
             for key, value in expected.items() if state[key].shape != value.shape]
    if wrong:
        raise LearnedMetricError(f"{path}: {'; '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}; "
                                 f"expected {what}")
    bad = [key for key, value in state.items() if value.is_floating_point() != expected[key].is_floating_point()
           or (value.is_floating_point() and not bool(torch.isfinite(value).all()))]
    if bad:
        raise LearnedMetricError(f"{path}: {_few(bad)} hold non-finite values or the wrong kind of number; "
                                 f"expected {what}")
    return state


def load_inception(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> FIDInceptionV3:
    """FID's Inception v3 with the user's weights file, in eval mode on ``device``, gradients off.

    Parameters
    ----------
    path
        pytorch-fid's released FID Inception weights, ``pt_inception-2015-12-05-6726825d.pth``
        (its port of TensorFlow's Inception graph of 2015-12-05, published with pytorch-fid's
        releases as "fid_weights"). Other Inception v3 weights (torchvision's ImageNet ones,
        say) give features whose FIDs cannot be compared with published numbers, and are refused
        by their layout (1000 classes, AuxLogits).
    device
        Where the returned model lives; `inception_features` computes there.

    The file is read with ``torch.load(path, map_location="cpu", weights_only=True)``, which
    runs no code from it, and loaded strictly: a file that is missing, unreadable, not a state
    dict, or has missing, unexpected, wrongly shaped or non-finite entries raises a
    `LearnedMetricError` that names the file and what is wrong.
    """
    path = Path(path)
    with torch.device("meta"):  # shapes only: a random initialisation of 24 M parameters would be overwritten
        model = FIDInceptionV3()
    state = _read_state_dict(path, model.state_dict())
    model = model.to_empty(device="cpu")
    model.load_state_dict(state, strict=True)  # every parameter and buffer, so nothing stays uninitialised
    model.requires_grad_(False)
    return model.to(device).eval()


def inception_features(model: FIDInceptionV3, images: np.ndarray, *, batch_size: int = 50) -> np.ndarray:
    """pool3 features of uint8 sRGB images (N, H, W, 3) of any one size: float64 (N, 2048).

    Each batch goes through pytorch-fid's input path (ToTensor's float32 ``x / 255``, bilinear
    resize to 299 x 299, ``2 x - 1``) on the model's device, under ``torch.no_grad`` and in eval
    mode (the model's training flag is restored afterwards). The features are returned in
    float64, as pytorch-fid stores them, since FID's covariances are computed in float64.
    ``batch_size`` (pytorch-fid's default, 50) only bounds memory: every image is computed on
    its own, so no image is dropped and the batch does not change a feature beyond float32
    rounding. On a CUDA device PyTorch's global precision settings apply (cuDNN convolutions
    may use TF32 by default), as they do for pytorch-fid on the same device.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        found = images.dtype if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"`images` must be a uint8 numpy array of sRGB images, got {found}")
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"`images` must have shape (N, H, W, 3), got {images.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    device = next(model.parameters()).device
    features = np.empty((len(images), FEATURE_DIM), dtype=np.float64)
    was_training = model.training
    model.eval()  # batch norm on its running statistics, whatever the caller left the flag at
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                # np.array copies: torch.from_numpy needs a writable array, and the caller's may not be
                batch = torch.from_numpy(np.array(images[start:start + batch_size]))
                x = batch.to(device).permute(0, 3, 1, 2).float().div(255)  # (B, 3, H, W) in [0, 1]
                features[start:start + len(batch)] = model(x).double().cpu().numpy()
    finally:
        model.train(was_training)
    return features
