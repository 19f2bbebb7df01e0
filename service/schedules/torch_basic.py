"""torch's simple schedulers, in closed form: LambdaLR ... CosineAnnealingLR.

Each spec takes torch's parameter names and defaults. Each node reproduces what
`get_last_lr()` returns after `step` calls of `scheduler.step()`, including torch's own
quirks (CosineAnnealingLR is periodic past T_max; MultiStepLR counts repeated milestones).
Parameters for which torch would divide by zero, or produce a negative LR, are refused.
"""

from __future__ import annotations

import math
import sys
import threading
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from .base import (
    CLOSED_FORM_COST,
    MAX_PRODUCT_SERIES,
    MAX_PRODUCT_STEPS,
    MAX_SPEC_COST,
    PRODUCT_BUDGET,
    PRODUCT_CHECKPOINT,
    BuildContext,
    DomainError,
    Fraction,
    Loc,
    NonNegative,
    PositiveSteps,
    ProductBudget,
    SpecError,
    Steps,
)
from .expression import Expression, ExpressionError
from .torch_common import (
    Affine,
    MultiplicativeNode,
    OverwritingNode,
    TorchNode,
    TorchSpec,
    UniformNode,
    capture_initial_lrs,
)

MAX_MILESTONES = 10_000
LAMBDA_COST = 1.5
"""A LambdaLR's own cost per step, beside its expression's (see `Schedule.cost`)."""

LambdaSource = Annotated[str, Field(min_length=1)]


def _compile_lambdas(ctx: BuildContext, sources: str | list[str]) -> list[Expression]:
    """One compiled `lr_lambda` per group, as torch's LambdaLR expands a single function."""
    if isinstance(sources, str):
        return [_compile(("lr_lambda",), sources)] * ctx.n_groups
    if len(sources) != ctx.n_groups:
        raise SpecError.at(
            ("lr_lambda",), f"expected {ctx.n_groups} lr_lambdas, one per param group, but got {len(sources)}"
        )
    return [_compile(("lr_lambda", i), source) for i, source in enumerate(sources)]


def _compile(loc: Loc, source: str) -> Expression:
    try:
        return Expression.compile(source)
    except SpecError as exc:
        raise exc.prefixed(*loc) from None


def _call(expr: Expression, e: int) -> float:
    try:
        return expr(e)
    except ExpressionError as exc:
        raise DomainError(e, f"lr_lambda {expr.source!r}: {exc}") from None


class LambdaLR(TorchSpec):
    """LR = base_lr * lr_lambda(epoch), with `lr_lambda` an expression in `epoch` (or `step`)."""

    type: Literal["LambdaLR"] = "LambdaLR"
    lr_lambda: LambdaSource | Annotated[list[LambdaSource], Field(min_length=1)]

    def build(self, ctx: BuildContext) -> TorchNode:
        lambdas = _compile_lambdas(ctx, self.lr_lambda)
        return _LambdaNode(capture_initial_lrs(ctx), lambdas)


class _LambdaNode(OverwritingNode):
    def __init__(self, bases: tuple[float, ...], lambdas: list[Expression]) -> None:
        super().__init__(bases)
        self._lambdas = lambdas
        self.cost = LAMBDA_COST + max(fn.cost for fn in lambdas)

    def lrs(self, step: int) -> list[float]:
        return [base * _call(fn, step) for fn, base in zip(self._lambdas, self.bases, strict=True)]


class MultiplicativeLR(TorchSpec):
    """LR(e) = LR(e-1) * lr_lambda(e) for e >= 1; LR(0) = base_lr.

    A product over steps: a constant expression is evaluated as a power. Any other is computed
    once per run, one epoch after the other, and checkpointed every PRODUCT_CHECKPOINT epochs; it
    answers epochs up to `ProductBudget.max_step` (at most MAX_PRODUCT_STEPS, fewer for heavy
    expressions), and its `cost` counts the PRODUCT_CHECKPOINT evaluations of the expression that
    an epoch may be from a checkpoint.
    """

    type: Literal["MultiplicativeLR"] = "MultiplicativeLR"
    lr_lambda: LambdaSource | Annotated[list[LambdaSource], Field(min_length=1)]

    def build(self, ctx: BuildContext) -> TorchNode:
        lambdas = _compile_lambdas(ctx, self.lr_lambda)
        series: dict[str, _PrefixProducts] = {}
        for fn in lambdas:
            if fn.source not in series:  # groups sharing an expression share its products
                series[fn.source] = _PrefixProducts(fn, ctx.products)
        for product in series.values():
            if product.fn.depends_on_step:
                if product.point_cost > MAX_SPEC_COST:
                    raise SpecError.at(
                        ("lr_lambda",),
                        f"this step-dependent expression costs about {product.point_cost:.0f} units "
                        f"per step as a product over steps (up to {PRODUCT_CHECKPOINT} evaluations of "
                        f"it, {product.fn.cost:.2f} each); the limit is MAX_SPEC_COST = "
                        f"{MAX_SPEC_COST:.0f}: shorten it, or write it in closed form with LambdaLR",
                        product.fn.source,
                    )
                ctx.products.add(product.step_cost)
        if ctx.products.series > MAX_PRODUCT_SERIES:
            raise SpecError.at(
                ("lr_lambda",),
                f"a spec may hold at most {MAX_PRODUCT_SERIES} step-dependent MultiplicativeLR "
                "expressions: each is a product over steps, computed once per run",
            )
        products = [series[fn.source] for fn in lambdas]
        return _MultiplicativeNode(capture_initial_lrs(ctx), products, ctx.products)


class _PrefixProducts:
    """prod(fn(t) for t in 1..e), computed on demand and shared by every request.

    The running product is multiplied one epoch at a time, in order, exactly as torch does, and
    kept at every PRODUCT_CHECKPOINT-th epoch. Epoch e starts from the checkpoint below it, or
    from the last epoch answered when that is closer (consecutive epochs cost one multiplication
    each), and multiplies on from there: every answer is the same sequence of multiplications,
    so it is the same float bit for bit, whichever way it is reached.
    """

    def __init__(self, fn: Expression, budget: ProductBudget) -> None:
        self.fn = fn
        self._budget = budget
        self._constant = None if fn.depends_on_step else _call(fn, 0)
        # One more epoch of the product costs a call of the expression: in this loop, without
        # `at`'s checks around it, a call costs 0.3 to 0.7 of `fn.cost`, which covers the loop's own
        # work. An epoch asked at random is up to PRODUCT_CHECKPOINT - 1 epochs from a checkpoint.
        self.step_cost = fn.cost
        self.point_cost = PRODUCT_CHECKPOINT * self.step_cost if fn.depends_on_step else CLOSED_FORM_COST
        self._checkpoints = array("d", [1.0])  # the product at epochs 0, K, 2K, ... (K = PRODUCT_CHECKPOINT)
        self._last = (0, 1.0)  # (epoch, product) last answered: read and replaced whole, never mutated
        self._lock = threading.Lock()  # held by whoever extends the checkpoints

    def upto(self, e: int) -> float:
        if self._constant is not None:
            return self._constant**e
        if e > self._budget.max_step:
            budget = self._budget
            raise DomainError(
                e,
                "MultiplicativeLR with a step-dependent lr_lambda is a product over steps, computed once "
                f"per run; this spec's products answer up to step {budget.max_step}: at most "
                f"{MAX_PRODUCT_STEPS}, and fewer for heavy expressions ({PRODUCT_BUDGET:.0f} units of "
                f"one-time work in all, {budget.step_cost:.2f} per step here)",
            )
        if e // PRODUCT_CHECKPOINT < len(self._checkpoints):
            return self._walk(e)
        with self._lock:  # past the last checkpoint: computed once, by one thread at a time
            return self._walk(e)

    def _walk(self, e: int) -> float:
        """Multiply from the nearest known epoch at or below e up to e, checkpointing on the way."""
        checkpoints, k = self._checkpoints, PRODUCT_CHECKPOINT
        index = min(e // k, len(checkpoints) - 1)
        start, value = index * k, checkpoints[index]
        last, last_value = self._last
        if start < last <= e:
            start, value = last, last_value
        fn = self.fn
        while start < e:
            stop = min(e, (start // k + 1) * k)
            for t in range(start + 1, stop + 1):
                value *= _call(fn, t)
            start = stop
            if start == len(checkpoints) * k:  # only under the lock: a walk below it never gets here
                checkpoints.append(value)
        self._last = (e, value)
        return value

    def cached_bytes(self) -> int:
        return 0 if self._constant is not None else sys.getsizeof(self._checkpoints)


class _MultiplicativeNode(MultiplicativeNode):
    continues_in_sequence = True

    def __init__(
        self, bases: tuple[float, ...], products: list[_PrefixProducts], budget: ProductBudget
    ) -> None:
        super().__init__(bases)
        self._products = products
        self._series = list({id(p): p for p in products}.values())
        self._budget = budget
        # `cumulative` and `factors` also call the expression once, at epoch 0 or e.
        self.cost = CLOSED_FORM_COST + max(p.point_cost + p.fn.cost for p in products)

    def cached_bytes(self) -> int:
        return sum(p.cached_bytes() for p in self._series)

    @property
    def max_product_step(self) -> int | None:
        return self._budget.max_step if any(p.fn.depends_on_step for p in self._series) else None

    def cumulative(self, e: int, initial: bool) -> list[float]:
        if initial:
            return [p.upto(e) for p in self._products]
        # Outside construction, torch multiplies at epoch 0 too.
        return [_call(p.fn, 0) * p.upto(e) for p in self._products]

    def factors(self, e: int, initial: bool) -> list[float]:
        if e == 0 and initial:
            return [1.0] * self.n_groups
        return [_call(p.fn, e) for p in self._products]


class StepLR(TorchSpec):
    """LR = base_lr * gamma ** (epoch // step_size)."""

    type: Literal["StepLR"] = "StepLR"
    step_size: PositiveSteps
    gamma: NonNegative = 0.1

    def build(self, ctx: BuildContext) -> TorchNode:
        return _StepNode(capture_initial_lrs(ctx), self.step_size, self.gamma)


class _StepNode(UniformNode):
    def __init__(self, bases: tuple[float, ...], step_size: int, gamma: float) -> None:
        super().__init__(bases)
        self.step_size, self.gamma = step_size, gamma

    def total(self, e: int, initial: bool) -> float:
        return self.gamma ** (e // self.step_size)

    def factor(self, e: int, initial: bool) -> float:
        return self.gamma if e > 0 and e % self.step_size == 0 else 1.0


class MultiStepLR(TorchSpec):
    """LR = base_lr * gamma ** (number of milestones <= epoch); a repeated milestone counts twice."""

    type: Literal["MultiStepLR"] = "MultiStepLR"
    milestones: Annotated[list[Steps], Field(max_length=MAX_MILESTONES)]
    gamma: NonNegative = 0.1

    def build(self, ctx: BuildContext) -> TorchNode:
        return _MultiStepNode(capture_initial_lrs(ctx), sorted(self.milestones), self.gamma)


class _MultiStepNode(UniformNode):
    def __init__(self, bases: tuple[float, ...], milestones: list[int], gamma: float) -> None:
        super().__init__(bases)
        self.milestones, self.gamma = milestones, gamma

    def total(self, e: int, initial: bool) -> float:
        return self.gamma ** bisect_right(self.milestones, e)

    def factor(self, e: int, initial: bool) -> float:
        count = bisect_right(self.milestones, e) - bisect_right(self.milestones, e - 1)
        return self.gamma**count if count else 1.0


class ConstantLR(TorchSpec):
    """LR = base_lr * factor for epoch < total_iters, then base_lr."""

    type: Literal["ConstantLR"] = "ConstantLR"
    factor: Annotated[float, Field(gt=0, le=1)] = 1.0 / 3
    total_iters: PositiveSteps = 5

    def build(self, ctx: BuildContext) -> TorchNode:
        return _ConstantNode(capture_initial_lrs(ctx), self.factor, self.total_iters)


class _ConstantNode(UniformNode):
    def __init__(self, bases: tuple[float, ...], factor: float, total_iters: int) -> None:
        super().__init__(bases)
        self.f, self.total_iters = factor, total_iters
        self._restored = factor * (1.0 / factor)  # torch divides back by the factor at total_iters

    def total(self, e: int, initial: bool) -> float:
        return self.f if e < self.total_iters else self._restored

    def factor(self, e: int, initial: bool) -> float:
        if e == 0:
            return self.f
        return 1.0 / self.f if e == self.total_iters else 1.0


class LinearLR(TorchSpec):
    """LR = base_lr * (start_factor + (end_factor - start_factor) * min(epoch, total_iters) / total_iters)."""

    type: Literal["LinearLR"] = "LinearLR"
    start_factor: Annotated[float, Field(gt=0, le=1)] = 1.0 / 3
    end_factor: Fraction = 1.0
    total_iters: PositiveSteps = 5

    def build(self, ctx: BuildContext) -> TorchNode:
        return _LinearNode(capture_initial_lrs(ctx), self.start_factor, self.end_factor, self.total_iters)


class _LinearNode(UniformNode):
    def __init__(self, bases: tuple[float, ...], start: float, end: float, total_iters: int) -> None:
        super().__init__(bases)
        self.start, self.end, self.total_iters = start, end, total_iters

    def total(self, e: int, initial: bool) -> float:
        if e >= self.total_iters:
            return self.end  # exact; start + (end - start) rounds to +-1e-17 when end is 0
        return self.start + (self.end - self.start) * e / self.total_iters

    def factor(self, e: int, initial: bool) -> float:
        if e == 0:
            return self.start
        if e > self.total_iters:
            return 1.0
        delta = self.end - self.start
        return 1.0 + delta / (self.total_iters * self.start + (e - 1) * delta)


class ExponentialLR(TorchSpec):
    """LR = base_lr * gamma ** epoch."""

    type: Literal["ExponentialLR"] = "ExponentialLR"
    gamma: NonNegative

    def build(self, ctx: BuildContext) -> TorchNode:
        return _ExponentialNode(capture_initial_lrs(ctx), self.gamma)


class _ExponentialNode(UniformNode):
    def __init__(self, bases: tuple[float, ...], gamma: float) -> None:
        super().__init__(bases)
        self.gamma = gamma

    def total(self, e: int, initial: bool) -> float:
        return _power(self.gamma, e if initial else e + 1, e)

    def factor(self, e: int, initial: bool) -> float:
        return 1.0 if e == 0 and initial else self.gamma


def _power(base: float, exponent: int, step: int) -> float:
    try:
        return base**exponent
    except OverflowError:
        raise DomainError(step, f"the LR overflows: {base} ** {exponent}") from None


class PolynomialLR(TorchSpec):
    """LR = base_lr * (1 - min(epoch, total_iters) / total_iters) ** power."""

    type: Literal["PolynomialLR"] = "PolynomialLR"
    total_iters: PositiveSteps = 5
    power: NonNegative = 1.0

    def build(self, ctx: BuildContext) -> TorchNode:
        return _PolynomialNode(capture_initial_lrs(ctx), self.total_iters, self.power)


class _PolynomialNode(UniformNode):
    def __init__(self, bases: tuple[float, ...], total_iters: int, power: float) -> None:
        super().__init__(bases)
        self.total_iters, self.power = total_iters, power

    def total(self, e: int, initial: bool) -> float:
        value: float = (1.0 - min(self.total_iters, e) / self.total_iters) ** self.power
        return value if initial else self.factor(0, False) * value

    def factor(self, e: int, initial: bool) -> float:
        if (e == 0 and initial) or e > self.total_iters:
            return 1.0
        t = self.total_iters
        ratio: float = ((1.0 - e / t) / (1.0 - (e - 1) / t)) ** self.power
        return ratio


class CosineAnnealingLR(TorchSpec):
    """LR = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2.

    As in torch, the curve is periodic past T_max: it rises back to base_lr at 2 * T_max.
    """

    type: Literal["CosineAnnealingLR"] = "CosineAnnealingLR"
    T_max: PositiveSteps
    eta_min: NonNegative = 0.0

    def build(self, ctx: BuildContext) -> TorchNode:
        return _CosineNode(capture_initial_lrs(ctx), self.T_max, self.eta_min)


class _CosineNode(TorchNode):
    """Torch's update is affine here: lr' = eta_min + r(e) * (lr - eta_min)."""

    def __init__(self, bases: tuple[float, ...], t_max: int, eta_min: float) -> None:
        super().__init__(bases)
        self.t_max, self.eta_min = t_max, eta_min
        # With eta_min = 0 the update is a pure factor until T_max (past it, `cumulative` refuses).
        self.multiplies = eta_min == 0
        self._restart_step = (1 - math.cos(math.pi / t_max)) / 2

    def _curve(self, e: int) -> float:
        return 1 + math.cos(math.pi * e / self.t_max)

    def value_from(self, entry: Sequence[float], e: int, initial: bool) -> list[float]:
        eta = self.eta_min
        if not initial and e <= self.t_max:
            # Stepped outside construction, epoch 0 already applies a ratio; the curve
            # continues from there.
            start = [a * lr + b for (a, b), lr in zip(self.step_map(0, False), entry, strict=True)]
            scale = self._curve(e) / self._curve(0)
            return [eta + (lr - eta) * scale for lr in start]
        # Until T_max the curve decays from the incoming LR; after it, torch's restart step
        # re-anchors it on the scheduler's own base_lr.
        anchors = entry if e <= self.t_max else self.bases
        curve = self._curve(e)
        return [eta + (base - eta) * curve / 2 for base in anchors]

    def lrs_over(self, steps: range) -> list[list[float]]:
        eta, curve = self.eta_min, self._curve
        spans = [base - eta for base in self.bases]
        return [[eta + span * c / 2 for span in spans] for c in map(curve, steps)]

    def step_map(self, e: int, initial: bool) -> list[Affine]:
        eta = self.eta_min
        if e == 0 and initial:
            return [(1.0, 0.0)] * self.n_groups
        if (e - 1 - self.t_max) % (2 * self.t_max) == 0:
            return [(1.0, (base - eta) * self._restart_step) for base in self.bases]
        ratio = self._curve(e) / self._curve(e - 1)
        return [(ratio, eta - ratio * eta)] * self.n_groups

    def cumulative(self, e: int, initial: bool) -> list[float]:
        if e > self.t_max or (not initial and self.t_max == 1):
            raise DomainError(
                e,
                "a CosineAnnealingLR chained with multiplicative schedulers is answered up to "
                "T_max: past it, torch's restart step adds to the chained LR, which has no closed form",
            )
        value = self._curve(e) / 2
        if not initial:
            value *= self._curve(0) / self._curve(-1)
        return [value] * self.n_groups


SPECS = (
    LambdaLR,
    MultiplicativeLR,
    StepLR,
    MultiStepLR,
    ConstantLR,
    LinearLR,
    ExponentialLR,
    PolynomialLR,
    CosineAnnealingLR,
)
