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

import hashlib
import logging
import os
import uuid
import weakref
from collections.abc import Mapping
from typing import Any, Literal

import httpx
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ._client import Client
from ._core import Retry
from .errors import APIError, Conflict, LrtowerError, ServerError
from .lookahead import LRFeed, StepLR, whole_steps
from .results import Run

log = logging.getLogger("lrtower")

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
        total_steps: how many steps the job plans (Lightning's `trainer.estimated_stepping_batches`,
            transformers' `max_steps`): lookahead stops there, so the run's mark ends at the job's
            last step. Stored on a run created here; by default, the run's own.
        client: a `Client` to use instead of one made from url and token.
        last_epoch: as in torch; -1 starts a new run of steps.
        resume: what `load_state_dict` does at a step the run has served past. "rewind" (the
            default) resumes as torch does: it starts, or joins, a new attempt of the run at the
            checkpoint's step, so the replayed steps may post other metrics and the plateau
            decides from its state at the checkpoint. "replay" keeps the steps served as they
            were: the job gets the same LRs again, and a metric that differs gets `Conflict`.
            See "Resuming from a checkpoint" in docs/client.md.
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
        total_steps: float | None = None,
        client: Client | None = None,
        last_epoch: int = -1,
        resume: Literal["rewind", "replay"] = "rewind",
    ) -> None:
        if resume not in ("rewind", "replay"):
            raise ValueError(f'resume must be "rewind" or "replay", got {resume!r}')
        self.run = run
        self.resume = resume
        self.strict = strict
        self._attempt: int | None = None  # the attempt resumed in, until the feed pins one
        self._replaying_from: int | None = None  # the checkpoint's step, after a resume="replay"
        total_steps = whole_steps(total_steps)  # before the run is made with it
        owned = client is None
        self.client = client = client or Client(url, token, timeout=TRAINING_TIMEOUT, retry=TRAINING_RETRY)
        plateau_known: bool | None = None
        if schedule is not None:
            lrs = [float(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups]
            try:
                created = client.create_run(
                    run, schedule, lrs=lrs, plateau=plateau, labels=labels, total_steps=total_steps
                )
            except BaseException:
                if owned:
                    client.close()
                raise
            plateau_known = created.plateau is not None
            total_steps = created.total_steps if total_steps is None else total_steps
        self.feed = LRFeed(
            client,
            run,
            lookahead=lookahead,
            plateau=plateau_known,
            metric_every=metric_every,
            strict=strict,
            total_steps=total_steps,
        )
        # Named in the report of an outage: which rank ran what, from which LR if before any answer.
        self.feed.rank = _rank()
        self.feed.held = [float(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups]
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
            self._post(self.last_epoch, float(metrics))
        answer = self.feed.at(self.last_epoch)
        if answer is not None:
            self._apply(answer)
        self._last_lr = [_copy(group["lr"]) for group in self.optimizer.param_groups]

    def report_metric(self, value: float | torch.Tensor, name: str | None = None) -> None:
        """Post a metric without stepping: it applies from the next `step()` on (a callback's
        evaluation between two optimizer steps). `name` defaults to the plateau's metric."""
        self._post(self.last_epoch + 1, float(value), name)

    def _post(self, step: int, value: float, name: str | None = None) -> None:
        try:
            self.feed.post_metric(step, value, name)
        except Conflict as exc:
            resumed = self._replaying_from
            other_value = any(e.field.rsplit(".", 1)[-1] == "value" for e in exc.errors)
            if resumed is None or step <= resumed or not other_value:
                raise
            # The server's advice (one all-reduced value per step) fits ranks that disagree; here
            # the likelier cause is this job's own replay of steps served before the checkpoint.
            detail = (
                f"{exc.detail}. This job resumed from a checkpoint at step {resumed} with "
                'resume="replay", which keeps the steps served and the metrics posted after it '
                "before the restart: a replay that posts another value for one of them conflicts. "
                'Pass resume="rewind" (the default) to RemoteScheduler to resume as torch does, in '
                "a new attempt of the run from the checkpoint's step"
            )
            raise Conflict(exc.status, {**exc.problem, "detail": detail}) from exc

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
        """The step reached and the attempt of the run it was reached in, to resume from: the
        LRs themselves live on the server."""
        attempt = self.feed.attempt if self.feed.attempt is not None else self._attempt
        return {"run": self.run, "last_epoch": self.last_epoch, "_step_count": self._step_count,
                "base_lrs": self.base_lrs, "_last_lr": self._last_lr, "attempt": attempt}  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume at the saved step k: the next `step()` asks the run for step k + 1.

        If the run has served steps past k, with `resume="rewind"` (the default) this starts a
        new attempt of the run at k, or joins the one another rank of the job started, as torch
        restores a `ReduceLROnPlateau` to its state at k (see `_resume_at`); with
        `resume="replay"` the job follows the attempt the run is in, whose LRs past k are fixed.
        """
        if state_dict.get("run", self.run) != self.run:
            raise ValueError(f"this state is of run {state_dict['run']!r}, not {self.run!r}")
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self._step_count))
        self.base_lrs = list(state_dict.get("base_lrs", self.base_lrs))
        self._last_lr = list(state_dict.get("_last_lr", self._last_lr))
        saved = state_dict.get("attempt")
        self.feed.forget(at=self.last_epoch)
        self._attempt = None
        self._replaying_from = None
        if self.resume == "replay":
            self._replaying_from = self.last_epoch
            return
        attempt = self._resume_at(self.last_epoch, saved if isinstance(saved, int) else None)
        self.feed.attempt = self._attempt = attempt

    def _resume_at(self, k: int, saved: int | None) -> int | None:
        """The attempt to go on from step k in, for a checkpoint taken in attempt `saved` (None:
        a checkpoint of an older lrtower, which did not record it); None: the newest.

        Nothing served past k: the newest attempt, as it is. Otherwise a new attempt at k, made
        under the Idempotency-Key "resume-{saved}-{k}": every rank of the job that loads this
        checkpoint sends the same request, the first one makes the attempt and the others get
        its answer. A rank that reads the run after another one's rewind, or after an operator's
        rewind to k itself, finds the newest attempt started at k, after the checkpoint's, and
        joins it.
        """
        launch = _launch()
        try:
            run = self.client.get_run(self.run)
            if k >= run.high_water:
                return None
            # A launch of its own: every rank of it sends the same key, so the first makes the
            # attempt and the others get its answer, and a later launch from the same checkpoint
            # (the job crashed again before its next one) makes an attempt of its own. Without
            # one, the ranks that read the run after another's rewind join the attempt started
            # at k; an older checkpoint takes the run's attempt now, the same for every rank that
            # reads it before the first rewind.
            if (launch is None or saved is None) and _started_at(run, k, saved):
                return None
            attempt = run.attempt if saved is None else saved
            rewound = self.client.rewind(
                self.run,
                k,
                reason=f"resumed from the checkpoint of step {k} of attempt {attempt}",
                idempotency_key=f"resume-{attempt}-{k}"
                + (f"-{launch}" if launch and saved is not None else ""),
            )
        except Conflict as exc:
            if exc.high_water is not None and exc.high_water <= k:
                return None  # a rewind below k came in meanwhile: nothing is served past k now
            raise
        except LrtowerError as exc:
            if self.strict or (isinstance(exc, APIError) and not isinstance(exc, ServerError)):
                raise
            log.warning(
                "lrtower: run %r: cannot start a new attempt at the checkpoint's step %d (%s); the job "
                'resumes as with resume="replay": the steps served after it keep their LRs, and a '
                "metric posted for them with another value gets a 409",
                self.run,
                k,
                exc,
            )
            return None
        log.info(
            "lrtower: run %r resumes from step %d in attempt %d (steps %d to %d of attempt %d are discarded)",
            self.run,
            k,
            rewound.attempt,
            k + 1,
            rewound.discarded_to,
            rewound.attempt - 1,
        )
        return rewound.attempt


def _started_at(run: Run, k: int, saved: int | None) -> bool:
    """Whether the run's newest attempt was started at step k after attempt `saved` (any, if
    None): the attempt a job resuming from its checkpoint at k goes on in."""
    if not run.attempts or run.attempt == saved:
        return False
    newest = max(run.attempts, key=lambda a: a.number)
    return (
        newest.number == run.attempt and newest.rewound_to == k and (saved is None or newest.number > saved)
    )


def _launch() -> str | None:
    """What every rank of this launch of the job shares, and no other launch does: lrtower's
    `LRTOWER_LAUNCH_ID` if set, else torchrun's run id and restart count, else, in a process that
    is the job's only one, an id of its own; None where ranks share nothing lrtower can see."""
    shared = os.environ.get("LRTOWER_LAUNCH_ID") or (
        f"{os.environ['TORCHELASTIC_RUN_ID']}.{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        if os.environ.get("TORCHELASTIC_RUN_ID")
        else None
    )
    if shared:  # any text: a digest of it fits an Idempotency-Key
        return hashlib.sha256(shared.encode()).hexdigest()[:16]
    alone = os.environ.get("WORLD_SIZE", "1") == "1" and not (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )
    return _PROCESS_LAUNCH if alone else None


_PROCESS_LAUNCH = uuid.uuid4().hex[:16]
"""The launch id of a job that is one process."""


def _close(feed: LRFeed, client: Client) -> None:
    feed.close()
    client.close()


def _rank() -> int | None:
    """This process's rank: torch.distributed's once initialized, else the launcher's `RANK`."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    rank = os.environ.get("RANK", "")
    return int(rank) if rank.isdigit() else None


def _copy(lr: float | torch.Tensor) -> float | torch.Tensor:
    return lr.clone() if isinstance(lr, torch.Tensor) else lr


def _set(group: dict[str, Any], key: str, value: float) -> None:
    current = group[key]
    if isinstance(current, torch.Tensor):
        current.fill_(value)  # a tensor LR (capturable or fused optimizers) stays the same tensor
    else:
        group[key] = value
