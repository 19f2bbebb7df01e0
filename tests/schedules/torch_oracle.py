"""The reference: build the real torch scheduler for a spec, step it, and read what it gives.

Expressions (`lr_lambda`, `scale_fn`) become Python lambdas through Python's own `eval`:
lrtower's expression language is a subset of Python's, so Python is its reference too.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim import lr_scheduler

PY_NAMESPACE: dict[str, Any] = {
    "__builtins__": {},
    **{
        name: getattr(math, name)
        for name in ("floor", "ceil", "sqrt", "exp", "log", "cos", "sin", "tanh", "pi", "e")
    },
    "min": min,
    "max": max,
    "abs": abs,
}


def py_lambda(source: str) -> Any:
    return eval(f"lambda epoch: (lambda step: {source})(epoch)", PY_NAMESPACE)


def make_optimizer(base_lrs: list[float], betas: bool = False) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in base_lrs]
    if betas:
        return torch.optim.Adam(groups, lr=base_lrs[0])
    return torch.optim.SGD(groups, lr=base_lrs[0], momentum=0.9)


def make_scheduler(spec: dict[str, Any], optimizer: torch.optim.Optimizer) -> Any:
    """Construct like a user would: children first, in list order, then their composite."""
    kind = spec["type"].removeprefix("torch.")
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    if kind in ("SequentialLR", "ChainedScheduler"):
        children = [make_scheduler(child, optimizer) for child in spec["schedulers"]]
        if kind == "SequentialLR":
            return lr_scheduler.SequentialLR(optimizer, children, spec["milestones"])
        return lr_scheduler.ChainedScheduler(children, optimizer=optimizer)
    if "lr_lambda" in kwargs:
        fn = kwargs["lr_lambda"]
        kwargs["lr_lambda"] = [py_lambda(f) for f in fn] if isinstance(fn, list) else py_lambda(fn)
    if kwargs.get("scale_fn") is not None:
        kwargs["scale_fn"] = py_lambda(kwargs["scale_fn"])
    return getattr(lr_scheduler, kind)(optimizer, **kwargs)


def momenta(optimizer: torch.optim.Optimizer) -> list[float]:
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in optimizer.param_groups]


def run(
    spec: dict[str, Any], base_lrs: list[float], steps: int, betas: bool = False
) -> tuple[list[list[float]], list[list[float]]]:
    """LRs and momenta of every group after 0, 1, ..., steps calls of `scheduler.step()`."""
    optimizer = make_optimizer(base_lrs, betas)
    scheduler = make_scheduler(spec, optimizer)
    lrs = [list(scheduler.get_last_lr())]
    moms = [momenta(optimizer)]
    for _ in range(steps):
        optimizer.step()
        try:
            scheduler.step()
        except OverflowError:
            break  # CyclicLR triangular2 past 1024 cycles: torch has no value from here on
        lrs.append(list(scheduler.get_last_lr()))
        moms.append(momenta(optimizer))
    return lrs, moms
