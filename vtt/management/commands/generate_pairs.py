"""Render an experiment's pairs: source images through every chosen colorizer, or import results.

This command does the images only: the split, the image size, the methods and how they run. A study's
settings (title, raters per pair, trials per rater, timing, what raters see, panel codes, ...) and its
state are `manage.py experiment configure|pilot|open|pause|close SLUG`'s, as in the admin.

A missing experiment is created here as a draft with the model's defaults (title: the slug), so that
image work needs no step before it. It also gets a new random completion code (`new_completion_code`),
here rather than in `experiment create`, since this is where a new user's experiment is born: their
flow, `generate_pairs` then `experiment open`, gives raters who finish a code with no
`experiment configure --completion-code` (`experiment create` takes the code its option gives).
"""
from __future__ import annotations

import os
import sys

import torch
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from colorizers import describe_inference_options, get_colorizer, list_colorizers
from colorizers.progress import progress
from colorizers.train import parse_config
from vtt import generation, rendering, services, sources
from vtt.management import experiments
from vtt.management.help import KeepLinesFormatter
from vtt.models import Experiment, new_completion_code

# Colorizers whose output is the real image itself: left out of the default methods.
IDENTICAL_TO_REAL = {"ground_truth"}


def _settings(values: list[str]) -> dict[str, dict]:
    """``--set NAME.KEY=VALUE`` options as {NAME: {KEY: VALUE}}; VALUE as `train_colorizer --config` reads it."""
    out: dict[str, dict] = {}
    for value in values:
        name, dot, setting = value.partition(".")
        key, sep, raw = setting.partition("=")
        if not (name and dot and key and sep and raw):
            raise CommandError(f"--set takes NAME.KEY=VALUE, e.g. zhang2016.temperature=0.38, got {value!r}")
        out.setdefault(name, {}).update(parse_config([setting]))
    return out


def _checkpoints(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise CommandError(f"--checkpoint takes NAME=PATH, got {value!r}")
        out[name] = path
    return out


class _Ranks:
    """This process's place under ``torchrun`` (RANK / WORLD_SIZE), or a single process."""

    def __init__(self, device_name: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device_name = device_name
        if self.world > 1:
            import torch.distributed as dist

            use_cuda = device_name != "cpu" and torch.cuda.is_available()
            dist.init_process_group("nccl" if use_cuda else "gloo")
            if use_cuda:
                torch.cuda.set_device(self.local)
                self.device_name = f"cuda:{self.local}"

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


class Command(BaseCommand):
    help = (
        "Turn a split of source images into an experiment's rated pairs: each image's real colours and "
        "each method's colorization, rendered by one code path and stored under random names; or import "
        "colorizations made elsewhere (--import-dir). Idempotent and resumable: a rerun with the same "
        "arguments completes what is missing and adds nothing else. Under torchrun the images are sharded "
        "across the ranks.\n\n"
        "Images only: a missing experiment is created as a draft with the model's defaults (title: the slug, "
        "a random completion code). Its study settings (title, raters per pair, trials per rater, timing, "
        "display size, codes, ...) are set with `manage.py experiment configure SLUG --SETTING VALUE`, and it "
        "is opened to raters with `manage.py experiment open SLUG` (or `experiment pilot SLUG`)."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("formatter_class", KeepLinesFormatter)
        kwargs.setdefault("epilog", "inference settings (--set NAME.KEY=VALUE):\n" + describe_inference_options())
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument(
            "--experiment", required=True,
            help="Slug of the experiment; created as a draft if it does not exist (title: the slug; its study "
            "settings: `manage.py experiment configure SLUG`).",
        )
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
            "plus those given a --checkpoint, but ground_truth: it renders the real image byte for byte, and raters "
            "are never shown a pair of two identical images (opening refuses it)." % ", ".join(list_colorizers()),
        )
        parser.add_argument(
            "--checkpoint", action="append", default=[], metavar="NAME=PATH",
            help="Trained weights of colorizer NAME; repeat for several methods.",
        )
        parser.add_argument(
            "--set", action="append", default=[], dest="inference", metavar="NAME.KEY=VALUE",
            help="An inference setting of colorizer NAME, e.g. zhang2016.temperature=0.38; repeat for several. "
            "Validated by the colorizer and recorded in the method's provenance. The settings are listed below.",
        )
        parser.add_argument(
            "--size", type=int, default=256,
            help="Side of the square images, in pixels: set on a new experiment (or one without images), then "
            "fixed. Default: 256.",
        )
        parser.add_argument("--batch-size", type=int, default=32, help="Images per colorizer call. Default: 32.")
        parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="Where the colorizers run. Default: auto (CUDA when available).")
        parser.add_argument(
            "--precision", choices=["auto", "fp32", "bf16"], default="auto",
            help="Colorizers under bf16 autocast or in fp32. Default: auto (bf16 on CUDA, fp32 on CPU).",
        )
        parser.add_argument(
            "--workers", type=int, default=min(8, os.cpu_count() or 1),
            help="Processes that decode and resize source images. Default: the number of CPUs, at most 8.",
        )
        parser.add_argument("--threads", type=int, default=4, help="Threads that encode and write JPEGs. Default: 4.")
        parser.add_argument(
            "--import-dir", metavar="PATH",
            help="Register colorizations produced elsewhere: one image per source of the experiment, named after "
            "it (ILSVRC2012_val_00000293.png), at the source's size or the experiment's. Needs --method-name.",
        )
        parser.add_argument("--method-name", help="Name of the imported method in reports, e.g. 'ddcolor'.")

    def handle(self, *args, **options):
        for option in ("batch_size", "threads"):
            if options[option] < 1:
                raise CommandError(f"--{option.replace('_', '-')} must be at least 1, got {options[option]}")
        if options["workers"] < 0:
            raise CommandError(f"--workers must be 0 or more, got {options['workers']}")
        if not 32 <= options["size"] <= 1024:
            raise CommandError(f"--size must be between 32 and 1024, got {options['size']}")
        if options["import_dir"]:
            return self._import(options)
        if options["method_name"]:
            raise CommandError("--method-name names an imported method: use it with --import-dir")
        checkpoints = _checkpoints(options["checkpoint"])
        settings = _settings(options["inference"])
        if options["methods"]:
            names = [n.strip() for n in options["methods"].split(",") if n.strip()]
        else:
            names = [n for n in list_colorizers()
                     if n not in IDENTICAL_TO_REAL and (not get_colorizer(n).needs_checkpoint or n in checkpoints)]
        for option, given in (("--checkpoint", checkpoints), ("--set", settings)):
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise CommandError(f"{option} given for {', '.join(unknown)}, which is not among --methods {', '.join(names)}")
        ranks = _Ranks(options["device"])
        try:
            try:
                refs = sources.resolve(options["split"], imagenet_val=options["imagenet_val"], limit=options["limit"], seed=options["seed"])
                device = generation.resolve_device(options["device"]) if ranks.world == 1 else torch.device(ranks.device_name)
                plans = [generation.load_plan(name, checkpoints.get(name), device, settings.get(name)) for name in names]
            except (sources.SourceError, generation.GenerationError) as exc:
                raise CommandError(str(exc)) from None
            precision = options["precision"]
            if precision == "auto":
                precision = "bf16" if device.type == "cuda" else "fp32"
            if ranks.rank == 0:
                experiment = self._experiment(options)
            ranks.barrier()
            experiment = Experiment.objects.get(slug=options["experiment"])
            verbose = options["verbosity"] >= 1
            if verbose:
                shard = f" (rank {ranks.rank} of {ranks.world})" if ranks.world > 1 else ""
                self.stdout.write(
                    f"{experiment.slug}: {len(refs)} images of {options['split']} x {len(plans)} methods "
                    f"({', '.join(names)}) at {experiment.image_size} px on {device}, {precision}{shard}"
                )
            with progress(total=len(refs[ranks.rank::ranks.world]), desc=f"{experiment.slug}", unit="img",
                          enabled=verbose, file=sys.stderr) as bar:
                try:
                    report = generation.generate(
                        experiment, refs, plans, seed=options["seed"], batch_size=options["batch_size"],
                        device=device, workers=options["workers"], threads=options["threads"], precision=precision,
                        shard=(ranks.rank, ranks.world), progress=bar.update,
                    )
                except generation.GenerationError as exc:
                    raise CommandError(str(exc)) from None
            self._record_skipped(experiment, report.skipped)
            ranks.barrier()
            if ranks.rank == 0:
                self._finish(experiment)
            self.stdout.write(self.style.SUCCESS(
                f"{experiment.slug}: {report.images_added} images and {report.colorizations_added} colorizations added, "
                f"{report.colorizations_present} already present, {len(report.skipped)} skipped; "
                f"state {Experiment.objects.get(pk=experiment.pk).state}"
            ))
        finally:
            ranks.close()

    def _record_skipped(self, experiment: Experiment, skipped: dict[str, str]) -> None:
        if not skipped:
            return
        with transaction.atomic():
            locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
            locked.preprocessing = {**locked.preprocessing, "skipped": {**locked.preprocessing.get("skipped", {}), **skipped}}
            locked.save(update_fields=["preprocessing"])
        for key, reason in skipped.items():
            self.stdout.write(self.style.WARNING(f"skipped {key}: {reason}"))

    def _finish(self, experiment: Experiment) -> None:
        experiment.refresh_from_db()
        try:
            if experiment.state in services.RUNNING:
                services.slots_sync(experiment=experiment)  # new pairs of a running experiment get their K places
        except services.TrialRejected as exc:
            raise CommandError(str(exc)) from None

    def _import(self, options) -> None:
        if not options["method_name"]:
            raise CommandError("--import-dir needs --method-name NAME")
        if options["methods"] or options["checkpoint"]:
            raise CommandError("--import-dir registers one imported method: leave out --methods and --checkpoint")
        experiment = experiments.named(options["experiment"], hint="generate its pairs before importing a method")
        keys = list(experiment.images.values_list("source__path", flat=True))
        try:
            paths = sources.locate(experiment.split, keys, imagenet_val=options["imagenet_val"])
            report = generation.import_results(experiment, options["import_dir"], options["method_name"],
                                               source_paths=paths, threads=options["threads"])
        except (sources.SourceError, generation.GenerationError) as exc:
            raise CommandError(str(exc)) from None
        for key, problem in report.problems.items():
            self.stdout.write(self.style.WARNING(f"not imported {key}: {problem}"))
        self._finish(experiment)
        self.stdout.write(self.style.SUCCESS(
            f"{experiment.slug}/{options['method_name']}: {report.added} colorizations imported, "
            f"{report.present} already present, {len(report.problems)} not imported"
        ))

    def _experiment(self, options) -> Experiment:
        # What the experiment records of its images: set on a new one, or on one made without images.
        images = {"split": options["split"], "image_size": options["size"],
                  "preprocessing": {**rendering.PREPROCESSING, "size": options["size"]}}
        experiment, created = Experiment.objects.get_or_create(
            slug=options["experiment"],
            # A draft with the model's defaults; `manage.py experiment configure` sets the study.
            defaults={"title": options["experiment"], **images, "completion_code": new_completion_code()},
        )
        if not created and not experiment.split and not experiment.images.exists():
            # Made by `manage.py experiment create` (settings only): its images are the ones named here.
            for field, value in images.items():
                setattr(experiment, field, value)
            experiment.save(update_fields=list(images))
        if not created and experiment.split != options["split"]:
            raise CommandError(
                f"experiment {experiment.slug!r} rates images of {experiment.split!r}, not {options['split']!r}"
            )
        if not created and experiment.image_size != options["size"]:
            raise CommandError(
                f"experiment {experiment.slug!r} renders at {experiment.image_size} px; --size {options['size']} would mix sizes"
            )
        return experiment
