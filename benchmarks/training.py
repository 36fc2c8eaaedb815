"""Training throughput per model, in images/s on one device, and the time each paper's recipe would take.

    python benchmarks/training.py [--device auto|cpu|cuda] [--precision auto|fp32|bf16] [--batch N]
                                  [--steps 3] [--models zhang2016,lal2017] [--devices 8]

Each trainable model is built with its default configuration (the paper's full size, random
weights: the time does not depend on their values) and its paper's train config, and takes
``--steps`` timed training steps (`train_step`: forward, loss, backward, the optimisers' steps)
after one warm-up step, on a random batch of its recipe's crop size already on the device:
the input pipeline is not in it (`benchmarks/input_pipeline.py` measures that). ``--batch``
replaces the paper's batch size (on a CPU the paper's batches take minutes a step); the rate
is images/s at that batch. Printed per model: the batch, seconds per step, images/s, and the
wall time of the paper's recipe (its steps at its global batch) at that rate on one such
device, and on ``--devices`` of them if throughput scaled linearly with the devices, which
data-parallel training approaches but never reaches: an upper bound on the speed, a lower
bound on the time. Recipes whose paper gives no number of steps are marked so.

Under torchrun (``torchrun --standalone --nproc-per-node N benchmarks/training.py ...``) the
step is the trainer's on N ranks: ``--batch`` (or the paper's) is the global batch, each rank
takes its share, BatchNorm is the global batch's and the gradients go through
DistributedDataParallel (`colorizers.distributed`); rank 0 prints the global images/s, so
that the rate on N devices against N times the rate on one is the scaling efficiency.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colorizers import distributed, get_colorizer, training  # noqa: E402


def hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds < 3 * 86400 else f"{seconds / 86400:,.1f} days"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda. Default: auto.")
    parser.add_argument("--precision", default="auto", help="auto, fp32 or bf16, as the trainer. Default: auto.")
    parser.add_argument("--batch", type=int, default=None, help="Batch size. Default: each paper's.")
    parser.add_argument("--steps", type=int, default=3, help="Timed steps after one warm-up. Default: 3.")
    parser.add_argument("--models", default=None, help="Comma-separated names. Default: every trainable model.")
    parser.add_argument("--devices", type=int, default=8, help="Devices of the projection. Default: 8.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads. Default: torch's.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = training.resolve_device(args.device)
    ranks = distributed.from_environment()
    if ranks.world > 1:
        device = distributed.start(ranks, device)
    try:
        run(args, device, ranks)
    finally:
        distributed.stop()


def run(args: argparse.Namespace, device: torch.device, ranks: distributed.Ranks) -> None:
    say = print if ranks.rank == 0 else (lambda *a, **k: None)
    precision = training.resolve_precision(args.precision, device)
    names = args.models.split(",") if args.models else [
        n for n in training.trainable_colorizers() if training.is_trainable(get_colorizer(n))]
    say(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, device {device}, "
        f"precision {precision}, {torch.get_num_threads()} CPU threads"
        f"{f' per rank, {ranks.world} ranks' if ranks.world > 1 else ''}")
    say(f"{'model':<11} {'batch':>5} {'crop':>5} {'s/step':>8} {'images/s':>9}  paper's recipe: time on 1 device, "
          f"on {args.devices} (linear scaling)")
    for name in names:
        cls = get_colorizer(name)
        config = cls.default_train_config()
        batch = args.batch or config["batch_size"]
        if batch % ranks.world:
            raise SystemExit(f"a batch of {batch} does not split over {ranks.world} ranks")
        share = batch // ranks.world
        crop = config.get("crop", 256)
        torch.manual_seed(0)
        model = cls().to(device).train()
        if ranks.world > 1:
            distributed.global_batchnorm(model)
        optimizers = model.configure_optimizers(config)
        if ranks.world > 1:
            model.use_replicas(distributed.replicate(model.training_forwards(), device))
        generator = torch.Generator().manual_seed(ranks.rank)
        data = training.TrainBatch(rgb=torch.rand(share, 3, crop, crop, generator=generator).to(device),
                                   labels=torch.randint(0, 1000, (share,), generator=generator).to(device),
                                   offset=ranks.rank * share, global_size=batch)
        times = []
        for step in range(args.steps + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            distributed.barrier()        # all ranks start the step together
            start = time.perf_counter()
            with training.precision_context(precision, device):
                model.train_step(data, step, optimizers)
            if device.type == "cuda":
                torch.cuda.synchronize()
            distributed.barrier()        # and the step ends with the slowest
            times.append(time.perf_counter() - start)
        per_step = min(times[1:])
        rate = batch / per_step
        steps = config.get("steps")
        if steps:
            total = steps * config["batch_size"] / rate
            recipe = (f"{steps:,} steps x {config['batch_size']}: {hours(total)}, "
                      f"{hours(total / args.devices)}")
        else:
            recipe = "the paper gives no number of steps"
        say(f"{name:<11} {batch:>5} {crop:>5} {per_step:>8.2f} {rate:>9.1f}  {recipe}")


if __name__ == "__main__":
    main()
