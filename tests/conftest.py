"""Shared fixtures: small real-looking colour images and a tiny fake ImageNet validation folder."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vtt import sources


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One intra-op torch thread for the whole suite: its tensors are small, and on a
    2-core machine that also runs the database, the server and the browser, several
    threads wait for each other far longer than they compute.

    ``VTT_TEST_TORCH_THREADS=N`` runs the suite with N threads instead, to check that
    no test depends on one thread's order of floating-point operations."""
    import torch

    wanted = os.environ.get("VTT_TEST_TORCH_THREADS", "1")
    if not wanted.isdigit() or int(wanted) < 1:
        pytest.exit(f"VTT_TEST_TORCH_THREADS must be a positive whole number, got {wanted!r}", returncode=4)
    threads = torch.get_num_threads()
    torch.set_num_threads(int(wanted))
    yield
    torch.set_num_threads(threads)


def suite_backend() -> str:
    """The database the suite runs on: PostgreSQL when DATABASE_URL names it, else SQLite."""
    return "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"


def colour_image(seed: int, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A smooth, strongly coloured test picture, different for each seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.02, 0.15), rng.uniform(0.02, 0.15), rng.uniform(0, 6.3)
        channels.append(0.5 + 0.45 * np.sin(fx * x + fy * y + phase))
    pixels = (np.stack(channels, axis=-1) * 255).round().astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """A folder of five colour photographs (PNG and JPEG)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        colour_image(i).save(folder / f"photo{i}.{'png' if i % 2 else 'jpg'}")
    return folder


def make_fake_imagenet(root: Path, entries: list[sources.SplitEntry], *, by_wnid: bool) -> Path:
    """Write one small colour JPEG for each split entry, flat or in wnid folders."""
    for i, entry in enumerate(entries):
        folder = root / entry.wnid if by_wnid else root
        folder.mkdir(parents=True, exist_ok=True)
        colour_image(1000 + i).save(folder / entry.filename, quality=90)
    return root


@pytest.fixture
def mean_chroma_checkpoint(tmp_path: Path) -> Path:
    """A fitted mean_chroma model: a third, tested method beside the two controls."""
    import torch

    from colorizers.controls import MeanChroma

    images = [torch.from_numpy(np.asarray(colour_image(50 + i), dtype=np.float32) / 255).permute(2, 0, 1) for i in range(3)]
    path = tmp_path / "mean_chroma.pt"
    MeanChroma.fit(images).save(path)
    return path


@pytest.fixture
def media_root(settings, tmp_path: Path) -> Path:
    """A fresh folder for rendered pair images, per test."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


# Small configurations of every registered model that needs weights; the pipeline
# tests run them with random weights (what is tested is the plumbing, not quality).
TINY_CONFIGS = {
    "zhang2016": {"width_mult": 0.0625},
    "lal2017": {"width_mult": 0.0625, "critic_width_mult": 0.125},
    "liang2016": {"widths": [4, 4, 4, 4]},
    "pixcolor": "demo_config",
    "royer2017": "demo_config",
}


@pytest.fixture
def model_checkpoints(tmp_path: Path, mean_chroma_checkpoint: Path) -> dict[str, Path]:
    """A checkpoint for every registered colorizer that needs one, keyed by name."""
    import torch

    from colorizers import get_colorizer, list_colorizers
    from colorizers.checkpoint import save_checkpoint

    paths = {"mean_chroma": mean_chroma_checkpoint}
    for name in list_colorizers():
        cls = get_colorizer(name)
        if not cls.needs_checkpoint or name in paths:
            continue
        assert name in TINY_CONFIGS, f"add a small configuration of {name!r} to TINY_CONFIGS in tests/conftest.py"
        config = TINY_CONFIGS[name]
        torch.manual_seed(0)
        model = cls(**(cls.demo_config() if config == "demo_config" else config))
        paths[name] = tmp_path / f"{name}.pt"
        if hasattr(model, "save"):
            model.save(paths[name])
        else:
            save_checkpoint(paths[name], model_name=name, state_dict=model.state_dict(), config=model.params())
    return paths


_POSTGRESQL_ONLY: list = []


def pytest_collection_modifyitems(config, items):
    """``make test-postgres`` reruns only the tests that touch a database (pytest reports the rest as deselected).

    On SQLite, the tests marked ``postgresql`` (concurrent transactions, which SQLite serialises) are deselected,
    and the summary says so: ``make test`` runs them in its PostgreSQL half.
    """
    if not os.environ.get("VTT_TESTS_DATABASE_ONLY"):
        if suite_backend() == "sqlite":
            _POSTGRESQL_ONLY[:] = [item for item in items if item.get_closest_marker("postgresql")]
            if _POSTGRESQL_ONLY:
                config.hook.pytest_deselected(items=_POSTGRESQL_ONLY)
                items[:] = [item for item in items if not item.get_closest_marker("postgresql")]
        return
    keep, drop = [], []
    for item in items:
        (keep if item.get_closest_marker("django_db") or item.get_closest_marker("database") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter):
    if _POSTGRESQL_ONLY:
        terminalreporter.write_line(
            f"{len(_POSTGRESQL_ONLY)} test(s) need PostgreSQL and were deselected on SQLite "
            f"(run by the PostgreSQL half of `make test`): {', '.join(i.nodeid for i in _POSTGRESQL_ONLY)}")


def import_tinted(experiment_slug: str, photo_dir: Path, out_dir: Path, name: str = "tinted") -> None:
    """Register a second tested method without a checkpoint: the sources with a warm cast, imported.

    Its colorizations are real pairs (the chroma differs from the real image's), made by
    `generate_pairs --import-dir`, for tests that need raters to see several methods.
    """
    import io

    from django.core.management import call_command

    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(photo_dir.iterdir()):
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
        tinted = np.clip(rgb + np.array([40, 0, -40]), 0, 255).astype(np.uint8)
        Image.fromarray(tinted).save(out_dir / f"{path.stem}.png")
    call_command("generate_pairs", "--experiment", experiment_slug, "--split", f"folder:{photo_dir}",
                 "--import-dir", str(out_dir), "--method-name", name, stdout=io.StringIO(), stderr=io.StringIO())
