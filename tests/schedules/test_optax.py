"""The `optax.*` schedules against optax's own values, and their refusals of bad specs.

The reference values are in tests/vectors/optax.json, written by tests/vectors/generate_optax.py
from the real optax with 64-bit jax; neither is needed here. A null value there is a step where
optax answers inf or NaN, which lrtower answers with a DomainError.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import reference_vectors as rv
from lrtower_server.schedules import DomainError, SpecError, build_schedule, optax, parse_spec

VECTORS = rv.load("optax")
CASES: list[dict[str, Any]] = VECTORS["cases"]


@pytest.mark.parametrize("case", CASES, ids=[rv.case_id(c) for c in CASES])
def test_matches_optax(case: dict[str, Any]) -> None:
    rv.check_case("optax", case)


def test_vectors_cover_every_type() -> None:
    rv.check_coverage(VECTORS, "optax", optax.SPECS, points=5000)


def test_large_steps_are_fast() -> None:
    rv.check_large_steps_cost_no_more(CASES)


# --- conventions, spelled out -----------------------------------------------------------------


def test_boundaries_switch_at_the_boundary() -> None:
    """optax switches at count >= boundary (Keras switches after it)."""
    spec = {
        "type": "optax.piecewise_constant_schedule",
        "init_value": 1.0,
        "boundaries_and_scales": {"10": 0.5},
    }
    schedule = build_schedule(spec, None)
    assert [schedule.at(t)[0] for t in (9, 10)] == [[1.0], [0.5]]


def test_join_rebases_the_count() -> None:
    spec = {
        "type": "optax.join_schedules",
        "boundaries": [100],
        "schedules": [
            {"type": "optax.constant_schedule", "value": 0.0},
            {"type": "optax.linear_schedule", "init_value": 1.0, "end_value": 0.0, "transition_steps": 10},
        ],
    }
    schedule = build_schedule(spec, None)
    assert [schedule.at(t)[0][0] for t in (99, 100, 105, 110)] == [0.0, 1.0, 0.5, 0.0]


def test_groups_scale_by_their_share_of_the_first() -> None:
    spec = {"type": "optax.constant_schedule", "value": 0.1}
    assert build_schedule(spec, None).at(3)[0] == [0.1]
    assert build_schedule(spec, [2.0, 1.0, 0.0]).at(3)[0] == [0.1, 0.05, 0.0]
    with pytest.raises(SpecError) as caught:
        build_schedule(spec, [0.0, 1.0])
    assert caught.value.errors[0].loc == ("lrs", 0)


def test_growth_past_a_double_is_a_domain_error() -> None:
    schedule = build_schedule(
        {"type": "optax.exponential_decay", "init_value": 1.0, "transition_steps": 1, "decay_rate": 2.0}, None
    )
    assert schedule.at(1000)[0] == [2.0**1000]
    with pytest.raises(DomainError) as caught:
        schedule.at(1024)[0]
    assert caught.value.step == 1024


def test_a_group_overflowing_is_a_domain_error() -> None:
    schedule = build_schedule({"type": "optax.constant_schedule", "value": 1e300}, [1e-10, 1.0])
    with pytest.raises(DomainError, match="not a finite LR"):
        schedule.at(0)


def test_domain_errors_in_a_join_name_the_outer_step() -> None:
    grow = {"type": "optax.exponential_decay", "init_value": 1.0, "transition_steps": 1, "decay_rate": 2.0}
    spec = {"type": "optax.join_schedules", "boundaries": [10], "schedules": [grow, grow]}
    with pytest.raises(DomainError) as caught:
        build_schedule(spec, None).at(2000)[0]
    assert caught.value.step == 2000


# --- refusals ---------------------------------------------------------------------------------

LIN = {"type": "optax.linear_schedule", "init_value": 1.0, "end_value": 0.0, "transition_steps": 10}
WCD = {
    "type": "optax.warmup_cosine_decay_schedule",
    "init_value": 0.0,
    "peak_value": 1.0,
    "warmup_steps": 10,
    "decay_steps": 100,
}
PWC = {"type": "optax.piecewise_constant_schedule", "init_value": 1.0}
PWI = {"type": "optax.piecewise_interpolate_schedule", "interpolate_type": "linear", "init_value": 1.0}
EXP = {"type": "optax.exponential_decay", "init_value": 1.0, "transition_steps": 10, "decay_rate": 0.5}
OCL = {"type": "optax.linear_onecycle_schedule", "transition_steps": 100, "peak_value": 0.1}


def join(*schedules: dict[str, Any], boundaries: list[int] | None = None) -> dict[str, Any]:
    bounds = boundaries if boundaries is not None else [10 * (i + 1) for i in range(len(schedules) - 1)]
    return {"type": "optax.join_schedules", "schedules": list(schedules), "boundaries": bounds}


INVALID: list[rv.Invalid] = [
    ({"type": "optax.constant_schedule", "value": -0.1}, ("value",), -0.1),
    ({"type": "optax.constant_schedule", "value": "0.1"}, ("value",), "0.1"),
    ({**LIN, "init_value": -1.0}, ("init_value",), -1.0),
    ({**LIN, "transition_steps": 10.5}, ("transition_steps",), 10.5),
    ({**LIN, "transition_steps": True}, ("transition_steps",), True),
    ({**LIN, "transition_steps": 2**53 + 1}, ("transition_steps",), 2**53 + 1),
    ({**LIN, "transition_begin": -1}, ("transition_begin",), -1),
    (
        {
            "type": "optax.polynomial_schedule",
            "init_value": 1.0,
            "end_value": 0.0,
            "power": -1.0,
            "transition_steps": 10,
        },
        ("power",),
        -1.0,
    ),
    ({**EXP, "transition_steps": 0}, ("transition_steps",), 0),
    ({**EXP, "decay_rate": 0.0}, ("decay_rate",), 0.0),
    ({**EXP, "decay_rate": -0.5}, ("decay_rate",), -0.5),
    ({**EXP, "end_value": -0.1}, ("end_value",), -0.1),
    ({**EXP, "staircase": "yes"}, ("staircase",), "yes"),
    ({"type": "optax.cosine_decay_schedule", "init_value": 1.0, "decay_steps": 0}, ("decay_steps",), 0),
    (
        {"type": "optax.cosine_decay_schedule", "init_value": 1.0, "decay_steps": 5, "alpha": -0.1},
        ("alpha",),
        -0.1,
    ),
    (
        {"type": "optax.cosine_decay_schedule", "init_value": 1.0, "decay_steps": 5, "exponent": -1.0},
        ("exponent",),
        -1.0,
    ),
    ({**WCD, "decay_steps": 10}, ("decay_steps",), 10),
    ({**WCD, "warmup_steps": -1}, ("warmup_steps",), -1),
    ({**WCD, "end_value": float("nan")}, ("end_value",), None),
    ({**WCD, "peak_value": float("inf")}, ("peak_value",), None),
    ({**PWC, "boundaries_and_scales": {"100": -0.5}}, ("boundaries_and_scales", "100"), -0.5),
    ({**PWC, "boundaries_and_scales": {"1e3": 0.5}}, ("boundaries_and_scales", "1e3"), "1e3"),
    ({**PWC, "boundaries_and_scales": {"0100": 0.5}}, ("boundaries_and_scales", "0100"), "0100"),
    ({**PWC, "boundaries_and_scales": {"ten": 0.5}}, ("boundaries_and_scales", "ten"), "ten"),
    (
        {**PWC, "boundaries_and_scales": {str(2**53 + 1): 0.5}},
        ("boundaries_and_scales", str(2**53 + 1)),
        None,
    ),
    ({**PWC, "boundaries_and_scales": {"1": 1e200, "2": 1e200}}, ("boundaries_and_scales",), None),
    ({**PWC, "boundaries_and_scales": [[100, 0.5]]}, ("boundaries_and_scales",), [[100, 0.5]]),
    ({**PWI, "interpolate_type": "cubic"}, ("interpolate_type",), "cubic"),
    ({**PWI, "boundaries_and_scales": {"10": 1e300}}, ("boundaries_and_scales",), None),
    ({**OCL, "transition_steps": 0}, ("transition_steps",), 0),
    ({**OCL, "div_factor": 0.0}, ("div_factor",), 0.0),
    ({**OCL, "final_div_factor": -1.0}, ("final_div_factor",), -1.0),
    ({**OCL, "pct_start": 1e15}, ("pct_start",), 1e15),
    ({**OCL, "div_factor": 1e-200, "final_div_factor": 1e-200}, ("div_factor",), 1e-200),
    (
        {**OCL, "type": "optax.cosine_onecycle_schedule", "div_factor": 1e-200, "final_div_factor": 1e-200},
        ("final_div_factor",),
        1e-200,
    ),
    ({**OCL, "peak_value": 1e300, "div_factor": 1e-10}, ("div_factor",), 1e-10),
    ({"type": "optax.sgdr_schedule", "cosine_kwargs": []}, ("cosine_kwargs",), None),
    (
        {
            "type": "optax.sgdr_schedule",
            "cosine_kwargs": [{**{k: v for k, v in WCD.items() if k != "type"}, "decay_steps": 5}],
        },
        ("cosine_kwargs", 0, "decay_steps"),
        5,
    ),
    (
        {
            "type": "optax.sgdr_schedule",
            "cosine_kwargs": [
                {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 1, "decay_steps": 5, "type": "x"}
            ],
        },
        ("cosine_kwargs", 0, "type"),
        "x",
    ),
    (join(LIN, {**LIN, "init_value": -1.0}), ("schedules", 1, "init_value"), -1.0),
    (join(LIN, join(LIN, {**EXP, "decay_rate": 0})), ("schedules", 1, "schedules", 1, "decay_rate"), 0),
    (join(LIN, {"type": "StepLR", "step_size": 3}), ("schedules", 1, "type"), "StepLR"),
    (join(LIN, {"type": "keras.ExponentialDecay"}), ("schedules", 1, "type"), "keras.ExponentialDecay"),
    (join(LIN, LIN, boundaries=[10, 20]), ("boundaries",), [10, 20]),
    (join(LIN, LIN, boundaries=[]), ("boundaries",), []),
    (join(boundaries=[]), ("schedules",), []),
    (join(LIN, LIN, boundaries=[1.5]), ("boundaries", 0), 1.5),
]


@pytest.mark.parametrize(("spec", "loc", "value"), INVALID, ids=rv.invalid_ids(INVALID))
def test_invalid_spec_names_the_field(spec: dict[str, Any], loc: tuple[str | int, ...], value: Any) -> None:
    rv.check_refused(spec, None, loc, value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({**WCD, "decay_steps": 10}, "must exceed warmup_steps (10)"),
        ({**PWC, "boundaries_and_scales": {"1e3": 0.5}}, "got '1e3'"),
        (
            join(LIN, LIN, boundaries=[10, 20]),
            "expected 1 boundaries (one fewer than the 2 schedules), got 2",
        ),
        (
            join(LIN, {"type": "StepLR", "step_size": 3}),
            "joins optax schedules only (optax.<name>), got 'StepLR'",
        ),
        ({**OCL, "pct_start": 1e15}, "got 1000000000000000.0"),
    ],
)
def test_messages_quote_the_value(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(spec)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({**LIN, "transition_step": 10}, "transition_step"),
        ({**EXP, "name": "decay"}, "name"),
        ({**WCD, "alpha": 0.0}, "alpha"),
        ({"type": "optax.constant_schedule", "value": 0.1, "init_value": 0.1}, "init_value"),
    ],
)
def test_unknown_fields_are_refused(spec: dict[str, Any], field: str) -> None:
    rv.check_unknown_field(spec, field)


def test_unknown_fields_are_refused_in_nested_schedules() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(join(LIN, {**LIN, "decay_rate": 0.5}))
    assert [e.loc for e in caught.value.errors] == [("schedules", 1, "decay_rate")]


def test_misspelled_type_gets_a_suggestion() -> None:
    with pytest.raises(SpecError, match=r"optax\.linear_schedule") as caught:
        parse_spec({**LIN, "type": "optax.linear_schedul"})
    assert caught.value.errors[0].loc == ("type",)
    with pytest.raises(SpecError, match=r"optax\.linear_schedule") as caught:
        parse_spec(join(LIN, {**LIN, "type": "optax.linear_schedul"}))
    assert caught.value.errors[0].loc == ("schedules", 1, "type")


def test_every_error_of_a_spec_is_reported() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**LIN, "init_value": -1.0, "end_value": -2.0, "transition_begin": -3})
    assert {e.loc for e in caught.value.errors} == {("init_value",), ("end_value",), ("transition_begin",)}


def test_onecycle_boundaries_collide_as_in_optax() -> None:
    """optax builds a dict literal: when two boundaries coincide the later entry wins."""
    spec = {**OCL, "pct_start": 0.5, "pct_final": 0.5, "div_factor": 10.0}
    schedule = build_schedule(spec, None)
    # {50: 10.0, 50: 0.1, 100: 1e-4} is {50: 0.1, 100: 1e-4}: from 0.01 down to 0.001, no peak.
    assert schedule.at(0)[0] == [0.01]
    assert schedule.at(50)[0] == [0.001]
