"""Serving behind nginx: answers and images, their latency and their CPU time, beside the trivial view's ceiling.

    python benchmarks/serving.py [--backend postgresql|sqlite] [--through nginx|gunicorn] [--workers 4]
                                 [--threads 1] [--scale small|ctest10k] [--raters 50] [--arrivals 500]
                                 [--arrival-seconds 180] [--no-open-loop]

Starts a throwaway deployment (`vtt.loadtest.deployment`: a new database, gunicorn, and
Debian's nginx in front of it as in production, the pair images sent by nginx on the app's
X-Accel-Redirect) whose open experiment is made directly in the database (`vtt.synthetic`):
``small`` is 100 images of one rated method with K large enough for every simulated rater,
``ctest10k`` is 10,000 images x 5 methods x K = 5 (250,000 places); then `vtt.synthetic.settle`
(``VACUUM ANALYZE``, what autovacuum does soon after the bulk inserts of opening, which would
otherwise run during the first phases). Every rater's session
is 40 trials, 4 of them catch trials, and loads the images of each trial as the trial page
does (the next trial's are preloaded). Then, one phase after the other, in one run:

1. the ceiling: ``--raters`` clients each requesting the trivial ``/healthz`` view 40 times;
2. one rater alone (answer latency without queueing);
3. closed loop: ``--raters`` raters answer whole sessions at once with no pause;
4. open loop: ``--arrivals`` raters arrive at random times (a Poisson process) over
   ``--arrival-seconds`` and pause 1 to 3 s before each answer, as people do.

For each phase: throughput, p50 and p99 of the answer and of the image requests, errors,
and the CPU time per answer of the server's processes (gunicorn's and nginx's process groups
and every PostgreSQL process, from /proc) and of this client. The clients are threads of
this process on the same machine: the ceiling is what this client and stack reach on the
trivial view, and the answers' throughput is compared with it. Results go to BENCHMARKS.md
by hand, with the machine and the date.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import resource
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vtt.loadtest import CTEST10K, RaterLog, SimulatedRater, deployment  # noqa: E402

TRIALS = 40
_TICK = os.sysconf("SC_CLK_TCK")


def ms(values: list[float], q: float) -> str:
    return f"{np.percentile(np.asarray(values) * 1000, q):7.1f}" if values else "      -"


def _cpu(pid: str) -> tuple[int, float] | None:
    """(process group, CPU seconds of the process and its reaped children) of /proc/PID, or None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[2]), sum(int(x) for x in fields[11:15]) / _TICK


def server_cpu(groups: dict[int, str]) -> dict[str, float]:
    """CPU seconds so far of the processes in each process group of ``groups`` (gunicorn's, nginx's), and of
    PostgreSQL's processes (its postmaster counts the backends that have exited)."""
    total = dict.fromkeys([*groups.values(), "postgresql"], 0.0)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        found = _cpu(pid)
        if found is None:
            continue
        group, seconds = found
        try:
            postgres = open(f"/proc/{pid}/comm").read().strip() == "postgres"
        except OSError:
            continue
        if group in groups:
            total[groups[group]] += seconds
        elif postgres:
            total["postgresql"] += seconds
    return total


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Phase:
    name: str
    seconds: float
    result: Any  # what the phase's work returned: the raters' logs (the ceiling: its requests/s and latencies)
    server: dict[str, float]  # CPU seconds of each part of the server
    client: float

    def cpu(self, n: int) -> str:
        """CPU time per answer (or request), ``n`` of them: the server's, each of its parts', the client's."""
        parts = ", ".join(f"{name} {seconds / n * 1000:.2f}" for name, seconds in self.server.items())
        return (f"CPU per {'request' if self.name == 'ceiling' else 'answer'}: server "
                f"{sum(self.server.values()) / n * 1000:.2f} ms ({parts}), client {self.client / n * 1000:.2f} ms")

    def report(self) -> str:
        answers = [t for log in self.result for t in log.answer_seconds]
        images = [t for log in self.result for t in log.image_seconds]
        errors = [e for log in self.result for e in log.errors]
        n = max(len(answers), 1)
        return (f"{self.name}: {len(answers) / self.seconds:7.1f} answers/s, {len(images) / self.seconds:7.1f} "
                f"images/s over {self.seconds:.1f} s; answer p50 {ms(answers, 50)} ms, p99 {ms(answers, 99)} ms; "
                f"image p50 {ms(images, 50)} ms, p99 {ms(images, 99)} ms; {len(answers)} answers, "
                f"{len(errors)} errors{' (' + errors[0] + ')' if errors else ''}; {self.cpu(n)}")


def measured(name: str, groups: dict[int, str], work) -> Phase:
    server, client, start = server_cpu(groups), client_cpu(), time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    after = server_cpu(groups)
    return Phase(name, seconds, result, {part: after[part] - server[part] for part in after}, client_cpu() - client)


def trivial(base_url: str, clients: int, requests: int) -> tuple[float, list[float]]:
    def one(_):
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            with urllib.request.urlopen(base_url + "/healthz", timeout=30) as r:
                r.read()
            times.append(time.perf_counter() - start)
        return times

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [t for times in pool.map(one, range(clients)) for t in times]
    return len(latencies) / (time.perf_counter() - start), latencies


def closed_loop(base_url: str, raters: int) -> list[RaterLog]:
    """``raters`` raters answering their whole sessions at once, with no pause; one thread each."""
    with ThreadPoolExecutor(raters) as pool:
        return list(pool.map(lambda i: SimulatedRater(base_url, "bench", seed=i, images=True).run(), range(raters)))


def open_loop(base_url: str, arrivals: int, over: float, seed: int) -> list[RaterLog]:
    """``arrivals`` raters arriving as a Poisson process of rate arrivals/over (the count fixed: the arrival times
    are uniform order statistics), each pausing 1 to 3 s before each answer; one thread each."""
    rng = random.Random(seed)
    times = sorted(rng.uniform(0, over) for _ in range(arrivals))
    logs: list[RaterLog] = []
    start = time.perf_counter()

    def rater(i: int, at: float) -> None:
        time.sleep(max(0.0, start + at - time.perf_counter()))
        logs.append(SimulatedRater(base_url, "bench", seed=seed + i, images=True, timeout=60).run(pause=(1.0, 3.0)))

    threads = [threading.Thread(target=rater, args=(i, at)) for i, at in enumerate(times)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return logs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql",
                        help="Default: postgresql.")
    parser.add_argument("--through", choices=["nginx", "gunicorn"], default="nginx",
                        help="nginx in front (production), or clients straight to gunicorn. Default: nginx.")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers. Default: 4.")
    parser.add_argument("--threads", type=int, default=1, help="Threads per gunicorn worker (gthread). Default: 1.")
    parser.add_argument("--scale", choices=["small", "ctest10k"], default="small", help="Default: small.")
    parser.add_argument("--raters", type=int, default=50, help="Closed loop: concurrent raters. Default: 50.")
    parser.add_argument("--arrivals", type=int, default=500, help="Open loop: raters arriving. Default: 500.")
    parser.add_argument("--arrival-seconds", type=float, default=180, help="Open loop: over this time. Default: 180.")
    parser.add_argument("--no-open-loop", action="store_true", help="Skip the open-loop phase.")
    args = parser.parse_args()

    sessions = 1 + args.raters + (0 if args.no_open_loop else args.arrivals)
    if args.scale == "ctest10k":
        images, methods, k = CTEST10K
    else:
        images, methods = 100, 1
        k = math.ceil(sessions * TRIALS / images) + 1
    options = ["--preload", "--timeout", "60"]
    if args.threads > 1:
        options += ["--worker-class", "gthread", "--threads", str(args.threads)]
    with deployment(args.backend, workers=args.workers, options=options, nginx=args.through == "nginx") as site:
        built = time.perf_counter()
        site.manage("shell", "-c", "from vtt.synthetic import synthetic_experiment, settle; "
                    f"synthetic_experiment('bench', images={images}, methods={methods}, k={k}, "
                    f"trials_per_rater={TRIALS}, catch_trial_rate=0.1); settle()")
        built = time.perf_counter() - built
        groups = dict(zip(site.process_groups, ["gunicorn", "nginx"]))

        ceiling = measured("ceiling", groups, lambda: trivial(site.base_url, args.raters, TRIALS))
        rate, latencies = ceiling.result
        alone = measured("one rater alone", groups,
                         lambda: [SimulatedRater(site.base_url, "bench", seed=10_000, images=True).run()])
        closed = measured(f"closed loop, {args.raters} raters", groups,
                          lambda: closed_loop(site.base_url, args.raters))
        phases = [alone, closed]
        if not args.no_open_loop:
            phases.append(measured(f"open loop, {args.arrivals} raters over {args.arrival_seconds:.0f} s", groups,
                                   lambda: open_loop(site.base_url, args.arrivals, args.arrival_seconds, 20_000)))

    threads = f"gthread, {args.threads} threads each" if args.threads > 1 else "sync"
    print(f"{args.backend}, through {args.through}, gunicorn {args.workers} workers ({threads}); {args.scale}: "
          f"{images} images x {methods} methods x K = {k} (made in {built:.1f} s); {TRIALS} trials per session")
    print(f"ceiling, /healthz, {args.raters} clients: {rate:7.1f} requests/s, p50 {ms(latencies, 50)} ms, "
          f"p99 {ms(latencies, 99)} ms; {ceiling.cpu(len(latencies))}")
    for phase in phases:
        print(phase.report())
    answers = sum(len(log.answer_seconds) for log in closed.result)
    print(f"answers/s as a fraction of the ceiling: {answers / closed.seconds / rate:.0%} (closed loop)")


if __name__ == "__main__":
    main()
