"""Autoregressive sampling speed: naive vs cached sampler, images/s per model, batch size and device.

    python benchmarks/sampling.py [--models pixcolor] [--batch-sizes 1,64,1024]
                                  [--device auto|cpu|cuda] [--budget 60] [--full]

Each model is a *case* at its paper's configuration and resolution, with random weights
(speed does not depend on their values). ``naive`` runs the whole autoregressive network
once per sampling step (PixColor: 28 x 28 pixels x 2 channels = 1,568 passes);
``cached`` is the model's cached sampler. Both start from the same random conditioning
features and noise and exclude the feed-forward networks; ``--full`` adds a column for
the whole ``colorize`` (conditioning network, cached sampling, refinement, colour
conversion) on 256x256 L* images.

A measurement that would take longer than ``--budget`` seconds is estimated instead and
marked ``~``: naive from the time of a few network passes times the number of steps,
cached from a few rows of the grid times the number of rows (every row does the same
work), ``--full`` from batch 1 times the batch size. The first call at each batch size
(warm-up: memory, cuDNN) is not timed, except where one call alone exceeds the time
allowed; the cached sampler's CUDA-graph capture is part of every call, as in `colorize`.

Add a model with `register_case`: a function (batch, device) -> `Run`.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colorizers.pixcolor import PixColor  # noqa: E402
from colorizers.pixelcnn import CachedSampler  # noqa: E402
from colorizers.pixelcnnpp import draw_noise, sample_cached, sample_naive  # noqa: E402
from colorizers.royer2017 import Royer2017  # noqa: E402


@dataclass
class Run:
    """What a case prepares for one batch size; every callable samples the whole batch."""

    steps: int                                      # sequential steps of naive sampling
    rows: int                                       # rows of the cached sampler's grid
    naive: Callable[[], object]
    naive_pass: Callable[[], object]                # one of the ``steps`` network passes
    cached: Callable[[int | None], object]          # argument: only the first n rows (None: all)
    full: Callable[[], object] | None = None        # whole colorize of 256x256 images, or None


@dataclass
class Case:
    model: str
    resolution: str
    setup: Callable[[int, torch.device], Run]


CASES: dict[str, Case] = {}


def register_case(model: str, resolution: str) -> Callable[[Callable[[int, torch.device], Run]], Callable]:
    """Decorator: ``setup(batch, device) -> Run`` measures ``model`` at ``resolution``."""

    def wrap(setup: Callable[[int, torch.device], Run]) -> Callable:
        CASES[model] = Case(model, resolution, setup)
        return setup

    return wrap


_PIXCOLOR: dict[torch.device, PixColor] = {}


@register_case("pixcolor", "28x28x2 chroma, 32 bins (224x224 input), Table 2 network")
def pixcolor_case(batch: int, device: torch.device) -> Run:
    if device not in _PIXCOLOR:
        torch.manual_seed(0)
        _PIXCOLOR[device] = PixColor().to(device).eval()
    model = _PIXCOLOR[device]
    net, g = model.pixelcnn, model.grid
    cond = torch.randn(batch, net.blocks[0].v_cond.in_channels, g, g, device=device)
    noise = torch.rand(batch, g, g, 2, net.bins, device=device).log_().neg_().log_().neg_()
    x = torch.zeros(batch, 2, g, g, device=device)

    @torch.no_grad()
    def naive_pass():
        return net(x, cond)[:, 0, :, 0, 0].argmax(-1)

    @torch.no_grad()
    def cached(rows: int | None):
        sampler = CachedSampler(net, batch, g, like=cond, cuda_graph=device.type == "cuda")
        return sampler.run(cond[:, :, :rows], noise[:, :rows])

    L = torch.rand(batch, 1, 256, 256, device=device) * 100
    generators = [torch.Generator(device=device).manual_seed(i) for i in range(batch)]
    return Run(
        steps=2 * g * g, rows=g,
        naive=lambda: net.sample(cond, noise, cached=False),
        naive_pass=naive_pass,
        cached=cached,
        full=lambda: model.colorize(L, generator=generators),
    )


_ROYER2017: dict[torch.device, Royer2017] = {}


@register_case("royer2017", "32x32x2 chroma, 10 logistics (128x128 input), the paper's network")
def royer2017_case(batch: int, device: torch.device) -> Run:
    if device not in _ROYER2017:
        torch.manual_seed(0)
        _ROYER2017[device] = Royer2017(polyak=False).to(device).eval()
    model = _ROYER2017[device]
    net, g = model.net.decoder, model.config["working_size"] // 4
    cond = torch.randn(batch, model.config["embed_channels"], g, g, device=device)
    L_small = torch.rand(batch, g, g, device=device) * 2 - 1
    gumbel, logistic = draw_noise(None, batch, g, g, model.n_mix, device=device)
    x = torch.zeros(batch, 2, g, g, device=device)

    @torch.no_grad()
    def naive_pass():
        return net(x, cond)[:, :, 0, 0]

    def cached(rows: int | None):
        return sample_cached(net, cond[:, :, :rows], L_small[:, :rows], gumbel[:, :rows], logistic[:, :rows])

    L = torch.rand(batch, 1, 256, 256, device=device) * 100
    generators = [torch.Generator(device=device).manual_seed(i) for i in range(batch)]
    return Run(
        steps=g * g, rows=g,
        naive=lambda: sample_naive(net, cond, L_small, gumbel, logistic),
        naive_pass=naive_pass,
        cached=cached,
        full=lambda: model.colorize(L, generator=generators),
    )


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def best_time(fn: Callable[[], object], device: torch.device, repeat: int = 3, enough: float = 2.0) -> float:
    """Seconds per call: the best of up to ``repeat`` calls after the first (a warm-up),
    fewer once ``enough`` seconds are spent; a single slow call counts as it is."""
    times = [timed(fn, device)]
    while len(times) <= repeat and sum(times) < enough:
        times.append(timed(fn, device))
    return min(times[1:]) if len(times) > 1 else times[0]


def measure(run: Run, device: torch.device, budget: float) -> dict[str, tuple[float, bool]]:
    """Seconds per batch of each sampler, each with a flag: estimated?"""
    out: dict[str, tuple[float, bool]] = {}
    naive_estimate = best_time(run.naive_pass, device) * run.steps
    out["naive"] = (timed(run.naive, device), False) if naive_estimate <= budget else (naive_estimate, True)
    rows = min(2, run.rows)
    cached_estimate = best_time(lambda: run.cached(rows), device) * run.rows / rows
    out["cached"] = (best_time(lambda: run.cached(None), device, repeat=1), False) if cached_estimate <= budget \
        else (cached_estimate, True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(CASES), help=f"Comma-separated cases. Default: {','.join(CASES)}.")
    parser.add_argument("--batch-sizes", default="1,64,1024", help="Comma-separated batch sizes. Default: 1,64,1024.")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="Where to run. Default: auto.")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="Seconds a single measurement may take before it is estimated instead. Default: 60.")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: its default).")
    parser.add_argument("--full", action="store_true",
                        help="Also time the whole colorize (feed-forward networks included) on 256x256 images.")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {device} ({where}); ~ = estimated (see --help)")
    header = f"{'model':<10} {'batch':>6} {'naive img/s':>13} {'cached img/s':>13} {'speed-up':>9}"
    print(header + (f" {'colorize img/s':>15}" if args.full else ""))
    for name in names:
        case = CASES[name]
        print(f"# {name}: {case.resolution}")
        for batch in sizes:
            run = case.setup(batch, device)
            results = measure(run, device, args.budget)
            if args.full:
                results["full"] = full_time(case, run, batch, device, args.budget)
            naive, cached = results["naive"], results["cached"]
            line = (f"{name:<10} {batch:>6} {fmt(batch, naive):>13} {fmt(batch, cached):>13} "
                    f"{naive[0] / cached[0]:>8.0f}x")
            if args.full:
                line += f" {fmt(batch, results['full']):>15}"
            print(line, flush=True)


_FULL_BATCH1: dict[str, float] = {}


def full_time(case: Case, run: Run, batch: int, device: torch.device, budget: float) -> tuple[float, bool]:
    """Seconds per batch of the whole colorize; estimated from batch 1 when over budget."""
    if run.full is None:
        return (float("nan"), True)
    if case.model not in _FULL_BATCH1:
        _FULL_BATCH1[case.model] = best_time(case.setup(1, device).full, device)
    estimate = _FULL_BATCH1[case.model] * batch
    if estimate > budget and batch > 1:
        return (estimate, True)
    return (best_time(run.full, device, repeat=1), False)


def fmt(batch: int, result: tuple[float, bool]) -> str:
    seconds, estimated = result
    rate = batch / seconds
    return f"{'~' if estimated else ''}{rate:,.3g}" if rate < 100 else f"{'~' if estimated else ''}{rate:,.0f}"


if __name__ == "__main__":
    main()
