"""Client cost: one RemoteScheduler.step() against one local torch scheduler.step().

A real `lrtower serve` runs on this machine, on a fresh SQLite file. Each round trains a small
MLP (one forward, backward and optimizer step per step) and times every `scheduler.step()`
apart: a local `CosineAnnealingLR`, then `RemoteScheduler`s on the same schedule with lookahead
1, 64 (the default) and 1024. Each round uses new runs, so every fetch is a real
first read (the server raises the run's mark). The figures are over all steps of all rounds;
`ratio` = remote / local, at the median and on average (goal: at most 1.5 with the default
lookahead). `loop` is the mean time of a whole step of the job (training step and scheduler
step), and `loop ratio` its ratio to the local job's.

    python bench/client.py [--rounds 5] [--steps 3000] [--out bench/results]

Prints a table, and writes bench/results/client.json and client.md.

Where the time goes (see `lrtower.lookahead`). A window of 64 steps costs about 0.5 ms of
Python, nearly all of it httpx sending the request and reading the answer (the JSON and the
window's StepLRs are about 0.05 ms). All of it runs on the feed's one worker thread: the
`step()` that enters a window only hands the next one to the worker and merges the fetched one
(tens of µs, once per window); the other steps are a dictionary lookup. Before, every window
started a thread: `Thread.start()` waits until the new thread runs, and that thread then held
the GIL while it built its request, so one step in 64 took 0.5 ms or more, and `step()` was
3 to 5x a local one on average while its median was below it.

The worker's CPU time still shares the GIL with the job: it runs mostly while the job is inside
torch (which releases the GIL), so it shows in `loop`, not in `step()`. Read `loop` with care:
a training step here is about 50 times a scheduler step, so any other work on the machine shows
in it, the server's included (it shares the 2 cores with the job, whose torch uses both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import torch
from engine import machine

from lrtower.scheduler import RemoteScheduler

SPEC = {"type": "CosineAnnealingLR", "T_max": 100_000, "eta_min": 1e-5}
LOOKAHEADS = (1, 64, 1024)


def serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    lrtower = str(Path(sys.executable).parent / "lrtower")
    env = {**os.environ, "LRTOWER_DATABASE_URL": f"sqlite:///{home / 'bench.db'}"}
    process = subprocess.Popen(
        [lrtower, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


class Job:
    """A small real training job: its steps give the background refill its time, as in training."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 1))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.x, self.y = torch.randn(64, 64), torch.randn(64, 1)

    def train_step(self) -> None:
        loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def step_times(job: Job, scheduler: Any, steps: int) -> tuple[list[float], list[float]]:
    """Seconds of each of `steps` calls of scheduler.step(), each after a training step, and of
    each whole step (training and scheduler)."""
    clock = time.perf_counter
    times, loops = [], []
    for _ in range(steps):
        begin = clock()
        job.train_step()
        start = clock()
        scheduler.step()
        end = clock()
        times.append(end - start)
        loops.append(end - begin)
    return times, loops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3000, help="steps per round (lookahead 1: a tenth)")
    parser.add_argument("--port", type=int, default=8931)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # torch warns when a scheduler steps without an optimizer step

    url = f"http://127.0.0.1:{args.port}"
    samples: dict[str, list[float]] = {"local": [], **{f"remote-{k}": [] for k in LOOKAHEADS}}
    loops: dict[str, list[float]] = {name: [] for name in samples}
    with tempfile.TemporaryDirectory() as home:
        server = serve(Path(home), args.port)
        try:
            for round_ in range(args.rounds):
                job = Job()
                local = torch.optim.lr_scheduler.CosineAnnealingLR(job.optimizer, T_max=100_000, eta_min=1e-5)
                times, loop = step_times(job, local, args.steps)
                samples["local"] += times
                loops["local"] += loop
                for k in LOOKAHEADS:
                    job = Job()
                    remote = RemoteScheduler(
                        job.optimizer, f"bench-{round_}-{k}", url, lookahead=k, schedule=SPEC
                    )
                    times, loop = step_times(job, remote, args.steps if k > 1 else args.steps // 10)
                    samples[f"remote-{k}"] += times
                    loops[f"remote-{k}"] += loop
                    remote.client.close()
        finally:
            server.terminate()
            server.wait()

    base = statistics.median(samples["local"])
    rows = []
    for name, times in samples.items():
        ordered = sorted(times)
        rows.append(
            {
                "scheduler": name,
                "steps": len(times),
                "median_us": statistics.median(times) * 1e6,
                "mean_us": statistics.fmean(times) * 1e6,
                "p99_us": ordered[int(len(ordered) * 0.99)] * 1e6,
                "ratio": statistics.median(times) / base,
                "mean_ratio": statistics.fmean(times) / statistics.fmean(samples["local"]),
                "loop_mean_us": statistics.fmean(loops[name]) * 1e6,
                "loop_ratio": statistics.fmean(loops[name]) / statistics.fmean(loops["local"]),
            }
        )
    default = next(r for r in rows if r["scheduler"] == "remote-64")
    summary = (
        f"default lookahead (64): {default['ratio']:.2f}x a local torch step() at the median, "
        f"{default['mean_ratio']:.2f}x on average (goal: at most 1.5x); a whole training step "
        f"{default['loop_ratio']:.2f}x the local job's"
    )
    print(
        f"{'scheduler':<14}{'steps':>8}{'median µs':>11}{'mean µs':>10}{'p99 µs':>10}{'ratio':>8}"
        f"{'mean ratio':>12}{'loop µs':>10}{'loop ratio':>12}"
    )
    for r in rows:
        print(
            f"{r['scheduler']:<14}{r['steps']:>8}{r['median_us']:>11.2f}{r['mean_us']:>10.2f}"
            f"{r['p99_us']:>10.2f}{r['ratio']:>8.2f}{r['mean_ratio']:>12.2f}{r['loop_mean_us']:>10.1f}"
            f"{r['loop_ratio']:>12.2f}"
        )
    print(summary)

    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "spec": SPEC, "rounds": args.rounds, "rows": rows, "summary": summary}
    (args.out / "client.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "| scheduler | steps | median (µs) | mean (µs) | p99 (µs) | ratio (median) | ratio (mean) "
        "| loop (µs) | loop ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {r['scheduler']} | {r['steps']} | {r['median_us']:.2f} | {r['mean_us']:.2f} | {r['p99_us']:.2f} | "
        f"{r['ratio']:.2f} | {r['mean_ratio']:.2f} | {r['loop_mean_us']:.1f} | {r['loop_ratio']:.2f} |"
        for r in rows
    ]
    md += ["", f"{summary}. Machine: {result['machine']['cpu']}, Python {result['machine']['python']}."]
    (args.out / "client.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
