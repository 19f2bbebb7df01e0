"""torch's cycling schedulers: CyclicLR, OneCycleLR, CosineAnnealingWarmRestarts.

All three compute each LR from their own parameters, ignoring the LR they are handed, so in a
ChainedScheduler they overwrite whatever came before them. CyclicLR and OneCycleLR also cycle
the momentum (or Adam's beta1) when `cycle_momentum` is on; it is part of the answer.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import (
    STEP_MAX,
    BuildContext,
    DomainError,
    Fraction,
    NonNegative,
    Positive,
    PositiveSteps,
    SpecError,
    Steps,
)
from .expression import Expression, ExpressionError
from .torch_common import OverwritingNode, TorchNode, TorchSpec, capture_initial_lrs

PerGroup = NonNegative | Annotated[list[NonNegative], Field(min_length=1)]
PerGroupMomentum = Fraction | Annotated[list[Fraction], Field(min_length=1)]

CYCLIC_COST = 2.0
"""CyclicLR's cost per evaluation (the LRs, and again the momentum), beside its scale_fn's."""
ONE_CYCLE_COST = 1.5
"""OneCycleLR's cost per evaluation (the LRs, and again the momentum)."""
WARM_RESTARTS_COST = 1.75
"""CosineAnnealingWarmRestarts' cost: a cosine, and a bisection among its cycles."""


class CyclicLR(TorchSpec):
    """Cyclical LR (Smith 2017) between `base_lr` and `max_lr`, as torch's CyclicLR.

    cycle = floor(1 + e / (up + down)); x = 1 + e / (up + down) - cycle;
    height = x / ratio if x <= ratio else (x - 1) / (ratio - 1), with ratio = up / (up + down);
    LR = base_lr + (max_lr - base_lr) * height * scale, where scale is 1 (triangular),
    1 / 2 ** (cycle - 1) (triangular2) or gamma ** e (exp_range). Momentum runs opposite,
    from max_momentum down to base_momentum.

    `scale_fn` may be given as an expression in `epoch`, which is bound to the cycle number
    (scale_mode "cycle") or to the iteration (scale_mode "iterations"); as in torch, `mode` and
    `gamma` are then ignored.
    """

    type: Literal["CyclicLR"] = "CyclicLR"
    base_lr: PerGroup
    max_lr: PerGroup
    step_size_up: PositiveSteps = 2000
    step_size_down: Steps | None = None
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular"
    gamma: Positive = 1.0
    scale_fn: Annotated[str, Field(min_length=1)] | None = None
    scale_mode: Literal["cycle", "iterations"] = "cycle"
    cycle_momentum: bool = True
    base_momentum: PerGroupMomentum = 0.8
    max_momentum: PerGroupMomentum = 0.9

    def build(self, ctx: BuildContext) -> TorchNode:
        base_lrs = ctx.per_group(("base_lr",), self.base_lr)
        max_lrs = ctx.per_group(("max_lr",), self.max_lr)
        momenta = None
        if self.cycle_momentum:
            momenta = (
                ctx.per_group(("base_momentum",), self.base_momentum),
                ctx.per_group(("max_momentum",), self.max_momentum),
            )
            ctx.group_values["base_momentum"], ctx.group_values["max_momentum"] = momenta
        # torch sets the groups' LR to base_lr before recording `initial_lr`, and its
        # construction step still scales from `initial_lr`: an earlier scheduler's, if any.
        if ctx.initial_lrs is None:
            ctx.initial_lrs = base_lrs
        constructed_on = ctx.initial_lrs
        scale_fn = None
        if self.scale_fn is not None:
            try:
                scale_fn = Expression.compile(self.scale_fn)
            except SpecError as exc:
                raise exc.prefixed("scale_fn") from None
        return _CyclicNode(self, base_lrs, max_lrs, momenta, scale_fn, constructed_on)


class _CyclicNode(OverwritingNode):
    def __init__(
        self,
        spec: CyclicLR,
        base_lrs: tuple[float, ...],
        max_lrs: tuple[float, ...],
        momenta: tuple[tuple[float, ...], tuple[float, ...]] | None,
        scale_fn: Expression | None,
        constructed_on: tuple[float, ...],
    ) -> None:
        super().__init__(base_lrs)
        self._constructed_on = constructed_on
        up = float(spec.step_size_up)
        down = float(spec.step_size_down) if spec.step_size_down is not None else up
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        self.max_lrs = max_lrs
        self.momenta = momenta
        self.has_momentum = momenta is not None
        self.scale_fn = scale_fn
        self.mode, self.gamma = spec.mode, spec.gamma
        evaluation = CYCLIC_COST + (scale_fn.cost if scale_fn is not None else 0.0)
        self.cost = evaluation * (2 if self.has_momentum else 1)
        # torch's built-in modes choose their own scale_mode; a custom scale_fn keeps the one given.
        self.by_cycle = spec.scale_mode == "cycle" if scale_fn else spec.mode != "exp_range"

    def _position(self, e: int) -> tuple[float, float]:
        """(height in [0, 1] within the cycle, scale applied to the amplitude)."""
        cycle = math.floor(1 + e / self.total_size)
        x = 1.0 + e / self.total_size - cycle
        height = x / self.step_ratio if x <= self.step_ratio else (x - 1) / (self.step_ratio - 1)
        return height, self._scale(cycle if self.by_cycle else e, e)

    def _scale(self, x: int, e: int) -> float:
        if self.scale_fn is not None:
            try:
                return self.scale_fn(x)
            except ExpressionError as exc:
                raise DomainError(e, f"scale_fn {self.scale_fn.source!r}: {exc}") from None
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            # torch's 1 / 2.0 ** (x - 1) overflows past cycle 1024; 0.5 ** (x - 1) is the same
            # exact power of two until then, and tends to the limit (LR = base_lr) after.
            return 0.5 ** (x - 1)
        return self.gamma**x

    def lrs(self, step: int) -> list[float]:
        height, scale = self._position(step)
        return [
            base + (top - base) * height * scale for base, top in zip(self.bases, self.max_lrs, strict=True)
        ]

    def construction_lrs(self) -> list[float]:
        return list(self._constructed_on)  # the cycle's start, scaled from the initial_lr

    def momentum(self, step: int) -> list[float] | None:
        if self.momenta is None:
            return None
        height, scale = self._position(step)
        low, high = self.momenta
        return [top - (top - base) * height * scale for base, top in zip(low, high, strict=True)]


class OneCycleLR(TorchSpec):
    """The 1cycle policy (Smith 2018), as torch's OneCycleLR.

    Warm up from max_lr / div_factor to max_lr over pct_start of total_steps, then anneal to
    max_lr / (div_factor * final_div_factor); with three_phase, come back down to the initial
    LR first. Momentum runs opposite between max_momentum and base_momentum. Like torch, it
    answers steps 0 to total_steps and refuses any later step.
    """

    type: Literal["OneCycleLR"] = "OneCycleLR"
    max_lr: PerGroup
    total_steps: PositiveSteps | None = None
    epochs: PositiveSteps | None = None
    steps_per_epoch: PositiveSteps | None = None
    pct_start: Fraction = 0.3
    anneal_strategy: Literal["cos", "linear"] = "cos"
    cycle_momentum: bool = True
    base_momentum: PerGroupMomentum = 0.85
    max_momentum: PerGroupMomentum = 0.95
    div_factor: Positive = 25.0
    final_div_factor: Positive = 1e4
    three_phase: bool = False

    @model_validator(mode="after")
    def _phases_have_length(self) -> OneCycleLR:
        if self.total_steps is None and (self.epochs is None or self.steps_per_epoch is None):
            raise ValueError("give total_steps, or both epochs and steps_per_epoch")
        total = self.steps
        ends = [float(self.pct_start * total) - 1]
        if self.three_phase:
            ends.append(float(2 * self.pct_start * total) - 2)
        # torch divides by the length of the phase a step falls in: step 0 falls in a first
        # phase ending at 0, and every step past the last phase's start falls in the last.
        if ends[0] == 0.0:
            raise ValueError(
                f"pct_start={self.pct_start} with {total} total steps makes the warmup end at step 0, "
                "where torch divides by zero"
            )
        if total - 1 == ends[-1]:
            raise ValueError(
                f"pct_start={self.pct_start} with {total} total steps leaves the last phase no steps; "
                "torch divides by zero there"
            )
        return self

    @property
    def steps(self) -> int:
        if self.total_steps is not None:
            return self.total_steps
        return (self.epochs or 0) * (self.steps_per_epoch or 0)

    def build(self, ctx: BuildContext) -> TorchNode:
        max_lrs = ctx.per_group(("max_lr",), self.max_lr)
        initial = tuple(lr / self.div_factor for lr in max_lrs)
        # torch writes these into every param group, and reads them back at every step: a
        # scheduler constructed later that writes them too changes this one's curve.
        ctx.initial_lrs = initial
        ctx.group_values["max_lr"] = max_lrs
        ctx.group_values["min_lr"] = tuple(lr / self.final_div_factor for lr in initial)
        if self.cycle_momentum:
            ctx.group_values["base_momentum"] = ctx.per_group(("base_momentum",), self.base_momentum)
            ctx.group_values["max_momentum"] = ctx.per_group(("max_momentum",), self.max_momentum)
        return _OneCycleNode(self, ctx)


class _OneCycleNode(OverwritingNode):
    def __init__(self, spec: OneCycleLR, ctx: BuildContext) -> None:
        super().__init__(ctx.require_initial_lrs())
        self.spec = spec
        self.total_steps = spec.steps
        self.has_momentum = spec.cycle_momentum
        self.linear = spec.anneal_strategy == "linear"
        self.cost = ONE_CYCLE_COST * (2 if self.has_momentum else 1)
        self._phases: list[list[tuple[float, float, float, float, float]]] = []
        ctx.when_built(self._settle)  # the group values as the last writer leaves them

    def _settle(self, ctx: BuildContext) -> None:
        """Per group: (end_step, start_lr, end_lr, start_momentum, end_momentum) of each phase."""
        spec, total, values = self.spec, self.total_steps, ctx.group_values
        initial, top, low = ctx.require_initial_lrs(), values["max_lr"], values["min_lr"]
        zeros = (0.0,) * self.n_groups
        base_m, max_m = values.get("base_momentum", zeros), values.get("max_momentum", zeros)
        warm = float(spec.pct_start * total) - 1
        groups = []
        for g in range(self.n_groups):
            if spec.three_phase:
                phases = [
                    (warm, initial[g], top[g], max_m[g], base_m[g]),
                    (float(2 * spec.pct_start * total) - 2, top[g], initial[g], base_m[g], max_m[g]),
                    (total - 1, initial[g], low[g], max_m[g], max_m[g]),
                ]
            else:
                phases = [
                    (warm, initial[g], top[g], max_m[g], base_m[g]),
                    (total - 1, top[g], low[g], base_m[g], max_m[g]),
                ]
            groups.append(phases)
        self._phases = groups

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.linear:
            return (end - start) * pct + start
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def _at(self, step: int, momentum: bool) -> list[float]:
        if step > self.total_steps:
            raise DomainError(
                step, f"OneCycleLR has {self.total_steps} total steps; torch refuses to step past them"
            )
        out = []
        for phases in self._phases:
            start_step = 0.0
            for i, (end_step, lr_a, lr_b, m_a, m_b) in enumerate(phases):
                if step <= end_step or i == len(phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    out.append(self._anneal(m_a, m_b, pct) if momentum else self._anneal(lr_a, lr_b, pct))
                    break
                start_step = end_step
        return out

    def lrs(self, step: int) -> list[float]:
        return self._at(step, momentum=False)

    def momentum(self, step: int) -> list[float] | None:
        return self._at(step, momentum=True) if self.has_momentum else None


class CosineAnnealingWarmRestarts(TorchSpec):
    """SGDR (Loshchilov & Hutter 2017): cosine from base_lr to eta_min, restarting every T_i
    epochs, with T_0 first and T_i = T_0 * T_mult ** i after each restart."""

    type: Literal["CosineAnnealingWarmRestarts"] = "CosineAnnealingWarmRestarts"
    T_0: PositiveSteps
    T_mult: PositiveSteps = 1
    eta_min: NonNegative = 0.0

    def build(self, ctx: BuildContext) -> TorchNode:
        return _WarmRestartsNode(capture_initial_lrs(ctx), self.T_0, self.T_mult, self.eta_min)


class _WarmRestartsNode(OverwritingNode):
    def __init__(self, bases: tuple[float, ...], t_0: int, t_mult: int, eta_min: float) -> None:
        super().__init__(bases)
        self.t_0, self.t_mult, self.eta_min = t_0, t_mult, eta_min
        self.cost = WARM_RESTARTS_COST
        # Cycle n starts at T_0 * (T_mult**n - 1) / (T_mult - 1): at most 54 starts below 2**53.
        self._starts = [0]
        while t_mult > 1 and self._starts[-1] <= STEP_MAX:
            self._starts.append(t_0 * (t_mult ** len(self._starts) - 1) // (t_mult - 1))

    def _cycle(self, e: int) -> tuple[int, int]:
        """(T_cur, T_i) after e steps, in exact integers as torch's stepping computes them."""
        if self.t_mult == 1:
            return e % self.t_0, self.t_0
        n = bisect_right(self._starts, e) - 1
        return e - self._starts[n], self.t_0 * self.t_mult**n

    def lrs(self, step: int) -> list[float]:
        t_cur, t_i = self._cycle(step)
        eta = self.eta_min
        return [eta + (base - eta) * (1 + math.cos(math.pi * t_cur / t_i)) / 2 for base in self.bases]


SPECS = (CyclicLR, OneCycleLR, CosineAnnealingWarmRestarts)
