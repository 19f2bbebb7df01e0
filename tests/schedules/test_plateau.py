"""ReduceLROnPlateau's update rule against torch's own, on a constant schedule."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrtower_server.schedules import SpecError
from lrtower_server.schedules.plateau import PlateauConfig, apply, initial_state, update
from parity import assert_close

configs = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["min", "max"]),
        "factor": st.floats(0.05, 0.95),
        "patience": st.integers(0, 5),
        "threshold": st.sampled_from([0.0, 1e-4, 0.01, 0.1]),
        "threshold_mode": st.sampled_from(["rel", "abs"]),
        "cooldown": st.integers(0, 4),
        "eps": st.sampled_from([0.0, 1e-8, 1e-3]),
    }
)
# Metrics that plateau: a few distinct levels, repeated, so that every branch is reached.
metrics = st.lists(st.sampled_from([1.0, 0.9, 0.99, 0.5, 0.4999, 2.0, -1.0, 0.0]), min_size=1, max_size=80)


def torch_sequence(
    cfg: dict[str, Any], min_lr: Any, lrs: list[float], values: list[float]
) -> list[list[float]]:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    optimizer = torch.optim.SGD(groups, lr=lrs[0])
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, min_lr=min_lr, **cfg)
    out = []
    for v in values:
        scheduler.step(v)
        out.append([g["lr"] for g in optimizer.param_groups])
    return out


@settings(max_examples=300, deadline=None)
@given(
    cfg=configs,
    lrs=st.lists(st.floats(1e-3, 1.0), min_size=1, max_size=3),
    min_lr_scale=st.sampled_from([0.0, 1e-3, 0.05]),
    per_group=st.booleans(),
    values=metrics,
)
def test_update_equals_torch(
    cfg: dict[str, Any], lrs: list[float], min_lr_scale: float, per_group: bool, values: list[float]
) -> None:
    min_lr: Any = [lr * min_lr_scale for lr in lrs] if per_group else min_lr_scale * lrs[0]
    config = PlateauConfig(**cfg, min_lr=min_lr)
    state = initial_state(config, len(lrs))
    ours = []
    for v in values:
        state, _ = update(config, state, v, apply(config, state, lrs))
        ours.append(apply(config, state, lrs))
    assert_close("torch plateau", torch_sequence(cfg, min_lr, lrs, values), ours, (cfg, min_lr, values))


def test_patience_plus_one_bad_epochs_reduce() -> None:
    config = PlateauConfig(patience=2, factor=0.5)
    state = initial_state(config, 1)
    flags = []
    for v in [1.0, 1.0, 1.0, 1.0]:
        state, reduced = update(config, state, v, apply(config, state, [1.0]))
        flags.append(reduced)
    assert flags == [False, False, False, True]
    assert apply(config, state, [1.0]) == [0.5]


def test_factor_multiplies_any_schedule_and_respects_min_lr() -> None:
    config = PlateauConfig(patience=0, factor=0.1, min_lr=0.01)
    state = initial_state(config, 1)
    state, _ = update(config, state, 1.0, [1.0])
    state, reduced = update(config, state, 1.0, [1.0])
    assert reduced and state.factors == (0.1,)
    # A warmup starting from 0 stays at 0; a schedule below min_lr is not lifted; above, the floor holds.
    assert apply(config, state, [0.0]) == [0.0]
    assert apply(config, state, [0.005]) == [0.005]
    assert apply(config, state, [0.05]) == [0.01]
    assert apply(config, state, [2.0]) == [pytest.approx(0.2)]


def test_nan_metric_counts_as_bad_like_torch() -> None:
    config = PlateauConfig(patience=0)
    state = initial_state(config, 1)
    state, _ = update(config, state, 1.0, [1.0])
    state, reduced = update(config, state, math.nan, [1.0])
    assert reduced


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("factor", 1.0),
        ("factor", -0.1),
        ("patience", -1),
        ("mode", "minimum"),
        ("threshold_mode", "relative"),
        ("cooldown", 1.5),
        ("eps", -1.0),
        ("min_lr", -0.1),
        ("metric", ""),
    ],
)
def test_bad_config_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError) as info:
        PlateauConfig.model_validate({field: value})
    assert field in str(info.value)


def test_min_lr_list_must_match_groups() -> None:
    config = PlateauConfig(min_lr=[0.1, 0.2])
    with pytest.raises(SpecError) as info:
        initial_state(config, 3)
    assert info.value.errors[0].loc == ("min_lr",)
