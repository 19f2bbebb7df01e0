"""A run's planned length against a real server: a training loop's lookahead stops at its last
step, so the run's mark ends where the job did; a job that runs longer is still answered."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler

from lrtower import Client, NotFound
from lrtower.scheduler import RemoteScheduler

COSINE = {"type": "CosineAnnealingLR", "T_max": 300, "eta_min": 0.001}


@pytest.fixture
def client(tower: str) -> Iterator[Client]:
    with Client(tower) as client:
        yield client


def _optimizer() -> torch.optim.Optimizer:
    torch.manual_seed(0)
    return torch.optim.SGD(torch.nn.Linear(4, 1).parameters(), lr=0.1)


def _loop(scheduler: Any, steps: int, before_last: Any = None) -> list[float]:
    """`steps` optimizer steps, the scheduler stepped after each, as torch's docs do; the LR each
    optimizer step ran with. `before_last` runs before the last `scheduler.step()`."""
    opt = scheduler.optimizer
    used = []
    for i in range(steps):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        if i == steps - 1 and before_last is not None:
            before_last()
        scheduler.step()
    return used


def test_a_300_step_loop_leaves_the_mark_at_its_last_step(tower: str, client: Client) -> None:
    remote = RemoteScheduler(_optimizer(), "planned-300", tower, schedule=COSINE, total_steps=300)
    assert client.get_run("planned-300").total_steps == 300
    marks = []
    used = _loop(remote, 300, lambda: marks.append(client.get_run("planned-300").high_water))
    # Every step the job trained with was served, and nothing past them: not the rest of the last
    # lookahead window (64 steps).
    assert marks == [299]
    # The last scheduler.step() asks step 300 (the LR after the last optimizer step, as torch's
    # get_last_lr() gives it); it is answered alone.
    assert client.get_run("planned-300").high_water == 300
    local = lr_scheduler.CosineAnnealingLR(_optimizer(), T_max=300, eta_min=0.001)
    assert used == pytest.approx(_loop(local, 300), rel=1e-12)
    assert remote.get_last_lr() == pytest.approx(local.get_last_lr(), rel=1e-12)


def test_without_a_planned_length_the_last_window_reaches_past_the_end(tower: str, client: Client) -> None:
    """What `total_steps` fixes: the lookahead serves steps the job never runs."""
    remote = RemoteScheduler(_optimizer(), "unplanned-300", tower, schedule=COSINE)
    _loop(remote, 300)
    remote.feed.close()
    assert client.get_run("unplanned-300").high_water >= 319


def test_a_scheduler_attached_to_a_run_takes_its_planned_length(tower: str, client: Client) -> None:
    client.create_run("attached-100", COSINE, lr=0.1, total_steps=100)
    remote = RemoteScheduler(_optimizer(), "attached-100", tower, lookahead=64)
    assert remote.feed.total_steps == 100
    marks = []
    _loop(remote, 100, lambda: marks.append(client.get_run("attached-100").high_water))
    assert marks == [99] and client.get_run("attached-100").high_water == 100


def test_the_jobs_own_length_limits_its_windows_on_a_run_without_one(tower: str, client: Client) -> None:
    client.create_run("job-says-80", COSINE, lr=0.1)
    remote = RemoteScheduler(_optimizer(), "job-says-80", tower, total_steps=80)
    marks = []
    _loop(remote, 80, lambda: marks.append(client.get_run("job-says-80").high_water))
    assert marks == [79] and client.get_run("job-says-80").total_steps is None


def test_a_job_that_runs_longer_than_planned_is_answered_and_told_once(
    tower: str, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    remote = RemoteScheduler(_optimizer(), "overrun", tower, schedule=COSINE, total_steps=50)
    with caplog.at_level(logging.WARNING, logger="lrtower"):
        used = _loop(remote, 80)
    local = lr_scheduler.CosineAnnealingLR(_optimizer(), T_max=300, eta_min=0.001)
    assert used == pytest.approx(_loop(local, 80), rel=1e-12)
    assert client.get_run("overrun").high_water == 80
    told = [r.getMessage() for r in caplog.records if "total_steps" in r.getMessage()]
    assert len(told) == 1 and "step 51 is past the 50 steps" in told[0], told


def test_a_planned_length_is_a_whole_number_of_steps(tower: str, client: Client) -> None:
    for bad in (0, 2.5, float("inf")):  # inf: an unlimited Lightning trainer's estimated_stepping_batches
        with pytest.raises(ValueError, match=f"total_steps must be a whole number of steps >= 1, got {bad}"):
            RemoteScheduler(_optimizer(), "never-made", tower, total_steps=bad)
        with pytest.raises(ValueError, match="total_steps must be a whole number"):
            RemoteScheduler(_optimizer(), "never-made", tower, schedule=COSINE, total_steps=bad)
    with pytest.raises(NotFound):  # refused before any request: no run was made
        client.get_run("never-made")
