"""The schedules and retry policy the client tests share, and the LRs expected of them: from
torch's own schedulers (or the server's schedule engine), never from hard-coded numbers."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler

from lrtower import Retry
from lrtower_server.schedules import build_schedule

STEP = {"type": "StepLR", "step_size": 3, "gamma": 0.5}
EXPONENTIAL = {"type": "ExponentialLR", "gamma": 0.9}
WARMUP_THEN_DECAY = {
    "type": "SequentialLR",
    "schedulers": [
        {"type": "LinearLR", "start_factor": 0.1, "total_iters": 4},
        {"type": "ExponentialLR", "gamma": 0.8},
    ],
    "milestones": [4],
}
CONSTANT = {"type": "StepLR", "step_size": 100_000}
# Two retries that barely pause: a test that meets transient failures still runs in milliseconds.
FAST = Retry(retries=2, backoff=0.001)


def _optimizer(base_lrs: list[float]) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in base_lrs]
    return torch.optim.SGD(groups, lr=base_lrs[0])


def _scheduler(spec: dict[str, Any], optimizer: torch.optim.Optimizer) -> Any:
    kwargs = {key: value for key, value in spec.items() if key != "type"}
    if spec["type"] == "SequentialLR":
        children = [_scheduler(child, optimizer) for child in spec["schedulers"]]
        return lr_scheduler.SequentialLR(optimizer, children, spec["milestones"])
    return getattr(lr_scheduler, spec["type"])(optimizer, **kwargs)


def torch_lrs(spec: dict[str, Any], base_lrs: list[float], steps: int) -> list[list[float]]:
    """Every group's LR after 0, 1, ..., steps - 1 calls of torch's `scheduler.step()`."""
    optimizer = _optimizer(base_lrs)
    scheduler = _scheduler(spec, optimizer)
    lrs = [list(scheduler.get_last_lr())]
    for _ in range(steps - 1):
        optimizer.step()
        scheduler.step()
        lrs.append(list(scheduler.get_last_lr()))
    return lrs


def torch_plateau(values: list[float], base_lr: float, **config: Any) -> list[float]:
    """The LR after each `ReduceLROnPlateau.step(value)`, on a constant base LR."""
    optimizer = _optimizer([base_lr])
    scheduler = lr_scheduler.ReduceLROnPlateau(optimizer, **config)
    lrs = []
    for value in values:
        optimizer.step()
        scheduler.step(value)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def engine_lrs(spec: dict[str, Any], base_lrs: list[float], step: int) -> list[float]:
    """The server's schedule engine, as a second reference."""
    lrs, _ = build_schedule(spec, base_lrs).at(step)
    return list(lrs)


def approx(values: Any) -> Any:
    """pytest.approx, also for a list of rows (every group's LR at every step)."""
    if isinstance(values, list) and values and isinstance(values[0], list):
        return [approx(row) for row in values]
    return pytest.approx(values, rel=1e-12, abs=1e-15)
