"""vtt_report: from the database or a CSV, in every output format; exclusions, comparisons, bad input."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.template.loader import render_to_string

from vtt import exports, report, report_html
from vtt.models import Colorization, Experiment, ExperimentImage, Method, Rater, SourceImage, Trial

pytestmark = pytest.mark.django_db
CHECKPOINT = "3f" * 32


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("vtt_report", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def rows_by_method(out: str) -> dict[str, list[str]]:
    names = ("ground_truth", "mean_chroma", "grayscale")
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(names)}


def make_experiment(slug: str = "r", n_images: int = 5, **fields) -> Experiment:
    """An experiment with a calibration, a tested and a catch method on `n_images` ImageNet-like images."""
    experiment = Experiment.objects.create(slug=slug, title="Report test", **fields)
    methods = [
        Method.objects.create(experiment=experiment, name="ground_truth", colorizer="ground_truth",
                              role=Method.Role.CALIBRATION),
        Method.objects.create(experiment=experiment, name="mean_chroma", colorizer="mean_chroma",
                              checkpoint_sha256=CHECKPOINT, params={"bins": 16}, role=Method.Role.TESTED),
        Method.objects.create(experiment=experiment, name="grayscale", colorizer="grayscale", role=Method.Role.CATCH),
    ]
    for i in range(n_images):
        source, _ = SourceImage.objects.get_or_create(
            split="ctest10k", path=f"n0144076{i}/ILSVRC2012_val_0000000{i}.JPEG",
            defaults={"class_index": i % 2, "sha256": f"{i:064x}", "width": 64, "height": 64},
        )
        image = ExperimentImage.objects.create(experiment=experiment, source=source, real_file=f"{slug}-real{i}.jpg")
        for m in methods:
            Colorization.objects.create(image=image, method=m, file=f"{slug}-{m.name}{i}.jpg", seed=1000 + i)
    return experiment


def trial(rater: Rater, colorization: Colorization, kind: str, fooled: bool | None, *, counted: bool = True) -> Trial:
    """A trial with the real image on the left, answered (`fooled`: the rater picked the colorization) or not."""
    position = rater.trials.count() + 1
    answered = fooled is not None
    return Trial.objects.create(
        rater=rater, colorization=colorization, kind=kind, position=position, real_side="L",
        choice=("R" if fooled else "L") if answered else "", answered=rater.started if answered else None,
        response_ms=900 if answered else None, counted=counted and kind == Trial.Kind.SCORED and answered,
    )


@pytest.fixture
def answered() -> Experiment:
    """Five raters answer every scored pair; ground_truth fools raters 0-1, mean_chroma rater 0 only.

    Each rater also has two catch trials against grayscale; rater 4 fails both and is flagged. A sixth
    rater leaves a practice trial, an unanswered trial and a late answer that did not count.
    """
    experiment = make_experiment(catch_fail_threshold=0.25)
    pairs = Colorization.objects.filter(image__experiment=experiment).select_related("method").order_by("id")
    for r in range(5):
        rater = Rater.objects.create(experiment=experiment, external_id=f"P{r}")
        for c in pairs:
            if c.method.name == "ground_truth":
                trial(rater, c, Trial.Kind.SCORED, r < 2)
            elif c.method.name == "mean_chroma":
                trial(rater, c, Trial.Kind.SCORED, r < 1)
        for c in [c for c in pairs if c.method.name == "grayscale"][:2]:
            trial(rater, c, Trial.Kind.CATCH, r == 4)
    extra = Rater.objects.create(experiment=experiment)
    trial(extra, pairs[0], Trial.Kind.PRACTICE, True)
    trial(extra, pairs[1], Trial.Kind.SCORED, None)
    trial(extra, pairs[2], Trial.Kind.SCORED, True, counted=False)
    return experiment


def test_the_table_has_one_row_per_method_without_the_flagged_rater(answered):
    out = run("--experiment", "r", "--ci-method", "wilson")
    rows = rows_by_method(out)
    assert rows["ground_truth"][:4] == ["20", "5", "4", "50.0%"]
    assert rows["mean_chroma"][:4] == ["20", "5", "4", "25.0%"]
    assert "grayscale" not in rows  # catch trials are not scored
    assert "1 rater(s) flagged" in out and "left out: 1 with 10 scored judgments" in out
    assert "1 practice, 1 unanswered, 1 late (pair already complete), 10 catch trials" in out
    assert rows["ground_truth"][-1] == "calibration" and rows["mean_chroma"][-1] == "tested"
    lines = out.splitlines()
    assert lines.index("controls:") < next(i for i, line in enumerate(lines) if line.startswith("ground_truth"))


def test_include_flagged_keeps_the_flagged_raters_judgments(answered):
    rows = rows_by_method(run("--experiment", "r", "--ci-method", "wilson", "--include-flagged"))
    assert rows["ground_truth"][:4] == ["25", "5", "5", "40.0%"]
    assert rows["mean_chroma"][:4] == ["25", "5", "5", "20.0%"]


def test_the_experiments_catch_fail_threshold_decides_who_is_flagged(answered):
    Experiment.objects.filter(pk=answered.pk).update(catch_fail_threshold=1.0)  # 2 of 2 failed is not above 1
    assert rows_by_method(run("--experiment", "r", "--ci-method", "wilson"))["ground_truth"][:3] == ["25", "5", "5"]
    assert rows_by_method(run("--experiment", "r", "--ci-method", "wilson", "--catch-fail-threshold", "0.5")
                          )["ground_truth"][:3] == ["20", "5", "4"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_json_output_has_the_documented_fields_comparisons_raters_and_provenance(answered):
    data = json.loads(run("--experiment", "r", "--format", "json", "--n-boot", "300"))
    rows = {row["method"]: row for row in data["methods"]}
    required = {"method", "n_trials", "n_images", "n_raters", "vtt", "ci_low", "ci_high", "ci_method", "confidence"}
    assert set(rows["ground_truth"]) >= required
    assert rows["ground_truth"]["vtt"] == pytest.approx(0.5)
    assert rows["ground_truth"]["ci_method"] == "cluster" and rows["ground_truth"]["confidence"] == 0.95
    assert rows["ground_truth"]["ci_low"] <= 0.5 <= rows["ground_truth"]["ci_high"]
    assert [row["method"] for row in data["methods"]] == ["mean_chroma", "ground_truth"]  # tested, then controls
    provenance = rows["mean_chroma"]["provenance"]
    assert (provenance["colorizer"], provenance["checkpoint_sha256"], provenance["n_images"]) == ("mean_chroma", CHECKPOINT, 5)
    assert provenance["n_seeds"] == 5 and provenance["seed"] is None

    (comparison,) = data["comparisons"]
    assert (comparison["method_a"], comparison["method_b"]) == ("mean_chroma", "ground_truth")
    assert comparison["difference"] == pytest.approx(-0.25)
    assert comparison["n_images_shared"] == 5 and comparison["pvalue_holm"] == comparison["pvalue"]

    raters = data["raters"]
    assert (raters["n_flagged"], raters["n_excluded_raters"], raters["n_excluded_judgments"]) == (1, 1, 10)
    assert raters["catch_accuracy"] == pytest.approx(0.8)
    flagged = [r for r in raters["per_rater"] if r["flagged"]]
    assert [(r["rater"], r["n_catch"], r["n_failed"]) for r in flagged] == [("P4", 2, 2)]
    assert data["left_out"] == {"practice": 1, "unanswered": 1, "not_counted": 1, "catch": 10,
                                "flagged_raters": 1, "judgments_of_flagged_raters": 10, "looked_away": 0,
                                "pilot_raters": 0, "pilot_judgments": 0}
    classes = data["classes"]
    assert classes["methods"] == ["mean_chroma", "ground_truth"]
    assert [(c["class_index"], c["wnid"], c["n_images"]) for c in classes["rows"]] == [
        (0, "n01440760", 3), (1, "n01440761", 2)]
    assert "published" not in data


def test_csv_output_has_a_header_and_a_row_per_method(answered):
    lines = run("--experiment", "r", "--format", "csv", "--ci-method", "wilson").strip().splitlines()
    assert lines[0] == "method,n_trials,n_images,n_raters,vtt,ci_low,ci_high,ci_method,confidence,role"
    assert [line.split(",")[0] for line in lines[1:]] == ["mean_chroma", "ground_truth"]


def test_an_unknown_experiment_is_a_clear_error(answered):
    with pytest.raises(CommandError, match="no experiment 'nope' \\(known: r\\)"):
        run("--experiment", "nope")


def test_an_experiment_without_answers_says_so():
    make_experiment("empty", n_images=2)
    assert "no answered scored trials yet" in run("--experiment", "empty")


def test_an_experiment_whose_only_raters_are_flagged_says_why_nothing_is_scored():
    """The demo tried alone: one rater clicks through, fails the catch trial, and is left out."""
    experiment = make_experiment("alone", n_images=3)
    pairs = {c.method.name: c for c in Colorization.objects.filter(image__experiment=experiment).order_by("-id")}
    rater = Rater.objects.create(experiment=experiment)
    trial(rater, pairs["mean_chroma"], Trial.Kind.SCORED, True)
    trial(rater, pairs["grayscale"], Trial.Kind.CATCH, True)
    out = run("--experiment", "alone")
    assert "all 1 come from 1 rater(s) flagged by their catch trials" in out and "--include-flagged" in out
    assert "mean_chroma" in run("--experiment", "alone", "--include-flagged")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_platforms_csv_export_gives_the_same_report_as_the_database(answered, tmp_path):
    path = tmp_path / "trials.csv"
    with open(path, "w", newline="") as f:
        exports.write_csv(exports.trial_rows(experiment=answered), f)
    from_db = json.loads(run("--experiment", "r", "--format", "json", "--n-boot", "300"))
    from_csv = json.loads(run("--judgments-csv", str(path), "--format", "json", "--n-boot", "300"))
    for row in from_db["methods"]:
        row.pop("provenance")
    for row in from_csv["methods"]:
        assert row.pop("provenance") is None
    assert from_csv["methods"] == from_db["methods"]
    assert from_csv["comparisons"] == from_db["comparisons"]
    assert from_csv["left_out"] == from_db["left_out"]
    assert from_csv["classes"] == from_db["classes"]
    assert from_csv["source"] == "CSV file trials.csv" and from_csv["experiment"] == "r"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_report_body_renders_for_a_staff_page(answered):
    html = render_to_string("vtt/_report_body.html",
                            report_html.html_context(report.experiment_report(answered, n_boot=200)))
    assert html.count('class="vtt-mark"') == 2
    assert '<svg class="vtt-figure"' in html
    assert 'class="vtt-fifty"' in html
    assert CHECKPOINT[:12] in html
    assert "1 flagged rater left out (10 judgments)" in html


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_html_file_is_self_contained(answered, tmp_path):
    path = tmp_path / "report.html"
    out = run("--experiment", "r", "--n-boot", "200", "--html", str(path), "--published")
    assert f"HTML report written to {path}" in out
    html = path.read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html
    assert not re.search(r"<link|<script|\bsrc=|url\(|@import", html)
    assert "published, different raters/protocol:" in html and "vtt-published" in html


# --- CSV input -----------------------------------------------------------------------------------------------

MINIMAL = "rater,image,method,chose_generated\n" + "".join(
    f"r{r},img{i},{m},{int((r + i) % 3 == 0 if m == 'a' else (r + i) % 2 == 0)}\n"
    for r in range(6) for i in range(8) for m in ("a", "b") if (r + i) % 2 == 0 or m == "a"
)


def write(tmp_path: Path, text: str, name: str = "judgments.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_minimal_csv_is_scored_like_the_database(tmp_path):
    path = write(tmp_path, MINIMAL)
    data = json.loads(run("--judgments-csv", str(path), "--format", "json", "--ci-method", "wilson"))
    rows = {row["method"]: row for row in data["methods"]}
    lines = MINIMAL.strip().splitlines()[1:]
    a = [line for line in lines if line.split(",")[2] == "a"]
    assert rows["a"]["n_trials"] == len(a)
    assert rows["a"]["vtt"] == pytest.approx(sum(line.endswith(",1") for line in a) / len(a))
    assert (rows["a"]["n_images"], rows["a"]["n_raters"]) == (8, 6)
    assert rows["a"]["role"] == "tested" and rows["a"]["provenance"] is None
    assert data["raters"]["n_flagged"] == 0 and data["classes"]["rows"] == []


def test_practice_unanswered_late_and_catch_rows_are_not_scored(tmp_path):
    text = ("rater,image,method,chose_generated,trial_kind,counted,class_index\n"
            "r1,i1,m,1,scored,1,7\nr2,i1,m,0,scored,1,7\nr1,i2,m,1,practice,0,\nr2,i2,m,,scored,0,\n"
            "r3,i2,m,1,scored,0,\nr1,i3,grayscale,0,catch,0,\nr2,i3,grayscale,1,catch,0,\n")
    data = json.loads(run("--judgments-csv", str(write(tmp_path, text)), "--format", "json",
                          "--ci-method", "wilson", "--include-flagged"))
    (row,) = data["methods"]
    assert (row["method"], row["n_trials"], row["vtt"]) == ("m", 2, 0.5)
    assert data["left_out"] == {"practice": 1, "unanswered": 1, "not_counted": 1, "catch": 2,
                                "flagged_raters": 0, "judgments_of_flagged_raters": 0, "looked_away": 0,
                                "pilot_raters": 0, "pilot_judgments": 0}
    assert data["raters"]["n_flagged"] == 1  # r2 failed its only catch trial, kept by --include-flagged
    assert data["classes"]["rows"][0]["class_index"] == 7


@pytest.mark.parametrize("text, message", [
    ("", "judgments.csv is empty: expected a header line with the columns rater, image, method, chose_generated"),
    ("rater,image,chose_generated\nr,i,1\n", "judgments.csv, line 1: missing column method (the header has: "
                                             "rater, image, chose_generated)"),
    ("rater,image,method,chose_generated\n", "judgments.csv has a header but no judgments"),
    ("rater,image,method,chose_generated\nr,i,m,1\nr,j,m,yes\n",
     "judgments.csv, line 3, column 'chose_generated': expected 1, 0 or blank, got 'yes'"),
    ("rater,image,method,chose_generated\nr,i,m,1\n\nr,j,m\n",
     "judgments.csv, line 4: expected 4 fields as in the header, got 3"),
    ("rater,image,method,chose_generated\nr,i,m,1,extra\n",
     "judgments.csv, line 2: expected 4 fields as in the header, got 5"),
    ('rater,image,method,chose_generated,trial_kind\nr,"two\nlines",m,1,scored\nr,j,m,1,vigilance\n',
     "judgments.csv, line 4, column 'trial_kind': expected scored, catch or practice, got 'vigilance'"),
    ("rater,image,method,chose_generated\nr,i,m,1\n,j,m,0\n",
     "judgments.csv, line 3, column 'rater': blank; every trial needs a rater, image and method"),
    ("rater,image,method,chose_generated,class_index\nr,i,m,1,cat\n",
     "judgments.csv, line 2, column 'class_index': expected a class number (0, 1, ...) or blank, got 'cat'"),
    ("experiment,rater,image,method,chose_generated\na,r,i,m,1\nb,r,j,m,1\n",
     "judgments.csv holds trials of 2 experiments (a, b); report one experiment at a time"),
    ("rater,image,method,method,chose_generated\nr,i,m,m,1\n", "judgments.csv, line 1: column 'method' appears more than once"),
])
def test_bad_csv_input_is_a_command_error_naming_the_line_and_column(tmp_path, text, message):
    path = write(tmp_path, text)
    html = tmp_path / "report.html"
    with pytest.raises(CommandError, match=re.escape(message)):
        run("--judgments-csv", str(path), "--html", str(html))
    assert not html.exists()


def test_a_missing_file_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="cannot read nothing.csv"):
        run("--judgments-csv", str(tmp_path / "nothing.csv"))


@pytest.mark.parametrize("args, message", [
    (("--confidence", "1.5"), "--confidence must be strictly between 0 and 1, got 1.5"),
    (("--n-boot", "0"), "--n-boot must be a positive number of resamples, got 0"),
    (("--catch-fail-threshold", "2"), "--catch-fail-threshold must be between 0 and 1, got 2.0"),
])
def test_bad_options_are_command_errors(tmp_path, args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        run("--judgments-csv", str(write(tmp_path, MINIMAL)), *args)


def test_published_numbers_are_shown_apart_and_never_mixed_into_ours(tmp_path):
    path = write(tmp_path, MINIMAL)
    data = json.loads(run("--judgments-csv", str(path), "--format", "json", "--ci-method", "wilson", "--published"))
    assert sorted(row["method"] for row in data["methods"]) == ["a", "b"]
    assert data["published"]["label"] == "published, different raters/protocol"
    scores = {p["method"]: p for p in data["published"]["scores"]}
    assert scores["Palette"]["reported"] == "47.80%" and "Table 1" in scores["Palette"]["source"]
    table = run("--judgments-csv", str(path), "--ci-method", "wilson", "--published")
    assert "Published (published, different raters/protocol), not measured here:" in table
    csv_out = run("--judgments-csv", str(path), "--format", "csv", "--ci-method", "wilson", "--published")
    assert "PixColor" not in csv_out


# --- staircase thresholds (HYPE_time) and trials during which the rater looked away ---------------------------

# Each rater's mean_chroma staircase in position order: P0 500 450 400 400 -> (400 + 400) / 2 = 400;
# P1 500 550 600 600 -> 600; P2 500 500 500 450 -> 475. The mean over raters is 491.7.
STAIRS = {"P0": [500, 450, 400, 400], "P1": [500, 550, 600, 600], "P2": [500, 500, 500, 450]}


@pytest.fixture
def staircase() -> Experiment:
    """Three raters, one staircase each on mean_chroma (P1's last answer late); one flagged rater; looked away.

    ground_truth is rated untimed by every rater (no staircase: exposure empty). P1's third trial lost focus.
    A fourth rater, P9, fails their catch trial and has a staircase at the ceiling that must be left out.
    """
    experiment = make_experiment("hype", n_images=5, timing=Experiment.Timing.STAIRCASE)
    pairs = Colorization.objects.filter(image__experiment=experiment).select_related("method").order_by("id")
    by_method = {name: [c for c in pairs if c.method.name == name] for name in ("mean_chroma", "ground_truth",
                                                                                 "grayscale")}
    for name, exposures in [*STAIRS.items(), ("P9", [1000, 1000, 1000, 1000])]:
        rater = Rater.objects.create(experiment=experiment, external_id=name)
        trial(rater, by_method["grayscale"][0], Trial.Kind.CATCH, name == "P9")
        trial(rater, by_method["ground_truth"][0], Trial.Kind.SCORED, True)
        for i, ms in enumerate(exposures):
            t = trial(rater, by_method["mean_chroma"][i], Trial.Kind.SCORED, i % 2 == 0,
                      counted=not (name == "P1" and i == 3))
            Trial.objects.filter(pk=t.pk).update(exposure_ms=ms, focus_lost=name == "P1" and i == 2)
    return experiment


def test_a_staircase_experiment_reports_each_methods_threshold_and_its_interval(staircase):
    data = json.loads(run("--experiment", "hype", "--format", "json", "--ci-method", "wilson", "--n-boot", "500"))
    rows = {row["method"]: row for row in data["methods"]}
    mean_chroma = rows["mean_chroma"]
    assert mean_chroma["threshold_ms"] == pytest.approx((400 + 600 + 475) / 3)  # P9 (flagged) left out
    assert (mean_chroma["threshold_n_raters"], mean_chroma["threshold_n_trials"]) == (3, 12)  # the late answer too
    low, high = mean_chroma["threshold_ci_low"], mean_chroma["threshold_ci_high"]
    assert 400 <= low < mean_chroma["threshold_ms"] < high <= 600
    assert mean_chroma["n_trials"] == 11  # the VTT leaves the late answer out
    assert rows["ground_truth"]["threshold_ms"] is None  # untimed: no staircase
    assert data["staircase"]["n_trials"] == 12 and data["staircase"]["n_late"] == 1

    with_flagged = json.loads(run("--experiment", "hype", "--format", "json", "--ci-method", "wilson",
                                  "--include-flagged", "--n-boot", "200"))
    assert with_flagged["methods"][0]["threshold_ms"] == pytest.approx((400 + 600 + 475 + 1000) / 4)


def test_the_threshold_is_in_the_table_the_csv_and_the_html(staircase, tmp_path):
    out = run("--experiment", "hype", "--ci-method", "wilson", "--n-boot", "500")
    assert "threshold: exposure in ms (3-down/1-up staircase per rater and method" in out
    fields = rows_by_method(out)["mean_chroma"]
    assert fields[4] == "[" + fields[4][1:] and "492ms" in fields  # VTT interval, then the threshold
    lines = run("--experiment", "hype", "--format", "csv", "--ci-method", "wilson").strip().splitlines()
    assert lines[0] == ("method,n_trials,n_images,n_raters,vtt,ci_low,ci_high,ci_method,confidence,"
                        "threshold_ms,threshold_ci_low,threshold_ci_high,role")
    assert lines[1].startswith("mean_chroma,") and ",491.66" in lines[1]
    path = tmp_path / "hype.html"
    run("--experiment", "hype", "--ci-method", "wilson", "--n-boot", "300", "--html", str(path))
    html = path.read_text()
    assert 'class="vtt-staircase"' in html and '<td class="n vtt-threshold">492 ms</td>' in html


def test_a_fixed_exposure_experiment_shows_no_threshold(answered):
    Trial.objects.filter(rater__experiment=answered).update(exposure_ms=1000)
    data = json.loads(run("--experiment", "r", "--format", "json", "--ci-method", "wilson"))
    assert data["staircase"] is None and all(row["threshold_ms"] is None for row in data["methods"])
    assert "threshold" not in run("--experiment", "r", "--format", "csv", "--ci-method", "wilson")


def test_exclude_looked_away_leaves_those_trials_out_and_says_how_many(staircase):
    kept = run("--experiment", "hype", "--ci-method", "wilson", "--n-boot", "200")
    assert "1 scored trial(s) during which the page lost focus are kept (--exclude-looked-away" in kept
    data = json.loads(run("--experiment", "hype", "--format", "json", "--ci-method", "wilson", "--n-boot", "200",
                          "--exclude-looked-away"))
    mean_chroma = {row["method"]: row for row in data["methods"]}["mean_chroma"]
    assert mean_chroma["n_trials"] == 10
    # P1's staircase without its third trial: 500 550 600 -> (550 + 600) / 2
    assert mean_chroma["threshold_ms"] == pytest.approx((400 + 575 + 475) / 3)
    assert data["left_out"]["looked_away"] == 1 and data["settings"]["exclude_looked_away"] is True
    out = run("--experiment", "hype", "--ci-method", "wilson", "--n-boot", "200", "--exclude-looked-away")
    assert "looked away: left out 1 scored trial(s) during which the page lost focus" in out
    html = render_to_string("vtt/_report_body.html",
                            report_html.html_context(report.experiment_report(staircase, n_boot=200,
                                                                              exclude_looked_away=True)))
    assert "1 trial during which the rater looked away (the page lost focus) left out." in html


def test_the_export_csv_gives_the_same_thresholds_and_exclusions(staircase, tmp_path):
    path = tmp_path / "hype.csv"
    with open(path, "w", newline="") as f:
        exports.write_csv(exports.trial_rows(experiment=staircase), f)
    for extra in ((), ("--exclude-looked-away",)):
        args = ("--format", "json", "--ci-method", "wilson", "--n-boot", "300", *extra)
        from_db = json.loads(run("--experiment", "hype", *args))
        from_csv = json.loads(run("--judgments-csv", str(path), *args))
        for row in from_db["methods"] + from_csv["methods"]:
            row.pop("provenance")
        assert from_csv["methods"] == from_db["methods"]
        assert from_csv["staircase"] == from_db["staircase"] and from_csv["left_out"] == from_db["left_out"]


def test_a_csv_with_varying_exposures_is_read_as_staircases_in_position_order(tmp_path):
    # Rows out of order: positions put r1's staircase in order 500 550 600 600 -> 600.
    text = ("rater,image,method,chose_generated,position,exposure_ms,focus_lost\n"
            "r1,i4,m,0,4,600,\nr1,i1,m,0,1,500,0\nr1,i3,m,1,3,600,1\nr1,i2,m,0,2,550,\n"
            "r2,i1,m,1,1,500,0\nr2,i2,m,1,2,500,0\n")
    data = json.loads(run("--judgments-csv", str(write(tmp_path, text)), "--format", "json", "--ci-method", "wilson",
                          "--n-boot", "200"))
    (row,) = data["methods"]
    assert row["threshold_ms"] == pytest.approx((600 + 500) / 2) and row["threshold_n_raters"] == 2
    assert data["looked_away"] == {"n_judgments": 1, "excluded": False}
    constant = text.replace(",600,", ",500,").replace(",550,", ",500,")
    data = json.loads(run("--judgments-csv", str(write(tmp_path, constant)), "--format", "json",
                          "--ci-method", "wilson"))
    assert data["staircase"] is None  # one exposure everywhere: fixed timing


@pytest.mark.parametrize("column, value, message", [
    ("exposure_ms", "fast", "column 'exposure_ms': expected an exposure in whole milliseconds (e.g. 500) or blank"),
    ("exposure_ms", "0", "column 'exposure_ms': expected an exposure in whole milliseconds"),
    ("focus_lost", "maybe", "column 'focus_lost': expected 1, 0 or blank, got 'maybe'"),
    ("position", "-3", "column 'position': expected a position in the session (1, 2, ...) or blank, got '-3'"),
])
def test_bad_staircase_columns_are_errors_naming_the_line(tmp_path, column, value, message):
    text = f"rater,image,method,chose_generated,{column}\nr,i,m,1,1\nr,j,m,0,{value}\n"
    with pytest.raises(CommandError, match=re.escape(f"judgments.csv, line 3, {message}")):
        run("--judgments-csv", str(write(tmp_path, text)))
