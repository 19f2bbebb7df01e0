"""torch's own expected values, large steps against torch's closed forms, and the edges:
refusals with field paths, domain errors, and the nestings torch itself cannot run."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest

import torch_oracle
from lrtower_server.schedules import STEP_MAX, DomainError, SpecError, build_schedule, parse_spec
from parity import assert_close
from work import lines_run

# Expected values from torch's own test suite (test/optim/test_lrscheduler.py).
TORCH_SUITE_CASES: list[tuple[dict[str, Any], list[float], list[float], list[float] | None]] = [
    (
        {"type": "StepLR", "step_size": 3, "gamma": 0.1},
        [0.05],
        [0.05] * 3 + [0.005] * 3 + [0.0005] * 3 + [0.00005] * 3,
        None,
    ),
    (
        {"type": "MultiStepLR", "milestones": [2, 5, 9], "gamma": 0.1},
        [0.05],
        [0.05] * 2 + [0.005] * 3 + [0.0005] * 4 + [0.00005] * 3,
        None,
    ),
    (
        {"type": "MultiStepLR", "milestones": [2, 5, 5, 9], "gamma": 0.1},
        [0.05],
        [0.05] * 2 + [0.005] * 3 + [0.00005] * 4 + [0.000005] * 3,
        None,
    ),
    (
        {"type": "ConstantLR", "factor": 0.5, "total_iters": 4},
        [0.05],
        [0.025] * 4 + [0.05] * 6,
        None,
    ),
    (
        {"type": "LinearLR", "start_factor": 0.5, "total_iters": 4},
        [0.05],
        [0.025, 0.03125, 0.0375, 0.04375] + [0.05] * 6,
        None,
    ),
    (
        {"type": "ExponentialLR", "gamma": 0.9},
        [0.05],
        [0.05 * 0.9**x for x in range(10)],
        None,
    ),
    (
        {"type": "CosineAnnealingLR", "T_max": 10, "eta_min": 1e-10},
        [0.05],
        [1e-10 + (0.05 - 1e-10) * (1 + math.cos(math.pi * x / 10)) / 2 for x in range(10)],
        None,
    ),
    (
        {
            "type": "CyclicLR",
            "base_lr": 1.0,
            "max_lr": 5.0,
            "step_size_up": 2,
            "mode": "triangular2",
            "base_momentum": 0.1,
            "max_momentum": 0.5,
        },
        [1.0],
        [1, 3, 5, 3, 1, 2, 3, 2, 1, 1.5, 2, 1.5, 1],
        [0.5, 0.3, 0.1, 0.3, 0.5, 0.4, 0.3, 0.4, 0.5, 0.45, 0.4, 0.45, 0.5],
    ),
    (
        {
            "type": "OneCycleLR",
            "max_lr": 25.0,
            "final_div_factor": 4.0,
            "base_momentum": 0.1,
            "max_momentum": 0.22,
            "total_steps": 10,
            "anneal_strategy": "linear",
            "pct_start": 0.4,
            "three_phase": True,
        },
        [1.0],
        [1, 9, 17, 25, 17, 9, 1, 0.75, 0.5, 0.25],
        [0.22, 0.18, 0.14, 0.1, 0.14, 0.18, 0.22, 0.22, 0.22, 0.22],
    ),
]


@pytest.mark.parametrize(("spec", "lrs", "want", "want_momentum"), TORCH_SUITE_CASES)
def test_torch_suite_expected_values(
    spec: dict[str, Any], lrs: list[float], want: list[float], want_momentum: list[float] | None
) -> None:
    schedule = build_schedule(spec, lrs)
    got = [schedule.at(s) for s in range(len(want))]
    assert_close("torch suite", [[w] for w in want], [g[0] for g in got], spec)
    # And torch itself agrees with its suite on this machine.
    oracle, moms = torch_oracle.run(spec, lrs, len(want) - 1)
    assert_close("torch suite", oracle, [g[0] for g in got], spec)
    if want_momentum is not None:
        assert_close("torch suite momentum", [[m] for m in want_momentum], [g[1] for g in got], spec)
        assert_close("torch suite momentum", moms, [g[1] for g in got], spec)
    else:
        assert all(g[1] is None for g in got)


CLOSED_FORMS = [
    {"type": "StepLR", "step_size": 7, "gamma": 0.99},
    {"type": "MultiStepLR", "milestones": [10, 10**6, 10**9], "gamma": 0.5},
    {"type": "ConstantLR", "factor": 0.25, "total_iters": 1000},
    {"type": "LinearLR", "start_factor": 0.1, "end_factor": 0.7, "total_iters": 10**7},
    {"type": "ExponentialLR", "gamma": 0.9999999},
    {"type": "PolynomialLR", "total_iters": 10**9, "power": 2.0},
    {"type": "CosineAnnealingLR", "T_max": 10**6 + 7, "eta_min": 1e-5},
]
LARGE_STEPS = [10**4, 123_456_789, 10**9 - 1, 10**12, 10**15 + 3, STEP_MAX]


@pytest.mark.parametrize("spec", CLOSED_FORMS, ids=lambda s: s["type"])
def test_large_steps_equal_torch_closed_form(spec: dict[str, Any]) -> None:
    lrs = [0.1, 0.03]
    schedule = build_schedule(spec, lrs)
    optimizer = torch_oracle.make_optimizer(lrs)
    scheduler = torch_oracle.make_scheduler(spec, optimizer)
    want, got = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates step(epoch), the closed-form path
        for step in LARGE_STEPS:
            scheduler.step(step)
            want.append(scheduler.get_last_lr())
            got.append(schedule.at(step)[0])
    assert_close("torch large steps", want, got, spec)


def test_large_steps_of_closed_form_classes() -> None:
    """Classes whose get_lr is already closed form: set last_epoch, step once."""
    for spec in [
        {"type": "LambdaLR", "lr_lambda": "0.5 ** floor((1 + epoch) / 1000)"},
        {
            "type": "CyclicLR",
            "base_lr": 0.01,
            "max_lr": 0.1,
            "step_size_up": 977,
            "mode": "exp_range",
            "gamma": 0.999999,
        },
        {"type": "CosineAnnealingWarmRestarts", "T_0": 10, "T_mult": 1, "eta_min": 0.001},
    ]:
        lrs = [0.1]
        schedule = build_schedule(spec, lrs)
        optimizer = torch_oracle.make_optimizer(lrs)
        scheduler = torch_oracle.make_scheduler(spec, optimizer)
        want, got = [], []
        for step in LARGE_STEPS[:4]:
            scheduler.last_epoch = step - 1
            if spec["type"] == "CosineAnnealingWarmRestarts":
                scheduler.T_cur = (step - 1) % 10
            scheduler.step()
            want.append(scheduler.get_last_lr())
            got.append(schedule.at(step)[0])
        assert_close("torch large steps", want, got, spec)


@pytest.mark.parametrize("t_mult", [2, 3])
def test_warm_restarts_with_t_mult_are_exact_at_large_steps(t_mult: int) -> None:
    # Torch's own closed form for T_mult > 1 goes through a float log; stepping is exact integers.
    schedule = build_schedule({"type": "CosineAnnealingWarmRestarts", "T_0": 3, "T_mult": t_mult}, [1.0])
    n = 1
    while (start := 3 * (t_mult**n - 1) // (t_mult - 1)) <= STEP_MAX:
        assert schedule.at(start)[0] == [1.0], n  # cycle n begins: back at base_lr
        length = 3 * t_mult ** (n - 1)  # the last step of cycle n - 1 is its T_cur = length - 1
        assert schedule.at(start - 1)[0] == [(1 + math.cos(math.pi * (length - 1) / length)) / 2], n
        n += 1


def test_answers_cost_the_same_far_out() -> None:
    """Closed forms: the last step costs what an early one does (lines run, not a clock)."""
    schedule = build_schedule(
        {
            "type": "SequentialLR",
            "schedulers": [
                {"type": "LinearLR", "start_factor": 0.01, "total_iters": 100},
                {"type": "CosineAnnealingWarmRestarts", "T_0": 1000, "T_mult": 2},
            ],
            "milestones": [100],
        },
        [0.1],
    )
    lr, _ = schedule.at(STEP_MAX)
    assert 0.0 <= lr[0] <= 0.1
    assert lines_run(lambda: schedule.at(STEP_MAX)) <= lines_run(lambda: schedule.at(5000))


# -- refusals: every bad spec names its field and quotes the value ------------------------------

BAD_SPECS: list[tuple[dict[str, Any], tuple[str | int, ...], Any]] = [
    ({"type": "StepLR", "step_size": 0}, ("step_size",), 0),
    ({"type": "StepLR", "step_size": 3, "gama": 0.5}, ("gama",), 0.5),
    ({"type": "StepLR", "step_size": "3"}, ("step_size",), "3"),
    ({"type": "StepLR", "step_size": 3, "gamma": -0.1}, ("gamma",), -0.1),
    ({"type": "StepLr", "step_size": 3}, ("type",), "StepLr"),
    ({"type": "MultiStepLR", "milestones": [3, -1]}, ("milestones", 1), -1),
    ({"type": "ConstantLR", "factor": 0.0}, ("factor",), 0.0),
    ({"type": "LinearLR", "start_factor": 1.5}, ("start_factor",), 1.5),
    ({"type": "CosineAnnealingLR", "T_max": 0}, ("T_max",), 0),
    ({"type": "LambdaLR", "lr_lambda": "epoch.real"}, ("lr_lambda",), "epoch.real"),
    ({"type": "LambdaLR", "lr_lambda": ["1", "9**9**9"]}, ("lr_lambda", 1), "9**9**9"),
    ({"type": "CyclicLR", "base_lr": 0.1, "max_lr": 1.0, "mode": "triangle"}, ("mode",), "triangle"),
    ({"type": "CyclicLR", "base_lr": [0.1, 0.2, 0.3], "max_lr": 1.0}, ("base_lr",), [0.1, 0.2, 0.3]),
    ({"type": "OneCycleLR", "max_lr": 1.0}, (), None),
    ({"type": "OneCycleLR", "max_lr": 1.0, "total_steps": 10, "pct_start": 0.1}, (), None),
    ({"type": "OneCycleLR", "max_lr": 1.0, "total_steps": 10, "pct_start": 1.0}, (), None),
    ({"type": "CosineAnnealingWarmRestarts", "T_0": 5, "T_mult": 0}, ("T_mult",), 0),
    (
        {"type": "SequentialLR", "schedulers": [{"type": "StepLR", "step_size": 2}], "milestones": [3]},
        (),
        None,
    ),
    (
        {
            "type": "SequentialLR",
            "schedulers": [
                {"type": "StepLR", "step_size": 2},
                {"type": "ChainedScheduler", "schedulers": [{"type": "ExponentialLR", "gamma": "x"}]},
            ],
            "milestones": [3],
        },
        ("schedulers", 1, "schedulers", 0, "gamma"),
        "x",
    ),
    (
        {"type": "ChainedScheduler", "schedulers": [{"type": "hf.linear", "num_training_steps": 10}]},
        ("schedulers", 0, "type"),
        "hf.linear",
    ),
    (
        {
            "type": "ChainedScheduler",
            "schedulers": [
                {"type": "ExponentialLR", "gamma": 0.9},
                {"type": "CosineAnnealingLR", "T_max": 10, "eta_min": 0.01},
            ],
        },
        ("schedulers", 1),
        None,
    ),
    (
        {
            "type": "ChainedScheduler",
            "schedulers": [
                {
                    "type": "SequentialLR",
                    "schedulers": [{"type": "StepLR", "step_size": 2}],
                    "milestones": [],
                },
            ],
        },
        ("schedulers", 0, "type"),
        "SequentialLR",
    ),
]


@pytest.mark.parametrize(("spec", "loc", "value"), BAD_SPECS)
def test_bad_specs_name_the_field(spec: dict[str, Any], loc: tuple[str | int, ...], value: Any) -> None:
    with pytest.raises(SpecError) as info:
        build_schedule(spec, [0.1, 0.2])
    errors = info.value.errors
    assert any(e.loc == loc for e in errors), errors
    if value is not None:
        assert any(e.loc == loc and e.value == value for e in errors), errors
    assert all(e.msg for e in errors)


def test_group_count_mismatch_for_lambdas() -> None:
    with pytest.raises(SpecError) as info:
        build_schedule({"type": "LambdaLR", "lr_lambda": ["1", "2", "3"]}, [0.1, 0.2])
    assert info.value.errors[0].loc == ("lr_lambda",)
    assert "expected 2 lr_lambdas" in info.value.errors[0].msg


def test_nesting_and_size_limits() -> None:
    spec: dict[str, Any] = {"type": "StepLR", "step_size": 1}
    for _ in range(40):
        spec = {"type": "ChainedScheduler", "schedulers": [spec]}
    with pytest.raises(SpecError, match="nest at most"):
        parse_spec(spec)
    wide = {"type": "ChainedScheduler", "schedulers": [{"type": "StepLR", "step_size": 1}] * 64}
    with pytest.raises(SpecError, match="at most"):
        parse_spec({"type": "SequentialLR", "schedulers": [wide] * 5, "milestones": [1, 2, 3, 4]})


def test_torch_prefix_is_accepted_everywhere() -> None:
    spec = {
        "type": "torch.SequentialLR",
        "schedulers": [
            {"type": "torch.LinearLR", "total_iters": 3},
            {"type": "torch.ExponentialLR", "gamma": 0.5},
        ],
        "milestones": [3],
    }
    plain = {
        "type": "SequentialLR",
        "schedulers": [
            {"type": "LinearLR", "total_iters": 3},
            {"type": "ExponentialLR", "gamma": 0.5},
        ],
        "milestones": [3],
    }
    a, b = build_schedule(spec, [1.0]), build_schedule(plain, [1.0])
    assert [a.at(s) for s in range(10)] == [b.at(s) for s in range(10)]


# -- domain errors: where torch raises, or the answer would not be a finite LR >= 0 ---------------


def test_one_cycle_refuses_past_total_steps_like_torch() -> None:
    schedule = build_schedule({"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 100}, [0.1])
    assert schedule.at(100)[0][0] > 0  # torch answers step == total_steps
    with pytest.raises(DomainError, match="100 total steps"):
        schedule.at(101)


@pytest.mark.parametrize("step", [-1, STEP_MAX + 1])
def test_steps_outside_the_domain(step: int) -> None:
    with pytest.raises(DomainError):
        build_schedule({"type": "StepLR", "step_size": 1}, [0.1]).at(step)


@pytest.mark.parametrize("source", ["1 - epoch / 10", "1 / (epoch - 5)", "exp(epoch)", "log(10 - epoch)"])
def test_lambda_never_answers_a_negative_or_infinite_lr(source: str) -> None:
    schedule = build_schedule({"type": "LambdaLR", "lr_lambda": source}, [0.1])
    with pytest.raises(DomainError):
        for step in range(0, 2000):
            schedule.at(step)


def test_multiplicative_products_are_bounded_and_cached() -> None:
    schedule = build_schedule({"type": "MultiplicativeLR", "lr_lambda": "1 - 1 / (epoch + 10)"}, [1.0])
    lr, _ = schedule.at(1_000_000)
    assert 0 < lr[0] < 1e-4
    with pytest.raises(DomainError, match="product over steps"):
        schedule.at(1_000_001)
    constant = build_schedule({"type": "MultiplicativeLR", "lr_lambda": "0.999"}, [1.0])
    assert constant.at(10**12)[0] == [0.0]  # a constant factor is a power: any step
    assert constant.at(1000)[0][0] == pytest.approx(0.999**1000, rel=1e-12)


# -- where torch cannot run a nesting, lrtower runs the composite afresh ---------------------------


def test_composite_after_a_milestone_starts_afresh() -> None:
    chained = {
        "type": "ChainedScheduler",
        "schedulers": [
            {"type": "ConstantLR", "factor": 0.1, "total_iters": 2},
            {"type": "ExponentialLR", "gamma": 0.9},
        ],
    }
    spec = {
        "type": "SequentialLR",
        "schedulers": [{"type": "StepLR", "step_size": 5}, chained],
        "milestones": [7],
    }
    schedule = build_schedule(spec, [0.5])
    alone, _ = torch_oracle.run(chained, [0.5], 50)
    assert_close("torch composites", alone, [schedule.at(7 + s)[0] for s in range(51)], spec)
    before, _ = torch_oracle.run({"type": "StepLR", "step_size": 5}, [0.5], 6)
    assert_close("torch composites", before, [schedule.at(s)[0] for s in range(7)], spec)


def test_nested_sequential_runs_in_step_with_its_parent() -> None:
    inner = {
        "type": "SequentialLR",
        "schedulers": [
            {"type": "LinearLR", "start_factor": 0.5, "total_iters": 4},
            {"type": "ExponentialLR", "gamma": 0.8},
        ],
        "milestones": [4],
    }
    outer = {
        "type": "SequentialLR",
        "schedulers": [inner, {"type": "ConstantLR", "factor": 0.5}],
        "milestones": [10],
    }
    schedule = build_schedule(outer, [1.0])
    alone, _ = torch_oracle.run(inner, [1.0], 9)
    assert_close("torch composites", alone, [schedule.at(s)[0] for s in range(10)], outer)


def test_sequential_momentum_holds_between_cycling_children() -> None:
    cyclic = {"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3}
    spec = {
        "type": "SequentialLR",
        "schedulers": [
            {"type": "LinearLR", "total_iters": 4},
            cyclic,
            {"type": "ConstantLR", "factor": 0.5},
        ],
        "milestones": [5, 12],
    }
    lrs, moms = torch_oracle.run(spec, [0.1], 30)
    schedule = build_schedule(spec, [0.1])
    got = [schedule.at(s) for s in range(31)]
    assert_close("torch composites", lrs, [g[0] for g in got], spec)
    assert_close("torch composites momentum", moms, [g[1] for g in got], spec)


def test_multiplicative_continues_at_its_milestone_like_torch() -> None:
    spec = {
        "type": "SequentialLR",
        "schedulers": [
            {"type": "LinearLR", "start_factor": 0.2, "total_iters": 5},
            {"type": "MultiplicativeLR", "lr_lambda": "0.9"},
            {"type": "MultiplicativeLR", "lr_lambda": "1 - 0.01 * (epoch % 3)"},
        ],
        "milestones": [3, 9],
    }
    lrs, _ = torch_oracle.run(spec, [0.3, 0.1], 40)
    schedule = build_schedule(spec, [0.3, 0.1])
    assert_close("torch composites", lrs, [schedule.at(s)[0] for s in range(41)], spec)


def test_chained_first_in_sequential_steps_outside_construction_like_torch() -> None:
    spec = {
        "type": "SequentialLR",
        "schedulers": [
            {
                "type": "ChainedScheduler",
                "schedulers": [
                    {"type": "ExponentialLR", "gamma": 0.9},
                    {"type": "PolynomialLR", "total_iters": 8, "power": 2.0},
                    {"type": "MultiplicativeLR", "lr_lambda": "0.95"},
                ],
            },
            {"type": "StepLR", "step_size": 2},
        ],
        "milestones": [6],
    }
    lrs, _ = torch_oracle.run(spec, [0.2], 20)
    schedule = build_schedule(spec, [0.2])
    assert_close("torch composites", lrs, [schedule.at(s)[0] for s in range(21)], spec)


def chain_with_overwriter(eta_min: float) -> dict[str, Any]:
    return {
        "type": "ChainedScheduler",
        "schedulers": [
            {"type": "ExponentialLR", "gamma": 0.5},
            {"type": "LambdaLR", "lr_lambda": "1 / (1 + epoch)"},
            {"type": "StepLR", "step_size": 3, "gamma": 0.5},
            {"type": "CosineAnnealingLR", "T_max": 7, "eta_min": eta_min},
        ],
    }


def test_overwriters_in_a_chain_like_torch() -> None:
    spec = chain_with_overwriter(0.0)
    lrs, _ = torch_oracle.run(spec, [0.2, 0.4], 60)
    schedule = build_schedule(spec, [0.2, 0.4])
    assert_close("torch composites", lrs, [schedule.at(s)[0] for s in range(61)], spec)


def test_where_torch_goes_negative_the_engine_refuses() -> None:
    # A cosine step applied to an LR below eta_min overshoots: torch serves a negative LR.
    spec = chain_with_overwriter(0.01)
    lrs, _ = torch_oracle.run(spec, [0.2], 60)
    first_negative = next(s for s, lr in enumerate(lrs) if lr[0] < 0)
    schedule = build_schedule(spec, [0.2])
    assert_close(
        "torch composites", lrs[:first_negative], [schedule.at(s)[0] for s in range(first_negative)], spec
    )
    with pytest.raises(DomainError, match="not a finite LR >= 0"):
        schedule.at(first_negative)


@pytest.mark.parametrize("first_in_sequence", [False, True])
def test_a_chain_of_one_is_that_scheduler(first_in_sequence: bool) -> None:
    cosine = {"type": "CosineAnnealingLR", "T_max": 20, "eta_min": 0.01}
    spec: dict[str, Any] = {"type": "ChainedScheduler", "schedulers": [cosine]}
    if first_in_sequence:
        spec = {
            "type": "SequentialLR",
            "schedulers": [spec, {"type": "StepLR", "step_size": 3}],
            "milestones": [25],
        }
    lrs, _ = torch_oracle.run(spec, [0.1], 40)
    schedule = build_schedule(spec, [0.1])
    assert_close("torch composites", lrs, [schedule.at(s)[0] for s in range(41)], spec)


def test_one_cycle_sets_initial_lr_for_later_schedulers_like_torch() -> None:
    spec = {
        "type": "SequentialLR",
        "schedulers": [
            {"type": "OneCycleLR", "max_lr": 1.0, "total_steps": 20},
            {"type": "LambdaLR", "lr_lambda": "0.5"},
        ],
        "milestones": [15],
    }
    lrs, _ = torch_oracle.run(spec, [0.1], 40)
    schedule = build_schedule(spec, [0.1])
    assert_close("torch composites", lrs, [schedule.at(s)[0] for s in range(41)], spec)


# -- cases found by adversarial review ---------------------------------------------------------


@pytest.mark.parametrize("betas", [False, True])
@pytest.mark.parametrize(
    "middle",
    [
        {"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4},
        {
            "type": "CyclicLR",
            "base_lr": 0.01,
            "max_lr": 0.1,
            "step_size_up": 4,
            "scale_fn": "1/(epoch+1)",
            "scale_mode": "iterations",
        },
        {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10},
    ],
)
def test_momentum_of_a_child_that_never_runs(middle: dict[str, Any], betas: bool) -> None:
    spec = {
        "type": "SequentialLR",
        "schedulers": [
            {"type": "StepLR", "step_size": 3},
            middle,
            {"type": "StepLR", "step_size": 3},
        ],
        "milestones": [5, 5],
    }
    lrs, moms = torch_oracle.run(spec, [0.1], 20, betas=betas)
    schedule = build_schedule(spec, [0.1])
    got = [schedule.at(s) for s in range(21)]
    assert_close("torch composites", lrs, [g[0] for g in got], spec)
    assert_close("torch composites momentum", moms, [g[1] for g in got], spec)


@pytest.mark.parametrize(
    "later",
    [
        {"type": "OneCycleLR", "max_lr": 2.0, "total_steps": 100},
        {
            "type": "CyclicLR",
            "base_lr": 0.01,
            "max_lr": 0.1,
            "step_size_up": 4,
            "base_momentum": 0.5,
            "max_momentum": 0.6,
        },
    ],
)
def test_one_cycle_reads_what_later_schedulers_write_like_torch(later: dict[str, Any]) -> None:
    spec = {
        "type": "SequentialLR",
        "schedulers": [
            {"type": "OneCycleLR", "max_lr": 1.0, "total_steps": 100},
            later,
        ],
        "milestones": [50],
    }
    lrs, moms = torch_oracle.run(spec, [0.1], 80)
    schedule = build_schedule(spec, [0.1])
    got = [schedule.at(s) for s in range(81)]
    assert_close("torch composites", lrs, [g[0] for g in got], spec)
    assert_close("torch composites momentum", moms, [g[1] for g in got], spec)


def test_linear_decay_to_zero_answers_zero() -> None:
    for start in (0.01, 0.11, 0.42, 0.5, 0.99):
        for total in (3, 10, 100, 1000):
            spec = {"type": "LinearLR", "start_factor": start, "end_factor": 0.0, "total_iters": total}
            schedule = build_schedule(spec, [1.0])
            assert schedule.at(total)[0] == [0.0]
            assert schedule.at(total + 5)[0] == [0.0]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"type": "CosineAnnealingLR", "T_max": 10**400}, "T_max"),
        ({"type": "CyclicLR", "base_lr": 0.1, "max_lr": 1.0, "step_size_up": 10**400}, "step_size_up"),
        ({"type": "OneCycleLR", "max_lr": 1.0, "total_steps": 10**400}, "total_steps"),
        ({"type": "StepLR", "step_size": 2**53 + 1}, "step_size"),
    ],
)
def test_huge_integers_are_refused_not_overflowed(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        build_schedule(spec, [0.1])
    assert info.value.errors[0].loc == (field,)


@pytest.mark.parametrize("bad_type", [["StepLR"], {}, 3, None])
def test_a_type_that_is_not_a_string(bad_type: Any) -> None:
    for spec in (
        {"type": bad_type},
        {"type": "SequentialLR", "schedulers": [{"type": bad_type}], "milestones": []},
    ):
        with pytest.raises(SpecError) as info:
            build_schedule(spec, [0.1])
        assert info.value.errors[0].loc[-1] == "type"


def test_deeply_nested_values_are_refused_quickly() -> None:
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    with pytest.raises(SpecError, match="nests containers"):
        build_schedule({"type": "MultiStepLR", "milestones": value}, [0.1])


def test_products_over_steps_are_bounded_per_spec() -> None:
    child = {"type": "MultiplicativeLR", "lr_lambda": "1 - 1 / (epoch + {k})"}
    ok = {
        "type": "ChainedScheduler",
        "schedulers": [{**child, "lr_lambda": f"1 - 1 / (epoch + {k})"} for k in range(10, 14)],
    }
    build_schedule(ok, [0.1])
    shared = {"type": "MultiplicativeLR", "lr_lambda": "1 - 1 / (epoch + 10)"}
    build_schedule(shared, [0.1, 0.2, 0.3])  # one expression for three groups: one product
    too_many = {
        "type": "ChainedScheduler",
        "schedulers": [{**child, "lr_lambda": f"1 - 1 / (epoch + {k})"} for k in range(10, 15)],
    }
    with pytest.raises(SpecError, match="at most 4"):
        build_schedule(too_many, [0.1])
