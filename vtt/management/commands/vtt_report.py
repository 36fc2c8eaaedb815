"""Print an experiment's Visual Turing Test scores, one row per method."""
from __future__ import annotations

import csv
import json

from django.core.management.base import BaseCommand, CommandError

from vtt import report, selectors
from vtt.models import Experiment


class Command(BaseCommand):
    help = (
        "Report the VTT score of each method of an experiment: the fraction of scored trials in which the "
        "rater picked the colorized image (a perfect method scores 50%), with a confidence interval."
    )

    def add_arguments(self, parser):
        parser.add_argument("--experiment", required=True, metavar="SLUG", help="Slug of the experiment to report.")
        parser.add_argument(
            "--ci-method", choices=["bootstrap", "wilson"], default="bootstrap",
            help="Interval: 'bootstrap' resamples images and raters independently (right for crossed designs, "
            "where raters and images recur); 'wilson' treats trials as independent. Default: bootstrap.",
        )
        parser.add_argument("--confidence", type=float, default=0.95, help="Confidence level of the intervals. Default: 0.95.")
        parser.add_argument("--n-boot", type=int, default=2000, help="Bootstrap resamples. Default: 2000.")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the bootstrap. Default: 0.")
        parser.add_argument("--format", choices=["table", "json", "csv"], default="table", help="Output format. Default: table.")

    def handle(self, *args, **options):
        experiment = Experiment.objects.filter(slug=options["experiment"]).first()
        if experiment is None:
            known = ", ".join(Experiment.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"no experiment {options['experiment']!r} (known: {known})")
        rows = selectors.judgments(experiment=experiment)
        try:
            table = report.method_scores(
                rows, ci_method=options["ci_method"], confidence=options["confidence"],
                n_boot=options["n_boot"], seed=options["seed"],
            ) if rows else []
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        fmt = options["format"]
        if fmt == "json":
            self.stdout.write(json.dumps({"experiment": experiment.slug, "methods": table}, indent=2))
        elif fmt == "csv":
            fields = ["method", "n_trials", "n_images", "n_raters", "vtt", "ci_low", "ci_high", "ci_method", "confidence"]
            writer = csv.DictWriter(self.stdout, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(table)
        else:
            self._table(experiment, table)

    def _table(self, experiment: Experiment, table: list[dict]) -> None:
        self.stdout.write(f"{experiment.title} ({experiment.slug})")
        if not table:
            self.stdout.write(self.style.WARNING("no answered scored trials yet"))
            return
        level = f"{table[0]['confidence']:.0%}"
        header = f"{'method':<20} {'trials':>7} {'images':>7} {'raters':>7} {'VTT':>7}  {level} interval ({table[0]['ci_method']})"
        self.stdout.write(header)
        for row in table:
            self.stdout.write(
                f"{row['method']:<20} {row['n_trials']:>7} {row['n_images']:>7} {row['n_raters']:>7} "
                f"{row['vtt']:>7.1%}  [{row['ci_low']:.1%}, {row['ci_high']:.1%}]"
            )
