"""MultiplicativeLR's products over steps: checkpointed, exact, bounded in memory and in one-time work.

A step-dependent `lr_lambda` makes LR(e) the product of the expression at 1..e. The engine keeps
the running product at every PRODUCT_CHECKPOINT-th epoch and multiplies on from there (or from
the last epoch answered); these tests hold it to the straightforward product, bit for bit, and to
torch's own MultiplicativeLR.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import torch_oracle
from lrtower_server.schedules import DomainError, SpecError, build_schedule, torch_basic
from lrtower_server.schedules.base import (
    MAX_PRODUCT_STEPS,
    MAX_SPEC_COST,
    PRODUCT_BUDGET,
    PRODUCT_CHECKPOINT,
)
from lrtower_server.schedules.expression import Expression

K = PRODUCT_CHECKPOINT
SOURCES = [
    "1 - 1 / (epoch + 10)",
    "0.9 if epoch % 7 == 0 else 1.0 + 1e-3 * sin(epoch)",
    "exp(-1e-5 * step) * (1 + 1e-9 * epoch)",
]


def reference_products(source: str, n: int) -> list[float]:
    """prod(f(t) for t in 1..e) for e in 0..n, one multiplication at a time, as torch does."""
    fn = torch_oracle.py_lambda(source)
    products = [1.0]
    value = 1.0
    for t in range(1, n + 1):
        value *= fn(t)
        products.append(value)
    return products


def multiplicative(source: str | list[str], groups: int = 1) -> Any:
    return build_schedule({"type": "MultiplicativeLR", "lr_lambda": source}, [1.0] * groups)


def balanced(leaves: int, leaf: str, op: str) -> str:
    """`leaf op leaf op ...` as a balanced tree, within the expressions' nesting limit."""
    if leaves == 1:
        return leaf
    return f"({balanced(leaves // 2, leaf, op)}{op}{balanced(leaves - leaves // 2, leaf, op)})"


def sum_of_mins(terms: int, extra: int = 0) -> str:
    return "+".join(f"min(epoch, {k + extra})" for k in range(terms))


@pytest.mark.parametrize("source", SOURCES)
def test_answers_equal_the_straight_product_bit_for_bit(source: str) -> None:
    n = 40 * K + 17
    expected = reference_products(source, n)
    rng = random.Random(source)
    # Random access, cold and warm, each step far from the last one answered.
    schedule = multiplicative(source)
    for e in [n, *rng.sample(range(n + 1), 600), 0, K - 1, K, K + 1, n - 1]:
        assert schedule.at(e)[0] == [expected[e]], e
    # In order, from cold, as a training job asks them: each from the one before.
    schedule = multiplicative(source)
    for e in range(3 * K + 5):
        assert schedule.at(e)[0] == [expected[e]], e
    # Backwards, and with a stride that lands between checkpoints.
    for e in [*range(n, n - 2 * K, -1), *range(5, n, 3 * K // 2 + 1)]:
        assert schedule.at(e)[0] == [expected[e]], e


def test_far_steps_equal_the_straight_product_bit_for_bit() -> None:
    source = SOURCES[0]
    n = 300_000
    expected = reference_products(source, n)
    schedule = multiplicative(source)
    rng = random.Random(7)
    for e in [n, *rng.sample(range(n), 500), *range(123_456, 123_456 + 2 * K)]:
        assert schedule.at(e)[0] == [expected[e]], e


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "MultiplicativeLR", "lr_lambda": ["1 - 1 / (epoch + 10)", "0.99 if epoch % 3 else 1.01"]},
        {
            "type": "SequentialLR",
            "schedulers": [
                {"type": "LinearLR", "start_factor": 0.5, "total_iters": 7},
                {"type": "MultiplicativeLR", "lr_lambda": "1 - 0.001 * (epoch % 5)"},
                {"type": "MultiplicativeLR", "lr_lambda": "1 - 1 / (epoch + 300)"},
            ],
            "milestones": [20, 300],
        },
        {
            "type": "ChainedScheduler",
            "schedulers": [
                {"type": "MultiplicativeLR", "lr_lambda": "1 - 1 / (epoch + 50)"},
                {"type": "StepLR", "step_size": 100, "gamma": 0.5},
            ],
        },
    ],
    ids=["per-group", "sequential", "chained"],
)
def test_equals_torch_in_any_order(spec: dict[str, Any]) -> None:
    steps = 3 * K + 40
    expected, _ = torch_oracle.run(spec, [0.1, 0.02], steps)
    shuffled = list(range(steps + 1))
    random.Random(1).shuffle(shuffled)
    for order in (shuffled, range(steps + 1)):
        schedule = build_schedule(spec, [0.1, 0.02])
        for step in order:
            assert schedule.at(step)[0] == pytest.approx(expected[step], rel=1e-12, abs=0), step


def test_threads_sharing_a_schedule_get_the_same_products() -> None:
    source = SOURCES[1]
    n = 60 * K
    expected = reference_products(source, n)
    schedule = multiplicative(source)
    rng = random.Random(3)
    batches = [[rng.randrange(n + 1) for _ in range(300)] for _ in range(8)]
    batches.append(list(range(n, n - 400, -1)))
    batches.append(list(range(10 * K, 10 * K + 400)))

    def answer(steps: list[int]) -> list[tuple[int, list[float]]]:
        return [(e, schedule.at(e)[0]) for e in steps]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = [pair for batch in pool.map(answer, batches) for pair in batch]
    assert all(lrs == [expected[e]] for e, lrs in answers)


def count_calls(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Count the expression calls the products make, from now on."""
    calls = 0
    real = torch_basic._call

    def counting(expr: Expression, e: int) -> float:
        nonlocal calls
        calls += 1
        return real(expr, e)

    monkeypatch.setattr(torch_basic, "_call", counting)
    return lambda: calls


def test_consecutive_steps_cost_one_multiplication_each(monkeypatch: pytest.MonkeyPatch) -> None:
    schedule = multiplicative(SOURCES[0])
    schedule.at(10 * K + 3)
    calls = count_calls(monkeypatch)
    for e in range(10 * K + 4, 14 * K):  # past the last checkpoint, and within the known ones
        schedule.at(e)
    assert calls() == 14 * K - (10 * K + 4)
    before = calls()
    for e in range(3 * K + 5, 4 * K):
        schedule.at(e)
    assert calls() - before == 5 + (K - 6)  # the first from the checkpoint below, then one each


def test_a_step_is_at_most_a_checkpoint_interval_away(monkeypatch: pytest.MonkeyPatch) -> None:
    schedule = multiplicative(SOURCES[0])
    schedule.at(100 * K)
    calls = count_calls(monkeypatch)
    rng = random.Random(5)
    for _ in range(200):
        before = calls()
        schedule.at(rng.randrange(100 * K))
        assert calls() - before <= K - 1


def test_memory_is_a_checkpoint_every_interval() -> None:
    schedule = multiplicative(SOURCES[0])
    assert schedule.cached_bytes() < 100
    schedule.at(MAX_PRODUCT_STEPS)
    # 8 bytes per checkpoint: 3,907 of them at step 10**6, about 32 KB (the full products took 8 MB).
    assert schedule.cached_bytes() < 34_000
    groups = multiplicative([SOURCES[0], SOURCES[0], SOURCES[2]], groups=3)
    groups.at(MAX_PRODUCT_STEPS // 2)
    assert 2 * 15_000 < groups.cached_bytes() < 2 * 18_000  # two products: the groups share the first
    assert multiplicative("0.999").cached_bytes() == 0  # a constant is a power: nothing cached
    assert build_schedule({"type": "StepLR", "step_size": 3}, [0.1]).cached_bytes() == 0


def test_composites_count_their_children_products() -> None:
    spec = {
        "type": "SequentialLR",
        "schedulers": [
            {
                "type": "ChainedScheduler",
                "schedulers": [{"type": "MultiplicativeLR", "lr_lambda": SOURCES[0]}],
            },
            {"type": "MultiplicativeLR", "lr_lambda": SOURCES[2]},
        ],
        "milestones": [100_000],
    }
    schedule = build_schedule(spec, [0.1])
    schedule.at(200_000)
    assert 2 * 3_000 < schedule.cached_bytes() < 2 * 3_600
    costs = [Expression.compile(source).cost for source in (SOURCES[0], SOURCES[2])]
    assert schedule.max_product_step == int(PRODUCT_BUDGET / sum(costs)) < MAX_PRODUCT_STEPS


def test_the_step_bound_shares_one_budget_among_a_spec_products() -> None:
    one = multiplicative(SOURCES[0])
    assert one.max_product_step == MAX_PRODUCT_STEPS  # a short expression gets every step
    assert multiplicative("0.99").max_product_step is None  # a power: no product, any step
    assert build_schedule({"type": "StepLR", "step_size": 3}, [0.1]).max_product_step is None
    four = build_schedule(
        {
            "type": "ChainedScheduler",
            "schedulers": [
                {"type": "MultiplicativeLR", "lr_lambda": f"1 - 1 / (epoch + {k})"} for k in range(10, 14)
            ],
        },
        [0.1],
    )
    step_cost = 4 * Expression.compile(SOURCES[0]).cost  # the same size of expression, four times
    assert four.max_product_step is not None
    assert abs(four.max_product_step - PRODUCT_BUDGET / step_cost) <= 1
    assert four.max_product_step < MAX_PRODUCT_STEPS
    heavy = multiplicative(sum_of_mins(20))
    assert heavy.max_product_step is not None
    assert abs(heavy.max_product_step - PRODUCT_BUDGET / Expression.compile(sum_of_mins(20)).cost) <= 1
    assert heavy.max_product_step < four.max_product_step


def test_steps_past_the_bound_have_no_value_and_say_why() -> None:
    schedule = multiplicative(f"{sum_of_mins(20)} > 0")
    bound = schedule.max_product_step
    assert bound is not None
    with pytest.raises(DomainError, match=f"product over steps.*answer up to step {bound}:") as caught:
        schedule.at(bound + 1)
    assert caught.value.step == bound + 1
    assert f"at most {MAX_PRODUCT_STEPS}" in caught.value.reason
    with pytest.raises(DomainError, match=f"up to step {MAX_PRODUCT_STEPS}:"):
        multiplicative(SOURCES[0]).at(MAX_PRODUCT_STEPS + 1)


def worst_legal_spec() -> dict[str, Any]:
    """Four products whose expressions are as slow per unit of estimated cost as any found
    (builtin calls of min), nearly as heavy together as MAX_SPEC_COST lets them be."""
    sources = [f"{sum_of_mins(13, extra=k)} > -1" for k in range(4)]  # 1.0 at every step
    spec = {
        "type": "ChainedScheduler",
        "schedulers": [{"type": "MultiplicativeLR", "lr_lambda": source} for source in sources],
    }
    assert MAX_SPEC_COST * 0.9 < build_schedule(spec, [0.1]).cost <= MAX_SPEC_COST
    return spec


def test_the_worst_legal_spec_reaches_its_bound_from_cold() -> None:
    schedule = build_schedule(worst_legal_spec(), [0.1])
    bound = schedule.max_product_step
    assert bound is not None
    started = time.perf_counter()
    lrs, _ = schedule.at(bound)
    elapsed = time.perf_counter() - started
    print(f"worst legal spec: {bound} steps from cold in {elapsed:.2f} s (cost {schedule.cost:.0f})")
    assert lrs == [0.1]
    with pytest.raises(DomainError):
        schedule.at(bound + 1)


def test_heavy_step_dependent_expressions_are_refused_at_build() -> None:
    heavy = balanced(40, "(epoch + 1)", "*")
    with pytest.raises(SpecError) as caught:
        build_schedule(
            {
                "type": "SequentialLR",
                "schedulers": [{"type": "MultiplicativeLR", "lr_lambda": heavy}],
                "milestones": [],
            },
            [0.1],
        )
    [error] = caught.value.errors
    assert error.loc == ("schedulers", 0, "lr_lambda")
    assert f"the limit is MAX_SPEC_COST = {MAX_SPEC_COST:.0f}" in error.msg
    assert f"up to {PRODUCT_CHECKPOINT} evaluations" in error.msg
    # The same expression in closed form (LambdaLR) costs one evaluation a step: accepted.
    build_schedule({"type": "LambdaLR", "lr_lambda": heavy}, [0.1])
    # As a constant (no `epoch`), it is a power: accepted too.
    multiplicative(balanced(60, "1.0001", "*"))
