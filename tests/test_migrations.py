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


@pytest.mark.django_db(transaction=True)
def test_0008_gives_places_their_method_and_image_and_raters_in_progress_their_methods():
    apps = migrate([("vtt", "0007_outcomes")])
    Experiment, Method = apps.get_model("vtt", "Experiment"), apps.get_model("vtt", "Method")
    SourceImage, ExperimentImage = apps.get_model("vtt", "SourceImage"), apps.get_model("vtt", "ExperimentImage")
    Colorization, Rater, Slot = (apps.get_model("vtt", n) for n in ("Colorization", "Rater", "Slot"))
    experiment = Experiment.objects.create(slug="old", title="old", state="open")
    tested, control = (Method.objects.create(experiment=experiment, name=n, role=r)
                       for n, r in (("b_tested", "tested"), ("a_control", "calibration")))
    Method.objects.create(experiment=experiment, name="grayscale", role="catch")
    images = [ExperimentImage.objects.create(
        experiment=experiment, real_file=f"{i}" * 32 + ".jpg", real_sha256=f"real{i}",
        source=SourceImage.objects.create(split="demo", path=f"{i}.jpg", sha256=f"{i}" * 64, width=9, height=9))
        for i in range(2)]
    pairs = {(m.name, i): Colorization.objects.create(image=images[i], method=m, file=f"{m.name}{i}.jpg", seed=0,
                                                      sha256=f"real{i}" if (m, i) == (control, 1) else f"{m.name}{i}")
             for m in (tested, control) for i in range(2)}
    for (name, i), colorization in pairs.items():
        for index in range(2):  # the identical pair (a_control on image 1): one place filled, one free
            Slot.objects.create(experiment=experiment, colorization=colorization, index=index, order=index,
                                filled=index == 0)
    in_progress = Rater.objects.create(experiment=experiment, token="p" * 32)
    single = Rater.objects.create(experiment=experiment, token="s" * 32, method=tested)
    finished = Rater.objects.create(experiment=experiment, token="f" * 32, finished=timezone.now(), outcome="completed")

    try:
        apps = migrate([("vtt", "0008_slot_pick")])
        Slot, Rater = apps.get_model("vtt", "Slot"), apps.get_model("vtt", "Rater")
        assert Slot.objects.count() == 7  # the free place of the identical pair is gone, the filled one kept
        assert not Slot.objects.filter(colorization_id=pairs["a_control", 1].pk, filled=False).exists()
        for slot in Slot.objects.select_related("colorization"):
            assert (slot.method_id, slot.image_id) == (slot.colorization.method_id, slot.colorization.image_id)
        assert Rater.objects.get(pk=in_progress.pk).methods == sorted([tested.pk, control.pk])
        assert Rater.objects.get(pk=single.pk).methods == [tested.pk]
        assert Rater.objects.get(pk=finished.pk).methods == []
        orders = list(apps.get_model("vtt", "Colorization").objects.values_list("order", flat=True))
        assert len(set(orders)) == 4 and all(0 <= o < 2**31 for o in orders)  # a random rank each
    finally:
        executor = MigrationExecutor(connection)
        migrate(executor.loader.graph.leaf_nodes())
