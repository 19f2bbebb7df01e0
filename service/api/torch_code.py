"""A torch spec as the Python that builds the same scheduler: the playground's "copy as torch
code". `lrtower.from_torch` reads the scheduler this code builds back to the same spec and base
LR (tests/service/test_torch_code.py runs it against torch for every torch example).

Only the types `from_torch` converts are written: LambdaLR and MultiplicativeLR hold lrtower
expressions, which are not Python functions, and the other families are not torch's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..schedules.registry import TORCH_PREFIX

CONVERTIBLE = frozenset(
    {
        "StepLR",
        "MultiStepLR",
        "ConstantLR",
        "LinearLR",
        "ExponentialLR",
        "PolynomialLR",
        "CosineAnnealingLR",
        "CosineAnnealingWarmRestarts",
        "CyclicLR",
        "OneCycleLR",
        "SequentialLR",
        "ChainedScheduler",
    }
)
OVERWRITING = frozenset({"CyclicLR", "OneCycleLR", "CosineAnnealingWarmRestarts"})
"""Schedulers that compute every LR from their own parameters, ignoring the LR they are handed."""
SCHEDULERS = "torch.optim.lr_scheduler"
INDENT = "    "


def torch_code(spec: Any, lr: float) -> str | None:
    """The code, for a spec the engine accepted; None where torch has no such scheduler."""
    if not _convertible(spec):
        return None
    return "\n".join(
        [
            "import torch",
            "",
            "model = torch.nn.Linear(1, 1)  # your model",
            # momentum: CyclicLR and OneCycleLR cycle it by default, and need an optimizer that has one
            f"optimizer = torch.optim.SGD(model.parameters(), lr={lr!r}, momentum=0.9)",
            f"scheduler = {_scheduler(spec, 0)}",
            "",
        ]
    )


def _convertible(spec: Any, in_chain: bool = False) -> bool:
    """Whether torch builds a scheduler with this spec's curve. Not in two compositions, where
    torch steps differently from the engine's closed form, and `from_torch` refuses them: a
    SequentialLR in a ChainedScheduler (its milestones overwrite the chain midway), and a chain
    of multiplicative schedulers with a CosineAnnealingLR whose eta_min is not 0."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        return False
    name = spec["type"].removeprefix(TORCH_PREFIX)
    if name not in CONVERTIBLE or (in_chain and name == "SequentialLR"):
        return False
    children = spec.get("schedulers", [])
    chain = in_chain or name == "ChainedScheduler"
    if not isinstance(children, list) or not all(_convertible(child, chain) for child in children):
        return False
    if name == "ChainedScheduler" and not in_chain:
        leaves = list(_leaves(spec))
        affine = any(
            leaf.get("type", "").removeprefix(TORCH_PREFIX) == "CosineAnnealingLR"
            and leaf.get("eta_min", 0) != 0
            for leaf in leaves
        )
        if (
            len(leaves) > 1
            and affine
            and not any(leaf.get("type", "").removeprefix(TORCH_PREFIX) in OVERWRITING for leaf in leaves)
        ):
            return False
    return True


def _leaves(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A chain's schedulers, chains in it flattened: torch steps them all in order."""
    for child in spec.get("schedulers", []):
        if child.get("type", "").removeprefix(TORCH_PREFIX) == "ChainedScheduler":
            yield from _leaves(child)
        else:
            yield child


def _scheduler(spec: dict[str, Any], depth: int) -> str:
    """One scheduler's constructor call; a composite's children one per line, in list order, as
    torch constructs them. ChainedScheduler takes its optimizer last, by name."""
    name = spec["type"].removeprefix(TORCH_PREFIX)
    chained = name == "ChainedScheduler"
    head = [] if chained else ["optimizer"]
    tail = [f"{key}={value!r}" for key, value in spec.items() if key not in ("type", "schedulers")]
    tail += ["optimizer=optimizer"] if chained else []
    if "schedulers" not in spec:
        return f"{SCHEDULERS}.{name}({', '.join(head + tail)})"
    inner, outer = INDENT * (depth + 2), INDENT * (depth + 1)
    children = "".join(f"{inner}{_scheduler(child, depth + 2)},\n" for child in spec["schedulers"])
    lines = [*head, f"schedulers=[\n{children}{outer}]", *tail]
    return f"{SCHEDULERS}.{name}(\n" + "".join(f"{outer}{line},\n" for line in lines) + f"{INDENT * depth})"
