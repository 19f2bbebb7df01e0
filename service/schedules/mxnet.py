"""MXNet schedulers (`mxnet.<Scheduler class>`): `mxnet.lr_scheduler`'s parameters and numbers.

A spec names a class of `mxnet.lr_scheduler` and passes it that class's constructor arguments,
for example `{"type": "mxnet.CosineScheduler", "max_update": 10000, "base_lr": 0.1,
"warmup_steps": 500}`. The step is the `num_update` argument of the scheduler's `__call__`.

MXNet's schedulers are objects with state: FactorScheduler and MultiFactorScheduler multiply
their `base_lr` in place as calls come in, and PolyScheduler and CosineScheduler keep the last
value they computed. LR(step) here is, by definition, what the scheduler returns when it is
called with num_update = 0, 1, ..., step in that order (as a training loop does); each class
below states the closed form that equals it.

Every class takes MXNet's warmup: for step < warmup_steps the value is warmup_begin_lr +
(base_lr - warmup_begin_lr) * step / warmup_steps (`warmup_mode="linear"`) or warmup_begin_lr
(`"constant"`), and the scheduler's state does not move during the warmup.

The schedules carry absolute values (`base_lr`): the run's base LRs are optional, and with
several param groups group i gets `value * lrs[i] / lrs[0]`.

Refused, with MXNet's own rules: warmup_begin_lr above base_lr, a negative warmup_steps, a factor
above 1, a step below 1, MultiFactorScheduler steps that do not increase, max_update below 1.
Refused beyond MXNet's rules: negative LRs and factors (a negative LR), a negative power (MXNet
divides by zero at max_update), and warmup_steps >= max_update in PolyScheduler and
CosineScheduler (MXNet divides by zero at the end of the warmup when they are equal, and never
decays when the warmup is longer).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from .base import AbsoluteSpec, Fraction, NonNegative, PositiveSteps, SpecModel, Steps, ValueFn

WarmupMode = Literal["linear", "constant"]
MAX_ITEMS = 10_000
"""The most steps one MultiFactorScheduler may list."""
EXACT_DECAYS = 1 << 14
"""How many of FactorScheduler's in-place multiplications are replayed exactly (at build)."""


class MxnetSpec(AbsoluteSpec):
    """Base of the MXNet specs: MXNet's warmup, and one value function scaled per param group.

    Each class declares its own fields, so that they validate in MXNet's argument order.
    """

    if TYPE_CHECKING:
        base_lr: float
        warmup_steps: int
        warmup_begin_lr: float
        warmup_mode: WarmupMode

    @field_validator("warmup_begin_lr", check_fields=False)
    @classmethod
    def _below_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("base_lr")
        if base is not None and value > base:
            raise ValueError(f"must not exceed base_lr ({base!r}), as in MXNet; got {value!r}")
        return value

    def decayed(self) -> ValueFn:
        """The value from warmup_steps on."""
        raise NotImplementedError

    def compile(self) -> ValueFn:
        after = self.decayed()
        warmup, begin, final = self.warmup_steps, self.warmup_begin_lr, self.base_lr
        if warmup == 0:
            return after
        if self.warmup_mode == "constant":
            return lambda step: begin if step < warmup else after(step)
        rise = final - begin

        def value(step: int) -> float:
            if step < warmup:
                return begin + rise * float(step) / float(warmup)
            return after(step)

        return value


class FactorScheduler(MxnetSpec):
    """`mxnet.lr_scheduler.FactorScheduler`: multiply by factor every `step` updates.

    MXNet multiplies its `base_lr` by factor each time num_update passes another multiple of
    `step` (while num_update > count + step), and clamps it to stop_factor_lr when it drops
    below. After the calls 0, 1, ..., t (t >= warmup_steps) that has happened
    k = max(0, (t - 1) // step) times, so value(t) = lr_k with lr_0 = base_lr and
    lr_j = lr_{j-1} * factor, set to stop_factor_lr when below it. The first decay is at
    t = step + 1: MXNet compares with `>`.

    The lr_j are the products MXNet forms one multiplication at a time; lrtower replays the
    first 16384 of them at build and then, once the value is fixed (clamped, or the factor is 1),
    every later one is equal. A schedule still falling after 16384 decays continues as
    lr_16384 * factor ** (k - 16384), within (k - 16384) * 1.1e-16 relative of MXNet's product.

    Args:
        step: updates between decays (>= 1).
        factor: the factor per decay (0 <= factor <= 1).
        stop_factor_lr: the floor the decays stop at.
        base_lr: the value before the first decay.
        warmup_steps, warmup_begin_lr, warmup_mode: MXNet's warmup (see the module).

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "mxnet.FactorScheduler", "step": 10, "factor": 0.5,
    ...     "stop_factor_lr": 0.1, "base_lr": 1.0}, None)
    >>> [s.lrs(t)[0] for t in (0, 10, 11, 20, 21, 31, 41, 10**12)]
    [1.0, 1.0, 0.5, 0.5, 0.25, 0.125, 0.1, 0.1]
    """

    type: Literal["mxnet.FactorScheduler"] = "mxnet.FactorScheduler"
    step: PositiveSteps
    factor: Fraction = 1.0
    stop_factor_lr: float = 1e-8
    base_lr: NonNegative = 0.01
    warmup_steps: Steps = 0
    warmup_begin_lr: NonNegative = 0.0
    warmup_mode: WarmupMode = "linear"

    def decayed(self) -> ValueFn:
        every, factor, stop = self.step, self.factor, self.stop_factor_lr
        lrs = array("d", [self.base_lr])
        settled = False
        while len(lrs) <= EXACT_DECAYS:
            lr = lrs[-1] * factor
            if lr < stop:
                lr = stop
            if lr == lrs[-1]:
                settled = True
                break
            lrs.append(lr)
        last = len(lrs) - 1

        def value(step: int) -> float:
            k = max(0, (step - 1) // every)
            if k <= last:
                return lrs[k]
            if settled:
                return lrs[last]
            lr = lrs[last] * math.pow(factor, k - last)
            return stop if lr < stop else lr

        return value


class MultiFactorScheduler(MxnetSpec):
    """`mxnet.lr_scheduler.MultiFactorScheduler`: multiply by factor after each listed step.

    value(t) = base_lr * factor * ... * factor (k times, multiplied one at a time as MXNet
    does) where k = the number of listed steps s with s < t: the decay at s applies from
    t = s + 1 on, as MXNet compares num_update > s.

    Args:
        step: the updates after which to decay: increasing, each >= 1.
        factor: the factor per decay (0 <= factor <= 1).
        base_lr: the value before the first decay.
        warmup_steps, warmup_begin_lr, warmup_mode: MXNet's warmup (see the module).

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "mxnet.MultiFactorScheduler", "step": [5, 8], "factor": 0.1,
    ...     "base_lr": 1.0}, None)
    >>> [s.lrs(t)[0] for t in (0, 5, 6, 8, 9)]
    [1.0, 1.0, 0.1, 0.1, 0.010000000000000002]
    """

    type: Literal["mxnet.MultiFactorScheduler"] = "mxnet.MultiFactorScheduler"
    step: Annotated[list[PositiveSteps], Field(min_length=1, max_length=MAX_ITEMS)]
    factor: Fraction = 1.0
    base_lr: NonNegative = 0.01
    warmup_steps: Steps = 0
    warmup_begin_lr: NonNegative = 0.0
    warmup_mode: WarmupMode = "linear"

    @field_validator("step")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        for i in range(1, len(value)):
            if value[i] <= value[i - 1]:
                raise ValueError(
                    f"must be an increasing list, as in MXNet, but step[{i}] = {value[i]} follows {value[i - 1]}"
                )
        return value

    def decayed(self) -> ValueFn:
        steps = tuple(self.step)
        lrs = [self.base_lr]
        for _ in steps:
            lrs.append(lrs[-1] * self.factor)
        return lambda t: lrs[bisect_left(steps, t)]


class _Annealed(MxnetSpec):
    """PolyScheduler and CosineScheduler: a decay over max_update - warmup_steps updates."""

    @field_validator("warmup_steps", check_fields=False)
    @classmethod
    def _before_end(cls, value: int, info: ValidationInfo) -> int:
        end = info.data.get("max_update")
        if end is not None and value >= end:
            raise ValueError(
                f"must be below max_update ({end}): the decay lasts max_update - warmup_steps updates;"
                f" got {value}"
            )
        return value


class PolyScheduler(_Annealed):
    """`mxnet.lr_scheduler.PolyScheduler`: polynomial decay to final_lr at max_update.

    value(t) = final_lr + (base_lr - final_lr) * (1 - (c - W) / (max_update - W)) ** pwr with
    c = min(t, max_update) and W = warmup_steps: MXNet keeps the value of max_update after it.

    Args:
        max_update: the update at which the decay reaches final_lr (>= 1).
        base_lr: the value when the decay starts.
        pwr: the polynomial's power (>= 0).
        final_lr: the value from max_update on.
        warmup_steps, warmup_begin_lr, warmup_mode: MXNet's warmup (see the module).

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "mxnet.PolyScheduler", "max_update": 10, "base_lr": 1.0,
    ...     "pwr": 2, "final_lr": 0.0}, None)
    >>> [round(s.lrs(t)[0], 6) for t in (0, 5, 9, 10, 11)]
    [1.0, 0.25, 0.01, 0.0, 0.0]
    """

    type: Literal["mxnet.PolyScheduler"] = "mxnet.PolyScheduler"
    max_update: PositiveSteps
    base_lr: NonNegative = 0.01
    pwr: NonNegative = 2.0
    final_lr: NonNegative = 0.0
    warmup_steps: Steps = 0
    warmup_begin_lr: NonNegative = 0.0
    warmup_mode: WarmupMode = "linear"

    def decayed(self) -> ValueFn:
        end, warmup, final, power = self.max_update, self.warmup_steps, self.final_lr, self.pwr
        span = self.base_lr - final
        steps = float(end - warmup)

        def value(step: int) -> float:
            t = min(step, end)
            return final + span * math.pow(1 - float(t - warmup) / steps, power)

        return value


class CosineScheduler(_Annealed):
    """`mxnet.lr_scheduler.CosineScheduler`: cosine decay to final_lr at max_update.

    value(t) = final_lr + (base_lr - final_lr) * (1 + cos(pi * (c - W) / (max_update - W))) / 2
    with c = min(t, max_update) and W = warmup_steps: MXNet keeps the value of max_update after it.

    Args:
        max_update: the update at which the decay reaches final_lr (>= 1).
        base_lr: the value when the decay starts.
        final_lr: the value from max_update on.
        warmup_steps, warmup_begin_lr, warmup_mode: MXNet's warmup (see the module).

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "mxnet.CosineScheduler", "max_update": 110, "base_lr": 1.0,
    ...     "final_lr": 0.1, "warmup_steps": 10}, None)
    >>> [round(s.lrs(t)[0], 6) for t in (0, 5, 10, 60, 110, 10**9)]
    [0.0, 0.5, 1.0, 0.55, 0.1, 0.1]
    """

    type: Literal["mxnet.CosineScheduler"] = "mxnet.CosineScheduler"
    max_update: PositiveSteps
    base_lr: NonNegative = 0.01
    final_lr: NonNegative = 0.0
    warmup_steps: Steps = 0
    warmup_begin_lr: NonNegative = 0.0
    warmup_mode: WarmupMode = "linear"

    def decayed(self) -> ValueFn:
        end, warmup, final = self.max_update, self.warmup_steps, self.final_lr
        span = self.base_lr - final
        steps = end - warmup

        def value(step: int) -> float:
            t = min(step, end)
            return final + span * (1 + math.cos(math.pi * (t - warmup) / steps)) / 2

        return value


SPECS: tuple[type[SpecModel], ...] = (FactorScheduler, MultiFactorScheduler, PolyScheduler, CosineScheduler)
