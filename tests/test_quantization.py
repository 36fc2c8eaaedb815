"""Zhang et al.'s quantized a*b* space: bins, soft encoding, prior, weights, decoding, loss."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from colorizers.color import lab_to_rgb, rgb_to_lab
from colorizers.quantization import (
    BINS_FILE, ab_bins, annealed_mean, bin_histogram, empirical_prior, nearest_bin, rebalanced_cross_entropy,
    rebalancing_weights, soft_encode, subsample,
)
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "zhang2016-pts-in-hull.txt"
# sha256 of the authors' 313 rows written "a b" (integers), joined by newlines: pins the list and its order
AUTHORS_BINS_SHA256 = "0f78a6b229442c5552f5200f2f5b146764cf5b95060329c5f3226c30c50847b9"


def authors_rows(path: Path) -> list[tuple[int, int]]:
    """The a b rows of a pts_in_hull text file, read with numpy (not with the module's reader)."""
    return [(int(a), int(b)) for a, b in np.loadtxt(path, comments="#")]


@pytest.fixture(scope="module")
def bins() -> torch.Tensor:
    return ab_bins()


def at(bins: torch.Tensor, a: float, b: float) -> int:
    """Index of the bin centred at (a, b)."""
    return int(((bins - torch.tensor([a, b])).abs().sum(1) == 0).nonzero())


# --- bins -------------------------------------------------------------------------

def test_the_gamut_keeps_313_bins_of_the_grid_of_10(bins):
    assert bins.shape == (313, 2) and bins.dtype == torch.float32
    assert torch.equal(bins, (bins / 10).round() * 10)                       # multiples of 10
    assert bins.abs().max() <= 110
    assert len({tuple(c) for c in bins.tolist()}) == 313


def test_bins_are_ordered_by_a_then_b(bins):
    keys = (bins[:, 0] * 1000 + bins[:, 1]).tolist()
    assert keys == sorted(keys)


def test_the_bins_are_the_authors_list_row_by_row(bins):
    shipped = authors_rows(BINS_FILE)
    digest = hashlib.sha256("\n".join(f"{a} {b}" for a, b in shipped).encode()).hexdigest()
    assert digest == AUTHORS_BINS_SHA256
    assert [tuple(map(int, row)) for row in bins.tolist()] == shipped
    if REFERENCE.exists():                       # the project's reference copy, where the checkout has it
        assert authors_rows(REFERENCE) == shipped
    # spot checks from the authors' file: first, middle and last rows
    assert (shipped[0], shipped[54], shipped[120], shipped[312]) == ((-90, 50), (-40, 10), (0, 0), (100, 0))


def test_an_off_by_one_in_the_bin_order_is_caught(bins):
    shifted = torch.roll(bins, 1, dims=0)
    digest = hashlib.sha256("\n".join(f"{int(a)} {int(b)}" for a, b in shifted.tolist()).encode()).hexdigest()
    assert digest != AUTHORS_BINS_SHA256
    # a colour's bin is the authors' row of its centre, not a neighbour's
    ab = torch.tensor([[0.0, 0.0], [20.0, -30.0], [-40.0, 10.0]]).T.reshape(1, 2, 1, 3)
    assert nearest_bin(ab, bins).flatten().tolist() == [120, 154, 54]
    assert nearest_bin(ab, shifted).flatten().tolist() == [121, 155, 55]


def test_the_bins_file_names_its_source_and_licence():
    header = BINS_FILE.read_text().split("\n", 3)[:3]
    assert "richzhang/colorization" in header[1] and "BSD-2-Clause" in header[1]


def test_grey_and_the_srgb_primaries_fall_into_bins_close_to_their_colour(bins):
    rgb = torch.tensor([[0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]])
    ab = rgb_to_lab(rgb.T.reshape(1, 3, 1, 7))[:, 1:]                       # (1, 2, 1, 7)
    centres = bins[nearest_bin(ab, bins).flatten()]                          # (7, 2)
    assert (centres - ab[0, :, 0].T).norm(dim=1).max() <= 5 * math.sqrt(2)
    assert centres[0].tolist() == [0.0, 0.0]


def test_every_srgb_colour_has_a_bin_within_half_a_grid_diagonal(bins):
    rgb = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    ab = rgb_to_lab(rgb)[1:]                                                 # (2, 64, 64)
    distance = torch.cdist(ab.reshape(2, -1).T, bins).min(dim=1).values
    assert distance.max() <= 5 * math.sqrt(2) + 1e-4


# --- soft encoding ---------------------------------------------------------------

def test_soft_encoding_spreads_a_bin_centre_over_itself_and_its_four_neighbours(bins):
    ab = torch.tensor([20.0, -30.0]).view(1, 2, 1, 1)
    z = soft_encode(ab, bins)[0, :, 0, 0]                                    # (313,)
    assert torch.count_nonzero(z) == 5
    assert z.sum().item() == pytest.approx(1.0, abs=1e-6)
    # neighbours at distance 10 weigh exp(-100 / (2 * 25)) = e^-2 relative to the centre
    assert z[at(bins, 20, -30)].item() == pytest.approx(1 / (1 + 4 * math.exp(-2)), rel=1e-5)
    for a, b in ((10, -30), (30, -30), (20, -40), (20, -20)):
        assert z[at(bins, a, b)].item() == pytest.approx(math.exp(-2) / (1 + 4 * math.exp(-2)), rel=1e-5)


def test_soft_encoding_takes_the_number_of_neighbours_as_a_parameter(bins):
    ab = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(1)) * 30
    z = soft_encode(ab, bins, neighbours=10)
    assert z.shape == (2, 313, 3, 3)
    assert (torch.count_nonzero(z, dim=1) == 10).all()
    assert torch.allclose(z.sum(dim=1), torch.ones(2, 3, 3))
    assert torch.equal(z.argmax(dim=1), nearest_bin(ab, bins))


def test_soft_encoding_refuses_impossible_parameters(bins):
    with pytest.raises(ValueError, match="neighbours must be in 1..313, got 0"):
        soft_encode(torch.zeros(1, 2, 1, 1), bins, neighbours=0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        soft_encode(torch.zeros(1, 2, 1, 1), bins, sigma=0)


# --- prior and rebalancing -------------------------------------------------------

def test_the_prior_is_a_smoothed_normalised_histogram(bins):
    counts = torch.zeros(313, dtype=torch.float64)
    counts[at(bins, 0, 0)] = 100
    prior = empirical_prior(counts, bins)
    assert prior.sum().item() == pytest.approx(1.0, abs=1e-6)
    # sigma 5 on a grid of 10: each of the four neighbours gets e^-2 of the centre's mass
    assert (prior[at(bins, 10, 0)] / prior[at(bins, 0, 0)]).item() == pytest.approx(math.exp(-2), rel=1e-5)


def test_histogram_counts_every_pixel_in_its_nearest_bin(bins):
    ab = torch.tensor([[3.0, -4.0], [21.0, 29.0], [19.0, 31.0]]).T.reshape(1, 2, 1, 3)
    counts = bin_histogram(ab, bins)
    assert counts.sum() == 3 and counts[at(bins, 0, 0)] == 1 and counts[at(bins, 20, 30)] == 2


def test_rebalancing_weights_have_unit_expectation_and_favour_rare_colours(bins):
    counts = torch.rand(313, generator=torch.Generator().manual_seed(2), dtype=torch.float64) ** 4
    prior = empirical_prior(counts, bins)
    w = rebalancing_weights(prior, lam=0.5)
    assert (prior * w).sum().item() == pytest.approx(1.0, rel=1e-5)
    order = prior.argsort()
    assert torch.all(w[order][1:] <= w[order][:-1] + 1e-6)                   # decreasing in the prior
    assert torch.allclose(rebalancing_weights(prior, lam=1.0), torch.ones(313))   # lambda 1: no rebalancing


def test_rebalancing_refuses_lambda_outside_its_range():
    with pytest.raises(ValueError, match="lambda must be in"):
        rebalancing_weights(torch.full((313,), 1 / 313), lam=0.0)


# --- decoding --------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [0.38, 1.0, 0.05])
def test_annealed_mean_of_a_one_hot_distribution_is_its_bin_centre(bins, temperature):
    z = torch.zeros(1, 313, 1, 3)
    for j, (a, b) in enumerate(((0, 0), (-90, 80), (60, -110))):
        z[0, at(bins, a, b), 0, j] = 1.0
    ab = annealed_mean(z.log(), bins, temperature=temperature)               # log 0 = -inf: empty bins
    assert torch.equal(ab[0, :, 0], torch.tensor([[0.0, -90.0, 60.0], [0.0, 80.0, -110.0]]))


def test_annealed_mean_at_temperature_1_is_the_expectation(bins):
    logits = torch.randn(2, 313, 2, 2, generator=torch.Generator().manual_seed(3))
    expected = torch.einsum("bqhw,qc->bchw", logits.softmax(dim=1), bins)
    assert torch.allclose(annealed_mean(logits, bins, temperature=1.0), expected, atol=1e-4)


def test_annealing_moves_the_mean_towards_the_mode(bins):
    logits = torch.randn(1, 313, 1, 1, generator=torch.Generator().manual_seed(4)) * 2
    mode = bins[logits.flatten().argmax()]
    gaps = [(annealed_mean(logits, bins, temperature=T)[0, :, 0, 0] - mode).norm() for T in (1.0, 0.38, 0.01)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3


def test_decoding_bf16_logits_returns_float32(bins):
    logits = torch.randn(1, 313, 2, 2, generator=torch.Generator().manual_seed(5))
    ab = annealed_mean(logits.bfloat16(), bins)
    assert ab.dtype == torch.float32
    assert torch.allclose(ab, annealed_mean(logits, bins), atol=2.0)


def test_decoding_and_the_loss_stay_float32_under_bf16_autocast(bins):
    logits = torch.randn(2, 313, 4, 4, generator=torch.Generator().manual_seed(8))
    ab = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(9)) * 40
    weights = torch.ones(313)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        decoded = annealed_mean(logits, bins)
        loss = rebalanced_cross_entropy(logits, ab, bins, weights)
    assert decoded.dtype == loss.dtype == torch.float32
    assert torch.equal(decoded, annealed_mean(logits, bins))
    assert torch.equal(loss, rebalanced_cross_entropy(logits, ab, bins, weights))


def test_a_colour_at_a_bin_centre_survives_encoding_and_decoding_to_srgb_and_back(bins):
    lab = torch.tensor([60.0, 20.0, -30.0]).view(1, 3, 1, 1)
    rgb = lab_to_rgb(lab)
    ab = rgb_to_lab(rgb)[:, 1:]                                              # in gamut: unchanged
    decoded = annealed_mean(soft_encode(ab, bins).log(), bins, temperature=0.01)
    assert torch.allclose(decoded, torch.tensor([20.0, -30.0]).view(1, 2, 1, 1), atol=1e-3)


# --- the loss --------------------------------------------------------------------

def test_subsample_takes_the_pixel_at_the_centre_of_each_block():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    assert subsample(x, (2, 2)).flatten().tolist() == [2 * 8 + 2, 2 * 8 + 6, 6 * 8 + 2, 6 * 8 + 6]


def test_loss_weights_each_pixel_by_the_weight_of_its_nearest_bin(bins):
    ab = torch.tensor([[20.0, -30.0], [-40.0, 10.0]]).T.reshape(1, 2, 1, 2)  # two pixels, logits at full size
    logits = torch.randn(1, 313, 1, 2, generator=torch.Generator().manual_seed(6))
    weights = torch.ones(313)
    weights[at(bins, 20, -30)], weights[at(bins, -40, 10)] = 3.0, 0.5
    target = soft_encode(ab, bins)
    ce = -(target * logits.log_softmax(dim=1)).sum(dim=1)[0, 0]              # (2,)
    expected = (3.0 * ce[0] + 0.5 * ce[1]) / 2
    loss = rebalanced_cross_entropy(logits, ab, bins, weights)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_loss_leaves_out_images_without_colour(bins):
    colourful = torch.full((1, 2, 4, 4), 30.0)
    grey = torch.full((1, 2, 4, 4), 4.0)                                     # |a|, |b| <= 5 everywhere
    logits = torch.randn(2, 313, 4, 4, generator=torch.Generator().manual_seed(7), requires_grad=True)
    weights = torch.ones(313)
    both = rebalanced_cross_entropy(logits, torch.cat([colourful, grey]), bins, weights)
    alone = rebalanced_cross_entropy(logits[:1], colourful, bins, weights)
    assert both.item() == pytest.approx(alone.item(), rel=1e-6)
    only_grey = rebalanced_cross_entropy(logits[1:], grey, bins, weights)
    only_grey.backward()
    assert only_grey.item() == 0.0 and torch.count_nonzero(logits.grad) == 0
