"""sRGB <-> CIE Lab conversion (colorizers.color)."""
from __future__ import annotations

import pytest
import torch

from colorizers import color
from colorizers.color import lab_to_rgb, rgb_to_lab

# sRGB colour -> CIE Lab (D65), reference values of the sRGB/D65 conversion
REFERENCE = [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),
    ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),
    ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
    ((0.5, 0.5, 0.5), (53.3890, 0.0, 0.0)),
]


def pixel(values: tuple[float, float, float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A (1, 3, 1, 1) image of one colour."""
    return torch.tensor(values, dtype=dtype).view(1, 3, 1, 1)


@pytest.mark.parametrize(("rgb", "lab"), REFERENCE)
def test_rgb_to_lab_matches_reference_values(rgb, lab):
    got = rgb_to_lab(pixel(rgb)).flatten()
    assert torch.allclose(got, torch.tensor(lab), atol=1e-2, rtol=0), got


def test_white_is_exactly_L100_without_chroma():
    got = rgb_to_lab(pixel((1.0, 1.0, 1.0))).flatten()
    assert torch.allclose(got, torch.tensor([100.0, 0.0, 0.0]), atol=1e-3, rtol=0)


def test_black_is_L0():
    assert torch.equal(rgb_to_lab(pixel((0.0, 0.0, 0.0))).flatten(), torch.zeros(3))


def test_every_8bit_grey_has_no_chroma():
    grey = (torch.arange(256, dtype=torch.float32) / 255).view(1, 1, 1, 256).expand(1, 3, 1, 256)
    lab = rgb_to_lab(grey)
    assert lab[:, 1:].abs().max() < 1e-3
    assert torch.all(lab[0, 0, 0].diff() > 0)   # L* increases with the grey level


def test_round_trip_of_random_colours_is_within_one_8bit_step():
    rgb = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert (lab_to_rgb(rgb_to_lab(rgb)) - rgb).abs().max() < 1 / 255


def test_round_trip_of_all_8bit_grey_levels_is_within_one_8bit_step():
    grey = (torch.arange(256, dtype=torch.float32) / 255).view(1, 1, 16, 16).expand(2, 3, 16, 16)
    assert (lab_to_rgb(rgb_to_lab(grey)) - grey).abs().max() < 1 / 255


def test_out_of_gamut_lab_is_clipped_to_the_unit_range():
    lab = torch.tensor([[50.0, 120.0, -120.0], [100.0, -100.0, 100.0], [0.0, 80.0, 80.0]])
    rgb = lab_to_rgb(lab.T.reshape(1, 3, 3, 1))
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert torch.isfinite(rgb).all()


def test_batch_and_unbatched_shapes_are_kept_and_images_are_independent():
    rgb = torch.rand(3, 3, 5, 7, generator=torch.Generator().manual_seed(1))
    lab = rgb_to_lab(rgb)
    assert lab.shape == (3, 3, 5, 7)
    assert lab_to_rgb(lab).shape == (3, 3, 5, 7)
    # (3, H, W) works too. Batched and single images take different vectorised paths: they differed by up to 3e-5
    # (4 float32 ulps of values near 100) on an Intel Xeon VM; mixing up images would differ by tens.
    assert torch.allclose(rgb_to_lab(rgb[1]), lab[1], rtol=0, atol=1e-3)


def test_bfloat16_input_is_computed_in_float32_and_returned_as_bfloat16():
    rgb = pixel((1.0, 0.0, 0.0), torch.bfloat16)
    lab = rgb_to_lab(rgb)
    assert lab.dtype == torch.bfloat16
    # bfloat16 keeps ~3 significant digits, so only the rounding of the result is lost
    expected = torch.tensor([53.2408, 80.0925, 67.2032])
    assert torch.allclose(lab.float().flatten(), expected, rtol=4e-3, atol=0)
    assert lab_to_rgb(lab).dtype == torch.bfloat16


def test_integer_input_is_refused():
    with pytest.raises(TypeError, match="floating-point"):
        rgb_to_lab(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


def test_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        lab_to_rgb(torch.zeros(1, 2, 4, 4))


@pytest.mark.parametrize("forward, inverse", [(color.rgb_to_yuv, color.yuv_to_rgb), (color.rgb_to_ycbcr, color.ycbcr_to_rgb)])
def test_yuv_and_ycbcr_round_trip_exactly(forward, inverse):
    rgb = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(inverse(forward(rgb)), rgb, atol=1e-12)


def test_yuv_and_ycbcr_reference_values():
    # BT.601: pure red has Y 0.299, U -0.14713, V 0.615; JFIF: Cb -0.168736, Cr 0.5.
    red = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(3, 1, 1)
    assert torch.allclose(color.rgb_to_yuv(red).flatten(), torch.tensor([0.299, -0.14713, 0.615], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(color.rgb_to_ycbcr(red).flatten(), torch.tensor([0.299, -0.168736, 0.5], dtype=torch.float64), atol=1e-6)
    grey = torch.full((3, 1, 1), 0.4)
    assert torch.allclose(color.rgb_to_ycbcr(grey).flatten(), torch.tensor([0.4, 0.0, 0.0]), atol=1e-6)


@pytest.mark.parametrize("convert", [color.rgb_to_lab, color.lab_to_rgb, color.rgb_to_yuv, color.yuv_to_rgb,
                                     color.rgb_to_ycbcr, color.ycbcr_to_rgb])
def test_conversions_are_float32_under_bf16_autocast(convert):
    # Under autocast their matrix product would run in bf16 (sRGB -> Lab up to 2 Lab units off) while the result
    # still says float32: generation and training run in bf16 autocast by default on CUDA.
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    if convert is color.lab_to_rgb:
        x = x * torch.tensor([100.0, 60.0, 60.0]).view(3, 1, 1) - torch.tensor([0.0, 30.0, 30.0]).view(3, 1, 1)
    expected = convert(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = convert(x)
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)
