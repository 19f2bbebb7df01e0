"""The `timm.*` schedules against timm's own answers, and their refusals of bad specs.

The reference values are in tests/vectors/timm.json, written by tests/vectors/generate_timm.py
from timm's real scheduler classes; timm itself is not needed here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import reference_vectors as rv
from lrtower_server.schedules import DomainError, SpecError, build_schedule, parse_spec, timm

VECTORS = rv.load("timm")
CASES: list[dict[str, Any]] = VECTORS["cases"]
TIMM_TYPES = rv.type_names(timm.SPECS)


@pytest.mark.parametrize("case", CASES, ids=[rv.case_id(c) for c in CASES])
def test_matches_timm(case: dict[str, Any]) -> None:
    """timm's LRs, and no LR where timm raises or sets a complex LR (the case's `no_lr` steps)."""
    rv.check_case("timm", case)


def test_vectors_cover_every_type() -> None:
    rv.check_coverage(VECTORS, "timm", timm.SPECS, points=1000)


INVALID: list[rv.Invalid] = [
    ({"type": "timm.cosine", "t_initial": 0}, ("t_initial",), 0),
    ({"type": "timm.cosine", "t_initial": 10.5}, ("t_initial",), 10.5),
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


@pytest.mark.parametrize(("spec", "loc", "value"), INVALID, ids=rv.invalid_ids(INVALID))
def test_invalid_spec_names_the_field(spec: dict[str, Any], loc: tuple[str | int, ...], value: Any) -> None:
    rv.check_refused(spec, [0.1], loc, value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "timm.cosine", "t_initial": 0}, "got 0"),
        ({"type": "timm.step", "decay_t": 0}, "greater than 0, got 0"),
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
    rv.check_unknown_field({"type": "timm.cosine", "t_initial": 10, field: 0.5}, field)


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
