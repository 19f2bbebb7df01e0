"""A run's history on one step axis: schedule changes, scales and plateau reductions."""

from __future__ import annotations

import math
from functools import partial

import pytest

from lrtower_server.core.timeline import PlateauChange, RanChange, ScaleChange, ScheduleChange, Timeline
from lrtower_server.schedules import DomainError
from lrtower_server.schedules.plateau import PlateauConfig
from work import lines_run

STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}
COSINE = {"type": "CosineAnnealingLR", "T_max": 100}


def lr(timeline: Timeline, step: int) -> float:
    return timeline.at(step).lrs[0]


def test_no_changes_is_the_schedule() -> None:
    timeline = Timeline([0.1], STEP, None)
    assert [lr(timeline, s) for s in (0, 9, 10, 25)] == [0.1, 0.1, 0.05, 0.025]


def test_schedule_change_absolute_and_restarted() -> None:
    absolute = Timeline([1.0], STEP, None, [ScheduleChange(30, COSINE, restart=False)])
    restarted = Timeline([1.0], STEP, None, [ScheduleChange(30, COSINE, restart=True)])
    assert lr(absolute, 29) == lr(restarted, 29) == 0.25
    assert lr(absolute, 30) == pytest.approx((1 + math.cos(math.pi * 30 / 100)) / 2)
    assert lr(restarted, 30) == 1.0  # the cosine starts at its own step 0
    assert lr(restarted, 80) == pytest.approx((1 + math.cos(math.pi * 50 / 100)) / 2)


def test_changes_are_points_on_the_step_axis() -> None:
    # A change asked later may take effect earlier; each holds from its own step on.
    constant = {"type": "ConstantLR", "factor": 1.0, "total_iters": 1}
    later_far = ScheduleChange(1000, constant, restart=True)
    sooner_near = ScheduleChange(100, COSINE, restart=True)
    timeline = Timeline([1.0], STEP, None, [later_far, sooner_near])
    assert lr(timeline, 99) == 0.5**9
    assert lr(timeline, 100) == 1.0
    assert lr(timeline, 150) == pytest.approx(0.5)
    assert lr(timeline, 1000) == 1.0


def test_same_step_the_later_change_wins() -> None:
    timeline = Timeline(
        [1.0],
        STEP,
        None,
        [ScheduleChange(5, COSINE, restart=True), ScheduleChange(5, STEP, restart=True)],
    )
    assert lr(timeline, 5) == 1.0 and lr(timeline, 15) == 0.5


def test_a_record_of_what_ran_answers_its_steps_and_no_others() -> None:
    """Nothing else touches its steps (a scale, a plateau factor, a schedule change inside it),
    and the plan takes over after its last step; a range answers as step by step does."""
    plateau = PlateauConfig(factor=0.5)
    changes = [
        RanChange(20, 29, (0.7,)),
        ScaleChange(25, 0.1),
        PlateauChange(22, (0.5,)),
        ScheduleChange(27, COSINE, restart=True),
        RanChange(40, 40, (0.0,)),
    ]
    timeline = Timeline([1.0], STEP, plateau, changes)
    assert [lr(timeline, s) for s in range(20, 30)] == [0.7] * 10
    assert lr(timeline, 19) == 0.5 and lr(timeline, 40) == 0.0
    plan = Timeline([1.0], STEP, plateau, changes[1:4])
    assert [lr(timeline, s) for s in (30, 39, 41, 90)] == [lr(plan, s) for s in (30, 39, 41, 90)]
    for steps in (range(0, 100), range(15, 45, 3), range(29, 31), range(40, 41)):
        assert timeline.over(steps) == [timeline.at(s) for s in steps], steps


def test_a_record_without_momentum_answers_the_plans() -> None:
    cycle = {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 100}
    timeline = Timeline([0.01], cycle, None, [RanChange(10, 19, (0.05,)), RanChange(20, 29, (0.05,), (0.9,))])
    plan = Timeline([0.01], cycle, None)
    assert timeline.at(12).momentum == plan.at(12).momentum and timeline.at(12).lrs == [0.05]
    assert timeline.at(25).momentum == [0.9]
    assert timeline.over(range(5, 35)) == [timeline.at(s) for s in range(5, 35)]


def test_scales_accumulate_across_schedule_changes() -> None:
    timeline = Timeline(
        [1.0],
        {"type": "ConstantLR", "factor": 1.0, "total_iters": 1},
        None,
        [ScaleChange(10, 0.5), ScaleChange(20, 0.1), ScheduleChange(30, STEP, restart=True)],
    )
    assert [lr(timeline, s) for s in (9, 10, 20, 30, 40)] == [1.0, 0.5, 0.05, 0.05, 0.025]


def test_plateau_factors_multiply_and_respect_min_lr() -> None:
    config = PlateauConfig(min_lr=0.02)
    timeline = Timeline(
        [0.1, 1.0], COSINE, config, [PlateauChange(10, (0.1, 0.1)), PlateauChange(20, (0.01, 0.1))]
    )
    at_10 = timeline.at(10).lrs
    cosine_10 = (1 + math.cos(math.pi * 10 / 100)) / 2
    assert at_10[0] == pytest.approx(max(0.1 * cosine_10 * 0.1, 0.02))
    assert at_10[1] == pytest.approx(cosine_10 * 0.1)
    assert timeline.at(20).lrs[0] == pytest.approx(0.02)  # floored at min_lr
    assert timeline.at(25).lrs[1] == pytest.approx((1 + math.cos(math.pi * 25 / 100)) / 2 * 0.1)
    assert timeline.at(9).lrs[0] == pytest.approx(0.1 * (1 + math.cos(math.pi * 9 / 100)) / 2)


def test_domain_errors_pass_through() -> None:
    timeline = Timeline([0.1], {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10}, None)
    with pytest.raises(DomainError):
        timeline.at(11)


def test_answers_cost_the_same_with_a_long_history() -> None:
    """10,000 scales cost an answer no more than one does (lines run, not a clock)."""
    changes = [ScaleChange(s, 0.999) for s in range(0, 100_000, 10)]
    timeline = Timeline([0.1], STEP, None, changes)
    assert lr(timeline, 2**53) == 0.0 and lr(timeline, 5) == pytest.approx(0.1 * 0.999)
    short = Timeline([0.1], STEP, None, changes[:1])
    for step in (5, 50_005, 2**53):
        assert lines_run(partial(timeline.at, step)) <= lines_run(partial(short.at, step)), step
