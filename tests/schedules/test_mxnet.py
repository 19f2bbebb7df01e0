"""The `mxnet.*` schedulers against MXNet's own values, and their refusals of bad specs.

The reference values are in tests/vectors/mxnet.json, written by tests/vectors/generate_mxnet.py
from the real mxnet 1.9.1 by calling each scheduler at num_update = 0, 1, 2, ... in order; mxnet
is not needed here.

MXNet's FactorScheduler and MultiFactorScheduler keep state, and lrtower answers them in closed
form. Besides the vectors, the closed forms are checked on random specs against `Mx*` below: a
line-by-line transcription of mxnet 1.9.1 `python/mxnet/lr_scheduler.py` (logging left out),
used here as the oracle and called in order like a training loop.
"""

from __future__ import annotations

import math
import re
from math import cos, pi
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_vectors as rv
from lrtower_server.schedules import STEP_MAX, DomainError, SpecError, build_schedule, mxnet, parse_spec
from lrtower_server.schedules.mxnet import EXACT_DECAYS
from parity import REL_TOL, rel_error
from work import lines_run

VECTORS = rv.load("mxnet")
CASES: list[dict[str, Any]] = VECTORS["cases"]


@pytest.mark.parametrize("case", CASES, ids=[rv.case_id(c) for c in CASES])
def test_matches_mxnet(case: dict[str, Any]) -> None:
    rv.check_case("mxnet", case)


def test_vectors_cover_every_type() -> None:
    rv.check_coverage(VECTORS, "mxnet", mxnet.SPECS, points=10000)


def test_large_steps_are_fast() -> None:
    rv.check_large_steps_cost_no_more(CASES)


# --- the oracle: mxnet 1.9.1 lr_scheduler.py, transcribed ---------------------------------------
# ruff: noqa: UP008


class MxLRScheduler(object):  # noqa: UP004
    def __init__(self, base_lr=0.01, warmup_steps=0, warmup_begin_lr=0, warmup_mode="linear"):
        self.base_lr = base_lr
        assert isinstance(warmup_steps, int)
        self.warmup_steps = warmup_steps

        self.warmup_final_lr = base_lr
        self.warmup_begin_lr = warmup_begin_lr
        if self.warmup_begin_lr > self.warmup_final_lr:
            raise ValueError("Base lr has to be higher than warmup_begin_lr")
        if self.warmup_steps < 0:
            raise ValueError("Warmup steps has to be positive or 0")
        if warmup_mode not in ["linear", "constant"]:
            raise ValueError("Supports only linear and constant modes of warmup")
        self.warmup_mode = warmup_mode

    def get_warmup_lr(self, num_update):
        assert num_update < self.warmup_steps
        if self.warmup_mode == "linear":
            increase = (
                (self.warmup_final_lr - self.warmup_begin_lr) * float(num_update) / float(self.warmup_steps)
            )
            return self.warmup_begin_lr + increase
        elif self.warmup_mode == "constant":
            return self.warmup_begin_lr
        else:
            raise ValueError("Invalid warmup mode %s" % self.warmup_mode)  # noqa: UP031


class MxFactorScheduler(MxLRScheduler):
    def __init__(
        self,
        step,
        factor=1,
        stop_factor_lr=1e-8,
        base_lr=0.01,
        warmup_steps=0,
        warmup_begin_lr=0,
        warmup_mode="linear",
    ):
        super(MxFactorScheduler, self).__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if step < 1:
            raise ValueError("Schedule step must be greater or equal than 1 round")
        if factor > 1.0:
            raise ValueError("Factor must be no more than 1 to make lr reduce")
        self.step = step
        self.factor = factor
        self.stop_factor_lr = stop_factor_lr
        self.count = 0

    def __call__(self, num_update):
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)

        # NOTE: use while rather than if  (for continuing training via load_epoch)
        while num_update > self.count + self.step:
            self.count += self.step
            self.base_lr *= self.factor
            if self.base_lr < self.stop_factor_lr:
                self.base_lr = self.stop_factor_lr
        return self.base_lr


class MxMultiFactorScheduler(MxLRScheduler):
    def __init__(self, step, factor=1, base_lr=0.01, warmup_steps=0, warmup_begin_lr=0, warmup_mode="linear"):
        super(MxMultiFactorScheduler, self).__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        assert isinstance(step, list) and len(step) >= 1
        for i, _step in enumerate(step):
            if i != 0 and step[i] <= step[i - 1]:
                raise ValueError("Schedule step must be an increasing integer list")
            if _step < 1:
                raise ValueError("Schedule step must be greater or equal than 1 round")
        if factor > 1.0:
            raise ValueError("Factor must be no more than 1 to make lr reduce")
        self.step = step
        self.cur_step_ind = 0
        self.factor = factor
        self.count = 0

    def __call__(self, num_update):
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)

        # NOTE: use while rather than if  (for continuing training via load_epoch)
        while self.cur_step_ind <= len(self.step) - 1:
            if num_update > self.step[self.cur_step_ind]:
                self.count = self.step[self.cur_step_ind]
                self.cur_step_ind += 1
                self.base_lr *= self.factor
            else:
                return self.base_lr
        return self.base_lr


class MxPolyScheduler(MxLRScheduler):
    def __init__(
        self,
        max_update,
        base_lr=0.01,
        pwr=2,
        final_lr=0,
        warmup_steps=0,
        warmup_begin_lr=0,
        warmup_mode="linear",
    ):
        super(MxPolyScheduler, self).__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        assert isinstance(max_update, int)
        if max_update < 1:
            raise ValueError("maximum number of updates must be strictly positive")
        self.power = pwr
        self.base_lr_orig = self.base_lr
        self.max_update = max_update
        self.final_lr = final_lr
        self.max_steps = self.max_update - self.warmup_steps

    def __call__(self, num_update):
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        if num_update <= self.max_update:
            self.base_lr = self.final_lr + (self.base_lr_orig - self.final_lr) * pow(
                1 - float(num_update - self.warmup_steps) / float(self.max_steps), self.power
            )
        return self.base_lr


class MxCosineScheduler(MxLRScheduler):
    def __init__(
        self, max_update, base_lr=0.01, final_lr=0, warmup_steps=0, warmup_begin_lr=0, warmup_mode="linear"
    ):
        super(MxCosineScheduler, self).__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        assert isinstance(max_update, int)
        if max_update < 1:
            raise ValueError("maximum number of updates must be strictly positive")
        self.base_lr_orig = base_lr
        self.max_update = max_update
        self.final_lr = final_lr
        self.max_steps = self.max_update - self.warmup_steps

    def __call__(self, num_update):
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        if num_update <= self.max_update:
            self.base_lr = (
                self.final_lr
                + (self.base_lr_orig - self.final_lr)
                * (1 + cos(pi * (num_update - self.warmup_steps) / self.max_steps))
                / 2
            )
        return self.base_lr


ORACLES: dict[str, Any] = {
    "mxnet.FactorScheduler": MxFactorScheduler,
    "mxnet.MultiFactorScheduler": MxMultiFactorScheduler,
    "mxnet.PolyScheduler": MxPolyScheduler,
    "mxnet.CosineScheduler": MxCosineScheduler,
}


def assert_same_as_stepping(spec: dict[str, Any], steps: int) -> None:
    """lrtower's closed form equals the transcription called at 0, 1, ..., steps, bit for bit."""
    oracle = ORACLES[spec["type"]](**{k: v for k, v in spec.items() if k != "type"})
    schedule = build_schedule(spec, None)
    for n in range(steps + 1):
        assert schedule.at(n)[0] == [oracle(n)], (spec, n)


# --- random specs against the transcription -----------------------------------------------------

lr = st.floats(min_value=0.0, max_value=2.0, allow_nan=False)
warmup = st.fixed_dictionaries(
    {}, optional={"warmup_steps": st.integers(0, 40), "warmup_mode": st.sampled_from(["linear", "constant"])}
)


@st.composite
def with_warmup(draw: st.DrawFn, spec: dict[str, Any]) -> dict[str, Any]:
    """Add MXNet's warmup arguments, keeping warmup_begin_lr <= base_lr."""
    spec = {**spec, **draw(warmup)}
    if draw(st.booleans()):
        spec["base_lr"] = draw(lr)
    base = spec.get("base_lr", 0.01)
    if draw(st.booleans()):
        spec["warmup_begin_lr"] = draw(st.floats(0.0, base))
    return spec


factor_specs = st.fixed_dictionaries(
    {"type": st.just("mxnet.FactorScheduler"), "step": st.integers(1, 25)},
    optional={
        "factor": st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0])),
        "stop_factor_lr": st.one_of(st.floats(0.0, 0.05), st.just(0.0)),
    },
).flatmap(with_warmup)
multi_specs = st.fixed_dictionaries(
    {
        "type": st.just("mxnet.MultiFactorScheduler"),
        "step": st.lists(st.integers(1, 300), min_size=1, max_size=8, unique=True).map(sorted),
    },
    optional={"factor": st.floats(0.0, 1.0)},
).flatmap(with_warmup)
poly_specs = st.fixed_dictionaries(
    {"type": st.just("mxnet.PolyScheduler"), "max_update": st.integers(41, 300)},
    optional={"pwr": st.one_of(st.integers(0, 4), st.floats(0.0, 5.0)), "final_lr": lr},
).flatmap(with_warmup)
cosine_specs = st.fixed_dictionaries(
    {"type": st.just("mxnet.CosineScheduler"), "max_update": st.integers(41, 300)},
    optional={"final_lr": lr},
).flatmap(with_warmup)


@settings(max_examples=150, deadline=None)
@given(factor_specs)
def test_factor_scheduler_equals_stepping(spec: dict[str, Any]) -> None:
    assert_same_as_stepping(spec, 400)


@settings(max_examples=150, deadline=None)
@given(multi_specs)
def test_multifactor_scheduler_equals_stepping(spec: dict[str, Any]) -> None:
    assert_same_as_stepping(spec, 320)


@settings(max_examples=100, deadline=None)
@given(st.one_of(poly_specs, cosine_specs))
def test_annealing_schedulers_equal_stepping(spec: dict[str, Any]) -> None:
    assert_same_as_stepping(spec, 330)


def test_factor_scheduler_beyond_the_replayed_decays() -> None:
    """The first 16384 decays are MXNet's own products; past them lrtower uses factor ** k."""
    spec = {
        "type": "mxnet.FactorScheduler",
        "step": 1,
        "factor": 0.9999,
        "stop_factor_lr": 0.0,
        "base_lr": 1.0,
    }
    oracle = MxFactorScheduler(step=1, factor=0.9999, stop_factor_lr=0.0, base_lr=1.0)
    schedule = build_schedule(spec, None)
    worst = 0.0
    for n in range(40001):
        want = oracle(n)
        if n <= 16385:  # decay k = n - 1 <= 16384: replayed
            if n % 31 == 0 or n >= 16380:
                assert schedule.at(n)[0] == [want], n
        elif n % 97 == 0:
            worst = max(worst, rel_error(want, schedule.at(n)[0][0]))
    assert 0 < worst <= REL_TOL


def test_factor_scheduler_replays_at_most_its_exact_decays_at_build() -> None:
    """A factor that never clamps replays EXACT_DECAYS multiplications at build, and no more:
    a few lines each, whatever the schedule's length."""
    spec = {"type": "mxnet.FactorScheduler", "step": 1, "factor": 0.99999, "stop_factor_lr": 0.0}
    work = lines_run(lambda: build_schedule(spec, None))
    assert EXACT_DECAYS < work < 8 * EXACT_DECAYS


# --- conventions, spelled out -----------------------------------------------------------------


def test_decays_apply_after_the_listed_update() -> None:
    """MXNet compares num_update > step: the decay at 10 shows from num_update 11."""
    multi = build_schedule(
        {"type": "mxnet.MultiFactorScheduler", "step": [10], "factor": 0.5, "base_lr": 1.0}, None
    )
    assert [multi.at(t)[0] for t in (10, 11)] == [[1.0], [0.5]]
    factor = build_schedule(
        {"type": "mxnet.FactorScheduler", "step": 10, "factor": 0.5, "base_lr": 1.0}, None
    )
    assert [factor.at(t)[0] for t in (10, 11, 20, 21)] == [[1.0], [0.5], [0.5], [0.25]]


def test_stop_factor_lr_can_raise_a_low_base_lr() -> None:
    """MXNet clamps to stop_factor_lr at the first decay even when base_lr starts below it."""
    schedule = build_schedule(
        {"type": "mxnet.FactorScheduler", "step": 5, "factor": 0.5, "base_lr": 1e-9}, None
    )
    assert [schedule.at(t)[0] for t in (5, 6)] == [[1e-9], [1e-8]]


def test_warmup_then_catch_up() -> None:
    """Decays listed inside the warmup all apply at its end, as MXNet's while loop catches up."""
    spec = {
        "type": "mxnet.MultiFactorScheduler",
        "step": [2, 4, 20],
        "factor": 0.5,
        "base_lr": 1.0,
        "warmup_steps": 10,
    }
    schedule = build_schedule(spec, None)
    assert [schedule.at(t)[0][0] for t in (0, 5, 9, 10, 20, 21)] == [0.0, 0.5, 0.9, 0.25, 0.25, 0.125]


def test_overflow_in_mxnet_arithmetic_is_a_domain_error() -> None:
    """MXNet's (base_lr - final_lr) * (1 + cos(...)) overflows to inf here; lrtower refuses the step."""
    spec = {"type": "mxnet.CosineScheduler", "max_update": 10, "base_lr": 1.7e308}
    schedule = build_schedule(spec, None)
    with pytest.raises(DomainError):
        schedule.at(0)[0]
    assert schedule.at(10)[0] == [0.0]


# --- refusals ---------------------------------------------------------------------------------

FAC = {"type": "mxnet.FactorScheduler", "step": 10}
MUL = {"type": "mxnet.MultiFactorScheduler", "step": [10, 20]}
POLY = {"type": "mxnet.PolyScheduler", "max_update": 100}
COS = {"type": "mxnet.CosineScheduler", "max_update": 100}

INVALID: list[rv.Invalid] = [
    ({**FAC, "step": 0}, ("step",), 0),
    ({**FAC, "step": 2.5}, ("step",), 2.5),
    ({**FAC, "factor": 1.5}, ("factor",), 1.5),
    ({**FAC, "factor": -0.5}, ("factor",), -0.5),
    ({**FAC, "base_lr": -0.01}, ("base_lr",), -0.01),
    ({**FAC, "stop_factor_lr": float("inf")}, ("stop_factor_lr",), None),
    ({**FAC, "warmup_begin_lr": 0.1}, ("warmup_begin_lr",), 0.1),
    ({**FAC, "warmup_steps": -1}, ("warmup_steps",), -1),
    ({**FAC, "warmup_steps": 5.5}, ("warmup_steps",), 5.5),
    ({**FAC, "warmup_mode": "cosine"}, ("warmup_mode",), "cosine"),
    ({**MUL, "step": []}, ("step",), []),
    ({**MUL, "step": [10, 10]}, ("step",), [10, 10]),
    ({**MUL, "step": [20, 10]}, ("step",), [20, 10]),
    ({**MUL, "step": [0, 10]}, ("step", 0), 0),
    ({**MUL, "step": 10}, ("step",), 10),
    ({**MUL, "factor": 2.0}, ("factor",), 2.0),
    ({**POLY, "max_update": 0}, ("max_update",), 0),
    ({**POLY, "pwr": -1}, ("pwr",), -1),
    ({**POLY, "final_lr": -1e-3}, ("final_lr",), -1e-3),
    ({**POLY, "warmup_steps": 100}, ("warmup_steps",), 100),
    ({**POLY, "warmup_steps": 150}, ("warmup_steps",), 150),
    ({**COS, "warmup_steps": 100}, ("warmup_steps",), 100),
    ({**COS, "base_lr": 0.01, "warmup_begin_lr": 0.02}, ("warmup_begin_lr",), 0.02),
]


@pytest.mark.parametrize(("spec", "loc", "value"), INVALID, ids=rv.invalid_ids(INVALID))
def test_invalid_spec_names_the_field(spec: dict[str, Any], loc: tuple[str | int, ...], value: Any) -> None:
    rv.check_refused(spec, None, loc, value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({**FAC, "warmup_begin_lr": 0.1}, "must not exceed base_lr (0.01), as in MXNet; got 0.1"),
        ({**MUL, "step": [20, 10]}, "step[1] = 10 follows 20"),
        ({**POLY, "warmup_steps": 100}, "must be below max_update (100)"),
    ],
)
def test_messages_quote_the_value(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(spec)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({**FAC, "stop_factor": 1e-8}, "stop_factor"),
        ({**POLY, "power": 2}, "power"),
        ({**COS, "max_steps": 100}, "max_steps"),
        ({**MUL, "steps": [1, 2]}, "steps"),
    ],
)
def test_unknown_fields_are_refused(spec: dict[str, Any], field: str) -> None:
    rv.check_unknown_field(spec, field)


def test_misspelled_type_gets_a_suggestion() -> None:
    with pytest.raises(SpecError, match=r"mxnet\.CosineScheduler") as caught:
        parse_spec({**COS, "type": "mxnet.CosineSchedular"})
    assert caught.value.errors[0].loc == ("type",)


def test_values_stay_finite_at_the_largest_step() -> None:
    for case in CASES:
        for lr_value in build_schedule(case["spec"], case["base_lrs"]).at(STEP_MAX)[0]:
            assert math.isfinite(lr_value) and lr_value >= 0
