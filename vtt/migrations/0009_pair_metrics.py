"""The automatic metrics of each pair, stored once per colorization (`vtt.pair_metrics`), and the FID Inception
features of each real image."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('vtt', '0008_slot_pick'),
    ]

    operations = [
        migrations.CreateModel(
            name='PairMetrics',
            fields=[
                ('colorization', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='metrics', serialize=False, to='vtt.colorization')),
                ('version', models.PositiveSmallIntegerField(help_text='`vtt.pair_metrics.VERSION` of the definitions used.')),
                ('psnr', models.FloatField(help_text='dB on sRGB; empty for two identical images (infinite).', null=True)),
                ('ssim', models.FloatField()),
                ('ciede2000', models.FloatField(help_text='Mean CIEDE2000 per pixel.')),
                ('colorfulness', models.FloatField(help_text="Hasler and Suesstrunk's colourfulness of the colorization.")),
                ('real_colorfulness', models.FloatField(help_text='The same, of the real image.')),
                ('raw_accuracy_auc', models.FloatField(help_text="Zhang et al. 2016's raw-accuracy AuC, 0 to 1.")),
                ('lpips', models.FloatField(blank=True, null=True)),
                ('lpips_weights', models.CharField(blank=True, help_text='Network and SHA-256 of its weights.', max_length=80)),
                ('inception', models.BinaryField(blank=True, help_text='FID Inception pool features, float32.', null=True)),
                ('inception_weights', models.CharField(blank=True, help_text='SHA-256 of the Inception weights.', max_length=64)),
                ('computed', models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.CreateModel(
            name='RealImageFeatures',
            fields=[
                ('image', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='features', serialize=False, to='vtt.experimentimage')),
                ('inception', models.BinaryField(help_text='FID Inception pool features, float32.')),
                ('inception_weights', models.CharField(help_text='SHA-256 of the Inception weights.', max_length=64)),
            ],
        ),
    ]
