"""Render an experiment's pairs: source images through every chosen colorizer."""
from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from colorizers import get_colorizer, list_colorizers
from vtt import generation, rendering, services, sources
from vtt.models import Experiment


def _checkpoints(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise CommandError(f"--checkpoint takes NAME=PATH, got {value!r}")
        out[name] = path
    return out


class Command(BaseCommand):
    help = (
        "Turn a split of source images into an experiment's rated pairs: each image's real colours and "
        "each method's colorization, rendered by one code path and stored under random names. "
        "Idempotent: a rerun with the same arguments adds nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--experiment", required=True, help="Slug of the experiment; created if it does not exist.")
        parser.add_argument("--title", help="Title of a new experiment (default: the slug).")
        parser.add_argument(
            "--split",
            default="demo",
            help="Source images: 'demo' (the bundled photos the demo models never trained on), 'ctest10k' or "
            "'cval1k' (the lists of Larsson et al. 2016, with --imagenet-val), or 'folder:PATH'. Default: demo.",
        )
        parser.add_argument(
            "--imagenet-val",
            metavar="DIR",
            help="ImageNet validation folder, flat (DIR/ILSVRC2012_val_*.JPEG) or by wnid (DIR/n01440764/...).",
        )
        parser.add_argument("--limit", type=int, help="Take this many images of the split, drawn by --seed (PixColor: 500).")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the image draw and of stochastic colorizers. Default: 0.")
        parser.add_argument(
            "--methods",
            help="Comma-separated registered colorizers (known: %s). Default: every one that needs no checkpoint, "
            "plus those given a --checkpoint." % ", ".join(list_colorizers()),
        )
        parser.add_argument(
            "--checkpoint", action="append", default=[], metavar="NAME=PATH",
            help="Trained weights of colorizer NAME; repeat for several methods.",
        )
        parser.add_argument("--raters-per-pair", type=int, default=5, help="Distinct raters per (image, method) pair (new experiments only). Default: 5.")
        parser.add_argument("--trials-per-rater", type=int, default=40, help="Scored trials per rater (new experiments only). Default: 40.")
        parser.add_argument("--size", type=int, default=256, help="Side of the square images raters see (new experiments only). Default: 256.")
        parser.add_argument("--batch-size", type=int, default=16, help="Images per colorizer call. Default: 16.")
        parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="Where the colorizers run. Default: auto (CUDA when available).")
        parser.add_argument("--open", action="store_true", help="Open the experiment to raters when done.")

    def handle(self, *args, **options):
        checkpoints = _checkpoints(options["checkpoint"])
        if options["methods"]:
            names = [n.strip() for n in options["methods"].split(",") if n.strip()]
        else:
            names = [n for n in list_colorizers() if not get_colorizer(n).needs_checkpoint or n in checkpoints]
        unknown = sorted(set(checkpoints) - set(names))
        if unknown:
            raise CommandError(f"--checkpoint given for {', '.join(unknown)}, which is not among --methods {', '.join(names)}")
        if options["batch_size"] < 1:
            raise CommandError(f"--batch-size must be at least 1, got {options['batch_size']}")
        for option in ("raters_per_pair", "trials_per_rater"):
            if options[option] < 1:
                raise CommandError(f"--{option.replace('_', '-')} must be at least 1, got {options[option]}")
        if not 32 <= options["size"] <= 1024:
            raise CommandError(f"--size must be between 32 and 1024, got {options['size']}")
        try:
            refs = sources.resolve(options["split"], imagenet_val=options["imagenet_val"], limit=options["limit"], seed=options["seed"])
            device = generation.resolve_device(options["device"])
            plans = [generation.load_plan(name, checkpoints.get(name), device) for name in names]
        except (sources.SourceError, generation.GenerationError) as exc:
            raise CommandError(str(exc)) from None

        experiment = self._experiment(options)
        verbose = options["verbosity"] >= 1
        if verbose:
            self.stdout.write(
                f"{experiment.slug}: {len(refs)} images of {options['split']} x {len(plans)} methods "
                f"({', '.join(names)}) at {experiment.image_size} px on {device}"
            )
        with tqdm(total=len(refs), unit="img", disable=not verbose, file=sys.stderr) as bar:
            try:
                report = generation.generate(
                    experiment, refs, plans, seed=options["seed"], batch_size=options["batch_size"],
                    device=device, progress=bar.update,
                )
            except generation.GenerationError as exc:
                raise CommandError(str(exc)) from None
        if report.skipped:
            with transaction.atomic():
                experiment.refresh_from_db()
                experiment.preprocessing = {**experiment.preprocessing, "skipped": {
                    **experiment.preprocessing.get("skipped", {}), **report.skipped}}
                experiment.save(update_fields=["preprocessing"])
            for key, reason in report.skipped.items():
                self.stdout.write(self.style.WARNING(f"skipped {key}: {reason}"))
        try:
            if options["open"] and experiment.state == Experiment.State.DRAFT:
                services.experiment_open(experiment=experiment)
            elif experiment.state == Experiment.State.OPEN:
                services.slots_sync(experiment=experiment)  # new pairs of an open experiment get their K places
        except services.TrialRejected as exc:
            raise CommandError(str(exc)) from None
        experiment.refresh_from_db()
        self.stdout.write(self.style.SUCCESS(
            f"{experiment.slug}: {report.images_added} images and {report.colorizations_added} colorizations added, "
            f"{report.colorizations_present} already present, {len(report.skipped)} skipped; state {experiment.state}"
        ))

    def _experiment(self, options) -> Experiment:
        experiment, created = Experiment.objects.get_or_create(
            slug=options["experiment"],
            defaults={
                "title": options["title"] or options["experiment"],
                "split": options["split"],
                "image_size": options["size"],
                "raters_per_pair": options["raters_per_pair"],
                "trials_per_rater": options["trials_per_rater"],
                "preprocessing": {**rendering.PREPROCESSING, "size": options["size"]},
            },
        )
        if not created and experiment.split != options["split"]:
            raise CommandError(
                f"experiment {experiment.slug!r} rates images of {experiment.split!r}, not {options['split']!r}"
            )
        if not created and experiment.image_size != options["size"]:
            raise CommandError(
                f"experiment {experiment.slug!r} renders at {experiment.image_size} px; --size {options['size']} would mix sizes"
            )
        return experiment
