"""`from_torch`: turn an existing torch LR scheduler into an lrtower run definition.

    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10_000)
    definition = lrtower.from_torch(scheduler)
    # {"lrs": [0.004], "schedule": {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10000, ...}}
    tower.create_run("resnet-1", **definition)

The definition holds the run's base LRs (`lrs`, one per param group) and the schedule spec, in
torch's own class and parameter names (docs/schedules.md); for a ReduceLROnPlateau it also holds
a `plateau` config, with a constant schedule under it. It is plain JSON: the body of
`POST /runs` once a `name` is added. The server then answers, for every step, what
`get_last_lr()` returns after that many `scheduler.step()` calls of the converted scheduler.

What is read, and from where:

- **Parameters** come from the attributes torch keeps: MultiStepLR's milestone Counter becomes a
  sorted list with repeats kept; CyclicLR's `total_size` and `step_ratio` give back the two step
  sizes; OneCycleLR's `max_lr`, `div_factor`, `final_div_factor` and momentum bounds come from
  the values it wrote into the optimizer's param groups (torch reads them back from there at
  every step, so they are what it runs on), and `pct_start` from its phase boundaries. Where a
  parameter has to be recovered by a division, the float chosen is one that gives back torch's
  stored values bit for bit.
- **`lrs`** are the param groups' `initial_lr` as the first scheduler constructed saw them: the
  base LRs torch schedules from. For a CyclicLR that is its `base_lr`, for a OneCycleLR
  `max_lr / div_factor`, as in torch; for a ReduceLROnPlateau, which records no `initial_lr`,
  the groups' current LRs.
- **Composites** (SequentialLR, ChainedScheduler, nested to any depth) are converted child by
  child. lrtower replays their construction in list order, children before their composite, as
  torch users write it; the converter checks that this replay gives every child the base LRs
  torch constructed it on, and refuses if not (the schedulers were constructed in another order,
  or on an optimizer another scheduler had used).

A spec describes the schedule from step 0, whatever the scheduler's `last_epoch`: converting a
scheduler that has already been stepped gives the same definition as converting a fresh one (its
parameters do not change as it steps). A ReduceLROnPlateau's counters (best metric, bad epochs,
cooldown) are not carried over: its run starts them afresh, from the groups' current LRs.
The plateau watches a metric named "loss"; set `definition["plateau"]["metric"]` to watch another.

Refused, with an `Unconvertible` that names the scheduler and says what to do instead: LambdaLR
and MultiplicativeLR (a Python function cannot be sent; write it as an lrtower expression),
a CyclicLR with a custom `scale_fn`, any other class, including subclasses of torch's own (a
subclass may step differently), non-integer step counts, and the two composites the engine
has no closed form for: a SequentialLR inside a ChainedScheduler, and a CosineAnnealingLR with
`eta_min > 0` chained only with multiplicative schedulers. Per-group values (CyclicLR's LRs and
momenta, OneCycleLR's, the plateau's `min_lr`) become one number when every group has the same,
else a list, as torch and the engine both accept. Parameter values that torch accepts but the
engine refuses (a ConstantLR `factor` of 0, for example) are left to the server, which names
the field and the reason.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from typing import Any, SupportsFloat, SupportsIndex

import torch
from torch.optim.lr_scheduler import (
    ChainedScheduler,
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    MultiplicativeLR,
    MultiStepLR,
    OneCycleLR,
    PolynomialLR,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
)

__all__ = ["Unconvertible", "from_torch"]

DOCS = "docs/schedules.md"

CONSTANT_SCHEDULE: dict[str, Any] = {"type": "ConstantLR", "factor": 1.0, "total_iters": 1}
"""The schedule under a ReduceLROnPlateau: a factor of exactly 1 at every step."""

_CONVERTED: tuple[type[LRScheduler], ...] = (
    StepLR,
    MultiStepLR,
    ConstantLR,
    LinearLR,
    ExponentialLR,
    PolynomialLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    OneCycleLR,
    SequentialLR,
    ChainedScheduler,
    ReduceLROnPlateau,
)
_OVERWRITING: tuple[type[LRScheduler], ...] = (CyclicLR, OneCycleLR, CosineAnnealingWarmRestarts)
"""Schedulers that compute every LR from their own parameters, ignoring the LR they are handed."""
_ULPS = 16
"""How far, in units in the last place, to look for a float that gives back torch's values exactly."""


class Unconvertible(ValueError):
    """The scheduler cannot be expressed as an lrtower schedule. The message names the scheduler
    class (and where it sits in a composite), says why, and what to do instead."""


def from_torch(scheduler: LRScheduler | ReduceLROnPlateau) -> dict[str, Any]:
    """A run definition for `scheduler`: {"lrs": [...], "schedule": {...}} plus "plateau": {...}
    for a ReduceLROnPlateau, ready for Client.create_run(name, **definition) or the body of POST /runs (with a name).

    Raises `Unconvertible` for what lrtower cannot express (see the module's docstring).
    """
    if type(scheduler) is ReduceLROnPlateau:
        return _from_plateau(scheduler)
    converter = _Converter()
    schedule = converter.spec(scheduler, "")
    groups = scheduler.optimizer.param_groups
    recorded = [_float(g["initial_lr"]) for g in groups] if all("initial_lr" in g for g in groups) else None
    if recorded is not None and recorded != converter.initial_lrs:
        raise Unconvertible(
            f"{_describe(scheduler, '')}: the optimizer's param groups hold initial_lr {recorded}, but "
            f"constructing these schedulers in list order on a fresh optimizer gives {converter.initial_lrs}: "
            "the optimizer was used by another scheduler before, or the schedulers were constructed "
            "in another order than listed. Construct them in list order on a fresh optimizer."
        )
    assert converter.run_lrs is not None  # every scheduler tree has a first leaf
    return {"lrs": converter.run_lrs, "schedule": schedule}


def _from_plateau(scheduler: ReduceLROnPlateau) -> dict[str, Any]:
    plateau: dict[str, Any] = {
        "metric": "loss",
        "mode": scheduler.mode,
        "factor": _float(scheduler.factor),
        "patience": _steps(scheduler.patience, "patience", scheduler, ""),
        "threshold": _float(scheduler.threshold),
        "threshold_mode": scheduler.threshold_mode,
        "cooldown": _steps(scheduler.cooldown, "cooldown", scheduler, ""),
        "min_lr": _per_group(scheduler.min_lrs),
        "eps": _float(scheduler.eps),
    }
    lrs = [_float(g["lr"]) for g in scheduler.optimizer.param_groups]
    return {"lrs": lrs, "schedule": dict(CONSTANT_SCHEDULE), "plateau": plateau}


class _Converter:
    """Converts a scheduler tree, replaying torch's construction order to follow `initial_lr`."""

    def __init__(self) -> None:
        self.initial_lrs: list[float] | None = None
        """The groups' `initial_lr` as construction in list order leaves it so far."""
        self.run_lrs: list[float] | None = None
        """The run's base LRs: `initial_lr` as the first scheduler constructed recorded it."""

    def spec(self, s: object, where: str) -> dict[str, Any]:
        """The spec of `s`, found at `where` in the tree ("" at the top)."""
        if type(s) is LambdaLR or type(s) is MultiplicativeLR:
            example = "0.95 ** epoch" if type(s) is LambdaLR else "0.95"
            raise Unconvertible(
                f"{_describe(s, where)}: a Python function cannot be sent to the server: write it as an "
                f'lrtower expression, e.g. {{"type": "{type(s).__name__}", "lr_lambda": "{example}"}} '
                f"(the language is in {DOCS}, 'Expressions'). A transformers `get_scheduler` "
                "schedule is a LambdaLR too: use its `hf.*` type instead."
            )
        if type(s) is StepLR:
            self._capture(s, where)
            return {
                "type": "StepLR",
                "step_size": _steps(s.step_size, "step_size", s, where),
                "gamma": _float(s.gamma),
            }
        if type(s) is MultiStepLR:
            self._capture(s, where)
            milestones = sorted(_steps(m, "milestones", s, where) for m in s.milestones.elements())
            return {"type": "MultiStepLR", "milestones": milestones, "gamma": _float(s.gamma)}
        if type(s) is ConstantLR:
            self._capture(s, where)
            return {
                "type": "ConstantLR",
                "factor": _float(s.factor),
                "total_iters": _steps(s.total_iters, "total_iters", s, where),
            }
        if type(s) is LinearLR:
            self._capture(s, where)
            return {
                "type": "LinearLR",
                "start_factor": _float(s.start_factor),
                "end_factor": _float(s.end_factor),
                "total_iters": _steps(s.total_iters, "total_iters", s, where),
            }
        if type(s) is ExponentialLR:
            self._capture(s, where)
            return {"type": "ExponentialLR", "gamma": _float(s.gamma)}
        if type(s) is PolynomialLR:
            self._capture(s, where)
            return {
                "type": "PolynomialLR",
                "total_iters": _steps(s.total_iters, "total_iters", s, where),
                "power": _float(s.power),
            }
        if type(s) is CosineAnnealingLR:
            self._capture(s, where)
            return {
                "type": "CosineAnnealingLR",
                "T_max": _steps(s.T_max, "T_max", s, where),
                "eta_min": _float(s.eta_min),
            }
        if type(s) is CosineAnnealingWarmRestarts:
            self._capture(s, where)
            return {
                "type": "CosineAnnealingWarmRestarts",
                "T_0": _steps(s.T_0, "T_0", s, where),
                "T_mult": _steps(s.T_mult, "T_mult", s, where),
                "eta_min": _float(s.eta_min),
            }
        if type(s) is CyclicLR:
            return self._cyclic(s, where)
        if type(s) is OneCycleLR:
            return self._one_cycle(s, where)
        if type(s) is SequentialLR:
            schedulers = [
                self.spec(child, _child(where, "SequentialLR", i)) for i, child in enumerate(s._schedulers)
            ]
            milestones = [_steps(m, "milestones", s, where) for m in s._milestones]
            return {"type": "SequentialLR", "schedulers": schedulers, "milestones": milestones}
        if type(s) is ChainedScheduler:
            _check_chain(s, where)
            schedulers = [
                self.spec(child, _child(where, "ChainedScheduler", i))
                for i, child in enumerate(s._schedulers)
            ]
            return {"type": "ChainedScheduler", "schedulers": schedulers}
        if type(s) is ReduceLROnPlateau:
            raise Unconvertible(
                f"{_describe(s, where)}: a ReduceLROnPlateau can only be converted on its own: "
                "pass it to from_torch directly."
            )
        raise Unconvertible(f"{_describe(s, where)}: {_unknown_reason(s)}")

    def _capture(self, s: LRScheduler, where: str) -> None:
        """A scheduler that scales the `initial_lr` it was constructed on (torch's `base_lrs`)."""
        bases = [_float(lr) for lr in s.base_lrs]
        if self.initial_lrs is None:
            self._start(bases)
        elif bases != self.initial_lrs:
            raise Unconvertible(
                f"{_describe(s, where)}: torch constructed it on base LRs {bases}, but constructing "
                f"the schedulers in list order (children before their composite) gives it {self.initial_lrs}. "
                "The schedulers were constructed in another order than listed, or a later OneCycleLR "
                "overwrote an earlier one's param-group values (torch keeps only the last). "
                "Construct them in list order on a fresh optimizer."
            )

    def _start(self, lrs: list[float]) -> None:
        self.initial_lrs = lrs
        if self.run_lrs is None:
            self.run_lrs = lrs

    def _cyclic(self, s: CyclicLR, where: str) -> dict[str, Any]:
        if s._scale_fn_custom is not None:
            raise Unconvertible(
                f"{_describe(s, where)}: its custom scale_fn is a Python function, which cannot be sent "
                "to the server: write it as an lrtower expression in `scale_fn`, with `scale_mode`, e.g. "
                '{"type": "CyclicLR", "base_lr": 0.001, "max_lr": 0.1, "scale_fn": "0.5 ** (epoch - 1)", '
                f'"scale_mode": "cycle"}} (the language is in {DOCS}, \'Expressions\').'
            )
        base_lrs = [_float(lr) for lr in s.base_lrs]  # after construction, CyclicLR's own base_lr
        if self.initial_lrs is None:  # torch sets the groups' LR to base_lr before recording initial_lr
            self._start(base_lrs)
        up, down = _step_sizes(s, where)
        spec: dict[str, Any] = {
            "type": "CyclicLR",
            "base_lr": _per_group(base_lrs),
            "max_lr": _per_group(s.max_lrs),
            "step_size_up": up,
            "step_size_down": down,
            "mode": s.mode,
            "gamma": _float(s.gamma),
            "cycle_momentum": bool(s.cycle_momentum),
        }
        if s.cycle_momentum:
            spec["base_momentum"] = _per_group(s.base_momentums)
            spec["max_momentum"] = _per_group(s.max_momentums)
        return spec

    def _one_cycle(self, s: OneCycleLR, where: str) -> dict[str, Any]:
        # torch keeps these in the param groups, and reads them back from there at every step.
        groups = s.optimizer.param_groups
        initial = [_float(g["initial_lr"]) for g in groups]
        max_lrs = [_float(g["max_lr"]) for g in groups]
        min_lrs = [_float(g["min_lr"]) for g in groups]
        anneal = getattr(s, "_anneal_func_type", None)
        if anneal not in ("cos", "linear"):
            raise Unconvertible(
                f"{_describe(s, where)}: it has no anneal strategy lrtower knows ({anneal!r}); it was "
                "probably unpickled from an older torch. Construct it afresh with anneal_strategy "
                "'cos' or 'linear'."
            )
        total = _steps(s.total_steps, "total_steps", s, where)
        phases = s._schedule_phases
        three_phase = len(phases) == 3
        spec: dict[str, Any] = {
            "type": "OneCycleLR",
            "max_lr": _per_group(max_lrs),
            "total_steps": total,
            "pct_start": _pct_start(total, [float(p["end_step"]) for p in phases[:-1]], three_phase),
            "anneal_strategy": anneal,
            "cycle_momentum": bool(s.cycle_momentum),
            "div_factor": _divisor(max_lrs, initial, 25.0),
            "final_div_factor": _divisor(initial, min_lrs, 1e4),
            "three_phase": three_phase,
        }
        if s.cycle_momentum:
            spec["base_momentum"] = _per_group([g["base_momentum"] for g in groups])
            spec["max_momentum"] = _per_group([g["max_momentum"] for g in groups])
        self._start(initial)  # OneCycleLR overwrites every group's initial_lr
        return spec


def _check_chain(s: ChainedScheduler, where: str) -> None:
    """Refuse the chains the engine cannot answer, with its own advice, before converting them."""
    leaves: list[object] = []
    pending: list[tuple[object, str]] = [
        (child, _child(where, "ChainedScheduler", i)) for i, child in enumerate(s._schedulers)
    ]
    while pending:
        child, at = pending.pop(0)
        if type(child) is SequentialLR:
            raise Unconvertible(
                f"{_describe(child, at)}: a SequentialLR inside a ChainedScheduler is not supported: torch "
                "lets its milestones overwrite the chain midway, which has no closed form. Nest the "
                "ChainedScheduler inside the SequentialLR instead."
            )
        if type(child) is ChainedScheduler:  # a chain in a chain steps the same children in order
            pending[:0] = [(c, _child(at, "ChainedScheduler", i)) for i, c in enumerate(child._schedulers)]
        else:
            leaves.append(child)
    if len(leaves) > 1 and not any(type(leaf) in _OVERWRITING for leaf in leaves):
        for leaf in leaves:
            if type(leaf) is CosineAnnealingLR and leaf.eta_min != 0:
                raise Unconvertible(
                    f"{_describe(s, where)}: its CosineAnnealingLR has eta_min={leaf.eta_min}, and its "
                    "update is then affine: chained with multiplicative schedulers it has no closed form. "
                    "Use eta_min=0, or a SequentialLR."
                )


def _step_sizes(s: CyclicLR, where: str) -> tuple[int, int]:
    """CyclicLR's step_size_up and step_size_down, from the `total_size` and `step_ratio` it keeps."""
    total, ratio = float(s.total_size), float(s.step_ratio)
    up = round(total * ratio)
    down = round(total - up)
    if up < 1 or down < 0 or float(up + down) != total or up / float(up + down) != ratio:
        raise Unconvertible(
            f"{_describe(s, where)}: its step sizes (a cycle of {total} steps, {ratio} of it going up) "
            "are not whole numbers of steps; lrtower counts steps in integers."
        )
    return up, down


def _pct_start(total: int, ends: list[float], three_phase: bool) -> float:
    """A pct_start for which torch's phase boundaries come out as `ends`, bit for bit."""
    guess = (ends[0] + 1) / total

    def fits(p: float) -> bool:
        if float(p * total) - 1 != ends[0]:
            return False
        return not three_phase or float(2 * p * total) - 2 == ends[1]

    for candidate in _near(guess):
        if 0.0 <= candidate <= 1.0 and fits(candidate):
            return candidate
    return guess  # pragma: no cover - torch's own pct_start is among the neighbours


def _divisor(numerators: Sequence[float], quotients: Sequence[float], default: float) -> float:
    """The d with n / d == q for every pair, as torch computed q (OneCycleLR's div factors)."""
    pairs = [(n, q) for n, q in zip(numerators, quotients, strict=True) if n != 0 and q != 0]
    if not pairs:
        return default  # every value is 0, whatever the factor
    guess = pairs[0][0] / pairs[0][1]
    for candidate in _near(guess):
        if all(n / candidate == q for n, q in pairs):
            return candidate
    return guess  # pragma: no cover - torch's own factor is among the neighbours


def _near(value: float) -> Iterable[float]:
    """`value`, then the floats around it, nearest first."""
    yield value
    below = above = value
    for _ in range(_ULPS):
        below, above = math.nextafter(below, -math.inf), math.nextafter(above, math.inf)
        yield below
        yield above


def _per_group(values: Sequence[object]) -> float | list[float]:
    """One value when every group has the same, as torch takes it; else one per group."""
    floats = [_float(v) for v in values]
    return floats[0] if all(v == floats[0] for v in floats) else floats


def _float(value: object) -> float:
    """A plain float from what torch stores: a Python or NumPy number, or a one-element tensor."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if not isinstance(value, SupportsFloat):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _steps(value: object, name: str, s: object, where: str) -> int:
    """A step count as an int: torch stores what it was given, which may be a whole float."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, SupportsIndex):
        raise Unconvertible(
            f"{_describe(s, where)}: {name}={value!r} is not a whole number of steps; "
            "lrtower counts steps in integers."
        )
    return operator.index(value)


def _unknown_reason(s: object) -> str:
    names = ", ".join(kind.__name__ for kind in _CONVERTED)
    kind = type(s)
    known = next(
        (base for base in kind.__mro__[1:] if base in _CONVERTED or base in (LambdaLR, MultiplicativeLR)),
        None,
    )
    if known is not None:
        return (
            f"it is a subclass of torch's {known.__name__}, and a subclass may step differently, so only "
            f"torch's own classes are converted. If it behaves exactly like {known.__name__}, write its spec "
            f'by hand, e.g. {{"type": "{known.__name__}", ...}} ({DOCS}).'
        )
    if isinstance(s, LRScheduler):
        return (
            f"lrtower does not know this scheduler class. It converts torch's {names}; "
            f"write the schedule as one of lrtower's types by hand ({DOCS})."
        )
    return f"it is not a torch LR scheduler; from_torch converts torch's {names}."


def _describe(s: object, where: str) -> str:
    kind = type(s)
    name = (
        kind.__name__
        if kind.__module__ == LRScheduler.__module__
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return f"{name} (at {where})" if where else name


def _child(where: str, composite: str, index: int) -> str:
    return f"{where or composite}.schedulers[{index}]"
