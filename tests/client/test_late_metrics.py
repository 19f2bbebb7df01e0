"""A metric that reaches the run after its step was served lands late: the scheduler warns, once.

Two "ranks" of a job train in one process, each with its own `RemoteScheduler` (and client) on
the same run, in the order a real job's ranks could take.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from lrtower import Client, LateMetricWarning, RemoteScheduler

CONSTANT = {"type": "ConstantLR", "factor": 1.0, "total_iters": 1}
PLATEAU = {"metric": "loss", "factor": 0.5, "patience": 0}
LOSSES = {10: 1.0, 20: 2.0, 30: 0.5, 40: 0.6}  # worse at 20 and 40: patience 0 reduces there


class Rank:
    """One rank of a job: a tiny model, its optimizer, and a scheduler on the shared run."""

    def __init__(self, tower: str, run: str, **options: Any) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.scheduler = RemoteScheduler(
            self.optimizer, run, tower, schedule=CONSTANT, plateau=PLATEAU, **options
        )
        self.step = 0
        self.lrs = [self.optimizer.param_groups[0]["lr"]]  # lrs[k]: the LR step k ran with

    def train(self, to: int, post: bool) -> None:
        """Train up to step `to`; with `post`, post the job's metric at each metric step."""
        while self.step < to:
            x = torch.randn(8, 4)
            loss = self.model(x).pow(2).mean()
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
            self.step += 1
            if post and self.step in LOSSES:
                self.scheduler.step(LOSSES[self.step])
            else:
                self.scheduler.step()
            self.lrs.append(self.optimizer.param_groups[0]["lr"])

    def close(self) -> None:
        self.scheduler.feed.close()
        self.scheduler.client.close()


@pytest.fixture
def ranks(tower: str) -> Iterator[Callable[..., Rank]]:
    made: list[Rank] = []

    def make(run: str, **options: Any) -> Rank:
        made.append(Rank(tower, run, **options))
        return made[-1]

    yield make
    for rank in made:
        rank.close()


@contextmanager
def late_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    caught[:] = [w for w in caught if issubclass(w.category, LateMetricWarning)]


def torch_lrs(steps: int) -> list[float]:
    """What torch's ReduceLROnPlateau gives, stepped with the same metrics at the same steps."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    lrs = [0.1]
    for step in range(1, steps + 1):
        if step in LOSSES:
            plateau.step(LOSSES[step])
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_rank_0_posting_before_the_others_ask_lands_where_torch_does_and_warns_nothing(
    ranks: Callable[..., Rank],
) -> None:
    # No metric_every: the posting rank learns the cadence, the other one never does (it posts
    # nothing), so both must fetch nothing ahead of a step that may get a metric.
    zero, one = ranks("in-step", lookahead=64), ranks("in-step", lookahead=64)
    with late_warnings() as caught:
        for step in range(1, 46):  # in lock step: as with a barrier after rank 0's post
            zero.train(step, post=True)
            one.train(step, post=False)
    assert caught == [], [str(w.message) for w in caught]
    assert zero.lrs == one.lrs == torch_lrs(45)
    assert 0.025 in zero.lrs  # reduced twice


def test_a_rank_that_ran_ahead_makes_the_metric_late_and_the_poster_warns_once(
    ranks: Callable[..., Rank],
) -> None:
    zero = ranks("ahead", lookahead=64, metric_every=10)
    one = ranks("ahead", lookahead=64, metric_every=10)
    one.train(15, post=False)  # no barrier: it fetched steps 10..19 in one window
    with late_warnings() as caught:
        zero.train(15, post=True)
        one.train(25, post=False)
        zero.train(25, post=True)  # late again (20 applies from 30): no second warning
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert "'ahead'" in message and "posted for step 10 applies from step 20" in message
    assert "another rank" in message and "barrier" in message
    assert caught[0].filename == __file__  # it points at the application's line, not lrtower's
    with Client(zero.scheduler.client.url) as client:
        assert client.get_run("ahead").changes[-1].effective_step == 30  # the reduction of 20, late


def test_a_metric_off_the_expected_cadence_says_the_job_fetched_it(ranks: Callable[..., Rank]) -> None:
    rank = ranks("off-cadence", lookahead=64, metric_every=10)
    rank.train(14, post=False)  # its window holds steps 10..19
    with late_warnings() as caught:
        result = rank.scheduler.feed.post_metric(15, 1.0)
    assert result is not None and result.effective_step == 20
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "step 15 applies from step 20" in message and "this job had fetched step 15" in message


def test_without_a_plateau_a_late_metric_changes_nothing_and_is_not_warned_about(tower: str) -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = RemoteScheduler(optimizer, "no-plateau", tower, schedule=CONSTANT, lookahead=64)
    try:
        for _ in range(5):
            scheduler.step()
        with late_warnings() as caught:
            result = scheduler.feed.post_metric(6, 1.0)
        # The first window served steps 0..63 (and its successor, fetched in the background, more).
        assert result is not None and result.effective_step >= 64
        assert caught == [], [str(w.message) for w in caught]
    finally:
        scheduler.feed.close()
        scheduler.client.close()
