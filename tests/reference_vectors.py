"""A schedule family's reference vectors, and the checks every family's tests share.

tests/vectors/<family>.json holds a library's own answers, written by
tests/vectors/generate_<family>.py from the real library (which is not needed to run the tests).
Its `cases` come in one of two formats:

- "lrs" (hf, timm): one row per step, the LR of every param group of `base_lrs`;
- "values" (optax, keras, mxnet): one value per step, the schedule's own; group i gets
  `value * base_lrs[i] / base_lrs[0]`, and `base_lrs` may be null (one group).

A null value is a step where the library answers inf or NaN, and a case's "no_lr" lists steps
where it raises (or, in timm, sets a complex LR): at both, lrtower must answer DomainError.
Every other point is checked with `parity.assert_close`, which records the figures printed at
the end of the run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from lrtower_server.schedules import (
    STEP_MAX,
    DomainError,
    Schedule,
    SpecError,
    SpecModel,
    build_schedule,
    parse_spec,
)
from parity import assert_close
from work import lines_run

VECTORS = Path(__file__).parent / "vectors"

Case = dict[str, Any]


def load(family: str) -> dict[str, Any]:
    """tests/vectors/<family>.json: the library's name and version, and its `cases`."""
    vectors: dict[str, Any] = json.loads((VECTORS / f"{family}.json").read_text())
    return vectors


def type_names(specs: Sequence[type[SpecModel]]) -> set[str]:
    """The `type` of every spec model of a family."""
    return {model.model_fields["type"].default for model in specs}


def case_id(case: Case) -> str:
    """The spec's type and parameters, and the number of groups (0: no base LRs given)."""
    params = ",".join(f"{k}={v}" for k, v in case["spec"].items() if k != "type")
    groups = len(case["base_lrs"]) if case["base_lrs"] else 0
    return f"{case['spec']['type']}({params})x{groups}"[:150]


def expected_rows(case: Case) -> list[list[float] | None]:
    """The LR of every group at each step of `steps`; None where the library has no finite LR."""
    if "lrs" in case:
        rows: list[list[float] | None] = case["lrs"]
        return rows
    bases = case["base_lrs"] or [1.0]
    return [None if v is None else [v * b / bases[0] for b in bases] for v in case["values"]]


def no_lr_steps(case: Case) -> list[int]:
    """The steps where lrtower must answer DomainError."""
    nulls = [step for step, row in zip(case["steps"], expected_rows(case), strict=True) if row is None]
    return nulls + case.get("no_lr", [])


def check_case(family: str, case: Case) -> None:
    """Every step of a case: the library's LRs within parity's tolerance, DomainError where it has none."""
    schedule = build_schedule(case["spec"], case["base_lrs"])
    assert schedule.n_groups == len(case["base_lrs"] or [1.0]), case_id(case)
    for step in no_lr_steps(case):
        with pytest.raises(DomainError) as caught:
            schedule.at(step)
        assert caught.value.step == step, case_id(case)
    points = [
        (step, row) for step, row in zip(case["steps"], expected_rows(case), strict=True) if row is not None
    ]
    actual = [schedule.at(step)[0] for step, _ in points]
    assert_close(family, [row for _, row in points], actual, case_id(case))


def check_coverage(
    vectors: dict[str, Any], library: str, specs: Sequence[type[SpecModel]], points: int
) -> None:
    """The vectors come from `library`, cover every type of the family, and hold over `points` points."""
    assert vectors["library"] == library
    cases = vectors["cases"]
    assert {case["spec"]["type"] for case in cases} == type_names(specs)
    held = sum(len(row) if row else 1 for case in cases for row in expected_rows(case))
    held += sum(len(case.get("no_lr", [])) for case in cases)
    assert held > points


REFUSAL_LINES = 20
"""At most the lines of raising, wrapping and catching a DomainError."""


def check_large_steps_cost_no_more(cases: Sequence[Case]) -> None:
    """Every case answers 200 steps near 2**53 with no more work than a step near 1000: closed
    forms, whose cost does not grow with the step (lines run, not a clock). The slack is the
    constant work of refusing a step without a value (an overflow far out)."""

    def answer(schedule: Schedule, step: int) -> None:
        with contextlib.suppress(DomainError):
            schedule.at(step)

    for case in cases:
        schedule = build_schedule(case["spec"], case["base_lrs"])
        near = max(lines_run(partial(answer, schedule, step)) for step in range(990, 1010))
        for step in (STEP_MAX - k * 7919 for k in range(200)):
            assert lines_run(partial(answer, schedule, step)) <= near + REFUSAL_LINES, (case["spec"], step)


Invalid = tuple[dict[str, Any], tuple[str | int, ...], Any]
"""A spec, the path of the field it must be refused at, and the value the error must quote
(None: the value is not checked)."""


def invalid_ids(invalid: Sequence[Invalid]) -> list[str]:
    return [f"{spec['type']}:{'.'.join(map(str, loc))}" for spec, loc, _ in invalid]


def check_refused(
    spec: dict[str, Any], base_lrs: list[float] | None, loc: tuple[str | int, ...], value: Any
) -> None:
    """Building `spec` fails with an error at `loc` that carries or quotes `value`."""
    with pytest.raises(SpecError) as caught:
        build_schedule(spec, base_lrs)
    matching = [e for e in caught.value.errors if e.loc == loc]
    assert matching, f"no error at {loc}: {caught.value.errors}"
    if value is not None:
        error = matching[0]
        assert error.value == value or repr(value) in error.msg or str(value) in error.msg, error


def check_unknown_field(spec: dict[str, Any], field: str) -> None:
    """Parsing `spec` fails with an error at `field`, which the spec's type does not take."""
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert (field,) in [e.loc for e in caught.value.errors]
