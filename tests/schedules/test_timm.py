"""The `timm.*` schedules against timm's own answers, and their refusals of bad specs.

The reference values are in tests/vectors/timm.json, written by tests/vectors/generate_timm.py
from timm's real scheduler classes; timm itself is not needed here.
"""

from __future__ import annotations

import doctest
import json
import re
from pathlib import Path
from typing import Any

import pytest
from lrtower_server.schedules import DomainError, SpecError, build_schedule, parse_spec, timm
from parity import REL_TOL, assert_close, rel_error

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "timm.json").read_text())
CASES: list[dict[str, Any]] = VECTORS["cases"]
TIMM_TYPES = {model.model_fields["type"].default for model in timm.SPECS}
NO_LR = [case for case in CASES if case.get("no_lr")]


def _case_id(case: dict[str, Any]) -> str:
    params = ",".join(f"{k}={v}" for k, v in case["spec"].items() if k != "type")
    return f"{case['spec']['type']}({params})x{len(case['base_lrs'])}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_timm(case: dict[str, Any]) -> None:
    schedule = build_schedule(case["spec"], case["base_lrs"])
    assert schedule.n_groups == len(case["base_lrs"])
    actual = [schedule.at(step)[0] for step in case["steps"]]
    assert_close("timm", case["lrs"], actual, _case_id(case))


@pytest.mark.parametrize("case", NO_LR, ids=[_case_id(c) for c in NO_LR])
def test_no_lr_where_timm_has_none(case: dict[str, Any]) -> None:
    """Where timm raises, or sets a complex LR, the step has no LR."""
    schedule = build_schedule(case["spec"], case["base_lrs"])
    for step in case["no_lr"]:
        with pytest.raises(DomainError) as caught:
            schedule.at(step)[0]
        assert caught.value.step == step


def test_vectors_summary() -> None:
    """Every type is covered by the vectors, and all of them match to 1e-12 relative."""
    assert VECTORS["library"] == "timm"
    assert {case["spec"]["type"] for case in CASES} == TIMM_TYPES
    points, worst = 0, 0.0
    for case in CASES:
        schedule = build_schedule(case["spec"], case["base_lrs"])
        for step, expected in zip(case["steps"], case["lrs"], strict=True):
            for want, got in zip(expected, schedule.at(step)[0], strict=True):
                points += 1
                worst = max(worst, rel_error(want, got))
    print(f"timm: {len(CASES)} cases, {points} points, max rel err {worst:.3g} (timm {VECTORS['version']})")
    assert points > 1000
    assert worst <= REL_TOL


def test_docstring_examples() -> None:
    result = doctest.testmod(timm)
    assert result.attempted > 0
    assert result.failed == 0


INVALID: list[tuple[dict[str, Any], tuple[str | int, ...], Any]] = [
    ({"type": "timm.cosine", "t_initial": 0}, ("t_initial",), 0),
    ({"type": "timm.cosine", "t_initial": 10.0}, ("t_initial",), 10.0),
    ({"type": "timm.cosine", "t_initial": 10, "lr_min": -1e-6}, ("lr_min",), -1e-6),
    ({"type": "timm.cosine", "t_initial": 10, "cycle_mul": 0.0}, ("cycle_mul",), 0.0),
    ({"type": "timm.cosine", "t_initial": 10, "cycle_decay": -0.5}, ("cycle_decay",), -0.5),
    ({"type": "timm.cosine", "t_initial": 10, "cycle_limit": -1}, ("cycle_limit",), -1),
    ({"type": "timm.cosine", "t_initial": 10, "warmup_t": -2}, ("warmup_t",), -2),
    ({"type": "timm.cosine", "t_initial": 10, "warmup_lr_init": -0.1}, ("warmup_lr_init",), -0.1),
    ({"type": "timm.cosine", "t_initial": 10, "warmup_prefix": 1}, ("warmup_prefix",), 1),
    ({"type": "timm.cosine", "t_initial": 10, "k_decay": 0.0}, ("k_decay",), 0.0),
    ({"type": "timm.tanh", "t_initial": 10, "lb": 3.0, "ub": 3.0}, ("ub",), 3.0),
    ({"type": "timm.tanh", "t_initial": 10, "cycle_mul": 0.5, "warmup_t": 40}, ("warmup_t",), 40),
    ({"type": "timm.poly", "t_initial": 10, "power": -1.0}, ("power",), -1.0),
    ({"type": "timm.step", "decay_t": 0}, ("decay_t",), 0.0),
    ({"type": "timm.step", "decay_t": 3, "decay_rate": -0.1}, ("decay_rate",), -0.1),
    ({"type": "timm.multistep", "decay_t": [30, 10]}, ("decay_t",), [30, 10]),
    ({"type": "timm.multistep", "decay_t": [10, -5]}, ("decay_t", 1), -5),
    ({"type": "timm.multistep", "decay_t": 30}, ("decay_t",), 30),
    ({"type": "timm.wsd", "t_initial": 10, "decay_t": 11}, ("decay_t",), 11),
    ({"type": "timm.wsd", "t_initial": 10, "decay_t": 0}, ("decay_t",), 0),
    ({"type": "timm.wsd", "t_initial": 10, "decay_t": 4, "decay_ratio": 1.0}, ("decay_ratio",), 1.0),
    ({"type": "timm.wsd", "t_initial": 10, "decay_t": 4, "decay_power": 0.0}, ("decay_power",), 0.0),
    ({"type": "timm.wsd", "t_initial": 10, "decay_t": 4, "stable_power": -1.0}, ("stable_power",), -1.0),
    ({"type": "timm.wsd", "t_initial": 10, "decay_t": 4, "stable_fn": "rsqrt"}, ("stable_timescale",), None),
    ({"type": "timm.wsd", "t_initial": 10, "decay_t": 4, "decay_fn": "step"}, ("decay_fn",), "step"),
    ({"type": "timm.rsqrt", "t_initial": 10, "decay_t": 4}, ("stable_timescale",), None),
    (
        {"type": "timm.rsqrt", "t_initial": 10, "decay_t": 4, "stable_timescale": 0.0},
        ("stable_timescale",),
        0.0,
    ),
]


@pytest.mark.parametrize(
    ("spec", "loc", "value"), INVALID, ids=[f"{s['type']}:{'.'.join(map(str, loc))}" for s, loc, _ in INVALID]
)
def test_invalid_spec_names_the_field(spec: dict[str, Any], loc: tuple[str | int, ...], value: Any) -> None:
    with pytest.raises(SpecError) as caught:
        build_schedule(spec, [0.1])
    matching = [e for e in caught.value.errors if e.loc == loc]
    assert matching, f"no error at {loc}: {caught.value.errors}"
    if value is not None:
        error = matching[0]
        assert error.value == value or repr(value) in error.msg or str(value) in error.msg, error


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "timm.cosine", "t_initial": 0}, "got 0"),
        ({"type": "timm.tanh", "t_initial": 10, "lb": 3.0, "ub": 1.0}, "got 1.0 <= 3.0"),
        ({"type": "timm.multistep", "decay_t": [10, 30, 20]}, "got 20 after 30"),
        ({"type": "timm.wsd", "t_initial": 10, "decay_t": 11}, "got 11 > 10"),
        ({"type": "timm.wsd", "t_initial": 10, "decay_t": 4, "decay_ratio": 1.5}, "got 1.5"),
    ],
)
def test_messages_quote_the_value(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        build_schedule(spec, [0.1])


@pytest.mark.parametrize("type_name", sorted(TIMM_TYPES))
def test_base_lrs_are_required(type_name: str) -> None:
    case = next(c for c in CASES if c["spec"]["type"] == type_name)
    with pytest.raises(SpecError, match="base LRs"):
        build_schedule(case["spec"], None)


@pytest.mark.parametrize(
    "field",
    ["noise_range_t", "noise_pct", "noise_std", "noise_seed", "t_in_epochs", "initialize", "t_initail"],
)
def test_unknown_and_left_out_fields_are_refused(field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"type": "timm.cosine", "t_initial": 10, field: 0.5})
    assert (field,) in [e.loc for e in caught.value.errors]


def test_misspelled_type_gets_a_suggestion() -> None:
    with pytest.raises(SpecError, match=r"timm\.cosine") as caught:
        parse_spec({"type": "timm.cosin", "t_initial": 10})
    assert caught.value.errors[0].loc == ("type",)


def test_plateau_is_not_a_schedule_type() -> None:
    with pytest.raises(SpecError, match="unknown schedule type"):
        parse_spec({"type": "timm.plateau"})


def test_constant_is_the_base_lrs_after_the_warmup() -> None:
    schedule = build_schedule({"type": "timm.constant", "warmup_t": 4, "warmup_lr_init": 0.0}, [0.4, 0.8])
    assert schedule.at(0)[0] == [0.0, 0.0]
    assert schedule.at(2)[0] == [0.2, 0.4]
    assert schedule.at(4)[0] == schedule.at(2**53)[0] == [0.4, 0.8]


def test_rsqrt_is_wsd_with_an_rsqrt_stable_phase() -> None:
    common = {"t_initial": 30, "decay_t": 6, "warmup_t": 5, "lr_min": 1e-4}
    rsqrt = build_schedule({"type": "timm.rsqrt", **common}, [0.1])
    wsd = build_schedule({"type": "timm.wsd", **common, "stable_fn": "rsqrt", "decay_fn": "linear"}, [0.1])
    for step in [*range(40), 10**12]:
        assert rsqrt.at(step)[0] == wsd.at(step)[0]


def test_shrinking_cycles_end() -> None:
    """With cycle_mul < 1 the cycles add up to t_initial / (1 - cycle_mul); timm raises past it."""
    schedule = build_schedule(
        {"type": "timm.cosine", "t_initial": 10, "cycle_mul": 0.5, "cycle_limit": 2}, [0.1]
    )
    assert schedule.at(19)[0] == [0.0]
    with pytest.raises(DomainError, match="cycle"):
        schedule.at(20)[0]
