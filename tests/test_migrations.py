"""Migrations keep what is there: the trials and stored files of an experiment made before them."""
from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from tests.conftest import colour_image


def migrate(target: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)
    return executor.loader.project_state(target).apps


@pytest.mark.django_db(transaction=True)
def test_0003_gives_existing_trials_their_own_image_names_and_files_their_hashes(media_root):
    apps = migrate([("vtt", "0002_trials_per_rater_counts_catch_trials")])
    pairs = media_root / "pairs"
    pairs.mkdir(parents=True, exist_ok=True)
    colour_image(0).save(pairs / ("a" * 32 + ".jpg"))
    colour_image(1).save(pairs / ("b" * 32 + ".jpg"))
    Experiment, Method = apps.get_model("vtt", "Experiment"), apps.get_model("vtt", "Method")
    SourceImage, ExperimentImage = apps.get_model("vtt", "SourceImage"), apps.get_model("vtt", "ExperimentImage")
    Colorization, Rater, Trial = (apps.get_model("vtt", n) for n in ("Colorization", "Rater", "Trial"))
    experiment = Experiment.objects.create(slug="old", title="old")
    method = Method.objects.create(experiment=experiment, name="m")
    source = SourceImage.objects.create(split="demo", path="p.jpg", sha256="0" * 64, width=96, height=80)
    image = ExperimentImage.objects.create(experiment=experiment, source=source, real_file="a" * 32 + ".jpg")
    colorization = Colorization.objects.create(image=image, method=method, file="b" * 32 + ".jpg", seed=0)
    missing = Colorization.objects.create(
        image=ExperimentImage.objects.create(
            experiment=experiment, real_file="c" * 32 + ".jpg",
            source=SourceImage.objects.create(split="demo", path="q.jpg", sha256="1" * 64, width=96, height=80)),
        method=method, file="d" * 32 + ".jpg", seed=0)
    rater = Rater.objects.create(experiment=experiment, token="r" * 32)
    for position in (1, 2):
        Trial.objects.create(rater=rater, colorization=colorization, token=f"{position}" * 32, position=position,
                             real_side="L", choice="R", answered=timezone.now())

    apps = migrate([("vtt", "0003_raters_see_and_declare")])
    Trial, Colorization = apps.get_model("vtt", "Trial"), apps.get_model("vtt", "Colorization")
    names = [n for t in Trial.objects.all() for n in (t.left_image, t.right_image)]
    assert len(names) == 4 and len(set(names)) == 4 and all(len(n) == 32 for n in names)
    assert list(Trial.objects.order_by("position").values_list("choice", flat=True)) == ["R", "R"]  # answers kept
    migrated = Colorization.objects.select_related("image").get(pk=colorization.pk)
    assert migrated.sha256 == hashlib.sha256((pairs / ("b" * 32 + ".jpg")).read_bytes()).hexdigest()
    assert migrated.image.real_sha256 == hashlib.sha256((pairs / ("a" * 32 + ".jpg")).read_bytes()).hexdigest()
    gone = Colorization.objects.select_related("image").get(pk=missing.pk)
    assert gone.sha256 == gone.image.real_sha256 == ""  # files not found: unknown, never "identical"
