"""Keras 3 schedules (`keras.<LearningRateSchedule class>`): Keras' parameters and numbers.

A spec names a class of `keras.optimizers.schedules` and passes it that class's constructor
arguments, for example `{"type": "keras.CosineDecay", "initial_learning_rate": 0.0,
"decay_steps": 10000, "warmup_target": 1e-3, "warmup_steps": 500}`. The step is the `step`
argument of the schedule's `__call__` (the optimizer's `iterations`, which starts at 0).

Keras' conventions are kept exactly:

- `PiecewiseConstantDecay` switches *after* a boundary: values[0] while step <= boundaries[0],
  values[1] from boundaries[0] + 1 on (optax switches at step >= boundary);
- every formula is evaluated in double precision in Keras' own operation order, which is what
  Keras computes for a float64 `initial_learning_rate` on its TensorFlow backend. (On the jax,
  torch and numpy backends Keras rounds `cos`, `floor` and `ceil` to float32 even in float64:
  see docs for how far that moves CosineDecay, CosineDecayRestarts and the staircase/cycle
  variants.)

The schedules carry absolute values (`initial_learning_rate`): the run's base LRs are optional,
and with several param groups group i gets `value * lrs[i] / lrs[0]`. The `name` argument is
left out: it only names Keras' graph scope.

Refused, although Keras accepts them: negative values and rates (a negative or NaN LR),
negative powers (an infinite LR at the end of the decay), PiecewiseConstantDecay boundaries
that are not strictly increasing (Keras requires it in its docs but would add values up), and
non-integer boundaries (Keras casts them to the step's integer type).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from .base import AbsoluteSpec, DomainError, NonNegative, Positive, SignedSteps, SpecModel, ValueFn
from .ieee import ceil, cos, floor, ieee_pow

MAX_ITEMS = 10_000
"""The most boundaries one PiecewiseConstantDecay may list."""
KERAS_COST = 1.25
"""A Keras formula's cost per step (see `Schedule.cost`); CosineDecayRestarts costs more."""
RESTARTS_COST = 1.75
"""CosineDecayRestarts' cost per step: it finds its cycle with a logarithm first."""


class KerasSpec(AbsoluteSpec):
    """Base of the Keras specs: `compile` gives the schedule as Keras computes it, step -> value."""

    def value_cost(self) -> float:
        return KERAS_COST


class _TimeDecay(KerasSpec):
    """ExponentialDecay and InverseTimeDecay: the same arguments, and a decay of p = step /
    decay_steps (floored when staircase)."""

    initial_learning_rate: NonNegative
    decay_steps: Positive
    decay_rate: NonNegative
    staircase: bool = False

    @staticmethod
    def decayed(lr: float, rate: float, p: float) -> float:
        """The value at p, in Keras' operation order."""
        raise NotImplementedError

    def compile(self) -> ValueFn:
        lr, steps, rate, staircase = (
            self.initial_learning_rate,
            self.decay_steps,
            self.decay_rate,
            self.staircase,
        )
        decayed = self.decayed

        def value(step: int) -> float:
            p = float(step) / steps
            if staircase:
                p = floor(p)
            return decayed(lr, rate, p)

        return value


class ExponentialDecay(_TimeDecay):
    """`keras.optimizers.schedules.ExponentialDecay`.

    value(t) = initial_learning_rate * decay_rate ** p with p = t / decay_steps, floored when
    staircase.

    Args:
        initial_learning_rate: the value at step 0.
        decay_steps: steps per factor decay_rate (> 0).
        decay_rate: the factor per decay_steps (>= 0; above 1 it grows, and lrtower answers a
            domain error at a step where the value overflows).
        staircase: decay at whole multiples of decay_steps only.

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "keras.ExponentialDecay", "initial_learning_rate": 1.0,
    ...     "decay_steps": 10, "decay_rate": 0.5, "staircase": True}, None)
    >>> [s.lrs(t)[0] for t in (0, 9, 10, 25)]
    [1.0, 1.0, 0.5, 0.25]
    """

    type: Literal["keras.ExponentialDecay"] = "keras.ExponentialDecay"

    @staticmethod
    def decayed(lr: float, rate: float, p: float) -> float:
        return lr * ieee_pow(rate, p)


class PiecewiseConstantDecay(KerasSpec):
    """`keras.optimizers.schedules.PiecewiseConstantDecay`.

    value(t) = values[0] for t <= boundaries[0], values[i] for boundaries[i-1] < t <=
    boundaries[i], values[-1] for t > boundaries[-1]: Keras switches *after* each boundary.

    Args:
        boundaries: integer steps, strictly increasing, at least one.
        values: one more than boundaries, each >= 0.

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "keras.PiecewiseConstantDecay", "boundaries": [100, 110],
    ...     "values": [1.0, 0.5, 0.1]}, None)
    >>> [s.lrs(t)[0] for t in (0, 100, 101, 110, 111)]
    [1.0, 1.0, 0.5, 0.5, 0.1]
    """

    type: Literal["keras.PiecewiseConstantDecay"] = "keras.PiecewiseConstantDecay"
    boundaries: Annotated[list[SignedSteps], Field(min_length=1, max_length=MAX_ITEMS)]
    values: Annotated[list[NonNegative], Field(min_length=2, max_length=MAX_ITEMS + 1)]

    @field_validator("boundaries")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        for i in range(1, len(value)):
            if value[i] <= value[i - 1]:
                raise ValueError(
                    f"must be strictly increasing, but boundaries[{i}] = {value[i]} follows {value[i - 1]}"
                )
        return value

    @field_validator("values")
    @classmethod
    def _one_more(cls, value: list[float], info: ValidationInfo) -> list[float]:
        boundaries = info.data.get("boundaries")
        if boundaries is not None and len(value) != len(boundaries) + 1:
            raise ValueError(
                f"expected {len(boundaries) + 1} values (one more than boundaries), got {len(value)}: {value}"
            )
        return value

    def compile(self) -> ValueFn:
        boundaries, values = tuple(self.boundaries), tuple(self.values)
        return lambda step: values[bisect_left(boundaries, step)]


class PolynomialDecay(KerasSpec):
    """`keras.optimizers.schedules.PolynomialDecay`.

    value(t) = (initial_learning_rate - end_learning_rate) * (1 - c / D) ** power +
    end_learning_rate with c = min(t, decay_steps) and D = decay_steps; with cycle,
    c = t and D = decay_steps * ceil(t / decay_steps) (decay_steps at t = 0), so the decay
    restarts from initial_learning_rate after every multiple of decay_steps.

    Args:
        initial_learning_rate: the value at step 0.
        decay_steps: length of the decay (> 0).
        end_learning_rate: the value at the end of the decay.
        power: the polynomial's power (>= 0).
        cycle: restart the decay after each multiple of decay_steps.

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "keras.PolynomialDecay", "initial_learning_rate": 0.1,
    ...     "decay_steps": 10, "end_learning_rate": 0.0, "power": 1.0, "cycle": True}, None)
    >>> [round(s.lrs(t)[0], 6) for t in (0, 5, 10, 11, 15, 20)]
    [0.1, 0.05, 0.0, 0.045, 0.025, 0.0]
    """

    type: Literal["keras.PolynomialDecay"] = "keras.PolynomialDecay"
    initial_learning_rate: NonNegative
    decay_steps: Positive
    end_learning_rate: NonNegative = 0.0001
    power: NonNegative = 1.0
    cycle: bool = False

    def compile(self) -> ValueFn:
        lr, end, power, steps = (
            self.initial_learning_rate,
            self.end_learning_rate,
            self.power,
            self.decay_steps,
        )
        span = lr - end

        if self.cycle:

            def value(step: int) -> float:
                t = float(step)
                multiplier = 1.0 if t == 0 else ceil(t / steps)
                p = t / (steps * multiplier)
                return span * ieee_pow(1 - p, power) + end

            return value

        def capped(step: int) -> float:
            p = min(float(step), steps) / steps
            return span * ieee_pow(1 - p, power) + end

        return capped


class InverseTimeDecay(_TimeDecay):
    """`keras.optimizers.schedules.InverseTimeDecay`.

    value(t) = initial_learning_rate / (1 + decay_rate * p) with p = t / decay_steps, floored
    when staircase.

    Args:
        initial_learning_rate: the value at step 0.
        decay_steps: how often to apply decay (> 0).
        decay_rate: the decay rate (>= 0).
        staircase: decay at whole multiples of decay_steps only.

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "keras.InverseTimeDecay", "initial_learning_rate": 0.1,
    ...     "decay_steps": 1.0, "decay_rate": 0.5}, None)
    >>> [s.lrs(t)[0] for t in (0, 1, 2, 6)]
    [0.1, 0.06666666666666667, 0.05, 0.025]
    """

    type: Literal["keras.InverseTimeDecay"] = "keras.InverseTimeDecay"

    @staticmethod
    def decayed(lr: float, rate: float, p: float) -> float:
        return lr / (1.0 + rate * p)


class CosineDecay(KerasSpec):
    """`keras.optimizers.schedules.CosineDecay`, with its optional linear warmup.

    Without warmup_target: value(t) = I * ((1 - alpha) * 0.5 * (1 + cos(pi * c / D)) + alpha)
    with c = min(t, D), I = initial_learning_rate, D = decay_steps.

    With warmup_target W and warmup_steps S: c = min(t, D + S); for c < S the value is
    (W - I) * (c / S) + I, else W * ((1 - alpha) * 0.5 * (1 + cos(pi * (c - S) / D)) + alpha).

    Args:
        initial_learning_rate: the value at step 0.
        decay_steps: length of the decay (> 0), after the warmup.
        alpha: the final value as a fraction of the decay's start (>= 0).
        warmup_target: the value the warmup reaches; none: no warmup.
        warmup_steps: length of the warmup (used only with warmup_target).

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "keras.CosineDecay", "initial_learning_rate": 0.0,
    ...     "decay_steps": 100, "alpha": 0.1, "warmup_target": 1.0, "warmup_steps": 10}, None)
    >>> [round(s.lrs(t)[0], 6) for t in (0, 5, 10, 60, 110, 10**9)]
    [0.0, 0.5, 1.0, 0.55, 0.1, 0.1]
    """

    type: Literal["keras.CosineDecay"] = "keras.CosineDecay"
    initial_learning_rate: NonNegative
    decay_steps: Positive
    alpha: NonNegative = 0.0
    warmup_target: NonNegative | None = None
    warmup_steps: NonNegative = 0.0

    def compile(self) -> ValueFn:
        lr, steps, alpha, target, warmup = (
            self.initial_learning_rate,
            self.decay_steps,
            self.alpha,
            self.warmup_target,
            float(self.warmup_steps),
        )

        def decay(t: float, start: float) -> float:
            cosine = 0.5 * (1.0 + math.cos(math.pi * (t / steps)))
            return start * ((1 - alpha) * cosine + alpha)

        if target is None:
            return lambda step: decay(min(float(step), steps), lr)

        last = steps + warmup
        delta = target - lr

        def value(step: int) -> float:
            t = min(float(step), last)
            if t < warmup:
                return delta * (t / warmup) + lr
            return decay(t - warmup, target)

        return value


class CosineDecayRestarts(KerasSpec):
    """`keras.optimizers.schedules.CosineDecayRestarts` (SGDR).

    With f = t / first_decay_steps: for t_mul = 1, i = floor(f) and r = f - i; otherwise
    i = floor(log(1 - f * (1 - t_mul)) / log(t_mul)) and r = (f - (1 - t_mul ** i) / (1 - t_mul))
    / t_mul ** i. Then value(t) = I * ((1 - alpha) * 0.5 * m_mul ** i * (1 + cos(pi * r)) + alpha)
    with I = initial_learning_rate: cycle i lasts first_decay_steps * t_mul ** i steps and starts
    from m_mul ** i times the first cycle's value.

    Args:
        initial_learning_rate: the value at step 0.
        first_decay_steps: length of the first cycle (> 0).
        t_mul: factor on each cycle's length (> 0). Below 1 the cycles shrink and end for good
            after first_decay_steps / (1 - t_mul) steps; later steps get a domain error (Keras
            answers NaN).
        m_mul: factor on each cycle's starting value (>= 0).
        alpha: the value at the end of each cycle, as a fraction of initial_learning_rate.

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "keras.CosineDecayRestarts", "initial_learning_rate": 1.0,
    ...     "first_decay_steps": 10, "m_mul": 0.5}, None)
    >>> [round(s.lrs(t)[0], 6) for t in (0, 5, 10, 20, 30, 70)]
    [1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    """

    type: Literal["keras.CosineDecayRestarts"] = "keras.CosineDecayRestarts"
    initial_learning_rate: NonNegative
    first_decay_steps: Positive
    t_mul: Positive = 2.0
    m_mul: NonNegative = 1.0
    alpha: NonNegative = 0.0

    def value_cost(self) -> float:
        return RESTARTS_COST

    def compile(self) -> ValueFn:
        lr, first, t_mul, m_mul, alpha = (
            self.initial_learning_rate,
            self.first_decay_steps,
            self.t_mul,
            self.m_mul,
            self.alpha,
        )
        one_minus_t = 1.0 - t_mul
        log_t = math.log(t_mul)

        def value(step: int) -> float:
            fraction = float(step) / first
            if t_mul == 1.0:
                restart = floor(fraction)
                fraction -= restart
            else:
                inner = 1.0 - fraction * one_minus_t
                # math.log would raise here, and Schedule.at would answer a bare "math domain
                # error"; this says where the shrinking cycles end (tests rely on it).
                if not inner > 0.0:
                    raise DomainError(
                        step, f"the cycles (t_mul={t_mul!r}) end for good after {first / one_minus_t!r} steps"
                    )
                restart = floor(math.log(inner) / log_t)
                grown = ieee_pow(t_mul, restart)
                fraction = (fraction - (1.0 - grown) / one_minus_t) / grown
            cosine = 0.5 * ieee_pow(m_mul, restart) * (1.0 + cos(math.pi * fraction))
            return lr * ((1 - alpha) * cosine + alpha)

        return value


SPECS: tuple[type[SpecModel], ...] = (
    ExponentialDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
    InverseTimeDecay,
    CosineDecay,
    CosineDecayRestarts,
)
