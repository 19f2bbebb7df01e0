"""optax schedules (`optax.<schedule function>`): each function's own parameters and numbers.

A spec names an optax schedule function and passes it that function's keyword arguments, for
example `{"type": "optax.warmup_cosine_decay_schedule", "init_value": 0.0, "peak_value": 1e-3,
"warmup_steps": 500, "decay_steps": 10000}`. The step is optax's `count` argument.

optax's conventions are kept exactly:

- boundaries switch at `count >= boundary` (`join_schedules`, `piecewise_constant_schedule`);
- a joined schedule sees the count re-based to its own boundary (`count - boundary`);
- each formula is evaluated in double precision in optax's own operation order, so the values
  equal optax's with `jax_enable_x64` (optax's default float32 rounds them to about 1e-7).

The schedules carry absolute values (`init_value`, `peak_value`, `value`): the run's base LRs are
optional, and with several param groups group i gets `value * lrs[i] / lrs[0]`.

What optax accepts without complaint but lrtower refuses, each with a message naming the field:
negative values (they would give a negative LR), negative powers and exponents (an infinite LR
at the end of the transition), arguments that optax documents as "must be positive" or "must not
be zero", and `join_schedules` with a number of boundaries other than one fewer than schedules
(optax silently ignores the surplus). Step-count arguments are integers in [-2**53, 2**53].
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .base import (
    STEP_MAX,
    AbsoluteSpec,
    Loc,
    NonNegative,
    Positive,
    PositiveSteps,
    SignedSteps,
    SpecModel,
    Steps,
    ValueFn,
    spec_union,
)
from .ieee import ieee_pow

MAX_ITEMS = 10_000
"""The most boundaries (or cosine cycles) one optax spec may list."""
OPTAX_COST = 1.25
"""An optax formula's cost per step (see `Schedule.cost`)."""
JOIN_COST = 0.5
"""What a join adds to the cost of its costliest part: each step goes to one part only."""
INTERPOLATE_MAX = 2.0**969
"""The largest value piecewise interpolation handles: optax evaluates every segment's formula at
every count (up to 2**54 steps from its start), and a larger value overflows there, which turns
optax's answer into NaN."""


def field_error(loc: Loc, msg: str, value: Any) -> ValidationError:
    """A validation error at `loc` (relative to the model being validated)."""
    detail = InitErrorDetails(
        type=PydanticCustomError("value_error", "{msg}", {"msg": msg}), loc=loc, input=value
    )
    return ValidationError.from_exception_data("spec", [detail])


class OptaxSpec(AbsoluteSpec):
    """Base of the optax specs: `compile` gives the schedule as optax computes it, count -> value
    (a Python float, double precision)."""

    def value_cost(self) -> float:
        return OPTAX_COST


# ---------------------------------------------------------------------------------------------
# Formulas, each in optax's operation order. They are shared by the specs that optax builds out
# of one another (linear_schedule is a polynomial_schedule, the warmup schedules are joins, ...).


def polynomial(init: float, end: float, power: float, transition_steps: int, begin: int) -> ValueFn:
    if transition_steps <= 0:
        return lambda count: init
    span = init - end

    def value(count: int) -> float:
        done = min(max(count - begin, 0), transition_steps)
        frac = 1 - float(done) / float(transition_steps)
        return span * ieee_pow(frac, power) + end

    return value


def exponential(
    init: float,
    transition_steps: int,
    decay_rate: float,
    begin: int,
    staircase: bool,
    end: float | None,
) -> ValueFn:
    # optax holds init_value when transition_steps <= 0 or decay_rate == 0; lrtower refuses
    # both (optax documents them as "must be positive" and "must not be zero").
    clip: Callable[[float, float], float] = max if decay_rate < 1.0 else min

    def value(count: int) -> float:
        decreased = count - begin
        if decreased <= 0:
            decayed = init
        else:
            p = float(decreased) / float(transition_steps)
            if staircase:
                p = float(math.floor(p))
            decayed = init * ieee_pow(decay_rate, p)
        return decayed if end is None else clip(decayed, end)

    return value


def cosine_decay(init: float, decay_steps: int, alpha: float, exponent: float) -> ValueFn:
    steps = float(decay_steps)

    def value(count: int) -> float:
        done = min(float(count), steps)
        cosine = 0.5 * (1 + math.cos(math.pi * done / steps))
        return init * ((1 - alpha) * ieee_pow(cosine, exponent) + alpha)

    return value


def join(parts: Sequence[ValueFn], boundaries: Sequence[int]) -> ValueFn:
    """optax's `join_schedules`: the last boundary in list order with count >= boundary wins."""
    if not boundaries:
        return parts[0]
    # suffix[i] = min(boundaries[i:]) is non-decreasing, and the last i with
    # boundaries[i] <= count is the last i with suffix[i] <= count: a bisection.
    suffix = list(boundaries)
    for i in range(len(suffix) - 2, -1, -1):
        suffix[i] = min(suffix[i], suffix[i + 1])
    bounds = tuple(boundaries)

    def value(count: int) -> float:
        i = bisect_right(suffix, count)
        return parts[0](count) if i == 0 else parts[i](count - bounds[i - 1])

    return value


def warmup_cosine(
    init: float, peak: float, warmup_steps: int, decay_steps: int, end: float, exponent: float
) -> ValueFn:
    alpha = 0.0 if peak == 0.0 else end / peak
    return join(
        [
            polynomial(init, peak, 1.0, warmup_steps, 0),
            cosine_decay(peak, decay_steps - warmup_steps, alpha, exponent),
        ],
        [warmup_steps],
    )


def accumulated(init: float, scales: Mapping[int, float]) -> list[float]:
    """init, init*s1, init*s1*s2, ...: the scales multiplied in one at a time, in boundary order."""
    values = [init]
    for t in sorted(scales):
        values.append(values[-1] * scales[t])
    return values


def piecewise_constant(init: float, scales: Mapping[int, float]) -> ValueFn:
    thresholds = sorted(scales)
    values = accumulated(init, scales)

    def value(count: int) -> float:
        return values[bisect_right(thresholds, count)]

    return value


def piecewise_interpolate(kind: str, init: float, scales: Mapping[int, float]) -> ValueFn:
    bounds = sorted(scales)
    values = accumulated(init, scales)
    starts = [0, *bounds]
    # Segment j runs from starts[j] to bounds[j]; optax widens an empty one to 1 step.
    sizes = [float(max(b - a, 1)) for a, b in zip(starts, bounds, strict=False)]
    last = values[-1]
    n = len(bounds)

    if kind == "linear":

        def between(start: float, end: float, pct: float) -> float:
            return (end - start) * pct + start
    else:

        def between(start: float, end: float, pct: float) -> float:
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def value(count: int) -> float:
        j = bisect_right(bounds, count)
        if j == n:
            return last
        pct = float(count - starts[j]) / sizes[j]
        return between(values[j], values[j + 1], pct)

    return value


# ---------------------------------------------------------------------------------------------
# Validators shared by several specs.


def parse_boundaries_and_scales(value: Mapping[str, float] | None) -> dict[int, float]:
    """JSON object keys are strings: each must be a decimal integer in [-2**53, 2**53].

    Errors are located relative to the mapping (at the offending key).
    """
    out: dict[int, float] = {}
    for key, scale in (value or {}).items():
        try:
            step: int | None = int(key)
        except ValueError:
            step = None
        if step is None or str(step) != key:
            raise field_error(
                (key,), f'keys are integer steps written in decimal, such as "100"; got {key!r}', key
            )
        if abs(step) > STEP_MAX:
            raise field_error((key,), f"a boundary must lie within +-2**53, got {key}", key)
        out[step] = scale
    return out


def check_boundaries_and_scales(
    value: dict[str, float] | None, info: ValidationInfo, limit: float = math.inf
) -> dict[str, float] | None:
    """Validate the keys, and that init_value times the scales stays a usable number."""
    parsed = parse_boundaries_and_scales(value)
    init = info.data.get("init_value")
    if init is not None:
        for v in accumulated(init, parsed):
            if not v < limit:
                raise ValueError(f"init_value times the scales reaches {v!r}, too large for a learning rate")
    return value


# ---------------------------------------------------------------------------------------------
# Specs, one per optax schedule function, in optax's argument order with optax's defaults.


class ConstantSchedule(OptaxSpec):
    """`optax.constant_schedule`: value(t) = value.

    Args:
        value: the value held at every step.

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "optax.constant_schedule", "value": 0.1}, None)
    >>> [s.lrs(t) for t in (0, 10**12)]
    [[0.1], [0.1]]
    """

    type: Literal["optax.constant_schedule"] = "optax.constant_schedule"
    value: NonNegative

    def compile(self) -> ValueFn:
        v = self.value
        return lambda count: v


class PolynomialSchedule(OptaxSpec):
    """`optax.polynomial_schedule`: polynomial transition from init_value to end_value.

    value(t) = (I - E) * (1 - c / T) ** P + E with c = clip(t - B, 0, T), where I = init_value,
    E = end_value, P = power, T = transition_steps, B = transition_begin. So the value is I until
    step B and E from step B + T on. With T <= 0 the value is I at every step (as in optax).

    Args:
        init_value: value before the transition.
        end_value: value after it.
        power: the polynomial's power (>= 0).
        transition_steps: length of the transition in steps.
        transition_begin: steps held at init_value before the transition starts.

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "optax.polynomial_schedule", "init_value": 1.0,
    ...     "end_value": 0.01, "power": 2, "transition_steps": 100, "transition_begin": 5}, None)
    >>> [round(s.lrs(t)[0], 4) for t in (0, 5, 6, 104, 105, 110)]
    [1.0, 1.0, 0.9803, 0.0101, 0.01, 0.01]
    """

    type: Literal["optax.polynomial_schedule"] = "optax.polynomial_schedule"
    init_value: NonNegative
    end_value: NonNegative
    power: NonNegative
    transition_steps: SignedSteps
    transition_begin: Steps = 0

    def compile(self) -> ValueFn:
        return polynomial(
            self.init_value, self.end_value, self.power, self.transition_steps, self.transition_begin
        )


class LinearSchedule(OptaxSpec):
    """`optax.linear_schedule`: `polynomial_schedule` with power 1.

    value(t) = (I - E) * (1 - c / T) + E with c = clip(t - B, 0, T); I until step B, E from B + T.

    Args:
        init_value: value before the transition.
        end_value: value after it.
        transition_steps: length of the transition (<= 0: the value stays init_value).
        transition_begin: steps held at init_value before the transition starts.

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "optax.linear_schedule", "init_value": 1.0,
    ...     "end_value": 0.01, "transition_steps": 100}, None)
    >>> [round(s.lrs(t)[0], 6) for t in (0, 50, 100, 150)]
    [1.0, 0.505, 0.01, 0.01]
    """

    type: Literal["optax.linear_schedule"] = "optax.linear_schedule"
    init_value: NonNegative
    end_value: NonNegative
    transition_steps: SignedSteps
    transition_begin: Steps = 0

    def compile(self) -> ValueFn:
        return polynomial(self.init_value, self.end_value, 1.0, self.transition_steps, self.transition_begin)


class ExponentialDecay(OptaxSpec):
    """`optax.exponential_decay`: continuous or staircase exponential decay.

    value(t) = I for t <= B, else I * r ** p with p = (t - B) / T (floored when staircase); then,
    when end_value E is given, max(value, E) if r < 1 else min(value, E) -- at every step, t <= B
    included. I = init_value, r = decay_rate, T = transition_steps, B = transition_begin.

    Args:
        init_value: the initial value.
        transition_steps: steps per factor r (> 0).
        decay_rate: the factor per transition_steps (> 0; above 1 it grows).
        transition_begin: steps held at init_value before the decay starts.
        staircase: decay at whole multiples of transition_steps only.
        end_value: a lower bound when r < 1, an upper bound otherwise.

    A growing schedule (r > 1) without end_value overflows at some step; lrtower answers there
    with a domain error instead of optax's inf.

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "optax.exponential_decay", "init_value": 1.0,
    ...     "transition_steps": 10, "decay_rate": 0.5, "staircase": True, "end_value": 0.1}, None)
    >>> [s.lrs(t)[0] for t in (0, 9, 10, 25, 1000)]
    [1.0, 1.0, 0.5, 0.25, 0.1]
    """

    type: Literal["optax.exponential_decay"] = "optax.exponential_decay"
    init_value: NonNegative
    transition_steps: PositiveSteps
    decay_rate: Positive
    transition_begin: Steps = 0
    staircase: bool = False
    end_value: NonNegative | None = None

    def compile(self) -> ValueFn:
        return exponential(
            self.init_value,
            self.transition_steps,
            self.decay_rate,
            self.transition_begin,
            self.staircase,
            self.end_value,
        )


class CosineDecaySchedule(OptaxSpec):
    """`optax.cosine_decay_schedule`: cosine decay from init_value to alpha * init_value.

    value(t) = I * ((1 - alpha) * (0.5 * (1 + cos(pi * c / T))) ** exponent + alpha) with
    c = min(t, T), I = init_value, T = decay_steps.

    Args:
        init_value: the initial value.
        decay_steps: length of the decay (> 0).
        alpha: the final value as a fraction of init_value.
        exponent: the power of the cosine factor (>= 0).

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "optax.cosine_decay_schedule", "init_value": 1.0,
    ...     "decay_steps": 100, "alpha": 0.1}, None)
    >>> [round(s.lrs(t)[0], 6) for t in (0, 50, 100, 200)]
    [1.0, 0.55, 0.1, 0.1]
    """

    type: Literal["optax.cosine_decay_schedule"] = "optax.cosine_decay_schedule"
    init_value: NonNegative
    decay_steps: PositiveSteps
    alpha: NonNegative = 0.0
    exponent: NonNegative = 1.0

    def compile(self) -> ValueFn:
        return cosine_decay(self.init_value, self.decay_steps, self.alpha, self.exponent)


class CosineKwargs(OptaxSpec):
    """The arguments of `optax.warmup_cosine_decay_schedule`, also one cycle of `sgdr_schedule`."""

    init_value: NonNegative
    peak_value: NonNegative
    warmup_steps: Steps
    decay_steps: PositiveSteps
    end_value: NonNegative = 0.0
    exponent: NonNegative = 1.0

    @field_validator("decay_steps")
    @classmethod
    def _after_warmup(cls, value: int, info: ValidationInfo) -> int:
        """optax's cosine phase lasts decay_steps - warmup_steps steps, and must last at least one."""
        warmup = info.data.get("warmup_steps")
        if warmup is not None and value <= warmup:
            raise ValueError(
                f"must exceed warmup_steps ({warmup}): the cosine phase lasts decay_steps - warmup_steps"
                f" steps; got {value}"
            )
        return value

    def value_cost(self) -> float:
        return JOIN_COST + OPTAX_COST

    def compile(self) -> ValueFn:
        return warmup_cosine(
            self.init_value,
            self.peak_value,
            self.warmup_steps,
            self.decay_steps,
            self.end_value,
            self.exponent,
        )


class WarmupCosineDecaySchedule(CosineKwargs):
    """`optax.warmup_cosine_decay_schedule`: linear warmup, then cosine decay to end_value.

    For t < W: linear_schedule(init_value, peak_value, W)(t). From W on:
    cosine_decay_schedule(peak_value, D - W, alpha=end_value / peak_value, exponent)(t - W)
    (alpha = 0 when peak_value is 0). W = warmup_steps, D = decay_steps; the whole schedule lasts
    D steps, warmup included.

    Args:
        init_value: value at step 0.
        peak_value: value at the end of the warmup.
        warmup_steps: length of the warmup.
        decay_steps: length of warmup plus decay (> warmup_steps).
        end_value: value from step D on.
        exponent: the power of the cosine factor (>= 0).

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "optax.warmup_cosine_decay_schedule", "init_value": 0.0,
    ...     "peak_value": 1.0, "warmup_steps": 10, "decay_steps": 110, "end_value": 0.1}, None)
    >>> [round(s.lrs(t)[0], 6) for t in (0, 5, 10, 60, 110, 10**9)]
    [0.0, 0.5, 1.0, 0.55, 0.1, 0.1]
    """

    type: Literal["optax.warmup_cosine_decay_schedule"] = "optax.warmup_cosine_decay_schedule"


class WarmupExponentialDecaySchedule(OptaxSpec):
    """`optax.warmup_exponential_decay_schedule`: linear warmup, then exponential decay.

    For t < W: linear_schedule(init_value, peak_value, W)(t). From W on:
    exponential_decay(peak_value, transition_steps, decay_rate, transition_begin, staircase,
    end_value)(t - W), with W = warmup_steps.

    Args:
        init_value: value at step 0.
        peak_value: value at the end of the warmup.
        warmup_steps: length of the warmup.
        transition_steps: steps per factor decay_rate (> 0).
        decay_rate: the factor per transition_steps (> 0).
        transition_begin: steps after the warmup held at peak_value.
        staircase: decay at whole multiples of transition_steps only.
        end_value: a lower bound when decay_rate < 1, an upper bound otherwise.
    """

    type: Literal["optax.warmup_exponential_decay_schedule"] = "optax.warmup_exponential_decay_schedule"
    init_value: NonNegative
    peak_value: NonNegative
    warmup_steps: Steps
    transition_steps: PositiveSteps
    decay_rate: Positive
    transition_begin: Steps = 0
    staircase: bool = False
    end_value: NonNegative | None = None

    def value_cost(self) -> float:
        return JOIN_COST + OPTAX_COST

    def compile(self) -> ValueFn:
        return join(
            [
                polynomial(self.init_value, self.peak_value, 1.0, self.warmup_steps, 0),
                exponential(
                    self.peak_value,
                    self.transition_steps,
                    self.decay_rate,
                    self.transition_begin,
                    self.staircase,
                    self.end_value,
                ),
            ],
            [self.warmup_steps],
        )


class WarmupConstantSchedule(OptaxSpec):
    """`optax.warmup_constant_schedule`: linear warmup to peak_value, then constant.

    value(t) = linear_schedule(init_value, peak_value, warmup_steps)(t). As in optax, with
    warmup_steps = 0 the value is init_value at every step.

    Args:
        init_value: value at step 0.
        peak_value: value from warmup_steps on.
        warmup_steps: length of the warmup.
    """

    type: Literal["optax.warmup_constant_schedule"] = "optax.warmup_constant_schedule"
    init_value: NonNegative
    peak_value: NonNegative
    warmup_steps: Steps

    def compile(self) -> ValueFn:
        return polynomial(self.init_value, self.peak_value, 1.0, self.warmup_steps, 0)


class PiecewiseConstantSchedule(OptaxSpec):
    """`optax.piecewise_constant_schedule`: init_value times every scale whose boundary is reached.

    value(t) = init_value * s_1 * ... * s_k over the boundaries b_i <= t, multiplied in boundary
    order (a boundary switches at t >= b_i).

    Args:
        init_value: the value before the first boundary.
        boundaries_and_scales: `{step: scale}`. optax takes a dict with int keys; JSON object keys
            are strings, so lrtower takes decimal integer strings (`{"100": 0.1, "200": 0.1}`).
            Scales must be >= 0.

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "optax.piecewise_constant_schedule", "init_value": 1.0,
    ...     "boundaries_and_scales": {"100": 0.1, "200": 0.5}}, None)
    >>> [s.lrs(t)[0] for t in (0, 99, 100, 200)]
    [1.0, 1.0, 0.1, 0.05]
    """

    type: Literal["optax.piecewise_constant_schedule"] = "optax.piecewise_constant_schedule"
    init_value: NonNegative
    boundaries_and_scales: Annotated[dict[str, NonNegative], Field(max_length=MAX_ITEMS)] | None = None

    @field_validator("boundaries_and_scales")
    @classmethod
    def _keys(cls, value: dict[str, float] | None, info: ValidationInfo) -> dict[str, float] | None:
        return check_boundaries_and_scales(value, info)

    def compile(self) -> ValueFn:
        return piecewise_constant(self.init_value, parse_boundaries_and_scales(self.boundaries_and_scales))


class PiecewiseInterpolateSchedule(OptaxSpec):
    """`optax.piecewise_interpolate_schedule`: interpolation between accumulated scaled values.

    With sorted boundaries b_1 < ... < b_n, b_0 = 0 and values v_0 = init_value,
    v_i = v_{i-1} * s_i: for b_j <= t < b_{j+1}, value(t) = f(v_j, v_{j+1}, (t - b_j) /
    max(b_{j+1} - b_j, 1)), and v_n from t >= b_n on. f is linear, (end - start) * pct + start,
    or cosine, end + (start - end) / 2 * (cos(pi * pct) + 1).

    Args:
        interpolate_type: "linear" or "cosine".
        init_value: the value at step 0.
        boundaries_and_scales: `{step: scale}` with decimal integer string keys, scales >= 0.

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "optax.piecewise_interpolate_schedule",
    ...     "interpolate_type": "linear", "init_value": 1.0,
    ...     "boundaries_and_scales": {"4": 0.1, "8": 0.01}}, None)
    >>> [round(s.lrs(t)[0], 6) for t in (0, 2, 4, 6, 8, 10)]
    [1.0, 0.55, 0.1, 0.0505, 0.001, 0.001]
    """

    type: Literal["optax.piecewise_interpolate_schedule"] = "optax.piecewise_interpolate_schedule"
    interpolate_type: Literal["linear", "cosine"]
    init_value: NonNegative
    boundaries_and_scales: Annotated[dict[str, NonNegative], Field(max_length=MAX_ITEMS)] | None = None

    @field_validator("boundaries_and_scales")
    @classmethod
    def _keys(cls, value: dict[str, float] | None, info: ValidationInfo) -> dict[str, float] | None:
        return check_boundaries_and_scales(value, info, INTERPOLATE_MAX)

    def compile(self) -> ValueFn:
        return piecewise_interpolate(
            self.interpolate_type, self.init_value, parse_boundaries_and_scales(self.boundaries_and_scales)
        )


class _Onecycle(OptaxSpec):
    """What the onecycle schedules share: the interpolation they derive must be usable.

    Each class declares its own fields, in optax's argument order.
    """

    interpolate_type: ClassVar[Literal["linear", "cosine"]]

    if TYPE_CHECKING:
        transition_steps: int
        peak_value: float
        div_factor: float
        final_div_factor: float

    def scales(self) -> dict[int, float]:
        """The boundaries_and_scales optax builds (a dict literal: a repeated key keeps the last)."""
        raise NotImplementedError

    def pcts(self) -> dict[str, float]:
        raise NotImplementedError

    @model_validator(mode="after")
    def _derived_schedule(self) -> _Onecycle:
        for name, pct in self.pcts().items():
            if abs(pct * self.transition_steps) > STEP_MAX:
                raise field_error(
                    (name,), f"{name} * transition_steps must lie within +-2**53; got {pct!r}", pct
                )
        try:
            scales = self.scales()
        except ZeroDivisionError:  # optax raises the same, computing 1 / (div_factor * final_div_factor)
            raise field_error(
                ("final_div_factor",),
                f"div_factor * final_div_factor is 0 in double precision; got {self.final_div_factor!r}",
                self.final_div_factor,
            ) from None
        for v in accumulated(self.peak_value / self.div_factor, scales):
            if not v < INTERPOLATE_MAX:
                raise field_error(
                    ("div_factor",),
                    f"peak_value, div_factor and final_div_factor give a value of {v!r}, too large;"
                    f" got div_factor={self.div_factor!r}",
                    self.div_factor,
                )
        return self

    def compile(self) -> ValueFn:
        return piecewise_interpolate(self.interpolate_type, self.peak_value / self.div_factor, self.scales())


class LinearOnecycleSchedule(_Onecycle):
    """`optax.linear_onecycle_schedule`: three linear phases (up, down, anneal).

    A `piecewise_interpolate_schedule("linear", peak_value / div_factor, {int(pct_start * T):
    div_factor, int(pct_final * T): 1 / div_factor, T: 1 / final_div_factor})` with
    T = transition_steps: from peak/div up to peak at pct_start * T, back to peak/div at
    pct_final * T, then down to peak / div / final_div_factor at T. (As in optax, when two of these
    boundaries coincide the later entry replaces the earlier one.)

    Args:
        transition_steps: length of the cycle (> 0).
        peak_value: the value at the top of the cycle.
        pct_start: fraction of the cycle spent rising.
        pct_final: fraction of the cycle spent rising and falling back.
        div_factor: the first value is peak_value / div_factor (> 0).
        final_div_factor: the last value is peak_value / div_factor / final_div_factor (> 0).

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "optax.linear_onecycle_schedule", "transition_steps": 100,
    ...     "peak_value": 1.0, "div_factor": 10.0}, None)
    >>> [round(s.lrs(t)[0], 6) for t in (0, 15, 30, 85, 100)]
    [0.1, 0.55, 1.0, 0.1, 1e-05]
    """

    interpolate_type = "linear"
    type: Literal["optax.linear_onecycle_schedule"] = "optax.linear_onecycle_schedule"
    transition_steps: PositiveSteps
    peak_value: NonNegative
    pct_start: float = 0.3
    pct_final: float = 0.85
    div_factor: Positive = 25.0
    final_div_factor: Positive = 1e4

    def pcts(self) -> dict[str, float]:
        return {"pct_start": self.pct_start, "pct_final": self.pct_final}

    def scales(self) -> dict[int, float]:
        ts, div = self.transition_steps, self.div_factor
        return {
            int(self.pct_start * ts): div,
            int(self.pct_final * ts): 1.0 / div,
            ts: 1.0 / self.final_div_factor,
        }


class CosineOnecycleSchedule(_Onecycle):
    """`optax.cosine_onecycle_schedule`: cosine rise to peak_value, then cosine anneal.

    A `piecewise_interpolate_schedule("cosine", peak_value / div_factor, {int(pct_start * T):
    div_factor, T: 1 / (div_factor * final_div_factor)})` with T = transition_steps.

    Args:
        transition_steps: length of the cycle (> 0).
        peak_value: the value at the top of the cycle.
        pct_start: fraction of the cycle spent rising.
        div_factor: the first value is peak_value / div_factor (> 0).
        final_div_factor: the last value is peak_value / div_factor / final_div_factor (> 0).

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "optax.cosine_onecycle_schedule", "transition_steps": 100,
    ...     "peak_value": 1.0, "pct_start": 0.5, "div_factor": 10.0, "final_div_factor": 100.0}, None)
    >>> [round(s.lrs(t)[0], 6) for t in (0, 25, 50, 75, 100)]
    [0.1, 0.55, 1.0, 0.5005, 0.001]
    """

    interpolate_type = "cosine"
    type: Literal["optax.cosine_onecycle_schedule"] = "optax.cosine_onecycle_schedule"
    transition_steps: PositiveSteps
    peak_value: NonNegative
    pct_start: float = 0.3
    div_factor: Positive = 25.0
    final_div_factor: Positive = 1e4

    def pcts(self) -> dict[str, float]:
        return {"pct_start": self.pct_start}

    def scales(self) -> dict[int, float]:
        ts, div = self.transition_steps, self.div_factor
        return {int(self.pct_start * ts): div, int(ts): 1.0 / (div * self.final_div_factor)}


class SgdrSchedule(OptaxSpec):
    """`optax.sgdr_schedule`: warm restarts, each cycle a `warmup_cosine_decay_schedule`.

    Cycle i is warmup_cosine_decay_schedule(**cosine_kwargs[i]) and starts at the sum of the
    decay_steps of the cycles before it (joined as `join_schedules`, so it sees its count from
    that start). The last cycle runs on past its end at its end_value.

    Args:
        cosine_kwargs: one object per cycle with the arguments of warmup_cosine_decay_schedule
            (init_value, peak_value, warmup_steps, decay_steps, end_value, exponent).

    >>> from lrtower_server.schedules import build_schedule
    >>> cycle = {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 10, "decay_steps": 110}
    >>> s = build_schedule({"type": "optax.sgdr_schedule", "cosine_kwargs": [cycle, cycle]}, None)
    >>> [round(s.lrs(t)[0], 6) for t in (0, 10, 60, 110, 120, 170)]
    [0.0, 1.0, 0.5, 0.0, 1.0, 0.5]
    """

    type: Literal["optax.sgdr_schedule"] = "optax.sgdr_schedule"
    cosine_kwargs: Annotated[list[CosineKwargs], Field(min_length=1, max_length=MAX_ITEMS)]

    @field_validator("cosine_kwargs")
    @classmethod
    def _total(cls, value: list[CosineKwargs]) -> list[CosineKwargs]:
        total = sum(c.decay_steps for c in value)
        if total > STEP_MAX:
            raise ValueError(f"the cycles' decay_steps add up to {total}, beyond 2**53 steps")
        return value

    def value_cost(self) -> float:
        return JOIN_COST + self.cosine_kwargs[0].value_cost()  # every cycle is the same formula

    def compile(self) -> ValueFn:
        parts = [c.compile() for c in self.cosine_kwargs]
        boundaries = []
        step = 0
        for c in self.cosine_kwargs:
            step += c.decay_steps
            boundaries.append(step)
        return join(parts, boundaries[:-1])


def _only_optax(value: Any) -> Any:
    """A nested schedule of another family gets a clear error rather than 'unknown type'."""
    name = value.get("type") if isinstance(value, Mapping) else None
    if isinstance(name, str) and not name.startswith("optax."):
        raise field_error(
            ("type",), f"join_schedules joins optax schedules only (optax.<name>), got {name!r}", name
        )
    return value


class JoinSchedules(OptaxSpec):
    """`optax.join_schedules`: schedules applied one after another, switching at boundaries.

    value(t) = schedules[i](t - boundaries[i - 1]) for the last i (in list order) with
    t >= boundaries[i - 1]; schedules[0](t) when t is below every boundary. Each nested schedule
    sees the count re-based to its own start.

    Args:
        schedules: the optax specs to join, in order.
        boundaries: one fewer than schedules: the step at which each later schedule takes over.

    >>> from lrtower_server.schedules import build_schedule
    >>> s = build_schedule({"type": "optax.join_schedules", "boundaries": [10], "schedules": [
    ...     {"type": "optax.linear_schedule", "init_value": 0.0, "end_value": 1.0, "transition_steps": 10},
    ...     {"type": "optax.exponential_decay", "init_value": 1.0, "transition_steps": 1, "decay_rate": 0.5},
    ... ]}, None)
    >>> [s.lrs(t)[0] for t in (0, 5, 10, 11, 13)]
    [0.0, 0.5, 1.0, 0.5, 0.125]
    """

    type: Literal["optax.join_schedules"] = "optax.join_schedules"
    schedules: Annotated[list[OptaxChild], Field(min_length=1, max_length=MAX_ITEMS)]
    boundaries: Annotated[list[SignedSteps], Field(max_length=MAX_ITEMS)]

    @field_validator("boundaries")
    @classmethod
    def _one_fewer(cls, value: list[int], info: ValidationInfo) -> list[int]:
        schedules = info.data.get("schedules")
        if schedules is not None and len(value) != len(schedules) - 1:
            raise ValueError(
                f"expected {len(schedules) - 1} boundaries (one fewer than the {len(schedules)} schedules),"
                f" got {len(value)}: {value}"
            )
        return value

    def value_cost(self) -> float:
        return JOIN_COST + max(s.value_cost() for s in self.schedules)

    def compile(self) -> ValueFn:
        return join([s.compile() for s in self.schedules], self.boundaries)


SPECS: tuple[type[SpecModel], ...] = (
    ConstantSchedule,
    LinearSchedule,
    PolynomialSchedule,
    ExponentialDecay,
    CosineDecaySchedule,
    WarmupCosineDecaySchedule,
    WarmupExponentialDecaySchedule,
    WarmupConstantSchedule,
    PiecewiseConstantSchedule,
    PiecewiseInterpolateSchedule,
    JoinSchedules,
    SgdrSchedule,
    CosineOnecycleSchedule,
    LinearOnecycleSchedule,
)
if TYPE_CHECKING:
    OptaxChild = OptaxSpec
else:
    OptaxChild = Annotated[spec_union(SPECS), BeforeValidator(_only_optax)]
"""A schedule nested in `join_schedules`: any optax spec, and only those."""
JoinSchedules.model_rebuild()
