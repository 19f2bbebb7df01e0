"""ReduceLROnPlateau as explicit state: a config, an immutable state, a pure `update`.

The whole state (best value, bad-epoch count, cooldown counter, one reduction factor per
group) is a record that the service persists, so a restart resumes exactly where it was.
Torch's rules are kept to the letter: `patience + 1` bad metrics trigger a reduction, the
cooldown counts down first and wipes the bad count while it runs, and a group is reduced only
when its LR would drop by more than `eps`.

A plateau factor multiplies the schedule rather than replacing it:
LR(s) = max(schedule(s) * f, min(schedule(s), min_lr)). So a reduction never pushes the LR
below `min_lr`, never lifts a schedule that is itself below `min_lr` (a warmup from 0 still
starts at 0), and with a constant schedule it gives exactly torch's sequence.

>>> config = PlateauConfig(patience=1, factor=0.5)
>>> state = initial_state(config, n_groups=1)
>>> for loss in [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]:
...     state, reduced = update(config, state, loss, lrs=apply(config, state, [0.1]))
...     print(loss, reduced, apply(config, state, [0.1]))
1.0 False [0.1]
1.0 False [0.1]
1.0 True [0.05]
0.5 False [0.05]
0.5 False [0.05]
0.5 True [0.025]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Literal

from pydantic import Field

from .base import NonNegative, SpecError, SpecModel, WholeNumber

MetricName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]
COUNT_MAX = 2**31 - 1
"""The largest patience or cooldown: the service persists the counters that count up to them
(bad epochs, cooldown left) as 32-bit integers, which is what both its databases store there."""
Count = Annotated[int, Field(ge=0, le=COUNT_MAX), WholeNumber]


class PlateauConfig(SpecModel):
    """torch.optim.lr_scheduler.ReduceLROnPlateau's parameters and defaults, plus the metric watched."""

    metric: MetricName = "loss"
    mode: Literal["min", "max"] = "min"
    factor: Annotated[float, Field(ge=0, lt=1)] = 0.1
    patience: Count = 10
    threshold: NonNegative = 1e-4
    threshold_mode: Literal["rel", "abs"] = "rel"
    cooldown: Count = 0
    min_lr: NonNegative | Annotated[list[NonNegative], Field(min_length=1)] = 0.0
    eps: NonNegative = 1e-8

    def min_lrs(self, n_groups: int) -> tuple[float, ...]:
        if isinstance(self.min_lr, float | int):
            return (float(self.min_lr),) * n_groups
        if len(self.min_lr) != n_groups:
            raise SpecError.at(
                ("min_lr",), f"expected {n_groups} min_lrs, got {len(self.min_lr)}", self.min_lr
            )
        return tuple(self.min_lr)

    def is_better(self, value: float, best: float) -> bool:
        if self.mode == "min":
            return value < (
                best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold
            )
        return value > (
            best * (self.threshold + 1.0) if self.threshold_mode == "rel" else best + self.threshold
        )


@dataclass(frozen=True)
class PlateauState:
    """Everything ReduceLROnPlateau remembers between metrics."""

    best: float
    num_bad_epochs: int
    cooldown_counter: int
    factors: tuple[float, ...]
    """The reduction factor of every group, multiplying the schedule."""
    reductions: int = 0


def initial_state(config: PlateauConfig, n_groups: int) -> PlateauState:
    config.min_lrs(n_groups)  # refuse a min_lr list of the wrong length now, not at the first reduction
    worst = math.inf if config.mode == "min" else -math.inf
    return PlateauState(best=worst, num_bad_epochs=0, cooldown_counter=0, factors=(1.0,) * n_groups)


def apply(config: PlateauConfig, state: PlateauState, schedule_lrs: Sequence[float]) -> list[float]:
    """The served LRs: the schedule's, reduced by the plateau factors, floored at min_lr."""
    return reduce_by_plateau(schedule_lrs, state.factors, config.min_lrs(len(schedule_lrs)))


def reduce_by_plateau(
    schedule_lrs: Sequence[float], factors: Sequence[float], floors: Sequence[float]
) -> list[float]:
    """max(lr * f, min(lr, min_lr)) for every group: never below min_lr, never above the schedule."""
    return [
        lr if f == 1.0 else max(lr * f, min(lr, floor))
        for lr, f, floor in zip(schedule_lrs, factors, floors, strict=True)
    ]


def update(
    config: PlateauConfig, state: PlateauState, value: float, lrs: Sequence[float]
) -> tuple[PlateauState, bool]:
    """One `scheduler.step(value)`. `lrs` are the LRs served where the metric takes effect.

    Returns the new state, and whether any group was reduced.
    """
    best, bad = state.best, state.num_bad_epochs
    if config.is_better(value, best):
        best, bad = value, 0
    else:
        bad += 1
    cooldown = state.cooldown_counter
    if cooldown > 0:
        cooldown -= 1
        bad = 0
    if bad <= config.patience:
        return replace(state, best=best, num_bad_epochs=bad, cooldown_counter=cooldown), False
    factors = list(state.factors)
    reduced = False
    for i, (lr, floor) in enumerate(zip(lrs, config.min_lrs(len(lrs)), strict=True)):
        if lr - max(lr * config.factor, floor) > config.eps:
            factors[i] *= config.factor
            reduced = True
    return (
        PlateauState(
            best=best,
            num_bad_epochs=0,
            cooldown_counter=config.cooldown,
            factors=tuple(factors),
            reductions=state.reductions + reduced,
        ),
        reduced,
    )
