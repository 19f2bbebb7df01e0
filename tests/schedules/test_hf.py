"""The `hf.*` schedules against transformers' own answers, and their refusals of bad specs.

The reference values are in tests/vectors/hf.json, written by tests/vectors/generate_hf.py from
the real `transformers.get_scheduler`; transformers itself is not needed here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import reference_vectors as rv
from lrtower_server.schedules import DomainError, SpecError, build_schedule, hf, parse_spec

VECTORS = rv.load("hf")
CASES: list[dict[str, Any]] = VECTORS["cases"]
HF_TYPES = rv.type_names(hf.SPECS)


@pytest.mark.parametrize("case", CASES, ids=[rv.case_id(c) for c in CASES])
def test_matches_transformers(case: dict[str, Any]) -> None:
    rv.check_case("hf", case)


def test_vectors_cover_every_type() -> None:
    rv.check_coverage(VECTORS, "transformers", hf.SPECS, points=1000)


W10 = {"num_warmup_steps": 10, "num_training_steps": 100}

INVALID: list[rv.Invalid] = [
    ({"type": "hf.linear", "num_warmup_steps": -1, "num_training_steps": 10}, ("num_warmup_steps",), -1),
    ({"type": "hf.linear", "num_warmup_steps": 100, "num_training_steps": 10}, ("num_training_steps",), 10),
    (
        {"type": "hf.linear", "num_warmup_steps": 0, "num_training_steps": 2**53 + 1},
        ("num_training_steps",),
        2**53 + 1,
    ),
    ({"type": "hf.linear", "num_warmup_steps": 1.5, "num_training_steps": 10}, ("num_warmup_steps",), 1.5),
    ({"type": "hf.linear", "num_warmup_steps": True, "num_training_steps": 10}, ("num_warmup_steps",), True),
    ({"type": "hf.linear", "num_warmup_steps": "10", "num_training_steps": 10}, ("num_warmup_steps",), "10"),
    ({"type": "hf.cosine", **W10, "num_cycles": -0.5}, ("num_cycles",), -0.5),
    ({"type": "hf.cosine", **W10, "num_cycles": float("nan")}, ("num_cycles",), None),
    ({"type": "hf.cosine_with_restarts", **W10, "num_cycles": 1.5}, ("num_cycles",), 1.5),
    (
        {"type": "hf.polynomial", "num_warmup_steps": 10, "num_training_steps": 10},
        ("num_training_steps",),
        10,
    ),
    ({"type": "hf.polynomial", **W10, "lr_end": -1e-7}, ("lr_end",), -1e-7),
    ({"type": "hf.polynomial", **W10, "power": -1.0}, ("power",), -1.0),
    ({"type": "hf.constant_with_warmup", "num_warmup_steps": -3}, ("num_warmup_steps",), -3),
    ({"type": "hf.inverse_sqrt", "num_warmup_steps": 10, "timescale": 0}, ("timescale",), 0),
    ({"type": "hf.cosine_with_min_lr", **W10}, ("min_lr_rate",), None),
    ({"type": "hf.cosine_with_min_lr", **W10, "min_lr": 1e-5, "min_lr_rate": 0.1}, ("min_lr_rate",), 0.1),
    ({"type": "hf.cosine_with_min_lr", **W10, "min_lr_rate": -0.1}, ("min_lr_rate",), -0.1),
    ({"type": "hf.cosine_warmup_with_min_lr", **W10, "min_lr": -1.0}, ("min_lr",), -1.0),
    (
        {"type": "hf.cosine_warmup_with_min_lr", **W10, "min_lr_rate": 0.1, "warmup_lr_rate": -0.2},
        ("warmup_lr_rate",),
        -0.2,
    ),
    (
        {"type": "hf.warmup_stable_decay", "num_warmup_steps": 10, "num_decay_steps": 10},
        ("num_stable_steps",),
        None,
    ),
    (
        {
            "type": "hf.warmup_stable_decay",
            "num_warmup_steps": 10,
            "num_decay_steps": 10,
            "num_training_steps": 15,
        },
        ("num_training_steps",),
        15,
    ),
    (
        {
            "type": "hf.warmup_stable_decay",
            "num_warmup_steps": 10,
            "num_decay_steps": 10,
            "num_training_steps": 100,
            "num_stable_steps": 50,
        },
        ("num_stable_steps",),
        50,
    ),
    (
        {
            "type": "hf.warmup_stable_decay",
            "num_warmup_steps": 1,
            "num_decay_steps": 1,
            "num_stable_steps": 1,
            "warmup_type": "exp",
        },
        ("warmup_type",),
        "exp",
    ),
    (
        {
            "type": "hf.warmup_stable_decay",
            "num_warmup_steps": 1,
            "num_decay_steps": 1,
            "num_stable_steps": 1,
            "min_lr_ratio": -0.1,
        },
        ("min_lr_ratio",),
        -0.1,
    ),
]


@pytest.mark.parametrize(("spec", "loc", "value"), INVALID, ids=rv.invalid_ids(INVALID))
def test_invalid_spec_names_the_field(spec: dict[str, Any], loc: tuple[str | int, ...], value: Any) -> None:
    rv.check_refused(spec, [0.1], loc, value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "hf.linear", "num_warmup_steps": 100, "num_training_steps": 10}, "got 10 < 100"),
        ({"type": "hf.cosine", **W10, "num_cycles": -0.5}, "got -0.5"),
        ({"type": "hf.polynomial", "num_warmup_steps": 10, "num_training_steps": 10}, "got 10 == 10"),
        ({"type": "hf.cosine_with_min_lr", **W10, "min_lr": 1e-5, "min_lr_rate": 0.1}, "min_lr (1e-05)"),
        (
            {
                "type": "hf.warmup_stable_decay",
                "num_warmup_steps": 10,
                "num_decay_steps": 10,
                "num_training_steps": 15,
            },
            "got 15 < 10 + 10",
        ),
    ],
)
def test_messages_quote_the_value(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(spec)


def test_polynomial_lr_end_must_be_below_the_first_group_lr() -> None:
    spec = {"type": "hf.polynomial", **W10, "lr_end": 0.1}
    with pytest.raises(SpecError) as caught:
        build_schedule(spec, [0.1, 1.0])
    (error,) = caught.value.errors
    assert error.loc == ("lr_end",)
    assert error.value == 0.1
    assert "0.1" in error.msg
    build_schedule(spec, [0.2, 0.01])  # the first group's LR is transformers' optimizer.defaults["lr"]


def test_min_lr_needs_a_non_zero_first_group_lr() -> None:
    spec = {"type": "hf.cosine_with_min_lr", **W10, "min_lr": 1e-5}
    with pytest.raises(SpecError) as caught:
        build_schedule(spec, [0.0, 0.1])
    assert caught.value.errors[0].loc == ("min_lr",)


@pytest.mark.parametrize("type_name", sorted(HF_TYPES))
def test_base_lrs_are_required(type_name: str) -> None:
    case = next(c for c in CASES if c["spec"]["type"] == type_name)
    with pytest.raises(SpecError, match="base LRs"):
        build_schedule(case["spec"], None)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"type": "hf.linear", "num_warmup_steps": 1, "num_training_step": 10}, "num_training_step"),
        ({"type": "hf.constant", "num_warmup_steps": 1}, "num_warmup_steps"),
        (
            {"type": "hf.constant_with_warmup", "num_warmup_steps": 1, "num_training_steps": 10},
            "num_training_steps",
        ),
        ({"type": "hf.cosine", **W10, "last_epoch": -1}, "last_epoch"),
    ],
)
def test_unknown_fields_are_refused(spec: dict[str, Any], field: str) -> None:
    rv.check_unknown_field(spec, field)


def test_misspelled_type_gets_a_suggestion() -> None:
    with pytest.raises(SpecError, match=r"hf\.cosine") as caught:
        parse_spec({"type": "hf.cosin", **W10})
    assert caught.value.errors[0].loc == ("type",)


def test_skipped_types_are_unknown() -> None:
    """Metric-driven schedulers are lrtower's `plateau` config, not a schedule type."""
    for name in ("hf.reduce_lr_on_plateau", "hf.greedy"):
        with pytest.raises(SpecError, match="unknown schedule type"):
            parse_spec({"type": name})


def test_wsd_accepts_consistent_training_and_stable_steps() -> None:
    common = {"type": "hf.warmup_stable_decay", "num_warmup_steps": 2, "num_decay_steps": 3}
    by_total = build_schedule({**common, "num_training_steps": 9}, [1.0])
    by_stable = build_schedule({**common, "num_stable_steps": 4}, [1.0])
    both = build_schedule({**common, "num_training_steps": 9, "num_stable_steps": 4}, [1.0])
    for step in range(12):
        assert by_total.at(step)[0] == by_stable.at(step)[0] == both.at(step)[0]


def test_huge_num_cycles_has_no_lr_after_the_warmup() -> None:
    """transformers raises (cos of an infinity) where lrtower answers DomainError."""
    schedule = build_schedule({"type": "hf.cosine", **W10, "num_cycles": 1e308}, [0.1])
    assert schedule.at(5)[0] == [0.05]
    with pytest.raises(DomainError) as caught:
        schedule.at(11)[0]
    assert caught.value.step == 11
