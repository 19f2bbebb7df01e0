"""A run's LR over its whole history: the base schedule, then every change, on one step axis.

Each change takes effect at its `effective_step`:
- a schedule change replaces the schedule from there on; with `restart`, the new schedule
  counts its own steps from 0 at that point, otherwise it is read at the absolute step;
- a scale multiplies the LR from there on (scales accumulate);
- a plateau reduction sets every group's plateau factor from there on;
- a record of what ran (`RanChange`) answers its own steps, and no others, with the LRs a job
  ran there while it could not reach the tower: nobody had been served them (core/fallbacks.py).
When two changes of a kind take effect at the same step, the later one wins.

Outside what ran, LR(s) = plateau(schedule(s) * scale(s), factors(s)), with the plateau rule of
`schedules.plateau.reduce_by_plateau`. Each lookup is a bisection over the change steps, so an answer costs
the same whatever the step and (but for a logarithm) however long the history.

Scales and plateau factors are not tied to a schedule: those in force where a new schedule takes
over carry over to it, restart or not. `Plan` puts the changes in that order without compiling
anything, and says what is in force at a step (`Plan.in_force`); `Timeline` evaluates it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from itertools import accumulate
from operator import mul
from typing import Any, NamedTuple

from ..schedules import DomainError, Schedule, build_schedule
from ..schedules.base import split_range
from ..schedules.plateau import PlateauConfig, reduce_by_plateau


@dataclass(frozen=True)
class ScheduleChange:
    effective_step: int
    spec: dict[str, Any]
    restart: bool


@dataclass(frozen=True)
class ScaleChange:
    effective_step: int
    factor: float


@dataclass(frozen=True)
class PlateauChange:
    effective_step: int
    factors: tuple[float, ...]


@dataclass(frozen=True)
class RanChange:
    """Steps `effective_step`..`to_step` ran with `lrs` (and `momentum`, if the job said): a record,
    not a plan, so nothing else changes what they answer, and it ends where they do."""

    effective_step: int
    to_step: int
    lrs: tuple[float, ...]
    momentum: tuple[float, ...] | None = None


Change = ScheduleChange | ScaleChange | PlateauChange | RanChange


class Answer(NamedTuple):
    """What a step serves. A tuple: a range builds thousands of them per request."""

    step: int
    lrs: list[float]
    momentum: list[float] | None


@dataclass(frozen=True)
class InForce:
    """What a run's plan applies at `step`: the schedule, where it took over, and what carries
    over into it from earlier changes. Until the next change, for every group,
    LR(s) = plateau(schedule(s - origin) * scale, factors), with `origin` = `from_step` for a
    restarted schedule and 0 for one read at the run's own step.
    """

    step: int
    spec: dict[str, Any]
    from_step: int
    """Where this schedule took over: 0 for the run's own."""
    restart: bool
    change: int | None
    """The index of the schedule change that set it among the plan's changes; None: the run's own."""
    scale: float
    """The product of every scale in force at `step`, made before or after this schedule took over."""
    factors: tuple[float, ...] | None
    """Each group's plateau factor in force at `step`; None while no reduction is."""

    @property
    def origin(self) -> int:
        """The run's step at which this schedule's own step is 0."""
        return self.from_step if self.restart else 0


class Plan:
    """A run's changes in order on the step axis: which schedule, which product of scales and which
    plateau factors hold from which step. Nothing is compiled, so it is cheap to read."""

    def __init__(self, spec: dict[str, Any], changes: Sequence[Change] = ()) -> None:
        self.spec = spec
        self.changes = tuple(changes)
        ordered = sorted(enumerate(self.changes), key=lambda ic: (ic[1].effective_step, ic[0]))
        self.schedules = [(i, c) for i, c in ordered if isinstance(c, ScheduleChange)]
        scales = [c for _, c in ordered if isinstance(c, ScaleChange)]
        reductions = [c for _, c in ordered if isinstance(c, PlateauChange)]
        # Segment i (0: the run's own schedule) runs from starts[i]; a bisection to the right picks
        # the last of the changes of one step, so the later one wins.
        self.starts = [0, *(c.effective_step for _, c in self.schedules)]
        self.scale_steps = [c.effective_step for c in scales]
        self.scale_products = [1.0, *accumulate((c.factor for c in scales), mul)]
        self.plateau_steps = [c.effective_step for c in reductions]
        self.reductions = [c.factors for c in reductions]
        # Records of what ran never overlap (each covers steps above the mark, and raises it).
        self.ran = [c for _, c in ordered if isinstance(c, RanChange)]

    def in_force(self, step: int) -> InForce:
        """The schedule in force at `step`, and the scale and plateau factors carried into it."""
        segment = bisect_right(self.starts, step) - 1
        spec, from_step, restart, change = self.spec, 0, False, None
        if segment > 0:
            change, schedule = self.schedules[segment - 1]
            spec, from_step, restart = schedule.spec, schedule.effective_step, schedule.restart
        reduced = bisect_right(self.plateau_steps, step)
        return InForce(
            step,
            spec,
            from_step,
            restart,
            change,
            self.scale_products[bisect_right(self.scale_steps, step)],
            self.reductions[reduced - 1] if reduced else None,
        )


class Timeline:
    """The compiled history of one run. Immutable: a new change makes a new Timeline."""

    def __init__(
        self,
        base_lrs: Sequence[float] | None,
        spec: dict[str, Any],
        plateau: PlateauConfig | None,
        changes: Sequence[Change] = (),
    ) -> None:
        self.base_lrs = None if base_lrs is None else tuple(base_lrs)
        self.spec = spec
        self.plateau = plateau
        self.changes = tuple(changes)
        self.plan = plan = Plan(spec, self.changes)

        base = build_schedule(spec, self.base_lrs)
        self.n_groups = base.n_groups
        # Segment i runs from starts[i]; a restarted segment counts steps from its start.
        self._starts = plan.starts
        self._segments: list[tuple[Schedule, int]] = [(base, 0)]
        for _, c in plan.schedules:
            self._segments.append(
                (build_schedule(c.spec, self.base_lrs), c.effective_step if c.restart else 0)
            )
        self._scale_steps = plan.scale_steps
        self._scale_products = plan.scale_products
        self._plateau_steps = plan.plateau_steps
        self._plateau_factors = [(1.0,) * self.n_groups, *plan.reductions]
        self._floors = plateau.min_lrs(self.n_groups) if plateau else None
        self._ran = plan.ran
        self._ran_starts = [c.effective_step for c in plan.ran]
        # The steps where a segment, a scale, a plateau factor or a record of what ran begins (or
        # where such a record ends): a range is answered in pieces between them, each of one
        # segment, one scale and one set of factors, or inside one record.
        self._bounds = sorted(
            {
                *self._starts[1:],
                *self._scale_steps,
                *self._plateau_steps,
                *self._ran_starts,
                *(c.to_step + 1 for c in plan.ran),
            }
        )
        # Each answer evaluates one segment; the dearest bounds them all.
        self.cost: float = max(schedule.cost for schedule, _ in self._segments)
        # A product over steps may first have to be extended to the step asked: a one-time cost
        # that `cost` does not cover (up to about a second).
        self.has_products = any(schedule.max_product_step is not None for schedule, _ in self._segments)

    def at(self, step: int) -> Answer:
        """The LRs (and momentum) served at `step`. Raises DomainError where there is none."""
        if self._ran_starts:  # most runs have no record of what ran: no call for it
            ran = self._ran_at(step)
            if ran is not None:
                return self._record(ran, step)
        schedule, origin = self._segments[bisect_right(self._starts, step) - 1]
        lrs, momentum = schedule.at(step - origin)
        scale = self._scale_products[bisect_right(self._scale_steps, step)]
        if scale != 1.0:
            lrs = [lr * scale for lr in lrs]
            # The schedule's own values are finite (Schedule.at); a scale can still overflow them.
            if not all(lr < math.inf for lr in lrs):
                raise DomainError(step, f"the LR scaled by {scale!r} overflows: it is not a finite LR")
        if self._floors is not None:
            factors = self._plateau_factors[bisect_right(self._plateau_steps, step)]
            lrs = reduce_by_plateau(lrs, factors, self._floors)
        return Answer(step, lrs, momentum)

    def over(self, steps: range) -> list[Answer]:
        """`at` of every step of `steps`, computed in one pass per piece of the history: the
        same answers, and the same DomainError at the first step without a value."""
        if len(steps) < 2 or steps.step < 0:
            return [self.at(step) for step in steps]
        answers: list[Answer] = []
        for piece in split_range(steps, self._bounds):
            answers.extend(self._piece(piece))
        return answers

    def _ran_at(self, step: int) -> RanChange | None:
        """The record of what ran at `step`, if one covers it."""
        i = bisect_right(self._ran_starts, step) - 1
        return self._ran[i] if i >= 0 and step <= self._ran[i].to_step else None

    def _record(self, ran: RanChange, step: int) -> Answer:
        """What `ran` says step `step` ran with. A job that did not report its momentum is taken
        to have run the plan's (where the plan has one), so that a run's answers all carry it."""
        if ran.momentum is not None:
            return Answer(step, list(ran.lrs), list(ran.momentum))
        schedule, origin = self._segments[bisect_right(self._starts, step) - 1]
        momentum = None
        # Where the plan has no value, the record still answers its LRs.
        with suppress(DomainError):
            momentum = schedule.at(step - origin)[1] if schedule.has_momentum else None
        return Answer(step, list(ran.lrs), momentum)

    def _piece(self, steps: range) -> list[Answer]:
        first = steps[0]
        ran = self._ran_at(first) if self._ran_starts else None
        if ran is not None:
            return [self._record(ran, step) for step in steps]
        schedule, origin = self._segments[bisect_right(self._starts, first) - 1]
        values = schedule.over(range(steps.start - origin, steps.stop - origin, steps.step))
        scale = self._scale_products[bisect_right(self._scale_steps, first)]
        if scale != 1.0:
            values = [([lr * scale for lr in lrs], momentum) for lrs, momentum in values]
            if not all(lr < math.inf for lrs, _ in values for lr in lrs):
                return [self.at(step) for step in steps]  # raises at the first that overflows
        if self._floors is not None:
            factors = self._plateau_factors[bisect_right(self._plateau_steps, first)]
            floors = self._floors
            values = [(reduce_by_plateau(lrs, factors, floors), momentum) for lrs, momentum in values]
        return [Answer(step, lrs, momentum) for step, (lrs, momentum) in zip(steps, values, strict=True)]

    def cached_bytes(self) -> int:
        """What the schedules have cached so far (MultiplicativeLR's products over steps)."""
        return sum(schedule.cached_bytes() for schedule, _ in self._segments)

    def work(self, points: int) -> float:
        """The estimated cost of answering `points` steps, in the engine's cost units."""
        return points * self.n_groups * self.cost

    def plus(self, change: Change) -> Timeline:
        """This history with one more change."""
        return Timeline(self.base_lrs, self.spec, self.plateau, [*self.changes, change])
