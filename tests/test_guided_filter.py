"""The guided filter against a direct, window-by-window implementation of He et al.'s Algorithm 1."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from colorizers.guided_filter import box_mean, guided_filter



def naive_box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean of each pixel's window [i - r, i + r] x [j - r, j + r] cut to the image, one window at a time."""
    H, W = x.shape[-2:]
    out = np.empty_like(x)
    for i in range(H):
        for j in range(W):
            window = x[..., max(0, i - r):i + r + 1, max(0, j - r):j + r + 1]
            out[..., i, j] = window.mean(axis=(-2, -1))
    return out


def naive_guided_filter(I: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He, Sun, Tang (TPAMI 2013), Algorithm 1, written out with the naive box mean."""
    mean_I = naive_box_mean(I, r)
    mean_p = naive_box_mean(p, r)
    var_I = naive_box_mean(I * I, r) - mean_I * mean_I
    cov_Ip = naive_box_mean(I * p, r) - mean_I * mean_p
    a = cov_Ip / (var_I + eps)
    b = mean_p - a * mean_I
    return naive_box_mean(a, r) * I + naive_box_mean(b, r)


def rand(*shape: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("r", [0, 1, 2, 4, 7, 20])
def test_box_mean_equals_the_mean_over_each_cut_off_window(r):
    x = rand(2, 3, 9, 13, seed=r)
    expected = naive_box_mean(x.numpy(), r)
    np.testing.assert_allclose(box_mean(x, r).numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("r, eps", [(0, 1e-2), (1, 1e-4), (2, 1e-2), (3, 1e-4), (5, 1e-3), (40, 1e-4)])
def test_guided_filter_equals_the_direct_implementation(r, eps):
    # radius 40 on a 9 x 13 image: every window is cut off on all sides
    I = rand(2, 1, 9, 13, seed=10 + r)
    p = rand(2, 3, 9, 13, seed=20 + r) - 0.5
    expected = naive_guided_filter(I.numpy(), p.numpy(), r, eps)
    np.testing.assert_allclose(guided_filter(I, p, radius=r, eps=eps).numpy(), expected, rtol=0, atol=1e-10)


def test_a_guide_per_channel_filters_each_channel_with_its_own_guide():
    I = rand(1, 2, 8, 11, seed=1)
    p = rand(1, 2, 8, 11, seed=2)
    expected = naive_guided_filter(I.numpy(), p.numpy(), 2, 1e-3)
    np.testing.assert_allclose(guided_filter(I, p, radius=2, eps=1e-3).numpy(), expected, rtol=0, atol=1e-10)


def test_each_image_of_a_batch_is_filtered_on_its_own():
    I = rand(3, 1, 20, 17, seed=3)
    p = rand(3, 2, 20, 17, seed=4)
    batched = guided_filter(I, p, radius=3)
    for k in range(3):
        torch.testing.assert_close(batched[k:k + 1], guided_filter(I[k:k + 1], p[k:k + 1], radius=3),
                                   rtol=0, atol=1e-12)


def test_float32_at_the_default_radius_and_eps_matches_float64():
    I = box_mean(rand(1, 1, 160, 200, seed=5), 2) * 0.3 + 0.6     # a bright, low-contrast guide
    p = rand(1, 2, 160, 200, seed=6) - 0.5
    exact = guided_filter(I, p)
    single = guided_filter(I.float(), p.float())
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), exact, rtol=0, atol=1e-6)


def test_bfloat16_is_computed_in_float32_and_returned_as_bfloat16():
    I = rand(1, 1, 12, 12, seed=7, dtype=torch.float32).bfloat16()
    p = rand(1, 2, 12, 12, seed=8, dtype=torch.float32).bfloat16()
    out = guided_filter(I, p, radius=2)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, guided_filter(I.float(), p.float(), radius=2).bfloat16())


def test_a_flat_guide_reduces_to_two_box_means_of_the_input():
    # var(I) = cov(I, p) = 0 in every window, so a = 0 and q = mean(mean(p))
    I = torch.full((1, 1, 10, 10), 0.4, dtype=torch.float64)
    p = rand(1, 1, 10, 10, seed=9)
    torch.testing.assert_close(guided_filter(I, p, radius=2), box_mean(box_mean(p, 2), 2))


def test_an_edge_of_the_guide_well_above_eps_is_preserved():
    # a step of 0.5 (variance 0.0625 >> eps) filtered by itself stays a step
    I = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    I[..., 8:] = 0.5
    q = guided_filter(I, I, radius=3, eps=1e-4)
    torch.testing.assert_close(q, I, rtol=0, atol=5e-3)


@pytest.mark.parametrize("kwargs, message", [
    ({"radius": -1}, "radius must be a non-negative integer, got -1"),
    ({"radius": 2.5}, "radius must be a non-negative integer, got 2.5"),
    ({"eps": 0.0}, "eps must be positive, got 0.0"),
])
def test_invalid_radius_or_eps_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        guided_filter(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), **kwargs)


def test_a_guide_that_does_not_fit_the_input_is_refused():
    with pytest.raises(ValueError, match=r"guide must have shape .* got \(1, 1, 5, 4\)"):
        guided_filter(torch.rand(1, 1, 5, 4), torch.rand(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"guide must have shape .* got \(1, 3, 4, 4\)"):
        guided_filter(torch.rand(1, 3, 4, 4), torch.rand(1, 2, 4, 4))
