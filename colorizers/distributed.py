"""Data-parallel training across processes: torchrun's ranks, DistributedDataParallel, the global batch.

Under ``torchrun --nproc-per-node N [--nnodes M ...] -m colorizers.train ...`` every
process (a *rank*) runs the same trainer on its slice of each global batch, and the
run is meant to be the one-process run of that global batch, not N smaller runs
averaged. What that takes, and where it is done:

* **The gradients** are averaged over the ranks by PyTorch's
  `~torch.nn.parallel.DistributedDataParallel`. It averages the gradients of a
  backward pass through the outputs of a forward *called through its wrapper*, and a
  model's ``train_step`` runs several such passes (a GAN: the critic's, then the
  generator's). So each trainable model names its *training forwards*
  (`TrainingForward`: a callable and the modules whose parameters its backward
  trains) and calls them as ``self.replica(name)(...)``; `replicate` wraps each in
  its own DistributedDataParallel. No parameter is in two of them.
* **Means over the batch.** DDP averages the ranks' gradients, which is the gradient of
  the global batch's mean only when every rank's loss is its sum divided by the global
  count over the number of ranks. Losses that are plain means over equal slices are
  that already (the trainer refuses a global batch the ranks cannot split equally);
  a mean over a subset counted at run time (Zhang's images with colour, PixColor's
  colourful photos, Lal's labelled ones) divides by `shared_divisor` of its count.
* **BatchNorm** normalises with the statistics of the whole global batch on every rank
  (`GlobalBatchNorm2d`), as the one-process run does; otherwise 8 GPUs would each
  normalise with an eighth of Zhang et al.'s batch of 40. PyTorch's own
  ``SyncBatchNorm`` does the same but runs on GPUs only, and this one is tested on
  the CPU against ``nn.BatchNorm2d`` on the concatenated batch.
* **Randomness.** The data is a function of the run's seed and the position in the
  stream (`colorizers.training.RandomCrops`), whichever rank reads it. Draws a model
  makes per item (Lal et al.'s gradient-penalty mixing weights) come from
  `colorizers.training.TrainBatch.uniform`: drawn for the whole global batch and
  sliced, so they too are the one-process run's. Draws made per activation (Royer et
  al.'s dropout) come from each rank's own generator, seeded per step by (seed, step,
  rank): statistically the same, but not the one-process run's masks.
* **Checkpoints** are written by rank 0 only, with the substitution counts of every rank.

gloo is the backend on the CPU (the tests), nccl on GPUs.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "Ranks", "from_environment", "start", "barrier", "stop", "world_size", "rank", "all_sum", "shared_divisor",
    "divisor_of_total", "all_mean", "any_rank", "broadcast", "gather", "GlobalBatchNorm2d", "global_batchnorm", "TrainingForward",
    "replicate", "seed_for",
]

#: how long a rank waits for the others at a collective: long enough for rank 0 alone to estimate
#: Zhang et al.'s colour prior from 50,000 images before the first step
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun job."""

    rank: int          # 0 .. world - 1, over all machines
    world: int         # processes in the job
    local_rank: int    # 0 .. processes on this machine - 1: the GPU it drives


def from_environment(environ: Mapping[str, str] = os.environ) -> Ranks:
    """The ranks torchrun describes in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (one process without them)."""
    if "WORLD_SIZE" not in environ:
        return Ranks(0, 1, 0)
    try:
        ranks = Ranks(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"WORLD_SIZE is set but RANK/LOCAL_RANK are missing or not integers ({exc}): "
                         f"start several processes with torchrun") from None
    if not (ranks.world >= 1 and 0 <= ranks.rank < ranks.world and ranks.local_rank >= 0):
        raise ValueError(f"inconsistent torchrun environment: RANK {ranks.rank}, WORLD_SIZE {ranks.world}, "
                         f"LOCAL_RANK {ranks.local_rank}")
    return ranks


def start(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the job's process group (nccl on CUDA, gloo on the CPU); the device this rank trains on.

    On CUDA rank ``local_rank`` drives GPU ``local_rank`` of its machine.
    """
    if device.type == "cuda":
        if ranks.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {ranks.local_rank} has no GPU: this machine has "
                             f"{torch.cuda.device_count()}; start at most that many processes per node")
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT,
                                **({"device_id": device} if device.type == "cuda" else {}))
    return device


def barrier() -> None:
    """Wait until every rank is here (before leaving the group, so that none leaves while another still
    talks to it: rank 0 may be writing the checkpoint after the last collective)."""
    if dist.is_initialized():
        dist.barrier()


def stop() -> None:
    """Leave the process group (after the last collective)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def all_sum(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over the ranks (a new tensor; no gradient flows back through it)."""
    x = x.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(x)
    return x


def shared_divisor(count: torch.Tensor | float) -> torch.Tensor:
    """What a rank divides its sum by, for a mean over ``count`` items counted on each rank.

    ``max(global count, 1) / ranks``: DDP averages the ranks' gradients, so the
    average of (rank sum / this) is the gradient of (global sum / global count),
    the one-process run's mean. On one process it is ``max(count, 1)``.
    """
    return divisor_of_total(all_sum(torch.as_tensor(count, dtype=torch.float32)))


def divisor_of_total(total: torch.Tensor) -> torch.Tensor:
    """`shared_divisor` of a count already summed over the ranks (by `all_sum`, for a caller that needs it too)."""
    return total.clamp(min=1) / world_size()


def all_mean(values: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """Each scalar averaged over the ranks (the logs: a rank's loss is its share of the global batch)."""
    if not dist.is_initialized():
        return dict(values)
    keys = list(values)
    total = all_sum(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device))
    return {k: float(v) / world_size() for k, v in zip(keys, total.tolist())}


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on one (an interrupt seen by one rank stops all at the same step)."""
    if not dist.is_initialized():
        return flag
    return bool(all_sum(torch.tensor([float(flag)], device=device)).item() > 0)


def broadcast(obj: Any, device: torch.device) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; tensors arrive on the CPU)."""
    if not dist.is_initialized():
        return obj
    box = [obj if rank() == 0 else None]
    dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
    return box[0]


def gather(obj: Any, device: torch.device) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


# --- BatchNorm over the global batch -----------------------------------------------

class GlobalBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose training statistics are those of the global batch, over all ranks.

    In training mode with a process group, the mean and the (biased) variance are
    summed over the ranks' inputs in float64, in two passes (sum and count, then the
    sum of squared deviations from the global mean), each by the differentiable
    all-reduce of ``torch.distributed._functional_collectives`` (what PyTorch's
    deprecation of ``torch.distributed.nn.functional.all_reduce`` points to), so the
    gradient reaching each rank's input is the one-process gradient's slice. Why
    float64: PyTorch's CPU BatchNorm accumulates in double, and with float32 sums a
    step of pixcolor's refinement network (1 x 1 maps, four values per channel) was
    2.8e-3 from the float64 gradient, against 1.1e-4 now
    (``tests/test_distributed_training.py``). The normalisation itself is float32.
    The running statistics take the unbiased variance of the global batch, as
    BatchNorm's do. In eval mode, or
    without a process group, it is `nn.BatchNorm2d`. The state dict is BatchNorm's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        C = x.shape[1]
        xd = x.double()
        local = torch.cat([xd.sum(dim=(0, 2, 3)), xd.new_tensor([x.numel() // C])])      # (C + 1,)
        total = funcol.all_reduce(local, "sum", dist.group.WORLD)
        n = total[C].detach()
        mean = total[:C] / n
        centred = xd - mean[None, :, None, None]
        var = funcol.all_reduce(centred.square().sum(dim=(0, 2, 3)), "sum", dist.group.WORLD) / n   # biased
        scale = torch.rsqrt(var + self.eps).float()
        y = (x.float() - mean.float()[None, :, None, None]) * scale[None, :, None, None]
        if self.affine:
            y = y * self.weight.float()[None, :, None, None] + self.bias.float()[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return y.to(x.dtype)


def global_batchnorm(module: nn.Module) -> nn.Module:
    """Turn every `nn.BatchNorm2d` in ``module`` into a `GlobalBatchNorm2d` in place (weights, buffers kept)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                            child.track_running_stats)
            state = [*child.parameters(), *child.buffers()]
            replacement.to(state[0].device if state else "cpu")
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            global_batchnorm(child)
    return module


# --- the training forwards, replicated -----------------------------------------------

@dataclass(frozen=True)
class TrainingForward:
    """A call of a model's ``train_step`` whose backward trains ``modules``' parameters.

    ``unused_parameters``: some steps leave some of those parameters without a
    gradient (PixColor's frozen trunk), which DDP must be told
    (``find_unused_parameters``, a walk of the graph each step).
    """

    fn: Callable[..., Any]
    modules: Sequence[nn.Module]
    unused_parameters: bool = False


class _Call(nn.Module):
    """``fn`` as a module whose parameters are ``modules``' (what DDP wraps)."""

    def __init__(self, fn: Callable[..., Any], modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.fn = fn
        self.parts = nn.ModuleList(modules)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def replicate(forwards: Mapping[str, TrainingForward], device: torch.device) -> dict[str, DistributedDataParallel]:
    """Each training forward wrapped in its own DistributedDataParallel.

    A parameter in two of them is a ValueError (DDP would average its gradient
    twice, or wait for it in the wrong pass). Rank 0's parameters and buffers are broadcast
    to the others here, and buffers not again at each forward: with the global
    batch's BatchNorm every rank computes the same running statistics.
    """
    owner: dict[int, str] = {}
    for name, forward in forwards.items():
        for module in forward.modules:
            for p in module.parameters():
                if p.requires_grad and owner.setdefault(id(p), name) != name:
                    raise ValueError(f"a parameter is trained by both {owner[id(p)]!r} and {name!r}")
    return {
        name: DistributedDataParallel(
            _Call(forward.fn, forward.modules), device_ids=[device] if device.type == "cuda" else None,
            forward_sync_buffers=False, find_unused_parameters=forward.unused_parameters,
        )
        for name, forward in forwards.items()
    }


def seed_for(*values: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence: distinct tuples give independent streams)."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(2, np.uint64)[0] >> np.uint64(1))

