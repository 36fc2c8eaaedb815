"""Report VTT scores, comparisons and rater quality of an experiment or of a CSV of judgments."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from vtt import judgments, pair_metrics, report, report_html
from vtt.management import experiments


def _choices(methods: dict[str, str]) -> str:
    return "; ".join(f"'{name}' {what}" for name, what in methods.items())


class Command(BaseCommand):
    help = (
        "Report the VTT score of each method (the fraction of scored trials in which the rater picked the "
        "colorized image; a perfect method scores 50%) with confidence intervals, pairwise comparisons, rater "
        "quality and exclusions (and, with adaptive exposures, each method's HYPE_time threshold exposure), from an "
        "experiment in the database or from a CSV of judgments."
    )
    # A read-only report: the system checks would import the whole site (views, colorizers, torch) for nothing.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--experiment", metavar="SLUG", help="Slug of the experiment to report.")
        source.add_argument(
            "--judgments-csv", metavar="FILE",
            help="CSV of judgments: the platform's export, or any CSV with the columns rater, image, method, "
            "chose_generated (1, 0, blank if unanswered) and optionally trial_kind (scored, catch, practice), "
            "class_index, counted, position, exposure_ms, focus_lost. Thresholds are reported when some rater's "
            "trials of a method show more than one exposure (a staircase).",
        )
        parser.add_argument(
            "--ci-method", choices=list(report.CI_METHODS), default=report.DEFAULT_CI_METHOD,
            help="Interval of each method's VTT: " + _choices(report.CI_METHODS)
            + f". Default: {report.DEFAULT_CI_METHOD}.",
        )
        parser.add_argument(
            "--compare-method", choices=list(report.COMPARE_METHODS), default=report.DEFAULT_COMPARE_METHOD,
            help="Interval and p-value of pairwise differences: " + _choices(report.COMPARE_METHODS)
            + f". Default: {report.DEFAULT_COMPARE_METHOD}.",
        )
        parser.add_argument("--confidence", type=float, default=report.DEFAULT_CONFIDENCE,
                            help=f"Confidence level of the intervals. Default: {report.DEFAULT_CONFIDENCE}.")
        parser.add_argument("--n-boot", type=int, default=report.DEFAULT_N_BOOT,
                            help="Bootstrap resamples (of the methods that resample). "
                            f"Default: {report.DEFAULT_N_BOOT}.")
        parser.add_argument("--seed", type=int, default=report.DEFAULT_SEED,
                            help=f"Seed of the bootstrap. Default: {report.DEFAULT_SEED}.")
        parser.add_argument(
            "--include-flagged", action="store_true",
            help="Keep the raters flagged by their catch trials (by default they and their judgments are left out).",
        )
        parser.add_argument(
            "--include-pilot", action="store_true",
            help="Keep the raters who started while the experiment was in pilot (the CSV's pilot column; by default "
            "they and their judgments are left out, and the report says how many).",
        )
        parser.add_argument(
            "--exclude-looked-away", action="store_true",
            help="Leave out the scored trials during which the page lost focus or was hidden (focus_lost), from the "
            "VTT and the thresholds; the report says how many. By default they are kept and counted.",
        )
        parser.add_argument(
            "--catch-fail-threshold", type=float, metavar="RATE",
            help="Flag a rater who failed more than this fraction of their catch trials. Default: the experiment's "
            f"catch_fail_threshold; {report.DEFAULT_MAX_FAIL_RATE} for a CSV.",
        )
        parser.add_argument("--format", choices=["table", "json", "csv"], default="table",
                            help="Output format on standard output. Default: table.")
        parser.add_argument("--html", metavar="FILE",
                            help="Also write the report, with its figure, as one self-contained HTML file.")
        metrics = parser.add_argument_group(
            "automatic metrics (--experiment only)",
            "PSNR, SSIM, CIEDE2000, colourfulness and its gap, Zhang et al.'s raw-accuracy AuC (and LPIPS, FID with "
            "weights you supply; nothing is downloaded) of the stored pair images raters saw, with each metric's "
            "agreement with the VTT: Kendall's tau across the tested methods (bootstrap over images) and the AUC "
            "with which it tells the pairs that fooled at least half of their raters.")
        metrics.add_argument(
            "--metrics", action="store_true",
            help="Add the metrics and their agreement to the report. The metrics missing from the database are "
            "computed first and stored per colorization (resumable: an interrupted run keeps what it stored).")
        metrics.add_argument("--lpips-weights", metavar="FILE",
                             help="LPIPS's linear layers, the lpips package's weights/v0.1/alex.pth (or vgg.pth).")
        metrics.add_argument("--lpips-backbone", metavar="FILE",
                             help="LPIPS's backbone: torchvision's ImageNet weights of AlexNet "
                             "(alexnet-owt-7be5be79.pth) or VGG16 (vgg16-397923af.pth).")
        metrics.add_argument("--lpips-net", choices=["alex", "vgg"], default="alex",
                             help="The LPIPS network the two files belong to. Default: alex.")
        metrics.add_argument("--inception-weights", metavar="FILE",
                             help="FID's Inception network: pytorch-fid's pt_inception-2015-12-05-6726825d.pth.")
        metrics.add_argument("--device", default="auto",
                             help="Device of the learned metrics: auto (CUDA when present), cuda or cpu.")
        metrics.add_argument("--batch-size", type=int, default=pair_metrics.DEFAULT_BATCH,
                             help=f"Pairs per batch. Default: {pair_metrics.DEFAULT_BATCH}.")
        metrics.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                             help="Threads that read images and compute the per-pair metrics. Default: the CPUs.")
        parser.add_argument(
            "--published", action="store_true",
            help="Show the published numbers of reference papers beside ours, labelled as published (different "
            "raters and protocols); they never enter our tables.",
        )

    def handle(self, *args, **options):
        if not 0 < options["confidence"] < 1:
            raise CommandError(f"--confidence must be strictly between 0 and 1, got {options['confidence']}")
        if options["n_boot"] < 1:
            raise CommandError(f"--n-boot must be a positive number of resamples, got {options['n_boot']}")
        threshold = options["catch_fail_threshold"]
        if threshold is not None and not 0 <= threshold <= 1:
            raise CommandError(f"--catch-fail-threshold must be between 0 and 1, got {threshold}")
        wants_weights = options["lpips_weights"] or options["lpips_backbone"] or options["inception_weights"]
        if wants_weights and not options["metrics"]:
            raise CommandError("the weights of the learned metrics are used with --metrics")
        if options["metrics"] and options["experiment"] is None:
            raise CommandError("--metrics needs --experiment: the metrics are computed from the stored pair images")
        if options["batch_size"] < 1 or options["threads"] < 1:
            raise CommandError("--batch-size and --threads must be positive")
        settings = dict(
            ci_method=options["ci_method"], confidence=options["confidence"], n_boot=options["n_boot"],
            seed=options["seed"], compare_method=options["compare_method"],
            include_flagged=options["include_flagged"], published=options["published"],
            exclude_looked_away=options["exclude_looked_away"], include_pilot=options["include_pilot"],
        )
        try:
            if options["experiment"] is not None:
                experiment = experiments.named(options["experiment"])
                if options["metrics"]:
                    self._compute_metrics(experiment, options)
                data = report.experiment_report(experiment, max_fail_rate=threshold, metrics=options["metrics"],
                                                **settings)
            else:
                read = judgments.read_judgments_csv(options["judgments_csv"])
                data = report.build_report(
                    read, max_fail_rate=report.DEFAULT_MAX_FAIL_RATE if threshold is None else threshold, **settings
                )
        except judgments.JudgmentsError as exc:
            raise CommandError(str(exc)) from None
        except ValueError as exc:  # settings that `evaluation` refuses
            raise CommandError(str(exc)) from None

        fmt = options["format"]
        if fmt == "json":
            self.stdout.write(report.to_json(data))
        elif fmt == "csv":
            writer = csv.DictWriter(self.stdout, fieldnames=report.table_fields(data), lineterminator="\n")
            writer.writeheader()
            writer.writerows(report.table_rows(data))
        else:
            self._table(data, verbose=options["verbosity"] >= 1)
        if options["html"]:
            path = Path(options["html"])
            try:
                path.write_text(report_html.render_html(data), encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"cannot write {options['html']}: {exc.strerror or exc}") from None
            out = self.stdout if fmt == "table" else self.stderr
            out.write(self.style.SUCCESS(f"HTML report written to {options['html']}"))

    def _metrics(self, section: dict, level: str) -> None:
        """The metrics per method, then their agreement with the VTT."""
        w = self.stdout.write
        w("")
        if not section["metrics"]:
            w("Automatic metrics: none stored for this experiment's pairs")
        else:
            w(f"Automatic metrics of the stored pairs (mean over each method's pairs, {level} interval over images):")
            heads = [m["label"] for m in section["metrics"]]
            w(f"  {'method':<20} {'pairs':>6}  " + "  ".join(f"{h:>22}" for h in heads))
            for row in section["methods"]:
                cells = []
                for m in section["metrics"]:
                    v = row["values"][m["name"]]
                    text = "n/a" if v["mean"] is None else f"{v['mean']:.3g}"
                    if v["ci_low"] is not None:
                        text += f" [{v['ci_low']:.3g}, {v['ci_high']:.3g}]"
                    cells.append(f"{text:>22}")
                w(f"  {row['method']:<20} {row['n_computed']:>6}  " + "  ".join(cells))
            agreement = section["agreement"]
            w("")
            w(f"Agreement with the VTT, over the tested methods ({len(agreement['methods'])}) and their "
              f"{agreement['n_rated_pairs']} pairs with at least {section['min_raters']} raters; oriented so that "
              "tau > 0 and AUC > 0.5 mean the metric agrees with people:")
            w(f"  {'metric':<20} {'Kendall tau':>12}  {level + ' interval':<18} {'AUC (fooled >= half)':>21}  "
              f"{level + ' interval':<16}")
            pairs = {p["metric"]: p for p in agreement["pairs"]}
            for r in agreement["rank"]:
                tau = (f"{r['tau']:+.2f}" if r["estimable"] and r["tau"] is not None else "not estimable")
                tau_ci = (f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" if r["ci_low"] is not None else "")
                p = pairs.get(r["metric"])
                auc = ("" if p is None else f"{p['auc']:.2f}" if p["estimable"] else "not estimable")
                auc_ci = (f"[{p['ci_low']:.2f}, {p['ci_high']:.2f}]" if p and p["ci_low"] is not None else "")
                w(f"  {r['label']:<20} {tau:>12}  {tau_ci:<18} {auc:>21}  {auc_ci:<16}")
            reasons = {r["reason"] for r in agreement["rank"] + agreement["pairs"] if r["reason"]}
            for reason in sorted(reasons):
                w(f"  not estimable: {reason}")
            if agreement["note"]:
                w(f"  {agreement['note']}")
        for note in section["notes"]:
            w(self.style.WARNING(f"metrics: {note}"))

    def _compute_metrics(self, experiment, options) -> None:
        """Compute what is missing of the experiment's metrics; name every file that could not be read."""
        from colorizers.progress import progress

        paths = {key: options[key] and Path(options[key]) for key in
                 ("lpips_weights", "lpips_backbone", "inception_weights")}
        for key, path in paths.items():
            if path is not None and not path.is_file():
                raise CommandError(f"--{key.replace('_', '-')}: {path} is not a file")
        try:
            weights = pair_metrics.LearnedWeights(lpips=paths["lpips_weights"], lpips_backbone=paths["lpips_backbone"],
                                                  lpips_net=options["lpips_net"],
                                                  inception=paths["inception_weights"])
        except ValueError as exc:
            raise CommandError(f"{exc} (--lpips-weights and --lpips-backbone)") from None
        bars = []

        def total(n: int) -> None:
            bars.append(progress(total=n, desc=f"metrics of {experiment.slug}", unit="pair",
                                 enabled=options["verbosity"] >= 1 and n > 0))

        try:
            outcome = pair_metrics.compute(experiment, weights=weights, device=options["device"],
                                           batch_size=options["batch_size"], threads=options["threads"],
                                           total=total, progress=lambda n: bars[0].update(n))
        except ValueError as exc:  # a weights file that cannot be used (LearnedMetricError), a bad device
            raise CommandError(str(exc)) from None
        finally:
            for bar in bars:
                bar.close()
        for problem in outcome.problems:
            self.stderr.write(self.style.ERROR(f"metrics: {problem}"))
        if options["verbosity"] >= 1:
            self.stderr.write(f"metrics: {outcome.computed} pairs computed, {outcome.cached} already stored"
                              + (f", LPIPS of {outcome.lpips}" if weights.lpips else "")
                              + (f", Inception features of {outcome.inception}" if weights.inception else "")
                              + (f"; {len(outcome.problems)} file(s) could not be read" if outcome.problems else ""))

    def _table(self, data: dict, *, verbose: bool) -> None:
        w = self.stdout.write
        w(f"{data['title']} ({data['source']})")
        if not data["methods"]:
            left = data["left_out"]
            if left.get("judgments_of_flagged_raters"):
                w(self.style.WARNING(
                    f"no scored trials to report: all {left['judgments_of_flagged_raters']} come "
                    f"from {left['flagged_raters']} rater(s) flagged by their catch trials, left out by default "
                    "(--include-flagged keeps them)"))
            elif left.get("pilot_judgments"):
                w(self.style.WARNING(
                    f"no scored trials to report: all {left['pilot_judgments']} come from {left['pilot_raters']} "
                    "pilot rater(s), left out by default (--include-pilot keeps them)"))
            else:
                w(self.style.WARNING("no answered scored trials yet"))
            if data.get("metrics"):
                self._metrics(data["metrics"], f"{data['settings']['confidence']:.0%}")
            return
        s = data["settings"]
        level = f"{s['confidence']:.0%}"
        raters, left = data["raters"], data["left_out"]
        if verbose:
            how = (f"{s['ci_method']}, {s['n_boot']} resamples, seed {s['seed']}"
                   if s["ci_method"] in ("bootstrap", "pigeonhole") else s["ci_method"])
            w("VTT: the trial-weighted fooling rate (every scored trial counts once)")
            w(f"{data['n_judgments']} scored judgments of {data['n_images']} images by {data['n_raters']} raters; "
              f"{level} intervals ({how})")
            flagged = f"{raters['n_flagged']} rater(s) flagged: {raters['rule']}"
            if raters["flagged_excluded"]:
                flagged += (f"; left out: {raters['n_excluded_raters']} with {raters['n_excluded_judgments']} "
                            "scored judgments (--include-flagged keeps them)")
            else:
                flagged += "; kept (--include-flagged)"
            w(flagged)
            w(f"not scored: {left['practice']} practice, {left['unanswered']} unanswered, "
              f"{left['not_counted']} late (pair already complete), {left['catch']} catch trials (rater quality only)")
            pilot = data["pilot"]
            if pilot["n_raters"]:
                w(f"pilot: left out {left['pilot_raters']} pilot rater(s) with {left['pilot_judgments']} scored "
                  "judgments (--include-pilot keeps them)" if pilot["excluded"] else
                  f"pilot: kept {pilot['n_raters']} pilot rater(s) with {pilot['n_judgments']} scored judgments "
                  "(--include-pilot)")
            away = data["looked_away"]
            if away["excluded"]:
                w(f"looked away: left out {left['looked_away']} scored trial(s) during which the page lost focus")
            elif away["n_judgments"]:
                w(f"looked away: {away['n_judgments']} scored trial(s) during which the page lost focus are kept "
                  "(--exclude-looked-away leaves them out)")
            if data["staircase"]:
                st = data["staircase"]
                w(f"threshold: exposure in ms ({st['rule']}); {st['estimator']}; {st['n_trials']} staircase "
                  f"trials, {st['n_late']} of them late answers")
            w("")
        stairs = bool(data["staircase"])
        threshold_head = f"{'threshold':>9}  {level + ' interval':<12} " if stairs else ""
        w(f"{'method':<20} {'trials':>7} {'images':>7} {'raters':>7} {'VTT':>7}  {level + ' interval':<18} "
          f"{threshold_head}{'alpha':>6}  role")
        for i, row in enumerate(data["methods"]):
            if row["is_control"] and (i == 0 or not data["methods"][i - 1]["is_control"]):
                w("controls:")
            interval = (f"[{row['ci_low']:.1%}, {row['ci_high']:.1%}]" if row["ci_low"] is not None else "n/a")
            alpha = "n/a" if row["agreement_alpha"] is None else f"{row['agreement_alpha']:.2f}"
            threshold = ""
            if stairs:
                ms = "n/a" if row["threshold_ms"] is None else f"{row['threshold_ms']:.0f}ms"
                ms_interval = ("n/a" if row["threshold_ci_low"] is None else
                               f"[{row['threshold_ci_low']:.0f}, {row['threshold_ci_high']:.0f}]")
                threshold = f"{ms:>9}  {ms_interval:<12} "
            w(f"{row['method']:<20} {row['n_trials']:>7} {row['n_images']:>7} {row['n_raters']:>7} "
              f"{row['vtt']:>7.1%}  {interval:<18} {threshold}{alpha:>6}  {row['role']}")
        if data["comparisons"]:
            w("")
            w(f"Differences (first - second, percentage points), {level} paired intervals ({s['compare_method']}), "
              f"p-values two-sided and Holm-adjusted over {len(data['comparisons'])} pair(s):")
            for c in data["comparisons"]:
                interval = ("n/a" if c["ci_low"] is None else
                            f"[{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]")
                p = "n/a" if c["pvalue"] is None else f"{c['pvalue']:.3g}"
                p_holm = "n/a" if c["pvalue_holm"] is None else f"{c['pvalue_holm']:.3g}"
                w(f"  {c['method_a'] + ' - ' + c['method_b']:<40} {100 * c['difference']:+6.1f}  {interval:<16} "
                  f"p {p:<8} Holm {p_holm}")
        if data.get("published"):
            pub = data["published"]
            w("")
            w(f"Published ({pub['label']}), not measured here:")
            for p in pub["scores"]:
                w(f"  {p['method']:<28} {p['reported']:>7}  {p['source']}")
        if data.get("metrics"):
            self._metrics(data["metrics"], level)
        if verbose and data["notes"]:
            w("")
            for note in data["notes"]:
                w(self.style.WARNING(f"note: {note}"))
