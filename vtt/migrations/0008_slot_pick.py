"""The place pick reads one table through one index: a slot carries its colorization's method and image, and a
rater the ids of the methods its scored trials come from; practice and catch pairs are drawn through an index on
a random rank of each colorization."""

import django.db.models.deletion
import vtt.models
from django.db import migrations, models
from django.db.models import F, OuterRef, Subquery

SCORED_ROLES = ("tested", "calibration")


def copy_method_and_image(apps, schema_editor):
    Slot = apps.get_model("vtt", "Slot")
    Colorization = apps.get_model("vtt", "Colorization")
    of = Colorization.objects.filter(pk=OuterRef("colorization_id"))
    Slot.objects.update(method_id=Subquery(of.values("method_id")[:1]), image_id=Subquery(of.values("image_id")[:1]))


def no_places_for_identical_pairs(apps, schema_editor):
    """The free places of pairs of two identical images (made before opening refused such pairs) go: the pick
    never checks the files' hashes, it relies on no place existing for them (`vtt.services.slots_sync`)."""
    Slot = apps.get_model("vtt", "Slot")
    Slot.objects.filter(filled=False, colorization__sha256=F("colorization__image__real_sha256")).exclude(
        colorization__sha256="").delete()


def random_ranks(apps, schema_editor):
    """A random rank for each existing colorization (AddField gave them all the same one)."""
    table = apps.get_model("vtt", "Colorization")._meta.db_table
    random = ("floor(random() * 2147483648)::integer" if schema_editor.connection.vendor == "postgresql"
              else "abs(random()) % 2147483648")
    schema_editor.execute(f'UPDATE {table} SET "order" = {random}')


def methods_of_raters_in_progress(apps, schema_editor):
    """What the engine read from the methods table for each scored trial, once for each rater still in a session."""
    Rater = apps.get_model("vtt", "Rater")
    Method = apps.get_model("vtt", "Method")
    for rater in Rater.objects.filter(finished__isnull=True, declined__isnull=True).only("id", "method_id",
                                                                                          "experiment_id"):
        if rater.method_id:
            ids = [rater.method_id]
        else:
            ids = list(Method.objects.filter(experiment_id=rater.experiment_id, role__in=SCORED_ROLES)
                       .order_by("id").values_list("id", flat=True))
        Rater.objects.filter(pk=rater.pk).update(methods=ids)


class Migration(migrations.Migration):

    dependencies = [
        ('vtt', '0007_outcomes'),
    ]

    operations = [
        migrations.AddField(
            model_name='rater',
            name='methods',
            field=models.JSONField(blank=True, default=list, help_text="Ids of the rated methods this rater's scored trials come from, fixed when the rater starts (the one method of a single-method design): the engine reads them with the rater's row."),
        ),
        migrations.AddField(
            model_name='slot',
            name='method',
            field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='vtt.method'),
        ),
        migrations.AddField(
            model_name='slot',
            name='image',
            field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='vtt.experimentimage'),
        ),
        migrations.RunPython(copy_method_and_image, migrations.RunPython.noop),
        migrations.AddField(
            model_name='colorization',
            name='order',
            field=models.PositiveIntegerField(default=vtt.models.random_rank, help_text='Random rank: a practice or catch trial takes, of one method, the first pair from a random point of this order (`vtt.services`), through one index instead of shuffling every pair.'),
        ),
        migrations.RunPython(random_ranks, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='colorization',
            index=models.Index(fields=['method', 'order'], name='colorization_draw_idx'),
        ),
        migrations.RunPython(no_places_for_identical_pairs, migrations.RunPython.noop),
        migrations.RunPython(methods_of_raters_in_progress, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='slot',
            name='method',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='vtt.method'),
        ),
        migrations.AlterField(
            model_name='slot',
            name='image',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='vtt.experimentimage'),
        ),
        migrations.RemoveIndex(
            model_name='slot',
            name='slot_free_idx',
        ),
        migrations.AddIndex(
            model_name='slot',
            index=models.Index(condition=models.Q(('filled', False)), fields=['experiment', 'method', 'index', 'order'], name='slot_pick_idx'),
        ),
    ]
