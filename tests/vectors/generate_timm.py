"""Write tests/vectors/timm.json: the LRs timm's own schedulers give for a set of specs.

Run it with an environment that has timm and torch==2.13.0 (not lrtower's own: the reference
libraries are no dependency of lrtower):

    python tests/vectors/generate_timm.py

`import timm` imports its models, which need torchvision; the schedulers do not. So the script
loads the installed `timm.scheduler` package on its own (a bare `timm` package object pointing at
the installed files stands in for `timm/__init__.py`): the code that runs is timm's.

Every case builds the real scheduler on a real torch optimizer with one param group per base LR,
calls `scheduler.step(t)` and records every group's `lr`. A step where timm raises, or sets an LR
that is not a real number (a complex one), is recorded in the case's `no_lr` instead.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import platform
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import torch


def _load_timm_scheduler() -> types.ModuleType:
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.submodule_search_locations is None:
        raise SystemExit("timm is not installed: pip install --no-deps timm")
    package = types.ModuleType("timm")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["timm"] = package
    import timm.scheduler

    return timm.scheduler


scheduler_lib = _load_timm_scheduler()

OUT = Path(__file__).with_name("timm.json")
LARGE = [10**6, 10**9, 10**12, 2**53 - 1, 2**53]

Case = tuple[dict[str, Any], list[float], int]
"""A spec, its base LRs, and N: the case checks every step 0..N plus LARGE."""

ONE = [0.1]
TWO = [1e-3, 5e-4]
THREE = [0.02, 0.2, 0.0]

CASES: list[Case] = [
    # cosine
    ({"type": "timm.cosine", "t_initial": 10}, ONE, 14),
    ({"type": "timm.cosine", "t_initial": 10, "warmup_t": 3, "warmup_lr_init": 1e-4}, TWO, 14),
    (
        {
            "type": "timm.cosine",
            "t_initial": 10,
            "warmup_t": 3,
            "warmup_lr_init": 1e-4,
            "warmup_prefix": True,
        },
        TWO,
        16,
    ),
    (
        {"type": "timm.cosine", "t_initial": 8, "lr_min": 1e-5, "cycle_limit": 3, "cycle_decay": 0.5},
        THREE,
        30,
    ),
    ({"type": "timm.cosine", "t_initial": 5, "cycle_mul": 2.0, "cycle_limit": 4, "lr_min": 1e-4}, ONE, 80),
    ({"type": "timm.cosine", "t_initial": 10, "cycle_mul": 0.5, "cycle_limit": 10}, ONE, 25),
    (
        {
            "type": "timm.cosine",
            "t_initial": 6,
            "cycle_mul": 1.5,
            "cycle_limit": 5,
            "k_decay": 2.0,
            "cycle_decay": 0.8,
        },
        TWO,
        60,
    ),
    ({"type": "timm.cosine", "t_initial": 12, "k_decay": 0.5, "warmup_t": 2}, ONE, 15),
    (
        {"type": "timm.cosine", "t_initial": 10, "cycle_mul": 1.3, "cycle_limit": 10**6, "k_decay": 0.5},
        ONE,
        30,
    ),
    ({"type": "timm.cosine", "t_initial": 1, "cycle_limit": 3}, ONE, 5),
    ({"type": "timm.cosine", "t_initial": 4, "cycle_limit": 0, "lr_min": 0.003}, ONE, 5),
    ({"type": "timm.cosine", "t_initial": 4, "cycle_decay": 1.1, "cycle_limit": 3}, ONE, 14),
    (
        {
            "type": "timm.cosine",
            "t_initial": 1000,
            "cycle_limit": 2**53,
            "warmup_t": 5,
            "warmup_lr_init": 1e-6,
        },
        ONE,
        12,
    ),
    # tanh
    ({"type": "timm.tanh", "t_initial": 10}, ONE, 14),
    ({"type": "timm.tanh", "t_initial": 10, "warmup_t": 4, "warmup_lr_init": 1e-4}, TWO, 14),
    (
        {"type": "timm.tanh", "t_initial": 10, "warmup_t": 4, "warmup_lr_init": 1e-4, "warmup_prefix": True},
        TWO,
        16,
    ),
    (
        {
            "type": "timm.tanh",
            "t_initial": 6,
            "lb": -3.0,
            "ub": 5.0,
            "lr_min": 1e-3,
            "cycle_limit": 3,
            "cycle_decay": 0.5,
        },
        THREE,
        20,
    ),
    ({"type": "timm.tanh", "t_initial": 4, "cycle_mul": 2.0, "cycle_limit": 3}, ONE, 30),
    ({"type": "timm.tanh", "t_initial": 8, "cycle_mul": 0.75, "cycle_limit": 100}, ONE, 35),
    # poly
    ({"type": "timm.poly", "t_initial": 10}, ONE, 14),
    ({"type": "timm.poly", "t_initial": 10, "power": 2.0, "k_decay": 1.5, "lr_min": 1e-5}, TWO, 14),
    (
        {
            "type": "timm.poly",
            "t_initial": 5,
            "power": 1.0,
            "cycle_mul": 2.0,
            "cycle_limit": 3,
            "cycle_decay": 0.5,
        },
        THREE,
        40,
    ),
    (
        {"type": "timm.poly", "t_initial": 10, "warmup_t": 3, "warmup_lr_init": 1e-3, "warmup_prefix": True},
        ONE,
        16,
    ),
    ({"type": "timm.poly", "t_initial": 10, "warmup_t": 3, "warmup_lr_init": 1e-3}, ONE, 14),
    ({"type": "timm.poly", "t_initial": 7, "cycle_mul": 0.75, "cycle_limit": 20, "power": 3}, ONE, 30),
    ({"type": "timm.poly", "t_initial": 10, "cycle_mul": 1.3, "cycle_limit": 10**6, "k_decay": 0.5}, TWO, 30),
    # step
    ({"type": "timm.step", "decay_t": 3, "decay_rate": 0.5}, ONE, 14),
    ({"type": "timm.step", "decay_t": 3, "decay_rate": 0.5, "warmup_t": 2, "warmup_lr_init": 1e-5}, TWO, 14),
    (
        {
            "type": "timm.step",
            "decay_t": 3,
            "decay_rate": 0.5,
            "warmup_t": 2,
            "warmup_lr_init": 1e-5,
            "warmup_prefix": False,
        },
        TWO,
        14,
    ),
    ({"type": "timm.step", "decay_t": 2.5, "decay_rate": 0.9}, THREE, 14),
    ({"type": "timm.step", "decay_t": 30}, ONE, 3),
    ({"type": "timm.step", "decay_t": 4, "decay_rate": 1.5}, ONE, 10),
    ({"type": "timm.step", "decay_t": 7, "decay_rate": 0.0}, ONE, 9),
    # multistep
    ({"type": "timm.multistep", "decay_t": [3, 6, 9], "decay_rate": 0.1}, ONE, 12),
    (
        {
            "type": "timm.multistep",
            "decay_t": [3, 6, 9],
            "decay_rate": 0.5,
            "warmup_t": 2,
            "warmup_lr_init": 1e-4,
        },
        TWO,
        14,
    ),
    (
        {
            "type": "timm.multistep",
            "decay_t": [3, 6],
            "decay_rate": 0.5,
            "warmup_t": 2,
            "warmup_prefix": False,
        },
        TWO,
        10,
    ),
    ({"type": "timm.multistep", "decay_t": [0, 2, 2, 5], "decay_rate": 0.5}, THREE, 8),
    ({"type": "timm.multistep", "decay_t": []}, ONE, 3),
    # constant
    ({"type": "timm.constant"}, THREE, 3),
    ({"type": "timm.constant", "warmup_t": 5, "warmup_lr_init": 1e-5}, TWO, 8),
    # wsd
    ({"type": "timm.wsd", "t_initial": 10, "decay_t": 4}, ONE, 14),
    (
        {
            "type": "timm.wsd",
            "t_initial": 10,
            "decay_t": 4,
            "warmup_t": 3,
            "warmup_lr_init": 1e-5,
            "lr_min": 1e-4,
        },
        TWO,
        16,
    ),
    ({"type": "timm.wsd", "t_initial": 8, "decay_t": 8, "decay_fn": "linear"}, THREE, 10),
    ({"type": "timm.wsd", "t_initial": 10, "decay_t": 5, "decay_fn": "cosine", "lr_min": 0.01}, ONE, 12),
    ({"type": "timm.wsd", "t_initial": 10, "decay_t": 5, "decay_fn": "power", "decay_power": 2.0}, ONE, 12),
    ({"type": "timm.wsd", "t_initial": 10, "decay_t": 5, "decay_fn": "exp", "decay_ratio": 0.05}, TWO, 12),
    (
        {
            "type": "timm.wsd",
            "t_initial": 20,
            "decay_t": 5,
            "stable_fn": "rsqrt",
            "warmup_t": 4,
            "lr_min": 1e-3,
        },
        ONE,
        26,
    ),
    (
        {
            "type": "timm.wsd",
            "t_initial": 20,
            "decay_t": 5,
            "stable_fn": "power",
            "stable_power": 1.5,
            "stable_timescale": 2.5,
        },
        TWO,
        22,
    ),
    ({"type": "timm.wsd", "t_initial": 1, "decay_t": 1}, ONE, 3),
    # rsqrt
    ({"type": "timm.rsqrt", "t_initial": 20, "decay_t": 4, "warmup_t": 4, "warmup_lr_init": 1e-5}, TWO, 26),
    (
        {"type": "timm.rsqrt", "t_initial": 12, "decay_t": 3, "stable_timescale": 3, "decay_fn": "1-sqrt"},
        THREE,
        14,
    ),
]


def _scheduler(spec: dict[str, Any], optimizer: torch.optim.Optimizer) -> Any:
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    name = spec["type"].removeprefix("timm.")
    classes = {
        "cosine": scheduler_lib.CosineLRScheduler,
        "tanh": scheduler_lib.TanhLRScheduler,
        "poly": scheduler_lib.PolyLRScheduler,
        "step": scheduler_lib.StepLRScheduler,
        "multistep": scheduler_lib.MultiStepLRScheduler,
        "wsd": scheduler_lib.WSDLRScheduler,
    }
    if name in classes:
        return classes[name](optimizer, **kwargs)
    if name == "rsqrt":  # what create_scheduler_v2("rsqrt") builds, with every parameter reachable
        kwargs.setdefault("decay_fn", "linear")
        return scheduler_lib.WSDLRScheduler(optimizer, stable_fn="rsqrt", **kwargs)
    if name == "constant":
        scheduler, _ = scheduler_lib.create_scheduler_v2(
            optimizer,
            sched="constant",
            warmup_epochs=kwargs.get("warmup_t", 0),
            warmup_lr=kwargs.get("warmup_lr_init", 0.0),
        )
        return scheduler
    raise ValueError(f"no timm scheduler for {spec['type']}")


def _check_rsqrt_matches_factory() -> None:
    """`timm.rsqrt` is the WSDLRScheduler that create_scheduler_v2("rsqrt") builds."""
    spec = {
        "type": "timm.rsqrt",
        "t_initial": 20,
        "decay_t": 4,
        "warmup_t": 4,
        "warmup_lr_init": 1e-5,
        "lr_min": 1e-4,
    }
    ours = run_case(spec, TWO, 30)
    optimizer = _optimizer(TWO)
    factory, _ = scheduler_lib.create_scheduler_v2(
        optimizer,
        sched="rsqrt",
        num_epochs=20,
        decay_epochs=4,
        warmup_epochs=4,
        warmup_lr=1e-5,
        min_lr=1e-4,
        warmup_prefix=True,
    )
    for step, lrs in zip(ours["steps"], ours["lrs"], strict=True):
        factory.step(step)
        if [g["lr"] for g in optimizer.param_groups] != lrs:
            raise RuntimeError(f"timm.rsqrt differs from create_scheduler_v2('rsqrt') at step {step}")


def _optimizer(base_lrs: list[float]) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in base_lrs]
    return torch.optim.SGD(
        [{"params": [p], "lr": lr} for p, lr in zip(params, base_lrs, strict=True)], lr=base_lrs[0]
    )


def run_case(spec: dict[str, Any], base_lrs: list[float], n: int) -> dict[str, Any]:
    optimizer = _optimizer(base_lrs)
    scheduler = _scheduler(spec, optimizer)
    steps: list[int] = []
    lrs: list[list[float]] = []
    no_lr: list[int] = []
    for step in [*range(n + 1), *LARGE]:
        try:
            scheduler.step(step)
        except (ArithmeticError, ValueError, TypeError):
            no_lr.append(step)
            continue
        values = [group["lr"] for group in optimizer.param_groups]
        if not all(isinstance(v, float) for v in values):
            no_lr.append(step)
            continue
        steps.append(step)
        lrs.append(values)
    case: dict[str, Any] = {"spec": spec, "base_lrs": base_lrs, "steps": steps, "lrs": lrs}
    if no_lr:
        case["no_lr"] = no_lr
    return case


def dump(document: dict[str, Any]) -> str:
    """The JSON with one line per case, so that a change to one case is a one-line diff."""
    head = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in document.items() if k != "cases"]
    cases = ",\n".join(f"    {json.dumps(case)}" for case in document["cases"])
    return "\n".join(["{", *head, '  "cases": [', cases, "  ]", "}"]) + "\n"


def main() -> None:
    warnings.simplefilter("ignore")
    _check_rsqrt_matches_factory()
    cases = [run_case(spec, base_lrs, n) for spec, base_lrs, n in CASES]
    document = {
        "library": "timm",
        "version": importlib.metadata.version("timm"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "generated_by": "tests/vectors/generate_timm.py",
        "cases": cases,
    }
    OUT.write_text(dump(document))
    points = sum(len(c["steps"]) * len(c["base_lrs"]) for c in cases)
    no_lr = sum(len(c.get("no_lr", [])) for c in cases)
    print(f"wrote {OUT}: {len(cases)} cases, {points} values, {no_lr} steps with no LR", file=sys.stderr)


if __name__ == "__main__":
    main()
