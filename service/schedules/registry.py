"""Every schedule type in one discriminated union, and the two entry points: parse and build.

Validation happens here, once: a spec is checked for size, then parsed by pydantic into its
family's model, then compiled. Pydantic's error locations carry the union's tag (the type name);
we drop it so that each error names the field path as the user wrote it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from . import hf, keras, mxnet, optax, timm, torch_basic, torch_composite, torch_cyclic
from .base import MAX_SPEC_COST, BuildContext, FieldError, Schedule, SpecError, SpecModel, spec_union

MAX_DEPTH = 16
"""The deepest nesting of composite specs accepted (a guard against pathological input)."""
MAX_NODES = 64
"""The most schedule objects one spec may hold, composites included."""
MAX_NESTING = 64
"""The deepest nesting of JSON containers (objects and lists) accepted anywhere in a spec."""
MAX_ITEMS = 100_000
"""The most values (object members and list items, at every level) one spec may hold."""

SPEC_TYPES: tuple[type[SpecModel], ...] = (
    *torch_basic.SPECS,
    *torch_cyclic.SPECS,
    *torch_composite.SPECS,
    *hf.SPECS,
    *optax.SPECS,
    *keras.SPECS,
    *timm.SPECS,
    *mxnet.SPECS,
)
TYPE_NAMES: dict[str, type[SpecModel]] = {model.model_fields["type"].default: model for model in SPEC_TYPES}
TORCH_PREFIX = "torch."


if TYPE_CHECKING:
    ScheduleSpec = SpecModel
else:
    ScheduleSpec = spec_union(SPEC_TYPES)
SPEC_ADAPTER: TypeAdapter[SpecModel] = TypeAdapter(ScheduleSpec)


def _check_size(spec: Any) -> None:
    """Refuse specs nested or sized beyond the limits, before pydantic (or repr) walks them."""
    nodes = items = 0
    stack: list[tuple[Any, tuple[str | int, ...], int, int]] = [(spec, (), 0, 0)]
    while stack:
        value, loc, depth, nesting = stack.pop()
        if not isinstance(value, Mapping | list):
            continue
        items += len(value)
        if nesting > MAX_NESTING or items > MAX_ITEMS:
            raise SpecError.at(
                loc,
                f"a spec nests containers at most {MAX_NESTING} deep and holds at most {MAX_ITEMS} values",
            )
        if isinstance(value, list):
            stack.extend((v, (*loc, i), depth, nesting + 1) for i, v in enumerate(value))
            continue
        if "type" in value:
            nodes += 1
            if depth >= MAX_DEPTH:
                raise SpecError.at(loc, f"schedules nest at most {MAX_DEPTH} levels deep")
            if nodes > MAX_NODES:
                raise SpecError.at((), f"a spec holds at most {MAX_NODES} schedules")
            depth += 1
        stack.extend((v, (*loc, str(k)), depth, nesting + 1) for k, v in value.items())


def _unknown_type_message(value: Any) -> str:
    name = value.get("type") if isinstance(value, Mapping) else None
    if name is None:
        return "a schedule spec needs a `type`"
    if not isinstance(name, str):
        return "`type` must be a string naming a schedule type"
    if name in TYPE_NAMES or str(name).removeprefix(TORCH_PREFIX) in TYPE_NAMES:
        return f"{name!r} cannot be used here: torch composites hold torch schedulers only"
    close = difflib.get_close_matches(str(name), list(TYPE_NAMES), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown schedule type {name!r}{hint}"


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = tuple(part for part in err["loc"] if part not in TYPE_NAMES)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            errors.append(FieldError((*loc, "type"), _unknown_type_message(err["input"]), _input_type(err)))
            continue
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        quoted = _quote(value)
        # pydantic's own messages never quote the input, though a bound may read like it
        # ("greater than 0" for a 0); a validator's message (a value_error) often quotes it.
        quotes_it = err["type"] == "value_error" and quoted in msg
        if not quotes_it and not isinstance(value, Mapping):  # a whole spec is not worth quoting
            msg = f"{msg}, got {quoted}"
        errors.append(FieldError(loc, msg, value))
    return errors


def _quote(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _input_type(err: Any) -> Any:
    value = err.get("input")
    return value.get("type") if isinstance(value, Mapping) else value


def parse_spec(spec: Any) -> SpecModel:
    """Validate a JSON schedule spec into its model. Raises SpecError naming every bad field."""
    _check_size(spec)
    try:
        return SPEC_ADAPTER.validate_python(spec)
    except ValidationError as exc:
        raise SpecError(_field_errors(exc)) from None


def build_schedule(spec: Any, base_lrs: Sequence[float] | None) -> Schedule:
    """Validate `spec` and compile it against the run's base LRs (one per param group).

    Refuses a spec whose `cost` per step and param group exceeds MAX_SPEC_COST.
    """
    model = spec if isinstance(spec, SpecModel) else parse_spec(spec)
    bases = None if base_lrs is None else tuple(float(lr) for lr in base_lrs)
    if bases is not None and not bases:
        raise SpecError.at(("lrs",), "give at least one base LR", [])
    ctx = BuildContext(base_lrs=bases)
    schedule = model.build(ctx)
    ctx.finish()
    if schedule.cost > MAX_SPEC_COST:
        raise SpecError.at(
            (),
            f"evaluating this spec costs about {schedule.cost:.0f} units per step and param group "
            f"(1 unit is one CosineAnnealingLR step); the limit is MAX_SPEC_COST = {MAX_SPEC_COST:.0f}: "
            "use fewer or shorter expressions, above all in step-dependent MultiplicativeLRs",
        )
    return schedule
