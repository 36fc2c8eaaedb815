"""Turn source images and colorizers into an experiment's stored pairs (the one writer of images).

Pipeline (`generate`): decide what is missing from the rows already registered,
decode and preprocess those sources in DataLoader worker processes (pinned memory
on CUDA), register each source, render its real image, run every colorizer that
still lacks it on the batch (on the device, optionally under bf16 autocast), turn
each result into sRGB on the device, and JPEG-encode and write the files in a pool
of threads (Pillow's encoder releases the GIL).

Idempotent and resumable: every source image, real rendering and colorization is
registered once (unique constraints back this up), a rerun with the same arguments
finds everything in place without reading a single image, and a killed run is
completed by the next. A file is written whole (`rendering.write_atomic`) before
the row that registers it, so an interrupted run never leaves a half-written file
registered; at worst an unregistered file stays in the folder, unused.

Seeds: each colorization gets its own generator, seeded from the run's seed, the
method name and the source's content hash (`derive_seed`), so an image's result does
not depend on batching, sharding, ordering or resumption: the same checkpoint, seed
and inputs give byte-identical images on the same device.

Sharding: ``shard=(rank, world)`` takes every ``world``-th source from ``rank``; the
ranks of ``torchrun`` share nothing but the database, where each (image, method) has
one row.
"""
from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from django.db import transaction
from torch.utils.data import DataLoader

from colorizers import Colorizer, get_colorizer, training
from colorizers.checkpoint import sha256_file as checkpoint_sha256

from . import rendering
from .models import Colorization, Experiment, ExperimentImage, Method, SourceImage, pairs_dir
from .sources import IMAGE_SUFFIXES, SourceRef

# Controls by colorizer: the real chroma calibrates (it must score about 50%), no chroma
# is the obvious wrong answer of catch trials. Every other colorizer is tested.
CONTROL_ROLES = {"ground_truth": Method.Role.CALIBRATION, "grayscale": Method.Role.CATCH}


class GenerationError(ValueError):
    """Arguments that would corrupt an experiment (a changed checkpoint, a changed file, ...)."""


@dataclass
class MethodPlan:
    """A colorizer ready to run, with the provenance recorded on its Method row."""

    name: str
    colorizer: Colorizer
    checkpoint_path: str = ""
    checkpoint_sha256: str = ""


@dataclass
class GenerationReport:
    images_added: int = 0
    images_present: int = 0
    colorizations_added: int = 0
    colorizations_present: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # source key -> reason


def derive_seed(seed: int, method: str, source_sha256: str) -> int:
    """A 63-bit seed for one (run seed, method, source image)."""
    digest = hashlib.sha256(f"{seed}:{method}:{source_sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error (as for training)."""
    try:
        return training.resolve_device(name)
    except training.TrainError as exc:
        raise GenerationError(str(exc)) from None


def load_plan(name: str, checkpoint: str | None, device: torch.device, settings: dict | None = None) -> MethodPlan:
    """Build registered colorizer ``name`` from its checkpoint (if it takes one) with its inference ``settings``.

    The settings (e.g. a decoding temperature) are the colorizer's `inference_options`;
    its ``params()``, recorded on the method, include the values used.
    """
    try:
        cls = get_colorizer(name)
    except ValueError as exc:
        raise GenerationError(str(exc)) from None
    if cls.needs_checkpoint and checkpoint is None:
        raise GenerationError(f"colorizer {name!r} needs a trained checkpoint: --checkpoint {name}=PATH")
    try:
        model = cls.from_checkpoint(checkpoint, **(settings or {}))
    except (OSError, ValueError, TypeError) as exc:
        raise GenerationError(f"cannot load {name!r}: {exc}") from None
    sha = checkpoint_sha256(checkpoint) if checkpoint else ""
    return MethodPlan(name, model.to(device).eval(), str(Path(checkpoint).resolve()) if checkpoint else "", sha)


def method_row(experiment: Experiment, *, name: str, colorizer: str, checkpoint_sha256: str, checkpoint_path: str,
               params: dict, kind: str = Method.Kind.REGISTERED) -> Method:
    """The experiment's method ``name``, created once; a different provenance is refused."""
    method, created = Method.objects.get_or_create(
        experiment=experiment,
        name=name,
        defaults={
            "kind": kind,
            "colorizer": colorizer,
            "checkpoint_sha256": checkpoint_sha256,
            "checkpoint_path": checkpoint_path,
            "params": params,
            "role": CONTROL_ROLES.get(colorizer, Method.Role.TESTED) if kind == Method.Kind.REGISTERED else Method.Role.TESTED,
        },
    )
    if not created and (method.kind, method.colorizer, method.checkpoint_sha256, method.params) != (
        kind, colorizer, checkpoint_sha256, params
    ):
        raise GenerationError(
            f"method {name!r} of experiment {experiment.slug!r} was generated with colorizer "
            f"{method.colorizer!r}, checkpoint sha256 {method.checkpoint_sha256 or 'none'} and params "
            f"{method.params}; this run has {colorizer!r}, {checkpoint_sha256 or 'none'}, "
            f"{params}. Use a new method name or a new experiment rather than mixing them."
        )
    return method


def _source_row(ref: SourceRef, item: dict) -> SourceImage:
    source, _ = SourceImage.objects.get_or_create(
        split=ref.split,
        path=ref.key,
        defaults={"class_index": ref.class_index, "sha256": item["sha256"], "width": item["width"],
                  "height": item["height"]},
    )
    if source.sha256 != item["sha256"]:
        raise GenerationError(
            f"{ref.path} changed since it was registered (sha256 {source.sha256[:12]}... then, "
            f"{item['sha256'][:12]}... now)"
        )
    return source


def generate(
    experiment: Experiment,
    sources: list[SourceRef],
    plans: list[MethodPlan],
    *,
    seed: int = 0,
    batch_size: int = 16,
    device: torch.device = torch.device("cpu"),
    workers: int = 0,
    threads: int = 4,
    precision: str = "fp32",
    shard: tuple[int, int] = (0, 1),
    progress: Callable[[int], None] | None = None,
) -> GenerationReport:
    """Register ``sources`` in ``experiment`` and colorize each with every plan; see the module doc."""
    if precision not in {"fp32", "bf16"}:
        raise GenerationError(f"precision must be fp32 or bf16, got {precision!r}")
    report = GenerationReport()
    methods = [
        (method_row(experiment, name=p.name, colorizer=p.colorizer.name, checkpoint_sha256=p.checkpoint_sha256,
                    checkpoint_path=p.checkpoint_path, params=p.colorizer.params()), p)
        for p in plans
    ]
    rank, world = shard
    sources = sources[rank::world]
    # What is missing, from two queries, before any image is read.
    images = {
        (split, path): (image_id, source_id)
        for image_id, source_id, split, path in ExperimentImage.objects.filter(experiment=experiment).values_list(
            "id", "source_id", "source__split", "source__path")
    }
    done = set(Colorization.objects.filter(image__experiment=experiment).values_list("image_id", "method_id"))
    todo = []
    for ref in sources:
        image = images.get((ref.split, ref.key))
        missing = [m.id for m, _ in methods if image is None or (image[0], m.id) not in done]
        report.colorizations_present += len(methods) - len(missing)
        if image is not None and not missing:
            report.images_present += 1
            if progress is not None:
                progress(1)
        else:
            todo.append(ref)
    if not todo:
        return report

    loader = DataLoader(rendering.SourceDataset(todo, experiment.image_size), batch_size=batch_size, num_workers=workers,
                        collate_fn=rendering.collate_list, pin_memory=device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    writer = rendering.JpegWriter(threads, pairs_dir())
    try:
        for batch in loader:
            usable = []
            for item in batch:
                ref = todo[item["index"]]
                if item["error"]:
                    report.skipped[ref.key] = item["error"]
                else:
                    usable.append((ref, item, _source_row(ref, item)))
            if not usable:
                continue
            lab = torch.stack([item["lab"] for _, item, _ in usable]).to(device, non_blocking=True)
            rows: list[ExperimentImage] = []
            new_real = [i for i, (ref, _, _) in enumerate(usable) if (ref.split, ref.key) not in images]
            if new_real:
                stored = writer.write(rendering.to_srgb8(lab[new_real, :1], lab[new_real, 1:]))
                for i, (name, digest) in zip(new_real, stored):
                    ref, _, source = usable[i]
                    row, _ = ExperimentImage.objects.get_or_create(
                        experiment=experiment, source=source, defaults={"real_file": name, "real_sha256": digest})
                    images[(ref.split, ref.key)] = (row.id, source.id)
                report.images_added += len(new_real)
            report.images_present += len(usable) - len(new_real)
            rows = [images[(ref.split, ref.key)][0] for ref, _, _ in usable]
            for method, plan in methods:
                want = [i for i, image_id in enumerate(rows) if (image_id, method.id) not in done]
                if not want:
                    continue
                seeds = [derive_seed(seed, method.name, usable[i][1]["sha256"]) for i in want]
                generators = [torch.Generator(device=device).manual_seed(x) for x in seeds]
                L = lab[want, :1]
                reference = lab[want, 1:] if plan.colorizer.needs_reference else None
                with autocast:
                    ab = plan.colorizer.colorize(L, generator=generators, reference_ab=reference)
                stored = writer.write(rendering.to_srgb8(L, ab.float()))
                new = [Colorization(image_id=rows[i], method=method, file=name, sha256=digest, seed=s)
                       for i, (name, digest), s in zip(want, stored, seeds)]
                with transaction.atomic():
                    Colorization.objects.bulk_create(new, ignore_conflicts=True)
                done.update((rows[i], method.id) for i in want)
                report.colorizations_added += len(new)
            if progress is not None:
                progress(len(batch))
    finally:
        writer.close()
    return report


@dataclass
class ImportReport:
    added: int = 0
    present: int = 0
    problems: dict[str, str] = field(default_factory=dict)  # source key -> what is wrong with its file


def _imported_files(folder: Path) -> dict[str, Path]:
    """Image files under ``folder`` by stem; a stem found twice is ambiguous and refused."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        if path.stem in found:
            raise GenerationError(f"two files for {path.stem!r} in {folder}: {found[path.stem]} and {path}")
        found[path.stem] = path
    return found


def import_results(experiment: Experiment, folder: str | Path, method_name: str, *, source_paths: dict[str, Path],
                   threads: int = 4) -> ImportReport:
    """Register colorizations made elsewhere, one file per source image named after it.

    A file matches the source whose file name has the same stem (``ILSVRC2012_val_00000293``
    matches ``ILSVRC2012_val_00000293.png``). It must have the source's original size
    (it then goes through the experiment's resize and crop) or already the experiment's
    square size. Only its chroma is kept: it is joined with the source's own L* and
    encoded exactly as the platform's own colorizations, so the pair differs in chroma
    alone. Missing files and mismatched sizes are reported, never substituted.
    ``source_paths`` maps each source key to its file (`sources.locate`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GenerationError(f"import folder not found: {folder}")
    files = _imported_files(folder)
    targets = list(ExperimentImage.objects.filter(experiment=experiment).select_related("source"))
    if not targets:
        raise GenerationError(f"experiment {experiment.slug!r} has no images yet: generate its pairs first")
    matched = {t.id: files.get(Path(t.source.path).stem) for t in targets}
    digest = hashlib.sha256()
    for image_id in sorted(matched):
        if matched[image_id] is not None:
            digest.update(f"{matched[image_id].name}\t{rendering.sha256_file(matched[image_id])}\n".encode())
    method = method_row(experiment, name=method_name, colorizer="", kind=Method.Kind.IMPORTED,
                        checkpoint_sha256=digest.hexdigest(), checkpoint_path=str(folder.resolve()),
                        params={"import_dir": str(folder.resolve())})
    done = set(Colorization.objects.filter(method=method).values_list("image_id", flat=True))
    report = ImportReport(present=len(done))
    size = experiment.image_size
    writer = rendering.JpegWriter(threads, pairs_dir())
    try:
        for target in targets:
            key = target.source.path
            if target.id in done:
                continue
            path = matched[target.id]
            if path is None:
                report.problems[key] = f"no file named {Path(key).stem}.* in {folder}"
                continue
            try:
                image = rendering.load_rgb(path)
                if image.size == (target.source.width, target.source.height):
                    ab = rendering.preprocess(image, size)[1:]
                elif image.size == (size, size):
                    ab = rendering.preprocess(image, size)[1:]  # already square at size: resize is the identity
                else:
                    report.problems[key] = (
                        f"{path.name} is {image.width}x{image.height}; expected the source's "
                        f"{target.source.width}x{target.source.height} or {size}x{size}"
                    )
                    continue
                L = rendering.load_lab(source_paths[key], size)[:1]
            except (OSError, rendering.ImageError) as exc:
                report.problems[key] = str(exc)
                continue
            ((name, digest),) = writer.write(rendering.to_srgb8(L[None], ab[None]))
            Colorization.objects.get_or_create(image=target, method=method,
                                               defaults={"file": name, "sha256": digest, "seed": 0})
            report.added += 1
    finally:
        writer.close()
    return report
