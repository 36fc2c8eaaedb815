"""generate_pairs: idempotent generation, the encoding equality of a pair, bad input."""
from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command
from PIL import Image, ImageCms

from colorizers.color import rgb_to_lab
from colorizers.controls import MeanChroma
from tests.conftest import colour_image, make_fake_imagenet
from vtt import rendering, sources
from vtt.models import Colorization, Experiment, ExperimentImage, Method, SourceImage

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("generate_pairs", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def stored(media_root: Path) -> set[str]:
    return {p.name for p in (media_root / "pairs").iterdir()}


def lightness(image: Image.Image) -> np.ndarray:
    rgb = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    return rgb_to_lab(rgb)[0, 0].numpy()


def counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Experiment, Method, SourceImage, ExperimentImage, Colorization))


def test_generation_registers_every_image_and_method_once(media_root, photo_dir):
    out = run("--experiment", "t", "--split", f"folder:{photo_dir}", "--methods", "ground_truth,grayscale", "--size", "64")
    assert "5 images and 10 colorizations added" in out
    assert counts() == (1, 2, 5, 5, 10)
    assert len(stored(media_root)) == 15  # 5 real + 10 colorized, each under its own random name


def test_a_second_run_with_the_same_arguments_changes_nothing(media_root, photo_dir, mean_chroma_checkpoint):
    args = ["--experiment", "t", "--split", f"folder:{photo_dir}", "--size", "64",
            "--checkpoint", f"mean_chroma={mean_chroma_checkpoint}"]
    run(*args)
    before, files = counts(), stored(media_root)
    out = run(*args)
    assert "0 images and 0 colorizations added, 10 already present" in out  # grayscale, mean_chroma
    assert counts() == before and stored(media_root) == files


def test_a_rerun_completes_what_an_interrupted_run_left(media_root, photo_dir):
    args = ["--experiment", "t", "--split", f"folder:{photo_dir}", "--methods", "ground_truth,grayscale", "--size", "64"]
    run(*args)
    Colorization.objects.filter(method__name="grayscale").order_by("id").last().delete()
    out = run(*args)
    assert "0 images and 1 colorizations added, 9 already present" in out
    assert Colorization.objects.count() == 10


def jpeg_header(data: bytes) -> bytes:
    """Everything of a baseline JPEG before its scan data: the markers up to and including SOS."""
    at = 2  # after SOI
    while True:
        assert data[at] == 0xFF, "not at a marker"
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        at += 2 + length
        if marker == 0xDA:  # start of scan: the entropy-coded data follow
            return data[:at]


def test_both_images_of_a_pair_are_identical_up_to_the_scan_data(media_root, photo_dir, mean_chroma_checkpoint):
    run("--experiment", "t", "--split", f"folder:{photo_dir}", "--size", "96",
        "--checkpoint", f"mean_chroma={mean_chroma_checkpoint}", "--methods", "mean_chroma,grayscale,ground_truth")
    pairs = media_root / "pairs"
    headers = set()
    for colorization in Colorization.objects.select_related("image"):
        real_bytes, fake_bytes = (pairs / colorization.image.real_file).read_bytes(), (pairs / colorization.file).read_bytes()
        # Same markers, tables and sRGB profile, byte for byte; only the entropy-coded scan differs.
        assert jpeg_header(real_bytes) == jpeg_header(fake_bytes)
        headers.add(jpeg_header(real_bytes))
        assert real_bytes[-2:] == fake_bytes[-2:] == b"\xff\xd9"
        real = Image.open(pairs / colorization.image.real_file)
        fake = Image.open(pairs / colorization.file)
        for image in (real, fake):
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (96, 96)
            assert image.info["icc_profile"] == rendering.SRGB_ICC
            assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))).startswith("sRGB")
            assert "exif" not in image.info and "comment" not in image.info
            assert image.getexif() == {} and not image.info.get("progressive")
        assert real.quantization == fake.quantization
        assert real.layer == fake.layer  # same chroma subsampling (4:4:4)
        assert real.info.keys() == fake.info.keys()
        # Same CIE L*: the two differ in chroma only (up to 8-bit, gamut and JPEG rounding).
        assert np.abs(lightness(fake) - lightness(real)).mean() < 1.5
        assert (colorization.sha256, colorization.image.real_sha256) == (
            hashlib.sha256(fake_bytes).hexdigest(), hashlib.sha256(real_bytes).hexdigest())
        if colorization.method.name == "ground_truth":
            assert real_bytes == fake_bytes  # one code path: the real chroma renders the real image itself
        elif colorization.method.name == "grayscale":
            assert real_bytes != fake_bytes
            fake_rgb = np.asarray(fake, dtype=float)
            assert np.abs(fake_rgb[..., 0] - fake_rgb[..., 2]).max() <= 3  # no chroma
    assert len(headers) == 1  # every pair of the experiment, too


def test_the_srgb_profile_is_the_same_bytes_whenever_it_is_made():
    """lcms2 stamps profiles with the time they are made; a real image and a colorization made a
    second apart (a resumed run, an imported method) must still carry the same bytes."""
    first = rendering._srgb_icc()
    time.sleep(1.1)
    assert rendering._srgb_icc() == first == rendering.SRGB_ICC


def test_the_real_image_keeps_the_source_colours(media_root, photo_dir):
    run("--experiment", "t", "--split", f"folder:{photo_dir}", "--methods", "grayscale", "--size", "80")
    image = ExperimentImage.objects.get(source__path="photo0.jpg")
    real = np.asarray(Image.open(media_root / "pairs" / image.real_file), dtype=float)
    source = Image.open(photo_dir / "photo0.jpg").convert("RGB")  # 96x80: resize is a no-op on height 80
    expected = np.asarray(source.crop((8, 0, 88, 80)), dtype=float)
    assert np.abs(real - expected).mean() < 3


def test_imagenet_split_with_limit_and_seed(media_root, tmp_path):
    entries = sources.select(sources.parse_split(sources.SPLITS_DIR / "ctest10k.txt"), 3, seed=5)
    root = make_fake_imagenet(tmp_path / "val", entries, by_wnid=True)
    run("--experiment", "c", "--split", "ctest10k", "--imagenet-val", str(root), "--limit", "3", "--seed", "5",
        "--methods", "grayscale", "--size", "64")
    assert sorted(SourceImage.objects.values_list("path", "class_index")) == sorted((e.key, e.class_index) for e in entries)


def test_incomplete_imagenet_folder_names_the_missing_files_and_writes_nothing(media_root, tmp_path):
    entries = sources.select(sources.parse_split(sources.SPLITS_DIR / "ctest10k.txt"), 3, seed=5)
    root = make_fake_imagenet(tmp_path / "val", entries[:2], by_wnid=False)
    with pytest.raises(CommandError, match=entries[2].filename):
        run("--experiment", "c", "--split", "ctest10k", "--imagenet-val", str(root), "--limit", "3", "--seed", "5")
    assert counts() == (0, 0, 0, 0, 0)


def test_unusable_sources_are_skipped_and_recorded(media_root, photo_dir):
    (photo_dir / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    data = io.BytesIO()
    colour_image(9).save(data, format="JPEG")
    (photo_dir / "truncated.jpg").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    colour_image(10).convert("L").save(photo_dir / "gray.png")
    colour_image(11).convert("CMYK").save(photo_dir / "cmyk.jpg")
    colour_image(12, size=(40, 30)).save(photo_dir / "tiny.png")
    colour_image(13).convert("L").convert("RGB").save(photo_dir / "gray-as-rgb.png")
    out = run("--experiment", "t", "--split", f"folder:{photo_dir}", "--methods", "grayscale", "--size", "64")
    skipped = Experiment.objects.get(slug="t").preprocessing["skipped"]
    assert set(skipped) == {"corrupt.jpg", "truncated.jpg", "gray.png", "cmyk.jpg", "tiny.png", "gray-as-rgb.png"}
    assert "grayscale file" in skipped["gray.png"] and "CMYK" in skipped["cmyk.jpg"]
    assert "too small" in skipped["tiny.png"] and "no colour" in skipped["gray-as-rgb.png"]
    assert "skipped truncated.jpg" in out
    assert ExperimentImage.objects.count() == 5


def test_a_changed_checkpoint_for_an_existing_method_is_refused(media_root, photo_dir, mean_chroma_checkpoint, tmp_path):
    args = ["--experiment", "t", "--split", f"folder:{photo_dir}", "--methods", "mean_chroma", "--size", "64"]
    run(*args, "--checkpoint", f"mean_chroma={mean_chroma_checkpoint}")
    other = tmp_path / "other.pt"
    MeanChroma(n_bins=20).save(other)
    with pytest.raises(CommandError, match="Use a new method name or a new experiment"):
        run(*args, "--checkpoint", f"mean_chroma={other}")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "mean_chroma"], "needs a trained checkpoint"),
        (["--methods", "nosuch"], "Unknown colorizer 'nosuch'"),
        (["--checkpoint", "mean_chroma"], "NAME=PATH"),
        (["--checkpoint", "mean_chroma=/nonexistent/ckpt.pt"], "nonexistent"),
        (["--methods", "grayscale", "--checkpoint", "mean_chroma=x.pt"], "not among --methods"),
        (["--split", "folder:/nonexistent/photos"], "image folder not found"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_arguments_are_clear_errors_that_write_nothing(media_root, photo_dir, args, message):
    base = ["--experiment", "t", "--split", f"folder:{photo_dir}"]
    with pytest.raises(CommandError, match=message):
        run(*base, *args)
    assert counts() == (0, 0, 0, 0, 0)


def test_a_corrupt_checkpoint_is_a_clear_error(media_root, photo_dir, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CommandError, match="cannot load 'mean_chroma'"):
        run("--experiment", "t", "--split", f"folder:{photo_dir}", "--checkpoint", f"mean_chroma={bad}")
    assert counts() == (0, 0, 0, 0, 0)


def test_help_explains_every_option():
    from vtt.management.commands.generate_pairs import Command

    parser = Command().create_parser("manage.py", "generate_pairs")
    own = [a for a in parser._actions if a.dest not in {"help", "version", "verbosity", "settings", "pythonpath",
                                                        "traceback", "no_color", "force_color", "skip_checks"}]
    assert len(own) >= 12
    assert all(a.help and len(a.help) > 15 for a in own), [a.dest for a in own if not a.help]


def test_inference_settings_are_passed_validated_and_recorded(media_root, photo_dir, model_checkpoints):
    base = ["--experiment", "s", "--split", f"folder:{photo_dir}", "--size", "64", "--methods", "pixcolor",
            "--checkpoint", f"pixcolor={model_checkpoints['pixcolor']}"]
    run(*base, "--set", "pixcolor.temperature=0.5")
    method = Method.objects.get(name="pixcolor")
    assert method.params["temperature"] == 0.5
    # Another temperature would mix two provenances under one method name: refused.
    with pytest.raises(CommandError, match="was generated with"):
        run(*base, "--set", "pixcolor.temperature=0.9")


@pytest.mark.parametrize("setting, message", [
    ("pixcolor.temperature=-1", "temperature"),                            # the colorizer validates the value
    ("pixcolor.width=3", r"no inference setting 'width'.*temperature"),    # not a setting: names the real ones
    ("zhang2016.temperature=0.5", "--set given for zhang2016, which is not among --methods"),
    ("temperature=0.5", "--set takes NAME.KEY=VALUE"),
])
def test_a_bad_inference_setting_is_refused_before_anything_is_written(media_root, photo_dir, model_checkpoints,
                                                                       setting, message):
    with pytest.raises(CommandError, match=message):
        run("--experiment", "s", "--split", f"folder:{photo_dir}", "--size", "64", "--methods", "pixcolor",
            "--checkpoint", f"pixcolor={model_checkpoints['pixcolor']}", "--set", setting)
    assert counts() == (0, 0, 0, 0, 0)


def test_the_help_lists_every_colorizers_inference_settings(capsys):
    from colorizers import get_colorizer, list_colorizers
    from vtt.management.commands.generate_pairs import Command

    text = Command().create_parser("manage.py", "generate_pairs").format_help()
    expected = [f"{name}.{key}:" for name in list_colorizers() for key in get_colorizer(name).inference_options]
    assert expected and all(line in text for line in expected)


@pytest.mark.parametrize("removed", [
    ["--title", "T"], ["--raters-per-pair", "3"], ["--trials-per-rater", "12"], ["--completion-code", "C0DE"],
    ["--display-size", "300"], ["--timing", "staircase"], ["--exposure-ms", "500"], ["--desktop-only"],
    ["--require-fullscreen"], ["--no-consent-code", "NC"], ["--open"],
])
def test_study_settings_are_not_generate_pairs_options(photo_dir, media_root, removed):
    """Study settings and opening are `manage.py experiment configure|open`'s: argparse refuses them here."""
    with pytest.raises(CommandError, match=f"unrecognized arguments: {removed[0]}"):
        run("--experiment", "t", "--split", f"folder:{photo_dir}", "--methods", "grayscale", "--size", "64", *removed)
    assert counts() == (0, 0, 0, 0, 0)


def test_the_help_says_where_study_settings_and_opening_are():
    from vtt.management.commands.generate_pairs import Command

    text = " ".join(Command().create_parser("manage.py", "generate_pairs").format_help().split())
    assert "manage.py experiment configure SLUG" in text and "manage.py experiment open SLUG" in text
