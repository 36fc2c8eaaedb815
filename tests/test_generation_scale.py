"""generate_pairs as a real process: killed and resumed, sharded under torchrun, importing results.

Each test runs manage.py in subprocesses against a scratch database of the suite's
backend (SQLite, or PostgreSQL when DATABASE_URL names it) and its own media folder.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_fake_imagenet
from tests.conftest import suite_backend as backend
from vtt import sources
from vtt.loadtest import BASE_DIR, free_port, scratch

pytestmark = [pytest.mark.slow, pytest.mark.database]
N_IMAGES = 24


@pytest.fixture
def imagenet(tmp_path) -> Path:
    entries = sources.select(sources.parse_split(sources.SPLITS_DIR / "ctest10k.txt"), N_IMAGES, seed=3)
    return make_fake_imagenet(tmp_path / "val", entries, by_wnid=True)


def generate_args(imagenet: Path, checkpoints: dict[str, Path], *extra: str) -> list[str]:
    """Every registered colorizer: the controls and one checkpoint of each trained model."""
    weights = [f"--checkpoint={name}={path}" for name, path in checkpoints.items()]
    return ["generate_pairs", "--experiment", "g", "--split", "ctest10k", "--imagenet-val", str(imagenet),
            "--limit", str(N_IMAGES), "--seed", "3", "--size", "64", "--device", "cpu", *weights,
            "--verbosity", "0", *extra]


def n_methods() -> int:
    """The default methods: every registered colorizer but ground_truth (the real image itself)."""
    from colorizers import list_colorizers

    return len(list_colorizers()) - 1


def contents(site) -> dict[tuple[str, str], bytes]:
    """(source path, method) -> bytes of the stored file; the real image as method '<real>'."""
    rows = site.query(
        "SELECT s.path, m.name, c.file FROM vtt_colorization c JOIN vtt_method m ON c.method_id = m.id "
        "JOIN vtt_experimentimage e ON c.image_id = e.id JOIN vtt_sourceimage s ON e.source_id = s.id"
    )
    rows += site.query(
        "SELECT s.path, '<real>', e.real_file FROM vtt_experimentimage e JOIN vtt_sourceimage s ON e.source_id = s.id"
    )
    media = site.workdir / "media" / "pairs"
    return {(path, method): (media / name).read_bytes() for path, method, name in rows}


def pair_count(site) -> int:
    return site.query("SELECT COUNT(*) FROM vtt_colorization")[0][0]


def test_a_killed_run_resumes_to_the_same_result_as_a_clean_run(imagenet, model_checkpoints):
    args = generate_args(imagenet, model_checkpoints, "--batch-size", "2", "--workers", "0")
    total = N_IMAGES * n_methods()
    with scratch(backend()) as clean:
        clean.manage(*args)
        expected = contents(clean)
    assert len(expected) == N_IMAGES + total  # the real images and every default method's

    with scratch(backend()) as site:
        pairs = site.workdir / "media" / "pairs"
        process = subprocess.Popen([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=site.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if pairs.is_dir() and len(list(pairs.iterdir())) >= total // 3:
                process.send_signal(signal.SIGKILL)  # a real signal to a real process, mid-run
                break
            time.sleep(0.005)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
        partial = pair_count(site)
        assert 0 < partial < total, f"killed too late or too early ({partial} colorizations)"
        site.manage(*args)  # the same arguments again
        assert pair_count(site) == total
        duplicates = site.query(
            "SELECT image_id, method_id, COUNT(*) FROM vtt_colorization GROUP BY image_id, method_id HAVING COUNT(*) > 1"
        )
        assert duplicates == []
        assert contents(site) == expected  # byte-identical to the clean run, every (image, method)
        registered = {name for (name,) in site.query("SELECT file FROM vtt_colorization")}
        registered |= {name for (name,) in site.query("SELECT real_file FROM vtt_experimentimage")}
        assert all((pairs / name).stat().st_size > 0 for name in registered)
        assert not {p.name for p in pairs.glob(".*.partial")} & registered  # a partial file is never registered


def test_torchrun_shards_the_images_over_two_processes(imagenet, mean_chroma_checkpoint):
    args = generate_args(imagenet, {"mean_chroma": mean_chroma_checkpoint}, "--workers", "0")
    with scratch(backend()) as single:
        single.manage(*args)
        expected = contents(single)
    with scratch(backend()) as site:
        torchrun = Path(sys.executable).with_name("torchrun")
        result = subprocess.run(
            [str(torchrun), "--nproc-per-node", "2", "--master-port", str(free_port()), "manage.py", *args],
            cwd=BASE_DIR, env=site.env, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert contents(site) == expected
        assert site.query("SELECT COUNT(*) FROM vtt_experiment")[0][0] == 1
        assert site.query("SELECT COUNT(*) FROM vtt_method")[0][0] == 2  # grayscale, mean_chroma


def test_imported_results_are_reencoded_and_problems_reported(imagenet, mean_chroma_checkpoint, tmp_path):
    with scratch(backend()) as site:
        site.manage(*generate_args(imagenet, {"mean_chroma": mean_chroma_checkpoint}))
        sources_ = sorted(site.query("SELECT path, width, height FROM vtt_sourceimage"))
        outside = tmp_path / "outside"
        outside.mkdir()
        rng = np.random.default_rng(0)
        for i, (path, width, height) in enumerate(sources_):
            stem = Path(path).stem
            if i == 0:
                continue  # missing
            size = (width + 3, height) if i == 1 else ((64, 64) if i % 2 else (width, height))
            pixels = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC).save(outside / f"{stem}.png")
        out = site.manage("generate_pairs", "--experiment", "g", "--import-dir", str(outside), "--method-name",
                          "elsewhere", "--imagenet-val", str(imagenet), "--split", "ctest10k", "--size", "64")
        assert f"{N_IMAGES - 2} colorizations imported, 0 already present, 2 not imported" in out
        assert f"not imported {sources_[0][0]}: no file named" in out
        assert f"not imported {sources_[1][0]}:" in out and "expected the source's" in out
        again = site.manage("generate_pairs", "--experiment", "g", "--import-dir", str(outside), "--method-name",
                            "elsewhere", "--imagenet-val", str(imagenet), "--split", "ctest10k", "--size", "64")
        assert f"0 colorizations imported, {N_IMAGES - 2} already present" in again
        rows = site.query(
            "SELECT c.file, e.real_file FROM vtt_colorization c JOIN vtt_method m ON c.method_id = m.id "
            "JOIN vtt_experimentimage e ON c.image_id = e.id WHERE m.name = 'elsewhere'"
        )
        media = site.workdir / "media" / "pairs"
        for file, real_file in rows:
            imported, real = Image.open(media / file), Image.open(media / real_file)
            assert imported.size == real.size == (64, 64) and imported.quantization == real.quantization
            assert imported.info.keys() == real.info.keys()
        kind = site.query("SELECT kind, role FROM vtt_method WHERE name = 'elsewhere'")
        assert kind == [("imported", "tested")]
