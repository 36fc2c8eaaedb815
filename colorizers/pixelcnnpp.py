"""PixelCNN++ parts for an autoregressive chroma decoder, with an exact cached sampler.

Scope: what `colorizers.royer2017` needs to model two chroma channels (a*, b*) on a small
grid, conditioned on a feature map of the same size:

* shifted convolutions (`DownShiftedConv2d`, `DownRightShiftedConv2d`), `down_shift`,
  `right_shift`, `concat_elu` and the `GatedResidual` block of PixelCNN++;
* `PixelCNNDecoder`: a vertical stream (rows above) and a horizontal stream (rows above
  and pixels to the left), the condition added through a 1x1 convolution in every block;
* a mixture of discretized logistics over (a, b) with linear dependence of the means on
  a conditioning channel and of b's mean on a (`mixture_log_prob`, `mixture_sample`);
* two samplers that give identical samples from the same noise: `sample_naive` runs the
  whole decoder once per pixel, `sample_cached` computes each layer's output once per
  pixel from per-layer caches (see `CachedSampler`).

Data convention: chroma values live in [-1, 1] on 256 equally spaced levels
(``-1 + 2k/255``), as 8-bit pixel values do in PixelCNN++; a bin has half-width 1/255,
the two end bins take the tails.

Mixture parameters of ``K`` components, ``8K`` channels in this order (Royer et al.'s)::

    logits (K) | c_aL, c_bL, c_ba (3K) | mean_a, log_scale_a (2K) | mean_b, log_scale_b (2K)

    a ~ Logistic(mean_a + tanh(c_aL) L,                  exp(log_scale_a))
    b ~ Logistic(mean_b + tanh(c_bL) L + tanh(c_ba) a,   exp(log_scale_b))

discretized to the levels; log-scales are clamped at -7. This is the Lab
parametrisation of Royer et al.'s code (8 outputs per component): L is the known
luminance of the pixel, a the already decided a* of the same pixel.

References
----------
T. Salimans, A. Karpathy, X. Chen, D. P. Kingma, "PixelCNN++: Improving the PixelCNN with
Discretized Logistic Mixture Likelihood and Other Modifications", ICLR 2017.
P. Ramachandran, T. L. Paine, P. Khorrami, et al., "Fast Generation for Convolutional
Autoregressive Models", ICLR 2017 workshop.
A. Royer, A. Kolesnikov, C. H. Lampert, "Probabilistic Image Colorization", BMVC 2017.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "concat_elu", "down_shift", "right_shift", "DownShiftedConv2d", "DownRightShiftedConv2d",
    "GatedResidual", "PixelCNNDecoder", "quantize", "split_mixture", "channel_log_probs",
    "mixture_log_prob", "mixture_bits_per_dim", "mixture_sample", "draw_noise",
    "sample_naive", "sample_cached", "CachedSampler",
]

N_LEVELS = 256
HALF_BIN = 1 / (N_LEVELS - 1)   # half the distance between two levels on [-1, 1]
PARAMS_PER_COMPONENT = 8
LOG_SCALE_MIN = -7.0
NOISE_EPS = 1e-5                # uniforms are kept in [eps, 1 - eps] before log transforms


# --- layers -------------------------------------------------------------------------

def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """ELU of ``x`` and of ``-x``, concatenated along the channel axis (dim 1)."""
    return F.elu(torch.cat([x, -x], dim=1))


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down; row 0 becomes zeros. (B, C, H, W) -> same shape."""
    return F.pad(x[:, :, :-1], (0, 0, 1, 0))


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every column one right; column 0 becomes zeros. (B, C, H, W) -> same shape."""
    return F.pad(x[:, :, :, :-1], (1, 0))


class DownShiftedConv2d(nn.Conv2d):
    """Convolution whose output at row i sees input rows i-kh+1..i, columns j-(kw-1)/2..j+(kw-1)/2."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int] = (2, 3)) -> None:
        if kernel_size[1] % 2 != 1:
            raise ValueError(f"kernel_size of a down-shifted conv needs an odd width, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        return super().forward(F.pad(x, ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)))


class DownRightShiftedConv2d(nn.Conv2d):
    """Convolution whose output at (i, j) sees input rows i-kh+1..i, columns j-kw+1..j."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int] = (2, 2)) -> None:
        super().__init__(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        return super().forward(F.pad(x, (kw - 1, 0, kh - 1, 0)))


class GatedResidual(nn.Module):
    """PixelCNN++'s gated residual block.

    ``x + a * sigmoid(b)`` with ``(a, b) = conv2(dropout(concat_elu(conv1(concat_elu(x))
    + aux(concat_elu(cond)))))``; ``aux`` is a 1x1 convolution, present when
    ``cond_channels`` > 0. ``conv(in_channels, out_channels, dilation)`` builds the two
    convolutions (the dilation only applies to conv1, as in the authors' code); conv2's
    initial weights are scaled by 0.1 and its bias zeroed, so that a new block is close to
    the identity.
    """

    def __init__(
        self,
        channels: int,
        conv: Callable[[int, int, int], nn.Conv2d],
        *,
        cond_channels: int = 0,
        dilation: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = conv(2 * channels, channels, dilation)
        self.aux = nn.Conv2d(2 * cond_channels, channels, 1) if cond_channels else None
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(2 * channels, 2 * channels, 1)
        with torch.no_grad():
            self.conv2.weight.mul_(0.1)
            self.conv2.bias.zero_()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        c1 = self.conv1(concat_elu(x))
        if self.aux is not None:
            c1 = c1 + self.aux(concat_elu(cond))
        a, b = self.conv2(self.dropout(concat_elu(c1))).chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


class PixelCNNDecoder(nn.Module):
    """Autoregressive decoder over ``in_channels`` values per pixel, in raster order.

    ``forward(x, cond)`` maps the (teacher-forced) values x (B, in_channels, H, W) and a
    condition (B, cond_channels, H, W) to mixture parameters (B, n_outputs, H, W); the
    parameters at pixel (i, j) depend on x only through pixels before (i, j) in raster
    order, and on the condition anywhere. A channel of ones is appended to x so that the
    zero padding of the shifted convolutions tells the border apart from a zero value.

    Structure (the authors' single-resolution PixelCNN++)::

        u  = down_shift(ds_conv_2x3(x))                                  vertical stream
        ul = down_shift(ds_conv_1x3(x)) + right_shift(drs_conv_2x1(x))  horizontal stream
        n_blocks times:  u  = GatedResidual(u,  cond)                    (down-shifted convs)
                         ul = GatedResidual(ul, [u, cond])               (down-right-shifted convs)
        params = conv_1x1(elu(ul))
    """

    def __init__(
        self,
        *,
        in_channels: int = 2,
        channels: int = 160,
        n_blocks: int = 4,
        cond_channels: int = 160,
        n_outputs: int = 80,
        kernel_size: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        k = (kernel_size, kernel_size)
        self.n_outputs = n_outputs
        self.u_in = DownShiftedConv2d(in_channels + 1, channels, (2, 3))
        self.ul_in_down = DownShiftedConv2d(in_channels + 1, channels, (1, 3))
        self.ul_in_right = DownRightShiftedConv2d(in_channels + 1, channels, (2, 1))
        self.u_blocks = nn.ModuleList(
            GatedResidual(channels, lambda i, o, d: DownShiftedConv2d(i, o, k),
                          cond_channels=cond_channels, dropout=dropout)
            for _ in range(n_blocks)
        )
        self.ul_blocks = nn.ModuleList(
            GatedResidual(channels, lambda i, o, d: DownRightShiftedConv2d(i, o, k),
                          cond_channels=channels + cond_channels, dropout=dropout)
            for _ in range(n_blocks)
        )
        self.out = nn.Conv2d(channels, n_outputs, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)                  # (B, in+1, H, W)
        u = down_shift(self.u_in(x))                                           # (B, C, H, W)
        ul = down_shift(self.ul_in_down(x)) + right_shift(self.ul_in_right(x))
        for u_block, ul_block in zip(self.u_blocks, self.ul_blocks):
            u = u_block(u, cond)
            ul = ul_block(ul, torch.cat([u, cond], dim=1))
        return self.out(F.elu(ul))                                             # (B, n_outputs, H, W)


# --- mixture of discretized logistics ---------------------------------------------

def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [-1, 1] and round to the nearest of the 256 levels."""
    scale = (N_LEVELS - 1) / 2
    return torch.round((x.clamp(-1.0, 1.0) + 1) * scale) / scale - 1


def split_mixture(params: torch.Tensor, n_mix: int):
    """Channel-last parameters (..., 8K) -> logits (..., K), means (..., 2, K),
    log_scales (..., 2, K) clamped at -7, coeffs (..., 3, K) after tanh.

    The layout of the module docstring, which is that of Royer et al.'s code.
    """
    if params.shape[-1] != PARAMS_PER_COMPONENT * n_mix:
        raise ValueError(f"expected {PARAMS_PER_COMPONENT * n_mix} mixture parameters, got {params.shape[-1]}")
    K = n_mix
    logits = params[..., :K]
    coeffs = torch.tanh(params[..., K:4 * K]).unflatten(-1, (3, K))
    per_channel = params[..., 4 * K:8 * K].unflatten(-1, (2, 2 * K))          # (..., 2, 2K): a, b
    means = per_channel[..., :K]
    log_scales = per_channel[..., K:].clamp_min(LOG_SCALE_MIN)
    return logits, means, log_scales, coeffs


def _discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) for x on the levels under a logistic discretized to them (PixelCNN++)."""
    centred = x - mean
    inv_scale = torch.exp(-log_scale)
    plus_in = inv_scale * (centred + HALF_BIN)
    min_in = inv_scale * (centred - HALF_BIN)
    log_cdf_plus = plus_in - F.softplus(plus_in)           # lowest level: P(X < x + 1/255)
    log_one_minus_cdf_min = -F.softplus(min_in)            # highest level: P(X > x - 1/255)
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    mid_in = inv_scale * centred
    # where the bin mass underflows, the density at the centre times the bin width
    log_pdf_mid = mid_in - log_scale - 2 * F.softplus(mid_in) + math.log(2 * HALF_BIN)
    inner = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)), log_pdf_mid)
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, inner))


def channel_log_probs(params: torch.Tensor, x: torch.Tensor, L: torch.Tensor, n_mix: int):
    """Per-component log-probabilities of a and of b given a: two tensors (..., K).

    ``params`` (..., 8K), ``x`` (..., 2) values on the levels, ``L`` (...) the conditioning
    channel (luminance in [-1, 1]).
    """
    _, means, log_scales, coeffs = split_mixture(params, n_mix)
    a, b, L = x[..., 0:1], x[..., 1:2], L[..., None]
    mean_a = means[..., 0, :] + coeffs[..., 0, :] * L
    mean_b = means[..., 1, :] + coeffs[..., 1, :] * L + coeffs[..., 2, :] * a
    return (_discretized_logistic_log_prob(a, mean_a, log_scales[..., 0, :]),
            _discretized_logistic_log_prob(b, mean_b, log_scales[..., 1, :]))


def mixture_log_prob(params: torch.Tensor, x: torch.Tensor, L: torch.Tensor, n_mix: int) -> torch.Tensor:
    """log P(a, b) in nats per pixel (...,), shapes as in `channel_log_probs`."""
    lp_a, lp_b = channel_log_probs(params, x, L, n_mix)
    log_weights = F.log_softmax(params[..., :n_mix], dim=-1)
    return torch.logsumexp(lp_a + lp_b + log_weights, dim=-1)


def mixture_bits_per_dim(params: torch.Tensor, x: torch.Tensor, L: torch.Tensor, n_mix: int) -> torch.Tensor:
    """Mean negative log-likelihood in bits per dimension over a batch.

    ``params`` (B, 8K, H, W), ``x`` (B, 2, H, W) on the levels, ``L`` (B, H, W). Sums over
    pixels and the two channels, divides by ``2 H W ln 2``, averages over images.
    """
    B, _, H, W = x.shape
    log_p = mixture_log_prob(params.movedim(1, -1), x.movedim(1, -1), L, n_mix)   # (B, H, W)
    return -log_p.sum(dim=(1, 2)).mean() / (2 * H * W * math.log(2))


def mixture_sample(
    params: torch.Tensor,
    L: torch.Tensor,
    gumbel: torch.Tensor,
    logistic: torch.Tensor,
    temperature: float,
    n_mix: int,
) -> torch.Tensor:
    """Draw (a, b) on the levels from pre-drawn noise: (..., 2).

    ``params`` (..., 8K), ``L`` (...), ``gumbel`` (..., K) standard Gumbel noise,
    ``logistic`` (..., 2) standard logistic noise. The component is
    ``argmax(logits + temperature * gumbel)`` (Gumbel-max: exact sampling at temperature 1,
    logits divided by the temperature otherwise); a is its location plus
    ``temperature * scale * noise``, discretized; then b likewise, its location shifted by
    ``c_ba * a``. Temperature 0 gives the most probable component's location (deterministic).
    """
    logits, means, log_scales, coeffs = split_mixture(params, n_mix)
    k = torch.argmax(logits + temperature * gumbel, dim=-1, keepdim=True)       # (..., 1)
    pick = k.unsqueeze(-2)                                                        # (..., 1, 1)
    means = means.gather(-1, pick.expand(*means.shape[:-1], 1))[..., 0]          # (..., 2)
    scales = log_scales.gather(-1, pick.expand(*log_scales.shape[:-1], 1))[..., 0].exp()
    coeffs = coeffs.gather(-1, pick.expand(*coeffs.shape[:-1], 1))[..., 0]       # (..., 3)
    a = quantize(means[..., 0] + coeffs[..., 0] * L + temperature * scales[..., 0] * logistic[..., 0])
    b = quantize(means[..., 1] + coeffs[..., 1] * L + coeffs[..., 2] * a
                 + temperature * scales[..., 1] * logistic[..., 1])
    return torch.stack([a, b], dim=-1)


def draw_noise(
    generators: Sequence[torch.Generator] | None,
    batch: int,
    height: int,
    width: int,
    n_mix: int,
    *,
    n_samples: int = 1,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All the noise of a sampling run, per image from that image's own generator.

    Returns Gumbel noise (B n, H, W, K) and logistic noise (B n, H, W, 2), image-major.
    For each of its ``n_samples`` samples in turn, image i draws ``H*W*K`` then ``H*W*2``
    float32 uniforms from ``generators[i]`` (on that generator's device), so its noise,
    and with it its samples, never depend on the rest of the batch or on the sampler.
    ``generators=None`` draws from torch's global generator.
    """
    if generators is not None and len(generators) != batch:
        raise ValueError(f"need one generator per image: {batch} images, {len(generators)} generators")
    uniforms_k, uniforms_2 = [], []
    for i in range(batch):
        gen = None if generators is None else generators[i]
        where = device if gen is None else gen.device
        for _ in range(n_samples):
            uniforms_k.append(torch.rand(height, width, n_mix, generator=gen, device=where).to(device))
            uniforms_2.append(torch.rand(height, width, 2, generator=gen, device=where).to(device))
    u = torch.stack(uniforms_k).to(dtype).clamp(NOISE_EPS, 1 - NOISE_EPS)
    v = torch.stack(uniforms_2).to(dtype).clamp(NOISE_EPS, 1 - NOISE_EPS)
    return -torch.log(-torch.log(u)), torch.log(v) - torch.log1p(-v)


# --- samplers ---------------------------------------------------------------------

@torch.no_grad()
def sample_naive(
    decoder: PixelCNNDecoder,
    cond: torch.Tensor,
    L: torch.Tensor,
    gumbel: torch.Tensor,
    logistic: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Sample (B, 2, H, W) in raster order, running the whole decoder once per pixel.

    The reference the cached sampler is checked against (and the authors' method).
    ``cond`` (B, E, H, W), ``L`` (B, H, W), noise from `draw_noise`. Call it with the
    decoder in eval mode (no dropout).
    """
    B, _, H, W = cond.shape
    n_mix = decoder.n_outputs // PARAMS_PER_COMPONENT
    x = cond.new_zeros(B, 2, H, W)
    for i in range(H):
        for j in range(W):
            params = decoder(x, cond)[:, :, i, j]                                 # (B, 8K)
            x[:, :, i, j] = mixture_sample(params, L[:, i, j], gumbel[:, i, j], logistic[:, i, j],
                                           temperature, n_mix)
    return x


class _RowConv:
    """A down-shifted convolution computed one output row at a time.

    Keeps the last ``kh`` rows of its input (zeros above the image, as the padding of the
    full convolution) with ``(kw - 1) / 2`` zero columns on each side.
    """

    def __init__(self, conv: DownShiftedConv2d, batch: int, width: int) -> None:
        kh, kw = conv.kernel_size
        self.conv, self.pad, self.width = conv, (kw - 1) // 2, width
        w = conv.weight
        self.rows = w.new_zeros(batch, conv.in_channels, kh, width + 2 * self.pad)

    def push(self, row: torch.Tensor) -> None:
        """Append the next input row (B, C_in, W), dropping the oldest."""
        if self.rows.shape[2] > 1:
            self.rows[:, :, :-1].copy_(self.rows[:, :, 1:].clone())
        self.rows[:, :, -1, self.pad:self.pad + self.width].copy_(row)

    def output(self) -> torch.Tensor:
        """The output row aligned with the last input row: (B, C_out, W)."""
        return F.conv2d(self.rows, self.conv.weight, self.conv.bias)[:, :, 0]


class _PixelConv:
    """A down-right-shifted convolution computed one output pixel at a time.

    Its kernel splits into the taps on rows above, applied to a whole row of output
    pixels at once when the row starts (the rows above are final by then), and the
    ``kw`` taps on the current row, applied per pixel to a cache of the current row's
    inputs (channels last, ``kw - 1`` zero columns on the left).
    """

    def __init__(self, conv: DownRightShiftedConv2d, batch: int, width: int) -> None:
        kh, kw = conv.kernel_size
        w = conv.weight                                                            # (C_out, C_in, kh, kw)
        self.kh, self.kw, self.bias = kh, kw, conv.bias
        self.w_above = w[:, :, :kh - 1]
        self.w_row = w[:, :, kh - 1].permute(0, 2, 1).reshape(w.shape[0], -1).t().contiguous()  # (kw*C_in, C_out)
        self.above = w.new_zeros(batch, conv.in_channels, kh - 1, width + kw - 1)
        self.row = w.new_zeros(batch, width + kw - 1, conv.in_channels)
        self.pre = w.new_zeros(batch, width, conv.out_channels)

    def start_row(self, extra: torch.Tensor | None = None) -> None:
        """Apply the taps above (and the bias, and ``extra`` (B, C_out, W)) to the new row."""
        if self.kh > 1:
            pre = F.conv2d(self.above, self.w_above, self.bias)[:, :, 0]          # (B, C_out, W)
        else:
            pre = self.bias[None, :, None].expand(self.pre.shape[0], -1, self.pre.shape[1])
        if extra is not None:
            pre = pre + extra
        self.pre.copy_(pre.transpose(1, 2))

    def put(self, j: int, value: torch.Tensor) -> None:
        """Store the input (B, C_in) at column j of the current row."""
        self.row[:, j + self.kw - 1].copy_(value)

    def output(self, j: int) -> torch.Tensor:
        """The output at column j of the current row: (B, C_out)."""
        return torch.addmm(self.pre[:, j], self.row[:, j:j + self.kw].flatten(1), self.w_row)

    def end_row(self) -> None:
        """Move the finished row into the rows above."""
        if self.kh > 1:
            if self.kh > 2:
                self.above[:, :, :-1].copy_(self.above[:, :, 1:].clone())
            self.above[:, :, -1, self.kw - 1:].copy_(self.row[:, self.kw - 1:].transpose(1, 2))


class CachedSampler:
    """Exact row-wise cached sampling of a `PixelCNNDecoder` (one row per `run_row`).

    In the manner of Ramachandran et al. (2017), every layer keeps a cache of the inputs
    its later outputs need, so that each output is computed once:

    * the vertical stream at row i depends on rows above only, so it runs once per row,
      each down-shifted convolution over its cache of the last kh input rows (`_RowConv`);
    * the horizontal stream runs once per pixel; each down-right-shifted convolution
      applies its taps on the rows above to the whole row when the row starts and only
      its current-row taps per pixel (`_PixelConv`); the condition's and the vertical
      stream's 1x1 terms are also added per row.

    The arithmetic is that of `PixelCNNDecoder.forward` regrouped, so samples equal
    `sample_naive`'s from the same noise up to floating-point rounding (bit for bit in
    float64 in the tests). Everything a row reads or writes lives in buffers allocated
    here and updated in place, and `load_row` copies the row's inputs into them, so one
    CUDA graph captured around `run_row` replays every row (see `sample_cached`).
    """

    def __init__(
        self,
        decoder: PixelCNNDecoder,
        cond: torch.Tensor,
        L: torch.Tensor,
        gumbel: torch.Tensor,
        logistic: torch.Tensor,
        temperature: float = 1.0,
    ) -> None:
        B, E, H, W = cond.shape
        d = decoder
        self.decoder, self.temperature = d, float(temperature)
        self.n_mix = d.n_outputs // PARAMS_PER_COMPONENT
        self.height, self.width = H, W
        self.cond, self.L, self.gumbel, self.logistic = cond, L, gumbel, logistic
        # the condition's 1x1 terms of the vertical stream, for all rows at once
        self.u_cond = [blk.aux(concat_elu(cond)) for blk in d.u_blocks]          # (B, C, H, W) each
        # per-row inputs, refilled by load_row
        self.in_u_cond = [t.new_zeros(B, t.shape[1], W) for t in self.u_cond]
        self.in_cond = cond.new_zeros(B, E, W)
        self.in_L = L.new_zeros(B, W)
        self.in_gumbel = gumbel.new_zeros(B, W, gumbel.shape[-1])
        self.in_logistic = logistic.new_zeros(B, W, 2)
        self.in_below_top = cond.new_zeros(())     # 0 on row 0 (down_shift inserts zeros), else 1
        # caches
        self.x_rows = _RowConv(d.u_in, B, W)                 # x rows i-2, i-1
        self.x_prev = _RowConv(d.ul_in_down, B, W)           # x row i-1
        self.x_left = _PixelConv(d.ul_in_right, B, W)        # x rows i-1, i
        self.u1 = [_RowConv(blk.conv1, B, W) for blk in d.u_blocks]
        self.u2 = [_RowConv(blk.conv2, B, W) for blk in d.u_blocks]
        self.ul1 = [_PixelConv(blk.conv1, B, W) for blk in d.ul_blocks]
        self.ul2 = [_PixelConv(blk.conv2, B, W) for blk in d.ul_blocks]
        self.w_out = d.out.weight[:, :, 0, 0]
        self.ones = cond.new_ones(B, 1)
        self.out_row = cond.new_zeros(B, 2, W)

    def reset(self) -> None:
        """Zero every cache (as before row 0)."""
        for rc in [self.x_rows, self.x_prev, *self.u1, *self.u2]:
            rc.rows.zero_()
        for pc in [self.x_left, *self.ul1, *self.ul2]:
            pc.above.zero_()
            pc.row.zero_()

    def load_row(self, i: int) -> None:
        """Copy row i's conditioning and noise into the per-row input buffers."""
        for buf, full in zip(self.in_u_cond, self.u_cond):
            buf.copy_(full[:, :, i])
        self.in_cond.copy_(self.cond[:, :, i])
        self.in_L.copy_(self.L[:, i])
        self.in_gumbel.copy_(self.gumbel[:, i])
        self.in_logistic.copy_(self.logistic[:, i])
        self.in_below_top.fill_(1.0 if i > 0 else 0.0)

    def run_row(self) -> torch.Tensor:
        """Sample the row loaded by `load_row`; returns the static buffer (B, 2, W)."""
        d = self.decoder
        # vertical stream, whole row
        u = self.x_rows.output() * self.in_below_top                              # (B, C, W)
        ul_down = self.x_prev.output() * self.in_below_top
        us = []
        for k in range(len(d.u_blocks)):
            self.u1[k].push(concat_elu(u))
            c1 = self.u1[k].output() + self.in_u_cond[k]
            self.u2[k].push(concat_elu(c1))
            a, b = self.u2[k].output().chunk(2, dim=1)
            u = u + a * torch.sigmoid(b)
            us.append(u)
        # horizontal stream: rows above and the 1x1 terms, whole row
        self.x_left.start_row()
        for k, blk in enumerate(d.ul_blocks):
            aux_in = concat_elu(torch.cat([us[k], self.in_cond], dim=1)).unsqueeze(-1)
            self.ul1[k].start_row(blk.aux(aux_in).squeeze(-1))
            self.ul2[k].start_row()
        # horizontal stream, pixel by pixel
        for j in range(self.width):
            ul = ul_down[:, :, j]                                                  # (B, C)
            if j > 0:
                ul = ul + self.x_left.output(j - 1)
            for k in range(len(d.ul_blocks)):
                self.ul1[k].put(j, concat_elu(ul))
                c1 = self.ul1[k].output(j)
                self.ul2[k].put(j, concat_elu(c1))
                a, b = self.ul2[k].output(j).chunk(2, dim=1)
                ul = ul + a * torch.sigmoid(b)
            params = torch.addmm(d.out.bias, F.elu(ul), self.w_out.t())          # (B, 8K)
            ab = mixture_sample(params, self.in_L[:, j], self.in_gumbel[:, j], self.in_logistic[:, j],
                                self.temperature, self.n_mix)                      # (B, 2)
            self.out_row[:, :, j].copy_(ab)
            self.x_left.put(j, torch.cat([ab, self.ones], dim=1))
        # the finished row becomes "above" for every cache
        x_row = torch.cat([self.out_row, self.ones.unsqueeze(-1).expand(-1, 1, self.width)], dim=1)
        self.x_rows.push(x_row)
        self.x_prev.push(x_row)
        self.x_left.end_row()
        for pc in [*self.ul1, *self.ul2]:
            pc.end_row()
        return self.out_row


@torch.no_grad()
def sample_cached(
    decoder: PixelCNNDecoder,
    cond: torch.Tensor,
    L: torch.Tensor,
    gumbel: torch.Tensor,
    logistic: torch.Tensor,
    temperature: float = 1.0,
    *,
    cuda_graph: bool = True,
) -> torch.Tensor:
    """Sample (B, 2, H, W) with `CachedSampler`; same arguments as `sample_naive`.

    On a CUDA device with ``cuda_graph`` the row step is captured once in a CUDA graph
    (after a warm-up on a side stream, then the caches are reset) and replayed for every
    row, which removes the launch overhead of its many small kernels. On any other device
    the row step runs eagerly.
    """
    sampler = CachedSampler(decoder, cond, L, gumbel, logistic, temperature)
    H = cond.shape[2]
    step = sampler.run_row
    if cuda_graph and cond.device.type == "cuda":
        sampler.load_row(0)
        side = torch.cuda.Stream(device=cond.device)
        side.wait_stream(torch.cuda.current_stream(cond.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                sampler.run_row()
        torch.cuda.current_stream(cond.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out_row = sampler.run_row()
        sampler.reset()

        def step() -> torch.Tensor:
            graph.replay()
            return out_row

    rows = []
    for i in range(H):
        sampler.load_row(i)
        rows.append(step().clone())
    return torch.stack(rows, dim=2)                                                # (B, 2, H, W)
