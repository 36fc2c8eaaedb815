"""vtt_report on answered trials: one row per method, in every output format."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from vtt.models import Colorization, Experiment, Rater, Trial

pytestmark = pytest.mark.django_db


def report(*args: str) -> str:
    out = io.StringIO()
    call_command("vtt_report", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def answered(media_root, photo_dir) -> Experiment:
    """Five raters answer every pair: grayscale always spotted, ground truth picked on 2 of 5 raters."""
    call_command("generate_pairs", "--experiment", "r", "--split", f"folder:{photo_dir}",
                 "--methods", "ground_truth,grayscale", "--size", "64", "--open", stdout=io.StringIO(), stderr=io.StringIO())
    experiment = Experiment.objects.get(slug="r")
    for r in range(5):
        rater = Rater.objects.create(experiment=experiment)
        for position, colorization in enumerate(Colorization.objects.order_by("id"), start=1):
            fooled = colorization.method.name == "ground_truth" and r < 2
            Trial.objects.create(rater=rater, colorization=colorization, position=position, real_side="L",
                                 choice="R" if fooled else "L", answered=rater.started, response_ms=900)
    # An unanswered trial and a practice trial are not scored.
    extra = Rater.objects.create(experiment=experiment)
    Trial.objects.create(rater=extra, colorization=Colorization.objects.first(), position=1, real_side="L")
    Trial.objects.create(rater=extra, colorization=Colorization.objects.first(), position=2, real_side="L",
                         kind=Trial.Kind.PRACTICE, choice="R", answered=extra.started)
    return experiment


def test_the_table_has_one_row_per_method_with_trials_and_vtt(answered):
    out = report("--experiment", "r", "--ci-method", "wilson")
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith(("ground_truth", "grayscale"))}
    assert lines["ground_truth"].split()[1:5] == ["25", "5", "5", "40.0%"]
    assert lines["grayscale"].split()[1:5] == ["25", "5", "5", "0.0%"]


@pytest.mark.filterwarnings("ignore:The bootstrap interval is degenerate")
def test_json_output_has_the_documented_fields(answered):
    data = json.loads(report("--experiment", "r", "--format", "json", "--n-boot", "200"))
    rows = {row["method"]: row for row in data["methods"]}
    assert set(rows["ground_truth"]) >= {"method", "n_trials", "n_images", "n_raters", "vtt", "ci_low", "ci_high", "ci_method", "confidence"}
    assert rows["ground_truth"]["vtt"] == pytest.approx(0.4)
    assert rows["ground_truth"]["ci_method"] == "bootstrap"
    assert rows["ground_truth"]["ci_low"] <= 0.4 <= rows["ground_truth"]["ci_high"]


def test_csv_output_has_a_header_and_a_row_per_method(answered):
    lines = report("--experiment", "r", "--format", "csv", "--ci-method", "wilson").strip().splitlines()
    assert lines[0].startswith("method,n_trials,n_images,n_raters,vtt")
    assert len(lines) == 3


def test_an_unknown_experiment_is_a_clear_error(answered):
    with pytest.raises(CommandError, match="no experiment 'nope' \\(known: r\\)"):
        report("--experiment", "nope")


def test_an_experiment_without_answers_says_so(media_root):
    Experiment.objects.create(slug="empty", title="Empty")
    assert "no answered scored trials yet" in report("--experiment", "empty")
