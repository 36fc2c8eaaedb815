"""Open experiments of any size made directly in the database, for the serving benchmarks.

`generate_pairs` renders every pair, which at ctest10k's scale (10,000 images x 5
methods) takes a GPU; what serving costs does not depend on the pictures. Here the
rows are made by bulk inserts and ``files`` distinct JPEGs per side are written once
and named by the rows in turn, so that every image request of a rater is served from
a real file. The experiment is opened by `vtt.services.experiment_open`, with the
checks and the places (slots) of any other.
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
from django.db import connection
from PIL import Image

from . import services
from .models import Colorization, Experiment, ExperimentImage, Method, SourceImage, new_token, pairs_dir


def _jpeg(rng: np.random.Generator, size: int, tint: tuple[int, int, int]) -> bytes:
    pixels = rng.integers(0, 256, (8, 8, 3)).astype(np.int16) + np.array(tint)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _write(data: bytes) -> tuple[str, str]:
    """Store ``data`` under a new random name in the pairs folder; (name, sha256)."""
    name = f"{new_token()}.jpg"
    (pairs_dir() / name).write_bytes(data)
    return name, hashlib.sha256(data).hexdigest()


def synthetic_experiment(slug: str, *, images: int, methods: int, k: int, trials_per_rater: int = 40,
                         catch_trial_rate: float = 0.1, files: int = 100, size: int = 64) -> Experiment:
    """An open experiment ``slug`` of ``images`` images x ``methods`` rated methods, K = ``k``, a catch method
    (``grayscale``), no practice trials; ``files`` real and ``files`` colorized JPEGs of ``size`` px."""
    pairs_dir().mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    real = [_write(_jpeg(rng, size, (0, 0, 0))) for _ in range(files)]
    tinted = [_write(_jpeg(rng, size, (40, 0, -40))) for _ in range(files)]
    experiment = services.experiment_create(slug=slug, title=f"Synthetic: {images} images x {methods} methods")
    services.experiment_configure(experiment=experiment, raters_per_pair=k, trials_per_rater=trials_per_rater,
                                  practice_trials=0, catch_trial_rate=catch_trial_rate)
    sources = SourceImage.objects.bulk_create(
        [SourceImage(split=f"synthetic:{slug}", path=f"{i:06d}.jpg", sha256=f"{i:064x}", width=size, height=size)
         for i in range(images)], batch_size=5000)
    rows = ExperimentImage.objects.bulk_create(
        [ExperimentImage(experiment=experiment, source=source, real_file=real[i % files][0],
                         real_sha256=real[i % files][1]) for i, source in enumerate(sources)], batch_size=5000)
    roles = [(f"method{m}", Method.Role.TESTED) for m in range(methods)] + [("grayscale", Method.Role.CATCH)]
    for m, (name, role) in enumerate(roles):
        method = Method.objects.create(experiment=experiment, name=name, kind=Method.Kind.IMPORTED, role=role)
        Colorization.objects.bulk_create(
            [Colorization(image=row, method=method, file=tinted[(i + m) % files][0], sha256=tinted[(i + m) % files][1],
                          seed=0) for i, row in enumerate(rows)], batch_size=5000)
    services.experiment_open(experiment=Experiment.objects.get(pk=experiment.pk))
    return Experiment.objects.get(pk=experiment.pk)


def settle() -> None:
    """On PostgreSQL, ``VACUUM ANALYZE``: what autovacuum does soon after an experiment's bulk inserts, done now so
    that it does not run during a measurement (outside a transaction)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
