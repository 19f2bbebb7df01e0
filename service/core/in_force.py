"""The schedule a run applies now, where it took over, and the scale and plateau factors carried
into it: one function over the run's changes, for the API's run and the console."""

from __future__ import annotations

from collections.abc import Sequence

from ..db.store import ChangeRecord, RunRecord
from ..schemas import ScheduleNow
from .serving import change_of
from .timeline import Plan


def schedule_now(run: RunRecord, changes: Sequence[ChangeRecord], step: int | None = None) -> ScheduleNow:
    """What the run applies at `step` (default: the step after its high-water mark, the next one a
    job is served). `changes` are the run's changes as the store lists them; those a rewind
    discarded are left out, so after a rewind this is the plan of the new attempt."""
    kept = [c for c in changes if c.discarded_in is None]
    now = Plan(run.schedule, [change_of(c) for c in kept]).in_force(
        run.high_water + 1 if step is None else step
    )
    return ScheduleNow(
        step=now.step,
        schedule=now.spec,
        from_step=now.from_step,
        restart=now.restart,
        change_seq=None if now.change is None else kept[now.change].seq,
        scale=now.scale,
        plateau_factors=None if now.factors is None else list(now.factors),
    )
