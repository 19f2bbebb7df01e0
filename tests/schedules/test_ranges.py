"""A range is answered in one pass (`Schedule.over`, `Timeline.over`): the very same floats as
asking its steps one by one with `at`, and the same DomainError at the same first step.

Every spec the engine's tests know is checked over ranges that cross its milestones, its end,
and the far steps; a history adds changes of every kind inside the range.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from test_torch_cases import CLOSED_FORMS, TORCH_SUITE_CASES

import reference_vectors as rv
from lrtower_server.core.timeline import PlateauChange, ScaleChange, ScheduleChange, Timeline
from lrtower_server.schedules import STEP_MAX, DomainError, build_schedule
from lrtower_server.schedules.examples import EXAMPLES
from lrtower_server.schedules.plateau import PlateauConfig

RANGES = [
    range(0, 40),
    range(0, 3000, 7),
    range(990, 1012),
    range(2, 200_000, 997),
    range(29_990, 30_010, 3),
    range(10**6 - 5, 10**6 + 5),
    range(10**12, 10**12 + 30, 3),
    range(STEP_MAX - 9, STEP_MAX + 1, 2),
    range(STEP_MAX - 3, STEP_MAX + 3),  # runs past the last step: refused at the first one past
]

ERRORS: list[tuple[dict[str, Any], list[float] | None]] = [
    ({"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 100}, [0.1, 0.2]),
    ({"type": "LambdaLR", "lr_lambda": "1 - epoch / 10"}, [0.1]),
    ({"type": "LambdaLR", "lr_lambda": "1 / (epoch - 5)"}, [0.1]),
    ({"type": "LambdaLR", "lr_lambda": "exp(epoch)"}, [0.1, 0.3]),
    ({"type": "MultiplicativeLR", "lr_lambda": "1 - 1 / (epoch + 10)"}, [1.0]),
    ({"type": "ExponentialLR", "gamma": 1.5}, [0.1]),
    ({"type": "optax.exponential_decay", "init_value": 0.1, "transition_steps": 1, "decay_rate": 2.0}, None),
    (
        {"type": "optax.exponential_decay", "init_value": 0.1, "transition_steps": 1, "decay_rate": 2.0},
        [0.1, 0.3],
    ),
]


def _specs() -> list[tuple[str, dict[str, Any], list[float] | None]]:
    specs = [(name, spec, [0.1, 0.01]) for name, spec in EXAMPLES.items()]
    specs += [(f"torch suite {i}", spec, lrs) for i, (spec, lrs, _, _) in enumerate(TORCH_SUITE_CASES)]
    specs += [(f"closed form {spec['type']}", spec, [0.1, 0.02]) for spec in CLOSED_FORMS]
    for family in ("hf", "timm", "optax", "keras", "mxnet"):
        specs += [(rv.case_id(case), case["spec"], case["base_lrs"]) for case in rv.load(family)["cases"]]
    specs += [(f"error {i}", spec, lrs) for i, (spec, lrs) in enumerate(ERRORS)]
    return specs


SPECS = _specs()


def _outcome(answer: Callable[[], object]) -> str:
    """The answers' exact text (`repr` tells -0.0 from 0.0 and shows every bit), or the error."""
    try:
        return repr(answer())
    except DomainError as exc:
        return f"DomainError({exc})"


@pytest.mark.parametrize(("name", "spec", "base_lrs"), SPECS, ids=[name for name, _, _ in SPECS])
def test_a_range_is_its_steps_one_by_one(
    name: str, spec: dict[str, Any], base_lrs: list[float] | None
) -> None:
    schedule = build_schedule(spec, base_lrs)
    for steps in RANGES:
        one_by_one = _outcome(lambda steps=steps: [schedule.at(step) for step in steps])
        assert _outcome(lambda steps=steps: schedule.over(steps)) == one_by_one, (name, steps)


def test_the_error_cases_do_fail_inside_the_ranges() -> None:
    """The error specs above are checked where they have no value, not only where they have one."""
    for spec, base_lrs in ERRORS:
        schedule = build_schedule(spec, base_lrs)
        failed = [s for s in RANGES if _outcome(partial(schedule.over, s)).startswith("DomainError")]
        assert failed, spec


PLATEAU = PlateauConfig.model_validate({"mode": "min", "factor": 0.5, "min_lr": [0.0004, 0.0]})
CHANGES = [
    ScaleChange(5, 0.5),
    ScheduleChange(20, {"type": "CosineAnnealingLR", "T_max": 50}, restart=True),
    PlateauChange(20, (0.5, 1.0)),
    ScaleChange(33, 3.0),
    ScheduleChange(60, {"type": "ExponentialLR", "gamma": 0.9}, restart=False),
    PlateauChange(61, (0.25, 0.5)),
    ScheduleChange(90, {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10}, restart=True),
    ScaleChange(95, 1e308),
]


@pytest.mark.parametrize("changes", range(len(CHANGES) + 1))
def test_a_history_answers_a_range_as_its_steps(changes: int) -> None:
    timeline = Timeline([0.1, 0.01], EXAMPLES["SequentialLR"], PLATEAU, CHANGES[:changes])
    for steps in [
        range(0, 120),
        range(3, 121, 4),
        range(19, 22),
        range(33, 34),
        range(0, 10**6, 4999),
        *RANGES,
    ]:
        one_by_one = _outcome(lambda steps=steps: [timeline.at(step) for step in steps])
        assert _outcome(lambda steps=steps: timeline.over(steps)) == one_by_one, steps
