"""The `keras.*` schedules against Keras' own values, and their refusals of bad specs.

The reference values are in tests/vectors/keras.json, written by tests/vectors/generate_keras.py
from the real Keras 3 in float64 on its TensorFlow backend (the one backend where Keras keeps
float64 through cos/floor/ceil; see that script); neither is needed here. A null value there is
a step where Keras answers inf or NaN, which lrtower answers with a DomainError.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import reference_vectors as rv
from lrtower_server.schedules import DomainError, SpecError, build_schedule, keras, parse_spec

VECTORS = rv.load("keras")
CASES: list[dict[str, Any]] = VECTORS["cases"]


@pytest.mark.parametrize("case", CASES, ids=[rv.case_id(c) for c in CASES])
def test_matches_keras(case: dict[str, Any]) -> None:
    rv.check_case("keras", case)


def test_vectors_cover_every_type() -> None:
    rv.check_coverage(VECTORS, "keras", keras.SPECS, points=3000)
    assert VECTORS["backend"].startswith("tensorflow")


def test_large_steps_are_fast() -> None:
    rv.check_large_steps_cost_no_more(CASES)


# --- conventions, spelled out -----------------------------------------------------------------


def test_piecewise_switches_after_the_boundary() -> None:
    """Keras switches at step > boundary (optax at step >= boundary)."""
    spec = {"type": "keras.PiecewiseConstantDecay", "boundaries": [10], "values": [1.0, 0.5]}
    schedule = build_schedule(spec, None)
    assert [schedule.at(t)[0] for t in (10, 11)] == [[1.0], [0.5]]


def test_groups_scale_by_their_share_of_the_first() -> None:
    spec = {
        "type": "keras.ExponentialDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 1,
        "decay_rate": 0.5,
    }
    assert build_schedule(spec, [1.0, 4.0]).at(1)[0] == [0.05, 0.2]


def test_shrinking_restarts_end_with_a_domain_error() -> None:
    """With t_mul < 1 the cycles add up to first_decay_steps / (1 - t_mul); Keras answers NaN after."""
    spec = {
        "type": "keras.CosineDecayRestarts",
        "initial_learning_rate": 1.0,
        "first_decay_steps": 10,
        "t_mul": 0.5,
    }
    schedule = build_schedule(spec, None)
    schedule.at(19)[0]
    with pytest.raises(DomainError, match=re.escape("end for good after 20.0 steps")) as caught:
        schedule.at(20)[0]
    assert caught.value.step == 20


def test_growth_past_a_double_is_a_domain_error() -> None:
    spec = {
        "type": "keras.ExponentialDecay",
        "initial_learning_rate": 1.0,
        "decay_steps": 1,
        "decay_rate": 2.0,
    }
    schedule = build_schedule(spec, None)
    assert schedule.at(1000)[0] == [2.0**1000]
    with pytest.raises(DomainError):
        schedule.at(1024)[0]


def test_degenerate_decay_steps_follow_ieee() -> None:
    """step / 1e-320 is inf: Keras floors it to inf (Python's floor would raise)."""
    tiny = {"decay_steps": 1e-320, "staircase": True, "initial_learning_rate": 0.1}
    exp = build_schedule({"type": "keras.ExponentialDecay", **tiny, "decay_rate": 0.5}, None)
    assert exp.at(1)[0] == [0.0]
    inv = build_schedule({"type": "keras.InverseTimeDecay", **tiny, "decay_rate": 0.0}, None)
    with pytest.raises(DomainError, match="nan"):
        inv.at(1)[0]  # 1 + 0 * inf is NaN in Keras too


def test_cosine_decay_warmup_steps_without_target_are_ignored() -> None:
    """As in Keras, warmup_steps means nothing without warmup_target."""
    plain = {"type": "keras.CosineDecay", "initial_learning_rate": 0.1, "decay_steps": 100}
    a, b = build_schedule(plain, None), build_schedule({**plain, "warmup_steps": 50}, None)
    assert [a.at(t)[0] for t in range(0, 120, 7)] == [b.at(t)[0] for t in range(0, 120, 7)]


# --- refusals ---------------------------------------------------------------------------------

EXP = {"type": "keras.ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 100, "decay_rate": 0.9}
PWC = {"type": "keras.PiecewiseConstantDecay", "boundaries": [10, 20], "values": [1.0, 0.5, 0.1]}
POLY = {"type": "keras.PolynomialDecay", "initial_learning_rate": 0.1, "decay_steps": 100}
INV = {"type": "keras.InverseTimeDecay", "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}
COS = {"type": "keras.CosineDecay", "initial_learning_rate": 0.1, "decay_steps": 100}
SGDR = {"type": "keras.CosineDecayRestarts", "initial_learning_rate": 0.1, "first_decay_steps": 100}

INVALID: list[rv.Invalid] = [
    ({**EXP, "initial_learning_rate": -0.1}, ("initial_learning_rate",), -0.1),
    ({**EXP, "decay_steps": 0}, ("decay_steps",), 0),
    ({**EXP, "decay_steps": -5}, ("decay_steps",), -5),
    ({**EXP, "decay_rate": -0.9}, ("decay_rate",), -0.9),
    ({**EXP, "decay_rate": float("nan")}, ("decay_rate",), None),
    ({**EXP, "staircase": 1}, ("staircase",), 1),
    ({**PWC, "boundaries": [20, 10]}, ("boundaries",), [20, 10]),
    ({**PWC, "boundaries": [10, 10]}, ("boundaries",), [10, 10]),
    ({**PWC, "boundaries": [10.5, 20]}, ("boundaries", 0), 10.5),
    ({**PWC, "boundaries": [], "values": [1.0]}, ("boundaries",), []),
    ({**PWC, "values": [1.0, 0.5]}, ("values",), [1.0, 0.5]),
    ({**PWC, "values": [1.0, -0.5, 0.1]}, ("values", 1), -0.5),
    ({**PWC, "boundaries": [10, 2**53 + 1]}, ("boundaries", 1), 2**53 + 1),
    ({**POLY, "power": -1.0}, ("power",), -1.0),
    ({**POLY, "end_learning_rate": -1e-4}, ("end_learning_rate",), -1e-4),
    ({**POLY, "cycle": "true"}, ("cycle",), "true"),
    ({**INV, "decay_rate": -0.5}, ("decay_rate",), -0.5),
    ({**INV, "decay_steps": 0.0}, ("decay_steps",), 0.0),
    ({**COS, "alpha": -0.1}, ("alpha",), -0.1),
    ({**COS, "warmup_target": -1.0}, ("warmup_target",), -1.0),
    ({**COS, "warmup_steps": -10}, ("warmup_steps",), -10),
    ({**COS, "decay_steps": 0}, ("decay_steps",), 0),
    ({**SGDR, "first_decay_steps": 0}, ("first_decay_steps",), 0),
    ({**SGDR, "t_mul": 0.0}, ("t_mul",), 0.0),
    ({**SGDR, "m_mul": -1.0}, ("m_mul",), -1.0),
    ({**SGDR, "alpha": -0.5}, ("alpha",), -0.5),
]


@pytest.mark.parametrize(("spec", "loc", "value"), INVALID, ids=rv.invalid_ids(INVALID))
def test_invalid_spec_names_the_field(spec: dict[str, Any], loc: tuple[str | int, ...], value: Any) -> None:
    rv.check_refused(spec, None, loc, value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({**PWC, "boundaries": [20, 10]}, "boundaries[1] = 10 follows 20"),
        ({**PWC, "values": [1.0, 0.5]}, "expected 3 values (one more than boundaries), got 2: [1.0, 0.5]"),
    ],
)
def test_messages_quote_the_value(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(spec)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({**EXP, "name": "ExponentialDecay"}, "name"),
        ({**POLY, "end_lr": 0.0}, "end_lr"),
        ({**COS, "warmup_target_lr": 0.1}, "warmup_target_lr"),
        ({**SGDR, "_t_mul": 2.0}, "_t_mul"),
    ],
)
def test_unknown_fields_are_refused(spec: dict[str, Any], field: str) -> None:
    rv.check_unknown_field(spec, field)


def test_misspelled_type_gets_a_suggestion() -> None:
    with pytest.raises(SpecError, match=r"keras\.CosineDecay") as caught:
        parse_spec({**COS, "type": "keras.CosineDecayy"})
    assert caught.value.errors[0].loc == ("type",)
