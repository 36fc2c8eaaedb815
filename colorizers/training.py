"""How colorizers are trained: the protocol a trainable model follows, and the trainer.

The protocol
------------
A trainable colorizer is a `Colorizer` subclass (`TrainableColorizer` gives the
checkpoint half for free) that provides:

``__init__(**config)``
    Its constructor's keyword arguments are its configuration: JSON-serialisable
    (str, int, float, bool, None, lists, dicts with str keys), defaults = the
    paper's model, and ``params()`` returns them all. Everything that defines the
    model and its loss lives here (widths, temperature, loss weights), so that a
    checkpoint's ``config`` rebuilds it.
``@classmethod default_train_config(cls) -> dict``
    The paper's optimisation recipe as plain data. The trainer reads
    ``batch_size``, and where present ``crop`` (side of the random square crops;
    256 when absent), ``resize_mode`` (``"shorter"``, the default: images are
    scaled so that their shorter side is ``resize``, keeping their shape;
    ``"stretch"``: whole images are scaled to ``resize`` x ``resize``, ignoring
    their aspect ratio, as Royer et al.'s 128x128 ImageNet), ``resize`` (default
    ``round(crop * 8 / 7)``, the 224-of-256 margin of ImageNet training, when
    ``"shorter"``; ``crop`` when ``"stretch"``, so that a crop is the whole image)
    and ``steps`` (the default run length; without it ``--steps`` is
    required). The rest (``lr``, ``betas``, ``weight_decay``, schedule...) is for
    the model's own `configure_optimizers`; ``--lr`` overrides ``lr``. The config
    used, overrides and all, is recorded in the checkpoint.
``configure_optimizers(self, config) -> dict[str, (Optimizer, LRScheduler | None)]``
    Named optimisers (one for most models, a generator and a critic for a GAN),
    each with its learning-rate scheduler or None. The trainer saves and restores
    their states; stepping them is the model's.
``train_step(self, batch: TrainBatch, step: int, optimizers) -> dict[str, float]``
    One training step on one batch: forward, backward, the optimisers' ``step()``
    and the schedulers' (a GAN alternates critic and generator updates here).
    Returns the scalars to log, always including ``"loss"``. ``step`` counts
    from 0; the trainer has put the model in training mode. The networks whose
    parameters a backward pass trains are called through ``self.replica(name)``
    (below); a mean over a subset of the batch counted at run time divides by
    `colorizers.distributed.shared_divisor` of the count; per-item random draws come
    from ``batch.uniform``. Then the step on several ranks is the one-process step.
``training_forwards(self) -> dict[str, TrainingForward]`` (for several ranks)
    Names the calls of ``train_step`` whose backward passes train parameters, each
    with the modules whose parameters it trains (no parameter in two), e.g. Lal et
    al.'s ``generator`` and ``critic``. On several ranks the trainer wraps each in
    DistributedDataParallel and ``replica(name)`` returns the wrapper; on one it
    returns the call itself.
``@classmethod prepare(cls, config, batches) -> dict`` (optional) and ``load_prepared(self, prepared)``
    Statistics estimated from the training data before step 0 (Zhang et al.'s
    empirical colour prior): ``batches`` yields `TrainBatch` objects over one pass
    of the training set (random crops, on the training device), and the method may
    stop early. The dict (tensors and plain data) is stored in the checkpoint and
    handed to the model's ``load_prepared``, at the start and again on resume.

Data, as `TrainBatch`: ``rgb`` (B, 3, crop, crop) float sRGB in [0, 1] on the
device and ``labels`` (B,) long ImageNet class indices, -1 where unknown.

The trainer
-----------
`train` (the command line is ``python -m colorizers.train`` and ``python manage.py
train_colorizer``) takes the data from

``imagenet-train:DIR``  ``DIR/<wnid>/*.JPEG``, ImageNet's train folder as it is
                        unpacked; the label is the wnid's position among
                        the 1000 wnids of ``data/splits/ctest10k.txt`` sorted,
                        ImageNet's standard class order (the split lists' indices).
                        A missing DIR, a flat folder of images, a folder that is
                        not a wnid or no images at all is a ValueError naming DIR
                        and the layout; empty class folders are allowed, and the
                        description counts the classes present
                        (``imagenet-train:DIR (1,281,167 images, 1000 classes)``).
``folder:DIR``          every .jpg/.jpeg/.png under DIR, recursively; labels -1.
``demo``                the ``train`` rows of ``data/demo/photos.csv``; labels -1.
                        The demo experiment rates the ``test`` rows: never train on them.

and feeds the model random crops: each image is scaled (bicubic) so that its
shorter side is ``resize`` (``resize_mode`` ``"shorter"``) or, whole and
stretched, to ``resize`` x ``resize`` (``"stretch"``), then a ``crop`` square is
cut at a random place (the only place when ``resize`` equals ``crop``) and
mirrored with probability 1/2. The order of images is a fresh permutation of the
set every epoch. All randomness of the data (order, crop, flip) is a function of
``--seed`` and the sample's position in the stream, never of the worker that
loads it, so a run resumed from a checkpoint sees exactly the batches the
uninterrupted run would have. The global torch generator, which draws what a model
draws per activation (dropout), is seeded at every step from (seed, step, rank), so
it needs no saving: resuming gives the same weights as not stopping.

Several ranks (``torchrun --standalone --nproc-per-node N -m colorizers.train ...``;
across machines ``torchrun --nnodes M --node-rank K --rdzv-endpoint HOST:PORT ...``):
each process reads the rank, world size and local rank torchrun sets, joins the
process group (nccl on CUDA, GPU ``LOCAL_RANK``; gloo on the CPU) and trains on its
``batch_size / N`` slice of every global batch (`_RankPositions`): the global batch is
the paper's whatever N, an epoch is still one pass over the set, and a batch that N
does not divide is refused. What makes the run the one-process run of its global batch
(gradients averaged by DistributedDataParallel, BatchNorm over the global batch, means
and per-item draws of the global batch) is in `colorizers.distributed`. Rank 0
estimates ``prepare``'s statistics and hands them to the others; rank 0 alone writes
checkpoints, which hold no per-rank state, so a run resumes on any number of ranks
that divides its batch, to the same weights up to rounding (bit for bit on as many
ranks; Royer et al.'s dropout masks, drawn per rank, are the exception: statistically
the same run). Ctrl-C and SIGTERM stop every rank after the same step.

A file that cannot be decoded (corrupt or truncated JPEG, unreadable file) does
not stop the run: its items take the image at the next position of the epoch's
permutation instead, with their own crop and flip, so the stream stays a function
of the seed and the position. Each batch carries the names of the files its items
passed over; the trainer logs the count and the first names at the end and stores
them in the checkpoint (``substituted_items``, ``unreadable_files``). A set in
which no image can be read is a TrainError.

Where the work happens: loader processes (``--workers``) decode the JPEGs, scale
them, cut and mirror the crops and stack them into uint8 batches, the part that
needs many cores (``benchmarks/input_pipeline.py`` measures it in images/s per
core). The conversion from sRGB to Lab is the model's, in ``train_step`` on the
training device: on a GPU it is a few elementwise kernels over the whole batch,
where in the workers it would cost CPU time per pixel (the benchmark prints how
much) and the batches would cross to the device as float32, 4 times the bytes of
uint8.

Precision (``--precision auto|fp32|bf16``, as ``generate_pairs`` chooses it):
``auto`` is bf16 on CUDA and fp32 elsewhere; ``bf16`` on the CPU is allowed when
asked for (``torch.autocast("cpu", dtype=torch.bfloat16)``; slower than fp32 on
most CPUs, but it checks the path without a GPU). Under bf16 the trainer runs the
model's whole ``train_step`` (forward, backward, optimiser steps) in
``torch.autocast(device_type, dtype=torch.bfloat16)``: the matrix products and
convolutions run in bf16 (on a GPU's bf16 tensor cores, with half the activation
memory), while the weights, their gradients and the optimiser states stay float32
(autocast casts a copy of a weight for each op; backward ops run in the dtype
autocast chose for their forward op, and the gradient that reaches a float32 weight
is float32). What autocast would not keep exact is the model's job, and every model
here does it: the sRGB -> Lab/YUV/YCbCr conversions multiply by their 3x3 matrix
with autocast off (`colorizers.color`: as the bf16 ``einsum`` autocast makes of it,
up to 2 L*a*b* units off on random pixels, although the result's dtype is float32),
the models prepare the batch and the targets derived from it with autocast off
too (`colorizers.quantization.float32`), and the network's outputs are cast with
``.float()`` before any loss, so that softmax, log and sums over many pixels run in
float32 on the CPU too, whose autocast keeps fewer ops in float32 than CUDA's.
``prepare`` (Zhang's colour prior) runs in float32, outside autocast. fp16 is not offered: its
5-bit exponent flushes small gradients to zero unless the loss is scaled
(``torch.amp.GradScaler``), and the scaler would have to wrap every backward and
optimiser step inside each model's ``train_step`` (a GAN's critic steps included);
bf16 has float32's exponent range and needs no scaling. The precision is recorded
in the checkpoint (``extra["precision"]``, ``"fp32"`` or ``"bf16"``) and is part of
the run, like its learning rate: a resumed run keeps it (``auto`` takes the
checkpoint's, another explicit value is a TrainError), so that the resumed run is
the uninterrupted one and the record holds one precision. Checkpoints from before
the option were trained in fp32.

Checkpoints (see `colorizers.checkpoint`; they load with
``torch.load(weights_only=True)``) are written atomically at the end, every
``save_every`` steps and on Ctrl-C or SIGTERM (after the step in hand). ``config``
is the model's, ``extra`` holds the data description, its hash, the step, the seed,
the train config, the precision, the number of ranks of the run that wrote it, the
prepared statistics and the optimisers' and schedulers' states.
The data hash is SHA-256 over ``"{name}\\t{sha256 of the file}\\n"`` of the
sorted file names (``data_hash_kind: "content"``); for sets above 4 GiB, where
reading every byte would take longer than many training steps, over
``"{name}\\t{size in bytes}\\n"`` (``"listing"``).
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from .base import Colorizer
from . import distributed
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sha256_file
from .distributed import TrainingForward, seed_for
from .progress import progress as progress_bar
from .registry import get_colorizer, list_colorizers

__all__ = [
    "TrainBatch", "TrainableColorizer", "TrainError", "TrainData", "Substitutions", "is_trainable",
    "trainable_colorizers",
    "resolve_data", "imagenet_wnids", "demo_train_files", "folder_files", "data_hash", "load_image",
    "resolve_device", "resolve_precision", "precision_context", "PRECISIONS", "train",
]

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "data" / "demo"
CTEST10K = REPO / "data" / "splits" / "ctest10k.txt"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LISTING_HASH_ABOVE = 4 << 30     # bytes; above this the data hash covers names and sizes only
DEFAULT_CROP = 256               # crop side for models whose train config names none
CACHE_IMAGES_UP_TO = 512         # sets this small are kept decoded in memory, per worker
PRECISIONS = ("auto", "fp32", "bf16")


class TrainError(ValueError):
    """A training run that cannot start or go on: bad options, data or checkpoint."""


@dataclass
class TrainBatch:
    """One training batch, on the training device: this rank's slice of the step's global batch."""

    rgb: torch.Tensor       # (B, 3, H, W) float32 sRGB in [0, 1]
    labels: torch.Tensor    # (B,) long, ImageNet class index or -1 when unknown
    offset: int = 0         # position of this slice's first item in the global batch
    global_size: int | None = None    # items in the global batch, all ranks (None: this batch is all of it)
    seed: int | None = None  # the step's seed, the same on every rank (set by the trainer)

    def uniform(self, *shape: int, salt: int = 0) -> torch.Tensor:
        """Uniform draws in [0, 1), ``shape`` per item: (B, *shape) on the batch's device.

        An item gets the same draws whichever rank holds it and however many there
        are: the draws are made for the whole global batch, from a generator seeded
        by the step's seed and ``salt`` (one per use within a step), and this
        slice's rows are kept. So randomness per item does not tie a run to its
        number of ranks, and a resumed run draws what the uninterrupted one did.
        A batch without a step seed (one made outside the trainer) draws from the
        global torch generator.
        """
        if self.seed is None:
            return torch.rand((len(self.rgb), *shape), device=self.rgb.device)
        total = self.global_size or len(self.rgb)
        generator = torch.Generator(device=self.rgb.device).manual_seed(seed_for(self.seed, salt))
        draws = torch.rand((total, *shape), generator=generator, device=self.rgb.device)
        return draws[self.offset:self.offset + len(self.rgb)]


class TrainableColorizer(Colorizer):
    """Base for colorizers trained by `train`: building from and loading checkpoints.

    Subclasses set ``self.config`` (a dict of their constructor's keyword
    arguments) in ``__init__`` and implement the protocol of the module
    docstring.
    """

    needs_checkpoint = True
    config: dict[str, Any]

    def params(self) -> dict[str, Any]:
        return dict(self.config)

    def training_forwards(self) -> dict[str, TrainingForward]:
        """The calls of ``train_step`` whose backward passes train parameters (see the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__} names no training forwards: it cannot train on several "
                                  f"ranks")

    def replica(self, name: str) -> Callable[..., Any]:
        """The training forward ``name`` as ``train_step`` calls it (through DistributedDataParallel on several ranks)."""
        replicas = self.__dict__.get("_replicas")
        return replicas[name] if replicas else self.training_forwards()[name].fn

    def use_replicas(self, replicas: Mapping[str, Callable[..., Any]] | None) -> None:
        """Route `replica` through these wrappers (the trainer's, on several ranks); None: the plain calls."""
        object.__setattr__(self, "_replicas", dict(replicas) if replicas else None)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> "TrainableColorizer":
        """Build the model from a checkpoint written by `train`; its config comes from the file.

        ``kwargs`` are inference settings (`inference_options`, e.g. a decoding
        temperature) that replace the checkpoint's; anything else is a TypeError.
        Raises CheckpointError, naming ``path``, for a missing or unreadable file,
        a checkpoint of another model, or weights that do not fit the config (a bad
        setting's value included).
        """
        if path is None:
            raise ValueError(f"colorizer {cls.name!r} needs a checkpoint path")
        cls.check_inference_values(kwargs)
        return cls.from_loaded(load_checkpoint(path, expected_model=cls.name), path, **kwargs)

    @classmethod
    def from_loaded(cls, ckpt: Mapping[str, Any], path: str | os.PathLike[str], **overrides: Any) -> "TrainableColorizer":
        """Build from a checkpoint dict already read by `load_checkpoint`; ``overrides`` are inference settings."""
        cls.check_inference_options(overrides)
        try:
            model = cls(**{**ckpt["config"], **overrides})
            model.load_state_dict(ckpt["state_dict"], strict=True)
        except (TypeError, ValueError, RuntimeError, KeyError) as exc:
            raise CheckpointError(f"{path} does not fit {cls.name!r}: {exc}") from exc
        return model.eval()


def is_trainable(cls: type) -> bool:
    """Whether ``cls`` implements the training protocol."""
    return all(callable(getattr(cls, m, None)) for m in ("default_train_config", "configure_optimizers", "train_step"))


def trainable_colorizers() -> list[str]:
    """Registered names that `train` can train (the protocol, or a ``fit`` method)."""
    return [n for n in list_colorizers() if is_trainable(get_colorizer(n)) or hasattr(get_colorizer(n), "fit")]


# --- data -----------------------------------------------------------------------

@dataclass(frozen=True)
class TrainData:
    """A resolved ``--data`` value."""

    root: Path
    names: list[str]          # POSIX paths relative to root, sorted
    labels: list[int]         # class index per name, -1 unknown
    description: str          # e.g. "demo:train (20 images)"


def demo_train_files() -> tuple[Path, list[str]]:
    """The demo photo folder and the names of its ``train`` photos, sorted."""
    index = DEMO_DIR / "photos.csv"
    if not index.is_file():
        raise ValueError(f"demo photo index not found: {index}")
    with open(index, newline="", encoding="utf-8") as f:
        names = [row["file"] for row in csv.DictReader(f) if row["split"] == "train"]
    return DEMO_DIR / "photos", sorted(names)


def folder_files(root: Path) -> list[str]:
    """Paths (POSIX, relative to ``root``) of the images under ``root``, sorted."""
    if not root.is_dir():
        raise ValueError(f"data folder not found: {root}")
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def imagenet_wnids(split_list: Path = CTEST10K) -> list[str]:
    """The 1000 ImageNet wnids in class-index order (sorted, as the split lists number them)."""
    with open(split_list, encoding="utf-8") as f:
        wnids = sorted({line.split("/")[1] for line in f if line.strip()})
    if len(wnids) != 1000:
        raise ValueError(f"{split_list} names {len(wnids)} classes, expected 1000")
    return wnids


def resolve_data(spec: str) -> TrainData:
    """Resolve ``demo``, ``folder:DIR`` or ``imagenet-train:DIR`` (ValueError if unusable)."""
    if spec == "demo":
        root, names = demo_train_files()
        return TrainData(root, names, [-1] * len(names), f"demo:train ({len(names)} images)")
    kind, _, folder = spec.partition(":")
    if kind == "folder" and folder:
        root = Path(folder)
        names = folder_files(root)
        return TrainData(root, names, [-1] * len(names), f"folder:{folder} ({len(names)} images)")
    if kind == "imagenet-train" and folder:
        return _imagenet_train(folder)
    raise ValueError(f"--data must be 'demo', 'folder:DIR' or 'imagenet-train:DIR', got {spec!r}")


def _imagenet_layout(root: Path) -> str:
    return (f"ImageNet's train layout is {root}/<wnid>/*.JPEG: one folder per class, named by its WordNet id "
            f"(e.g. n01440764), 1000 in all")


def _image_entries(folder: Path) -> list[str]:
    """Names of the image files directly in ``folder``, sorted (scandir: no stat per file, for 1.28M files)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES)


def _imagenet_train(folder: str) -> TrainData:
    """``DIR/<wnid>/*.JPEG`` labelled by wnid; a layout that is not this one is refused, naming ``DIR``.

    Empty class folders are allowed (a subset of the classes is a valid set) and
    the description counts the classes present, so a partial copy shows at once.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"imagenet-train:{folder}: data folder not found: {root}; {_imagenet_layout(root)}")
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    subs = sorted(p for p in root.iterdir() if p.is_dir())
    if not subs:
        loose = _image_entries(root)
        if loose:
            raise ValueError(f"imagenet-train:{folder}: {root} holds {len(loose):,} images directly and no class "
                             f"folders; {_imagenet_layout(root)}. For a flat folder use folder:{folder}, "
                             f"or lay the images out by wnid")
    names: list[str] = []
    labels: list[int] = []
    present = 0
    for sub in subs:
        if sub.name not in index:
            raise ValueError(f"{sub} is not an ImageNet class folder in imagenet-train:{folder}; "
                             f"{_imagenet_layout(root)}")
        files = _image_entries(sub)
        names += [f"{sub.name}/{f}" for f in files]
        labels += [index[sub.name]] * len(files)
        present += bool(files)
    if not names:
        found = f"{len(subs)} class folders, all empty" if subs else "no class folders"
        raise ValueError(f"no images in imagenet-train:{folder} ({found}); {_imagenet_layout(root)}")
    empty = len(subs) - present
    counts = f"{len(names):,} images, {present} class{'es' if present != 1 else ''}"
    if empty:
        counts += f", {empty} empty class folder{'s' if empty > 1 else ''}"
    return TrainData(root, names, labels, f"imagenet-train:{folder} ({counts})")


def data_hash(root: Path, names: Sequence[str]) -> str:
    """SHA-256 over the sorted (name, file SHA-256) pairs (format in module docstring)."""
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(f"{name}\t{sha256_file(root / name)}\n".encode())
    return digest.hexdigest()


def data_fingerprint(root: Path, names: Sequence[str]) -> tuple[str, str]:
    """(kind, hex): the content hash, or for sets above 4 GiB the listing hash."""
    sizes = {name: (root / name).stat().st_size for name in names}
    if sum(sizes.values()) <= LISTING_HASH_ABOVE:
        return "content", data_hash(root, names)
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(f"{name}\t{sizes[name]}\n".encode())
    return "listing", digest.hexdigest()


# What PIL raises for a file it cannot decode: OSError for unidentified or truncated
# data, SyntaxError and EOFError from some format plugins on corrupt headers.
UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return ImageOps.exif_transpose(img).convert("RGB")
    except UNREADABLE as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def _resize_shorter(img: Image.Image, size: int) -> Image.Image:
    scale = size / min(img.size)
    new_size = (max(size, round(img.width * scale)), max(size, round(img.height * scale)))
    return img.resize(new_size, Image.Resampling.BICUBIC)


def _resize_stretch(img: Image.Image, size: int) -> Image.Image:
    return img.resize((size, size), Image.Resampling.BICUBIC)


RESIZE_MODES: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "shorter": _resize_shorter, "stretch": _resize_stretch,
}


def default_resize(crop: int, resize_mode: str) -> int:
    """``resize`` when the train config names none: crop * 8/7 (shorter side), or the crop (stretch)."""
    return crop if resize_mode == "stretch" else round(crop * 8 / 7)


def load_image(path: Path, size: int) -> torch.Tensor:
    """sRGB float tensor (3, H, W) in [0, 1], shorter side ``size`` pixels."""
    array = np.asarray(_resize_shorter(_open_rgb(path), size), dtype=np.uint8)   # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255


class RandomCrops(Dataset):
    """Item ``k`` of an endless stream: a random crop of image ``perm_e[k mod N]``, epoch e = k // N.

    Returns (uint8 tensor (3, crop, crop), label). Every random choice comes from
    a generator seeded by (seed, k), so the stream does not depend on workers.
    ``resize_mode`` (see `RESIZE_MODES`) says how an image is scaled before the
    crop: shorter side to ``resize`` or stretched whole to ``resize`` x ``resize``;
    the random draws are the same in both, so a mode changes only the pixels.

    An image that cannot be read (corrupt, truncated, unreadable file) is replaced
    by the image at the next position of the same epoch's permutation (wrapping),
    cropped with position ``k``'s draws: one bad JPEG must not end a run of days,
    and the substitute is still a function of (seed, k), whichever worker loads it.
    `item` also names the files skipped, for the trainer to count. When no image
    of the set can be read, TrainError. ``cache`` keeps decoded images in memory
    (default: for sets of at most ``CACHE_IMAGES_UP_TO`` images).
    """

    def __init__(self, data: TrainData, *, crop: int, resize: int, seed: int, resize_mode: str = "shorter",
                 cache: bool | None = None) -> None:
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {', '.join(map(repr, RESIZE_MODES))}, got {resize_mode!r}")
        if resize < crop:
            raise ValueError(f"resize {resize} is smaller than the crop {crop}")
        self.data, self.crop, self.resize, self.seed = data, crop, resize, seed
        self.resize_mode = resize_mode
        self.cache = len(data.names) <= CACHE_IMAGES_UP_TO if cache is None else cache
        self._perm: tuple[int, np.ndarray] | None = None
        self._cache: dict[int, np.ndarray] = {}
        self._unreadable: dict[int, str] = {}     # index -> why; files do not heal during a run

    def __len__(self) -> int:
        return len(self.data.names)

    def permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, 1, epoch]).permutation(len(self)))
        return self._perm[1]

    def _pixels(self, index: int) -> np.ndarray | None:
        """The scaled image (H, W, 3) uint8, or None when its file cannot be read."""
        if index in self._cache:
            return self._cache[index]
        if index in self._unreadable:
            return None
        try:
            img = _open_rgb(self.data.root / self.data.names[index])
        except ValueError as exc:
            self._unreadable[index] = str(exc)
            return None
        pixels = np.asarray(RESIZE_MODES[self.resize_mode](img, self.resize), dtype=np.uint8)   # (H, W, 3)
        if self.cache:
            self._cache[index] = pixels
        return pixels

    def item(self, k: int) -> tuple[torch.Tensor, int, tuple[str, ...]]:
        """Item ``k`` and the names of the unreadable files passed over to find its image (usually none)."""
        epoch, position = divmod(k, len(self))
        perm = self.permutation(epoch)
        skipped: list[str] = []
        for offset in range(len(self)):
            index = int(perm[(position + offset) % len(self)])
            pixels = self._pixels(index)
            if pixels is not None:
                break
            skipped.append(self.data.names[index])
        else:
            first = int(perm[position])
            raise TrainError(f"none of the images of {self.data.description} can be read "
                             f"(e.g. {self._unreadable[first]})")
        rng = np.random.default_rng([self.seed, 2, k])
        top = int(rng.integers(0, pixels.shape[0] - self.crop + 1))
        left = int(rng.integers(0, pixels.shape[1] - self.crop + 1))
        patch = pixels[top:top + self.crop, left:left + self.crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return torch.from_numpy(patch.copy()).permute(2, 0, 1), self.data.labels[index], tuple(skipped)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        pixels, label, _ = self.item(k)
        return pixels, label


class _Items(Dataset):
    """`RandomCrops` as the trainer's loader reads it: items with the names of the files they replaced."""

    def __init__(self, crops: RandomCrops) -> None:
        self.crops = crops

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int, tuple[str, ...]]:
        return self.crops.item(k)


def _collate(items: list[tuple[torch.Tensor, int, tuple[str, ...]]]) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(pixels (B, 3, crop, crop) uint8, labels (B,), per item the names it skipped).

    Pixels and labels go through `default_collate`, which in a worker writes the
    batch straight into shared memory; the names travel with their batch, so
    counts add up the same with any number of workers.
    """
    pixels, labels = default_collate([(x, y) for x, y, _ in items])
    return pixels, labels, [names for _, _, names in items]


class _Positions(Sampler[int]):
    """Stream positions start, start + 1, ... (``stop`` exclusive, or endless)."""

    def __init__(self, start: int, stop: int | None = None) -> None:
        self.start, self.stop = start, stop

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop)) if self.stop is not None else itertools.count(self.start)


class _RankPositions(Sampler[int]):
    """A rank's slice of each global batch, from step ``step`` on, endless.

    Global batch ``s`` is stream positions ``s * batch`` .. ``s * batch + batch - 1``
    (one epoch of the set every ``len(set) / batch`` steps, whatever the number of
    ranks); rank ``r`` of ``world`` reads the ``batch / world`` positions starting at
    ``s * batch + r * batch / world``. With one rank it is `_Positions` from
    ``step * batch``.
    """

    def __init__(self, step: int, batch: int, rank: int = 0, world: int = 1) -> None:
        if batch % world:
            raise ValueError(f"a batch of {batch} does not split over {world} ranks")
        self.step, self.batch, self.rank, self.world = step, batch, rank, world

    def __iter__(self) -> Iterator[int]:
        share = self.batch // self.world
        for step in itertools.count(self.step):
            first = step * self.batch + self.rank * share
            yield from range(first, first + share)


def _loader(dataset: RandomCrops, positions: _Positions, *, batch_size: int, workers: int,
            device: torch.device, seed: int) -> DataLoader:
    """Batches (pixels, labels, skipped names per item) of ``dataset`` at ``positions``."""
    return DataLoader(
        _Items(dataset), batch_size=batch_size, sampler=positions, num_workers=workers, collate_fn=_collate,
        pin_memory=device.type == "cuda", persistent_workers=False,
        # the data draws nothing from it; passing one keeps the global RNG untouched
        generator=torch.Generator().manual_seed(seed),
    )


@dataclass
class Substitutions:
    """Stream items that took another image because theirs could not be read, and the files passed over."""

    items: int = 0
    files: dict[str, None] = field(default_factory=dict)     # names in the order met (an ordered set)

    KEEP = 1000    # names stored in a checkpoint at most: enough to find a broken copy, never the whole set

    def record(self, skipped: Sequence[Sequence[str]]) -> None:
        for names in skipped:
            if names:
                self.items += 1
                self.files.update(dict.fromkeys(names))

    def as_extra(self) -> dict[str, Any]:
        return {"substituted_items": self.items, "unreadable_files": list(self.files)[:self.KEEP]}

    @classmethod
    def total(cls, parts: Iterable["Substitutions"]) -> "Substitutions":
        """The counts of several ranks together (files in rank order)."""
        out = cls()
        for part in parts:
            out.items += part.items
            out.files.update(part.files)
        return out

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> "Substitutions":
        """From a checkpoint's ``extra`` (zero for checkpoints from before it was recorded)."""
        return cls(int(extra.get("substituted_items", 0)), dict.fromkeys(extra.get("unreadable_files", [])))

    def summary(self, shown: int = 5) -> str:
        names = list(self.files)
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        return (f"{self.items:,} items took another image: {len(names):,} unreadable files skipped "
                f"({', '.join(names[:shown])}{more})")


def _batches(loader: Iterable, device: torch.device, substitutions: Substitutions | None = None
             ) -> Iterator[TrainBatch]:
    """`TrainBatch` objects on ``device``; ``substitutions`` counts the items of the batches taken."""
    for pixels, labels, skipped in loader:
        if substitutions is not None:
            substitutions.record(skipped)
        rgb = pixels.to(device, non_blocking=True).float().div_(255)
        yield TrainBatch(rgb=rgb, labels=labels.to(device, dtype=torch.long, non_blocking=True))


# --- checkpoint state as plain data ----------------------------------------------

def _to_plain(value: Any) -> Any:
    """Optimiser/scheduler state -> what `save_checkpoint` accepts (reversible by `_from_plain`)."""
    if isinstance(value, torch.Tensor) or value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_to_plain(v) for v in value]}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: _to_plain(v) for k, v in value.items()}
        return {"__items__": [[_to_plain(k), _to_plain(v)] for k, v in value.items()]}
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")


def _from_plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_from_plain(v) for v in value["__tuple__"])
        if set(value) == {"__items__"}:
            return {_hashable(_from_plain(k)): _from_plain(v) for k, v in value["__items__"]}
        return {k: _from_plain(v) for k, v in value.items()}
    return value


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


# --- the loop --------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cuda`` or ``cpu``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda was asked for, but no CUDA device is available")
    if name not in {"cpu", "cuda"}:
        raise TrainError(f"--device must be auto, cuda or cpu, got {name!r}")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` (bf16 on CUDA, fp32 elsewhere), ``fp32`` or ``bf16`` -> ``"fp32"`` or ``"bf16"``.

    bf16 on the CPU is honoured when asked for: few CPUs run it faster than fp32,
    but it is the same code path, so that tests without a GPU exercise it.
    """
    if name not in PRECISIONS:
        raise TrainError(f"--precision must be auto, fp32 or bf16, got {name!r}")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name


def precision_context(precision: str, device: torch.device) -> torch.autocast:
    """The context a training step runs in: bf16 autocast on ``device`` for ``"bf16"``, off for ``"fp32"``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def default_workers(device: torch.device, ranks_here: int = 1) -> int:
    """Loader processes per rank: on CUDA, this machine's cores but one per rank (at most 8); on the CPU, none.

    ``ranks_here``: the training processes on this machine (torchrun's
    ``LOCAL_WORLD_SIZE``), which share its cores. Training on the CPU already keeps
    every core busy with torch's threads, which spin while they wait; a loader
    process then competes with them for the cores (on 2 cores, 600 demo steps took
    7 times longer with one than without).
    """
    if device.type != "cuda":
        return 0
    return min(8, max(0, (os.cpu_count() or 1) // max(1, ranks_here) - 1))


def train(
    *,
    model: str,
    data: str,
    out: str | os.PathLike[str],
    steps: int | None = None,
    batch_size: int | None = None,
    crop: int | None = None,
    resize: int | None = None,
    lr: float | None = None,
    config: Mapping[str, Any] | None = None,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    resume: str | os.PathLike[str] | None = None,
    save_every: int = 0,
    workers: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Train registered colorizer ``model`` and write its checkpoint to ``out``.

    Under torchrun (``WORLD_SIZE`` set) this process is one rank of the run: see
    the module docstring and `colorizers.distributed`.

    ``steps`` is the step count to reach (a resumed run continues from its
    checkpoint's step up to it; default: the paper's, from the train config).
    ``batch_size``, ``crop``, ``resize`` and ``lr`` override the train config,
    ``config`` the model's constructor arguments (new runs only: a resumed run
    keeps its checkpoint's, and refuses others). ``precision`` is ``auto``,
    ``fp32`` or ``bf16`` (see the module docstring; a resumed run keeps its
    checkpoint's and refuses another). Raises `TrainError` for bad
    options, data (a set in which no image can be read included) or
    checkpoints, and FloatingPointError when the loss stops being finite. An
    unreadable image is replaced (see `RandomCrops`); the count and the files
    are logged at the end and stored in the checkpoint's ``extra`` (the
    statistics pass of ``prepare`` logs its own).
    """
    try:
        cls = get_colorizer(model)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    if not is_trainable(cls):
        raise TrainError(f"model {model!r} is not trainable: it has no train_step() "
                         f"(trainable: {', '.join(trainable_colorizers())})")
    dev = resolve_device(device)
    try:
        ranks = distributed.from_environment()
        if ranks.world > 1:
            dev = distributed.start(ranks, dev)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    try:
        return _train(cls, ranks, dev, model=model, data=data, out=out, steps=steps, batch_size=batch_size,
                      crop=crop, resize=resize, lr=lr, config=config, precision=precision, seed=seed,
                      resume=resume, save_every=save_every, workers=workers, progress=progress,
                      log=log if ranks.rank == 0 else (lambda message: None))
    finally:
        if ranks.world > 1:
            distributed.stop()


def _train(cls: type, ranks: distributed.Ranks, dev: torch.device, *, model: str, data: str,
           out: str | os.PathLike[str], steps: int | None, batch_size: int | None, crop: int | None,
           resize: int | None, lr: float | None, config: Mapping[str, Any] | None, precision: str, seed: int,
           resume: str | os.PathLike[str] | None, save_every: int, workers: int | None, progress: bool,
           log: Callable[[str], None]) -> Path:
    """`train`'s run on this rank (``dev``: this rank's device), the process group joined."""
    if precision not in PRECISIONS:
        raise TrainError(f"--precision must be auto, fp32 or bf16, got {precision!r}")
    out = Path(out)
    for name, value in (("steps", steps), ("batch_size", batch_size), ("crop", crop), ("resize", resize)):
        if value is not None and value < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if lr is not None and not lr > 0:
        raise TrainError(f"--lr must be positive, got {lr}")
    if save_every < 0:
        raise TrainError(f"--save-every must be 0 (off) or positive, got {save_every}")
    try:
        dataset_spec = resolve_data(data)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    if not dataset_spec.names:
        raise TrainError(f"no images in {data}")
    # rank 0 reads the set (every file's bytes up to 4 GiB) and hands the hash to the others
    hash_kind, digest = distributed.broadcast(
        data_fingerprint(dataset_spec.root, dataset_spec.names) if ranks.rank == 0 else None, dev)

    overrides = {k: v for k, v in (("batch_size", batch_size), ("crop", crop), ("resize", resize), ("lr", lr))
                 if v is not None}
    ckpt = None
    if resume is not None:
        try:
            ckpt = load_checkpoint(resume, expected_model=model)
        except CheckpointError as exc:
            raise TrainError(f"cannot resume: {exc}") from None
        extra = ckpt["extra"]
        if "train_config" not in extra or "step" not in extra:
            raise TrainError(f"cannot resume from {resume}: it holds no training state")
        if extra.get("data_sha256") != digest:
            raise TrainError(f"cannot resume from {resume}: it was trained on {extra.get('data')!r} "
                             f"(data hash {extra.get('data_sha256')}), not on this --data (hash {digest})")
        model_config = dict(ckpt["config"])
        train_config = _from_plain(extra["train_config"])
        changed = {k: v for k, v in {**overrides, **(config or {})}.items()
                   if {**train_config, **model_config}.get(k) != v}
        if changed:
            raise TrainError(f"cannot change {', '.join(sorted(changed))} when resuming from {resume}")
        trained_in = extra.get("precision", "fp32")       # checkpoints from before the option: fp32
        if precision not in {"auto", trained_in}:
            raise TrainError(f"cannot change the precision to {precision} when resuming from {resume}: it was "
                             f"trained in {trained_in}; resume with --precision {trained_in} (or auto), "
                             f"or start a new run")
        precision = trained_in
        seed = int(extra["seed"])
        start = int(extra["step"])
    else:
        model_config = dict(config or {})
        train_config = {**cls.default_train_config(), **overrides}
        precision = resolve_precision(precision, dev)
        start = 0
    steps = int(steps if steps is not None else train_config.get("steps", 0))
    if steps < 1:
        raise TrainError("--steps is required: this model's train config names no default")
    train_config["steps"] = steps            # the run's length, as recorded in the checkpoint
    train_config.setdefault("crop", DEFAULT_CROP)
    resize_mode = train_config.get("resize_mode", "shorter")     # checkpoints from before it existed: "shorter"
    if resize_mode not in RESIZE_MODES:
        raise TrainError(f"train config resize_mode must be one of {', '.join(map(repr, RESIZE_MODES))}, "
                         f"got {resize_mode!r}")
    train_config["resize_mode"] = resize_mode
    train_config.setdefault("resize", default_resize(train_config["crop"], resize_mode))
    if train_config["resize"] < train_config["crop"]:
        raise TrainError(f"--resize {train_config['resize']} is smaller than the crop {train_config['crop']}")

    B, crop_size, resize_size = int(train_config["batch_size"]), int(train_config["crop"]), int(train_config["resize"])
    if B % ranks.world:
        raise TrainError(f"the global batch of {B} does not split over {ranks.world} ranks: every rank must "
                         f"take as many images (a mean over the batch is then the one-process run's); pass "
                         f"--batch-size a multiple of {ranks.world}, or start {ranks.world - B % ranks.world} "
                         f"more or {B % ranks.world} fewer processes")

    torch.manual_seed(seed)
    try:
        net = cls(**model_config)
    except (TypeError, ValueError) as exc:
        raise TrainError(f"bad --config for {model!r}: {exc}") from None
    net.to(dev)
    if ranks.world > 1:
        distributed.global_batchnorm(net)      # before the optimisers: it makes new parameter objects
    optimizers = net.configure_optimizers(train_config)
    if ckpt is not None:
        try:
            net.load_state_dict(ckpt["state_dict"], strict=True)
            for name, state in _from_plain(ckpt["extra"]["optimizers"]).items():
                optimizers[name][0].load_state_dict(state)
            for name, state in _from_plain(ckpt["extra"]["schedulers"]).items():
                optimizers[name][1].load_state_dict(state)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise TrainError(f"cannot resume from {resume}: {exc}") from None

    if workers is None:
        workers = default_workers(dev, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    prepared: dict[str, Any] = {}
    if ckpt is not None:
        prepared = _from_plain(ckpt["extra"].get("prepared", {}))
    elif callable(getattr(cls, "prepare", None)):
        if ranks.rank == 0:      # one pass, by rank 0 alone; the others wait for its result
            once = RandomCrops(dataset_spec, crop=crop_size, resize=resize_size, seed=seed + 1,
                               resize_mode=resize_mode)
            loader = _loader(once, _Positions(0, len(once)), batch_size=B, workers=workers, device=dev, seed=seed)
            log(f"estimating {model} statistics from {dataset_spec.description}")
            passed_over = Substitutions()
            prepared = cls.prepare(train_config, _batches(loader, dev, passed_over))
            if passed_over.items:
                log(f"estimating {model} statistics: {passed_over.summary()}")
        prepared = distributed.broadcast(prepared, dev)
    if prepared:
        net.load_prepared(prepared)
    if ranks.world > 1:
        try:
            net.use_replicas(distributed.replicate(net.training_forwards(), dev))
        except NotImplementedError as exc:
            raise TrainError(str(exc)) from None

    extra_base = {
        "data": dataset_spec.description,
        "num_images": len(dataset_spec.names),
        "data_sha256": digest,
        "data_hash_kind": hash_kind,
        "seed": seed,
        "precision": precision,
        "train_config": _to_plain(train_config),
        "prepared": _to_plain(prepared),
        "torch_version": str(torch.__version__),
        "ranks": ranks.world,
    }

    # counted over the whole run, resumed parts included: a resumed run sees the same items. Each rank counts
    # its slices (rank 0 also what the checkpoint holds) and the counts are summed when a checkpoint is written.
    substitutions = (Substitutions.from_extra(ckpt["extra"]) if ckpt is not None and ranks.rank == 0
                     else Substitutions())

    def save(step: int, logs: Mapping[str, float]) -> Substitutions:
        """Every rank calls it at the same step; rank 0 writes. Returns the counts of all ranks."""
        counted = Substitutions.total(distributed.gather(substitutions, dev))
        if ranks.rank == 0:
            save_checkpoint(out, model_name=model, state_dict=net.state_dict(), config=net.params(), extra={
                **extra_base,
                **counted.as_extra(),
                "step": step,
                "last_logs": {k: float(v) for k, v in logs.items()},
                "optimizers": {n: _to_plain(o.state_dict()) for n, (o, _) in optimizers.items()},
                "schedulers": {n: _to_plain(s.state_dict()) for n, (_, s) in optimizers.items() if s is not None},
            })
        return counted

    dataset = RandomCrops(dataset_spec, crop=crop_size, resize=resize_size, seed=seed, resize_mode=resize_mode)
    share = B // ranks.world
    loader = _loader(dataset, _RankPositions(start, B, ranks.rank, ranks.world), batch_size=share,
                     workers=workers, device=dev, seed=seed)
    where = (f"{ranks.world} ranks ({'nccl' if dev.type == 'cuda' else 'gloo'}, {dev.type}), global batch {B} = "
             f"{ranks.world} x {share}" if ranks.world > 1 else f"{dev}, batch {B}")
    log(f"training {model} ({sum(p.numel() for p in net.parameters()):,} parameters) on {where} of "
        f"{crop_size} px crops, {dataset_spec.description}, steps {start}..{steps}, "
        f"precision {precision}{' (autocast), weights float32' if precision == 'bf16' else ''}")
    step_context = precision_context(precision, dev)

    # Ctrl-C (SIGINT) and SIGTERM (a scheduler's preemption, torchrun stopping its workers) finish
    # the step in hand, so that the checkpoint written is a state the uninterrupted run also passed
    # through (a GAN step is several updates); on several ranks, all stop after the same step.
    interrupted: list[int] = []
    previous_handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[signum] = signal.signal(signum, lambda signum, frame: interrupted.append(signum))
    bar = progress_bar(total=steps, initial=start, desc=f"training {model}", unit="step",
                       enabled=progress and ranks.rank == 0)
    logs: dict[str, float] = dict(ckpt["extra"].get("last_logs", {})) if ckpt is not None else {}
    step = start
    stopping = False
    net.train()
    window_start, window_images = time.perf_counter(), 0
    try:
        batches = _batches(loader, dev, substitutions)
        while step < steps and not stopping:
            batch = next(batches)
            batch.offset, batch.global_size, batch.seed = ranks.rank * share, B, seed_for(seed, 3, step)
            # draws per activation (dropout) from a generator seeded per step and rank: a resumed run
            # makes the uninterrupted run's, on as many ranks
            torch.manual_seed(seed_for(seed, 4, step, ranks.rank))
            with step_context:
                logs = net.train_step(batch, step, optimizers)
            logs = distributed.all_mean(logs, dev)
            step += 1
            if not math.isfinite(logs["loss"]):
                raise FloatingPointError(f"the loss became {logs['loss']} at step {step}; "
                                         f"stopped without writing {out}")
            stopping = distributed.any_rank(bool(interrupted), dev)
            window_images += B
            elapsed = time.perf_counter() - window_start
            bar.update(1)
            if elapsed > 1.0 or step == steps:
                bar.set_postfix(loss=f"{logs['loss']:.4g}", img_s=f"{window_images / elapsed:.1f}")
                window_start, window_images = time.perf_counter(), 0
            if save_every and step % save_every == 0 and step < steps and not stopping:
                save(step, logs)
    finally:
        bar.close()
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
    counted = save(step, logs)
    if counted.items:
        log(f"unreadable images in {dataset_spec.description}: {counted.summary()}")
    distributed.barrier()          # every rank leaves once rank 0 has written the checkpoint
    if stopping:
        log(f"interrupted: wrote {out} at step {step}; continue with --resume {out}")
        raise KeyboardInterrupt
    summary = ", ".join(f"{k} {v:.4g}" for k, v in logs.items())
    log(f"wrote {out} ({model}, {dataset_spec.description}, step {step}{', ' + summary if summary else ''})")
    return out
