"""The `keras.*` schedules against Keras' own values, and their refusals of bad specs.

The reference values are in tests/vectors/keras.json, written by tests/vectors/generate_keras.py
from the real Keras 3 in float64 on its TensorFlow backend (the one backend where Keras keeps
float64 through cos/floor/ceil; see that script); neither is needed here. A null value there is
a step where Keras answers inf or NaN, which lrtower answers with a DomainError.
"""

from __future__ import annotations

import contextlib
import doctest
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from lrtower_server.schedules import STEP_MAX, DomainError, SpecError, build_schedule, keras, parse_spec
from parity import TALLIES, Tally

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "keras.json").read_text())
CASES: list[dict[str, Any]] = VECTORS["cases"]
KERAS_TYPES = {model.model_fields["type"].default for model in keras.SPECS}
REL_TOL = 1e-12
TINY = 1e-300


def rel_error(expected: float, actual: float) -> float:
    """|a - b| / max(|a|, |b|); 0 when both are below 1e-300 (underflow is no disagreement)."""
    if expected == actual or (abs(expected) < TINY and abs(actual) < TINY):
        return 0.0
    return abs(expected - actual) / max(abs(expected), abs(actual))


def compare(case: dict[str, Any]) -> tuple[int, float, float]:
    """Check every step of a case.

    Returns the points compared, the largest relative error, and the largest absolute error as
    a fraction of the case's peak value.
    """
    schedule = build_schedule(case["spec"], case["base_lrs"])
    bases = case["base_lrs"] or [1.0]
    assert schedule.n_groups == len(bases)
    peak = max((abs(v * b / bases[0]) for v in case["values"] if v is not None for b in bases), default=0.0)
    points, worst, worst_abs = 0, 0.0, 0.0
    for step, value in zip(case["steps"], case["values"], strict=True):
        if value is None:
            with pytest.raises(DomainError):
                schedule.at(step)[0]
            points += 1
            continue
        for i, got in enumerate(schedule.at(step)[0]):
            want = value * bases[i] / bases[0]
            err = rel_error(want, got)
            assert err <= REL_TOL, f"{case['spec']} step {step} group {i}: keras {want!r}, lrtower {got!r}"
            points += 1
            worst = max(worst, err)
            if peak:
                worst_abs = max(worst_abs, abs(want - got) / peak)
    return points, worst, worst_abs


def _case_id(case: dict[str, Any]) -> str:
    params = ",".join(f"{k}={v}" for k, v in case["spec"].items() if k != "type")
    groups = len(case["base_lrs"]) if case["base_lrs"] else 0
    return f"{case['spec']['type']}({params})x{groups}"[:150]


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_keras(case: dict[str, Any]) -> None:
    compare(case)


def test_vectors_summary() -> None:
    """Every type is covered by the vectors, and all of them match to 1e-12 relative."""
    assert VECTORS["library"] == "keras"
    assert VECTORS["backend"].startswith("tensorflow")
    assert {case["spec"]["type"] for case in CASES} == KERAS_TYPES
    points, worst, worst_abs = 0, 0.0, 0.0
    for case in CASES:
        n, err, err_abs = compare(case)
        points += n
        worst, worst_abs = max(worst, err), max(worst_abs, err_abs)
    TALLIES["keras"] = Tally(cases=len(CASES), points=points, max_rel=worst, max_abs_of_peak=worst_abs)
    print(
        f"keras: {len(CASES)} cases, {points} points, max rel err {worst:.3g}"
        f" (keras {VECTORS['version']}, {VECTORS['backend']})"
    )
    assert points > 3000
    assert worst <= REL_TOL


def test_docstring_examples() -> None:
    result = doctest.testmod(keras)
    assert result.attempted >= 6
    assert result.failed == 0


def test_large_steps_are_fast() -> None:
    schedules = [build_schedule(case["spec"], case["base_lrs"]) for case in CASES]
    steps = [STEP_MAX - k * 7919 for k in range(200)]
    start = time.perf_counter()
    for schedule in schedules:
        for step in steps:
            with contextlib.suppress(DomainError):
                schedule.at(step)[0]
    assert time.perf_counter() - start < 5.0


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

INVALID: list[tuple[dict[str, Any], tuple[str | int, ...], Any]] = [
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


@pytest.mark.parametrize(
    ("spec", "loc", "value"), INVALID, ids=[f"{s['type']}:{'.'.join(map(str, loc))}" for s, loc, _ in INVALID]
)
def test_invalid_spec_names_the_field(spec: dict[str, Any], loc: tuple[str | int, ...], value: Any) -> None:
    with pytest.raises(SpecError) as caught:
        build_schedule(spec, None)
    matching = [e for e in caught.value.errors if e.loc == loc]
    assert matching, f"no error at {loc}: {caught.value.errors}"
    if value is not None:
        error = matching[0]
        assert error.value == value or repr(value) in error.msg or str(value) in error.msg, error


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
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert (field,) in [e.loc for e in caught.value.errors]


def test_misspelled_type_gets_a_suggestion() -> None:
    with pytest.raises(SpecError, match=r"keras\.CosineDecay") as caught:
        parse_spec({**COS, "type": "keras.CosineDecayy"})
    assert caught.value.errors[0].loc == ("type",)
