"""`Schedule.cost`: every compiled schedule estimates its evaluation cost, and specs above
MAX_SPEC_COST are refused at build, naming the figure and the limit."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from lrtower_server.schedules import MAX_SPEC_COST, SpecError, build_schedule
from lrtower_server.schedules.base import CLOSED_FORM_COST, PRODUCT_CHECKPOINT
from lrtower_server.schedules.examples import EXAMPLES
from lrtower_server.schedules.expression import Expression

ROOT = Path(__file__).resolve().parents[2]
WARMUP = {"type": "LinearLR", "start_factor": 0.01, "total_iters": 1000}
COSINE = {"type": "CosineAnnealingLR", "T_max": 99000}
WARMUP_COSINE = {"type": "SequentialLR", "schedulers": [WARMUP, COSINE], "milestones": [1000]}


def cost(spec: dict[str, Any], groups: int = 1) -> float:
    return build_schedule(spec, [0.1] * groups).cost


def balanced(leaves: int, leaf: str = "epoch", op: str = "+") -> str:
    if leaves == 1:
        return leaf
    return f"({balanced(leaves // 2, leaf, op)}{op}{balanced(leaves - leaves // 2, leaf, op)})"


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_type_has_a_cost_that_does_not_depend_on_the_groups(name: str) -> None:
    one = cost(EXAMPLES[name])
    assert math.isfinite(one)
    assert 0 < one <= MAX_SPEC_COST / 100
    assert cost(EXAMPLES[name], groups=64) == one  # per group: the server multiplies by the groups


def test_the_unit_is_a_closed_form_torch_schedule() -> None:
    assert cost(COSINE) == CLOSED_FORM_COST == 1.0
    for spec in ({"type": "StepLR", "step_size": 3}, WARMUP, {"type": "ExponentialLR", "gamma": 0.9}):
        assert cost(spec) == 1.0


@pytest.mark.parametrize(
    ("composite", "children"),
    [
        (WARMUP_COSINE, [WARMUP, COSINE]),
        ({"type": "ChainedScheduler", "schedulers": [WARMUP, COSINE]}, [WARMUP, COSINE]),
        (
            {
                "type": "SequentialLR",
                "schedulers": [{"type": "LambdaLR", "lr_lambda": balanced(50)}, COSINE],
                "milestones": [5],
            },
            [{"type": "LambdaLR", "lr_lambda": balanced(50)}, COSINE],
        ),
        (EXAMPLES["optax.join_schedules"], EXAMPLES["optax.join_schedules"]["schedules"]),
        (EXAMPLES["optax.warmup_cosine_decay_schedule"], [EXAMPLES["optax.linear_schedule"]]),
        (EXAMPLES["optax.sgdr_schedule"], [EXAMPLES["optax.warmup_cosine_decay_schedule"]]),
    ],
    ids=["sequential", "chained", "sequential-lambda", "join", "warmup-cosine", "sgdr"],
)
def test_a_composite_costs_more_than_any_child(
    composite: dict[str, Any], children: list[dict[str, Any]]
) -> None:
    whole = cost(composite)
    assert all(whole > cost(child) for child in children)


def test_a_chain_costs_the_sum_of_its_children_and_a_sequence_its_costliest_path() -> None:
    lam = {"type": "LambdaLR", "lr_lambda": balanced(60)}
    chain = cost({"type": "ChainedScheduler", "schedulers": [lam, WARMUP, COSINE]})
    assert chain > cost(lam) + cost(WARMUP) + cost(COSINE)
    # A sequence evaluates one child per step: a long warmup list costs no more than one child.
    many = {"type": "SequentialLR", "schedulers": [WARMUP] * 16, "milestones": list(range(10, 160, 10))}
    assert cost(many) == cost(WARMUP_COSINE)
    # A MultiplicativeLR continues from the child before it, which it evaluates too.
    mult = {"type": "MultiplicativeLR", "lr_lambda": "0.99"}
    handed = {"type": "SequentialLR", "schedulers": [lam, mult], "milestones": [10]}
    assert cost(handed) > cost(lam) + cost(mult)


def test_a_sgdr_of_many_cycles_costs_as_much_as_one() -> None:
    cycle = {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 10, "decay_steps": 110}
    one = cost({"type": "optax.sgdr_schedule", "cosine_kwargs": [cycle]})
    assert cost({"type": "optax.sgdr_schedule", "cosine_kwargs": [cycle] * 10_000}) == one


def test_expressions_cost_by_their_size() -> None:
    one_node = Expression.compile("epoch")
    big = Expression.compile(balanced(100))  # 199 nodes
    assert big.nodes == 199 and one_node.nodes == 1
    assert big.cost > 5 * one_node.cost
    products = Expression.compile(balanced(100, "step", "*"))  # ints of thousands of bits
    assert products.cost > 2 * big.cost
    lam = {"type": "LambdaLR", "lr_lambda": balanced(100)}
    assert cost(lam) > cost({"type": "LambdaLR", "lr_lambda": "epoch"}) > cost(COSINE)
    # Per group, with one expression per group: the costliest group's.
    per_group = {"type": "LambdaLR", "lr_lambda": ["epoch", balanced(100)]}
    assert build_schedule(per_group, [0.1, 0.2]).cost == cost(lam)
    scaled = {"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "scale_fn": balanced(100)}
    assert cost(scaled) > cost({"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1}) + big.cost


def test_a_product_over_steps_costs_a_checkpoint_interval_of_its_expression() -> None:
    source = "1 - 1 / (epoch + 10)"
    step_dependent = cost({"type": "MultiplicativeLR", "lr_lambda": source})
    assert step_dependent >= PRODUCT_CHECKPOINT * Expression.compile(source).cost
    constant = cost({"type": "MultiplicativeLR", "lr_lambda": "0.95"})
    assert constant < 5 < step_dependent


def test_legitimate_specs_are_far_below_the_limit() -> None:
    # The costliest specs in the test suite: four products over steps in one chain.
    four = {
        "type": "ChainedScheduler",
        "schedulers": [
            {"type": "MultiplicativeLR", "lr_lambda": f"1 - 1 / (epoch + {k})"} for k in range(10, 14)
        ],
    }
    assert cost(four) < MAX_SPEC_COST / 4
    assert cost(WARMUP_COSINE) < MAX_SPEC_COST / 1000
    # The expressions of docs/schedules.md, each as a LambdaLR and as a step-dependent MultiplicativeLR.
    text = (ROOT / "docs" / "schedules.md").read_text()
    section = text.split("## Expressions", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+) \| `(.+)` \|$", section, re.MULTILINE)
    sources = [source for name, source in rows if name != "schedule"]
    assert len(sources) >= 9
    for source in sources:
        assert cost({"type": "LambdaLR", "lr_lambda": source}) < MAX_SPEC_COST / 100
        assert cost({"type": "MultiplicativeLR", "lr_lambda": source}) < MAX_SPEC_COST / 4


def test_a_spec_above_the_limit_is_refused_with_the_figure() -> None:
    medium = balanced(16, "min(epoch, 3)")
    child = {"type": "MultiplicativeLR", "lr_lambda": medium}
    assert cost(child) < MAX_SPEC_COST < 4 * cost(child)
    chain = {
        "type": "ChainedScheduler",
        "schedulers": [{**child, "lr_lambda": f"{medium} + {k}"} for k in range(4)],
    }
    with pytest.raises(SpecError) as caught:
        build_schedule(chain, [0.1])
    [error] = caught.value.errors
    assert error.loc == ()
    figure = re.search(r"costs about (\d+) units per step and param group", error.msg)
    assert figure is not None and int(figure.group(1)) > MAX_SPEC_COST
    assert f"the limit is MAX_SPEC_COST = {MAX_SPEC_COST:.0f}" in error.msg
