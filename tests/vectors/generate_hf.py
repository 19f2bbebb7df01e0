"""Write tests/vectors/hf.json: the LRs transformers' own schedulers give for a set of specs.

Run it with an environment that has transformers and torch==2.13.0 (not lrtower's own: the
reference libraries are no dependency of lrtower):

    python tests/vectors/generate_hf.py

Every case builds a real torch optimizer with one param group per base LR (the optimizer's
default `lr` is the first group's, which transformers reads as `optimizer.defaults["lr"]`), calls
`transformers.get_scheduler` and records `get_last_lr()` after each `scheduler.step()`. Large
steps are reached the way LambdaLR itself counts: `last_epoch` set to step - 1, then one
`step()`, which evaluates `base_lr * lr_lambda(step)`.
"""

from __future__ import annotations

import json
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import get_scheduler

OUT = Path(__file__).with_name("hf.json")
LARGE = [10**6, 10**9, 10**12, 2**53 - 1, 2**53]

Case = tuple[dict[str, Any], list[float], int]
"""A spec, its base LRs, and N: the case checks every step 0..N plus LARGE."""

ONE = [0.1]
TWO = [1e-3, 5e-4]
THREE = [0.02, 0.2, 0.0]

CASES: list[Case] = [
    # linear
    ({"type": "hf.linear", "num_warmup_steps": 0, "num_training_steps": 10}, ONE, 14),
    ({"type": "hf.linear", "num_warmup_steps": 3, "num_training_steps": 10}, TWO, 14),
    ({"type": "hf.linear", "num_warmup_steps": 10, "num_training_steps": 10}, THREE, 13),
    ({"type": "hf.linear", "num_warmup_steps": 0, "num_training_steps": 0}, ONE, 3),
    ({"type": "hf.linear", "num_warmup_steps": 7, "num_training_steps": 1000}, [3e-4], 40),
    # cosine
    ({"type": "hf.cosine", "num_warmup_steps": 0, "num_training_steps": 10}, ONE, 25),
    ({"type": "hf.cosine", "num_warmup_steps": 3, "num_training_steps": 20}, TWO, 45),
    ({"type": "hf.cosine", "num_warmup_steps": 5, "num_training_steps": 5}, ONE, 9),
    ({"type": "hf.cosine", "num_warmup_steps": 2, "num_training_steps": 30, "num_cycles": 1.5}, THREE, 40),
    ({"type": "hf.cosine", "num_warmup_steps": 1, "num_training_steps": 9, "num_cycles": 0}, ONE, 12),
    ({"type": "hf.cosine", "num_warmup_steps": 100, "num_training_steps": 10000, "num_cycles": 2}, [1.0], 30),
    # cosine_with_restarts
    (
        {"type": "hf.cosine_with_restarts", "num_warmup_steps": 0, "num_training_steps": 20, "num_cycles": 3},
        ONE,
        25,
    ),
    ({"type": "hf.cosine_with_restarts", "num_warmup_steps": 4, "num_training_steps": 24}, TWO, 30),
    ({"type": "hf.cosine_with_restarts", "num_warmup_steps": 5, "num_training_steps": 5}, ONE, 8),
    (
        {"type": "hf.cosine_with_restarts", "num_warmup_steps": 2, "num_training_steps": 37, "num_cycles": 4},
        THREE,
        42,
    ),
    (
        {"type": "hf.cosine_with_restarts", "num_warmup_steps": 0, "num_training_steps": 6, "num_cycles": 0},
        ONE,
        8,
    ),
    # polynomial (lr_end is absolute, against the first group's LR)
    ({"type": "hf.polynomial", "num_warmup_steps": 0, "num_training_steps": 10}, ONE, 14),
    (
        {
            "type": "hf.polynomial",
            "num_warmup_steps": 3,
            "num_training_steps": 13,
            "lr_end": 1e-4,
            "power": 2.0,
        },
        TWO,
        18,
    ),
    (
        {
            "type": "hf.polynomial",
            "num_warmup_steps": 2,
            "num_training_steps": 12,
            "lr_end": 0.0,
            "power": 0.5,
        },
        THREE,
        15,
    ),
    (
        {"type": "hf.polynomial", "num_warmup_steps": 9, "num_training_steps": 10, "lr_end": 0.01},
        [0.1, 0.3],
        13,
    ),
    (
        {"type": "hf.polynomial", "num_warmup_steps": 0, "num_training_steps": 8, "lr_end": 0.05, "power": 0},
        [0.1, 0.01],
        10,
    ),
    (
        {
            "type": "hf.polynomial",
            "num_warmup_steps": 50,
            "num_training_steps": 5000,
            "lr_end": 1e-6,
            "power": 3,
        },
        [5e-4, 1e-3],
        20,
    ),
    # constant
    ({"type": "hf.constant"}, ONE, 3),
    ({"type": "hf.constant"}, THREE, 3),
    # constant_with_warmup
    ({"type": "hf.constant_with_warmup", "num_warmup_steps": 0}, ONE, 3),
    ({"type": "hf.constant_with_warmup", "num_warmup_steps": 1}, TWO, 3),
    ({"type": "hf.constant_with_warmup", "num_warmup_steps": 7}, THREE, 10),
    # inverse_sqrt
    ({"type": "hf.inverse_sqrt", "num_warmup_steps": 0}, ONE, 20),
    ({"type": "hf.inverse_sqrt", "num_warmup_steps": 4}, TWO, 20),
    ({"type": "hf.inverse_sqrt", "num_warmup_steps": 4, "timescale": 10}, THREE, 20),
    ({"type": "hf.inverse_sqrt", "num_warmup_steps": 0, "timescale": 1}, ONE, 20),
    ({"type": "hf.inverse_sqrt", "num_warmup_steps": 1000, "timescale": 3}, [1e-3], 10),
    # cosine_with_min_lr
    (
        {
            "type": "hf.cosine_with_min_lr",
            "num_warmup_steps": 2,
            "num_training_steps": 12,
            "min_lr_rate": 0.1,
        },
        ONE,
        26,
    ),
    (
        {"type": "hf.cosine_with_min_lr", "num_warmup_steps": 0, "num_training_steps": 10, "min_lr": 1e-5},
        TWO,
        15,
    ),
    (
        {
            "type": "hf.cosine_with_min_lr",
            "num_warmup_steps": 3,
            "num_training_steps": 3,
            "min_lr_rate": 0.25,
        },
        THREE,
        8,
    ),
    (
        {
            "type": "hf.cosine_with_min_lr",
            "num_warmup_steps": 1,
            "num_training_steps": 21,
            "num_cycles": 1,
            "min_lr": 0.003,
        },
        [0.02, 0.2],
        30,
    ),
    # cosine_warmup_with_min_lr
    (
        {
            "type": "hf.cosine_warmup_with_min_lr",
            "num_warmup_steps": 3,
            "num_training_steps": 13,
            "min_lr_rate": 0.1,
        },
        ONE,
        20,
    ),
    (
        {
            "type": "hf.cosine_warmup_with_min_lr",
            "num_warmup_steps": 5,
            "num_training_steps": 15,
            "min_lr_rate": 0.05,
            "warmup_lr_rate": 0.2,
        },
        TWO,
        20,
    ),
    (
        {
            "type": "hf.cosine_warmup_with_min_lr",
            "num_warmup_steps": 1,
            "num_training_steps": 9,
            "min_lr": 0.001,
            "warmup_lr_rate": 0.5,
        },
        THREE,
        12,
    ),
    (
        {
            "type": "hf.cosine_warmup_with_min_lr",
            "num_warmup_steps": 0,
            "num_training_steps": 8,
            "min_lr_rate": 0.0,
            "num_cycles": 1.25,
        },
        ONE,
        12,
    ),
    (
        {
            "type": "hf.cosine_warmup_with_min_lr",
            "num_warmup_steps": 4,
            "num_training_steps": 4,
            "min_lr_rate": 0.3,
        },
        ONE,
        7,
    ),
    # warmup_stable_decay
    (
        {
            "type": "hf.warmup_stable_decay",
            "num_warmup_steps": 3,
            "num_decay_steps": 4,
            "num_training_steps": 12,
        },
        ONE,
        16,
    ),
    (
        {
            "type": "hf.warmup_stable_decay",
            "num_warmup_steps": 4,
            "num_decay_steps": 5,
            "num_stable_steps": 3,
            "warmup_type": "cosine",
            "decay_type": "linear",
            "min_lr_ratio": 0.1,
        },
        TWO,
        15,
    ),
    (
        {
            "type": "hf.warmup_stable_decay",
            "num_warmup_steps": 5,
            "num_decay_steps": 6,
            "num_stable_steps": 2,
            "num_training_steps": 13,
            "warmup_type": "1-sqrt",
            "decay_type": "1-sqrt",
            "min_lr_ratio": 0.05,
        },
        THREE,
        16,
    ),
    (
        {
            "type": "hf.warmup_stable_decay",
            "num_warmup_steps": 0,
            "num_decay_steps": 0,
            "num_training_steps": 5,
        },
        ONE,
        7,
    ),
    (
        {
            "type": "hf.warmup_stable_decay",
            "num_warmup_steps": 2,
            "num_decay_steps": 10,
            "num_stable_steps": 0,
            "num_cycles": 1.0,
            "min_lr_ratio": 0.2,
        },
        [0.5, 0.05],
        14,
    ),
    (
        {
            "type": "hf.warmup_stable_decay",
            "num_warmup_steps": 1,
            "num_decay_steps": 3,
            "num_stable_steps": 2,
            "warmup_type": "cosine",
            "decay_type": "cosine",
        },
        ONE,
        8,
    ),
]


def _scheduler(spec: dict[str, Any], optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    name = spec["type"].removeprefix("hf.")
    warmup = kwargs.pop("num_warmup_steps", None)
    training = kwargs.pop("num_training_steps", None)
    return get_scheduler(
        name,
        optimizer,
        num_warmup_steps=warmup,
        num_training_steps=training,
        scheduler_specific_kwargs=kwargs or None,
    )


def run_case(spec: dict[str, Any], base_lrs: list[float], n: int) -> dict[str, Any]:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in base_lrs]
    optimizer = torch.optim.SGD(
        [{"params": [p], "lr": lr} for p, lr in zip(params, base_lrs, strict=True)], lr=base_lrs[0]
    )
    scheduler = _scheduler(spec, optimizer)
    steps: list[int] = []
    lrs: list[list[float]] = []
    for step in range(n + 1):
        if step:
            optimizer.step()
            scheduler.step()
        steps.append(step)
        lrs.append([float(lr) for lr in scheduler.get_last_lr()])
    for step in LARGE:
        scheduler.last_epoch = step - 1
        scheduler.step()
        if scheduler.last_epoch != step:
            raise RuntimeError(f"LambdaLR counted to {scheduler.last_epoch}, not {step}")
        steps.append(step)
        lrs.append([float(lr) for lr in scheduler.get_last_lr()])
    return {"spec": spec, "base_lrs": base_lrs, "steps": steps, "lrs": lrs}


def dump(document: dict[str, Any]) -> str:
    """The JSON with one line per case, so that a change to one case is a one-line diff."""
    head = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in document.items() if k != "cases"]
    cases = ",\n".join(f"    {json.dumps(case)}" for case in document["cases"])
    return "\n".join(["{", *head, '  "cases": [', cases, "  ]", "}"]) + "\n"


def main() -> None:
    warnings.simplefilter("ignore")
    cases = [run_case(spec, base_lrs, n) for spec, base_lrs, n in CASES]
    document = {
        "library": "transformers",
        "version": transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "generated_by": "tests/vectors/generate_hf.py",
        "cases": cases,
    }
    OUT.write_text(dump(document))
    points = sum(len(c["steps"]) * len(c["base_lrs"]) for c in cases)
    print(f"wrote {OUT}: {len(cases)} cases, {points} values", file=sys.stderr)


if __name__ == "__main__":
    main()
