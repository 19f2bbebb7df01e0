"""torch's composites: SequentialLR and ChainedScheduler, nested to any depth the limits allow.

SequentialLR runs one child at a time and re-bases it at each milestone: the child starts from
its own closed form at its local epoch 0, so the previous child's last value is skipped there.
The exception is MultiplicativeLR, which torch continues from the LR it is handed.

ChainedScheduler steps every child, in order, on the same LR. Multiplicative children
therefore multiply; a child that computes its LR from scratch (LambdaLR, CyclicLR, OneCycleLR,
CosineAnnealingWarmRestarts) overwrites whatever came before it at every step, and only the
single-step updates of the children after it apply on top.

Where torch itself fails, lrtower defines the natural behaviour instead:
- torch raises NotImplementedError when a SequentialLR reaches a milestone whose child is a
  composite; lrtower starts that composite afresh there, as if it were constructed standalone;
- a SequentialLR nested as the first child of another is stepped once too often by torch;
  lrtower runs it in step with its parent.
A SequentialLR inside a ChainedScheduler is refused: torch makes its milestones overwrite the
chain midway, which has no closed form in general.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from .base import BuildContext, Loc, SpecError, Steps, spec_union, split_range
from .torch_basic import SPECS as BASIC_SPECS
from .torch_common import TorchNode, TorchSpec
from .torch_cyclic import SPECS as CYCLIC_SPECS

MAX_CHILDREN = 16
SEQUENTIAL_COST = 1.0
"""SequentialLR's own cost per step: finding the active child, and the calls through to it."""
CHAINED_COST = 1.0
"""ChainedScheduler's own cost per step, beside its children's (it evaluates every one)."""
CHAINED_CHILD_COST = 0.25
"""What each child adds to a ChainedScheduler's own cost: the LRs it multiplies in."""


class SequentialLR(TorchSpec):
    """Run `schedulers[i]` from `milestones[i-1]` on, each on its own local epoch count."""

    type: Literal["SequentialLR"] = "SequentialLR"
    schedulers: Annotated[list[TorchChild], Field(min_length=1, max_length=MAX_CHILDREN)]
    milestones: Annotated[list[Steps], Field(max_length=MAX_CHILDREN)]

    @model_validator(mode="after")
    def _milestones_fit(self) -> SequentialLR:
        if len(self.milestones) != len(self.schedulers) - 1:
            raise ValueError(
                f"expected {len(self.schedulers) - 1} milestones, one fewer than schedulers, "
                f"but got {len(self.milestones)}: {self.milestones}"
            )
        if any(b < a for a, b in zip(self.milestones, self.milestones[1:], strict=False)):
            raise ValueError(f"milestones must not decrease, got {self.milestones}")
        return self

    def build(self, ctx: BuildContext) -> TorchNode:
        children = _build_children(ctx, self.schedulers)
        entry = ctx.initial_lrs if ctx.initial_lrs is not None else ctx.require_base_lrs()
        return _SequentialNode(entry, children, self.milestones)


class ChainedScheduler(TorchSpec):
    """Step every scheduler of `schedulers`, in order, on the same LR at every step."""

    type: Literal["ChainedScheduler"] = "ChainedScheduler"
    schedulers: Annotated[list[TorchChild], Field(min_length=1, max_length=MAX_CHILDREN)]

    def build(self, ctx: BuildContext) -> TorchNode:
        # The LR the first child is constructed on: the run's, unless an earlier scheduler set it.
        entry = ctx.initial_lrs if ctx.initial_lrs is not None else ctx.base_lrs
        children: list[TorchNode] = []
        locs: list[Loc] = []
        for i, node in enumerate(_build_children(ctx, self.schedulers)):
            if isinstance(node, _SequentialNode):
                raise SpecError.at(
                    ("schedulers", i, "type"),
                    "a SequentialLR inside a ChainedScheduler is not supported: torch lets its "
                    "milestones overwrite the chain midway; nest the ChainedScheduler inside "
                    "the SequentialLR instead",
                    "SequentialLR",
                )
            # A chain inside a chain steps the same children in the same order: flatten it.
            if isinstance(node, _ChainedNode):
                children.extend(node.children)
                locs.extend(("schedulers", i, *loc) for loc in node.locs)
            else:
                children.append(node)
                locs.append(("schedulers", i))
        overwriters = [i for i, c in enumerate(children) if c.overwrites]
        if not overwriters and len(children) > 1:
            for i, child in enumerate(children):
                if not child.multiplies:
                    raise SpecError.at(
                        locs[i],
                        "this scheduler's update is affine (CosineAnnealingLR with eta_min > 0): "
                        "chained with multiplicative schedulers it has no closed form; "
                        "use eta_min = 0, or a SequentialLR",
                    )
            if entry is None:
                entry = ctx.require_base_lrs()
        last = overwriters[-1] if overwriters else None
        return _ChainedNode(entry or children[0].bases, children, locs, last)


def _build_children(ctx: BuildContext, specs: Sequence[TorchSpec]) -> list[TorchNode]:
    """Build children in list order, as a user constructs them before their composite."""
    nodes = []
    for i, spec in enumerate(specs):
        try:
            node = spec.build(ctx)
        except SpecError as exc:
            raise exc.prefixed("schedulers", i) from None
        if not isinstance(node, TorchNode):  # pragma: no cover - TorchChild admits torch specs only
            raise SpecError.at(("schedulers", i, "type"), "torch composites hold torch schedulers only")
        nodes.append(node)
    return nodes


class _SequentialNode(TorchNode):
    def __init__(self, entry: tuple[float, ...], children: list[TorchNode], milestones: list[int]) -> None:
        super().__init__(entry)
        self.children = children
        self.milestones = milestones
        # torch starts the child active at epoch 0 with its construction step; with milestones
        # at 0, the children before it never run.
        self.first = bisect_right(milestones, 0)
        self.has_momentum = any(c.has_momentum for c in children)
        constructed = [c for c in children if c.has_momentum]
        self._constructed_momentum = constructed[-1] if constructed else None
        # One child answers a step; a child that continues in sequence also evaluates the one
        # before it (the last that ran, maybe further back than its neighbour), and so on: the
        # costliest such path. Momentum may come from yet another child.
        paths: list[float] = []
        for i, child in enumerate(children):
            handed = max(paths) if paths and child.continues_in_sequence and i > self.first else 0.0
            paths.append(child.cost + handed)
        momentum_cost = max((c.cost for c in constructed), default=0.0)
        self.cost = SEQUENTIAL_COST + max(paths) + momentum_cost

    def cached_bytes(self) -> int:
        return sum(c.cached_bytes() for c in self.children)

    @property
    def max_product_step(self) -> int | None:
        return _lowest(c.max_product_step for c in self.children)

    def _locate(self, step: int) -> tuple[int, int]:
        """(index of the active child, its local epoch)."""
        idx = bisect_right(self.milestones, step)
        start = self.milestones[idx - 1] if idx > 0 else 0
        return idx, step - start

    def value_from(self, entry: Sequence[float], e: int, initial: bool) -> list[float]:
        idx, local = self._locate(e)
        child = self.children[idx]
        if idx == self.first:
            # Started by torch's `_initial_step`, which steps a ChainedScheduler's children
            # outside construction mode.
            return child.value_from(entry, local, initial and not isinstance(child, _ChainedNode))
        if child.continues_in_sequence:
            handed = self.value_from(entry, e - local - 1, initial)
            return child.value_from(handed, local, False)
        return child.lrs(local)

    def lrs_over(self, steps: range) -> list[list[float]]:
        if steps.step < 0:
            return super().lrs_over(steps)
        rows: list[list[float]] = []
        for piece in split_range(steps, self.milestones):
            idx, local = self._locate(piece[0])
            child = self.children[idx]
            if idx == self.first or child.continues_in_sequence:
                rows.extend(self.lrs(step) for step in piece)  # from the LR it is handed
            else:
                start = piece[0] - local
                rows.extend(child.lrs_over(range(piece.start - start, piece.stop - start, piece.step)))
        return rows

    def step_map(self, e: int, initial: bool) -> list[tuple[float, float]]:  # pragma: no cover
        raise NotImplementedError("SequentialLR is never chained (refused at build)")

    def momentum(self, step: int) -> list[float] | None:
        if not self.has_momentum:
            return None
        idx, local = self._locate(step)
        if self.children[idx].has_momentum:
            return self.children[idx].momentum(local)
        # A child that does not cycle momentum leaves the last value written in place.
        for j in range(idx - 1, self.first - 1, -1):
            ran = self.milestones[j] - (self.milestones[j - 1] if j else 0)  # steps child j was active
            if self.children[j].has_momentum and ran > 0:
                return self.children[j].momentum(ran - 1)
        assert self._constructed_momentum is not None  # has_momentum implies one exists
        return self._constructed_momentum.momentum(0)


class _ChainedNode(TorchNode):
    def __init__(
        self,
        entry: tuple[float, ...],
        children: list[TorchNode],
        locs: list[Loc],
        last_overwriter: int | None,
    ) -> None:
        super().__init__(entry)
        self.children = children
        self.locs = locs  # where each flattened child sits in the spec, for error messages
        self.last_overwriter = last_overwriter
        self.overwrites = last_overwriter is not None
        with_momentum = [c for c in children if c.has_momentum]
        self.has_momentum = bool(with_momentum)
        self._momentum_child = with_momentum[-1] if with_momentum else None
        self.cost = CHAINED_COST + sum(c.cost + CHAINED_CHILD_COST for c in children)

    def cached_bytes(self) -> int:
        return sum(c.cached_bytes() for c in self.children)

    @property
    def max_product_step(self) -> int | None:
        return _lowest(c.max_product_step for c in self.children)

    def value_from(self, entry: Sequence[float], e: int, initial: bool) -> list[float]:
        if len(self.children) == 1:
            return self.children[0].value_from(entry, e, initial)
        if self.last_overwriter is None:
            values = list(entry)
            for child in self.children:
                values = [v * f for v, f in zip(values, child.cumulative(e, initial), strict=True)]
            return values
        overwriter = self.children[self.last_overwriter]
        # Step 0 of a chain is made of its children's construction steps.
        values = overwriter.construction_lrs() if e == 0 and initial else overwriter.lrs(e)
        for child in self.children[self.last_overwriter + 1 :]:
            values = [a * v + b for (a, b), v in zip(child.step_map(e, initial), values, strict=True)]
        return values

    def step_map(self, e: int, initial: bool) -> list[tuple[float, float]]:  # pragma: no cover
        raise NotImplementedError("nested chains are flattened at build")

    def momentum(self, step: int) -> list[float] | None:
        return None if self._momentum_child is None else self._momentum_child.momentum(step)


def _lowest(bounds: Iterable[int | None]) -> int | None:
    known = [b for b in bounds if b is not None]
    return min(known) if known else None


if TYPE_CHECKING:
    TorchChild = TorchSpec
else:
    TorchChild = spec_union((*BASIC_SPECS, *CYCLIC_SPECS, SequentialLR, ChainedScheduler))
SequentialLR.model_rebuild()
ChainedScheduler.model_rebuild()

SPECS = (SequentialLR, ChainedScheduler)
