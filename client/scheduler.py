"""`RemoteScheduler`: a torch LR scheduler whose LRs come from an lrtower run.

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = RemoteScheduler(optimizer, "resnet-1", url="http://tower:8000")
    for batch in data:
        ...
        optimizer.step()
        scheduler.step()

It is a real `torch.optim.lr_scheduler.LRScheduler`, so it fits wherever one does: plain loops,
Lightning's `configure_optimizers`, `transformers.Trainer(optimizers=(optimizer, scheduler))`.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import httpx
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ._client import Client
from ._core import Retry
from .lookahead import LRFeed, StepLR

# A training step should not wait long on the server: fail over to the last LR quickly instead.
TRAINING_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
TRAINING_RETRY = Retry(retries=2, backoff=0.1, max_backoff=1.0)


class RemoteScheduler(LRScheduler):
    """A torch scheduler that sets each step's LR (and cycled momentum) from an lrtower run.

    Step k (after k calls of `step()`, as in torch) runs with the run's LR of step k. `step(loss)`
    posts the metric for the new step first, so the run's plateau reduces the LR exactly where
    torch's ReduceLROnPlateau would.

    Args:
        optimizer: the wrapped optimizer; its groups' `lr` are the run's base LRs when it is created.
        run: the run's name.
        url, token: the server and token (default `$LRTOWER_URL`, `$LRTOWER_TOKEN`).
        lookahead: steps fetched per request, refilled in the background; a central change
            reaches the job within this many steps. 1 asks at every step.
        metric_every: the steps between `step(metrics)` calls, if known (else it is learned).
        strict: raise when the server fails, instead of going on with the last LR.
        schedule, plateau, labels: if given, the run is created with them if it does not exist
            (the same definition again is a no-op; a different one raises `Conflict`).
        client: a `Client` to use instead of one made from url and token.
        last_epoch: as in torch; -1 starts a new run of steps.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        run: str,
        url: str | None = None,
        token: str | None = None,
        *,
        lookahead: int = 64,
        metric_every: int | None = None,
        strict: bool = False,
        schedule: Mapping[str, Any] | None = None,
        plateau: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        client: Client | None = None,
        last_epoch: int = -1,
    ) -> None:
        self.run = run
        owned = client is None
        self.client = client = client or Client(url, token, timeout=TRAINING_TIMEOUT, retry=TRAINING_RETRY)
        plateau_known: bool | None = None
        if schedule is not None:
            lrs = [float(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups]
            try:
                created = client.create_run(run, schedule, lrs=lrs, plateau=plateau, labels=labels)
            except BaseException:
                if owned:
                    client.close()
                raise
            plateau_known = created.plateau is not None
        self.feed = LRFeed(
            client,
            run,
            lookahead=lookahead,
            plateau=plateau_known,
            metric_every=metric_every,
            strict=strict,
        )
        if owned:
            # Ours to close, when the scheduler goes or at exit: the feed first, so that a fetch
            # still queued does not open the client again once it is closed.
            self._closer = weakref.finalize(self, _close, self.feed, client)
        super().__init__(optimizer, last_epoch)

    def step(self, metrics: float | torch.Tensor | None = None, epoch: None = None) -> None:  # type: ignore[override]
        """Advance one step and set its LR; with `metrics`, post it for that step first."""
        if epoch is not None:
            raise TypeError("RemoteScheduler.step() takes no epoch: the run counts the steps")
        self._step_count += 1
        self.last_epoch += 1
        if metrics is not None:
            self.feed.post_metric(self.last_epoch, float(metrics))
        answer = self.feed.at(self.last_epoch)
        if answer is not None:
            self._apply(answer)
        self._last_lr = [_copy(group["lr"]) for group in self.optimizer.param_groups]

    def report_metric(self, value: float | torch.Tensor, name: str | None = None) -> None:
        """Post a metric without stepping: it applies from the next `step()` on (a callback's
        evaluation between two optimizer steps). `name` defaults to the plateau's metric."""
        self.feed.post_metric(self.last_epoch + 1, float(value), name)

    def _apply(self, answer: StepLR) -> None:
        groups = self.optimizer.param_groups
        if len(answer.lrs) != len(groups):
            raise ValueError(
                f"run {self.run!r} has {len(answer.lrs)} param groups, the optimizer {len(groups)}"
            )
        for i, group in enumerate(groups):
            _set(group, "lr", answer.lrs[i])
            if answer.momentum is not None:
                # As torch's OneCycleLR and CyclicLR do: Adam-style optimizers cycle beta1.
                if "betas" in group:
                    group["betas"] = (answer.momentum[i], *group["betas"][1:])
                elif "momentum" in group:
                    group["momentum"] = answer.momentum[i]

    def get_lr(self) -> list[float | torch.Tensor]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """The step reached, to resume from: the LRs themselves live on the server."""
        return {"run": self.run, "last_epoch": self.last_epoch, "_step_count": self._step_count,
                "base_lrs": self.base_lrs, "_last_lr": self._last_lr}  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume at the saved step: the next `step()` asks the run for the step after it."""
        if state_dict.get("run", self.run) != self.run:
            raise ValueError(f"this state is of run {state_dict['run']!r}, not {self.run!r}")
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self._step_count))
        self.base_lrs = list(state_dict.get("base_lrs", self.base_lrs))
        self._last_lr = list(state_dict.get("_last_lr", self._last_lr))
        self.feed.forget()


def _close(feed: LRFeed, client: Client) -> None:
    feed.close()
    client.close()


def _copy(lr: float | torch.Tensor) -> float | torch.Tensor:
    return lr.clone() if isinstance(lr, torch.Tensor) else lr


def _set(group: dict[str, Any], key: str, value: float) -> None:
    current = group[key]
    if isinstance(current, torch.Tensor):
        current.fill_(value)  # a tensor LR (capturable or fused optimizers) stays the same tensor
    else:
        group[key] = value
