"""Fallback reports: what a job ran while it could not reach the server, recorded in the run's trail.

A job that loses the server keeps training on the last LR it had. When it is back, it reports
the steps it ran that way (`FallbacksIn`), and the report is appended to the run's audit trail
as a `fallback` event. Each stretch's steps fall in two parts:

- Steps nobody was served (above the high-water mark): the report becomes their record. They
  are stored as a change of kind `ran` (timeline.RanChange) and the mark rises to the last of
  them, so they count as served: `/lr`, `/curve`, plots and the console answer what ran there,
  and no later change can alter them.
- Steps the tower had served (to another rank, or to a window whose answer was lost): served
  steps never change, so the report is compared with them. A stretch that ran another LR is a
  divergence: named in the event's details and the answer, logged at WARNING, and named by the
  run's `divergence` (this event's seq), which every `/lr` answer of the run carries in a header
  so that every rank warns.

Both parts are of the run's current attempt: a report of an attempt a rewind ended is recorded
in the trail only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from ..db.store import RunRecord
from ..schedules import DomainError, FieldError
from ..schemas import Divergence, FallbacksIn, FallbacksOut, StepSpan
from .problems import Invalid
from .runs import Locked, Runs, lrs_at
from .timeline import Timeline

log = logging.getLogger("lrtower")

CHECKED_STEPS = 100_000
"""Served steps compared per report, as many as one range request answers; the rest are counted
as unchecked. Work is bounded by this times the run's groups and its schedule's cost."""


def record(runs: Runs, name: str, body: FallbacksIn, actor: str, key: str | None) -> FallbacksOut:
    """Append `body` to the run's trail as a `fallback` event; under an Idempotency-Key seen
    before, answer as the first time did without a second event."""

    def make(locked: Locked) -> FallbacksOut:
        run, timeline = locked.run, locked.timeline
        _check(body, timeline.n_groups)
        current = body.attempt is None or body.attempt == run.attempt
        divergence, unchecked = _divergence(timeline, run, body) if current else ([], 0)
        recorded = _record_unserved(locked, body) if current else []
        steps = sum(s.to_step - s.from_step + 1 for s in body.stretches)
        high_water = max([run.high_water, *(r.to_step for r in recorded)])
        details: dict[str, Any] = {
            "attempt": body.attempt,
            "rank": body.rank,
            "stretches": [s.model_dump(exclude_none=True) for s in body.stretches],
            "steps": steps,
            "dropped_metric_posts": body.dropped_metric_posts,
            "high_water": run.high_water,
            "divergence": [d.model_dump() for d in divergence],
            "recorded": [r.model_dump() for r in recorded],
        }
        if unchecked:
            details["unchecked_steps"] = unchecked
        if not current:
            details["current_attempt"] = run.attempt  # a rewind ended the job's attempt: not compared
        first = body.stretches[0] if body.stretches else None
        event = locked.store.append_event(
            run,
            actor,
            "fallback",
            locked.now,
            effective_step=None if first is None else first.from_step,
            lr_before=None if first is None else lrs_at(timeline, first.from_step),
            lr_after=None if first is None else list(first.lrs),
            reason=body.reason or "the job could not reach the server",
            details=details,
        )
        if divergence:
            locked.store.set_divergence(run, event.seq, locked.now)
            log.warning(
                "run %r diverged: rank %s ran fallback LRs on steps the tower had served with others: %s",
                run.name,
                "?" if body.rank is None else body.rank,
                "; ".join(
                    f"steps {d.from_step}-{d.to_step} ran {d.fallback_lrs}, served {d.served_lrs}"
                    for d in divergence[:5]
                ),
            )
        return FallbacksOut(
            run=run.name,
            seq=event.seq,
            steps=steps,
            diverged=bool(divergence),
            divergence=divergence,
            unchecked_steps=unchecked,
            recorded=recorded,
            high_water=high_water,
        )

    return runs.change(name, "fallbacks", body, key, make, FallbacksOut, live_only=False)


def _check(body: FallbacksIn, groups: int) -> None:
    errors: list[FieldError] = []
    previous = -1
    for i, stretch in enumerate(body.stretches):
        if stretch.to_step < stretch.from_step:
            errors.append(
                FieldError(("stretches", i, "to_step"), f"must be >= from_step {stretch.from_step}")
            )
        elif stretch.from_step <= previous:
            errors.append(
                FieldError(
                    ("stretches", i, "from_step"), f"must be above the previous stretch's end {previous}"
                )
            )
        for field, values in (("lrs", stretch.lrs), ("momentum", stretch.momentum)):
            if values is not None and len(values) != groups:
                errors.append(
                    FieldError(
                        ("stretches", i, field), f"the run has {groups} param groups, not {len(values)}"
                    )
                )
        previous = max(previous, stretch.to_step)
    if errors:
        raise Invalid(
            "the fallback stretches are not a job's steps in order, one value per param group", errors
        )


def _record_unserved(locked: Locked, body: FallbacksIn) -> list[StepSpan]:
    """Store the stretches' steps above the mark as what ran there, and count them as served.
    Decided at their last step: a rewind or fork below it keeps only the steps up to where it
    goes back to (branching.py)."""
    run, recorded = locked.run, []
    for stretch in body.stretches:
        start = max(stretch.from_step, run.high_water + 1)
        if start > stretch.to_step:
            continue
        locked.store.add_change(
            run,
            "ran",
            start,
            locked.now,
            decided_at=stretch.to_step,
            to_step=stretch.to_step,
            lrs=list(stretch.lrs),
            momentum=None if stretch.momentum is None else list(stretch.momentum),
        )
        recorded.append(StepSpan(from_step=start, to_step=stretch.to_step))
    if recorded:
        locked.store.raise_high_water(run, recorded[-1].to_step)
    return recorded


def _divergence(timeline: Timeline, run: RunRecord, body: FallbacksIn) -> tuple[list[Divergence], int]:
    """The runs of served steps whose LRs differ from the stretch's, and the served steps not compared."""
    found: list[Divergence] = []
    budget, unchecked = CHECKED_STEPS, 0
    for stretch in body.stretches:
        top = min(stretch.to_step, run.high_water)
        if top < stretch.from_step:
            continue
        checked = min(top - stretch.from_step + 1, budget)
        unchecked += top - stretch.from_step + 1 - checked
        budget -= checked
        if checked == 0:
            continue
        steps = range(stretch.from_step, stretch.from_step + checked)
        try:
            served = [answer.lrs for answer in timeline.over(steps)]
        except DomainError:
            served = [lrs_at(timeline, step) or [] for step in steps]
        found += _differing(list(steps), served, stretch.lrs)
    return found, unchecked


def _differing(steps: list[int], served: list[list[float]], ran: Sequence[float]) -> list[Divergence]:
    found: list[Divergence] = []
    start: int | None = None
    for i, lrs in enumerate([*served, None]):
        same = (
            lrs is not None
            and len(lrs) == len(ran)
            and all(math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0) for a, b in zip(lrs, ran, strict=True))
        )
        if lrs is not None and not same:
            if start is None:
                start = i
            continue
        if start is not None:
            found.append(
                Divergence(
                    from_step=steps[start],
                    to_step=steps[i - 1],
                    fallback_lrs=list(ran),
                    served_lrs=served[start],
                    served_lrs_last=served[i - 1],
                )
            )
            start = None
    return found
