"""Train a colorizer and write its checkpoint: ``python -m colorizers.train`` as a manage.py command."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from colorizers import train as train_cli
from colorizers.checkpoint import sha256_file
from colorizers.distributed import from_environment
from vtt.management.help import KeepLinesFormatter


class Command(BaseCommand):
    help = (
        "Train a registered colorizer on demo, folder or ImageNet-train photos with its paper's optimiser "
        "and write a checkpoint for generate_pairs --checkpoint NAME=PATH (same options as python -m colorizers.train; "
        "on several GPUs: torchrun --standalone --nproc-per-node N manage.py train_colorizer ...)."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("formatter_class", KeepLinesFormatter)
        kwargs.setdefault("epilog", train_cli.settings_epilog())
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        train_cli.add_arguments(parser)

    def handle(self, *args, **options):
        values = {name: options[name] for name in train_cli.OPTIONS}
        verbose = options["verbosity"] > 0
        try:
            out = train_cli.run(values, log=self.stdout.write if verbose else lambda line: None, progress=verbose)
        except (ValueError, OSError, FloatingPointError) as exc:   # bad option or data, unwritable --out, NaN
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            raise CommandError("interrupted (a checkpoint of the last finished step was written)") from None
        if verbose and from_environment().rank == 0:      # under torchrun, rank 0 wrote the checkpoint
            self.stdout.write(self.style.SUCCESS(f"sha256 {sha256_file(out)}"))
