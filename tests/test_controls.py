"""Control colorizers, checkpoints and the training command."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorizers import get_colorizer, list_colorizers
from colorizers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sha256_file
from colorizers.color import lab_to_rgb
from colorizers.controls import MeanChroma
from colorizers.train import DEMO_DIR, data_hash, demo_train_files, main

REPO = Path(__file__).resolve().parents[1]

# Three in-gamut colours at the centres of bins 3, 4 and 7 of 10 L* bins
KNOWN_LAB = {3: (35.0, 20.0, -30.0), 4: (45.0, -25.0, 30.0), 7: (75.0, 10.0, 40.0)}
# In-gamut colours at the centres of bins 7, 9 and 15 of the default 20 bins
TRAIN_LAB = [(37.5, 20.0, -30.0), (47.5, -25.0, 30.0), (77.5, 10.0, 40.0)]


def random_L(shape=(2, 1, 8, 8), seed=0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 100


def known_colour_images() -> list[torch.Tensor]:
    """sRGB images made of patches of the KNOWN_LAB colours, 4 px of each per image."""
    patches = torch.tensor(list(KNOWN_LAB.values())).view(3, 3, 1, 1).expand(3, 3, 2, 2)
    image = lab_to_rgb(patches.permute(1, 2, 0, 3).reshape(3, 2, 6))      # (3, 2, 6)
    return [image, image.flip(-1)]


@pytest.fixture
def fitted() -> MeanChroma:
    return MeanChroma.fit(known_colour_images(), n_bins=10)


# --- registry -----------------------------------------------------------------

def test_the_three_controls_are_registered():
    assert {"ground_truth", "grayscale", "mean_chroma"} <= set(list_colorizers())


def test_unknown_name_raises_value_error_listing_the_known_names():
    with pytest.raises(ValueError, match=r"'nope' \(known: .*grayscale, ground_truth, .*mean_chroma"):
        get_colorizer("nope")


# --- ground_truth and grayscale -------------------------------------------------

def test_ground_truth_returns_exactly_the_reference_as_a_copy():
    L = random_L()
    ref = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(1)) * 40
    ab = get_colorizer("ground_truth")().colorize(L, reference_ab=ref)
    assert torch.equal(ab, ref)
    ab += 1
    assert not torch.equal(ab, ref)


def test_ground_truth_refuses_to_run_without_a_reference():
    with pytest.raises(ValueError, match="needs the reference chroma"):
        get_colorizer("ground_truth")().colorize(random_L())


def test_grayscale_returns_zero_chroma():
    ab = get_colorizer("grayscale")().colorize(random_L())
    assert ab.shape == (2, 2, 8, 8) and ab.dtype == torch.float32
    assert torch.count_nonzero(ab) == 0


@pytest.mark.parametrize("name", ["grayscale", "mean_chroma"])
def test_colorizers_other_than_ground_truth_refuse_a_reference(name):
    with pytest.raises(ValueError, match="must not be given the true chroma"):
        get_colorizer(name)().colorize(random_L(), reference_ab=torch.zeros(2, 2, 8, 8))


# --- mean_chroma ----------------------------------------------------------------

def test_mean_chroma_fit_recovers_the_colour_of_each_luminance_bin(fitted):
    for k, (_, a, b) in KNOWN_LAB.items():
        assert torch.allclose(fitted.ab_mean[:, k], torch.tensor([a, b]), atol=1e-2)
    L = torch.tensor([L for L, _, _ in KNOWN_LAB.values()]).view(1, 1, 1, 3)
    expected = torch.tensor([ab for _, *ab in KNOWN_LAB.values()]).T.view(1, 2, 1, 3)
    assert torch.allclose(fitted.colorize(L), expected, atol=1e-2)


def test_mean_chroma_bins_without_pixels_get_the_global_mean(fitted):
    global_mean = torch.tensor([ab for _, *ab in KNOWN_LAB.values()]).mean(0)
    for k in (0, 1, 2, 5, 6, 8, 9):
        assert torch.allclose(fitted.ab_mean[:, k], global_mean, atol=1e-2)


def test_mean_chroma_interpolates_linearly_between_bin_centres(fitted):
    # L* = 40 lies halfway between the centres of bins 3 (35) and 4 (45)
    ab = fitted.colorize(torch.full((1, 1, 1, 1), 40.0)).flatten()
    expected = (torch.tensor(KNOWN_LAB[3][1:]) + torch.tensor(KNOWN_LAB[4][1:])) / 2
    assert torch.allclose(ab, expected, atol=1e-2)


def test_mean_chroma_holds_the_end_bins_beyond_the_outer_centres(fitted):
    ab = fitted.colorize(torch.tensor([0.0, 5.0, 95.0, 100.0]).view(1, 1, 1, 4))[0, :, 0]  # (2, 4)
    first, last = fitted.ab_mean[:, :1], fitted.ab_mean[:, -1:]
    assert torch.allclose(ab[:, :2], first.expand(2, 2))
    assert torch.allclose(ab[:, 2:], last.expand(2, 2))


def test_mean_chroma_params_report_the_number_of_bins(fitted):
    assert fitted.params() == {"n_bins": 10}
    assert MeanChroma().params() == {"n_bins": 20}


def test_mean_chroma_fit_refuses_an_empty_image_set():
    with pytest.raises(ValueError, match="no pixels"):
        MeanChroma.fit([])


def test_mean_chroma_save_and_load_round_trip_gives_identical_output(fitted, tmp_path):
    path = tmp_path / "mc.pt"
    fitted.save(path, extra={"data": "synthetic"})
    loaded = MeanChroma.from_checkpoint(path)
    L = random_L((3, 1, 16, 16), seed=2)
    assert loaded.params() == fitted.params()
    assert torch.equal(loaded.colorize(L), fitted.colorize(L))
    assert [p.name for p in tmp_path.iterdir()] == ["mc.pt"]   # no temporary file left behind


def test_mean_chroma_needs_a_checkpoint_path():
    with pytest.raises(ValueError, match="needs a checkpoint"):
        MeanChroma.from_checkpoint()


# --- checkpoint files -----------------------------------------------------------

def test_checkpoint_loads_with_plain_weights_only_torch_load(fitted, tmp_path):
    fitted.save(tmp_path / "mc.pt", extra={"num_images": 2})
    ckpt = torch.load(tmp_path / "mc.pt", map_location="cpu", weights_only=True)
    assert ckpt["model"] == "mean_chroma" and ckpt["config"] == {"n_bins": 10}
    assert ckpt["extra"] == {"num_images": 2}
    assert torch.equal(ckpt["state_dict"]["ab_mean"], fitted.ab_mean)


def test_save_checkpoint_refuses_values_that_are_not_plain_data(tmp_path):
    with pytest.raises(TypeError, match=r"\['extra'\]\['where'\] is a \w*Path, not a tensor"):
        save_checkpoint(tmp_path / "x.pt", model_name="m", state_dict={}, config={},
                        extra={"where": tmp_path})
    assert not any(tmp_path.iterdir())


def test_loading_a_missing_checkpoint_names_the_path(tmp_path):
    path = tmp_path / "absent.pt"
    with pytest.raises(CheckpointError, match=f"not found: .*{path.name}"):
        MeanChroma.from_checkpoint(path)


def test_loading_a_corrupt_checkpoint_says_it_is_corrupt(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="junk.pt is corrupt"):
        MeanChroma.from_checkpoint(path)


def test_loading_a_truncated_checkpoint_says_it_is_corrupt(fitted, tmp_path):
    path = tmp_path / "mc.pt"
    fitted.save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="mc.pt is corrupt"):
        MeanChroma.from_checkpoint(path)


def test_loading_a_file_that_needs_arbitrary_unpickling_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "vtt-colorizer", "payload": Path("x")}, path)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        MeanChroma.from_checkpoint(path)


def test_loading_a_plain_torch_file_says_it_is_not_a_colorizer_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"ab_mean": torch.zeros(2, 20)}, path)
    with pytest.raises(CheckpointError, match="weights.pt is not a colorizer checkpoint"):
        MeanChroma.from_checkpoint(path)


def test_loading_a_checkpoint_with_missing_keys_names_them(tmp_path):
    path = tmp_path / "partial.pt"
    torch.save({"format": "vtt-colorizer", "format_version": 1, "model": "mean_chroma"}, path)
    with pytest.raises(CheckpointError, match="lacks the key.*config, state_dict, extra"):
        MeanChroma.from_checkpoint(path)


def test_loading_a_checkpoint_of_another_model_names_both_models(tmp_path):
    path = tmp_path / "other.pt"
    save_checkpoint(path, model_name="zhang2016", state_dict={}, config={})
    with pytest.raises(CheckpointError, match="of model 'zhang2016', expected 'mean_chroma'"):
        MeanChroma.from_checkpoint(path)


def test_loading_a_checkpoint_with_a_wrong_shaped_tensor_names_the_path(tmp_path):
    path = tmp_path / "shape.pt"
    save_checkpoint(path, model_name="mean_chroma", state_dict={"ab_mean": torch.zeros(2, 7)},
                    config={"n_bins": 20})
    pattern = r"(?s)shape.pt does not fit 'mean_chroma'.*size mismatch"
    with pytest.raises(CheckpointError, match=pattern):
        MeanChroma.from_checkpoint(path)


def test_load_checkpoint_returns_the_whole_dict(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", model_name="m", state_dict={"w": torch.ones(2)},
                           config={"k": 1}, extra={"tags": ["a", 1, 2.5, None]})
    ckpt = load_checkpoint(path, expected_model="m")
    assert ckpt["config"] == {"k": 1} and ckpt["extra"] == {"tags": ["a", 1, 2.5, None]}


def test_sha256_file_streams_the_file_bytes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert sha256_file(path, chunk_size=1) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


# --- training command -----------------------------------------------------------

def write_images(folder: Path) -> list[str]:
    """Solid-colour images of the TRAIN_LAB colours, one in a subfolder; their names."""
    rgb8 = (lab_to_rgb(torch.tensor(TRAIN_LAB).T.reshape(1, 3, 3, 1)) * 255).round()
    colours = rgb8[0, :, :, 0].T.to(torch.uint8).numpy()                 # (colour, RGB)
    names = ["a.png", "b.PNG", "sub/c.jpeg"]
    for name, colour in zip(names, colours):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.tile(colour, (6, 10, 1))).save(folder / name, quality=100)
    (folder / "notes.txt").write_text("not an image")
    return names


@pytest.mark.slow
def test_train_command_fits_mean_chroma_on_a_folder_end_to_end(tmp_path):
    data = tmp_path / "photos"
    names = write_images(data)
    out = tmp_path / "ckpt" / "mc.pt"
    result = subprocess.run(
        [sys.executable, "-m", "colorizers.train", "--model", "mean_chroma",
         "--data", f"folder:{data}", "--out", str(out), "--size", "4"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout and sha256_file(out) in result.stdout
    ckpt = load_checkpoint(out, expected_model="mean_chroma")
    assert ckpt["extra"] == {
        "data": f"folder:{data} (3 images)",
        "num_images": 3,
        "data_sha256": data_hash(data, names),
        "size": 4,
    }
    L = torch.tensor([L for L, _, _ in TRAIN_LAB]).view(1, 1, 1, 3)
    expected = torch.tensor([ab for _, *ab in TRAIN_LAB]).T.view(1, 2, 1, 3)
    ab = MeanChroma.from_checkpoint(out).colorize(L)
    assert torch.allclose(ab, expected, atol=1.0)   # 8-bit and JPEG rounding


def test_data_hash_changes_when_a_file_changes(tmp_path):
    names = write_images(tmp_path)
    before = data_hash(tmp_path, names)
    assert data_hash(tmp_path, list(reversed(names))) == before      # order-independent
    (tmp_path / names[0]).write_bytes((tmp_path / names[0]).read_bytes() + b"\0")
    assert data_hash(tmp_path, names) != before


def test_train_command_stops_at_a_corrupt_image_and_names_it(tmp_path, capsys):
    write_images(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["--model", "mean_chroma", "--data", f"folder:{tmp_path}",
                 "--out", str(tmp_path / "mc.pt")]) == 1
    assert re.search(r"cannot read image .*broken\.png", capsys.readouterr().err)
    assert not (tmp_path / "mc.pt").exists()


def test_train_command_says_other_models_are_not_trainable_yet(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "grayscale", "--data", f"folder:{tmp_path}",
              "--out", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2
    assert "'grayscale' is not trainable yet" in capsys.readouterr().err


def test_train_command_refuses_an_empty_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--model", "mean_chroma", "--data", f"folder:{tmp_path}",
              "--out", str(tmp_path / "x.pt")])
    assert "no images" in capsys.readouterr().err


def test_demo_train_split_lists_existing_photos():
    assert (DEMO_DIR / "photos.csv").is_file(), "data/demo/photos.csv is missing: rebuild with python data/demo/build.py"
    root, names = demo_train_files()
    assert len(names) == 20 and all((root / name).is_file() for name in names)
