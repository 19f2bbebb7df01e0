"""transformers' schedules, `hf.<get_scheduler name>`: multipliers of the run's base LRs.

`transformers.get_scheduler(name, optimizer, num_warmup_steps, num_training_steps,
scheduler_specific_kwargs)` builds a `torch.optim.lr_scheduler.LambdaLR`, so every type here
answers

    LR_i(t) = base_lrs[i] * lambda(t)

with one `lambda` shared by all param groups, and `t` the number of `scheduler.step()` calls.
Each `lambda` repeats transformers' floating-point operations in their order, so the answers
equal the library's.

Parameter names and defaults are those of transformers; a type takes exactly the parameters its
schedule function reads (`get_scheduler` drops the others silently, lrtower refuses them).
`hf.polynomial`'s `lr_end` and `hf.cosine_with_min_lr`'s `min_lr` are absolute LRs that
transformers divides by `optimizer.defaults["lr"]`; lrtower takes the first group's base LR,
`lrs[0]`, as that value.

>>> from lrtower_server.schedules import build_schedule
>>> linear = build_schedule(
...     {"type": "hf.linear", "num_warmup_steps": 2, "num_training_steps": 6}, [0.1, 0.01]
... )
>>> for t in (0, 1, 2, 4, 6, 9):
...     print(t, linear.lrs(t))
0 [0.0, 0.0]
1 [0.05, 0.005]
2 [0.1, 0.01]
4 [0.05, 0.005]
6 [0.0, 0.0]
9 [0.0, 0.0]
>>> cosine = build_schedule({"type": "hf.cosine", "num_warmup_steps": 0, "num_training_steps": 4}, [1.0])
>>> [round(cosine.lrs(t)[0], 6) for t in range(6)]
[1.0, 0.853553, 0.5, 0.146447, 0.0, 0.146447]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from .base import (
    BuildContext,
    NonNegative,
    PositiveSteps,
    ScaledSchedule,
    Schedule,
    SpecError,
    SpecModel,
    Steps,
)

Multiplier = Callable[[int], float]
"""transformers' `lr_lambda`: the step -> the factor LambdaLR multiplies every base LR by."""

Shape = Literal["linear", "cosine", "1-sqrt"]

HF_COST = 1.5
"""A transformers multiplier's cost per step and group (see `Schedule.cost`)."""


def _optimizer_lr(ctx: BuildContext) -> float:
    """transformers' `optimizer.defaults["lr"]`: the first group's base LR."""
    return ctx.require_base_lrs()[0]


class HFSpec(SpecModel):
    """A transformers schedule: a multiplier of the base LRs, built once per run.

    LambdaLR gives group i `base_lrs[i] * multiplier(step)`, torch's own product.
    """

    def multiplier(self, lr_init: float) -> Multiplier:
        """transformers' `lr_lambda`; `lr_init` stands for `optimizer.defaults["lr"]`."""
        raise NotImplementedError

    def build(self, ctx: BuildContext) -> Schedule:
        return ScaledSchedule(self.multiplier(_optimizer_lr(ctx)), ctx.require_base_lrs(), HF_COST)

    @field_validator("num_training_steps", check_fields=False)
    @classmethod
    def _training_covers_warmup(cls, value: int | None, info: ValidationInfo) -> int | None:
        warmup = info.data.get("num_warmup_steps")
        if value is not None and warmup is not None and value < warmup:
            raise ValueError(f"must be >= num_warmup_steps, got {value} < {warmup}")
        return value


def _after_warmup(num_warmup_steps: int, after: Multiplier) -> Multiplier:
    """The linear warmup most types share, `float(t) / float(max(1, W))` for t < W, then `after(t)`."""
    w = num_warmup_steps
    denominator = float(max(1, w))

    def lr_lambda(current_step: int) -> float:
        if current_step < w:
            return float(current_step) / denominator
        return after(current_step)

    return lr_lambda


def _after_warmup_by_progress(w: int, t: int, decay: Callable[[float], float]) -> Multiplier:
    """The warmup, then `decay(p)` with the cosines' progress p = (t - W) / max(1, T - W)."""
    decay_length = float(max(1, t - w))
    return _after_warmup(w, lambda current_step: decay(float(current_step - w) / decay_length))


class Linear(HFSpec):
    """`get_linear_schedule_with_warmup`: linear warmup from 0, then linear decay to 0.

    lambda(t) = t / max(1, W)                             for t < W
              = max(0, (T - t) / max(1, T - W))           otherwise

    Args:
        num_warmup_steps: W, the steps of the warmup.
        num_training_steps: T (>= W), the step where the LR reaches 0 and stays.
    """

    type: Literal["hf.linear"] = "hf.linear"
    num_warmup_steps: Steps
    num_training_steps: Steps

    def multiplier(self, lr_init: float) -> Multiplier:
        w, t = self.num_warmup_steps, self.num_training_steps
        decay_length = float(max(1, t - w))
        return _after_warmup(w, lambda current_step: max(0.0, float(t - current_step) / decay_length))


class Cosine(HFSpec):
    """`get_cosine_schedule_with_warmup`: linear warmup from 0, then a cosine.

    lambda(t) = t / max(1, W)                                                for t < W
              = max(0, 0.5 * (1 + cos(pi * num_cycles * 2 * p)))             otherwise,
    p = (t - W) / max(1, T - W). With the default half wave the LR reaches 0 at T; past T the
    cosine goes on (the LR rises again), as in transformers.

    Args:
        num_warmup_steps: W, the steps of the warmup.
        num_training_steps: T (>= W), the length of the schedule.
        num_cycles: the number of cosine waves between W and T (0.5: one half wave down to 0).
    """

    type: Literal["hf.cosine"] = "hf.cosine"
    num_warmup_steps: Steps
    num_training_steps: Steps
    num_cycles: NonNegative = 0.5

    def multiplier(self, lr_init: float) -> Multiplier:
        frequency = math.pi * float(self.num_cycles) * 2.0
        return _after_warmup_by_progress(
            self.num_warmup_steps,
            self.num_training_steps,
            lambda progress: max(0.0, 0.5 * (1.0 + math.cos(frequency * progress))),
        )


class CosineWithRestarts(HFSpec):
    """`get_cosine_with_hard_restarts_schedule_with_warmup`: warmup, then restarted cosines.

    lambda(t) = t / max(1, W)                                                for t < W
              = 0                                                            for p >= 1
              = max(0, 0.5 * (1 + cos(pi * ((num_cycles * p) % 1))))        otherwise,
    p = (t - W) / max(1, T - W).

    Args:
        num_warmup_steps: W, the steps of the warmup.
        num_training_steps: T (>= W), the step where the LR drops to 0 and stays.
        num_cycles: the number of cosine cycles between W and T, each restarting at the base LR.
    """

    type: Literal["hf.cosine_with_restarts"] = "hf.cosine_with_restarts"
    num_warmup_steps: Steps
    num_training_steps: Steps
    num_cycles: Steps = 1

    def multiplier(self, lr_init: float) -> Multiplier:
        cycles = float(self.num_cycles)

        def decay(progress: float) -> float:
            if progress >= 1.0:
                return 0.0
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((cycles * progress) % 1.0))))

        return _after_warmup_by_progress(self.num_warmup_steps, self.num_training_steps, decay)


class Polynomial(HFSpec):
    """`get_polynomial_decay_schedule_with_warmup`: warmup, then a polynomial decay to `lr_end`.

    lambda(t) = t / max(1, W)                                                for t < W
              = lr_end / lr_init                                             for t > T
              = ((lr_init - lr_end) * (1 - (t - W) / (T - W)) ** power + lr_end) / lr_init

    `lr_end` is an absolute LR and `lr_init` is transformers' `optimizer.defaults["lr"]`, here the
    first group's base LR: group 0 decays to `lr_end`, group i to `lr_end * lrs[i] / lrs[0]`.

    Args:
        num_warmup_steps: W, the steps of the warmup.
        num_training_steps: T (> W), the step where the LR reaches `lr_end`.
        lr_end: the final LR of group 0 (>= 0, below `lrs[0]`).
        power: the power of the decay (1: linear).
    """

    type: Literal["hf.polynomial"] = "hf.polynomial"
    num_warmup_steps: Steps
    num_training_steps: Steps
    lr_end: NonNegative = 1e-7
    power: NonNegative = 1.0

    @field_validator("num_training_steps")
    @classmethod
    def _decay_not_empty(cls, value: int, info: ValidationInfo) -> int:
        warmup = info.data.get("num_warmup_steps")
        if warmup is not None and value == warmup:
            raise ValueError(
                f"must be > num_warmup_steps (transformers divides by their difference), "
                f"got {value} == {warmup}"
            )
        return value

    def multiplier(self, lr_init: float) -> Multiplier:
        if not lr_init > self.lr_end:
            raise SpecError.at(
                ("lr_end",),
                f"must be smaller than the initial LR (the first group's base LR, {lr_init!r}), "
                f"got {self.lr_end!r}",
                self.lr_end,
            )
        w, t, lr_end, power = self.num_warmup_steps, self.num_training_steps, self.lr_end, self.power
        lr_range = lr_init - lr_end
        decay_steps = t - w
        final = lr_end / lr_init

        def decayed(current_step: int) -> float:
            if current_step > t:
                return final
            pct_remaining = 1 - (current_step - w) / decay_steps
            decay: float = lr_range * pct_remaining**power + lr_end
            return decay / lr_init

        return _after_warmup(w, decayed)


class Constant(HFSpec):
    """`get_constant_schedule`: the base LRs, at every step. lambda(t) = 1."""

    type: Literal["hf.constant"] = "hf.constant"

    def multiplier(self, lr_init: float) -> Multiplier:
        return lambda current_step: 1.0


class ConstantWithWarmup(HFSpec):
    """`get_constant_schedule_with_warmup`: linear warmup from 0, then the base LRs.

    lambda(t) = t / max(1.0, W) for t < W, 1 otherwise.

    Args:
        num_warmup_steps: W, the steps of the warmup.
    """

    type: Literal["hf.constant_with_warmup"] = "hf.constant_with_warmup"
    num_warmup_steps: Steps

    def multiplier(self, lr_init: float) -> Multiplier:
        # transformers divides by max(1.0, W) here, which is float(max(1, W)) for an integer W.
        return _after_warmup(self.num_warmup_steps, lambda current_step: 1.0)


class InverseSqrt(HFSpec):
    """`get_inverse_sqrt_schedule`: linear warmup from 0, then an inverse square root.

    lambda(t) = t / max(1, W)                                     for t < W
              = 1 / sqrt((t + timescale - W) / timescale)         otherwise

    Args:
        num_warmup_steps: W, the steps of the warmup.
        timescale: the time scale of the decay (>= 1); None means W, or 10000 when W is 0.
    """

    type: Literal["hf.inverse_sqrt"] = "hf.inverse_sqrt"
    num_warmup_steps: Steps
    timescale: PositiveSteps | None = None

    def multiplier(self, lr_init: float) -> Multiplier:
        w = self.num_warmup_steps
        timescale = self.timescale if self.timescale is not None else (w or 10_000)
        shift = timescale - w
        return _after_warmup(w, lambda current_step: 1.0 / math.sqrt((current_step + shift) / timescale))


class _MinLRSpec(HFSpec):
    """The two cosines with a floor: `min_lr` (absolute) or `min_lr_rate` (of the base LR).

    Both transformers functions take these arguments first, in this order.
    """

    num_warmup_steps: Steps
    num_training_steps: Steps
    num_cycles: NonNegative = 0.5
    min_lr: NonNegative | None = None
    min_lr_rate: Annotated[NonNegative | None, Field(validate_default=True)] = None

    @field_validator("min_lr_rate")
    @classmethod
    def _one_floor(cls, value: float | None, info: ValidationInfo) -> float | None:
        if "min_lr" not in info.data:  # min_lr itself is invalid, and reported
            return value
        min_lr = info.data["min_lr"]
        if min_lr is not None and value is not None:
            raise ValueError(f"give only one of min_lr ({min_lr!r}) and min_lr_rate ({value!r})")
        if min_lr is None and value is None:
            raise ValueError("give one of min_lr and min_lr_rate")
        return value

    def _min_lr_rate(self, lr_init: float) -> float:
        min_lr, min_lr_rate = self.min_lr, self.min_lr_rate
        if min_lr_rate is not None:
            return min_lr_rate
        if min_lr is None:
            raise SpecError.at(("min_lr_rate",), "give one of min_lr and min_lr_rate")
        if lr_init == 0:
            raise SpecError.at(
                ("min_lr",), "is divided by the initial LR (the first group's base LR), which is 0", min_lr
            )
        return min_lr / lr_init


class CosineWithMinLR(_MinLRSpec):
    """`get_cosine_with_min_lr_schedule_with_warmup`: warmup from 0, then a cosine to a floor.

    lambda(t) = t / max(1, W)                                                for t < W
              = max(0, c * (1 - r) + r)                                      otherwise,
    c = 0.5 * (1 + cos(pi * num_cycles * 2 * p)), p = (t - W) / max(1, T - W), and
    r = min_lr_rate, or min_lr / lr_init with lr_init the first group's base LR (transformers'
    `optimizer.defaults["lr"]`). Past T the cosine goes on, as in transformers.

    Args:
        num_warmup_steps: W, the steps of the warmup.
        num_training_steps: T (>= W), the length of the schedule.
        num_cycles: the number of cosine waves between W and T.
        min_lr: the floor, an absolute LR of group 0. Give this or `min_lr_rate`.
        min_lr_rate: the floor as a fraction of the base LRs. Give this or `min_lr`.
    """

    type: Literal["hf.cosine_with_min_lr"] = "hf.cosine_with_min_lr"

    def multiplier(self, lr_init: float) -> Multiplier:
        rate = self._min_lr_rate(lr_init)
        frequency = math.pi * float(self.num_cycles) * 2.0
        span = 1 - rate

        def decay(progress: float) -> float:
            factor = 0.5 * (1.0 + math.cos(frequency * progress))
            return max(0.0, factor * span + rate)

        return _after_warmup_by_progress(self.num_warmup_steps, self.num_training_steps, decay)


class CosineWarmupWithMinLR(_MinLRSpec):
    """`get_cosine_with_min_lr_schedule_with_warmup_lr_rate`: a shifted warmup, then a cosine.

    All in floats. Without `warmup_lr_rate`:
    lambda(t) = (t + 1) / max(1, W)                                          for t < W
    and with it (wr):
    lambda(t) = wr + (1 - wr) * t / max(1, W - 1)                            for t < W
    then
    lambda(t) = max(0, c * (1 - r) + r)                                      otherwise,
    c = 0.5 * (1 + cos(pi * num_cycles * 2 * p)), p = (t - W + 1) / max(1, T - W), and r as in
    `hf.cosine_with_min_lr`. The floor is reached at T - 1; past it the cosine goes on.

    Args:
        num_warmup_steps: W, the steps of the warmup.
        num_training_steps: T (>= W), the length of the schedule.
        num_cycles: the number of cosine waves between W and T.
        min_lr: the floor, an absolute LR of group 0. Give this or `min_lr_rate`.
        min_lr_rate: the floor as a fraction of the base LRs. Give this or `min_lr`.
        warmup_lr_rate: the first warmup value as a fraction of the base LRs; None: (t + 1) / W.
    """

    type: Literal["hf.cosine_warmup_with_min_lr"] = "hf.cosine_warmup_with_min_lr"
    warmup_lr_rate: NonNegative | None = None

    def multiplier(self, lr_init: float) -> Multiplier:
        rate = self._min_lr_rate(lr_init)
        w = float(self.num_warmup_steps)
        t = float(self.num_training_steps)
        frequency = math.pi * self.num_cycles * 2.0
        decay_length = max(1.0, t - w)
        span = 1 - rate
        warmup_rate = self.warmup_lr_rate
        warmup_length = max(1.0, w)
        warmup_span = max(1, w - 1)

        def lr_lambda(step: int) -> float:
            current_step = float(step)
            if current_step < w:
                if warmup_rate is None:
                    return (current_step + 1.0) / warmup_length
                return warmup_rate + (1.0 - warmup_rate) * current_step / warmup_span
            progress = (current_step - w + 1.0) / decay_length
            factor = 0.5 * (1.0 + math.cos(frequency * progress))
            return max(0.0, factor * span + rate)

        return lr_lambda


def _warmup_shape(shape: Shape) -> Callable[[float], float]:
    if shape == "linear":
        return lambda progress: progress
    if shape == "cosine":
        return lambda progress: 0.5 * (1.0 - math.cos(math.pi * progress))
    return lambda progress: 1.0 - math.sqrt(1.0 - progress)


def _decay_shape(shape: Shape, num_cycles: float) -> Callable[[float], float]:
    if shape == "linear":
        return lambda progress: 1.0 - progress
    if shape == "cosine":
        cycles = float(num_cycles)
        return lambda progress: 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress))
    return lambda progress: 1.0 - math.sqrt(progress)


class WarmupStableDecay(HFSpec):
    """`get_wsd_schedule`: warmup, a stable phase at the base LRs, a decay, then the floor.

    With W, S, D the warmup, stable and decay steps and m = min_lr_ratio:
    lambda(t) = max(0, warmup(t / max(1, W)) * (1 - m) + m)                  for t < W
              = 1                                                            for t < W + S
              = max(0, decay((t - W - S) / max(1, D)) * (1 - m) + m)         for t < W + S + D
              = m                                                            otherwise,
    warmup(p) = p, 0.5 * (1 - cos(pi * p)) or 1 - sqrt(1 - p) and
    decay(p) = 1 - p, 0.5 * (1 + cos(pi * num_cycles * 2 * p)) or 1 - sqrt(p), by type.

    Args:
        num_warmup_steps: W, the steps of the warmup.
        num_decay_steps: D, the steps of the decay.
        num_training_steps: W + S + D; S is T - W - D when `num_stable_steps` is not given.
        num_stable_steps: S. Give this or `num_training_steps`, or both if they agree.
        warmup_type: "linear", "cosine" or "1-sqrt".
        decay_type: "linear", "cosine" or "1-sqrt".
        min_lr_ratio: m, the first warmup value and the floor, as a fraction of the base LRs.
        num_cycles: the number of cosine waves of the "cosine" decay.
    """

    type: Literal["hf.warmup_stable_decay"] = "hf.warmup_stable_decay"
    num_warmup_steps: Steps
    num_decay_steps: Steps
    num_training_steps: Steps | None = None
    num_stable_steps: Annotated[Steps | None, Field(validate_default=True)] = None
    warmup_type: Shape = "linear"
    decay_type: Shape = "cosine"
    min_lr_ratio: NonNegative = 0.0
    num_cycles: NonNegative = 0.5

    @field_validator("num_training_steps")
    @classmethod
    def _training_covers_warmup_and_decay(cls, value: int | None, info: ValidationInfo) -> int | None:
        warmup, decay = info.data.get("num_warmup_steps"), info.data.get("num_decay_steps")
        if value is not None and warmup is not None and decay is not None and value < warmup + decay:
            raise ValueError(
                f"must be >= num_warmup_steps + num_decay_steps, got {value} < {warmup} + {decay}"
            )
        return value

    @field_validator("num_stable_steps")
    @classmethod
    def _stable_given(cls, value: int | None, info: ValidationInfo) -> int | None:
        if "num_training_steps" not in info.data:  # num_training_steps is invalid, and reported
            return value
        training = info.data["num_training_steps"]
        if value is None and training is None:
            raise ValueError("give num_training_steps or num_stable_steps")
        warmup, decay = info.data.get("num_warmup_steps"), info.data.get("num_decay_steps")
        both = value is not None and training is not None
        if both and warmup is not None and decay is not None and warmup + value + decay != training:
            raise ValueError(
                f"must equal num_training_steps - num_warmup_steps - num_decay_steps when both are "
                f"given, got {value} != {training} - {warmup} - {decay}"
            )
        return value

    def multiplier(self, lr_init: float) -> Multiplier:
        w, d = self.num_warmup_steps, self.num_decay_steps
        if self.num_stable_steps is not None:
            s = self.num_stable_steps
        elif self.num_training_steps is not None:
            s = self.num_training_steps - w - d
        else:
            raise SpecError.at(("num_stable_steps",), "give num_training_steps or num_stable_steps")
        ratio = self.min_lr_ratio
        span = 1.0 - ratio
        warmup_shape = _warmup_shape(self.warmup_type)
        decay_shape = _decay_shape(self.decay_type, self.num_cycles)
        warmup_length = float(max(1, w))
        decay_length = float(max(1, d))
        stable_end = w + s
        decay_end = w + s + d

        def lr_lambda(current_step: int) -> float:
            if current_step < w:
                progress = float(current_step) / warmup_length
                return max(0.0, warmup_shape(progress) * span + ratio)
            if current_step < stable_end:
                return 1.0
            if current_step < decay_end:
                progress = float(current_step - w - s) / decay_length
                return max(0.0, decay_shape(progress) * span + ratio)
            return ratio

        return lr_lambda


SPECS: tuple[type[SpecModel], ...] = (
    Linear,
    Cosine,
    CosineWithRestarts,
    Polynomial,
    Constant,
    ConstantWithWarmup,
    InverseSqrt,
    CosineWithMinLR,
    CosineWarmupWithMinLR,
    WarmupStableDecay,
)
