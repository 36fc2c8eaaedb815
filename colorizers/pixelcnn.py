"""A conditional gated PixelCNN over two quantized chroma channels, and its samplers.

The network models ``p(y | s) = prod_i p(y_i,r | y_<i, s) p(y_i,b | y_i,r, y_<i, s)``
over a grid of chroma pixels in raster order, Cr before Cb at each pixel (PixColor,
Guadarrama et al. 2017), each channel a categorical over ``bins`` values. ``s`` is a
conditioning feature map of the grid's size.

Architecture (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders"): a vertical stack that sees the rows above and a horizontal stack that sees
the pixels to the left of the current one in its row, so the receptive field has no
blind spot. In detail:

* Input layer (PixColor's "masked 7x7 conv"): the vertical stack convolves rows
  r-2..r (``k0 // 2`` rows of a k0-wide kernel) and reaches the horizontal stack
  shifted down one row; the horizontal stack convolves columns c-3..c of row r. Its
  sum is exactly a 7x7 mask-A convolution.
* ``blocks`` gated blocks of kernel k: vertical ``(k//2 + 1) x k`` conv, horizontal
  ``1 x (k//2 + 1)`` conv, the vertical conv's output fed to the horizontal stack through
  a 1x1 conv after the one-row shift, gates ``tanh(a) * sigmoid(b)``, a residual 1x1 conv
  on the horizontal stack, and the conditioning added to both stacks' gates through
  1x1 convs (the location-dependent conditional PixelCNN).
* Head: ReLU, masked 1x1 conv to ``hidden``, ReLU, masked 1x1 conv to ``2 * bins``
  logits (Cr's, then Cb's).

Channel masks (types A and B of van den Oord et al. 2016, PixelRNN) keep the Cr-then-Cb
order: every feature map of the horizontal stack and head is split into a Cr half and
a Cb half. At the current pixel a Cb feature may read Cr and Cb features and a Cr
feature only Cr features (type B), and in the input layer a Cb feature reads the
current Cr value and a Cr feature no current value at all (type A). So Cr's logits at
pixel i depend on pixels < i only, and Cb's on those and Cr at i.

Sampling
--------
All randomness is drawn before the loop as Gumbel noise, one value per (pixel,
channel, bin) and image (`gumbel_noise`), and a sample is
``argmax(logits / temperature + noise)``, an exact draw from
``softmax(logits / temperature)``. Both samplers read the same noise, so they draw the
same sample whenever they compute the same logits. ``tests/test_pixelcnn.py`` checks
that both draw from the model's distribution: over thousands of samples for one
conditioning map, each position's empirical bin distribution against the exact
conditional probabilities of a teacher-forced pass, within a Hoeffding bound on the
total variation.

* `PixelCNN.sample(..., cached=False)`: the naive sampler, one pass of the whole network
  per pixel and channel (``2 * H * W`` passes).
* `CachedSampler`: the cached sampler of Ramachandran et al. 2017 ("Fast Generation for
  Convolutional Autoregressive Models") for this two-stack network: per layer it keeps
  the few vertical-stack rows its kernel reads and the horizontal stack's current row.
  Each step computes one new column of the horizontal stack (small matrix products
  over the kernel window, batched over images); once a row is complete, one row of
  every vertical layer is computed from the cached rows. Its work per image is that
  of under two network passes (the horizontal stack and head run once per channel),
  instead of ``2 * H * W`` passes, though still in ``2 * H * W`` sequential steps. It runs on fixed
  buffers, so on CUDA one row of steps is captured once in a CUDA graph and replayed
  ``H`` times; on CPU the same code runs eagerly. The CUDA-graph path has not been run
  on a GPU yet: the tests run on CPU (where they check the same row step and the state
  reset that capture relies on), and BENCHMARKS.md has no GPU figures for it. If
  capture fails on some setup, ``cuda_graph=False`` runs the same steps eagerly.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PixelCNN", "MaskedConv2d", "GatedBlock", "CachedSampler", "gumbel_noise", "nll",
    "channel_groups", "bin_centres",
]


def channel_groups(n: int, parts: int = 1) -> torch.Tensor:
    """Colour group of each of ``n`` channels: 0 (Cr) or 1 (Cb).

    The channels are ``parts`` equal consecutive parts (e.g. a gate's tanh and sigmoid
    inputs); within each part the first half belongs to Cr, the second to Cb.
    """
    size = n // parts
    return (torch.arange(n) % size) * 2 // size


def bin_centres(bins: int, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The network's input value of each bin: centres of ``bins`` equal cells of [-1, 1]."""
    return (2 * torch.arange(bins, device=device, dtype=dtype) + 1) / bins - 1


def _gate(x: torch.Tensor, dim: int) -> torch.Tensor:
    a, b = x.chunk(2, dim=dim)
    return torch.tanh(a) * torch.sigmoid(b)


def _shift_down(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down (row 0 becomes zeros): row r then holds row r-1."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


class MaskedConv2d(nn.Conv2d):
    """A ``1 x width`` convolution over the pixels c-width+1..c of a row, masked at c.

    At the current pixel (the kernel's last column) an output channel of colour group
    g reads input channels of group < g (``mask_type="A"``) or <= g (``"B"``); the
    columns to the left are unmasked. ``in_parts`` / ``out_parts``: see `channel_groups`.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, *, mask_type: str,
                 in_parts: int = 1, out_parts: int = 1) -> None:
        super().__init__(in_channels, out_channels, (1, width))
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        g_out = channel_groups(out_channels, out_parts)[:, None]
        g_in = channel_groups(in_channels, in_parts)[None, :]
        centre = g_out > g_in if mask_type == "A" else g_out >= g_in
        mask = torch.ones(out_channels, in_channels, 1, width)
        mask[:, :, 0, -1] = centre.float()
        self.register_buffer("mask", mask, persistent=False)    # derived, not saved

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.kernel_size[1] - 1, 0, 0, 0))
        return F.conv2d(x, self.masked_weight(), self.bias)


class GatedBlock(nn.Module):
    """One gated block of both stacks (van den Oord et al. 2016, Figure 2), conditioned on ``s``."""

    def __init__(self, channels: int, kernel: int, cond_channels: int) -> None:
        super().__init__()
        c2 = 2 * channels
        self.kernel = kernel
        self.v_conv = nn.Conv2d(channels, c2, (kernel // 2 + 1, kernel))
        self.v_cond = nn.Conv2d(cond_channels, c2, 1, bias=False)
        self.link = nn.Conv2d(c2, c2, 1)
        self.h_conv = MaskedConv2d(channels, c2, kernel // 2 + 1, mask_type="B", out_parts=2)
        self.h_cond = nn.Conv2d(cond_channels, c2, 1, bias=False)
        self.h_out = MaskedConv2d(channels, channels, 1, mask_type="B")

    def forward(self, v: torch.Tensor, h: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.kernel // 2
        v_lin = self.v_conv(F.pad(v, (q, q, q, 0)))                    # (B, 2C, H, W): rows r-q..r
        v = _gate(v_lin + self.v_cond(s), 1)                           # (B, C, H, W)
        h_pre = self.h_conv(h) + self.link(_shift_down(v_lin)) + self.h_cond(s)
        h = h + self.h_out(_gate(h_pre, 1))                            # (B, C, H, W)
        return v, h


class PixelCNN(nn.Module):
    """Conditional gated PixelCNN over (Cr, Cb); see the module docstring.

    Parameters
    ----------
    channels : feature maps of both stacks (64 in PixColor); even.
    blocks : gated blocks (10).
    first_kernel : size of the input layer's masked kernel (7); odd, at least 3.
    block_kernel : size of the gated blocks' kernels (5); odd.
    hidden : channels of the head's masked 1x1 conv (1024); even.
    bins : values per chroma channel (32).
    cond_channels : channels of the conditioning map (64).

    Shapes: ``x`` (B, 2, H, W) with channel 0 = Cr, 1 = Cb, as `bin_centres` values;
    ``cond`` (B, cond_channels, H, W); logits (B, 2, bins, H, W).
    """

    def __init__(self, *, channels: int = 64, blocks: int = 10, first_kernel: int = 7,
                 block_kernel: int = 5, hidden: int = 1024, bins: int = 32,
                 cond_channels: int = 64) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("hidden", hidden)):
            if value < 2 or value % 2:
                raise ValueError(f"{name} must be a positive even number, got {value}")
        if first_kernel < 3 or first_kernel % 2 == 0:
            raise ValueError(f"first_kernel must be odd and at least 3, got {first_kernel}")
        if block_kernel < 1 or block_kernel % 2 == 0:
            raise ValueError(f"block_kernel must be odd and positive, got {block_kernel}")
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        if blocks < 0 or cond_channels < 1:
            raise ValueError(f"need blocks >= 0 and cond_channels >= 1, got {blocks}, {cond_channels}")
        self.channels, self.bins, self.hidden = channels, bins, hidden
        self.first_kernel, self.block_kernel = first_kernel, block_kernel
        q0 = first_kernel // 2
        self.v_in = nn.Conv2d(2, channels, (q0, first_kernel))
        self.h_in = MaskedConv2d(2, channels, q0 + 1, mask_type="A")
        self.link_in = nn.Conv2d(channels, channels, 1)
        self.blocks = nn.ModuleList(GatedBlock(channels, block_kernel, cond_channels) for _ in range(blocks))
        self.out_hidden = MaskedConv2d(channels, hidden, 1, mask_type="B")
        self.out_logits = MaskedConv2d(hidden, 2 * bins, 1, mask_type="B")

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        q0 = self.first_kernel // 2
        v = self.v_in(F.pad(x, (q0, q0, q0 - 1, 0)))                   # (B, C, H, W): rows r-q0+1..r
        h = self.h_in(x) + self.link_in(_shift_down(v))                # (B, C, H, W)
        for block in self.blocks:
            v, h = block(v, h, cond)
        out = self.out_logits(torch.relu(self.out_hidden(torch.relu(h))))   # (B, 2*bins, H, W)
        return out.unflatten(1, (2, self.bins))                        # (B, 2, bins, H, W)

    def centres(self, like: torch.Tensor) -> torch.Tensor:
        return bin_centres(self.bins, dtype=like.dtype, device=like.device)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: torch.Tensor, *, temperature: float = 1.0,
               cached: bool = True, cuda_graph: bool = True) -> torch.Tensor:
        """Draw one chroma grid per conditioning map.

        Parameters
        ----------
        cond : (B, cond_channels, H, W) conditioning features.
        noise : (B, H, W, 2, bins) Gumbel noise (`gumbel_noise`), last-but-one axis Cr, Cb.
        temperature : divides the logits; 1 samples the model, lower is more conservative.
        cached : the cached sampler (default) or the naive one.
        cuda_graph : on CUDA, replay the cached sampler's row step as a CUDA graph.

        Returns
        -------
        Long tensor (B, 2, H, W) of bin indices, channel 0 = Cr, 1 = Cb.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        B, _, H, W = cond.shape
        if tuple(noise.shape) != (B, H, W, 2, self.bins):
            raise ValueError(f"noise must have shape {(B, H, W, 2, self.bins)}, got {tuple(noise.shape)}")
        noise = noise.to(device=cond.device, dtype=cond.dtype)
        if cached:
            sampler = CachedSampler(self, B, W, like=cond, temperature=temperature,
                                    cuda_graph=cuda_graph and cond.device.type == "cuda")
            return sampler.run(cond, noise)
        return self._sample_naive(cond, noise, temperature)

    def _sample_naive(self, cond: torch.Tensor, noise: torch.Tensor, temperature: float) -> torch.Tensor:
        B, _, H, W = cond.shape
        centres = self.centres(cond)
        x = cond.new_zeros(B, 2, H, W)
        idx = torch.zeros(B, 2, H, W, dtype=torch.long, device=cond.device)
        for r in range(H):
            for c in range(W):
                for ch in (0, 1):                       # Cr, then Cb given Cr
                    logits = self(x, cond)[:, ch, :, r, c]                # (B, bins)
                    k = (logits / temperature + noise[:, r, c, ch]).argmax(-1)
                    idx[:, ch, r, c] = k
                    x[:, ch, r, c] = centres[k]
        return idx


def _window_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A (O, I, 1, k) kernel as a (k * I, O) matrix for a channels-last window (k, I)."""
    return weight.squeeze(2).permute(2, 1, 0).reshape(-1, weight.shape[0]).contiguous()


class CachedSampler:
    """The cached sampler of `PixelCNN` for one batch (see the module docstring).

    State lives in fixed buffers: per vertical layer, a ring of the last rows its
    kernel reads and the last row of its conv output (for the next row's link); per
    horizontal layer, the current row, channels last, zero-padded on the left. The
    step over one row (`_row_step`) reads the row's conditioning and noise from
    fixed input buffers and writes the row's bins to a fixed output buffer, which is
    what lets CUDA capture it once and replay it for every row.
    """

    def __init__(self, net: PixelCNN, batch: int, width: int, *, like: torch.Tensor,
                 temperature: float = 1.0, cuda_graph: bool = False, keep_logits: bool = False) -> None:
        self.net, self.B, self.W, self.T = net, batch, width, float(temperature)
        self.cuda_graph, self.keep_logits = cuda_graph, keep_logits
        #: with ``keep_logits``, after `run`: the logits each step computed, (B, 2, bins, H, W)
        self.logits: torch.Tensor | None = None
        C, bins = net.channels, net.bins
        self.q0, self.qb = net.first_kernel // 2, net.block_kernel // 2
        n_blocks = len(net.blocks)
        cond_channels = net.blocks[0].v_cond.in_channels if n_blocks else 1
        kw = dict(dtype=like.dtype, device=like.device)
        self.centres = net.centres(like)
        # masked weights as matrices over channels-last windows
        self.w_in = _window_matrix(net.h_in.masked_weight()).to(**kw)
        self.w_h = [_window_matrix(b.h_conv.masked_weight()).to(**kw) for b in net.blocks]
        self.w_out = [_window_matrix(b.h_out.masked_weight()).to(**kw) for b in net.blocks]
        self.b_out = [b.h_out.bias for b in net.blocks]
        self.w_hid = _window_matrix(net.out_hidden.masked_weight()).to(**kw)
        w_logits = _window_matrix(net.out_logits.masked_weight()).to(**kw)      # (hidden, 2 * bins)
        self.w_logits = [w_logits[:, ch * bins:(ch + 1) * bins].contiguous() for ch in (0, 1)]
        self.b_logits = [net.out_logits.bias[ch * bins:(ch + 1) * bins] for ch in (0, 1)]
        B, W, q0, qb = batch, width, self.q0, self.qb
        # inputs of one row
        self.cond_row = torch.zeros(B, cond_channels, 1, W, **kw)
        self.noise_row = torch.zeros(B, W, 2, bins, **kw)
        # output of one row
        self.idx_row = torch.zeros(B, 2, W, dtype=torch.long, device=like.device)
        self.logits_row = torch.zeros(B, 2, bins, W, **kw) if keep_logits else None
        # horizontal stack: the current row of every layer's input, channels last
        self.xrow = torch.zeros(B, q0 + W, 2, **kw)
        self.hrow = [torch.zeros(B, qb + W, C, **kw) for _ in range(n_blocks + 1)]
        self.bias = [torch.zeros(B, W, C, **kw)] + [torch.zeros(B, W, 2 * C, **kw) for _ in range(n_blocks)]
        # vertical stack: rings of the rows each conv reads, and last conv outputs
        self.ring_in = torch.zeros(B, 2, q0, W + 2 * q0, **kw)
        self.rings = [torch.zeros(B, C, qb + 1, W + 2 * qb, **kw) for _ in range(n_blocks)]
        self.v_in_prev = torch.zeros(B, C, 1, W, **kw)
        self.v_lin_prev = [torch.zeros(B, 2 * C, 1, W, **kw) for _ in range(n_blocks)]
        # views of those buffers for each column, made once: slicing costs more than the
        # arithmetic at small batches (on CUDA they cost nothing once captured)
        cols = range(W)
        self.x_window = [self.xrow[:, c:c + q0 + 1].reshape(B, -1) for c in cols]      # cols c-q0..c
        self.x_slot = [[self.xrow[:, q0 + c, ch] for ch in (0, 1)] for c in cols]
        self.h_window = [[h[:, c:c + qb + 1].reshape(B, -1) for c in cols] for h in self.hrow]  # c-qb..c
        self.h_slot = [[h[:, qb + c] for c in cols] for h in self.hrow]
        self.bias_col = [[b[:, c] for c in cols] for b in self.bias]
        self.noise_slot = [[self.noise_row[:, c, ch] for ch in (0, 1)] for c in cols]
        self.idx_slot = [[self.idx_row[:, ch, c] for ch in (0, 1)] for c in cols]
        windows = [(self.xrow, w) for w in self.x_window] + [
            (h, w) for h, row in zip(self.hrow, self.h_window) for w in row]
        assert all(w.untyped_storage().data_ptr() == buf.untyped_storage().data_ptr() for buf, w in windows), \
            "a window is a copy, not a view of its buffer"
        self._graph = None

    def state(self) -> list[torch.Tensor]:
        """The buffers that carry information from one row to the next."""
        return [self.ring_in, *self.rings, self.v_in_prev, *self.v_lin_prev, self.xrow, *self.hrow]

    def reset(self) -> None:
        for t in self.state():
            t.zero_()

    @torch.no_grad()
    def run(self, cond: torch.Tensor, noise: torch.Tensor, *, warmup: int = 0) -> torch.Tensor:
        """Sample the whole grid: (B, cond_channels, H, W), (B, H, W, 2, bins) -> (B, 2, H, W) bins.

        The sampler may run again on another batch of the same size (the CUDA graph is
        captured on the first run only). ``warmup`` row steps are run first and their
        state discarded, as CUDA-graph capture needs; on CPU it exists only so that
        tests can check the reset.
        """
        H = cond.shape[2]
        if self.cuda_graph and self._graph is None:
            self._capture(warmup=max(warmup, 1))
        elif warmup:
            for _ in range(warmup):
                self._row_step()
        self.reset()
        step = self._graph.replay if self._graph is not None else self._row_step
        out = torch.zeros(self.B, 2, H, self.W, dtype=torch.long, device=cond.device)
        if self.keep_logits:
            self.logits = cond.new_zeros(self.B, 2, self.net.bins, H, self.W)
        for r in range(H):
            self.cond_row.copy_(cond[:, :, r:r + 1])
            self.noise_row.copy_(noise[:, r])
            step()
            out[:, :, r] = self.idx_row
            if self.keep_logits:
                self.logits[:, :, :, r] = self.logits_row
        return out

    def _capture(self, warmup: int) -> None:
        """Capture `_row_step` in a CUDA graph (``self._graph``).

        Not yet run on a GPU (see the module docstring); the recipe is PyTorch's: warm-up
        on a side stream, then capture on the same buffers.
        """
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):                    # lazy cuBLAS/cuDNN set-up, outside the graph
                self._row_step()
        torch.cuda.current_stream().wait_stream(stream)
        self.reset()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._row_step()
        self._graph = graph                            # keeps its memory pool alive

    def _row_step(self) -> None:
        net, B, W, C = self.net, self.B, self.W, self.net.channels
        s = self.cond_row                                              # (B, Cc, 1, W)
        # 1. this row's horizontal biases: conv bias + link from the row above + conditioning
        link = net.link_in(self.v_in_prev)                             # (B, C, 1, W)
        self.bias[0].copy_(link.permute(0, 2, 3, 1).reshape(B, W, C) + net.h_in.bias)
        for li, blk in enumerate(net.blocks):
            pre = blk.link(self.v_lin_prev[li]) + blk.h_cond(s)         # (B, 2C, 1, W)
            self.bias[li + 1].copy_(pre.permute(0, 2, 3, 1).reshape(B, W, 2 * C) + blk.h_conv.bias)
        # 2. the row, pixel by pixel: Cr, then Cb given Cr
        self.xrow.zero_()
        for c in range(W):
            for ch in (0, 1):
                logits = self._column(c, ch)                           # (B, bins)
                if self.logits_row is not None:
                    self.logits_row[:, ch, :, c] = logits
                z = (logits if self.T == 1 else logits / self.T) + self.noise_slot[c][ch]
                k = z.argmax(-1)                                       # (B,)
                self.idx_slot[c][ch].copy_(k)
                self.x_slot[c][ch].copy_(self.centres.index_select(0, k))
        # 3. the finished row enters the vertical stack
        q0, qb = self.q0, self.qb
        ring = self.ring_in                                            # (B, 2, q0, W + 2 q0)
        ring[:, :, :-1] = ring[:, :, 1:].clone()
        ring[:, :, -1, q0:q0 + W] = self.xrow[:, q0:].transpose(1, 2)
        v = F.conv2d(ring, net.v_in.weight, net.v_in.bias)             # (B, C, 1, W)
        self.v_in_prev.copy_(v)
        for li, blk in enumerate(net.blocks):
            ring = self.rings[li]                                       # (B, C, qb + 1, W + 2 qb)
            ring[:, :, :-1] = ring[:, :, 1:].clone()
            ring[:, :, -1, qb:qb + W] = v[:, :, 0]
            v_lin = F.conv2d(ring, blk.v_conv.weight, blk.v_conv.bias)  # (B, 2C, 1, W)
            self.v_lin_prev[li].copy_(v_lin)
            v = _gate(v_lin + blk.v_cond(s), 1)                        # (B, C, 1, W)

    def _column(self, c: int, ch: int) -> torch.Tensor:
        """Channel ``ch``'s logits (B, bins) at column ``c`` of the current row; caches every layer's output there."""
        h = torch.addmm(self.bias_col[0][c], self.x_window[c], self.w_in)                # (B, C)
        self.h_slot[0][c].copy_(h)
        for li in range(len(self.w_h)):
            gated = _gate(torch.addmm(self.bias_col[li + 1][c], self.h_window[li][c], self.w_h[li]), 1)
            h = torch.addmm(self.b_out[li], gated, self.w_out[li]) + self.h_slot[li][c]     # (B, C)
            self.h_slot[li + 1][c].copy_(h)
        hidden = torch.relu(torch.addmm(self.net.out_hidden.bias, torch.relu(h), self.w_hid))
        return torch.addmm(self.b_logits[ch], hidden, self.w_logits[ch])


def gumbel_noise(generators: Sequence[torch.Generator] | None, batch: int, shape: Sequence[int], *,
                 n_samples: int = 1, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard Gumbel noise, ``n_samples`` draws of ``shape`` per image, each from its own generator.

    Image i's draws come from ``generators[i]`` alone (on that generator's device), in
    order, so they do not depend on the batch. With ``generators=None`` the global RNG
    is used. Returns (batch * n_samples, *shape) on ``device``, image-major.
    """
    if generators is not None and len(generators) != batch:
        raise ValueError(f"need one generator per image: {batch} images, {len(generators)} generators")
    tiny = torch.finfo(torch.float32).tiny
    draws = []
    for i in range(batch):
        g = generators[i] if generators is not None else None
        u = torch.rand(n_samples, *shape, generator=g, device=g.device if g is not None else device)
        draws.append(-torch.log(-torch.log(u.clamp_min(tiny))))
    return torch.cat(draws).to(device=device, dtype=dtype)


def nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image mean negative log-likelihood in nats per chroma value.

    ``logits`` (B, 2, bins, H, W), ``target`` (B, 2, H, W) bin indices -> (B,).
    """
    loss = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")   # (B, 2, H, W)
    return loss.flatten(1).mean(1)
