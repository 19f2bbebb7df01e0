"""One rank of a data-parallel (DDP, gloo, CPU) training job, for the distributed tests.

Every rank steps a scheduler on the same run; at each metric step, every rank posts the same
all-reduced validation loss (the recipe lrtower documents), so the plateau sees one value per step.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim import lr_scheduler

from training import data, model

SPEC = {"type": "StepLR", "step_size": 25, "gamma": 0.5}
PLATEAU = {"metric": "loss", "factor": 0.5, "patience": 0, "threshold": 0.05}
STEPS, BATCH, METRIC_EVERY = 120, 32, 10


def run_rank(rank: int, world: int, port: int, url: str | None, run: str, out: str) -> None:
    """Train; `url` None uses local torch schedulers instead of the run. Saves the weights."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        weights = _train(rank, world, url, run)
        torch.save(weights, Path(out) / f"{run}-rank{rank}.pt")
        # The DDP module holds its own reference to the process group: collect it (its hooks form
        # cycles) so that destroy_process_group really tears gloo down here, after every rank is
        # done, and not at interpreter shutdown, where gloo's threads abort the process (SIGABRT).
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _train(rank: int, world: int, url: str | None, run: str) -> torch.Tensor:
    x, y = data()
    net = DistributedDataParallel(model())
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    schedulers: Any
    if url is None:
        schedulers = (
            lr_scheduler.StepLR(opt, step_size=25, gamma=0.5),
            lr_scheduler.ReduceLROnPlateau(opt, **{k: v for k, v in PLATEAU.items() if k != "metric"}),
        )
    else:
        from lrtower.scheduler import RemoteScheduler

        schedulers = RemoteScheduler(opt, run, url, lookahead=16, schedule=SPEC, plateau=PLATEAU)
    share = BATCH // world
    for i in range(STEPS):
        start = (i * BATCH) % len(x) + rank * share
        loss = torch.nn.functional.mse_loss(
            net(x[start : start + share]).squeeze(1), y[start : start + share]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (i + 1) % METRIC_EVERY:
            (schedulers[0] if url is None else schedulers).step()
            continue
        with torch.no_grad():  # each rank its half of the data, then the mean of both
            half = len(x) // world
            value = torch.nn.functional.mse_loss(
                net.module(x[rank * half : (rank + 1) * half]).squeeze(1),
                y[rank * half : (rank + 1) * half],
            )
            dist.all_reduce(value)
            value /= world
        if url is None:
            schedulers[0].step()
            schedulers[1].step(float(value))
        else:
            schedulers.step(float(value))
    return torch.cat([p.detach().flatten() for p in net.module.parameters()])
