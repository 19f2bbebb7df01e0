"""`Schedule.at`, the one checked entry point every family is evaluated through."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator

import pytest

from lrtower_server.schedules import STEP_MAX, BuildContext, DomainError, Schedule, build_schedule
from lrtower_server.schedules.examples import EXAMPLES


class Stub(Schedule):
    def __init__(self, lrs: Callable[[int], list[float]]) -> None:
        self._lrs = lrs
        self.n_groups = 1

    def lrs(self, step: int) -> list[float]:
        return self._lrs(step)


def test_answers_finite_real_lrs() -> None:
    assert Stub(lambda step: [0.0]).at(0) == ([0.0], None)
    assert Stub(lambda step: [float(step)]).at(STEP_MAX) == ([float(STEP_MAX)], None)


@pytest.mark.parametrize(
    "lr",
    [-1e-300, float("inf"), float("nan"), (-1.0) ** 0.5, 1, True],
    ids=["negative", "inf", "nan", "complex", "int", "bool"],
)
def test_refuses_what_is_not_a_finite_real_float(lr: object) -> None:
    with pytest.raises(DomainError, match="not a finite LR >= 0") as caught:
        Stub(lambda step: [lr]).at(3)
    assert caught.value.step == 3


def complex_cosine(step: int) -> list[float]:
    return [math.cos((-1.0) ** 0.5)]  # a cosine of a complex number, as timm's k-decay can compute


@pytest.mark.parametrize(
    ("formula", "step"),
    [(lambda t: [1.0 / (t - 3)], 3), (lambda t: [2.0**t], 2000), (complex_cosine, 5)],
    ids=["ZeroDivisionError", "OverflowError", "TypeError"],
)
def test_a_formula_that_raises_has_no_value(formula: Callable[[int], list[float]], step: int) -> None:
    with pytest.raises(DomainError, match="no finite value") as caught:
        Stub(formula).at(step)
    assert caught.value.step == step


def test_steps_outside_the_range_are_refused() -> None:
    for step in (-1, STEP_MAX + 1):
        with pytest.raises(DomainError, match="2\\*\\*53"):
            Stub(lambda t: [1.0]).at(step)


def _ints_as_floats(value: object) -> object:
    """Every int of a JSON value written as the float JSON would also allow (10 -> 10.0)."""
    if isinstance(value, dict):
        return {k: _ints_as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints_as_floats(v) for v in value]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


WITH_INTEGERS = sorted(n for n, s in EXAMPLES.items() if json.dumps(_ints_as_floats(s)) != json.dumps(s))


@pytest.mark.parametrize("name", WITH_INTEGERS)
def test_whole_number_floats_are_the_integers_they_write(name: str) -> None:
    """JSON Schema's `integer` takes 10.0: every spec reads the same with its ints as floats."""
    spec = EXAMPLES[name]
    floated = _ints_as_floats(spec)
    base = [0.1, 0.01]
    exact, written = build_schedule(spec, base), build_schedule(floated, base)
    for step in (0, 10, 999, 1000, 123_457, 10**12):
        assert _answer(exact, step) == _answer(written, step), step


def _answer(schedule: Schedule, step: int) -> object:
    try:
        return schedule.at(step)
    except DomainError as exc:
        return exc.reason


def _held(value: object, seen: set[int]) -> Iterator[object]:
    """What a compiled schedule holds: its attributes, containers and closures, transitively."""
    if id(value) in seen or isinstance(value, str | bytes | int | float | type(None)):
        return
    seen.add(id(value))
    yield value
    if isinstance(value, dict):
        children: Iterable[object] = value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        children = value
    elif callable(value) and getattr(value, "__closure__", None):
        children = [cell.cell_contents for cell in value.__closure__ or ()]
    else:
        children = vars(value).values() if hasattr(value, "__dict__") else ()
    for child in children:
        yield from _held(child, seen)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_compiled_schedule_keeps_no_build_context(name: str) -> None:
    """Building ends with the context: what waited for its final values has read them."""
    schedule = build_schedule(EXAMPLES[name], [0.1, 0.01])
    assert not any(isinstance(held, BuildContext) for held in _held(schedule, set()))
    schedule.at(10)
