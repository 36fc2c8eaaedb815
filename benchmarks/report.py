"""Time of the VTT report: the statistics alone, or `vtt_report` end to end on a CSV or a database.

    python benchmarks/report.py [--judgments 1000000] [--images 2000] [--n-boot 2000]
    python benchmarks/report.py --csv [--judgments 1000000] [--n-boot 2000] [--keep DIR]
        [--ci-method M] [--compare-method M] [--stages]
    python benchmarks/report.py --stages-of FILE [--n-boot 2000] [--ci-method M] [--compare-method M]
    python benchmarks/report.py --database [--judgments 1000000] [--n-boot 2000] [--ci-method M] [--compare-method M]
        [--keep DIR]

Without --csv: each image is judged by judgments/images raters drawn from a pool,
answers drawn with probability 0.3; prints the seconds `evaluation.score` takes (with
--ci-method, default cluster), and
with --methods M also those of `evaluation.compare_all` on the same judgments split at
random among M methods (every pair compared; --compare-method, default cluster).

With --csv: writes a CSV in the platform's export format to a temporary folder and
times `python manage.py vtt_report --judgments-csv FILE --format json --html FILE`
in a subprocess, from start to exit. The simulated experiment follows PixColor's design:
4 methods (3 tested and the ground_truth control), each image judged by 5 distinct
raters per method, raters who never see an image twice and answer 40 scored trials,
plus 4 catch trials against `grayscale` and 5 practice trials each. Answers come from a
logistic model with image, image-by-method and rater effects (standard deviation 0.5
each on the logit scale); 3% of raters answer at random. --ci-method and
--compare-method are passed on (default: vtt_report's defaults). With --stages, the
same report is then made again in one process, timing each stage: the start (Django
and the imports), reading the CSV, `build_report` (the `evaluation` calls, and the
rest), the JSON and the HTML. --stages-of FILE does only that, on a CSV kept by --keep.

With --database: the same simulated experiment (without practice trials) in a scratch
SQLite database (made by `migrate` in a temporary folder, or in --keep DIR, where a
later run finds and reuses it); prints the seconds that reading its judgments takes
(`experiment_judgments`, in this process), then times
`vtt_report --experiment bench --format json --html FILE` in a subprocess.

The calibration of the intervals (coverage, type I error, power) is `benchmarks/calibration.py`.
"""
from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTED = time.perf_counter()  # before numpy, scipy and Django: the start of --stages

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluation import compare_all, score  # noqa: E402

COLUMNS = ["experiment", "rater", "external_id", "flagged", "position", "trial_kind", "image", "class_index",
           "method", "real_side", "choice", "chose_generated", "counted", "shown", "answered", "response_ms"]
METHODS = {"method_a": 0.30, "method_b": 0.35, "method_c": 0.40, "ground_truth": 0.50}
K, SCORED_PER_RATER, CATCH_PER_RATER, PRACTICE_PER_RATER = 5, 40, 4, 5


def write_csv(path: Path, judgments: int, seed: int = 0) -> dict:
    """Simulate an experiment with `judgments` scored judgments and write it as the platform's CSV export."""
    from scipy.special import expit, logit

    rng = np.random.default_rng(seed)
    names = list(METHODS)
    n_methods = len(names)
    n_images = judgments // (n_methods * K)
    n_scored = n_images * n_methods * K
    n_raters = n_scored // SCORED_PER_RATER
    # Slots (image, method, k) in image order; slot s goes to rater s mod n_raters, so a rater's slots are
    # n_raters apart and, with n_raters > n_methods * K, never on the same image.
    img = np.repeat(np.arange(n_images), n_methods * K)
    meth = np.tile(np.repeat(np.arange(n_methods), K), n_images)
    slot_rater = rng.permutation(n_raters)[np.arange(n_scored) % n_raters]
    effects = (rng.normal(0, 0.5, n_images)[img] + rng.normal(0, 0.5, (n_images, n_methods))[img, meth]
               + rng.normal(0, 0.5, n_raters)[slot_rater])
    p = expit(logit(np.array(list(METHODS.values())))[meth] + effects)
    random_rater = rng.random(n_raters) < 0.03
    p = np.where(random_rater[slot_rater], 0.5, p)
    chose = rng.random(n_scored) < p

    # Catch and practice trials: images drawn at random, never scored.
    n_extra = CATCH_PER_RATER + PRACTICE_PER_RATER
    extra_rater = np.repeat(np.arange(n_raters), n_extra)
    extra_kind = np.tile(np.array(["catch"] * CATCH_PER_RATER + ["practice"] * PRACTICE_PER_RATER), n_raters)
    extra_img = rng.integers(0, n_images, extra_rater.size)
    catch_fail = np.where(random_rater[extra_rater], 0.5, 0.1)
    extra_chose = rng.random(extra_rater.size) < catch_fail

    tokens = np.array([rng.bytes(16).hex() for _ in range(n_raters)])
    image_names = np.array([f"n{1440764 + i % 1000:08d}/ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(n_images)])
    real_side = rng.choice(np.array(["L", "R"]), n_scored + extra_rater.size)
    rows_rater = np.concatenate([slot_rater, extra_rater])
    order = np.argsort(rows_rater, kind="stable")
    kind = np.concatenate([np.full(n_scored, "scored"), extra_kind])[order]
    image = np.concatenate([img, extra_img])[order]
    method = np.concatenate([np.array(names)[meth], np.full(extra_rater.size, "grayscale")])[order]
    chosen = np.concatenate([chose, extra_chose])[order].astype(int)
    side = real_side[order]
    choice = np.where(chosen == 1, np.where(side == "L", "R", "L"), side)
    rater = rows_rater[order]
    position = np.arange(rater.size) - np.searchsorted(rater, rater) + 1
    response = rng.integers(400, 5000, rater.size)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(zip(
            ["bench"] * rater.size, tokens[rater], [""] * rater.size, [0] * rater.size, position, kind,
            image_names[image], image % 1000, method, side, choice, chosen, (kind == "scored").astype(int),
            ["2026-11-26T10:00:00+00:00"] * rater.size, ["2026-11-26T10:00:02+00:00"] * rater.size, response,
        ))
    return {"rows": int(rater.size), "scored": n_scored, "images": n_images, "raters": n_raters}


def time_vtt_report(source: list[str], folder: Path, env: dict, n_boot: int, ci_method: str | None,
                    compare_method: str | None) -> None:
    """Run `vtt_report SOURCE --format json --html FILE` in a subprocess and print its wall and CPU time."""
    methods = [*(["--ci-method", ci_method] if ci_method else []),
               *(["--compare-method", compare_method] if compare_method else [])]
    command = [sys.executable, "manage.py", "vtt_report", *source, "--format", "json", "--n-boot", str(n_boot),
               "--html", str(folder / "report.html"), *methods]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"vtt_report failed:\n{done.stderr}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    shown = " ".join(a if not a.startswith("/") else "FILE" for a in source)
    print(f"vtt_report {shown} --format json --n-boot {n_boot} --html FILE {' '.join(methods)}: "
          f"{seconds:.1f} s wall, {usage.ru_utime + usage.ru_stime:.1f} s CPU, "
          f"peak memory {usage.ru_maxrss / 2**20:.1f} GiB")


def time_stages(path: str, n_boot: int, methods: list[str]) -> None:
    """Wall and CPU seconds of each stage of the report of the CSV at `path`, in this (fresh) process."""
    import functools

    def now():
        return time.perf_counter(), time.process_time()

    begin = STARTED, 0.0  # process_time counts from the start of the process
    os.chdir(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vtt.settings")
    if not os.environ.get("DJANGO_SECRET_KEY"):
        os.environ["VTT_DEMO"] = "1"  # the report reads a file: the demo settings are enough
    import django

    django.setup()
    import evaluation

    statistics = [0.0, 0.0]

    def timed(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            start = now()
            try:
                return function(*args, **kwargs)
            finally:
                end = now()
                statistics[0] += end[0] - start[0]
                statistics[1] += end[1] - start[1]
        return wrapper

    for name in ("score", "compare_all", "quality", "agreement", "hype_time"):
        setattr(evaluation, name, timed(getattr(evaluation, name)))
    from vtt import report
    try:
        from vtt.judgments import read_judgments_csv
        from vtt.report_html import render_html
    except ImportError:  # a checkout from before vtt/report.py was split (commit 18194a4 and earlier)
        read_judgments_csv, render_html = report.read_judgments_csv, report.render_html

    options = dict(zip(("ci_method", "compare_method"), methods))
    marks = [("start (Django, imports)", now())]
    data = read_judgments_csv(path)
    marks.append(("read the CSV", now()))
    built = report.build_report(data, n_boot=n_boot, **{k: v for k, v in options.items() if v})
    marks.append(("build_report", now()))
    report.to_json(built)
    marks.append(("JSON", now()))
    render_html(built)
    marks.append(("HTML", now()))
    previous = begin
    for name, mark in marks:
        print(f"  {name:<40} {mark[0] - previous[0]:6.2f} s wall {mark[1] - previous[1]:6.2f} s CPU")
        if name == "build_report":
            rest = (mark[0] - previous[0] - statistics[0], mark[1] - previous[1] - statistics[1])
            print(f"    {'of which evaluation (statistics)':<38} {statistics[0]:6.2f} s wall "
                  f"{statistics[1]:6.2f} s CPU")
            print(f"    {'of which the rest':<38} {rest[0]:6.2f} s wall {rest[1]:6.2f} s CPU")
        previous = mark
    print(f"  {'in all':<40} {marks[-1][1][0] - begin[0]:6.2f} s wall {marks[-1][1][1] - begin[1]:6.2f} s CPU")


def _simulated(judgments: int, seed: int = 0) -> dict:
    """The experiment of `write_csv` as columns: one entry per scored or catch trial, in rater then position order."""
    path = Path(tempfile.mkdtemp(prefix="vtt-bench-")) / "judgments.csv"
    write_csv(path, judgments, seed)
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["trial_kind"] != "practice"]
    path.unlink()
    path.parent.rmdir()
    return rows


def time_database(judgments: int, n_boot: int, ci_method: str | None, compare_method: str | None,
                  keep: str | None) -> None:
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="vtt-bench-db-"))
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VTT_DEMO": "1", "VTT_VAR_DIR": str(folder), "DJANGO_SETTINGS_MODULE": "vtt.settings"}
    env.pop("DATABASE_URL", None)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(ROOT)
    import django
    from django.core.management import call_command

    django.setup()
    from vtt.models import Experiment

    try:
        from vtt.judgments import experiment_judgments
    except ImportError:  # a checkout from before vtt/report.py was split (commit 18194a4 and earlier)
        from vtt.report import experiment_judgments

    start = time.perf_counter()
    call_command("migrate", verbosity=0)
    if Experiment.objects.filter(slug="bench").exists():
        print(f"reusing the database in {folder}")
    else:
        _fill_database(judgments)
        print(f"made the database in {time.perf_counter() - start:.1f} s")
    experiment = Experiment.objects.get(slug="bench")
    start, cpu = time.perf_counter(), time.process_time()
    read, _ = experiment_judgments(experiment)
    print(f"experiment_judgments: {len(read):,} trials in {time.perf_counter() - start:.1f} s wall, "
          f"{time.process_time() - cpu:.1f} s CPU")
    time_vtt_report(["--experiment", "bench"], folder, env, n_boot, ci_method, compare_method)
    if not keep:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def _fill_database(judgments: int) -> None:
    """The experiment `bench`: `write_csv`'s simulated experiment, its practice trials aside, all answered."""
    from django.db import transaction
    from django.utils import timezone

    from vtt.models import Colorization, Experiment, ExperimentImage, Method, Rater, SourceImage, Trial

    rows = _simulated(judgments)
    now = timezone.now()
    with transaction.atomic():
        experiment = Experiment.objects.create(slug="bench", title="Benchmark", catch_fail_threshold=0.25)
        methods = {name: Method.objects.create(experiment=experiment, name=name, colorizer=name,
                                               role=("calibration" if name == "ground_truth" else
                                                     "catch" if name == "grayscale" else "tested"))
                   for name in [*METHODS, "grayscale"]}
        paths = sorted({r["image"] for r in rows})
        sources = SourceImage.objects.bulk_create(
            [SourceImage(split="ctest10k", path=p, class_index=int(p[1:9]) - 1440764, sha256=f"{i:064x}", width=256,
                         height=256) for i, p in enumerate(paths)], batch_size=5000)
        images = ExperimentImage.objects.bulk_create(
            [ExperimentImage(experiment=experiment, source=s, real_file=f"r{i}.jpg") for i, s in enumerate(sources)],
            batch_size=5000)
        image_of = dict(zip(paths, images))
        pairs = sorted({(r["image"], r["method"]) for r in rows})
        made = Colorization.objects.bulk_create(
            [Colorization(image=image_of[p], method=methods[m], file=f"c{i}.jpg", seed=i)
             for i, (p, m) in enumerate(pairs)], batch_size=5000)
        colorization = dict(zip(pairs, made))
        tokens = sorted({r["rater"] for r in rows})
        rater = dict(zip(tokens, Rater.objects.bulk_create([Rater(experiment=experiment, token=t) for t in tokens],
                                                           batch_size=5000)))
        Trial.objects.bulk_create(
            [Trial(rater=rater[r["rater"]], colorization=colorization[(r["image"], r["method"])], kind=r["trial_kind"],
                   position=int(r["position"]), real_side=r["real_side"], choice=r["choice"], answered=now,
                   counted=r["trial_kind"] == "scored") for r in rows], batch_size=5000)
    print(f"{len(rows):,} answered trials ({len(tokens):,} raters, {len(paths):,} images)")


def time_command(judgments: int, n_boot: int, keep: str | None, ci_method: str | None = None,
                 compare_method: str | None = None, stages: bool = False) -> None:
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="vtt-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "judgments.csv"
    start = time.perf_counter()
    info = write_csv(path, judgments)
    print(f"wrote {info['rows']:,} rows ({info['scored']:,} scored judgments, {info['images']:,} images, "
          f"{info['raters']:,} raters, {path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - start:.1f} s")
    env = dict(os.environ)
    if not env.get("DJANGO_SECRET_KEY"):
        env["VTT_DEMO"] = "1"  # the command reads a file: the demo settings are enough
    time_vtt_report(["--judgments-csv", str(path)], folder, env, n_boot, ci_method, compare_method)
    if stages:
        print("the same report in one process, by stage:", flush=True)
        done = subprocess.run([sys.executable, __file__, "--stages-of", str(path), "--n-boot", str(n_boot),
                               "--ci-method", ci_method or "", "--compare-method", compare_method or ""],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"the stage timing failed:\n{done.stderr}")
        print(done.stdout, end="")
    if not keep:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def time_score(args) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, args.images, args.judgments)
    raters = rng.integers(0, args.raters, args.judgments)
    chose = rng.random(args.judgments) < 0.3
    ci_method, compare_method = args.ci_method or "cluster", args.compare_method or "cluster"
    resamples = lambda m: f"{args.n_boot:,} resamples" if m != "cluster" else "no resamples"  # noqa: E731
    start = time.perf_counter()
    result = score(chose, images, raters, method=ci_method, n_boot=args.n_boot, seed=0)
    seconds = time.perf_counter() - start
    print(f"score ({ci_method}): {args.judgments:,} judgments, {result.n_images:,} images, {result.n_raters:,} raters, "
          f"{resamples(ci_method)}: {seconds:.2f} s; VTT {result.score:.4f} [{result.ci_low:.4f}, {result.ci_high:.4f}]")
    if args.methods:
        methods = rng.integers(0, args.methods, args.judgments)
        start = time.perf_counter()
        results = compare_all(chose, images, raters, methods, method=compare_method, n_boot=args.n_boot, seed=0)
        seconds = time.perf_counter() - start
        print(f"compare_all ({compare_method}), {args.methods} methods ({len(results)} pairs), same judgments, "
              f"{resamples(compare_method)}: {seconds:.2f} s")
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", action="store_true", help="Time vtt_report --judgments-csv end to end on a generated CSV.")
    parser.add_argument("--judgments", type=int, default=1_000_000, help="Number of scored judgments. Default: 1,000,000.")
    parser.add_argument("--images", type=int, default=2_000, help="Number of images (without --csv). Default: 2,000.")
    parser.add_argument("--raters", type=int, default=5_000, help="Size of the rater pool (without --csv). Default: 5,000.")
    parser.add_argument("--n-boot", type=int, default=2_000, help="Bootstrap resamples. Default: 2,000.")
    parser.add_argument("--methods", type=int, default=0, help="Without --csv: also time compare_all with this many methods.")
    parser.add_argument("--keep", metavar="DIR", help="With --csv: write the CSV and the HTML report here and keep "
                        "them; with --database: keep the database here (and reuse it).")
    parser.add_argument("--ci-method", help="With --csv or --database: vtt_report's --ci-method. Default: its default.")
    parser.add_argument("--compare-method",
                        help="With --csv or --database: vtt_report's --compare-method. Default: its default.")
    parser.add_argument("--stages", action="store_true",
                        help="With --csv: also time each stage of the report in one process.")
    parser.add_argument("--stages-of", metavar="FILE",
                        help="Time each stage of the report of this CSV in this process (what --stages runs); "
                        "--ci-method and --compare-method may then name any method of evaluation.")
    parser.add_argument("--database", action="store_true",
                        help="Time reading an experiment's judgments from a scratch database, and vtt_report on it.")
    args = parser.parse_args()
    if args.stages_of:
        time_stages(args.stages_of, args.n_boot, [args.ci_method, args.compare_method])
    elif args.database:
        time_database(args.judgments, args.n_boot, args.ci_method, args.compare_method, args.keep)
    elif args.csv:
        time_command(args.judgments, args.n_boot, args.keep, args.ci_method, args.compare_method, args.stages)
    else:
        time_score(args)


if __name__ == "__main__":
    main()
