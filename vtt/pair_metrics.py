"""Automatic metrics of an experiment's stored pairs, computed once per colorization (the one writer of metrics).

`compute` reads the very files raters are served (the real image and the colorization,
at the served size), computes `evaluation.metrics.all_metrics` of each pair in a pool of
threads (scikit-image's and numpy's array code releases the GIL) and stores one
`PairMetrics` row per colorization, batch by batch, each batch in its own transaction.
Like generation it is resumable and idempotent: a killed run keeps the batches it
stored and the next run computes only what is missing; a finished run recomputes
nothing. The files never change (generation refuses a changed file), so a row stays
valid until the definitions change (`VERSION`).

The learned metrics need weights the user supplies (never downloaded):

- LPIPS (`learned_metrics.lpips`): the linear layers and the backbone's file; each pair's
  distance goes into its row with the network's name and the SHA-256 of both files.
- FID (`learned_metrics.inception`, `evaluation.fid`): the Inception weights; the pool
  features of each colorization (in its row) and of each real image (`RealImageFeatures`),
  with the SHA-256 of the weights. FID itself is a statistic of a set of images, computed
  by the report from the features (`method_fid`).

Both run in batches on the best device (CUDA when present) and are resumable the same
way. Other weights compute them again rather than mix two networks in one column.

A missing or unreadable file never stops the run: the pair is left without metrics and
the file named in `Outcome.problems` (the report says so too, and renders the rest).
`table` reads the stored values back for the report.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from django.db import transaction
from django.db.models import Count, Max
from PIL import Image, UnidentifiedImageError

from .models import Colorization, ExperimentImage, PairMetrics, RealImageFeatures, pairs_dir

# The definitions of `evaluation.metrics.all_metrics`: raise it when one changes, and every row is computed again.
VERSION = 1
BASIC = ("psnr", "ssim", "ciede2000", "colorfulness", "real_colorfulness", "raw_accuracy_auc")
DEFAULT_BATCH = 64


class PairFileError(ValueError):
    """A pair image that cannot be read: the message names the file."""


@dataclass
class LearnedWeights:
    """The weights files of the learned metrics; None leaves that metric out."""

    lpips: Path | None = None            # the linear layers (the lpips package's weights/v0.1/<net>.pth)
    lpips_backbone: Path | None = None   # the backbone (torchvision's AlexNet or VGG16 weights)
    lpips_net: str = "alex"
    inception: Path | None = None        # pytorch-fid's FID Inception weights

    def __post_init__(self) -> None:
        if (self.lpips is None) != (self.lpips_backbone is None):
            raise ValueError("LPIPS needs both files: the linear layers and the backbone's weights")


@dataclass
class Outcome:
    """What a `compute` run did: rows computed, rows already there, and the files it could not read."""

    computed: int = 0
    cached: int = 0
    lpips: int = 0
    inception: int = 0
    problems: list[str] = field(default_factory=list)


def sha256_file(path: Path) -> str:
    """The SHA-256 of a weights file (`vtt.rendering`'s would import torch into every report)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_pixels(path: Path) -> np.ndarray:
    """A stored pair image as uint8 sRGB (H, W, 3); a `PairFileError` naming the file if it cannot be read."""
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise PairFileError(f"{path}: the file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PairFileError(f"{path}: cannot be read as an image ({exc})") from None


def _pair_pixels(c: Colorization) -> tuple[np.ndarray, np.ndarray]:
    folder = pairs_dir()
    real, fake = read_pixels(folder / c.image.real_file), read_pixels(folder / c.file)
    if real.shape != fake.shape:
        raise PairFileError(f"{folder / c.file}: {fake.shape[1]}x{fake.shape[0]} pixels, but its real image "
                            f"{folder / c.image.real_file} has {real.shape[1]}x{real.shape[0]}")
    return real, fake


def _basic(c: Colorization) -> dict | str:
    from evaluation.metrics import all_metrics  # scikit-image: imported by those who compute
    try:
        real, fake = _pair_pixels(c)
    except PairFileError as exc:
        return str(exc)
    return all_metrics(real, fake)


def _colorizations(experiment, methods: list[str] | None):
    rows = Colorization.objects.filter(image__experiment=experiment).select_related("image", "method")
    if methods is not None:
        rows = rows.filter(method__name__in=methods)
    return rows.order_by("id")


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def compute(experiment, *, methods: list[str] | None = None, weights: LearnedWeights | None = None,
            device: str = "auto", batch_size: int = DEFAULT_BATCH, threads: int = 2,
            progress: Callable[[int], None] | None = None, total: Callable[[int], None] | None = None) -> Outcome:
    """Compute and store what is missing of ``experiment``'s metrics (of ``methods``' pairs, or all).

    ``total(n)`` is told how many pairs will be computed before the first, ``progress(n)``
    after each batch. Raises `learned_metrics.LearnedMetricError` for a weights file that
    cannot be used, before computing anything (a file whose metrics are all stored is
    not loaded again: only its SHA-256 is read).
    """
    weights = weights or LearnedWeights()
    outcome = Outcome()
    models = _load_learned(experiment, methods, weights, device)
    rows = _colorizations(experiment, methods)
    done = set(PairMetrics.objects.filter(colorization__in=rows, version=VERSION)
               .values_list("colorization_id", flat=True))
    todo = [c for c in rows if c.id not in done]
    outcome.cached = len(done)
    if total is not None:
        total(len(todo))
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for batch in _batches(todo, batch_size):
            values = list(pool.map(_basic, batch))
            store = []
            for c, value in zip(batch, values):
                if isinstance(value, str):
                    outcome.problems.append(value)
                else:
                    store.append(PairMetrics(colorization=c, version=VERSION, **value))
            with transaction.atomic():
                PairMetrics.objects.bulk_create(store, update_conflicts=True, unique_fields=["colorization"],
                                                update_fields=["version", *BASIC])
            outcome.computed += len(store)
            if progress is not None:
                progress(len(batch))
        if "lpips" in models:
            outcome.lpips = _lpips(experiment, methods, *models["lpips"], batch_size, pool, outcome)
        if "inception" in models:
            outcome.inception = _inception(experiment, methods, *models["inception"], batch_size, pool, outcome)
    return outcome


def _load_learned(experiment, methods, weights: LearnedWeights, device: str) -> dict:
    """The learned metrics' networks on ``device``, each with the tag that identifies its weights; only those with
    something left to compute are loaded (a rerun with the same weights reads nothing but their hashes)."""
    models = {}
    if weights.lpips is None and weights.inception is None:
        return models
    from learned_metrics import inception, lpips  # torch: imported by those who ask for it

    from .generation import resolve_device
    where = resolve_device(device)
    pairs = _colorizations(experiment, methods)
    n_pairs = pairs.count()
    stored = PairMetrics.objects.filter(colorization__in=pairs)
    if weights.lpips is not None:
        tag = f"{weights.lpips_net}:" + sha256_file(weights.lpips)[:32] + sha256_file(weights.lpips_backbone)[:32]
        if stored.filter(lpips_weights=tag).count() < n_pairs:
            models["lpips"] = (lpips.load_lpips(weights.lpips, weights.lpips_backbone, net=weights.lpips_net,
                                                device=where), tag)
    if weights.inception is not None:
        tag = sha256_file(weights.inception)
        reals = RealImageFeatures.objects.filter(image__experiment=experiment, inception_weights=tag).count()
        if (stored.filter(inception_weights=tag).count() < n_pairs
                or reals < ExperimentImage.objects.filter(experiment=experiment).count()):
            models["inception"] = (inception.load_inception(weights.inception, device=where), tag)
    return models


def _read_all(pool: ThreadPoolExecutor, read: Callable, items: list, outcome: Outcome) -> list:
    """``read(item)`` of each item in the pool; the items that fail are named in ``outcome`` and left out."""
    def one(item):
        try:
            return item, read(item)
        except PairFileError as exc:
            return item, str(exc)

    kept = []
    for item, value in pool.map(one, items):
        if isinstance(value, str):
            if value not in outcome.problems:
                outcome.problems.append(value)
        else:
            kept.append((item, value))
    return kept


def _same_size_groups(pairs: list) -> list[list]:
    """Items grouped by image size (a batch is one tensor), in their order."""
    groups: dict[tuple, list] = {}
    for item, pixels in pairs:
        shape = pixels[0].shape if isinstance(pixels, tuple) else pixels.shape
        groups.setdefault(shape, []).append((item, pixels))
    return list(groups.values())


def _lpips(experiment, methods, net, tag: str, batch_size: int, pool, outcome: Outcome) -> int:
    from learned_metrics.lpips import lpips_distance

    todo = list(PairMetrics.objects.filter(colorization__in=_colorizations(experiment, methods))
                .exclude(lpips_weights=tag).select_related("colorization__image").defer("inception").order_by("pk"))
    n = 0
    for batch in _batches(todo, batch_size):
        for group in _same_size_groups(_read_all(pool, lambda row: _pair_pixels(row.colorization), batch, outcome)):
            real = np.stack([pixels[0] for _, pixels in group])
            fake = np.stack([pixels[1] for _, pixels in group])
            distances = lpips_distance(net, real, fake, batch_size=batch_size)
            rows = [row for row, _ in group]
            for row, d in zip(rows, distances.tolist()):
                row.lpips, row.lpips_weights = d, tag
            with transaction.atomic():
                PairMetrics.objects.bulk_update(rows, ["lpips", "lpips_weights"])
            n += len(rows)
    return n


def _inception(experiment, methods, net, tag: str, batch_size: int, pool, outcome: Outcome) -> int:
    from learned_metrics.inception import inception_features

    folder = pairs_dir()

    def features(pixels: list[np.ndarray]) -> list[bytes]:
        return [f.astype(np.float32).tobytes() for f in inception_features(net, np.stack(pixels),
                                                                             batch_size=batch_size)]

    fakes = list(PairMetrics.objects.filter(colorization__in=_colorizations(experiment, methods))
                 .exclude(inception_weights=tag).select_related("colorization").defer("inception").order_by("pk"))
    n = 0
    for batch in _batches(fakes, batch_size):
        for group in _same_size_groups(_read_all(pool, lambda row: read_pixels(folder / row.colorization.file),
                                                 batch, outcome)):
            rows = [row for row, _ in group]
            for row, f in zip(rows, features([pixels for _, pixels in group])):
                row.inception, row.inception_weights = f, tag
            with transaction.atomic():
                PairMetrics.objects.bulk_update(rows, ["inception", "inception_weights"])
            n += len(rows)
    done = RealImageFeatures.objects.filter(image__experiment=experiment, inception_weights=tag).values("image")
    reals = list(ExperimentImage.objects.filter(experiment=experiment).exclude(pk__in=done).order_by("pk"))
    for batch in _batches(reals, batch_size):
        for group in _same_size_groups(_read_all(pool, lambda image: read_pixels(folder / image.real_file),
                                                 batch, outcome)):
            store = [RealImageFeatures(image=image, inception=f, inception_weights=tag)
                     for (image, _), f in zip(group, features([pixels for _, pixels in group]))]
            with transaction.atomic():
                RealImageFeatures.objects.bulk_create(store, update_conflicts=True, unique_fields=["image"],
                                                      update_fields=["inception", "inception_weights"])
    return n


@dataclass(frozen=True)
class Metric:
    """A metric of the report: its name, how it is shown, and which way means "closer to the real image".

    ``direction`` is +1 when a higher value should make raters more likely to take the
    colorization for the real image, -1 when a lower one should; it is fixed before any
    data are seen, so that the agreement with people (`evaluation.metric_agreement`) is
    oriented the same way for every experiment.
    """

    name: str
    label: str
    direction: int
    description: str
    per_pair: bool = True


METRICS = (
    Metric("psnr", "PSNR (dB)", +1, "peak signal-to-noise ratio on sRGB (identical images, whose PSNR is infinite, "
           "are left out of the mean)"),
    Metric("ssim", "SSIM", +1, "structural similarity on sRGB, Wang et al.'s settings (11x11 Gaussian window, "
           "sigma 1.5)"),
    Metric("ciede2000", "CIEDE2000", -1, "mean CIEDE2000 colour difference per pixel"),
    Metric("raw_accuracy_auc", "AuC", +1, "Zhang et al. 2016's raw accuracy: share of pixels with ab error within "
           "a threshold, area under the curve over thresholds 0 to 150"),
    Metric("colorfulness", "colourfulness", +1, "Hasler and Suesstrunk's colourfulness of the colorization (more "
           "vivid taken to look more real, as Zhang et al. 2016 argue)"),
    Metric("colorfulness_gap", "colourfulness gap", -1, "absolute difference between the colourfulness of the "
           "colorization and of the real image"),
    Metric("lpips", "LPIPS", -1, "learned perceptual distance (Zhang et al. 2018), with the weights given"),
    Metric("fid", "FID", -1, "Frechet Inception distance between the method's colorizations and the same images' "
           "real renderings (a statistic of a set, biased upwards with few images)", per_pair=False),
)


@dataclass
class MetricTable:
    """The stored metrics of an experiment's pairs, for the report.

    ``values[name]``: (methods, images) float arrays, NaN where a pair has no value
    (not computed, unreadable, or PSNR of two identical images). ``fake_features`` and
    ``real_features``: FID Inception features, (methods, images, d) and (images, d)
    float32 with NaN rows where missing, or None. ``n_pairs``/``n_computed``: per method,
    its colorizations and those with metrics. ``identical``: per method, pairs of two
    identical images. ``notes``: what is missing or mixed, naming what to run.
    """

    methods: list[str]
    images: list[str]
    values: dict[str, np.ndarray]
    fake_features: np.ndarray | None
    real_features: np.ndarray | None
    n_pairs: dict[str, int]
    n_computed: dict[str, int]
    identical: dict[str, int]
    notes: list[str]


def fingerprint(experiment) -> tuple:
    """What changes when metrics of ``experiment`` are stored: the rows and the last time one was written."""
    stored = PairMetrics.objects.filter(colorization__image__experiment=experiment).aggregate(
        n=Count("pk"), last=Max("computed"))
    return stored["n"], str(stored["last"]), RealImageFeatures.objects.filter(image__experiment=experiment).count()


def table(experiment, *, features: bool = True) -> MetricTable:
    """The metrics stored for ``experiment`` (nothing is computed here: `compute` does that).

    ``features=False`` leaves the FID Inception features in the database (8 KiB a
    pair: half a GiB at ctest10k's scale with six methods, too much for a web page's
    request) and says so in the notes; FID is then not in the table.
    """
    rows = list(PairMetrics.objects.filter(colorization__image__experiment=experiment).values_list(
        "colorization__method__name", "colorization__image__source__path", "psnr", *BASIC[1:], "lpips",
        "lpips_weights", "inception_weights"))
    counts = {}
    for name, path in Colorization.objects.filter(image__experiment=experiment).values_list(
            "method__name", "image__source__path"):
        counts[name] = counts.get(name, 0) + 1
    methods = sorted(counts)
    images = sorted({path for path in ExperimentImage.objects.filter(experiment=experiment)
                     .values_list("source__path", flat=True)})
    m_at, i_at = {m: k for k, m in enumerate(methods)}, {p: k for k, p in enumerate(images)}
    shape = (len(methods), len(images))
    values = {metric.name: np.full(shape, np.nan) for metric in METRICS if metric.per_pair}
    notes: list[str] = []
    n_computed = dict.fromkeys(methods, 0)
    identical = dict.fromkeys(methods, 0)
    lpips_tags = {row[-2] for row in rows if row[-2]}
    for name, path, psnr, ssim, ciede, colour, real_colour, auc, lpips, lpips_tag, _ in rows:
        at = (m_at[name], i_at[path])
        n_computed[name] += 1
        if psnr is None:
            identical[name] += 1
        for key, value in (("psnr", psnr), ("ssim", ssim), ("ciede2000", ciede), ("raw_accuracy_auc", auc),
                           ("colorfulness", colour), ("colorfulness_gap", abs(colour - real_colour))):
            values[key][at] = np.nan if value is None else value
        if lpips is not None and len(lpips_tags) == 1:
            values["lpips"][at] = lpips
    if len(lpips_tags) > 1:
        notes.append("LPIPS: the stored distances come from more than one set of weights and are not shown; "
                     "run vtt_report --metrics with the LPIPS weights to compute them all with one")
    for name in methods:
        missing = counts[name] - n_computed[name]
        if missing:
            notes.append(f"{name}: {missing} of {counts[name]} pairs have no metrics (not computed yet, or their "
                         "images could not be read); vtt_report --metrics computes them and names any unreadable file")
    if features:
        fake_features, real_features = _features(experiment, methods, images, m_at, i_at, notes)
    else:
        fake_features = real_features = None
        if PairMetrics.objects.filter(colorization__image__experiment=experiment).exclude(inception=None).exists():
            notes.append("FID is computed by vtt_report --metrics; this page does not load the Inception features")
    return MetricTable(methods=methods, images=images, values=values, fake_features=fake_features,
                       real_features=real_features, n_pairs=counts, n_computed=n_computed, identical=identical,
                       notes=notes)


def _features(experiment, methods, images, m_at, i_at, notes) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The FID Inception features stored for the experiment (one set of weights), or None."""
    fakes = PairMetrics.objects.filter(colorization__image__experiment=experiment).exclude(inception_weights="")
    tags = set(fakes.values_list("inception_weights", flat=True).distinct())
    tags |= set(RealImageFeatures.objects.filter(image__experiment=experiment)
                .values_list("inception_weights", flat=True).distinct())
    if not tags:
        return None, None
    if len(tags) > 1:
        notes.append("FID: the stored Inception features come from more than one set of weights and are not used; "
                     "run vtt_report --metrics with the Inception weights to compute them all with one")
        return None, None
    fake_features = real_features = None
    for name, path, blob in fakes.values_list("colorization__method__name", "colorization__image__source__path",
                                              "inception"):
        f = np.frombuffer(bytes(blob), dtype=np.float32)
        if fake_features is None:
            fake_features = np.full((len(methods), len(images), f.size), np.nan, dtype=np.float32)
        fake_features[m_at[name], i_at[path]] = f
    for path, blob in RealImageFeatures.objects.filter(image__experiment=experiment).values_list(
            "image__source__path", "inception"):
        f = np.frombuffer(bytes(blob), dtype=np.float32)
        if real_features is None:
            real_features = np.full((len(images), f.size), np.nan, dtype=np.float32)
        real_features[i_at[path]] = f
    if fake_features is None or real_features is None:
        return None, None
    return fake_features, real_features

