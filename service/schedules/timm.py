"""timm's schedulers, `timm.<create_scheduler_v2 name>`: per-group LRs from the base LRs.

A timm scheduler is stateless: `scheduler.step(t)` (or `step_update(t)`) sets every param group's
LR to `_get_lr(t)`, computed from the group's base LR (its `initial_lr`). lrtower's step is that
`t`, so LR(t) is `_get_lr(t)`. Whether timm counts `t` in epochs or in updates (`t_in_epochs`)
only selects which of the two methods drives it, so the types here have no `t_in_epochs`.

Parameter names and defaults are those of the scheduler classes (`CosineLRScheduler`, ...).
`lr_min` and `warmup_lr_init` are absolute LRs shared by all groups: each group warms up from
`warmup_lr_init` to its own base LR and decays towards `lr_min`. Each formula repeats timm's
floating-point operations in their order, so the answers equal the library's. Where timm raises
(a cycle index past the end of shrinking cycles, a power that overflows) the step has no LR.

Left out: the LR noise (`noise_range_t`, `noise_pct`, `noise_std`, `noise_seed`), a param group's
`lr_scale`, and `plateau`, which follows a metric (lrtower's `plateau` config does that).

>>> from lrtower_server.schedules import build_schedule
>>> cosine = build_schedule(
...     {"type": "timm.cosine", "t_initial": 4, "warmup_t": 2, "warmup_lr_init": 0.01}, [0.1, 0.05]
... )
>>> for t in (0, 1, 2, 3, 4, 5):
...     print(t, [round(lr, 6) for lr in cosine.lrs(t)])
0 [0.01, 0.01]
1 [0.055, 0.03]
2 [0.05, 0.025]
3 [0.014645, 0.007322]
4 [0.0, 0.0]
5 [0.0, 0.0]
>>> step = build_schedule({"type": "timm.step", "decay_t": 3, "decay_rate": 0.5}, [1.0])
>>> [step.lrs(t)[0] for t in range(8)]
[1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from .base import (
    BuildContext,
    GroupSchedule,
    NonNegative,
    Positive,
    PositiveSteps,
    Schedule,
    SpecError,
    SpecModel,
    Steps,
)

GroupLRs = Callable[[int], list[float]]
"""timm's `_get_lr`: the step -> the LR of every param group."""
TIMM_COST = 2.0
"""A timm scheduler's cost per step and group (see `Schedule.cost`): the warmup test, the
cycle arithmetic and the formula."""


def _milestones(value: list[int]) -> list[int]:
    for i, (before, after) in enumerate(itertools.pairwise(value)):
        if after < before:
            raise ValueError(
                f"must be sorted (timm bisects them), got {after} after {before} at index {i + 1}"
            )
    return value


Milestones = Annotated[list[Steps], Field(max_length=10_000), AfterValidator(_milestones)]


class TimmSpec(SpecModel):
    """A timm scheduler: `build` compiles its `_get_lr` against the base LRs.

    Where timm raises, or computes a complex LR (a fractional power of a negative number),
    `Schedule.at` answers DomainError.
    """

    def get_lr(self, bases: tuple[float, ...]) -> GroupLRs:
        raise NotImplementedError

    def build(self, ctx: BuildContext) -> Schedule:
        bases = ctx.require_base_lrs()
        return GroupSchedule(self.get_lr(bases), len(bases), TIMM_COST)


def _with_warmup(
    bases: tuple[float, ...],
    warmup_t: int,
    warmup_lr_init: float,
    warmup_prefix: bool,
    main: GroupLRs,
    warmup_targets: tuple[float, ...] | None = None,
) -> GroupLRs:
    """timm's shared warmup: `warmup_lr_init + t * (target - warmup_lr_init) / warmup_t` for t < warmup_t.

    After the warmup, `main` gets `t - warmup_t` with `warmup_prefix`, else `t`.
    """
    targets = bases if warmup_targets is None else warmup_targets
    increments = [(v - warmup_lr_init) / warmup_t for v in targets] if warmup_t else [1.0 for _ in bases]

    def get_lr(t: int) -> list[float]:
        if t < warmup_t:
            return [warmup_lr_init + t * s for s in increments]
        if warmup_prefix:
            t = t - warmup_t
        return main(t)

    return get_lr


class _Cycles:
    """The cycle arithmetic of timm's cosine, tanh and poly: t -> (cycle i, its length, t in it)."""

    def __init__(self, t_initial: int, cycle_mul: float) -> None:
        self.t_initial = t_initial
        self.cycle_mul = cycle_mul
        self.shrink = 1 - cycle_mul

    def locate(self, t: int) -> tuple[int, Any, Any]:
        t_initial, cycle_mul = self.t_initial, self.cycle_mul
        if cycle_mul != 1:
            arg = 1 - t / t_initial * self.shrink
            if not arg > 0:
                raise ValueError(
                    f"the cycle index log(1 - t / t_initial * (1 - cycle_mul), cycle_mul) is undefined: "
                    f"its argument is {arg!r}, past the end of the shrinking cycles"
                )
            i = math.floor(math.log(arg, cycle_mul))
            t_i = cycle_mul**i * t_initial
            t_curr = t - (1 - cycle_mul**i) / self.shrink * t_initial
            return i, t_i, t_curr
        i = t // t_initial
        return i, t_initial, t - (t_initial * i)


class Cosine(TimmSpec):
    """`CosineLRScheduler`: cosine decay with warmup, restarts (cycles) and k-decay.

    For t < warmup_t: warmup_lr_init + t * (base - warmup_lr_init) / warmup_t. Then, with
    t' = t - warmup_t if warmup_prefix else t, cycle i of length t_i = cycle_mul**i * t_initial
    and t_c = t' less the lengths of the earlier cycles:

        LR(t) = lr_min + 0.5 * (base * cycle_decay**i - lr_min) * (1 + cos(pi * t_c**k / t_i**k))

    while i < cycle_limit, and lr_min after. With cycle_mul == 1, i = t' // t_initial; otherwise
    i = floor(log(1 - t' / t_initial * (1 - cycle_mul), cycle_mul)), undefined (no LR) once
    shrinking cycles (cycle_mul < 1) are used up. Without warmup_prefix the warmup ends at the
    base LR and the cosine then resumes at its value at warmup_t.

    Args:
        t_initial: the length of the first cycle (>= 1).
        lr_min: the LR at the end of each cycle, and after the last one.
        cycle_mul: each cycle's length over the previous one's (> 0).
        cycle_decay: each cycle's peak over the previous one's.
        cycle_limit: the number of cycles.
        warmup_t: the steps of the linear warmup.
        warmup_lr_init: the LR of every group at step 0 of the warmup.
        warmup_prefix: whether the cycles start after the warmup (True) or at step 0 (False).
        k_decay: k, the exponent of k-decay (> 0; 1 is the plain cosine).
    """

    type: Literal["timm.cosine"] = "timm.cosine"
    t_initial: PositiveSteps
    lr_min: NonNegative = 0.0
    cycle_mul: Positive = 1.0
    cycle_decay: NonNegative = 1.0
    cycle_limit: Steps = 1
    warmup_t: Steps = 0
    warmup_lr_init: NonNegative = 0.0
    warmup_prefix: bool = False
    k_decay: Positive = 1.0

    def get_lr(self, bases: tuple[float, ...]) -> GroupLRs:
        cycles = _Cycles(self.t_initial, self.cycle_mul)
        lr_min, cycle_decay, cycle_limit, k = self.lr_min, self.cycle_decay, self.cycle_limit, self.k_decay

        def main(t: int) -> list[float]:
            i, t_i, t_curr = cycles.locate(t)
            gamma = cycle_decay**i
            lr_max_values = [v * gamma for v in bases]
            if i < cycle_limit:
                position = math.pi * t_curr**k / t_i**k
                return [
                    lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(position)) for lr_max in lr_max_values
                ]
            return [lr_min for _ in bases]

        return _with_warmup(bases, self.warmup_t, self.warmup_lr_init, self.warmup_prefix, main)


class Tanh(TimmSpec):
    """`TanhLRScheduler`: hyperbolic-tangent decay with warmup and restarts (cycles).

    For t < warmup_t: a linear warmup from warmup_lr_init. Then, with t', i, t_i and t_c as in
    `timm.cosine` and tr = t_c / t_i:

        LR(t) = lr_min + 0.5 * (base * cycle_decay**i - lr_min) * (1 - tanh(lb * (1 - tr) + ub * tr))

    while i < cycle_limit, and lr_min after. Without warmup_prefix the warmup ends at the tanh
    curve's value at warmup_t (timm evaluates it when the scheduler is built), so the LR is
    continuous there; with it, the warmup ends at the base LR.

    Args:
        t_initial: the length of the first cycle (>= 1).
        lb: the lower bound of the tanh argument (< ub).
        ub: the upper bound of the tanh argument.
        lr_min: the LR at the end of each cycle, and after the last one.
        cycle_mul: each cycle's length over the previous one's (> 0).
        cycle_decay: each cycle's peak over the previous one's.
        cycle_limit: the number of cycles.
        warmup_t: the steps of the linear warmup.
        warmup_lr_init: the LR of every group at step 0 of the warmup.
        warmup_prefix: whether the cycles start after the warmup (True) or at step 0 (False).
    """

    type: Literal["timm.tanh"] = "timm.tanh"
    t_initial: PositiveSteps
    lb: float = -7.0
    ub: float = 3.0
    lr_min: NonNegative = 0.0
    cycle_mul: Positive = 1.0
    cycle_decay: NonNegative = 1.0
    cycle_limit: Steps = 1
    warmup_t: Steps = 0
    warmup_lr_init: NonNegative = 0.0
    warmup_prefix: bool = False

    @field_validator("ub")
    @classmethod
    def _bounds_ordered(cls, value: float, info: ValidationInfo) -> float:
        lb = info.data.get("lb")
        if lb is not None and not lb < value:
            raise ValueError(f"must be > lb, got {value!r} <= {lb!r}")
        return value

    def get_lr(self, bases: tuple[float, ...]) -> GroupLRs:
        cycles = _Cycles(self.t_initial, self.cycle_mul)
        lr_min, cycle_decay, cycle_limit, lb, ub = (
            self.lr_min,
            self.cycle_decay,
            self.cycle_limit,
            self.lb,
            self.ub,
        )

        def main(t: int) -> list[float]:
            i, t_i, t_curr = cycles.locate(t)
            if i < cycle_limit:
                gamma = cycle_decay**i
                lr_max_values = [v * gamma for v in bases]
                tr = t_curr / t_i
                position = lb * (1.0 - tr) + ub * tr
                return [
                    lr_min + 0.5 * (lr_max - lr_min) * (1 - math.tanh(position)) for lr_max in lr_max_values
                ]
            return [lr_min for _ in bases]

        targets = None
        if self.warmup_t and not self.warmup_prefix:
            try:
                targets = tuple(main(self.warmup_t))
            except (ArithmeticError, ValueError) as exc:
                raise SpecError.at(
                    ("warmup_t",),
                    f"timm evaluates the schedule at warmup_t to end the warmup there: {exc}",
                    self.warmup_t,
                ) from None
        return _with_warmup(bases, self.warmup_t, self.warmup_lr_init, self.warmup_prefix, main, targets)


class Poly(TimmSpec):
    """`PolyLRScheduler`: polynomial decay with warmup, restarts (cycles) and k-decay.

    For t < warmup_t: a linear warmup from warmup_lr_init. Then, with t', i, t_i and t_c as in
    `timm.cosine`:

        LR(t) = lr_min + (base * cycle_decay**i - lr_min) * (1 - t_c**k / t_i**k) ** power

    while i < cycle_limit, and lr_min after.

    Args:
        t_initial: the length of the first cycle (>= 1).
        power: the power of the decay (>= 0).
        lr_min: the LR at the end of each cycle, and after the last one.
        cycle_mul: each cycle's length over the previous one's (> 0).
        cycle_decay: each cycle's peak over the previous one's.
        cycle_limit: the number of cycles.
        warmup_t: the steps of the linear warmup.
        warmup_lr_init: the LR of every group at step 0 of the warmup.
        warmup_prefix: whether the cycles start after the warmup (True) or at step 0 (False).
        k_decay: k, the exponent of k-decay (> 0).
    """

    type: Literal["timm.poly"] = "timm.poly"
    t_initial: PositiveSteps
    power: NonNegative = 0.5
    lr_min: NonNegative = 0.0
    cycle_mul: Positive = 1.0
    cycle_decay: NonNegative = 1.0
    cycle_limit: Steps = 1
    warmup_t: Steps = 0
    warmup_lr_init: NonNegative = 0.0
    warmup_prefix: bool = False
    k_decay: Positive = 1.0

    def get_lr(self, bases: tuple[float, ...]) -> GroupLRs:
        cycles = _Cycles(self.t_initial, self.cycle_mul)
        lr_min, cycle_decay, cycle_limit = self.lr_min, self.cycle_decay, self.cycle_limit
        k, power = self.k_decay, self.power

        def main(t: int) -> list[float]:
            i, t_i, t_curr = cycles.locate(t)
            gamma = cycle_decay**i
            lr_max_values = [v * gamma for v in bases]
            if i < cycle_limit:
                remaining = (1 - t_curr**k / t_i**k) ** power
                return [lr_min + (lr_max - lr_min) * remaining for lr_max in lr_max_values]
            return [lr_min for _ in bases]

        return _with_warmup(bases, self.warmup_t, self.warmup_lr_init, self.warmup_prefix, main)


class _Decays(TimmSpec):
    """StepLRScheduler and MultiStepLRScheduler: the base LRs times decay_rate ** decays(t').

    Each class declares its own fields, in timm's argument order (`decay_t` differs in type).
    """

    if TYPE_CHECKING:
        decay_rate: float
        warmup_t: int
        warmup_lr_init: float
        warmup_prefix: bool

    def decays(self) -> Callable[[int], float]:
        """t' -> the number of decays timm applies by then."""
        raise NotImplementedError

    def get_lr(self, bases: tuple[float, ...]) -> GroupLRs:
        decays, decay_rate = self.decays(), self.decay_rate

        def main(t: int) -> list[float]:
            exponent = decays(t)
            return [v * (decay_rate**exponent) for v in bases]

        return _with_warmup(bases, self.warmup_t, self.warmup_lr_init, self.warmup_prefix, main)


class Step(_Decays):
    """`StepLRScheduler`: the base LRs times decay_rate every decay_t steps, after a warmup.

    For t < warmup_t: a linear warmup from warmup_lr_init. Then, with t' = t - warmup_t if
    warmup_prefix else t:

        LR(t) = base * decay_rate ** (t' // decay_t)

    Args:
        decay_t: the steps between decays (> 0; may be fractional).
        decay_rate: the factor of each decay.
        warmup_t: the steps of the linear warmup.
        warmup_lr_init: the LR of every group at step 0 of the warmup.
        warmup_prefix: whether the decays count from the end of the warmup (True) or from step 0.
    """

    type: Literal["timm.step"] = "timm.step"
    decay_t: Positive
    decay_rate: NonNegative = 1.0
    warmup_t: Steps = 0
    warmup_lr_init: NonNegative = 0.0
    warmup_prefix: bool = True

    def decays(self) -> Callable[[int], float]:
        decay_t = self.decay_t
        return lambda t: t // decay_t


class MultiStep(_Decays):
    """`MultiStepLRScheduler`: the base LRs times decay_rate at each milestone, after a warmup.

    For t < warmup_t: a linear warmup from warmup_lr_init. Then, with t' = t - warmup_t if
    warmup_prefix else t:

        LR(t) = base * decay_rate ** (number of milestones m <= t' + 1)

    timm compares the milestones with t' + 1: milestone m applies from t' = m - 1 on, one step
    before torch's MultiStepLR would.

    Args:
        decay_t: the milestones, sorted.
        decay_rate: the factor of each decay.
        warmup_t: the steps of the linear warmup.
        warmup_lr_init: the LR of every group at step 0 of the warmup.
        warmup_prefix: whether the milestones count from the end of the warmup (True) or from step 0.
    """

    type: Literal["timm.multistep"] = "timm.multistep"
    decay_t: Milestones
    decay_rate: NonNegative = 1.0
    warmup_t: Steps = 0
    warmup_lr_init: NonNegative = 0.0
    warmup_prefix: bool = True

    def decays(self) -> Callable[[int], float]:
        milestones = tuple(self.decay_t)
        return lambda t: bisect.bisect_right(milestones, t + 1)


class Constant(TimmSpec):
    """`create_scheduler_v2("constant")`: a warmup, then the base LRs.

    timm builds it as `StepLRScheduler(decay_t=1, decay_rate=1.)`: for t < warmup_t a linear
    warmup from warmup_lr_init, then LR(t) = base * 1.0 ** (t // 1) = base.

    Args:
        warmup_t: the steps of the linear warmup.
        warmup_lr_init: the LR of every group at step 0 of the warmup.
    """

    type: Literal["timm.constant"] = "timm.constant"
    warmup_t: Steps = 0
    warmup_lr_init: NonNegative = 0.0

    def get_lr(self, bases: tuple[float, ...]) -> GroupLRs:
        def main(t: int) -> list[float]:
            return [v * 1.0 for v in bases]

        return _with_warmup(bases, self.warmup_t, self.warmup_lr_init, False, main)


StableFn = Literal["constant", "rsqrt", "power"]
DecayFn = Literal["linear", "1-sqrt", "cosine", "power", "exp"]


class _WarmupStableDecay(TimmSpec):
    """`WSDLRScheduler`: a linear warmup (always a prefix), a stable phase, a decay to lr_min."""

    t_initial: PositiveSteps
    decay_t: PositiveSteps
    lr_min: NonNegative = 0.0
    warmup_t: Steps = 0
    warmup_lr_init: NonNegative = 0.0
    stable_fn: StableFn = "constant"
    stable_timescale: Annotated[Positive | None, Field(validate_default=True)] = None
    stable_power: Positive = 0.5
    decay_fn: DecayFn = "1-sqrt"
    decay_power: Positive = 0.5
    decay_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.1

    @field_validator("decay_t")
    @classmethod
    def _decay_within(cls, value: int, info: ValidationInfo) -> int:
        t_initial = info.data.get("t_initial")
        if t_initial is not None and value > t_initial:
            raise ValueError(f"must be <= t_initial, got {value} > {t_initial}")
        return value

    @field_validator("stable_timescale")
    @classmethod
    def _timescale_given(cls, value: float | None, info: ValidationInfo) -> float | None:
        stable_fn, warmup_t = info.data.get("stable_fn"), info.data.get("warmup_t")
        if value is None and stable_fn in ("rsqrt", "power") and warmup_t == 0:
            raise ValueError(
                f"stable_fn={stable_fn!r} needs a positive stable_timescale, which defaults to warmup_t "
                f"(0 here): give stable_timescale"
            )
        return value

    def _stable(self) -> Callable[[int], float]:
        if self.stable_fn == "constant":
            return lambda t_s: 1.0
        power = 0.5 if self.stable_fn == "rsqrt" else self.stable_power
        timescale: float = self.stable_timescale if self.stable_timescale is not None else self.warmup_t
        exponent = -power
        return lambda t_s: float((1.0 + t_s / timescale) ** exponent)

    def _decay(self) -> Callable[[float], float]:
        if self.decay_fn == "linear":
            return lambda frac: 1.0 - frac
        if self.decay_fn == "1-sqrt":
            return lambda frac: 1.0 - math.sqrt(frac)
        if self.decay_fn == "cosine":
            return lambda frac: 0.5 * (1.0 + math.cos(math.pi * frac))
        if self.decay_fn == "power":
            decay_power = self.decay_power
            return lambda frac: float(1.0 - frac**decay_power)
        r = self.decay_ratio
        return lambda frac: float((r**frac - r) / (1.0 - r))

    def get_lr(self, bases: tuple[float, ...]) -> GroupLRs:
        stable, decay = self._stable(), self._decay()
        lr_min, warmup_t, decay_t = self.lr_min, self.warmup_t, self.decay_t
        decay_start = self.t_initial - decay_t

        def main(t_s: int) -> list[float]:
            factor = stable(t_s)
            stable_lrs = [max(v * factor, lr_min) for v in bases]
            t_decay = t_s - decay_start
            if t_decay <= 0:
                return stable_lrs
            d = decay(min(t_decay / decay_t, 1.0))
            return [lr_min + (lr - lr_min) * d for lr in stable_lrs]

        return _with_warmup(bases, warmup_t, self.warmup_lr_init, True, main)


class WarmupStableDecay(_WarmupStableDecay):
    """`WSDLRScheduler` (`create_scheduler_v2("wsd")`): warmup, stable, decay to lr_min.

    For t < warmup_t: a linear warmup from warmup_lr_init to the base LR. Then, with
    t_s = t - warmup_t and frac = min((t_s - (t_initial - decay_t)) / decay_t, 1):

        stable = max(base * stable_fn(t_s), lr_min)
        LR(t) = stable                                                  while t_s <= t_initial - decay_t
              = lr_min + (stable - lr_min) * decay_fn(frac)             after,

    so lr_min is reached at t = warmup_t + t_initial and held. stable_fn(t_s) is 1 ("constant"),
    (1 + t_s / stable_timescale) ** -0.5 ("rsqrt") or ** -stable_power ("power");
    decay_fn(frac) is 1 - frac ("linear"), 1 - sqrt(frac) ("1-sqrt"), 0.5 * (1 + cos(pi * frac))
    ("cosine"), 1 - frac ** decay_power ("power") or (decay_ratio ** frac - decay_ratio) /
    (1 - decay_ratio) ("exp").

    Args:
        t_initial: the length of the stable and decay phases together (>= 1).
        decay_t: the length of the decay phase, the last steps of t_initial (1 <= decay_t <= t_initial).
        lr_min: the LR at the end of the decay, and after.
        stable_fn: "constant", "rsqrt" or "power".
        stable_timescale: the time scale of "rsqrt" and "power" (> 0); None means warmup_t.
        stable_power: the exponent of "power" (> 0).
        decay_fn: "linear", "1-sqrt", "cosine", "power" or "exp" (timm's callables are left out).
        decay_power: the exponent of the "power" decay (> 0).
        decay_ratio: the final fraction of the "exp" decay before normalization, in (0, 1).
        warmup_t: the steps of the linear warmup, before t_initial.
        warmup_lr_init: the LR of every group at step 0 of the warmup.
    """

    type: Literal["timm.wsd"] = "timm.wsd"


class Rsqrt(_WarmupStableDecay):
    """`create_scheduler_v2("rsqrt")`: `timm.wsd` with an "rsqrt" stable phase and a "linear" decay.

    The Big Vision reciprocal square root schedule: a warmup, then
    base * (1 + t_s / stable_timescale) ** -0.5, cooled down linearly to lr_min over the last
    decay_t steps of t_initial. The parameters are those of `timm.wsd` with these defaults.
    """

    type: Literal["timm.rsqrt"] = "timm.rsqrt"
    stable_fn: StableFn = "rsqrt"
    decay_fn: DecayFn = "linear"


SPECS: tuple[type[SpecModel], ...] = (Cosine, Tanh, Poly, Step, MultiStep, Constant, WarmupStableDecay, Rsqrt)
