"""Automatic metrics of stored pairs (`vtt.pair_metrics`) and the report's metrics section (`vtt.report_metrics`):
computed from the files raters see, stored once per colorization, resumable; bad files named; the agreement with
the VTT estimable only when it can be."""
from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from evaluation import metrics as image_metrics
from tests.conftest import colour_image
from vtt import pair_metrics, report, report_html
from vtt.models import (
    Colorization, Experiment, ExperimentImage, Method, PairMetrics, Rater, SourceImage, Trial, pairs_dir,
)

pytestmark = pytest.mark.django_db
N_IMAGES, N_RATERS = 24, 5


def _write(name: str, pixels: np.ndarray) -> None:
    Image.fromarray(pixels).save(pairs_dir() / name, quality=95)


def make_rated(slug: str = "mx", *, tested: int = 4, seed: int = 0, answer: bool = True,
               n_images: int = N_IMAGES) -> Experiment:
    """``tested`` methods that wash the colours out more and more (method m by about 0.25 m), a catch control, and
    five raters per pair who are fooled less the more washed out a pair is."""
    rng = np.random.default_rng(seed)
    pairs_dir().mkdir(parents=True, exist_ok=True)
    experiment = Experiment.objects.create(slug=slug, title="Metrics test")
    methods = [Method.objects.create(experiment=experiment, name=f"wash{m}", kind=Method.Kind.IMPORTED,
                                     role=Method.Role.TESTED) for m in range(tested)]
    methods.append(Method.objects.create(experiment=experiment, name="grayscale", colorizer="grayscale",
                                         role=Method.Role.CATCH))
    washes = {}
    for i in range(n_images):
        real = np.asarray(colour_image(100 + i, (32, 32)).convert("RGB"))
        source = SourceImage.objects.create(split="ctest10k", path=f"n0000000{i % 3}/img{i:02d}.JPEG",
                                            class_index=i % 3, sha256=f"{i:064x}", width=32, height=32)
        image = ExperimentImage.objects.create(experiment=experiment, source=source, real_file=f"{slug}-real{i}.jpg")
        _write(image.real_file, real)
        grey = real.mean(axis=2, keepdims=True)
        for m, method in enumerate(methods):
            wash = 1.0 if method.name == "grayscale" else min(1.0, 0.25 * m + rng.uniform(0, 0.15))
            fake = np.clip(real * (1 - wash) + grey * wash + 0.5, 0, 255).astype(np.uint8)
            c = Colorization.objects.create(image=image, method=method, file=f"{slug}-{method.name}{i}.jpg", seed=0)
            _write(c.file, fake)
            washes[c.id] = wash
    if answer:
        pairs = list(Colorization.objects.filter(image__experiment=experiment, method__role=Method.Role.TESTED))
        for r in range(N_RATERS):
            rater = Rater.objects.create(experiment=experiment, external_id=f"P{r}")
            fooled = rng.random(len(pairs)) < np.clip(0.6 - 0.8 * np.array([washes[c.id] for c in pairs]), 0.02, 1)
            Trial.objects.bulk_create([
                Trial(rater=rater, colorization=c, kind=Trial.Kind.SCORED, position=k + 1, real_side="L",
                      choice="R" if f else "L", answered=rater.started, response_ms=900, counted=True)
                for k, (c, f) in enumerate(zip(pairs, fooled.tolist()))])
    return experiment


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("vtt_report", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_each_pair_gets_the_metrics_of_its_stored_files_once(media_root):
    experiment = make_rated(answer=False)
    outcome = pair_metrics.compute(experiment, threads=2, batch_size=7)
    n_pairs = Colorization.objects.filter(image__experiment=experiment).count()
    assert (outcome.computed, outcome.cached, outcome.problems) == (n_pairs, 0, [])
    c = Colorization.objects.filter(method__name="wash2").select_related("image").first()
    real = np.asarray(Image.open(pairs_dir() / c.image.real_file).convert("RGB"))
    fake = np.asarray(Image.open(pairs_dir() / c.file).convert("RGB"))
    stored = PairMetrics.objects.get(colorization=c)
    expected = image_metrics.all_metrics(real, fake)
    assert {k: getattr(stored, k) for k in expected} == pytest.approx(expected, rel=1e-9)
    assert stored.version == pair_metrics.VERSION
    again = pair_metrics.compute(experiment)
    assert (again.computed, again.cached) == (0, n_pairs)


def test_an_interrupted_run_keeps_its_batches_and_the_next_completes_it(media_root, monkeypatch):
    experiment = make_rated(answer=False)
    n_pairs = Colorization.objects.filter(image__experiment=experiment).count()
    real_metrics, calls = image_metrics.all_metrics, []

    def dies_after_20(real, fake):
        calls.append(1)
        if len(calls) > 20:
            raise KeyboardInterrupt
        return real_metrics(real, fake)

    monkeypatch.setattr(image_metrics, "all_metrics", dies_after_20)
    with pytest.raises(KeyboardInterrupt):
        pair_metrics.compute(experiment, threads=1, batch_size=8)
    assert PairMetrics.objects.count() == 16  # the two whole batches before the failure
    monkeypatch.setattr(image_metrics, "all_metrics", real_metrics)
    outcome = pair_metrics.compute(experiment, batch_size=8)
    assert (outcome.computed, outcome.cached) == (n_pairs - 16, 16)


def test_a_new_definition_computes_every_row_again(media_root, monkeypatch):
    experiment = make_rated(answer=False)
    pair_metrics.compute(experiment)
    monkeypatch.setattr(pair_metrics, "VERSION", pair_metrics.VERSION + 1)
    outcome = pair_metrics.compute(experiment)
    assert outcome.cached == 0 and outcome.computed == PairMetrics.objects.count()


def test_unreadable_files_are_named_and_the_rest_is_computed_and_reported(media_root):
    experiment = make_rated()
    broken = Colorization.objects.filter(method__name="wash1").order_by("id")
    missing, corrupt = broken[0], broken[1]
    (pairs_dir() / missing.file).unlink()
    (pairs_dir() / corrupt.file).write_bytes(b"not a jpeg")
    out, err = run("--experiment", experiment.slug, "--metrics")
    assert f"{pairs_dir() / missing.file}: the file is missing" in err
    assert re.search(re.escape(str(pairs_dir() / corrupt.file)) + r": cannot be read as an image", err)
    assert PairMetrics.objects.count() == Colorization.objects.count() - 2
    assert "Automatic metrics of the stored pairs" in out
    assert "wash1: 2 of 24 pairs have no metrics" in out


def test_the_report_orients_the_agreement_so_that_agreeing_metrics_score_high(media_root):
    experiment = make_rated()
    pair_metrics.compute(experiment)
    data = report.experiment_report(experiment, metrics=True, n_boot=300)
    section = data["metrics"]
    assert [r["method"] for r in section["methods"]][:4] == ["wash0", "wash1", "wash2", "wash3"]
    rank = {r["metric"]: r for r in section["agreement"]["rank"]}
    pairs = {p["metric"]: p for p in section["agreement"]["pairs"]}
    assert section["agreement"]["methods"] == ["wash0", "wash1", "wash2", "wash3"]  # the catch control left out
    catch = section["methods"][-1]  # in the table, with its role though it has no scored trial
    assert (catch["method"], catch["role"], catch["is_control"]) == ("grayscale", "catch", True)
    # Washing out lowers the VTT and raises the colour difference: CIEDE2000 (lower is closer) agrees with people.
    assert rank["ciede2000"]["estimable"] and rank["ciede2000"]["tau"] == pytest.approx(1.0)
    assert rank["ciede2000"]["ci_low"] <= 1.0 <= rank["ciede2000"]["ci_high"] + 1e-12
    assert pairs["ciede2000"]["estimable"] and pairs["ciede2000"]["auc"] > 0.7
    assert pairs["ciede2000"]["ci_low"] > 0.5
    assert pairs["ciede2000"]["n_pairs"] == 4 * N_IMAGES
    # Its scatter: one point per rated pair, at the pair's stored value and fooling rate.
    points = section["agreement"]["scatter"]["ciede2000"]
    assert len(points) == 4 * N_IMAGES and all(p["n"] == N_RATERS for p in points)
    assert {round(p["rate"] * N_RATERS) / N_RATERS for p in points} <= {0, 0.2, 0.4, 0.6, 0.8, 1.0}


def test_with_two_tested_methods_the_rank_correlation_is_not_estimable(media_root):
    experiment = make_rated(tested=2)
    pair_metrics.compute(experiment)
    section = report.experiment_report(experiment, metrics=True, n_boot=200)["metrics"]
    for r in section["agreement"]["rank"]:
        assert not r["estimable"] and r["tau"] is None and r["ci_low"] is None
        assert "2" in r["reason"] and "3" in r["reason"]
    html = report_html.render_html(report.experiment_report(experiment, metrics=True, n_boot=200))
    assert "not estimable" in html


def test_the_html_report_shows_the_metrics_table_agreement_and_scatter(media_root):
    experiment = make_rated()
    out, _ = run("--experiment", experiment.slug, "--metrics", "--n-boot", "200", "--html",
                 str(media_root / "report.html"))
    html = (media_root / "report.html").read_text()
    assert "<h2>Automatic metrics</h2>" in html and "<h2>Do the metrics agree with people?</h2>" in html
    assert html.count('class="vtt-metric-row') == 5  # four tested methods and the catch control
    assert html.count('class="vtt-agreement-row"') == 6  # the six per-pair metrics without learned weights
    assert html.count('<svg class="vtt-scatter"') == 6
    assert "Kendall tau" in out and "CIEDE2000" in out


def test_the_staff_page_shows_the_stored_metrics_and_never_computes_them(media_root, admin_client):
    experiment = make_rated()
    page = admin_client.get(f"/staff/e/{experiment.slug}/").content.decode()
    assert "No metrics are stored for this experiment" in page
    assert PairMetrics.objects.count() == 0
    pair_metrics.compute(experiment)
    page = admin_client.get(f"/staff/e/{experiment.slug}/").content.decode()
    assert "<h2>Do the metrics agree with people?</h2>" in page and 'class="vtt-scatter"' in page


def test_bad_requests_for_metrics_are_refused_with_a_clear_error(media_root, tmp_path):
    experiment = make_rated(answer=False)
    csv = tmp_path / "j.csv"
    csv.write_text("rater,image,method,chose_generated\nr,i,m,1\n")
    with pytest.raises(CommandError, match="--metrics needs --experiment"):
        run("--judgments-csv", str(csv), "--metrics")
    with pytest.raises(CommandError, match="used with --metrics"):
        run("--experiment", experiment.slug, "--inception-weights", str(csv))
    with pytest.raises(CommandError, match=r"--inception-weights: .*nothere\.pth is not a file"):
        run("--experiment", experiment.slug, "--metrics", "--inception-weights", str(tmp_path / "nothere.pth"))
    with pytest.raises(CommandError, match="LPIPS needs both files"):
        run("--experiment", experiment.slug, "--metrics", "--lpips-weights", str(csv))
    assert PairMetrics.objects.count() == 0  # nothing computed before the refusal


@pytest.fixture(scope="module")
def learned_weights(tmp_path_factory) -> dict[str, str]:
    """LPIPS (AlexNet) and FID Inception weights files with random values in the released files' layouts."""
    import torch

    from tests.test_fid import random_state
    from tests.test_lpips import random_weights

    folder = tmp_path_factory.mktemp("learned")
    backbone, lins = random_weights("alex", 0)
    files = {"lin": folder / "alex.pth", "backbone": folder / "alexnet-owt-7be5be79.pth",
             "inception": folder / "pt_inception-2015-12-05-6726825d.pth"}
    torch.save(lins, files["lin"])
    torch.save(backbone, files["backbone"])
    torch.save(random_state(0), files["inception"])
    return {k: str(v) for k, v in files.items()}


def test_lpips_and_fid_come_from_the_weights_given_and_are_computed_once(media_root, learned_weights):
    from evaluation.fid import frechet_distance
    from learned_metrics.inception import inception_features, load_inception
    from learned_metrics.lpips import load_lpips, lpips_distance

    # The Inception runs at 299 px (0.14 s an image on 2 cores): 10 images, the fewest the rank correlation takes.
    experiment = make_rated(tested=3, n_images=10)
    w = learned_weights
    args = ("--experiment", experiment.slug, "--metrics", "--n-boot", "100", "--format", "json",
            "--lpips-weights", w["lin"], "--lpips-backbone", w["backbone"], "--inception-weights", w["inception"])
    data = json.loads(run(*args)[0])
    pairs = list(Colorization.objects.filter(image__experiment=experiment, method__name="wash1")
                 .select_related("image", "image__features", "metrics").order_by("image__source__path"))
    real = np.stack([np.asarray(Image.open(pairs_dir() / c.image.real_file).convert("RGB")) for c in pairs])
    fake = np.stack([np.asarray(Image.open(pairs_dir() / c.file).convert("RGB")) for c in pairs])
    expected = lpips_distance(load_lpips(w["lin"], w["backbone"]), real, fake)
    assert [c.metrics.lpips for c in pairs] == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-7)
    # The stored features are the network's (checked on one pair), and the report's FID is theirs.
    features = inception_features(load_inception(w["inception"]), np.stack([real[0], fake[0]]))
    stored_real = np.stack([np.frombuffer(bytes(c.image.features.inception), np.float32) for c in pairs])
    stored_fake = np.stack([np.frombuffer(bytes(c.metrics.inception), np.float32) for c in pairs])
    assert np.allclose(features, [stored_real[0], stored_fake[0]], rtol=1e-5, atol=1e-6)
    fid = frechet_distance(stored_real.astype(np.float64), stored_fake.astype(np.float64))
    row = next(r for r in data["metrics"]["methods"] if r["method"] == "wash1")
    assert row["values"]["fid"]["mean"] == pytest.approx(fid, rel=1e-9)
    assert row["values"]["lpips"]["mean"] == pytest.approx(float(np.mean(expected)), rel=1e-5)
    rank = {r["metric"] for r in data["metrics"]["agreement"]["rank"]}
    assert {"lpips", "fid"} <= rank
    # Again with the same weights: nothing to compute, no network loaded; the numbers are the same.
    out, err = run(*args)
    assert "metrics: 0 pairs computed, 40 already stored, LPIPS of 0, Inception features of 0" in err
    assert json.loads(out)["metrics"] == data["metrics"]


def test_weights_of_the_wrong_layout_are_named_and_nothing_is_computed(media_root, learned_weights):
    experiment = make_rated(tested=3, answer=False)
    with pytest.raises(CommandError, match=re.escape(learned_weights["lin"])):
        run("--experiment", experiment.slug, "--metrics", "--lpips-weights", learned_weights["lin"],
            "--lpips-backbone", learned_weights["lin"])  # the linear layers are no backbone
    with pytest.raises(CommandError, match=re.escape(learned_weights["backbone"])):
        run("--experiment", experiment.slug, "--metrics", "--inception-weights", learned_weights["backbone"])
    assert PairMetrics.objects.count() == 0


def test_the_staff_page_leaves_fid_to_the_command(media_root, learned_weights, admin_client):
    experiment = make_rated(tested=1, n_images=2, answer=False)
    pair_metrics.compute(experiment, weights=pair_metrics.LearnedWeights(inception=learned_weights["inception"]))
    page = admin_client.get(f"/staff/e/{experiment.slug}/").content.decode()
    assert "FID is computed by vtt_report --metrics; this page does not load the Inception features" in page
    assert ">FID<" not in page
    assert "FID" in [m["label"] for m in report.experiment_report(experiment, metrics=True)["metrics"]["metrics"]]


def test_a_scatter_of_many_pairs_shows_a_random_subset_and_says_so(media_root, monkeypatch):
    from vtt import report_metrics

    monkeypatch.setattr(report_metrics, "MAX_SCATTER", 30)
    experiment = make_rated()
    pair_metrics.compute(experiment)
    data = report.experiment_report(experiment, metrics=True, n_boot=100)
    agreement = data["metrics"]["agreement"]
    assert agreement["scatter_total"]["ssim"] == 4 * N_IMAGES
    points = agreement["scatter"]
    assert {len(p) for p in points.values()} == {30}
    # the same pairs in every plot: the rates (and methods) line up
    assert len({tuple((p["method"], p["rate"]) for p in plot) for plot in points.values()}) == 1
    html = report_html.render_html(data)
    assert f"a random 30 of the {4 * N_IMAGES}, the same pairs in every plot" in html
