"""Recovering from a loss spike with a real training loop: rewind the run to a checkpoint with a
lower LR, reload the checkpoint, train on. The weights must end bit for bit where a local torch
job ends that reloads the same checkpoint (scheduler state included) and halves its LRs from the
step after it; a rank of the old attempt never gets an LR of the new one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler

from lrtower import Client, Conflict
from lrtower.scheduler import RemoteScheduler
from training import FLAT, WARMUP_COSINE, copied, data, model, optimizer, warmup_cosine

CHECKPOINT_EVERY = 40
SPIKE, K, END = 150, 120, 200
PLATEAU = {"factor": 0.5, "patience": 2, "threshold": 0.01}


def plateau(opt: torch.optim.Optimizer) -> Any:
    return lr_scheduler.ReduceLROnPlateau(opt, **PLATEAU)


# name: (optimizer, its LR, the local torch scheduler, the run's definition, a metric every step)
CASES: dict[str, tuple[str, float, Callable[[torch.optim.Optimizer], Any], dict[str, Any], bool]] = {
    "warmup-cosine-two-groups": ("sgd2", 0.05, warmup_cosine, {"schedule": WARMUP_COSINE}, False),
    "plateau": ("sgd", 0.05, plateau, {"schedule": FLAT, "plateau": {"metric": "loss", **PLATEAU}}, True),
}


class Job:
    """The MLP of training.py, its optimizer, and a scheduler; `steps` trains as a job does."""

    def __init__(self, kind: str, lr: float, scheduler: Callable[[torch.optim.Optimizer], Any]) -> None:
        self.x, self.y = data()
        self.net = model()
        self.opt = optimizer(kind, self.net, lr)
        self.scheduler = scheduler(self.opt)
        self.used: dict[int, list[float]] = {}
        """Step -> the LRs it ran with."""

    def loss(self) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(self.net(self.x).squeeze(1), self.y))

    def steps(self, steps: range, metrics: bool, lrs: Callable[[int], list[float]] | None = None) -> None:
        """Train steps; `lrs(i)`, if given, sets the LRs step i runs with (the local reference)."""
        for i in steps:
            if lrs is not None:
                for group, lr in zip(self.opt.param_groups, lrs(i), strict=True):
                    group["lr"] = lr
            self.used[i] = [group["lr"] for group in self.opt.param_groups]
            start = (i * 32) % len(self.x)
            batch = slice(start, start + 32)
            loss = torch.nn.functional.mse_loss(self.net(self.x[batch]).squeeze(1), self.y[batch])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if metrics:
                self.scheduler.step(self.loss())
            else:
                self.scheduler.step()

    def checkpoint(self) -> dict[str, Any]:
        saved = {
            "model": {k: v.clone() for k, v in self.net.state_dict().items()},
            "optimizer": copied(self.opt.state_dict()),
            "scheduler": copied(self.scheduler.state_dict()),
        }
        if self.scheduler.optimizer is not self.opt:  # the local reference's twin holds the LRs
            saved["twin"] = copied(self.scheduler.optimizer.state_dict())
        return saved

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.net.load_state_dict(checkpoint["model"])
        self.opt.load_state_dict(checkpoint["optimizer"])
        if "twin" in checkpoint:
            self.scheduler.optimizer.load_state_dict(checkpoint["twin"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])

    def weights(self) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in self.net.parameters()])


def local_reference(
    kind: str, lr: float, local: Callable[[torch.optim.Optimizer], Any], metrics: bool
) -> torch.Tensor:
    """torch alone: train to K, save; reload that checkpoint and train to END with every LR
    halved from step K + 1. The scheduler steps a twin optimizer (the same groups, no
    parameters), so that halving the LRs the job uses never feeds back into torch's chained
    updates; the job's optimizer runs with the twin's LRs, halved."""
    twin_params = [torch.zeros(1, requires_grad=True) for _ in range(2)]

    def twin(opt: torch.optim.Optimizer) -> Any:
        groups = [{"params": [twin_params[i]], "lr": g["lr"]} for i, g in enumerate(opt.param_groups)]
        return local(torch.optim.SGD(groups, lr=lr))

    job = Job(kind, lr, twin)

    def lrs(i: int) -> list[float]:
        scale = 0.5 if i > K else 1.0
        return [g["lr"] * scale for g in job.scheduler.optimizer.param_groups]

    job.steps(range(K), metrics, lrs)
    saved = job.checkpoint()
    resumed = Job(kind, lr, twin)
    resumed.restore(saved)
    job = resumed
    job.steps(range(K, END), metrics, lrs)
    return job.weights()


@pytest.mark.parametrize("case", CASES)
def test_rewind_to_a_checkpoint_with_half_the_lr_trains_as_torch_would(
    tower: str, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    kind, lr, local, definition, metrics = CASES[case]
    run = f"spike-{case}"

    def remote(opt: torch.optim.Optimizer) -> RemoteScheduler:
        return RemoteScheduler(opt, run, tower, lookahead=7, **definition)

    job = Job(kind, lr, remote)
    checkpoints = {}
    for start in range(0, SPIKE, CHECKPOINT_EVERY):
        checkpoints[start] = job.checkpoint()
        job.steps(range(start, min(start + CHECKPOINT_EVERY, SPIKE)), metrics)
    assert job.scheduler.last_epoch == SPIKE and K in checkpoints

    with Client(tower) as client:
        first = client.curve(run, 0, END + 50)  # attempt 1: served up to its mark, planned after
        rewound = client.rewind(run, K, scale=0.5, reason="loss spike at step 150")
    assert (rewound.attempt, rewound.to_step, first.attempt) == (2, K, 1) and rewound.discarded_to >= SPIKE

    # A rank of the old attempt steps on through the rewind: it runs with what attempt 1 served,
    # then keeps its last LR, warns once, and asks nothing more. It never gets attempt 2's LR.
    with caplog.at_level(logging.WARNING, logger="lrtower"):
        job.steps(range(SPIKE, END), metrics)
    warnings = [r for r in caplog.records if "was rewound" in r.getMessage()]
    assert len(warnings) == 1 and job.scheduler.feed.attempt == 1
    for step in range(SPIKE, END):  # attempt 1's LR of the step, or the last LR kept
        assert job.used[step] in (first.lrs[min(step, rewound.discarded_to)], job.used[step - 1]), step
    with Client(tower) as client:
        assert client.get_run(run).high_water == K  # the old rank served nothing of attempt 2

    resumed = Job(kind, lr, lambda opt: RemoteScheduler(opt, run, tower, lookahead=7))
    resumed.restore(checkpoints[K])
    assert resumed.scheduler.last_epoch == K
    resumed.steps(range(K, END), metrics)
    assert resumed.scheduler.feed.attempt == 2
    assert resumed.used[K + 1] == [lr * 0.5 for lr in first.lrs[K + 1]] or metrics  # halved from K + 1
    expected = local_reference(kind, lr, local, metrics)
    got = resumed.weights()
    assert torch.equal(got, expected), f"max difference {(got - expected).abs().max().item():.3g}"
    job.scheduler.feed.close()


def test_a_strict_rank_of_an_ended_attempt_raises_naming_the_new_one(tower: str) -> None:
    net = model()
    opt = optimizer("sgd", net, 0.1)
    scheduler = RemoteScheduler(opt, "strict-spike", tower, lookahead=1, strict=True, schedule=FLAT)
    for _ in range(10):
        scheduler.step()
    with Client(tower) as client:
        client.rewind("strict-spike", 5, scale=0.5, reason="spike")
    with pytest.raises(Conflict) as ended:
        scheduler.step()
    assert ended.value.attempt == 2 and scheduler.feed.attempt == 1
    scheduler.feed.close()
