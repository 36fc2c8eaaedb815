"""Validation of the planner (`evaluation.planning`) and of the stopping rule (`vtt.planning`) by simulation.

    python benchmarks/planning.py [--part widths,power,stopping] [--pilots 10] [--runs 40] [--power-runs 200]
                                  [--stopping-runs 300] [--interval score|two-way] [--seed 0]

Experiments are drawn from `benchmarks.crossed` (crossed logistic effects of images, image x method, raters and
rater x method; PixColor-like designs and their variations, `crossed.DESIGNS`).

widths
    For each design, `--pilots` pilots of 40 images (the design with ``n_images=40``: same K, trials per rater,
    effects) are fitted with `evaluation.planning.components`; each predicts every method's half-width at the
    full design. `--runs` full-size experiments are then simulated and the achieved half-width of each method's
    interval, ``(ci_high - ci_low) / 2``, is averaged. The table gives the mean prediction over the pilots, the
    achieved mean, their ratio, the 10th to 90th percentiles of a single pilot's ratio (the pilot's own sampling
    noise), and the prediction from components fitted on the full-size runs themselves (the model and the
    estimator without the pilot's noise).
power
    For two methods, the minimal detectable difference (MDD, 80% power, two-sided 5%) predicted from the pilots;
    the second method's rate is then set so that the true difference is the MDD, and the share of runs in which
    `evaluation.compare`'s 95% interval leaves out 0 is the achieved power.
stopping
    The pre-registered stopping rule of `vtt.planning`: raters arrive in random order; at every look (every
    tenth of the design's raters) each tested method's interval is computed from the raters so far, and the
    experiment stops at the first look where every half-width is below the target (else at the last look).
    The coverage of the intervals at the stop is set against that of the intervals of the whole design (fixed
    n), at the nominal 95% (the level `vtt.planning` looks at) and at a stricter 97% (what it would take to buy
    back a cost, had there been one). The target is the predicted half-width of the widest tested method at 60%
    of the raters, so that the rule stops around the middle of the looks.

``--interval score`` (default) uses `evaluation.score` and `evaluation.compare` with their default intervals,
which is what is being validated. ``--interval two-way`` uses this script's own two-way cluster-robust interval
(Cameron, Gelbach and Miller 2011: c_I V_img + c_R V_rat - c_C V_cell with c = G/(G-1), the larger one-way term
if that is not positive, Student t with min(effective images, effective raters) - 1 degrees of freedom, Kish's
effective numbers), about 50 times faster than a bootstrap; it is what `evaluation.score` is specified to
compute, and the tables say which interval they used.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import optimize, stats
from scipy.special import expit, logit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import evaluation  # noqa: E402
from benchmarks import crossed  # noqa: E402
from evaluation import planning  # noqa: E402

WIDTH_DESIGNS = ("pixcolor", "k3", "single", "heavy", "near-50", "near-0", "unbalanced", "100-img-20")
POWER_DESIGNS = ("100-img-20", "pixcolor-2", "single-heavy")
STOPPING_DESIGNS = ("pixcolor", "k3", "heavy", "single")
PILOT_IMAGES = 40
STRICTER = 0.97  # the stricter level shown beside the nominal 95% (vtt.planning looks at 95%)


def _design(name):
    if name == "pixcolor-2":
        return crossed.DESIGNS[0].with_(name="pixcolor-2", rates=(0.30, 0.38), control=False)
    return next(d for d in crossed.DESIGNS if d.name == name)


def per_method_trials(design):
    """T: judgments of one method per rater."""
    m = len(design.rates)
    return design.trials_per_rater / m if design.mixing == "mixed" else design.trials_per_rater


# --- intervals ------------------------------------------------------------------------------------------------


def _kish(counts):
    w = counts / counts.sum()
    return (w @ w) ** -1


def two_way_halfwidth(y, img, rat, confidence=0.95):
    """Half-width of this script's two-way cluster-robust interval of mean(y) (see the module docstring)."""
    n = y.size
    e = (y - y.mean()) / n
    _, img = np.unique(img, return_inverse=True)
    _, rat = np.unique(rat, return_inverse=True)
    n_rat = rat.max() + 1
    _, cell = np.unique(img.astype(np.int64) * n_rat + rat, return_inverse=True)
    terms, g = [], []
    for x in (img, rat, cell):
        sums = np.bincount(x, e)
        terms.append(sums @ sums)
        g.append(sums.size)
    c = [k / (k - 1) if k > 1 else 1.0 for k in g]
    v = c[0] * terms[0] + c[1] * terms[1] - c[2] * terms[2]
    if not v > 0:
        v = max(c[0] * terms[0], c[1] * terms[1])
    df = max(1.0, min(_kish(np.bincount(img)), _kish(np.bincount(rat))) - 1)
    return float(stats.t.ppf(0.5 + confidence / 2, df) * np.sqrt(v))


def interval(kind, y, img, rat, confidence=0.95):
    """(low, high) of one method's interval."""
    if kind == "two-way":
        h = two_way_halfwidth(y, img, rat, confidence)
        return y.mean() - h, y.mean() + h
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = evaluation.score(y, img, rat, confidence=confidence)
    return res.ci_low, res.ci_high


def difference_excludes_zero(kind, s, a, b):
    keep = (s.method == a) | (s.method == b)
    y, img, rat, meth = s.y[keep].astype(float), s.image[keep], s.rater[keep], s.method[keep]
    if kind == "two-way":
        ya, yb = meth == a, meth == b
        na, nb = ya.sum(), yb.sum()
        d = y[ya].mean() - y[yb].mean()
        e = np.where(ya, (y - y[ya].mean()) / na, -(y - y[yb].mean()) / nb)
        n_rat = rat.max() + 1
        _, cell = np.unique(img.astype(np.int64) * n_rat + rat, return_inverse=True)
        terms, g = [], []
        for x in (img, rat, cell):
            sums = np.bincount(x, e)
            seen = np.bincount(x) > 0
            terms.append(sums @ sums)
            g.append(int(seen.sum()))
        c = [k / (k - 1) if k > 1 else 1.0 for k in g]
        v = c[0] * terms[0] + c[1] * terms[1] - c[2] * terms[2]
        if not v > 0:
            v = max(c[0] * terms[0], c[1] * terms[1])
        share_img = np.bincount(img, np.where(ya, 1 / na, 1 / nb))
        share_rat = np.bincount(rat, np.where(ya, 1 / na, 1 / nb))
        df = max(1.0, min(_kish(share_img[share_img > 0]), _kish(share_rat[share_rat > 0])) - 1)
        return abs(d) > stats.t.ppf(0.975, df) * np.sqrt(v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = evaluation.compare(y, img, rat, meth, pair=(a, b))
    return not (res.ci_low <= 0 <= res.ci_high)


# --- widths ---------------------------------------------------------------------------------------------------


def fit_pilot(design, rng):
    s = crossed.simulate(design.with_(n_images=PILOT_IMAGES), rng)
    return s, [planning.components(s.y[s.method == m], s.image[s.method == m], s.rater[s.method == m])
               for m in range(len(design.rates))]


def predict(comp, design):
    """A component fit's half-width at the full design, keeping the fit's spread of rater sizes."""
    return planning.predict(comp, design.n_images, design.k, per_method_trials(design),
                            rater_size_factor=max(1.0, comp.rater_size_factor)).half_width


def widths(args, rng):
    rows = []
    for name in args.designs_widths:
        d = _design(name)
        m, t = len(d.rates), per_method_trials(d)
        pred = np.array([[predict(c, d) for c in fit_pilot(d, rng)[1]]
                         for _ in range(args.pilots)])  # (pilots, methods)
        achieved, refit = np.zeros((args.runs, m)), np.zeros((args.runs, m))
        for r in range(args.runs):
            s = crossed.simulate(d, rng)
            for g in range(m):
                sel = s.method == g
                y, img, rat = s.y[sel].astype(float), s.image[sel], s.rater[sel]
                low, high = interval(args.interval, y, img, rat)
                achieved[r, g] = (high - low) / 2
                refit[r, g] = predict(planning.components(y, img, rat), d)
        ach = achieved.mean(0)
        ratio = pred / ach  # per pilot and method
        rows.append((name, d.n_images, d.k, t, d.mixing, 100 * pred.mean(), 100 * ach.mean(),
                     (pred.mean(0) / ach).min(), (pred.mean(0) / ach).max(),
                     np.percentile(ratio, 10), np.percentile(ratio, 90), np.mean(np.abs(ratio - 1) <= 0.1),
                     (refit.mean(0) / ach).min(), (refit.mean(0) / ach).max()))
    print(f"\nPredicted vs achieved half-widths ({args.pilots} pilots of {PILOT_IMAGES} images, {args.runs} "
          f"full-size runs per design; interval: {args.interval})\n")
    print("| design | images | K | T per method | raters | predicted (mean, pts) | achieved (mean, pts) | "
          "predicted / achieved, per method | one pilot: 10th-90th pct | one pilot within 10% | "
          "fitted on the full runs / achieved |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:g} | {r[4]} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.3f} to {r[8]:.3f} "
              f"| {r[9]:.2f} to {r[10]:.2f} | {r[11]:.0%} | {r[12]:.3f} to {r[13]:.3f} |")
    return rows


# --- power ----------------------------------------------------------------------------------------------------


def _with_difference(design, difference):
    """The design with method 1's base rate moved so that truth[1] - truth[0] = difference."""
    def gap(mu):
        return crossed.truth(design.with_(rates=(design.rates[0], float(expit(mu)))))[1] - (
            crossed.truth(design)[0] + difference)
    mu = optimize.brentq(gap, logit(design.rates[0]) - 1e-9, logit(design.rates[0]) + 12)
    return design.with_(rates=(design.rates[0], float(expit(mu))))


def power(args, rng):
    rows = []
    for name in args.designs_power:
        d = _design(name).with_(rates=_design(name).rates[:2], control=False)
        t = per_method_trials(d)
        mdds = []
        for _ in range(args.pilots):
            s = crossed.simulate(d.with_(n_images=PILOT_IMAGES), rng)
            diff = planning.difference_components(s.y, s.image, s.rater, s.method, (1, 0))
            f = max(1.0, diff.a.rater_size_factor)
            mdds.append(planning.predict_difference(diff, d.n_images, d.k, t, mixing=d.mixing,
                                                    rater_size_factor=f)[1])
        mdd = float(np.mean(mdds))
        # The power the model predicts at that difference with components fitted on full-size runs (no pilot noise).
        full = []
        for _ in range(5):
            s = crossed.simulate(d, rng)
            diff = planning.difference_components(s.y, s.image, s.rater, s.method, (1, 0))
            full.append(planning.power_at(mdd, planning.predict_difference(
                diff, d.n_images, d.k, t, mixing=d.mixing, rater_size_factor=max(1.0, diff.a.rater_size_factor))[0]))
        target = _with_difference(d, mdd)
        hits = sum(difference_excludes_zero(args.interval, crossed.simulate(target, rng), 1, 0)
                   for _ in range(args.power_runs))
        achieved = hits / args.power_runs
        se = np.sqrt(achieved * (1 - achieved) / args.power_runs)
        rows.append((name, d.n_images, d.k, t, d.mixing, 100 * mdd, 100 * np.percentile(mdds, 10),
                     100 * np.percentile(mdds, 90), achieved, se, float(np.mean(full))))
    print(f"\nMinimal detectable difference (80% power, two-sided 5%) predicted from {args.pilots} pilots of "
          f"{PILOT_IMAGES} images; achieved power in {args.power_runs} runs with that true difference "
          f"(interval: {args.interval})\n")
    print("| design | images | K | T per method | raters | MDD (mean, pts) | one pilot: 10th-90th pct | "
          "predicted power (pilots) | predicted power (components of full-size runs) | achieved power |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:g} | {r[4]} | {r[5]:.2f} | {r[6]:.2f} to {r[7]:.2f} | 0.80 | "
              f"{r[10]:.2f} | {r[8]:.3f} (se {r[9]:.3f}) |")
    return rows


# --- optional stopping ----------------------------------------------------------------------------------------


def stopping(args, rng):
    rows = []
    n_looks = 10
    for name in args.designs_stopping:
        d = _design(name)
        truth = crossed.truth(d)
        tested = list(range(len(d.rates) - (1 if d.control else 0)))  # the ground-truth control is not tested
        t = per_method_trials(d)
        # Target: the predicted half-width of the widest tested method at 60% of the raters (large pilot).
        s0 = crossed.simulate(d, rng)
        comps = [planning.components(s0.y[s0.method == g], s0.image[s0.method == g], s0.rater[s0.method == g])
                 for g in tested]
        target = max(planning.predict(c, d.n_images, 0.6 * d.k, t).half_width for c in comps)
        cover = {level: {"stop": [], "fixed": []} for level in (0.95, STRICTER)}
        stops = {level: [] for level in cover}
        for _ in range(args.stopping_runs):
            s = crossed.simulate(d, rng)
            rank = np.empty(s.n_raters, dtype=np.int64)
            rank[rng.permutation(s.n_raters)] = np.arange(s.n_raters)  # arrival rank of each rater
            arrived = rank[s.rater]
            for level in cover:
                def at(look, level=level):
                    upto = arrived < round(look * s.n_raters / n_looks)
                    out = {}
                    for g in tested:
                        sel = upto & (s.method == g)
                        out[g] = ((-np.inf, np.inf) if sel.sum() < 2 else
                                  interval(args.interval, s.y[sel].astype(float), s.image[sel], s.rater[sel],
                                           confidence=level))
                    return out
                stop, ivs = n_looks, None
                for look in range(1, n_looks + 1):  # looks after the stop are never computed
                    ivs = at(look)
                    if all((hi - lo) / 2 < target for lo, hi in ivs.values()):
                        stop = look
                        break
                final = ivs if stop == n_looks else at(n_looks)
                cover[level]["stop"].extend(ivs[g][0] <= truth[g] <= ivs[g][1] for g in tested)
                cover[level]["fixed"].extend(final[g][0] <= truth[g] <= final[g][1] for g in tested)
                stops[level].append(stop)
        for level in cover:
            stop, fixed = np.mean(cover[level]["stop"]), np.mean(cover[level]["fixed"])
            n = len(cover[level]["stop"])
            rows.append((name, d.n_images, d.k, s.n_raters, len(tested), 100 * target, level,
                         np.mean(stops[level]) / n_looks, stop, fixed, np.sqrt(stop * (1 - stop) / n)))
    print(f"\nOptional stopping: {args.stopping_runs} runs per design, a look every tenth of the raters (10 looks), "
          f"stop at the first look where every tested method's half-width is below the target (interval: "
          f"{args.interval})\n")
    print("| design | images | K | raters | tested methods | target (pts) | level at the looks | "
          "mean stop (share of raters) | coverage at the stop | coverage, fixed n (all raters) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.2f} | {r[6]:.0%} | {r[7]:.2f} | "
              f"{r[8]:.3f} (se {r[10]:.3f}) | {r[9]:.3f} |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="widths,power,stopping",
                        help="Comma-separated parts to run: widths, power, stopping. Default: all three.")
    parser.add_argument("--pilots", type=int, default=40, help="Pilots of 40 images per design. Default: 40.")
    parser.add_argument("--runs", type=int, default=40, help="Full-size runs per design (widths). Default: 40.")
    parser.add_argument("--power-runs", type=int, default=200, help="Runs per design (power). Default: 200.")
    parser.add_argument("--stopping-runs", type=int, default=200, help="Runs per design (stopping). Default: 200.")
    parser.add_argument("--interval", choices=["score", "two-way"], default="score",
                        help="score: evaluation.score / compare with their default interval (default); two-way: "
                             "this script's two-way cluster-robust interval.")
    parser.add_argument("--designs-widths", default=",".join(WIDTH_DESIGNS))
    parser.add_argument("--designs-power", default=",".join(POWER_DESIGNS))
    parser.add_argument("--designs-stopping", default=",".join(STOPPING_DESIGNS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for key in ("designs_widths", "designs_power", "designs_stopping"):
        setattr(args, key, [x for x in getattr(args, key).split(",") if x])
    parts = {p.strip() for p in args.part.split(",")}
    unknown = parts - {"widths", "power", "stopping"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    rng = np.random.default_rng(args.seed)
    start = time.time()
    print(f"python benchmarks/planning.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"{platform.processor() or platform.machine()}, numpy {np.__version__}")
    if "widths" in parts:
        widths(args, rng)
    if "power" in parts:
        power(args, rng)
    if "stopping" in parts:
        stopping(args, rng)
    print(f"\n{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
