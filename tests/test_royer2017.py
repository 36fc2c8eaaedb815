"""royer2017: PixelCNN++ parts, exact cached sampling, the samplers' distribution, training
protocol and checkpoints.

Every test uses a tiny configuration (8x8 chroma grid, width 8, 2 logistics) and one
CPU thread: the ops are small, and a second thread only adds contention.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass

import numpy as np

import pytest
import torch
import torch.nn.functional as F
from django.core.management import call_command

from colorizers import get_colorizer
from colorizers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from colorizers.color import rgb_to_lab
from colorizers.pixelcnnpp import (
    PixelCNNDecoder, channel_log_probs, draw_noise, mixture_log_prob, quantize, sample_cached, sample_naive,
)
from colorizers.royer2017 import Royer2017, _downsample, ab_to_unit, unit_to_ab
from colorizers.train import demo_train_files, load_image
from colorizers.training import train
from vtt.models import Colorization, Method

TINY = {
    "working_size": 32, "embed_widths": [4, 4, 8, 8], "embed_blocks": 1, "embed_dilations": [2],
    "embed_dilated_blocks": 1, "embed_channels": 16, "channels": 8, "n_blocks": 2, "n_mix": 2,
    "dropout": 0.0, "polyak": False,
}
CPU = torch.device("cpu")


@dataclass
class Batch:
    """What the shared trainer hands to train_step."""

    rgb: torch.Tensor
    labels: torch.Tensor



def tiny(seed: int = 0, **overrides) -> Royer2017:
    torch.manual_seed(seed)
    return Royer2017(**{**TINY, **overrides})


def seeds(*values: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(v) for v in values]


def random_L(batch: int = 2, size: tuple[int, int] = (32, 32), seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, *size, generator=torch.Generator().manual_seed(seed)) * 100


def demo_photos(n: int, size: int = 32) -> torch.Tensor:
    """The first n demo training photos, shorter side ``size``, centre-cropped square."""
    root, names = demo_train_files()
    images = []
    for name in names[:n]:
        rgb = load_image(root / name, size)
        top, left = (rgb.shape[1] - size) // 2, (rgb.shape[2] - size) // 2
        images.append(rgb[:, top:top + size, left:left + size])
    return torch.stack(images)


def decoder_inputs(model: Royer2017, batch: int = 2, seed: int = 0):
    """Float64 decoder (eval), an embedding of random L and the 8x8 grid's L."""
    model = model.double().eval()
    L = torch.rand(batch, 1, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with torch.no_grad():
        emb = model.net.embedding(L)
    return model.net.decoder, emb, F.avg_pool2d(L, 4)[:, 0]


# --- registry, configuration ----------------------------------------------------------

def test_royer2017_is_registered_as_a_trained_model():
    cls = get_colorizer("royer2017")
    assert cls is Royer2017 and cls.needs_checkpoint and not cls.needs_reference


def test_default_configuration_has_the_documented_parameter_count():
    with torch.device("meta"):
        model = Royer2017(polyak=False)
    assert model.num_parameters() == {"embedding": 98_883_936, "decoder": 11_697_360, "total": 110_581_296}
    assert model.net.decoder.n_outputs == 80 and model.params()["embed_channels"] == 160


def test_params_are_json_and_rebuild_the_same_model():
    params = tiny().params()
    assert json.loads(json.dumps(params)) == params
    assert Royer2017(**params).params() == params


@pytest.mark.parametrize("change, message", [
    ({"working_size": 30}, "`working_size` must be a multiple of 4, got 30"),
    ({"embed_channels": 15}, "`embed_channels` must be at least 8 \\* n_mix = 16, got 15"),
    ({"mode": "best"}, "`mode` must be 'sample' or 'auxiliary', got 'best'"),
    ({"temperature": -1.0}, "`temperature` must be a finite number >= 0, got -1.0"),
    ({"kernel_size": 2}, "`kernel_size` must be odd, got 2"),
])
def test_invalid_configuration_names_the_parameter(change, message):
    with pytest.raises(ValueError, match=message):
        Royer2017(**{**TINY, **change})


def test_the_inference_settings_are_declared_for_help():
    assert set(Royer2017.inference_options) == {"mode", "temperature", "sampler", "cuda_graph"}
    assert all(isinstance(text, str) and text for text in Royer2017.inference_options.values())


def test_the_default_train_config_reads_whole_images_stretched_to_128():
    config = Royer2017.default_train_config()
    assert config["crop"] == 128 and config["resize_mode"] == "stretch" and "resize" not in config


# --- the authors' scales and resolutions ---------------------------------------------------

def test_the_256_levels_are_the_integer_a_and_b_values_of_the_authors_normalisation():
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    ab = unit_to_ab(torch.stack([levels, levels])[None, :, :, None])[0, :, :, 0]   # (2, 256)
    assert torch.allclose(ab[0], torch.arange(-127, 129, dtype=torch.float64), atol=1e-9)   # a* in [-127, 128]
    assert torch.allclose(ab[1], torch.arange(-128, 128, dtype=torch.float64), atol=1e-9)   # b* in [-128, 127]
    x = torch.rand(3, 2, 5, 5, dtype=torch.float64) * 200 - 100
    assert torch.allclose(unit_to_ab(ab_to_unit(x)), x)
    assert torch.allclose(ab_to_unit(torch.tensor([[[[0.5]], [[-0.5]]]])), torch.zeros(1, 2, 1, 1))


def tf1_resize_bilinear(x: np.ndarray, out: int) -> np.ndarray:
    """TensorFlow 1's resize_bilinear(align_corners=False) of (H, W) to (out, out): the legacy
    formula, input coordinate = output coordinate * in / out, linear between the two neighbours."""
    size = x.shape[0]
    coords = np.arange(out) * (size / out)
    lo = np.floor(coords).astype(int)
    hi = np.minimum(lo + 1, size - 1)
    t = coords - lo
    rows = x[lo] * (1 - t)[:, None] + x[hi] * t[:, None]
    return rows[:, lo] * (1 - t)[None, :] + rows[:, hi] * t[None, :]


def test_downsampling_is_what_the_authors_tensorflow_1_bilinear_resize_computes():
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = np.stack([[tf1_resize_bilinear(c, 8) for c in image] for image in x.numpy()])
    assert np.allclose(_downsample(x).numpy(), expected, rtol=0, atol=1e-12)


def test_training_targets_are_every_fourth_pixels_chroma_rounded_to_integer_a_b():
    rgb = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    L, ab = tiny().prepare_batch(rgb)
    lab = rgb_to_lab(rgb)
    assert torch.allclose(L, (lab[:, :1] - 50) / 50)
    targets = unit_to_ab(ab)                                    # integer a*, b* on the 8x8 grid
    assert torch.allclose(targets, targets.round(), atol=1e-3)
    grid = lab[:, 1:, ::4, ::4]
    clear = ((grid - grid.floor()) - 0.5).abs() > 1e-3          # not a tie that float rounding may tip
    assert torch.equal(targets.round()[clear], grid.round()[clear]) and clear.float().mean() > 0.99


def test_the_sampled_grid_is_upsampled_with_its_corners_on_the_image_corners():
    ab = tiny(temperature=0.0).colorize(random_L(batch=1, size=(20, 28)))
    corners = ab[..., [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.allclose(corners, corners.round(), atol=1e-3)     # corners are grid values: integers
    assert ab[:, 0].min() >= -127 - 1e-3 and ab[:, 0].max() <= 128 + 1e-3
    assert ab[:, 1].min() >= -128 - 1e-3 and ab[:, 1].max() <= 127 + 1e-3


# --- causality -------------------------------------------------------------------------

def test_decoder_outputs_never_depend_on_the_current_or_later_pixels():
    decoder, emb, _ = decoder_inputs(tiny())
    x = quantize(torch.rand(2, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    with torch.no_grad():
        base = decoder(x, emb).flatten(2)                                  # (B, 8K, 64) raster order
        for p in range(64):
            changed = x.clone()
            changed.view(2, 2, 64)[:, :, p] = -changed.view(2, 2, 64)[:, :, p] + 0.5
            diff = (decoder(changed, emb).flatten(2) - base).abs().amax(dim=(0, 1))   # (64,)
            assert torch.all(diff[:p + 1] == 0), f"pixel {p} changed the outputs of pixels <= {p}"
            i, j = divmod(p, 8)
            if j < 7:
                assert diff[p + 1] > 0, f"pixel {p} does not reach its right neighbour"
            if i < 7:
                assert diff[p + 8] > 0, f"pixel {p} does not reach the pixel below"


def test_the_mixture_lets_b_depend_on_a_but_not_a_on_b():
    torch.manual_seed(0)
    params = torch.randn(50, 16, dtype=torch.float64)
    L = torch.rand(50, dtype=torch.float64) * 2 - 1
    x = quantize(torch.rand(50, 2, dtype=torch.float64) * 2 - 1)
    lp_a, lp_b = channel_log_probs(params, x, L, 2)
    other_b = x.clone()
    other_b[:, 1] = quantize(-x[:, 1] + 0.3)
    lp_a2, _ = channel_log_probs(params, other_b, L, 2)
    assert torch.equal(lp_a, lp_a2)
    other_a = x.clone()
    other_a[:, 0] = quantize(-x[:, 0] + 0.3)
    _, lp_b2 = channel_log_probs(params, other_a, L, 2)
    assert torch.all((lp_b2 - lp_b).abs().amax(-1) > 0)


def test_the_discretized_mixture_sums_to_one_over_the_256_by_256_levels():
    torch.manual_seed(0)
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(levels, levels, indexing="ij"), dim=-1).view(-1, 2)   # (65536, 2)
    for _ in range(3):
        params = torch.randn(16, dtype=torch.float64).expand(grid.shape[0], 16)
        L = torch.full((grid.shape[0],), 0.3, dtype=torch.float64)
        total = mixture_log_prob(params, grid, L, 2).exp().sum()
        assert total.item() == pytest.approx(1.0, abs=1e-6)


# --- training ---------------------------------------------------------------------------

def test_teacher_forced_likelihood_improves_when_overfitting_real_photos():
    """40 steps at lr 3e-3 lower both losses by more than 0.5 bits per dimension: measured 2.6 to
    3.6 (decoder) and 2.3 to 3.6 (embedding predictor) over seeds 0-7, one and two torch threads,
    and oneDNN/ATen limited to AVX-512, AVX2 and SSE4.1."""
    model = tiny()
    photos = Batch(rgb=demo_photos(3), labels=torch.zeros(3, dtype=torch.long))
    config = {**Royer2017.default_train_config(), "lr": 3e-3}
    optimizers = model.configure_optimizers(config)
    L, ab = model.prepare_batch(photos.rgb)
    assert L.shape == (3, 1, 32, 32) and ab.shape == (3, 2, 8, 8)

    def eval_bpd() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            return tuple(t.item() for t in model.net.losses(L, ab))

    before = eval_bpd()
    logs = [model.train_step(photos, step, optimizers) for step in range(40)]
    after = eval_bpd()
    assert after[0] < before[0] - 0.5 and after[1] < before[1] - 0.5
    assert all(set(log) == {"loss", "bpd", "aux_bpd"} for log in logs)
    assert logs[-1]["loss"] == pytest.approx(logs[-1]["bpd"] + logs[-1]["aux_bpd"])


def test_train_step_keeps_a_polyak_average_that_follows_the_weights():
    model = tiny(polyak=True, dropout=0.5)
    averages = dict(model.net_avg.named_buffers())
    assert list(averages) == [name for name, _ in model.net.named_parameters()]
    assert sum(p.numel() for p in model.parameters()) == model.num_parameters()["total"]
    optimizers = model.configure_optimizers({"lr": 1e-2})
    start = {name: a.clone() for name, a in averages.items()}
    batch = Batch(rgb=torch.rand(2, 3, 40, 32), labels=torch.zeros(2, dtype=torch.long))
    for step in range(3):
        model.train_step(batch, step, optimizers)
    weights = dict(model.net.named_parameters())
    moved = max((a - start[n]).abs().max() for n, a in averages.items())
    gap = max((a - weights[n]).abs().max() for n, a in averages.items())
    assert moved > 0 and gap > 0     # moved towards the weights, not onto them
    assert optimizers["model"][1].get_last_lr()[0] == pytest.approx(1e-2 * 0.99999**3)


def test_the_polyak_average_has_the_authors_constant_decay_from_the_first_step():
    model = tiny(polyak=True)
    optimizers = model.configure_optimizers({"lr": 1e-2})
    start = {name: a.clone() for name, a in model.net_avg.named_buffers()}
    model.train_step(Batch(rgb=torch.rand(2, 3, 32, 32), labels=torch.zeros(2, dtype=torch.long)), 0, optimizers)
    for name, p in model.net.named_parameters():     # no warm-up: 0.999 already at step 0
        expected = 0.999 * start[name] + 0.001 * p.detach()
        assert torch.allclose(dict(model.net_avg.named_buffers())[name], expected, atol=1e-7), name


# --- sampling ---------------------------------------------------------------------------

@pytest.mark.parametrize("kernel_size, temperature", [(3, 1.0), (5, 0.7), (3, 0.0)])
def test_cached_sampler_gives_exactly_the_naive_samples_in_float64(kernel_size, temperature):
    decoder, emb, L_small = decoder_inputs(tiny(kernel_size=kernel_size), batch=3)
    gumbel, logistic = draw_noise(seeds(1, 2, 3), 3, 8, 8, 2, device=CPU, dtype=torch.float64)
    naive = sample_naive(decoder, emb, L_small, gumbel, logistic, temperature)
    cached = sample_cached(decoder, emb, L_small, gumbel, logistic, temperature)
    assert torch.equal(cached, naive)
    assert naive.unique().numel() > 10       # a real sample, not a constant or saturated image


# The samplers' distribution. Both samplers draw through `mixture_sample`, so comparing them
# with each other cannot catch a wrong draw; here the samples are compared with the model's
# exact probabilities, computed from the mixture's definition (bin masses of logistic CDFs),
# independently of `mixture_sample` and of `mixture_log_prob`.

DIST_K, DIST_GRID, DIST_SAMPLES = 2, 3, 4000
DIST_DELTA = 1e-6      # chance, per pixel and sampler, that a correct sampler exceeds the bound


def decoder_with_fixed_conditioning():
    """A tiny float64 decoder whose outputs do not depend on the canvas (its input
    convolutions are zeroed), so every pixel of every sample is an independent draw from a
    fixed distribution that varies over the 3x3 grid (through the condition and L): means
    within about +-0.5, log-scales near log(0.6/255) (a few levels wide), coefficients and
    weights spread out."""
    torch.manual_seed(0)
    K = DIST_K
    decoder = PixelCNNDecoder(in_channels=2, channels=8, n_blocks=2, cond_channels=6, n_outputs=8 * K,
                              dropout=0.0).double().eval()
    with torch.no_grad():
        for conv in (decoder.u_in, decoder.ul_in_down, decoder.ul_in_right):
            conv.weight.zero_()
        w, b = decoder.out.weight, decoder.out.bias
        w[:4 * K] *= 3                                      # logits and coefficients
        for lo in (4 * K, 6 * K):                           # means of a and b
            w[lo:lo + K] *= 0.5
            b[lo:lo + K] = 0
        for lo in (5 * K, 7 * K):                           # log-scales
            w[lo:lo + K] *= 0.05
            b[lo:lo + K] = math.log(0.6 / 255)
    g = torch.Generator().manual_seed(1)
    cond = torch.randn(1, 6, DIST_GRID, DIST_GRID, generator=g, dtype=torch.float64)
    L = torch.rand(1, DIST_GRID, DIST_GRID, generator=g, dtype=torch.float64) * 2 - 1
    return decoder, cond, L


def reference_pmf(params: torch.Tensor, L: torch.Tensor, K: int) -> torch.Tensor:
    """P(a = level i, b = level j): params (..., 8K) in the authors' layout, L (...) -> (..., 256, 256).

    sum_k w_k P_k(a) P_k(b | a), each a logistic's mass between the bin edges (midpoints
    between levels; the end bins reach to -inf and +inf); b's location moves with the level of a.
    """
    logits = params[..., :K]
    c = torch.tanh(params[..., K:4 * K]).unflatten(-1, (3, K))                          # c_aL, c_bL, c_ba
    mean_a, log_scale_a, mean_b, log_scale_b = params[..., 4 * K:].unflatten(-1, (4, K)).unbind(-2)
    scale_a, scale_b = log_scale_a.clamp_min(-7).exp(), log_scale_b.clamp_min(-7).exp()
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    inf = torch.tensor([math.inf], dtype=torch.float64)
    edges = torch.cat([-inf, (levels[:-1] + levels[1:]) / 2, inf])                        # (257,)
    loc_a = mean_a + c[..., 0, :] * L[..., None]                                         # (..., K)
    cdf_a = torch.sigmoid((edges[:, None] - loc_a[..., None, :]) / scale_a[..., None, :])  # (..., 257, K)
    p_a = cdf_a[..., 1:, :] - cdf_a[..., :-1, :]                                          # (..., 256 a, K)
    loc_b = (mean_b + c[..., 1, :] * L[..., None])[..., None, :] + c[..., 2, :][..., None, :] * levels[:, None]
    cdf_b = torch.sigmoid((edges[:, None, None] - loc_b[..., None, :, :]) / scale_b[..., None, None, :])
    p_b = (cdf_b[..., 1:, :, :] - cdf_b[..., :-1, :, :]).transpose(-3, -2)               # (..., 256 a, 256 b, K)
    return torch.einsum("...k,...ik,...ijk->...ij", torch.softmax(logits, -1), p_a, p_b)


def sampler_tv_and_bound(sampler, seed: int) -> list[tuple[float, float]]:
    """(total variation, bound) per pixel between ``sampler``'s empirical distribution over
    DIST_SAMPLES samples and the exact one.

    The bound: for a bin x of probability p, the empirical frequency over N independent
    draws has variance p(1 - p)/N, so E|freq - p| <= sqrt(p(1 - p)/N) and
    E[TV] <= 1/2 sum_x sqrt(p(1 - p)/N). TV is a function of N independent draws that one
    draw changes by at most 1/N, so by McDiarmid's inequality P(TV >= E[TV] + t) <=
    exp(-2 N t^2): with t = sqrt(ln(1/delta) / (2N)) a correct sampler exceeds
    1/2 sum_x sqrt(p(1 - p)/N) + t with probability below delta = 1e-6. For these
    distributions and N = 4000: about 0.077 (0.035 + 0.042).
    """
    K, G, N = DIST_K, DIST_GRID, DIST_SAMPLES
    decoder, cond, L = decoder_with_fixed_conditioning()
    with torch.no_grad():
        params = decoder(torch.zeros(1, 2, G, G, dtype=torch.float64), cond)[0].movedim(0, -1)   # (G, G, 8K)
    pmf = reference_pmf(params, L[0], K).view(G * G, 256 * 256)
    gumbel, logistic = draw_noise(seeds(seed), 1, G, G, K, n_samples=N)
    samples = sampler(decoder.float(), cond.float().expand(N, -1, -1, -1), L.float().expand(N, -1, -1),
                      gumbel, logistic, 1.0)                                                     # (N, 2, G, G)
    level = torch.round((samples.double() + 1) * 127.5).long()
    bins = (level[:, 0] * 256 + level[:, 1]).flatten(1)                                         # (N, G*G)
    out = []
    for pixel in range(G * G):
        p = pmf[pixel]
        freq = torch.bincount(bins[:, pixel], minlength=256 * 256).double() / N
        tv = 0.5 * (freq - p).abs().sum().item()
        bound = 0.5 * (p * (1 - p) / N).sqrt().sum().item() + math.sqrt(math.log(1 / DIST_DELTA) / (2 * N))
        out.append((tv, bound))
    return out


def test_the_reference_probabilities_are_the_likelihood_the_model_is_trained_on():
    decoder, cond, L = decoder_with_fixed_conditioning()
    G = DIST_GRID
    with torch.no_grad():
        params = decoder(torch.zeros(1, 2, G, G, dtype=torch.float64), cond)[0].movedim(0, -1)
    pmf = reference_pmf(params, L[0], DIST_K)                                                   # (G, G, 256, 256)
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(levels, levels, indexing="ij"), dim=-1)                   # (256, 256, 2)
    log_p = mixture_log_prob(params[:, :, None, None].expand(G, G, 256, 256, -1), grid.expand(G, G, 256, 256, 2),
                             L[0][:, :, None, None].expand(G, G, 256, 256), DIST_K)
    assert torch.allclose(pmf.sum(dim=(-2, -1)), torch.ones(G, G, dtype=torch.float64), atol=1e-12)
    assert (log_p.exp() - pmf).abs().max() < 1e-5    # mixture_log_prob approximates masses below 1e-5
    assert pmf.flatten(2).amax(-1).min() > 0.1       # a few levels wide: a one-level shift is visible


@pytest.mark.parametrize("sampler, seed", [(sample_naive, 1), (sample_cached, 2)])
def test_samples_follow_the_models_exact_distribution(sampler, seed):
    """4000 samples of a 3x3 grid: every pixel's total variation from the exact probabilities
    stays below the bound of `sampler_tv_and_bound` (measured 0.020 to 0.037 against 0.077).
    The mutants of `test_the_distribution_test_fails_a_wrong_draw` (both samplers, seed 3):
    c_aL and c_bL swapped 0.65 to 1.0 at every pixel, c_bL and c_ba swapped 0.56 to 1.0, a or
    b one level up 0.57 to 0.65."""
    for pixel, (tv, bound) in enumerate(sampler_tv_and_bound(sampler, seed)):
        assert tv < bound, f"pixel {pixel}: total variation {tv:.3f} from the model's distribution > {bound:.3f}"


def _swapped(first: int, second: int):
    """A `mixture_sample` reading coefficient ``first`` where ``second`` is (0 c_aL, 1 c_bL, 2 c_ba) and back."""
    import colorizers.pixelcnnpp as pcnn

    original = pcnn.mixture_sample

    def mutated(params, L, gumbel, logistic, temperature, n_mix):
        K, params = n_mix, params.clone()
        lo, hi = (K + first * K, K + first * K + K), (K + second * K, K + second * K + K)
        params[..., lo[0]:lo[1]], params[..., hi[0]:hi[1]] = params[..., hi[0]:hi[1]].clone(), params[..., lo[0]:lo[1]].clone()
        return original(params, L, gumbel, logistic, temperature, n_mix)

    return mutated


def _shifted(channel: int):
    """A `mixture_sample` whose ``channel`` (0 a, 1 b) comes out one level up (an off-by-one bin)."""
    import colorizers.pixelcnnpp as pcnn

    original = pcnn.mixture_sample

    def mutated(params, L, gumbel, logistic, temperature, n_mix):
        ab = original(params, L, gumbel, logistic, temperature, n_mix).clone()
        ab[..., channel] = (ab[..., channel] + 2 / 255).clamp(-1, 1)
        return ab

    return mutated


@pytest.mark.parametrize("mutant", ["c_aL<->c_bL", "c_bL<->c_ba", "a one level up", "b one level up"])
@pytest.mark.parametrize("sampler", [sample_naive, sample_cached])
def test_the_distribution_test_fails_a_wrong_draw(monkeypatch, sampler, mutant):
    """The check above is not vacuous: a swapped mixture coefficient or an off-by-one bin in
    `mixture_sample`, which both samplers share, takes some pixel over its bound."""
    import colorizers.pixelcnnpp as pcnn

    wrong = {"c_aL<->c_bL": _swapped(0, 1), "c_bL<->c_ba": _swapped(1, 2),
             "a one level up": _shifted(0), "b one level up": _shifted(1)}[mutant]
    monkeypatch.setattr(pcnn, "mixture_sample", wrong)
    worst = max(tv - bound for tv, bound in sampler_tv_and_bound(sampler, 3))
    assert worst > 0, f"{mutant}: every pixel within its bound (worst margin {worst:.3f})"


def test_noise_of_an_image_depends_on_its_own_generator_only():
    together = draw_noise(seeds(5, 6), 2, 4, 4, 3, device=CPU)
    alone = draw_noise(seeds(6), 1, 4, 4, 3, device=CPU)
    assert all(torch.equal(t[1:], a) for t, a in zip(together, alone))


def test_colorize_returns_chroma_at_the_input_size():
    ab = tiny().colorize(random_L(size=(20, 28)), generator=seeds(0, 1))
    assert ab.shape == (2, 2, 20, 28) and ab.dtype == torch.float32
    assert torch.isfinite(ab).all() and ab.abs().max() <= 128 + 1e-3


def test_samples_differ_across_seeds_and_repeat_with_the_same_seed():
    model, L = tiny(), random_L()
    first = model.colorize(L, generator=seeds(0, 1))
    assert torch.equal(first, model.colorize(L, generator=seeds(0, 1)))
    other = model.colorize(L, generator=seeds(2, 3))
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


def test_a_sample_does_not_depend_on_the_rest_of_the_batch():
    model, L = tiny(), random_L(batch=3)
    together = model.colorize(L, generator=seeds(7, 8, 9))
    alone = model.colorize(L[1:2], generator=seeds(8))
    assert torch.equal(together[1:2], alone)


def test_several_samples_per_image_start_with_what_colorize_returns():
    model, L = tiny(), random_L(batch=2, size=(16, 24))
    samples = model.sample(L, n_samples=3, generator=seeds(0, 1))
    assert samples.shape == (2, 3, 2, 16, 24)
    assert torch.equal(samples[:, 0], model.colorize(L, generator=seeds(0, 1)))
    assert not torch.equal(samples[:, 1], samples[:, 2])
    assert torch.equal(samples[1], model.sample(L[1:], n_samples=3, generator=seeds(1))[0])


def test_the_naive_sampler_option_colorizes_like_the_cached_one():
    cached, L = tiny(), random_L(batch=1)
    naive = tiny(sampler="naive")
    assert torch.equal(cached.colorize(L, generator=seeds(4)), naive.colorize(L, generator=seeds(4)))


@pytest.mark.parametrize("options", [{"mode": "auxiliary"}, {"temperature": 0.0}])
def test_auxiliary_mode_and_zero_temperature_are_deterministic(options):
    model, L = tiny(**options), random_L()
    assert torch.equal(model.colorize(L, generator=seeds(0, 1)), model.colorize(L, generator=seeds(2, 3)))
    assert torch.equal(model.colorize(L, generator=seeds(0, 1)), model.colorize(L))


def test_decoder_dropout_is_off_while_sampling():
    model = tiny(dropout=0.5)
    model.train()
    L = random_L(batch=1)
    assert torch.equal(model.colorize(L, generator=seeds(0)), model.colorize(L, generator=seeds(0)))
    assert model.training and model.net.decoder.training


# --- checkpoints --------------------------------------------------------------------------

def test_checkpoint_round_trip_colorizes_identically(tmp_path):
    model = tiny(polyak=True)
    path = tmp_path / "royer.pt"
    model.save(path, extra={"data": "test"})
    loaded = Royer2017.from_checkpoint(path)
    assert loaded.params() == model.params()
    L = random_L()
    assert torch.equal(loaded.colorize(L, generator=seeds(0, 1)), model.colorize(L, generator=seeds(0, 1)))
    assert any(k.startswith("net_avg.") for k in load_checkpoint(path, expected_model="royer2017")["state_dict"])


def test_checkpoint_inference_options_may_be_overridden_but_not_the_architecture(tmp_path):
    path = tmp_path / "royer.pt"
    tiny().save(path)
    loaded = Royer2017.from_checkpoint(path, mode="auxiliary", temperature=0.5, sampler="naive", cuda_graph=False)
    assert {k: loaded.params()[k] for k in Royer2017.inference_options} == {
        "mode": "auxiliary", "temperature": 0.5, "sampler": "naive", "cuda_graph": False}
    with pytest.raises(TypeError, match="no inference setting 'channels' .*mode, temperature, sampler, cuda_graph"):
        Royer2017.from_checkpoint(path, channels=16)


@pytest.mark.parametrize("setting, message", [
    ({"temperature": -0.5}, "`temperature` must be a finite number >= 0"),
    ({"mode": "best"}, "`mode` must be 'sample' or 'auxiliary'"),
    ({"sampler": "fast"}, "`sampler` must be 'cached' or 'naive'"),
    ({"cuda_graph": "yes"}, "`cuda_graph` must be true or false"),
])
def test_a_bad_inference_value_is_refused_before_the_file_is_read(tmp_path, setting, message):
    with pytest.raises(ValueError, match=message) as info:
        Royer2017.from_checkpoint(tmp_path / "missing.pt", **setting)
    assert not isinstance(info.value, CheckpointError)


def test_checkpoint_of_another_model_is_refused_naming_the_path(tmp_path):
    path = tmp_path / "other.pt"
    save_checkpoint(path, model_name="mean_chroma", state_dict={}, config={})
    with pytest.raises(CheckpointError, match=f"{path}.*'mean_chroma', expected 'royer2017'"):
        Royer2017.from_checkpoint(path)


def test_checkpoint_whose_weights_do_not_fit_its_config_is_refused_naming_the_path(tmp_path):
    path = tmp_path / "bad.pt"
    model = tiny()
    save_checkpoint(path, model_name="royer2017", state_dict=model.state_dict(),
                    config={**model.params(), "channels": 12})
    with pytest.raises(CheckpointError, match=f"{path} does not fit 'royer2017'"):
        Royer2017.from_checkpoint(path)


# --- the trainer and generate_pairs -----------------------------------------------------

def tiny_training(tmp_path, photo_dir, name: str, **kwargs):
    options = dict(model="royer2017", data=f"folder:{photo_dir}", out=tmp_path / name, steps=2, batch_size=2,
                   crop=32, resize=40, lr=1e-3, config={**TINY, "polyak": True, "dropout": 0.5}, device="cpu",
                   workers=0, progress=False, log=lambda line: None)
    options.update(kwargs)
    return train(**options)


def test_the_trainer_trains_and_resumes_royer2017_exactly(tmp_path, photo_dir):
    straight = tiny_training(tmp_path, photo_dir, "straight.pt", steps=4)
    tiny_training(tmp_path, photo_dir, "half.pt")
    resumed = tiny_training(tmp_path, photo_dir, "resumed.pt", steps=4, config={}, lr=None, batch_size=None,
                            crop=None, resize=None, resume=tmp_path / "half.pt")
    a = load_checkpoint(straight, expected_model="royer2017")
    b = load_checkpoint(resumed, expected_model="royer2017")
    assert set(a["extra"]["last_logs"]) == {"loss", "bpd", "aux_bpd"}
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], v) for k, v in b["state_dict"].items())
    ab = Royer2017.from_checkpoint(straight).colorize(random_L(batch=1), generator=seeds(0))
    assert ab.shape == (1, 2, 32, 32) and torch.isfinite(ab).all()


@pytest.mark.django_db
def test_generate_pairs_renders_royer2017_from_its_checkpoint(tmp_path, photo_dir, media_root):
    checkpoint = tmp_path / "royer.pt"
    tiny(polyak=True).save(checkpoint)
    call_command("generate_pairs", "--experiment", "r", "--split", f"folder:{photo_dir}", "--methods", "royer2017",
                 "--checkpoint", f"royer2017={checkpoint}", stdout=io.StringIO(), stderr=io.StringIO())
    method = Method.objects.get(experiment__slug="r", name="royer2017")
    assert method.params == tiny(polyak=True).params()
    assert Colorization.objects.filter(method=method).count() == 5


def test_demo_configuration_is_valid_and_small():
    model = Royer2017(**Royer2017.demo_config())
    assert model.num_parameters()["total"] < 2_000_000
