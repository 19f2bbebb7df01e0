"""One rank of a data-parallel (DDP, gloo, CPU) job that is resumed from a checkpoint, for the
resume tests.

Each rank trains to END, keeping the checkpoint of step K; then, as a restarted job does, it
builds a new model, optimizer and scheduler, loads that checkpoint and trains from K to END
again, on another batch order: the replayed steps post other metrics than the first time.
Every rank posts the same all-reduced validation loss every METRIC_EVERY steps.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim import lr_scheduler

from training import copied, data, model

SPEC = {"type": "StepLR", "step_size": 25, "gamma": 0.5}
PLATEAU = {"metric": "loss", "factor": 0.5, "patience": 0, "threshold": 0.05}
K, END, BATCH, METRIC_EVERY = 30, 80, 32, 10


def run_rank(rank: int, world: int, port: int, url: str | None, run: str, out: str) -> None:
    """Train, resume, train again; `url` None uses torch's own schedulers. Saves what the resumed
    job ran with: the LRs of steps K to END - 1, the weights, and the scheduler's attempt."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        first = _Job(rank, world, url, run)
        checkpoint = first.train(range(END), shuffled=False, keep=K)
        dist.barrier()  # the job "crashes" at END, served up to there
        resumed = _Job(rank, world, url, run)
        resumed.restore(checkpoint)
        resumed.train(range(K, END), shuffled=True)
        attempt = getattr(getattr(resumed.scheduler, "feed", None), "attempt", None)
        result = {
            "lrs": torch.tensor([resumed.used[i] for i in range(K, END)], dtype=torch.float64),
            "weights": torch.cat([p.detach().flatten() for p in resumed.net.module.parameters()]),
            "attempt": attempt,
        }
        torch.save(result, Path(out) / f"{run}-rank{rank}.pt")
        del first, resumed
        gc.collect()  # see distributed_job.py: gloo must go down here, not at shutdown
        dist.barrier()
    finally:
        dist.destroy_process_group()


class _Job:
    def __init__(self, rank: int, world: int, url: str | None, run: str) -> None:
        self.rank, self.world = rank, world
        self.x, self.y = data()
        self.net = DistributedDataParallel(model())
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.05, momentum=0.9)
        self.scheduler: Any
        if url is None:
            self.scheduler = (
                lr_scheduler.StepLR(self.opt, step_size=25, gamma=0.5),
                lr_scheduler.ReduceLROnPlateau(
                    self.opt, **{k: v for k, v in PLATEAU.items() if k != "metric"}
                ),
            )
        else:
            from lrtower.scheduler import RemoteScheduler

            self.scheduler = RemoteScheduler(
                self.opt, run, url, lookahead=16, metric_every=METRIC_EVERY, schedule=SPEC, plateau=PLATEAU
            )
        self.used: dict[int, float] = {}

    def train(self, steps: range, shuffled: bool, keep: int | None = None) -> dict[str, Any]:
        """Train `steps`; returns the checkpoint taken at step `keep` (after `keep` steps)."""
        saved: dict[str, Any] = {}
        share = BATCH // self.world
        for i in steps:
            if i == keep:
                saved = self.checkpoint()
            self.used[i] = self.opt.param_groups[0]["lr"]
            if shuffled:
                order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(1000 + i))
                rows = order[self.rank * share : (self.rank + 1) * share]
            else:
                start = (i * BATCH) % len(self.x) + self.rank * share
                rows = torch.arange(start, start + share)
            loss = torch.nn.functional.mse_loss(self.net(self.x[rows]).squeeze(1), self.y[rows])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if (i + 1) % METRIC_EVERY:
                (self.scheduler[0] if isinstance(self.scheduler, tuple) else self.scheduler).step()
                continue
            with torch.no_grad():  # each rank its half of the data, then the mean of both
                half = len(self.x) // self.world
                value = torch.nn.functional.mse_loss(
                    self.net.module(self.x[self.rank * half : (self.rank + 1) * half]).squeeze(1),
                    self.y[self.rank * half : (self.rank + 1) * half],
                )
                dist.all_reduce(value)
                value /= self.world
            if isinstance(self.scheduler, tuple):
                self.scheduler[0].step()
                self.scheduler[1].step(float(value))
            else:
                self.scheduler.step(float(value))
        return saved

    def checkpoint(self) -> dict[str, Any]:
        schedulers = self.scheduler if isinstance(self.scheduler, tuple) else (self.scheduler,)
        return {
            "model": {k: v.clone() for k, v in self.net.module.state_dict().items()},
            "optimizer": copied(self.opt.state_dict()),
            "schedulers": [copied(s.state_dict()) for s in schedulers],
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.net.module.load_state_dict(checkpoint["model"])
        self.opt.load_state_dict(checkpoint["optimizer"])
        schedulers = self.scheduler if isinstance(self.scheduler, tuple) else (self.scheduler,)
        for scheduler, state in zip(schedulers, checkpoint["schedulers"], strict=True):
            scheduler.load_state_dict(state)
