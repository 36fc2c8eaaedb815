"""Plan an experiment: how wide each method's interval is now and will be, and how many raters a target needs."""
from __future__ import annotations

import argparse
import json
import math

from django.core.management.base import BaseCommand, CommandError

from evaluation import planning as stats
from vtt import judgments as judgments_module
from vtt import planning, report
from vtt.management import experiments

HELP = """\
Plan the raters of a Visual Turing Test from a pilot or from stated priors.

For each method it prints "now +-x; to reach +-y, about N more raters (cost)" and,
for each pair of tested methods, the smallest difference detectable with 80% power
by a two-sided test at the 5% level, for a design of I images x K raters per
(image, method) x T judgments of each method per rater.

Units: every half-width, target, rate and standard deviation is in percentage
points (--target 3 means +-3 points, i.e. a fraction of 0.03), as in vtt_report.

Where the numbers come from. The pilot (--experiment or --judgments-csv) is the
report's data: the answered, counted, scored judgments of the raters not flagged
by their catch trials (the same exclusions as vtt_report, checked method by
method against the report). "now" is the half-width of the report's interval.
Its variance components (image, rater and residual variances on the probability
scale, per method; for a pair, the image x method and rater x method parts that
do not cancel) are fitted by the method of moments that matches the two-way
cluster-robust variance of the report's intervals (evaluation.planning), and the
half-width at a design is

    t * sqrt(s_image^2 / I + (T s_rater^2 + s_residual^2) / (I K)),

t the Student t critical value at min(I, raters) - 1 degrees of freedom (the
report's interval is the Wilson interval at the matching effective number of
trials; the planner uses the same). More raters means a larger K at the same
images and T: t * s_image / sqrt(I) is a floor no number of raters goes below,
and the planner then says how many images would reach the target instead.

Accuracy, measured by simulation (python benchmarks/planning.py; BENCHMARKS.md;
500-image designs predicted from 40-image pilots): with components fitted on
full-size experiments the predicted half-width was within 5% of the achieved
mean (0.96 to 1.05); averaged over 40 pilots, within 12% (0.95 to 1.12) except
for rates near 0% (0.83); from a single 40-image pilot it was within 10% in 42%
to 64% of pilots, and 80% of pilots fell within 0.70 to 1.24 of the truth (0.53
to 1.51 for rates near 0%, where a pilot holds a handful of fooled answers).
The minimal detectable difference from a pilot was conservative in mixed
designs (achieved power 0.86 and 0.90 instead of 0.80) and optimistic with one
method per rater and heavy rater effects (0.71). Treat N as an estimate; plan
again after more raters.

The stopping rule. With --experiment and a registered precision target and look
schedule (Experiment.precision_target, look_every, max_looks; set in the admin),
the command also prints the rule's state at the latest scheduled look: precise
enough when every tested method's 95% interval half-width is below the target
(controls do not count); the data of look j are the judgments of the first
j x look_every raters to finish. Coverage cost of stopping at the first such
look, simulated (200 runs per design, 188-312 raters, 10 looks): the 95%
intervals at the stop covered 93.1-95.6%, those of the whole design 92.2-95.3%,
a difference of -0.8 to +0.9 points within the simulation's standard error
(0.7-0.9 points): no material cost, so the looks use the report's 95%.
"""


class Command(BaseCommand):
    help = HELP
    # Read-only: the system checks would import the whole site (views, colorizers, torch) for nothing.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser):
        source = parser.add_argument_group("pilot (one of)")
        source.add_argument("--experiment", metavar="SLUG",
                            help="The experiment whose answered judgments are the pilot.")
        source.add_argument("--judgments-csv", metavar="FILE",
                            help="A CSV of judgments (vtt_report's format: rater, image, method, chose_generated, "
                                 "optionally trial_kind, counted, ...).")
        priors = parser.add_argument_group(
            "priors (instead of a pilot; all in percentage points, on the probability scale)")
        priors.add_argument("--sd-image", type=float, metavar="PTS",
                            help="Standard deviation of the image effects of one method (e.g. 12).")
        priors.add_argument("--sd-rater", type=float, metavar="PTS",
                            help="Standard deviation of the rater effects (e.g. 10).")
        priors.add_argument("--sd-residual", type=float, metavar="PTS",
                            help="Standard deviation of the residual (judgment noise). Default: what --rate "
                                 "leaves, sqrt(rate (100 - rate) - sd_image^2 - sd_rater^2).")
        priors.add_argument("--rate", type=float, metavar="PCT",
                            help="Expected VTT score in percent (e.g. 30). Default 50 with --sd-residual.")
        priors.add_argument("--sd-image-method", type=float, metavar="PTS",
                            help="For the minimal detectable difference: standard deviation of the image x method "
                                 "effects, the part of an image's effect that differs between two methods. Default: "
                                 "--sd-image (the methods' image effects independent: nothing cancels).")
        priors.add_argument("--sd-rater-method", type=float, metavar="PTS",
                            help="Likewise for raters (raters who see both methods). Default: --sd-rater.")
        design = parser.add_argument_group("design (defaults: the pilot's; required with priors)")
        design.add_argument("--images", type=int, metavar="I",
                            help="Images rated per method. Default: an experiment's colorized images per method, "
                                 "or the images the pilot judged.")
        design.add_argument("--k", type=float, metavar="K",
                            help="Distinct raters per (image, method). Default: the experiment's raters_per_pair, "
                                 "or the pilot's mean.")
        design.add_argument("--trials-per-rater", type=float, metavar="T",
                            help="Scored judgments of each method per rater (a mixed design with M methods and "
                                 "S scored trials per session: S / M). Default: the pilot's mean.")
        design.add_argument("--mixing", choices=stats.MIXINGS,
                            help="mixed: every rater sees every method; single: one method each. Default: the "
                                 "experiment's design, or mixed when some pilot rater judged two methods.")
        parser.add_argument("--target", type=float, metavar="PTS",
                            help="Target half-width in percentage points (3: +-3 points), above 0 and below 50. "
                                 "Default: the experiment's registered precision target, if any.")
        parser.add_argument("--price-per-rater", type=float, metavar="PRICE",
                            help="What one more rater costs (any currency, 0 or more), for the cost of N raters.")
        parser.add_argument("--confidence", type=float, default=None,
                            help="Confidence level of the intervals. Default: 0.95.")
        parser.add_argument("--include-flagged", action="store_true",
                            help="Keep the raters flagged by their catch trials, as vtt_report --include-flagged.")
        parser.add_argument("--include-pilot", action="store_true",
                            help="Plan from the pilot raters' judgments too (left out by default, as in vtt_report): "
                            "to plan a study from its own pilot, give --include-pilot.")
        parser.add_argument("--format", choices=["table", "json"], default="table",
                            help="Output: sentences and a table (default) or JSON.")

    def handle(self, *args, **options):
        confidence = 0.95 if options["confidence"] is None else options["confidence"]
        if not 0 < confidence < 1:
            raise CommandError(f"--confidence must be strictly between 0 and 1, got {confidence}")
        target = options["target"]
        if target is not None and not 0 < target < 50:
            raise CommandError(f"--target is a half-width in percentage points, above 0 and below 50; got {target:g}")
        price = options["price_per_rater"]
        if price is not None and not (price >= 0 and math.isfinite(price)):
            raise CommandError(f"--price-per-rater must be 0 or more, got {price:g}")
        for name in ("images", "k", "trials_per_rater"):
            value = options[name]
            if value is not None and not value > 0:
                raise CommandError(f"--{name.replace('_', '-')} must be positive, got {value:g}")
        prior_names = ("sd_image", "sd_rater", "sd_residual", "rate", "sd_image_method", "sd_rater_method")
        priors = {k: options[k] for k in prior_names if options[k] is not None}
        sources = [s for s in ("experiment", "judgments_csv") if options[s] is not None]
        sources += ["priors"] if priors else []
        if len(sources) != 1:
            raise CommandError("give exactly one pilot: --experiment SLUG, --judgments-csv FILE, or priors "
                               f"(--sd-image, --sd-rater, and --rate or --sd-residual); got {len(sources)}"
                               + (f" ({', '.join(sources)})" if sources else ""))
        if priors:
            out = self._priors(priors, options, target, price, confidence)
        else:
            out = self._pilot(options, target, price, confidence)
        if options["format"] == "json":
            self.stdout.write(json.dumps(out, indent=2, default=str))
        else:
            self._table(out, verbose=options["verbosity"] >= 1)

    # --- sources ---------------------------------------------------------------------------------------------

    def _pilot(self, options, target, price, confidence):
        experiment = None
        settings = dict(confidence=confidence, include_flagged=options["include_flagged"],
                        include_pilot=options["include_pilot"])
        try:
            if options["experiment"] is not None:
                experiment = experiments.named(options["experiment"])
                read = judgments_module.experiment_judgments(experiment)
                judgments = read[0]
                data = report.experiment_report(experiment, judgments=read, **settings)
            else:
                judgments = judgments_module.read_judgments_csv(options["judgments_csv"])
                data = report.build_report(judgments, **settings)
        except ValueError as exc:  # JudgmentsError (an unreadable CSV) or settings `evaluation` refuses
            raise CommandError(str(exc)) from None
        if not data["methods"]:
            left = data["left_out"]
            why = (f"all {left['judgments_of_flagged_raters']} come from raters flagged by their catch trials "
                   "(--include-flagged keeps them)" if left.get("judgments_of_flagged_raters")
                   else f"all {left['pilot_judgments']} come from pilot raters (--include-pilot keeps them)"
                   if left.get("pilot_judgments")
                   else "none answered yet")
            raise CommandError(f"no scored judgments to plan from: {why}")
        target = experiment.precision_target if target is None and experiment is not None else target
        try:
            kept = planning.kept_judgments(judgments, data)
            plan = planning.plan(
                kept, data, n_images=options["images"], k=options["k"] or (experiment and experiment.raters_per_pair),
                trials_per_rater=options["trials_per_rater"],
                mixing=options["mixing"] or (str(experiment.design) if experiment is not None else None),
                target=target, price_per_rater=price, confidence=confidence,
                design_images=planning.design_images(experiment) if experiment is not None else None)
        except (planning.PlanError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        plan["source"] = data["source"]
        plan["title"] = data["title"]
        plan["pilot"] = {"n_judgments": data["n_judgments"], "n_images": data["n_images"],
                         "n_raters": data["n_raters"], "ci_method": data["settings"]["ci_method"]}
        plan["precision"] = planning.precision_status(experiment, data) if experiment is not None else None
        return plan

    def _priors(self, priors, options, target, price, confidence):
        missing = [f"--{n}" for n in ("images", "k", "trials_per_rater") if options[n] is None]
        if missing:
            raise CommandError("with priors the design is needed: give "
                               + ", ".join(m.replace("_", "-") for m in missing))
        if "sd_image" not in priors or "sd_rater" not in priors:
            raise CommandError("priors need --sd-image and --sd-rater (percentage points), and --rate or --sd-residual")
        if priors.get("rate") is not None and not 0 < priors["rate"] < 100:
            raise CommandError(f"--rate is a percentage strictly between 0 and 100, got {priors['rate']:g}")
        try:
            comp = stats.components_from_priors(
                sd_image=priors["sd_image"] / 100, sd_rater=priors["sd_rater"] / 100,
                sd_residual=None if "sd_residual" not in priors else priors["sd_residual"] / 100,
                rate=None if "rate" not in priors else priors["rate"] / 100)
            sd_c = priors.get("sd_image_method", priors["sd_image"]) / 100
            sd_d = priors.get("sd_rater_method", priors["sd_rater"]) / 100
            for name, value in (("--sd-image-method", sd_c), ("--sd-rater-method", sd_d)):
                if not value >= 0:
                    raise ValueError(f"{name} must be 0 or more, got {100 * value:g}")
            I, K, T = options["images"], options["k"], options["trials_per_rater"]
            mixing = options["mixing"] or "mixed"
            design = stats.predict(comp, I, K, T, confidence=confidence)
            diff = stats.DifferenceComponents(method_a="a", method_b="b", a=comp, b=comp, image=2 * sd_c**2,
                                              rater=2 * sd_d**2)
            pred, mdd = stats.predict_difference(diff, I, K, T, mixing=mixing, confidence=confidence)
            line = (f"at the design ({I} images x K = {K:g} x T = {T:g}): +-{100 * design.half_width:.1f} points "
                    f"(image floor +-{100 * design.floor:.1f})")
            needed = None
            if target is not None:
                need = stats.raters_needed(comp, target / 100, n_images=I, k=K, trials_per_rater=T,
                                           confidence=confidence, price_per_rater=price)
                needed = {"reachable": need.reachable, "k": need.k_needed, "more_raters": need.more_raters,
                          "cost": need.cost, "images_needed": need.images_needed, "floor": 100 * need.floor}
                if need.reachable and need.more_raters:
                    cost = "" if need.cost is None else f" ({planning._money(need.cost)})"
                    line += (f"; to reach +-{target:g}, about {need.more_raters} more raters{cost} "
                             f"(K = {need.k_needed:.1f})")
                elif need.reachable:
                    line += f"; +-{target:g} is reached at this design"
                else:
                    extra = "" if need.images_needed is None else f"; about {need.images_needed} images would"
                    line += f"; +-{target:g} is out of reach with {I} images{extra}"
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return {
            "source": "priors", "title": "priors", "pilot": None, "precision": None, "target": target,
            "confidence": confidence, "level": f"{confidence:.0%}", "mixing": mixing, "summary": None,
            "methods": [{"method": "(priors)", "line": line, "now": None, "needed": needed, "images": I,
                         "trials_per_rater": T, "vtt": 100 * comp.rate,
                         "design": {"k": K, "half_width": 100 * design.half_width, "df": design.df,
                                    "raters": design.n_raters, "floor": 100 * design.floor},
                         "components": {"sd_image": 100 * math.sqrt(comp.image),
                                        "sd_rater": 100 * math.sqrt(comp.rater),
                                        "sd_residual": 100 * math.sqrt(comp.residual), "clipped": []}}],
            "pairs": [{"line": f"two methods: the smallest difference detectable with 80% power at the 5% level is "
                               f"{100 * mdd:.1f} points", "mdd": 100 * mdd, "se": 100 * pred.standard_error}],
        }

    # --- output ----------------------------------------------------------------------------------------------

    def _table(self, out, *, verbose=True):
        w = self.stdout.write
        w(f"{out['title']} ({out['source']})")
        if out.get("pilot"):
            p = out["pilot"]
            w(f"pilot: {p['n_judgments']} scored judgments of {p['n_images']} images by {p['n_raters']} raters "
              f"(the report's, flagged raters left out); 'now' is the report's {out['level']} {p['ci_method']} "
              "interval")
        who = "every rater sees every method" if out["mixing"] == "mixed" else "one method per rater"
        w(f"design: {out['mixing']} ({who}); "
          f"{out['level']} intervals; half-widths in percentage points")
        w("")
        for m in out["methods"]:
            w(m["line"])
        if out.get("summary"):
            w(out["summary"]["line"])
        if verbose and any("components" in m for m in out["methods"]):
            w("")
            w("Variance components (standard deviations, points), the model's half-width now and at the design, "
              "and the image floor:")
            w(f"{'method':<20} {'VTT':>6} {'sd image':>9} {'sd rater':>9} {'sd resid':>9} {'images':>7} {'K':>6} "
              f"{'T':>6} {'now':>8} {'design':>8} {'floor':>7}")
            for m in out["methods"]:
                if "components" not in m:
                    continue
                c, d = m["components"], m["design"]
                vtt = "" if m.get("vtt") is None else f"{m['vtt']:.1f}%"
                now = "" if m.get("now_model") is None else "+-%.1f" % m["now_model"]
                clipped = f"  (clipped at 0: {', '.join(c['clipped'])})" if c["clipped"] else ""
                w(f"{m['method']:<20} {vtt:>6} {c['sd_image']:>9.1f} {c['sd_rater']:>9.1f} {c['sd_residual']:>9.1f} "
                  f"{m.get('images', ''):>7} {d['k']:>6.3g} {m.get('trials_per_rater', 0):>6.3g} {now:>8} "
                  f"{'+-%.1f' % d['half_width']:>8} {'+-%.1f' % d['floor']:>7}{clipped}")
        if out["pairs"]:
            w("")
            w("Minimal detectable differences at the design (80% power, two-sided 5%):")
            for p in out["pairs"]:
                w(f"  {p['line']}")
        precision = out.get("precision")
        if precision is not None:
            w("")
            if not precision["enabled"]:
                w(f"stopping rule: {precision['message']}")
            else:
                w(f"stopping rule (target +-{precision['target']:g} points, a look every {precision['look_every']} "
                  f"finished raters, at most {precision['max_looks']} looks, {precision['level']} intervals): "
                  f"{precision['message']}")
