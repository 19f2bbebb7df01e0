"""How exactly a run follows torch, as docs/client.md ("Exactness") states it, against a real
server and torch itself:
- each LR is within 1e-12 relative of torch's stepped value, and may differ in the last digits;
- so float64 training is close to torch's, not bit for bit (float32 training is bit for bit in
  tests/client/test_scheduler.py and the others the page names);
- a plateau reduction during a SequentialLR warmup: torch drops it at the milestone, where the
  next scheduler starts again from the base LR (pytorch#68978); the run keeps it, by design.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler

from lrtower import Client
from lrtower.scheduler import RemoteScheduler
from training import WARMUP_COSINE, every_step, train, warmup_cosine

WARMUP = {"type": "LinearLR", "start_factor": 0.1, "total_iters": 10}
COSINE = {"type": "CosineAnnealingLR", "T_max": 100}
SEQUENTIAL = {"type": "SequentialLR", "schedulers": [WARMUP, COSINE], "milestones": [10]}
PLATEAU = {"factor": 0.5, "patience": 0}
METRICS = {4: 1.0, 5: 1.0}
"""The loss posted after steps 4 and 5: no better the second time, so a reduction from step 5."""
STEPS = 16


def torch_lrs() -> list[float]:
    """torch's LRs of steps 0..STEPS-1: a SequentialLR stepped every step, and a ReduceLROnPlateau
    stepped with each metric after it (SequentialLR refuses to hold one)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sequential = lr_scheduler.SequentialLR(
        optimizer,
        [lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=10), lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)],
        milestones=[10],
    )  # fmt: skip
    plateau = lr_scheduler.ReduceLROnPlateau(optimizer, **PLATEAU)
    lrs = [optimizer.param_groups[0]["lr"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepped without an optimizer step
        for step in range(1, STEPS):
            sequential.step()
            if step in METRICS:
                plateau.step(METRICS[step])
            lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_a_reduction_during_a_sequentiallr_warmup_is_kept_past_the_milestone(tower: str) -> None:
    with Client(tower) as client:
        client.create_run("warmup-plateau", SEQUENTIAL, lr=0.1, plateau={"metric": "loss", **PLATEAU})
        for step, value in METRICS.items():
            posted = client.post_metric("warmup-plateau", step, value)
            assert posted.reduced == (step == 5) and posted.effective_step == step
        run = client.lr_range("warmup-plateau", 0, STEPS).lr
    expected = torch_lrs()

    # During the warmup both halve the LR from step 5 on, as the page says: 0.0275 ... 0.0455.
    assert run[:10] == pytest.approx(expected[:10], rel=1e-12)
    assert (run[4], run[5], run[9]) == pytest.approx((0.046, 0.0275, 0.0455), rel=1e-12)
    # At the milestone torch starts the cosine again from the base LR and forgets the reduction.
    assert expected[10] == 0.1
    # The run keeps it: the cosine times the plateau's factor, half of torch's from there on.
    assert run[10] == 0.05
    assert run[10:] == pytest.approx([0.5 * lr for lr in expected[10:]], rel=1e-12)


def test_each_lr_is_within_1e_12_of_torchs_and_may_differ_in_the_last_digits(tower: str) -> None:
    """The training tests' warmup-cosine schedule on two groups, 200 steps: the figures of the page."""
    optimizer = torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in (0.05, 0.005)], lr=0.05
    )
    scheduler = warmup_cosine(optimizer)
    expected = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(200):
            expected.append(scheduler.get_last_lr())
            scheduler.step()
    with Client(tower) as client:
        client.create_run("last-digits", WARMUP_COSINE, lrs=[0.05, 0.005])
        served = client.curve("last-digits", 0, 200).lrs
    pairs = [
        (a, b) for got, want in zip(served, expected, strict=True) for a, b in zip(got, want, strict=True)
    ]
    errors = [abs(a - b) / b for a, b in pairs]
    assert max(errors) < 1e-15  # well within the 1e-12 promised; the page says 7.6e-16
    assert sum(a != b for a, b in pairs) > len(pairs) // 2  # the page says 337 of the 400


@pytest.fixture
def float64() -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_float64_training_is_close_to_torchs_but_not_bit_for_bit(tower: str, float64: None) -> None:
    def remote(opt: torch.optim.Optimizer) -> Any:
        return RemoteScheduler(opt, "float64-job", tower, lookahead=64, schedule=WARMUP_COSINE)

    expected = train("sgd2", 0.05, warmup_cosine, steps=200, step=every_step)
    got = train("sgd2", 0.05, remote, steps=200, step=every_step)
    assert got.dtype == torch.float64
    assert not torch.equal(got, expected)
    assert (got - expected).abs().max() < 1e-14  # the page says about 2e-15
