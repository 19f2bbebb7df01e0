"""What every schedule family shares: the compiled `Schedule`, the build context, the errors.

A spec model (pydantic, one per schedule type) validates its parameters once and then
`build(ctx)` compiles them into a `Schedule`: a pure object mapping a step to the LR of every
param group (and the momentum, where the schedule cycles it). Every family compiles to that
one shape: `lrs(step)`, and `lrs_over(steps)` for a range in one pass. A family keeps its
library's own build hook, so that it reads beside the reference it reproduces:
- optax, Keras and MXNet compute one value (`AbsoluteSpec.compile`, like optax's schedule
  function), scaled per group: a `ScaledSchedule`;
- transformers computes a multiplier of the base LRs (`HFSpec.multiplier`, its `lr_lambda`):
  a `ScaledSchedule` too;
- timm computes every group at once (`TimmSpec.get_lr`, its `_get_lr`): a `GroupSchedule`;
- torch schedulers are `TorchNode`s, which composites also step from a given LR
  (`torch_common.py`).
Evaluation is closed form, so its cost does not depend on the step; the one exception,
MultiplicativeLR's product over steps, is bounded by `ProductBudget`.

Every compiled schedule carries `cost`, an estimate of one `at(step)` per param group, so that a
caller can bound a request's work (points x groups x cost) before doing it. The unit is one
`at(step)` of a one-group CosineAnnealingLR: about 0.9 µs on the reference machine (a 2-core Xeon
at 2.5 GHz, Python 3.11; docs/performance.md). The figures are measured, rounded up, so that
the estimate is an upper bound rather than an average: a closed form costs 1 to 2 units, an
expression `Expression.cost`, a composite its own overhead plus the children it evaluates.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

STEP_MAX = 2**53
"""The largest step the engine answers (SPEC §2): every step is exact as a float."""

Loc = tuple[str | int, ...]


def whole_number(value: Any) -> Any:
    """A whole-number float as the int it is (`20000.0` -> 20000); anything else unchanged.

    JSON has one number type, and JSON Schema's `integer` is any number whose fraction is zero,
    so `20000.0` and `2e4` are integers to every generated client; a serializer that writes
    floats (Python's `json` for `total / 10`) sends them so. A fraction, a bool or a string
    still fails the strict int validation that follows. The query reads the same numbers
    (`service/api/wire.py`)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = BeforeValidator(whole_number)
"""Makes an integer field of a JSON body take whole-number floats. Place it after the field's
bounds in `Annotated`, so that they stay in its JSON schema (`minimum`, `maximum`)."""
Steps = Annotated[int, Field(ge=0, le=STEP_MAX), WholeNumber]
"""A count of steps, 0 to 2**53."""
PositiveSteps = Annotated[int, Field(ge=1, le=STEP_MAX), WholeNumber]
"""A count of steps that is at least 1 (a length something is divided by)."""
SignedSteps = Annotated[int, Field(ge=-STEP_MAX, le=STEP_MAX), WholeNumber]
"""A step that may lie before step 0 (optax's boundaries, Keras' boundaries)."""
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]

ValueFn = Callable[[int], float]
"""A compiled schedule of one value: step -> value."""

CLOSED_FORM_COST = 1.0
"""The cost unit: one `at(step)` of a one-group CosineAnnealingLR, about 0.9 µs (see the module)."""
MAX_SPEC_COST = 4096.0
"""The most a spec's `cost` may be, in cost units per step and param group (about 4 ms); one step
of 64 param groups, the most a run has, is then at most 262,144 units.

A warmup + cosine SequentialLR costs 2 units and a LambdaLR of 200 nodes at most 37, so only
products over steps come near it: a step-dependent MultiplicativeLR costs `PRODUCT_CHECKPOINT`
evaluations of its expression per step (194 for `1 - 1 / (epoch + 10)`), and four such in a chain,
the costliest spec in the tests, 777."""
MAX_PRODUCT_STEPS = 1_000_000
"""The highest step a product over steps (MultiplicativeLR) ever answers; heavy expressions get
fewer steps, see `ProductBudget`."""
MAX_PRODUCT_SERIES = 4
"""The most step-dependent MultiplicativeLR expressions one spec may hold."""
PRODUCT_BUDGET = 1_500_000.0
"""The one-time work, in cost units, of computing all of a spec's products over steps up to their
highest step: at most about 1 s (measured: an expression call in the product's loop costs at most
0.7 of its `Expression.cost`)."""
PRODUCT_CHECKPOINT = 256
"""The products over steps keep the running product of every 256th step; any other step is at
most 255 multiplications away from one (8 bytes per 256 steps: 32 KB at step 10**6)."""


@dataclass(frozen=True)
class FieldError:
    """One invalid field: where it is in the spec, why it is wrong, and the value given."""

    loc: Loc
    msg: str
    value: Any = None

    def prefixed(self, *prefix: str | int) -> FieldError:
        return FieldError((*prefix, *self.loc), self.msg, self.value)


class SpecError(ValueError):
    """The spec cannot be built. Carries every invalid field, each with its path."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc)) or '<spec>'}: {e.msg}" for e in self.errors))

    @classmethod
    def at(cls, loc: Loc, msg: str, value: Any = None) -> SpecError:
        return cls([FieldError(loc, msg, value)])

    def prefixed(self, *prefix: str | int) -> SpecError:
        return SpecError([e.prefixed(*prefix) for e in self.errors])


class DomainError(ValueError):
    """The spec is valid, but the schedule has no value at this step (the reference raises)."""

    def __init__(self, step: int, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"step {step}: {reason}")


class ProductBudget:
    """The products over steps of one spec (MultiplicativeLR), and the highest step they answer.

    A step-dependent MultiplicativeLR answers epoch e with the product of its expression at
    1..e: the first time an epoch is asked, every epoch up to it is computed, once per run. The
    products of one spec share one budget of that one-time work: with `step_cost` the cost of one
    epoch of all of them together, they answer epochs up to
    `min(MAX_PRODUCT_STEPS, floor(PRODUCT_BUDGET / step_cost))`, so that reaching the last one
    from scratch costs at most PRODUCT_BUDGET units (about 1 s) whatever the expressions.
    """

    def __init__(self) -> None:
        self.series = 0
        self.step_cost = 0.0
        self.max_step = MAX_PRODUCT_STEPS

    def add(self, step_cost: float) -> None:
        """Count one more product whose every epoch costs `step_cost` units."""
        self.series += 1
        self.step_cost += step_cost
        self.max_step = min(MAX_PRODUCT_STEPS, math.floor(PRODUCT_BUDGET / self.step_cost))


@dataclass
class BuildContext:
    """What a spec is built against: the run's base LR of every param group.

    `base_lrs` is None when the run gave none; then schedules that carry absolute values
    (optax, keras, mxnet) answer for one group, and the others refuse to build.

    `initial_lrs` mirrors torch's `param_group["initial_lr"]`: the first torch scheduler
    constructed on an optimizer records it, and OneCycleLR overwrites it. Torch schedulers are
    built in the order a user would construct them (children before their composite), so a
    composite's children see exactly the base LRs torch would give them.

    A context lives while one spec is built: `finish()` ends it, running what waited for the
    values as the last writer left them (`when_built`), and no compiled schedule keeps it.
    """

    base_lrs: tuple[float, ...] | None
    initial_lrs: tuple[float, ...] | None = field(default=None)
    group_values: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Other values torch schedulers write into the param groups at construction
    (OneCycleLR's `max_lr`, `min_lr`, and the momentum bounds), as the last writer left them."""
    products: ProductBudget = field(default_factory=ProductBudget)
    """The products over steps the spec holds (MultiplicativeLR), which share one budget."""
    _waiting: list[Callable[[BuildContext], None]] = field(default_factory=list)

    def when_built(self, settle: Callable[[BuildContext], None]) -> None:
        """Call `settle(ctx)` once every scheduler of the spec is built: a value torch reads from
        the param groups at every step is the one the last scheduler constructed wrote there."""
        self._waiting.append(settle)

    def finish(self) -> None:
        """End the build: settle what waited, with the values as they now stand, once."""
        waiting, self._waiting = self._waiting, []
        for settle in waiting:
            settle(self)

    def require_initial_lrs(self) -> tuple[float, ...]:
        return self.initial_lrs if self.initial_lrs is not None else self.require_base_lrs()

    @property
    def n_groups(self) -> int:
        return 1 if self.base_lrs is None else len(self.base_lrs)

    def require_base_lrs(self) -> tuple[float, ...]:
        if self.base_lrs is None:
            raise SpecError.at((), "this schedule scales the run's base LRs: give the run `lr` or `lrs`")
        return self.base_lrs

    def group_ratios(self) -> tuple[float, ...]:
        """Group i's share of an absolute schedule's value: lrs[i] / lrs[0] (SPEC §2)."""
        if self.base_lrs is None:
            return (1.0,)
        first = self.base_lrs[0]
        if first == 0:
            raise SpecError.at(
                ("lrs", 0), "must be non-zero: other groups are scaled by lrs[i] / lrs[0]", first
            )
        return tuple(lr / first for lr in self.base_lrs)

    def per_group(self, loc: Loc, value: float | Sequence[float]) -> tuple[float, ...]:
        """Expand a scalar-or-list parameter to one value per group, as torch's `_format_param`."""
        if isinstance(value, (int, float)):
            return (float(value),) * self.n_groups
        if len(value) != self.n_groups:
            raise SpecError.at(
                loc,
                f"expected {self.n_groups} values, one per param group, but got {len(value)}",
                list(value),
            )
        return tuple(float(v) for v in value)


class Schedule(ABC):
    """A compiled schedule: step -> LR of every param group. Immutable and pure.

    `at(step)` is the checked entry point; `lrs` and `momentum` are what each family implements.
    """

    n_groups: int
    has_momentum: bool = False
    cost: float = CLOSED_FORM_COST
    """The estimated cost of one `at(step)` per param group, in units of a one-group
    CosineAnnealingLR's `at(step)` (about 0.9 µs), set at build. It bounds rather than averages:
    a request of P points over G groups costs at most about P * G * cost units. It does not
    depend on the number of groups, nor on the step (the one-time work of a product over steps
    is bounded apart, see `ProductBudget`)."""

    def cached_bytes(self) -> int:
        """The bytes this schedule has cached beyond its fixed size, for memory accounting.

        Only products over steps (MultiplicativeLR) cache: their checkpoints grow as later
        epochs are asked, 8 bytes per PRODUCT_CHECKPOINT epochs (about 32 KB per product at
        epoch 10**6). Everything else is 0.
        """
        return 0

    @property
    def max_product_step(self) -> int | None:
        """The highest epoch its products over steps answer (MultiplicativeLR), or None if it has
        none. The epoch is the MultiplicativeLR's own step count (in a SequentialLR, counted
        from its milestone); see `ProductBudget`."""
        return None

    def at(self, step: int) -> tuple[list[float], list[float] | None]:
        """(LR of every group, momentum of every group or None) at `step`, or a DomainError.

        Refuses steps outside 0..STEP_MAX. Where the formula raises (a division by zero, an
        overflow, a math domain error, arithmetic on a complex number), the step has no value;
        and it never answers an LR that is not a finite real float >= 0 (NaN, inf, a negative
        LR, or the complex number a fractional power of a negative number gives in Python).
        """
        if not 0 <= step <= STEP_MAX:
            raise DomainError(step, f"steps run from 0 to 2**53 = {STEP_MAX}")
        try:
            lrs = self.lrs(step)
            momentum = self.momentum(step) if self.has_momentum else None
        except (ArithmeticError, ValueError, TypeError) as exc:
            if isinstance(exc, DomainError):
                raise
            raise DomainError(step, f"the schedule has no finite value here ({exc})") from None
        for lr in lrs:
            if not (isinstance(lr, float) and 0.0 <= lr < math.inf):  # also false for NaN
                raise DomainError(step, f"the schedule gives LR {lr!r}, which is not a finite LR >= 0")
        return lrs, momentum

    def over(self, steps: range) -> list[tuple[list[float], list[float] | None]]:
        """`at` of every step of `steps`, in one pass: the same values, and the same DomainError
        at the first step without one, for less work per point.

        The checks of `at` run once for the whole range; where any fails, the range is answered
        step by step by `at` itself, which raises at the step that has no value.
        """
        if not steps:
            return []
        if min(steps[0], steps[-1]) < 0 or max(steps[0], steps[-1]) > STEP_MAX:
            return [self.at(step) for step in steps]
        try:
            rows = self.lrs_over(steps)
            momenta = self.momentum_over(steps) if self.has_momentum else None
        except (ArithmeticError, ValueError, TypeError):
            return [self.at(step) for step in steps]
        if not all_lrs(rows):
            return [self.at(step) for step in steps]
        if momenta is None:
            return [(row, None) for row in rows]
        return list(zip(rows, momenta, strict=True))

    @abstractmethod
    def lrs(self, step: int) -> list[float]:
        """The LR of every param group at `step` (0 <= step <= STEP_MAX, already checked)."""

    def lrs_over(self, steps: range) -> list[list[float]]:
        """`lrs` of every step of `steps` (checked already). A family whose formula allows it
        computes the range in one pass, with the very operations of `lrs`, so that every value
        is the same float bit for bit."""
        lrs = self.lrs
        return [lrs(step) for step in steps]

    def momentum(self, step: int) -> list[float] | None:
        """The momentum (or Adam's beta1) of every group, for schedules that cycle it."""
        return None

    def momentum_over(self, steps: range) -> list[list[float] | None]:
        """`momentum` of every step of `steps`."""
        momentum = self.momentum
        return [momentum(step) for step in steps]


def split_range(steps: range, bounds: Sequence[int]) -> list[range]:
    """`steps` (ascending) cut before every step of `bounds` (sorted): pieces within which no
    bound is crossed, in order, none empty."""
    first, last = steps[0], steps[-1]
    cuts = [0]
    for bound in bounds[bisect_right(bounds, first) :]:
        if bound > last:
            break
        cuts.append(-((first - bound) // steps.step))  # the index of the first step >= bound
    cuts.append(len(steps))
    return [steps[a:b] for a, b in itertools.pairwise(cuts) if a < b]


def all_lrs(rows: list[list[float]]) -> bool:
    """Whether every value of `rows` is an LR `Schedule.at` answers: a finite float >= 0.

    Passes in C over the values: their types, their least, and their sum, which is NaN or inf
    when any value is (a sum of finite values can overflow too, and then the caller checks
    step by step)."""
    values = list(chain.from_iterable(rows))
    return not values or (set(map(type, values)) == {float} and min(values) >= 0.0 and sum(values) < math.inf)


class ScaledSchedule(Schedule):
    """One value per step, times a fixed scale per param group: group i gets value(step) * scales[i].

    The value is an absolute schedule's (optax, Keras, MXNet; scales are lrs[i] / lrs[0]) or
    transformers' multiplier (scales are the base LRs)."""

    def __init__(self, value: ValueFn, scales: tuple[float, ...], cost: float = CLOSED_FORM_COST) -> None:
        self._value = value
        self._scales = scales
        self._single = scales == (1.0,)  # an absolute schedule of one group: the value itself
        self.n_groups = len(scales)
        self.cost = cost

    def lrs(self, step: int) -> list[float]:
        v = self._value(step)
        if self._single:
            return [v]
        return [v * scale for scale in self._scales]

    def lrs_over(self, steps: range) -> list[list[float]]:
        values = map(self._value, steps)
        if self._single:
            return [[v] for v in values]
        scales = self._scales
        return [[v * scale for scale in scales] for v in values]


class GroupSchedule(Schedule):
    """A function that answers every param group at once: step -> LRs (timm's `_get_lr`)."""

    def __init__(
        self, lrs: Callable[[int], list[float]], n_groups: int, cost: float = CLOSED_FORM_COST
    ) -> None:
        self._lrs = lrs
        self.n_groups = n_groups
        self.cost = cost

    def lrs(self, step: int) -> list[float]:
        return self._lrs(step)

    def lrs_over(self, steps: range) -> list[list[float]]:
        return list(map(self._lrs, steps))


def _published_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """A schedule spec's JSON schema as a generated client needs it: titled by its type, with
    `type` required and spelled every way it may be (the API's union is discriminated on it).
    The API document names each spec's component by this title (`service/api/openapi.py`)."""
    if not issubclass(model, SpecModel) or "type" not in model.model_fields:
        return  # a base class, or the plateau's config
    names = model.type_names()
    schema["title"] = names[0]
    schema["properties"]["type"] = {"type": "string", "enum": names}
    schema["required"] = ["type", *(field for field in schema.get("required", []) if field != "type")]


class SpecModel(BaseModel):
    """Base of every schedule spec: strict about unknown fields, immutable once validated."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, allow_inf_nan=False, json_schema_extra=_published_schema
    )

    @classmethod
    def type_names(cls) -> list[str]:
        """Every way `type` may name this spec, the usual one first."""
        return [cls.model_fields["type"].default]

    def build(self, ctx: BuildContext) -> Schedule:
        raise NotImplementedError


class AbsoluteSpec(SpecModel):
    """Base of the specs that carry their own values: one value function, scaled per param group.

    The run's base LRs are optional; with several groups, group i gets `value * lrs[i] / lrs[0]`.
    """

    def compile(self) -> ValueFn:
        """The schedule as its library computes it: step -> value."""
        raise NotImplementedError

    def value_cost(self) -> float:
        """The cost of one call of `compile()`'s function, with `at`'s checks (see `Schedule.cost`)."""
        return CLOSED_FORM_COST

    def build(self, ctx: BuildContext) -> Schedule:
        ratios = ctx.group_ratios()
        return ScaledSchedule(self.compile(), ratios, self.value_cost())


def spec_union(specs: Iterable[type[SpecModel]]) -> Any:
    """The union of `specs`, discriminated on `type` in every spelling each allows (`type_names`):
    pydantic parses a value as the one spec its `type` names, and reports that spec's errors
    only; a `type` no spec of the union has is pydantic's `union_tag_invalid`.

    Use it under `if not TYPE_CHECKING` (a type checker sees the specs' base class instead)."""
    models = {spec.type_names()[0]: spec for spec in specs}
    tags = {spelling: name for name, spec in models.items() for spelling in spec.type_names()}

    def tag(value: Any) -> str | None:
        name = value.get("type") if isinstance(value, Mapping) else getattr(value, "type", None)
        return tags.get(name) if isinstance(name, str) else None

    members = tuple(Annotated[spec, Tag(name)] for name, spec in models.items())
    return Annotated[Union[members], Discriminator(tag)]  # noqa: UP007  # a union built at run time
