"""`lrtower.from_torch` against torch itself: convert a scheduler, build the spec with the engine,
and compare every step with a freshly built, identical torch scheduler stepped as in training.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import Optimizer
from torch.optim import lr_scheduler as L

import lrtower
from lrtower.convert import Unconvertible, from_torch
from lrtower_server.schedules import build_schedule
from lrtower_server.schedules.plateau import PlateauConfig, apply, initial_state, update
from parity import assert_close

STEPS = 300
ONE = [0.1]
TWO = [0.1, 0.01]

Factory = Callable[[Optimizer], L.LRScheduler]


def make_optimizer(lrs: list[float], betas: bool = False) -> Optimizer:
    """The dummy optimizer: SGD with momentum, or Adam (whose beta1 cycles), one group per LR."""
    groups: list[dict[str, Any]] = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs]
    if betas:
        return torch.optim.Adam(groups, lr=lrs[0])
    return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)


def momenta(optimizer: Optimizer) -> list[float]:
    return [float(g["betas"][0] if "betas" in g else g["momentum"]) for g in optimizer.param_groups]


def torch_run(
    factory: Factory, lrs: list[float], betas: bool, steps: int
) -> tuple[list[list[float]], list[list[float]]]:
    """LRs and momenta after 0, 1, ..., steps calls of `scheduler.step()`."""
    optimizer = make_optimizer(lrs, betas)
    scheduler = factory(optimizer)
    got_lrs = [[float(lr) for lr in scheduler.get_last_lr()]]
    got_momenta = [momenta(optimizer)]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        got_lrs.append([float(lr) for lr in scheduler.get_last_lr()])
        got_momenta.append(momenta(optimizer))
    return got_lrs, got_momenta


def convert(factory: Factory, lrs: list[float], betas: bool = False) -> dict[str, Any]:
    return from_torch(factory(make_optimizer(lrs, betas)))


def seq(optimizer: Optimizer, children: list[L.LRScheduler], milestones: list[int]) -> L.SequentialLR:
    return L.SequentialLR(optimizer, children, milestones)


def chain(optimizer: Optimizer, children: list[L.LRScheduler]) -> L.ChainedScheduler:
    return L.ChainedScheduler(children, optimizer=optimizer)


# (id, factory, base LRs of the optimizer's groups, Adam instead of SGD)
CASES: list[tuple[str, Factory, list[float], bool]] = [
    ("StepLR", lambda o: L.StepLR(o, step_size=30, gamma=0.5), ONE, False),
    ("StepLR-every-step", lambda o: L.StepLR(o, step_size=1, gamma=0.99), TWO, False),
    ("StepLR-whole-float", lambda o: L.StepLR(o, step_size=25.0, gamma=0.7), ONE, False),  # type: ignore[arg-type]
    ("MultiStepLR-repeats", lambda o: L.MultiStepLR(o, milestones=[30, 80, 80, 200], gamma=0.5), TWO, False),
    ("MultiStepLR-unsorted-zero", lambda o: L.MultiStepLR(o, milestones=[200, 0, 10], gamma=0.9), ONE, False),
    ("ConstantLR-defaults", lambda o: L.ConstantLR(o), ONE, False),
    ("ConstantLR", lambda o: L.ConstantLR(o, factor=0.25, total_iters=100), TWO, False),
    ("LinearLR-defaults", lambda o: L.LinearLR(o), ONE, False),
    (
        "LinearLR-warmup",
        lambda o: L.LinearLR(o, start_factor=0.01, end_factor=1.0, total_iters=100),
        TWO,
        False,
    ),
    (
        "LinearLR-decay-to-0",
        lambda o: L.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=250),
        ONE,
        False,
    ),
    ("ExponentialLR", lambda o: L.ExponentialLR(o, gamma=0.99), ONE, False),
    ("ExponentialLR-2", lambda o: L.ExponentialLR(o, gamma=0.95), TWO, False),
    ("PolynomialLR-defaults", lambda o: L.PolynomialLR(o), ONE, False),
    ("PolynomialLR", lambda o: L.PolynomialLR(o, total_iters=200, power=2.0), TWO, False),
    ("CosineAnnealingLR", lambda o: L.CosineAnnealingLR(o, T_max=300), ONE, False),
    ("CosineAnnealingLR-eta-min", lambda o: L.CosineAnnealingLR(o, T_max=250, eta_min=1e-3), TWO, False),
    ("CosineAnnealingWarmRestarts", lambda o: L.CosineAnnealingWarmRestarts(o, T_0=20), ONE, False),
    (
        "CosineAnnealingWarmRestarts-mult",
        lambda o: L.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=1e-4),
        TWO,
        False,
    ),
    ("CyclicLR-triangular", lambda o: L.CyclicLR(o, base_lr=0.001, max_lr=0.1, step_size_up=20), ONE, False),
    (
        "CyclicLR-triangular2-per-group",
        lambda o: L.CyclicLR(
            o,
            base_lr=[0.001, 0.0001],
            max_lr=[0.1, 0.05],
            step_size_up=7,
            step_size_down=13,
            mode="triangular2",
            base_momentum=[0.8, 0.7],  # type: ignore[arg-type]  # torch takes one per group, typed as float
            max_momentum=[0.9, 0.95],  # type: ignore[arg-type]
        ),
        TWO,
        False,
    ),
    (
        "CyclicLR-exp-range-adam",
        lambda o: L.CyclicLR(o, base_lr=0.001, max_lr=0.1, step_size_up=15, mode="exp_range", gamma=0.99),
        TWO,
        True,
    ),
    (
        "CyclicLR-no-momentum-down-0",
        lambda o: L.CyclicLR(
            o, base_lr=0.01, max_lr=0.2, step_size_up=9, step_size_down=0, cycle_momentum=False
        ),
        ONE,
        False,
    ),
    ("OneCycleLR-defaults", lambda o: L.OneCycleLR(o, max_lr=0.1, total_steps=STEPS), ONE, False),
    (
        "OneCycleLR-linear-three-phase-adam",
        lambda o: L.OneCycleLR(
            o,
            max_lr=[0.3, 0.2],
            total_steps=400,  # torch's linear anneal goes negative at total_steps itself
            pct_start=0.37,
            anneal_strategy="linear",
            three_phase=True,
            div_factor=7.3,
            final_div_factor=123.4,
            base_momentum=[0.8, 0.85],
            max_momentum=0.97,
        ),
        TWO,
        True,
    ),
    (
        "OneCycleLR-epochs-no-momentum",
        lambda o: L.OneCycleLR(
            o,
            max_lr=0.5,
            epochs=10,
            steps_per_epoch=31,
            pct_start=0.1,
            cycle_momentum=False,
            three_phase=True,
        ),
        TWO,
        False,
    ),
    (
        "SequentialLR-warmup-cosine",
        lambda o: seq(
            o, [L.LinearLR(o, start_factor=0.01, total_iters=50), L.CosineAnnealingLR(o, T_max=250)], [50]
        ),
        TWO,
        False,
    ),
    (
        "SequentialLR-three",
        lambda o: seq(
            o,
            [L.ConstantLR(o, factor=0.1, total_iters=20), L.ExponentialLR(o, gamma=0.98), L.StepLR(o, 30)],
            [20, 100],
        ),
        ONE,
        False,
    ),
    (
        "SequentialLR-warmup-onecycle",
        lambda o: seq(o, [L.LinearLR(o, total_iters=30), L.OneCycleLR(o, max_lr=0.5, total_steps=400)], [30]),
        TWO,
        False,
    ),
    (
        "SequentialLR-restarts-cyclic",
        lambda o: seq(
            o,
            [
                L.CosineAnnealingWarmRestarts(o, T_0=25),
                L.CyclicLR(o, base_lr=0.01, max_lr=0.3, step_size_up=10),
            ],
            [100],
        ),
        TWO,
        False,
    ),
    (
        "ChainedScheduler",
        lambda o: chain(o, [L.ConstantLR(o, factor=0.1, total_iters=20), L.ExponentialLR(o, 0.9)]),
        ONE,
        False,
    ),
    (
        "ChainedScheduler-nested",
        lambda o: chain(
            o,
            [
                L.LinearLR(o, total_iters=40),
                chain(o, [L.StepLR(o, 50, gamma=0.5), L.ExponentialLR(o, gamma=0.995)]),
            ],
        ),
        TWO,
        False,
    ),
    (
        "ChainedScheduler-cyclic-exponential",
        lambda o: chain(
            o, [L.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=12), L.ExponentialLR(o, 0.999)]
        ),
        TWO,
        True,
    ),
    (
        "SequentialLR-of-chain",
        lambda o: seq(
            o,
            [
                chain(o, [L.LinearLR(o, total_iters=40), L.ExponentialLR(o, 0.99)]),
                L.CosineAnnealingLR(o, T_max=260),
            ],
            [40],
        ),
        TWO,
        False,
    ),
    (
        "SequentialLR-of-nested-chains",
        lambda o: seq(
            o,
            [
                chain(
                    o,
                    [
                        L.LinearLR(o, total_iters=30),
                        chain(o, [L.ExponentialLR(o, 0.99), L.StepLR(o, 10, 0.9)]),
                    ],
                ),
                L.MultiStepLR(o, milestones=[50, 50, 150], gamma=0.5),
            ],
            [60],
        ),
        ONE,
        False,
    ),
]


def definition_of(case_id: str) -> tuple[dict[str, Any], Factory, list[float], bool]:
    _, factory, lrs, betas = next(c for c in CASES if c[0] == case_id)
    return convert(factory, lrs, betas), factory, lrs, betas


@pytest.mark.parametrize(("factory", "lrs", "betas"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_converted_schedule_equals_torch(factory: Factory, lrs: list[float], betas: bool) -> None:
    definition = convert(factory, lrs, betas)
    schedule = build_schedule(definition["schedule"], definition["lrs"])
    want_lrs, want_momenta = torch_run(factory, lrs, betas, STEPS)
    answers = [schedule.at(step) for step in range(STEPS + 1)]
    # Past T_max torch's chainable cosine drifts from its own closed form, which lrtower serves
    # (docs/schedules.md): up to about 1e-12 of the peak LR in this many steps.
    floor = 1e-11 if "CosineAnnealingLR" in json.dumps(definition) else 1e-14
    assert_close("from_torch", want_lrs, [lrs for lrs, _ in answers], definition, floor=floor)
    cycles = '"cycle_momentum": true' in json.dumps(definition)
    assert schedule.has_momentum == cycles
    if cycles:
        got_momenta = [momentum for _, momentum in answers if momentum is not None]
        assert len(got_momenta) == len(answers)
        assert_close("from_torch momentum", want_momenta, got_momenta, definition)


def plain_json(value: object) -> bool:
    """True when `value` is made of exactly dict, list, str, int, float and bool, nothing derived."""
    if type(value) is dict:
        return all(type(k) is str and plain_json(v) for k, v in value.items())
    if type(value) is list:
        return all(plain_json(v) for v in value)
    return type(value) in (str, int, float, bool)


@pytest.mark.parametrize(("factory", "lrs", "betas"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_definition_is_plain_json(factory: Factory, lrs: list[float], betas: bool) -> None:
    definition = convert(factory, lrs, betas)
    assert plain_json(definition), definition
    assert json.loads(json.dumps(definition)) == definition
    assert set(definition) == {"lrs", "schedule"}
    assert len(definition["lrs"]) == len(lrs)


@pytest.mark.parametrize(("factory", "lrs", "betas"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_stepped_scheduler_converts_like_a_fresh_one(
    factory: Factory, lrs: list[float], betas: bool
) -> None:
    optimizer = make_optimizer(lrs, betas)
    scheduler = factory(optimizer)
    for _ in range(57):
        optimizer.step()
        scheduler.step()
    assert from_torch(scheduler) == convert(factory, lrs, betas)


def test_what_torch_keeps_is_mapped_back() -> None:
    steps, _, _, _ = definition_of("MultiStepLR-repeats")
    assert steps == {
        "lrs": TWO,
        "schedule": {"type": "MultiStepLR", "milestones": [30, 80, 80, 200], "gamma": 0.5},
    }
    cyclic, _, _, _ = definition_of("CyclicLR-triangular2-per-group")
    assert cyclic["lrs"] == [0.001, 0.0001]  # the groups' initial_lr: CyclicLR sets it to base_lr
    assert cyclic["schedule"] == {
        "type": "CyclicLR",
        "base_lr": [0.001, 0.0001],
        "max_lr": [0.1, 0.05],
        "step_size_up": 7,
        "step_size_down": 13,
        "mode": "triangular2",
        "gamma": 1.0,
        "cycle_momentum": True,
        "base_momentum": [0.8, 0.7],
        "max_momentum": [0.9, 0.95],
    }
    one_cycle, _, _, _ = definition_of("OneCycleLR-linear-three-phase-adam")
    assert one_cycle["lrs"] == [0.3 / 7.3, 0.2 / 7.3]  # initial_lr = max_lr / div_factor, as in torch
    assert one_cycle["schedule"] == {
        "type": "OneCycleLR",
        "max_lr": [0.3, 0.2],
        "total_steps": 400,
        "pct_start": 0.37,
        "anneal_strategy": "linear",
        "cycle_momentum": True,
        "div_factor": 7.3,
        "final_div_factor": 123.4,
        "three_phase": True,
        "base_momentum": [0.8, 0.85],
        "max_momentum": 0.97,
    }
    epochs, _, _, _ = definition_of("OneCycleLR-epochs-no-momentum")
    assert epochs["schedule"]["total_steps"] == 310
    assert "base_momentum" not in epochs["schedule"]


@settings(max_examples=200, deadline=None)
@given(
    max_lrs=st.lists(st.floats(1e-5, 10.0), min_size=1, max_size=3),
    total_steps=st.integers(100, 10**7),  # torch divides by zero when the warmup ends at step 0
    pct_start=st.floats(0.05, 0.45),
    div_factor=st.floats(1.5, 1e4),
    final_div_factor=st.floats(1.5, 1e6),
    three_phase=st.booleans(),
)
def test_one_cycle_parameters_give_back_torch_values_bit_for_bit(
    max_lrs: list[float],
    total_steps: int,
    pct_start: float,
    div_factor: float,
    final_div_factor: float,
    three_phase: bool,
) -> None:
    """OneCycleLR keeps only derived values; the floats recovered must recompute them exactly."""
    optimizer = make_optimizer([0.1] * len(max_lrs))
    scheduler = L.OneCycleLR(
        optimizer,
        max_lr=max_lrs,
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        three_phase=three_phase,
    )
    spec = from_torch(scheduler)["schedule"]
    wanted = spec["max_lr"] if isinstance(spec["max_lr"], list) else [spec["max_lr"]] * len(max_lrs)
    for group, max_lr in zip(optimizer.param_groups, wanted, strict=True):
        initial = max_lr / spec["div_factor"]
        assert (initial, initial / spec["final_div_factor"]) == (group["initial_lr"], group["min_lr"])
    p, n = spec["pct_start"], spec["total_steps"]
    ends = [float(p * n) - 1] + ([float(2 * p * n) - 2] if three_phase else [])
    assert ends == [phase["end_step"] for phase in scheduler._schedule_phases[:-1]]


@settings(max_examples=100, deadline=None)
@given(up=st.integers(1, 10**6), down=st.one_of(st.none(), st.integers(0, 10**6)))
def test_cyclic_step_sizes_come_back_whole(up: int, down: int | None) -> None:
    scheduler = L.CyclicLR(
        make_optimizer(ONE), base_lr=0.01, max_lr=0.1, step_size_up=up, step_size_down=down
    )
    spec = from_torch(scheduler)["schedule"]
    assert (spec["step_size_up"], spec["step_size_down"]) == (up, up if down is None else down)


PLATEAUS: list[tuple[dict[str, Any], list[float]]] = [
    ({}, ONE),
    ({"patience": 2, "factor": 0.5}, TWO),
    ({"mode": "max", "threshold_mode": "abs", "threshold": 0.01, "patience": 1, "cooldown": 2}, TWO),
    ({"patience": 0, "factor": 0.3, "min_lr": [0.02, 0.0], "eps": 1e-3}, TWO),
    ({"patience": 1, "factor": 0.2, "min_lr": 0.005, "cooldown": 1}, ONE),
]
METRICS = [1.0, 0.9, 0.9, 0.9, 0.99, 0.5, 0.4999, 0.5, 0.5, 0.5, 2.0, -1.0, -1.0, -1.0, 0.0, 0.0, 0.0] * 4


@pytest.mark.parametrize(("kwargs", "lrs"), PLATEAUS)
def test_reduce_lr_on_plateau_equals_torch(kwargs: dict[str, Any], lrs: list[float]) -> None:
    definition = from_torch(L.ReduceLROnPlateau(make_optimizer(lrs), **kwargs))
    assert plain_json(definition)
    assert set(definition) == {"lrs", "schedule", "plateau"}
    config = PlateauConfig.model_validate(definition["plateau"])
    assert config.metric == "loss"
    schedule = build_schedule(definition["schedule"], definition["lrs"])

    optimizer = make_optimizer(lrs)
    reference = L.ReduceLROnPlateau(optimizer, **kwargs)
    state = initial_state(config, len(lrs))
    want, got = [], []
    for step, value in enumerate(METRICS):
        reference.step(value)
        want.append([float(g["lr"]) for g in optimizer.param_groups])
        schedule_lrs, _ = schedule.at(step)
        assert schedule_lrs == lrs  # the constant schedule under the plateau
        state, _ = update(config, state, value, apply(config, state, schedule_lrs))
        got.append(apply(config, state, schedule_lrs))
    assert_close("from_torch plateau", want, got, kwargs)
    assert any(w != want[0] for w in want)  # the metrics did reduce the LR


def test_reduce_lr_on_plateau_starts_from_the_current_lrs() -> None:
    optimizer = make_optimizer(TWO)
    scheduler = L.ReduceLROnPlateau(optimizer, patience=0, factor=0.5)
    for value in [1.0, 1.0]:
        scheduler.step(value)
    assert from_torch(scheduler)["lrs"] == [0.05, 0.005]


def refusal(scheduler: object) -> str:
    with pytest.raises(Unconvertible) as info:
        from_torch(scheduler)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_lambda_lr_is_refused_with_an_expression_to_write() -> None:
    message = refusal(L.LambdaLR(make_optimizer(ONE), lambda epoch: 0.95**epoch))
    assert message.startswith("LambdaLR: a Python function cannot be sent to the server")
    assert '{"type": "LambdaLR", "lr_lambda": "0.95 ** epoch"}' in message


def test_multiplicative_lr_is_refused_with_an_expression_to_write() -> None:
    message = refusal(L.MultiplicativeLR(make_optimizer(ONE), lambda epoch: 0.95))
    assert message.startswith("MultiplicativeLR: a Python function cannot be sent to the server")
    assert '{"type": "MultiplicativeLR", "lr_lambda": "0.95"}' in message


def test_cyclic_lr_with_a_custom_scale_fn_is_refused() -> None:
    scheduler = L.CyclicLR(make_optimizer(ONE), 0.001, 0.1, scale_fn=lambda x: 0.5**x, scale_mode="cycle")
    message = refusal(scheduler)
    assert message.startswith("CyclicLR: its custom scale_fn is a Python function")
    assert '"scale_fn": "0.5 ** (epoch - 1)"' in message


class MyStepLR(L.StepLR):
    """A subclass may step differently: it is refused even though it is a StepLR."""


def test_a_subclass_of_a_torch_scheduler_is_refused() -> None:
    message = refusal(MyStepLR(make_optimizer(ONE), step_size=10))
    assert message.startswith(f"{__name__}.MyStepLR: it is a subclass of torch's StepLR")
    assert '{"type": "StepLR", ...}' in message


class Halving(L.LRScheduler):
    def get_lr(self) -> list[float | torch.Tensor]:
        return [base * 0.5 ** (self.last_epoch // 10) for base in self.base_lrs]


def test_an_unknown_scheduler_class_is_refused() -> None:
    message = refusal(Halving(make_optimizer(ONE)))
    assert message.startswith(f"{__name__}.Halving: lrtower does not know this scheduler class")
    assert "StepLR" in message and "OneCycleLR" in message


def test_something_else_is_refused() -> None:
    assert "it is not a torch LR scheduler" in refusal(make_optimizer(ONE))


def test_a_lambda_inside_a_sequence_is_named_where_it_is() -> None:
    optimizer = make_optimizer(TWO)
    children = [
        L.LinearLR(optimizer),
        chain(optimizer, [L.StepLR(optimizer, 5), L.LambdaLR(optimizer, lambda e: 1.0)]),
    ]
    message = refusal(seq(optimizer, children, [5]))
    assert message.startswith(
        "LambdaLR (at SequentialLR.schedulers[1].schedulers[1]): a Python function cannot be sent"
    )


def test_a_sequence_inside_a_chain_is_refused() -> None:
    optimizer = make_optimizer(ONE)
    inner = seq(optimizer, [L.LinearLR(optimizer), L.ExponentialLR(optimizer, 0.9)], [5])
    message = refusal(chain(optimizer, [L.StepLR(optimizer, 10), inner]))
    assert message.startswith(
        "SequentialLR (at ChainedScheduler.schedulers[1]): a SequentialLR inside a ChainedScheduler"
    )
    assert "Nest the ChainedScheduler inside the SequentialLR instead" in message


def test_an_affine_cosine_in_a_multiplicative_chain_is_refused() -> None:
    optimizer = make_optimizer(ONE)
    message = refusal(
        chain(optimizer, [L.CosineAnnealingLR(optimizer, 100, eta_min=1e-4), L.ExponentialLR(optimizer, 0.9)])
    )
    assert "eta_min=0.0001" in message and "no closed form" in message


def test_a_fractional_step_count_is_refused() -> None:
    message = refusal(L.StepLR(make_optimizer(ONE), step_size=2.5))  # type: ignore[arg-type]
    assert message.startswith("StepLR: step_size=2.5 is not a whole number of steps")


def test_schedulers_constructed_out_of_list_order_are_refused() -> None:
    optimizer = make_optimizer(ONE)
    warmup = L.LinearLR(optimizer)  # constructed on 0.1
    one_cycle = L.OneCycleLR(optimizer, max_lr=1.0, total_steps=100)  # initial_lr becomes 0.04
    cosine = L.CosineAnnealingLR(optimizer, 50)  # constructed on 0.04
    message = refusal(seq(optimizer, [cosine, warmup, one_cycle], [10, 20]))
    assert message.startswith(
        "LinearLR (at SequentialLR.schedulers[1]): torch constructed it on base LRs [0.1]"
    )


def test_an_optimizer_used_by_another_scheduler_before_is_refused() -> None:
    optimizer = make_optimizer(ONE)
    L.StepLR(optimizer, 10)  # records initial_lr 0.1, which the CyclicLR's first LR then is
    message = refusal(L.CyclicLR(optimizer, base_lr=0.01, max_lr=0.2, step_size_up=5))
    assert message.startswith("CyclicLR: the optimizer's param groups hold initial_lr [0.1]")


def test_a_plateau_inside_a_composite_is_refused() -> None:
    optimizer = make_optimizer(ONE)
    scheduler = chain(optimizer, [L.StepLR(optimizer, 10)])
    scheduler._schedulers = [L.ReduceLROnPlateau(optimizer)]  # torch refuses this at construction
    assert "can only be converted on its own" in refusal(scheduler)


def test_from_torch_is_exported_lazily() -> None:
    assert lrtower.from_torch is from_torch
    definition = lrtower.from_torch(L.ExponentialLR(make_optimizer(TWO), gamma=0.9))
    assert definition == {"lrs": TWO, "schedule": {"type": "ExponentialLR", "gamma": 0.9}}
    assert math.isclose(build_schedule(definition["schedule"], definition["lrs"]).at(2)[0][1], 0.01 * 0.81)
