"""Forward time per image and size of every registered colorizer, beside the papers' figures.

    python benchmarks/colorizers.py [--size 256] [--batch 4] [--repeat 3] [--device auto|cpu|cuda]
                                    [--models zhang2016,lal2017] [--threads N] [--slow 30]

Each model is built with its default configuration (the paper's full size, random
weights: the time does not depend on their values) and timed on ``colorize`` of a
batch of random L* images of ``--size`` x ``--size``: one warm-up call, then the best
of ``--repeat``, divided by the batch size. A model whose warm-up call takes longer
than ``--slow`` seconds (an autoregressive sampler on a CPU) is reported from that
one call, marked ``*``. On CUDA every model is timed in float32 and again under bf16
autocast. Models registered by any module of `colorizers` are picked up; one that
cannot be built without arguments is listed as skipped.

Columns: parameters (all, then per top-level submodule where there are a few, so a
GAN's critic, which colorization never runs, shows apart), the paper's figure where
it states one, multiply-accumulates per image of the convolution and linear layers
in the warm-up call (every call of a layer counts, so a sampler's figure covers all
of its network passes), and seconds per image.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colorizers import get_colorizer, list_colorizers  # noqa: E402

#: parameter counts the papers state (models.md); the others state none
PAPER_PARAMETERS = {
    "zhang2016": "32.2 M (83.6 GFLOPs at 256 px)",
}


class MacCounter:
    """Forward hooks that add up the multiply-accumulates of Conv2d, ConvTranspose2d and Linear calls."""

    def __init__(self, model: nn.Module) -> None:
        self.total = 0
        self.handles = [m.register_forward_hook(self.hook) for m in model.modules()
                        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]

    def hook(self, module: nn.Module, inputs, output) -> None:
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            self.total += output.numel() * per_output
        elif isinstance(module, nn.ConvTranspose2d):
            per_input = module.out_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            self.total += inputs[0].numel() * per_input
        else:
            self.total += output.numel() * module.in_features

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def run(model, L: torch.Tensor) -> torch.Tensor:
    B = L.shape[0]
    reference = torch.zeros(B, 2, *L.shape[2:], device=L.device) if model.needs_reference else None
    generators = [torch.Generator(device=L.device).manual_seed(i) for i in range(B)]
    return model.colorize(L, generator=generators, reference_ab=reference)


def timed(model, L: torch.Tensor, autocast: bool = False) -> float:
    start = time.perf_counter()
    with torch.autocast(L.device.type, dtype=torch.bfloat16, enabled=autocast):
        run(model, L)
    if L.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def paper(name: str, model: nn.Module) -> str:
    if not any(True for _ in model.parameters()):
        return "-"                                   # a control: no paper, nothing learned
    return PAPER_PARAMETERS.get(name, "not stated")


def parameters(model: nn.Module) -> str:
    total = sum(p.numel() for p in model.parameters())
    parts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    parts = {k: v for k, v in parts.items() if v}
    text = f"{total / 1e6:.3f} M"
    if 1 < len(parts) <= 4:
        text += " (" + ", ".join(f"{k} {v / 1e6:.3f} M" for k, v in parts.items()) + ")"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="Side of the square test images. Default: 256.")
    parser.add_argument("--batch", type=int, default=4, help="Images per colorize call. Default: 4.")
    parser.add_argument("--repeat", type=int, default=3, help="Timed calls; the best is reported. Default: 3.")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="Default: auto.")
    parser.add_argument("--models", default="", help="Comma-separated names. Default: every registered one.")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
    parser.add_argument("--slow", type=float, default=30.0,
                        help="Seconds of a warm-up call above which it is the only one timed. Default: 30.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    names = [n for n in args.models.split(",") if n] or list_colorizers()
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print(f"{args.batch} images of {args.size} px per call on {device} ({hardware}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    header = f"{'model':<14} {'parameters':<68} {'paper':<32} {'GMACs':>8} {'s/image':>10}"
    if device.type == "cuda":
        header += f" {'s/image bf16':>13}"
    print(header)
    L = torch.rand(args.batch, 1, args.size, args.size, generator=torch.Generator().manual_seed(0)).mul(100).to(device)
    for name in names:
        try:
            torch.manual_seed(0)
            model = get_colorizer(name)().to(device).eval()
        except Exception as exc:  # a model that needs arguments or a file
            print(f"{name:<14} skipped: cannot build with defaults ({type(exc).__name__}: {exc})")
            continue
        counter = MacCounter(model)
        try:
            warm_up = timed(model, L)                   # also: allocations, kernel selection
        finally:
            counter.remove()
        times = []
        for autocast in (False, True) if device.type == "cuda" else (False,):
            if warm_up > args.slow:
                times.append(f"{warm_up / args.batch:.4f}*")
            else:
                times.append(f"{min(timed(model, L, autocast) for _ in range(args.repeat)) / args.batch:.4f}")
        line = (f"{name:<14} {parameters(model):<68} {paper(name, model):<32} "
                f"{counter.total / args.batch / 1e9:>8.2f} {times[0]:>10}")
        if device.type == "cuda":
            line += f" {times[1]:>13}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
