"""Turn source images and colorizers into an experiment's stored pairs (the one writer of images).

`generate` is idempotent: it registers each source image, real rendering and
colorization exactly once, and a rerun with the same arguments finds everything in
place and writes nothing. A file is written whole (`write_atomic`) before the row
that registers it, so an interrupted run never leaves a half-written file
registered; at worst it leaves an unregistered file, which the rerun does not use.

Seeds: each colorization gets its own generator, seeded from the run's seed, the
method name and the source's content hash (`derive_seed`), so an image's result does
not depend on batching, ordering or resumption.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from django.conf import settings
from django.db import transaction

from colorizers import Colorizer, get_colorizer
from colorizers.checkpoint import sha256_file as checkpoint_sha256

from . import rendering
from .models import Colorization, Experiment, ExperimentImage, Method, SourceImage, new_token
from .sources import SourceRef

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


def pairs_dir() -> Path:
    return Path(settings.MEDIA_ROOT) / "pairs"


def derive_seed(seed: int, method: str, source_sha256: str) -> int:
    """A 63-bit seed for one (run seed, method, source image)."""
    digest = hashlib.sha256(f"{seed}:{method}:{source_sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GenerationError("--device cuda was asked for, but no CUDA device is available")
    if name not in {"cpu", "cuda"}:
        raise GenerationError(f"device must be auto, cuda or cpu, got {name!r}")
    return torch.device(name)


def load_plan(name: str, checkpoint: str | None, device: torch.device) -> MethodPlan:
    """Build registered colorizer ``name`` from its checkpoint (if it takes one)."""
    try:
        cls = get_colorizer(name)
    except ValueError as exc:
        raise GenerationError(str(exc)) from None
    if cls.needs_checkpoint and checkpoint is None:
        raise GenerationError(f"colorizer {name!r} needs a trained checkpoint: --checkpoint {name}=PATH")
    try:
        model = cls.from_checkpoint(checkpoint)
    except (OSError, ValueError) as exc:
        raise GenerationError(f"cannot load {name!r}: {exc}") from None
    sha = checkpoint_sha256(checkpoint) if checkpoint else ""
    return MethodPlan(name, model.to(device).eval(), str(Path(checkpoint).resolve()) if checkpoint else "", sha)


def _method_row(experiment: Experiment, plan: MethodPlan) -> Method:
    params = plan.colorizer.params()
    method, created = Method.objects.get_or_create(
        experiment=experiment,
        name=plan.name,
        defaults={
            "kind": Method.Kind.REGISTERED,
            "colorizer": plan.colorizer.name,
            "checkpoint_sha256": plan.checkpoint_sha256,
            "checkpoint_path": plan.checkpoint_path,
            "params": params,
            "role": CONTROL_ROLES.get(plan.colorizer.name, Method.Role.TESTED),
        },
    )
    if not created and (method.colorizer, method.checkpoint_sha256, method.params) != (
        plan.colorizer.name, plan.checkpoint_sha256, params
    ):
        raise GenerationError(
            f"method {plan.name!r} of experiment {experiment.slug!r} was generated with colorizer "
            f"{method.colorizer!r}, checkpoint sha256 {method.checkpoint_sha256 or 'none'} and params "
            f"{method.params}; this run has {plan.colorizer.name!r}, {plan.checkpoint_sha256 or 'none'}, "
            f"{params}. Use a new method name or a new experiment rather than mixing them."
        )
    return method


def _source_row(ref: SourceRef) -> SourceImage:
    sha = rendering.sha256_file(ref.path)
    source = SourceImage.objects.filter(split=ref.split, path=ref.key).first()
    if source is None:
        from PIL import Image

        with Image.open(ref.path) as probe:
            width, height = probe.size
        source, _ = SourceImage.objects.get_or_create(
            split=ref.split,
            path=ref.key,
            defaults={"class_index": ref.class_index, "sha256": sha, "width": width, "height": height},
        )
    if source.sha256 != sha:
        raise GenerationError(
            f"{ref.path} changed since it was registered (sha256 {source.sha256[:12]}... then, {sha[:12]}... now)"
        )
    return source


def _store(L: torch.Tensor, ab: torch.Tensor) -> str:
    name = f"{new_token()}.jpg"
    rendering.write_atomic(pairs_dir(), name, rendering.encode(L, ab))
    return name


def generate(
    experiment: Experiment,
    sources: list[SourceRef],
    plans: list[MethodPlan],
    *,
    seed: int = 0,
    batch_size: int = 16,
    device: torch.device = torch.device("cpu"),
    progress: Callable[[int], None] | None = None,
) -> GenerationReport:
    """Register ``sources`` in ``experiment`` and colorize each with every plan; see the module doc."""
    report = GenerationReport()
    methods = [(_method_row(experiment, plan), plan) for plan in plans]
    size = experiment.image_size
    for start in range(0, len(sources), batch_size):
        chunk = sources[start : start + batch_size]
        rows: list[tuple[SourceRef, SourceImage]] = []
        for ref in chunk:
            try:
                rows.append((ref, _source_row(ref)))
            except (OSError, rendering.ImageError) as exc:  # unreadable header, vanished file
                report.skipped[ref.key] = str(exc)
        present = {
            image.source_id: image
            for image in ExperimentImage.objects.filter(experiment=experiment, source__in=[s for _, s in rows])
        }
        done = set(
            Colorization.objects.filter(image__in=present.values(), method__in=[m for m, _ in methods])
            .values_list("image__source_id", "method_id")
        )
        todo = [
            (ref, source)
            for ref, source in rows
            if source.id not in present or any((source.id, m.id) not in done for m, _ in methods)
        ]
        report.images_present += len(rows) - len(todo)
        report.colorizations_present += sum((s.id, m.id) in done for _, s in rows for m, _ in methods)
        labs: dict[int, torch.Tensor] = {}
        for ref, source in todo:
            try:
                labs[source.id] = rendering.load_lab(ref.path, size)
            except rendering.ImageError as exc:
                report.skipped[ref.key] = str(exc)
        for ref, source in todo:
            if source.id in labs and source.id not in present:
                lab = labs[source.id]
                real = _store(lab[:1], lab[1:])
                present[source.id], _ = ExperimentImage.objects.get_or_create(
                    experiment=experiment, source=source, defaults={"real_file": real}
                )
                report.images_added += 1
            elif source.id in present:
                report.images_present += 1
        for method, plan in methods:
            batch = [s for _, s in todo if s.id in labs and (s.id, method.id) not in done]
            if not batch:
                continue
            lab = torch.stack([labs[s.id] for s in batch]).to(device)
            seeds = [derive_seed(seed, method.name, s.sha256) for s in batch]
            generators = [torch.Generator(device=device).manual_seed(x) for x in seeds]
            reference = lab[:, 1:] if plan.colorizer.needs_reference else None
            ab = plan.colorizer.colorize(lab[:, :1], generator=generators, reference_ab=reference).cpu()
            lab = lab.cpu()
            new = [
                Colorization(image=present[s.id], method=method, file=_store(lab[i, :1], ab[i]), seed=seeds[i])
                for i, s in enumerate(batch)
            ]
            with transaction.atomic():
                Colorization.objects.bulk_create(new, ignore_conflicts=True)
            report.colorizations_added += len(new)
        if progress is not None:
            progress(len(chunk))
    return report
