"""Training on several ranks (torchrun, DistributedDataParallel, gloo on the CPU) is the one-process run.

A run of N ranks with global batch B must be the one-process run of batch B, not N runs
of B/N averaged: the same gradients (DDP's average, means over the global batch, BatchNorm
over the global batch, per-item draws of the global batch), so the same weights, and a
run killed on N ranks resumes, on N ranks or another number, to the weights of the run
that was not killed.

Tolerances, measured with torch 2.13 on the CPU (one thread per rank):

* gradients of one step, 2 ranks against 1, largest |difference| / largest |gradient| of any
  parameter tensor, over seeds 0-2: zhang2016 2.5e-5, lal2017 (two critic updates) 3.8e-5,
  liang2016 1.4e-6, royer2017 5.2e-6: bound 1e-3. pixcolor 1.5e-3: its refinement network ends
  in 1 x 1 maps at 32 px, where BatchNorm over four values magnifies rounding (on seed 0, one
  process in float32 is 1.0e-4 from the same step in float64, two ranks 1.1e-4): bound 1e-2.
  BatchNorm's statistics over the ranks are summed in float64: in float32 the same pixcolor
  step was 2.8e-3 from float64.
* weights after 3 steps at lr 1e-3, two ranks (torchrun) against one, as
  ||two - one|| / ||one - start||, over seeds 0-2: liang2016 (SGD) 2e-7 to 7e-7, bound 1e-5;
  zhang2016 (Adam) 4e-5, 8e-5 and 0.086, bound 0.25. Adam divides each gradient by its running
  RMS, so where a gradient is near rounding noise the step is about lr either way, and from
  there the runs part: seed 0 hits one such weight. For scale, the one-rank run of half the
  batch (what a rank alone would do) is 1.1 to 1.2 away for zhang2016 and 0.12 to 0.49 for
  liang2016. lal2017 is left to the gradient test: with Adam's beta1 = 0 its first steps
  are sign steps, and one process with 1 torch thread and with 2 already ends 0.23 to 0.25 apart.
* a run resumed on as many ranks as it was killed on gives bit-identical weights.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from colorizers import distributed, get_colorizer
from colorizers.training import TrainBatch, _RankPositions, train
from tests.tiny_models import CONFIGS, tiny_model

REPO = Path(__file__).resolve().parents[1]
MODELS = list(CONFIGS)
WAIT = 300    # seconds a group of processes may take before the test fails (a deadlock, not a slow machine)

pytestmark = pytest.mark.filterwarnings("ignore:pixcolor. TRAINING THE RESNET TRUNK FROM SCRATCH:UserWarning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smooth_images(seed: int, n: int, size: int = 32) -> torch.Tensor:
    """(n, 3, size, size) smooth colour images in [0, 1]: coarse random colours, upsampled."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def global_batch(seed: int) -> TrainBatch:
    return TrainBatch(smooth_images(seed, 4), torch.tensor([0, 3, 1, 2]), 0, 4, 1000 + seed)


# --- spawned ranks -----------------------------------------------------------------------

def run_ranks(fn: Any, world: int, *args: Any) -> list[Any]:
    """``fn(rank, world, *args)`` in ``world`` spawned processes joined in a gloo group; their results by rank."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_rank_main, args=(fn, r, world, port, queue, args)) for r in range(world)]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    try:
        for _ in procs:
            r, ok, value = queue.get(timeout=WAIT)
            assert ok, f"rank {r} failed:\n{value}"
            results[r] = _as_tensors(value)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return [results[r] for r in range(world)]


def _by_value(value: Any) -> Any:
    """Tensors as numpy arrays, which a queue pickles by value (a tensor would travel as a handle
    on the process's shared memory, gone when the process ends)."""
    if isinstance(value, torch.Tensor):
        return value.detach().numpy().copy()
    if isinstance(value, dict):
        return {k: _by_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_by_value(v) for v in value)
    return value


def _as_tensors(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, dict):
        return {k: _as_tensors(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_as_tensors(v) for v in value)
    return value


def _rank_main(fn: Any, r: int, world: int, port: int, queue: Any, args: tuple) -> None:
    import traceback
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(r), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(r))
    torch.set_num_threads(1)
    try:
        dev = distributed.start(distributed.from_environment(), torch.device("cpu"))
        try:
            queue.put((r, True, _by_value(fn(r, world, dev, *args))))
        finally:
            distributed.stop()
    except BaseException:
        queue.put((r, False, traceback.format_exc()))


def _batchnorm_rank(r: int, world: int, dev: torch.device, x: torch.Tensor, g: torch.Tensor) -> dict:
    torch.manual_seed(0)
    bn = distributed.global_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))[0]
    nn.init.uniform_(bn.weight)
    nn.init.uniform_(bn.bias)
    b = len(x) // world
    xi = x[r * b:(r + 1) * b].clone().requires_grad_(True)
    for _ in range(2):                     # the running statistics of two steps
        y = bn(xi)
    (y * g[r * b:(r + 1) * b]).sum().backward()
    weight_grad = distributed.all_sum(bn.weight.grad)       # DDP would average these; here their sum is the whole
    return {"type": type(bn).__name__, "y": y.detach(), "x_grad": xi.grad, "weight_grad": weight_grad,
            "running": (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))}


def test_global_batchnorm_is_batchnorm_of_the_whole_batch():
    torch.manual_seed(1)
    x = torch.randn(6, 3, 5, 4) * 0.01 + 20      # a large mean over a small spread: float32 sums would lose digits
    g = torch.randn(6, 3, 5, 4)
    ranks = run_ranks(_batchnorm_rank, 2, x, g)

    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    nn.init.uniform_(bn.weight)
    nn.init.uniform_(bn.bias)
    xx = x.clone().requires_grad_(True)
    for _ in range(2):
        y = bn(xx)
    (y * g).sum().backward()
    assert ranks[0]["type"] == "GlobalBatchNorm2d"
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), xx.grad, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(ranks[0]["weight_grad"], bn.weight.grad, rtol=1e-4, atol=1e-4)
    for r in ranks:
        torch.testing.assert_close(r["running"][0], bn.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r["running"][1], bn.running_var, rtol=1e-5, atol=1e-8)
        assert r["running"][2] == 2


# lal2017 with two critic updates a step: two sets of per-item gradient-penalty draws
STEP_CONFIG = {"lal2017": {"n_critic": 2}}


def _gradients_rank(r: int, world: int, dev: torch.device, models: list[str], seed: int) -> dict:
    out = {}
    for model in models:
        net, optimizers = tiny_model(model, seed, **STEP_CONFIG.get(model, {}))
        distributed.global_batchnorm(net)
        optimizers = net.configure_optimizers({**net.default_train_config(), "lr": 1e-3})
        net.use_replicas(distributed.replicate(net.training_forwards(), dev))
        full, b = global_batch(seed), 4 // world
        batch = TrainBatch(full.rgb[r * b:(r + 1) * b], full.labels[r * b:(r + 1) * b], r * b, 4, full.seed)
        torch.manual_seed(seed + 7)
        logs = distributed.all_mean(net.train_step(batch, 0, optimizers), dev)
        out[model] = ({n: p.grad for n, p in net.named_parameters() if p.grad is not None}, logs)
    return out


@pytest.mark.parametrize("seed", [0])
def test_one_step_on_two_ranks_has_the_gradients_of_one_rank_on_the_global_batch(seed):
    """Every model: DDP's averaged gradients, and the logged losses, are the global batch's."""
    ranks = run_ranks(_gradients_rank, 2, MODELS, seed)
    for model in MODELS:
        net, optimizers = tiny_model(model, seed, **STEP_CONFIG.get(model, {}))
        torch.manual_seed(seed + 7)
        logs = net.train_step(global_batch(seed), 0, optimizers)
        expected = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
        grads0, logs0 = ranks[0][model]
        grads1, _ = ranks[1][model]
        assert set(grads0) == set(expected), model
        for name, g in expected.items():
            assert torch.equal(grads0[name], grads1[name]), f"{model} {name}: the ranks' gradients differ"
            error = (grads0[name] - g).abs().max() / g.abs().max().clamp(min=1e-12)
            if os.environ.get("VTT_PRINT_GRADIENT_ERRORS"):     # to measure the tolerance
                print(f"gradient error {model} {seed} {name} {float(error):.2e}")
            bound = 1e-2 if model == "pixcolor" else 1e-3
            assert error < bound, f"{model} {name}: {error:.2e} from the one-rank gradient"
        for key, value in logs.items():
            assert logs0[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (model, key)


def test_each_rank_reads_its_slice_of_every_global_batch_and_an_uneven_split_is_refused():
    first = [list(zip(range(6), iter(_RankPositions(3, 6, r, 3)))) for r in range(3)]
    assert [[k for _, k in rows] for rows in first] == [[18, 19, 24, 25, 30, 31], [20, 21, 26, 27, 32, 33],
                                                        [22, 23, 28, 29, 34, 35]]
    assert [k for _, k in zip(range(8), iter(_RankPositions(3, 4)))] == list(range(12, 20))
    with pytest.raises(ValueError, match="a batch of 5 does not split over 2 ranks"):
        _RankPositions(0, 5, 0, 2)


# --- torchrun, the command line ------------------------------------------------------------

def torchrun(*args: str, ranks: int = 2, **popen: Any) -> subprocess.Popen:
    """``torchrun --standalone --nproc-per-node RANKS -m colorizers.train ARGS`` (as a user runs it)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               "-m", "colorizers.train", *args]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **popen)


def finished(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, output
    return output


def options(data: Path, out: Path, model: str, config: dict[str, Any], steps: int, *extra: str,
            workers: int = 0) -> list[str]:
    flags = [f"--config={k}={v}" for k, v in config.items()]
    return ["--model", model, "--data", f"folder:{data}", "--out", str(out), "--steps", str(steps),
            "--batch-size", "4", "--crop", "32", "--resize", "40", "--lr", "1e-3", "--device", "cpu",
            "--workers", str(workers), *flags, *extra]


def one_rank(data: Path, out: Path, model: str, config: dict[str, Any], steps: int, **kwargs: Any) -> Path:
    settings = dict(model=model, data=f"folder:{data}", out=out, steps=steps, batch_size=4, crop=32, resize=40,
                    lr=1e-3, config=config, device="cpu", workers=0, progress=False, log=lambda line: None)
    return train(**{**settings, **kwargs})


def weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in torch.load(path, weights_only=True)["state_dict"].items() if v.is_floating_point()}


def initial_weights(model: str, config: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """The weights a run of ``seed`` starts from (the trainer seeds torch, then builds the model)."""
    torch.manual_seed(seed)
    return {k: v for k, v in get_colorizer(model)(**config).state_dict().items() if v.is_floating_point()}


def relative_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], start: dict[str, torch.Tensor]
                      ) -> float:
    """||a - b|| / ||b - start|| over the parameters: how far apart two runs are, for how far they went."""
    names = [k for k in start if "running" not in k]
    apart = sum(float((a[k] - b[k]).square().sum()) for k in names) ** 0.5
    went = sum(float((b[k] - start[k]).square().sum()) for k in names) ** 0.5
    return apart / went


# ||two ranks - one rank|| / ||one rank - start|| after 3 steps, bounds (see the module docstring)
CLOSE = {"zhang2016": 0.25, "liang2016": 1e-5}


@pytest.mark.parametrize("model, workers", [("zhang2016", 0), ("liang2016", 1)])
def test_torchrun_two_ranks_train_the_one_rank_weights(model, workers, photo_dir, tmp_path):
    """(liang2016's ranks load their slices in a worker process each: the stream does not depend on it.)"""
    config = CONFIGS[model]
    output = finished(torchrun(*options(photo_dir, tmp_path / "two.pt", model, config, 3, workers=workers)))
    assert "on 2 ranks (gloo, cpu), global batch 4 = 2 x 2" in output
    assert output.count("sha256 ") == 1                 # rank 0 wrote and reported the checkpoint
    one_rank(photo_dir, tmp_path / "one.pt", model, config, 3)
    two, one = torch.load(tmp_path / "two.pt", weights_only=True), torch.load(tmp_path / "one.pt", weights_only=True)
    assert two["extra"]["ranks"] == 2 and one["extra"]["ranks"] == 1
    assert two["extra"]["last_logs"]["loss"] == pytest.approx(one["extra"]["last_logs"]["loss"], rel=1e-3)
    start = initial_weights(model, config)
    assert relative_distance(weights(tmp_path / "two.pt"), weights(tmp_path / "one.pt"), start) < CLOSE[model]


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (torchrun starts its ranks in sessions of their own)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def checkpoint_step(path: Path) -> int | None:
    try:
        return int(torch.load(path, weights_only=True)["extra"]["step"])
    except (OSError, RuntimeError, EOFError, KeyError):
        return None


def test_a_killed_two_rank_run_resumes_to_the_uninterrupted_weights_on_two_ranks_or_one(photo_dir, tmp_path):
    config = CONFIGS["zhang2016"]
    killed = tmp_path / "killed.pt"
    proc = torchrun(*options(photo_dir, killed, "zhang2016", config, 500, "--save-every", "1"))
    deadline = time.monotonic() + WAIT
    while (checkpoint_step(killed) or 0) < 2:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint at step 2"
        time.sleep(0.02)
    for pid in [*descendants(proc.pid), proc.pid]:     # both ranks and torchrun, mid-run, no clean-up
        os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=WAIT)
    assert proc.returncode == -signal.SIGKILL
    at = checkpoint_step(killed)
    assert at is not None and 2 <= at < 500
    target = at + 3

    straight = tmp_path / "straight.pt"
    finished(torchrun(*options(photo_dir, straight, "zhang2016", config, target)))
    again = tmp_path / "again.pt"
    output = finished(torchrun(*options(photo_dir, again, "zhang2016", {}, target, "--resume", str(killed))))
    assert f"steps {at}..{target}" in output
    for name, w in weights(straight).items():
        assert torch.equal(w, weights(again)[name]), f"{name} differs after resuming on 2 ranks"
    alone = one_rank(photo_dir, tmp_path / "alone.pt", "zhang2016", {}, target, resume=killed)
    start = initial_weights("zhang2016", config)
    assert relative_distance(weights(alone), weights(straight), start) < CLOSE["zhang2016"]


def test_sigterm_stops_both_ranks_after_the_same_step_and_rank_0_writes_it(photo_dir, tmp_path):
    out = tmp_path / "stopped.pt"
    proc = torchrun(*options(photo_dir, out, "zhang2016", CONFIGS["zhang2016"], 500, "--save-every", "1"))
    deadline = time.monotonic() + WAIT
    while (checkpoint_step(out) or 0) < 1:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint at step 1"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)       # torchrun passes it to the ranks, as a cluster's preemption does
    output, _ = proc.communicate(timeout=WAIT)
    at = checkpoint_step(out)
    assert at is not None and at < 500
    assert f"interrupted: wrote {out} at step {at}; continue with --resume {out}" in output


def test_a_global_batch_the_ranks_cannot_split_is_refused(photo_dir, tmp_path):
    proc = torchrun(*options(photo_dir, tmp_path / "x.pt", "zhang2016", CONFIGS["zhang2016"], 2), ranks=3)
    output, _ = proc.communicate(timeout=WAIT)
    assert proc.returncode != 0
    assert "the global batch of 4 does not split over 3 ranks" in output
    assert not (tmp_path / "x.pt").exists()


def test_the_ranks_come_from_torchruns_environment_and_a_broken_one_is_refused():
    assert distributed.from_environment({}) == distributed.Ranks(0, 1, 0)
    assert distributed.from_environment({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == \
        distributed.Ranks(1, 4, 1)
    with pytest.raises(ValueError, match="RANK/LOCAL_RANK are missing"):
        distributed.from_environment({"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="inconsistent torchrun environment: RANK 2, WORLD_SIZE 2"):
        distributed.from_environment({"RANK": "2", "WORLD_SIZE": "2"})
