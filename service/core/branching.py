"""Rewind a run to a served step (a new attempt), and fork a run into a new one (SPEC §4.10).

Both go back to a step k and take the run's plan as it stood when k was the last step served:
- every change decided at or below k stays (an operator's change is decided at the mark it was
  made at; a plateau reduction at its metric's step), with its own effective step;
- every change decided above k is dropped with the future it belonged to;
- the plateau state is the one the last watched metric at or below k left (each post keeps it).
Steps 0..k answer exactly as before, bit for bit: every change that touches them was decided at
or below k, since a change only ever takes effect above the mark it was decided at. The one
exception is a record of what ran (kind `ran`, core/fallbacks.py): it is decided at its last
step, after its steps ran, so a k inside it drops it, and the new attempt or fork gets a record
of its own of the steps up to k.

A rewind keeps the dropped changes and the metrics posted above k, marked as discarded by the
new attempt; a fork copies the kept changes into the new run.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db.store import ChangeRecord, PlateauRecord, RunRecord, Store
from ..schedules import DomainError, FieldError, SpecError, build_schedule
from ..schedules.plateau import PlateauConfig
from ..schemas import ForkIn, RewindIn, RewindResult
from . import audit
from .problems import Conflict, Invalid
from .runs import Locked, Runs, lrs_at, same_definition
from .serving import timeline_of
from .timeline import Change, ScaleChange, ScheduleChange, Timeline


class Branching:
    """Rewinds and forks, over the same store and locks as every other change of a run."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs

    def rewind(self, name: str, body: RewindIn, actor: str, key: str | None = None) -> RewindResult:
        """Start a new attempt of the run at `body.to_step` (see the module doc)."""

        def make(locked: Locked) -> RewindResult:
            run, store, k = locked.run, locked.store, body.to_step
            _served(run, k, "to_step")
            number = run.attempt + 1
            before = lrs_at(locked.timeline, k + 1)
            cut = _ran_through(store.changes(run.id), k)
            dropped, metrics = store.discard_above(run.id, k, number)
            _restore_plateau(store, run, k, run.id, "to_step")
            store.start_attempt(run, k, actor, body.reason, locked.now)
            rewound = replace(run, attempt=number, high_water=k)
            _keep_ran_to(store, rewound, cut, k, locked.now)
            timeline = timeline_of(rewound, store.changes(run.id))
            after = _add_changes(store, rewound, timeline, body, k, locked.now)
            details: dict[str, Any] = {
                "attempt": number,
                "to_step": k,
                "discarded_to": run.high_water,
                "dropped_changes": dropped,
                "dropped_metrics": metrics,
                **_asked(body),
            }
            store.append_event(
                rewound, actor, "rewound", locked.now, k + 1, before, after, body.reason, details
            )
            changes_asked = int(body.schedule is not None) + int(body.scale is not None)
            return RewindResult(
                run=run.name,
                attempt=number,
                to_step=k,
                effective_step=k + 1,
                lr_before=before,
                lr_after=after,
                discarded_to=run.high_water,
                dropped_changes=dropped,
                dropped_metrics=metrics,
                version=run.version + 1 + len(cut) + changes_asked,
            )

        return self.runs.change(name, "rewind", body, key, make, RewindResult)

    def fork(self, name: str, body: ForkIn, actor: str) -> tuple[RunRecord, bool]:
        """Make the run `body.name` from this one at `body.at_step`; if it exists as the same fork,
        return it (created=False); as anything else, 409."""
        digest = hashlib.sha256(
            audit.canonical({"fork": name, **body.model_dump(mode="json", exclude={"reason"})})
        ).hexdigest()
        try:
            with Session(self.runs.writer) as session, session.begin():
                locked = self.runs.locked(session, name)
                parent, store, k = locked.run, locked.store, body.at_step
                existing = store.run(body.name)
                if existing is not None:
                    return same_definition(existing, digest, "exists, and is not this fork"), False
                _served(parent, k, "at_step")
                changes = store.changes(parent.id)
                kept = [c for c in changes if c.decided_at <= k]
                head = store.chain_head(parent.id)
                child = store.insert_run(
                    name=body.name,
                    lrs=parent.lrs,
                    schedule=parent.schedule,
                    plateau=parent.plateau,
                    labels=parent.labels if body.labels is None else body.labels,
                    definition_hash=digest,
                    now=locked.now,
                    high_water=k,
                    parent=(parent.name, k, head),
                    total_steps=parent.total_steps,
                )
                for c in kept:
                    store.add_change(
                        child,
                        c.kind,
                        c.effective_step,
                        c.created_at,
                        schedule=c.schedule,
                        restart=c.restart,
                        factor=c.factor,
                        factors=c.factors,
                        decided_at=c.decided_at,
                        to_step=c.to_step,
                        lrs=c.lrs,
                        momentum=c.momentum,
                    )
                _keep_ran_to(store, child, _ran_through(changes, k), k, locked.now)
                _restore_plateau(store, parent, k, child.id, "at_step")
                before = lrs_at(locked.timeline, k + 1)
                after = _add_changes(
                    store, child, timeline_of(child, store.changes(child.id)), body, k, locked.now
                )
                lineage = {"parent": parent.name, "at_step": k, "parent_head": head}
                store.append_event(
                    child,
                    actor,
                    "run_created",
                    locked.now,
                    k + 1,
                    before,
                    after,
                    body.reason,
                    {
                        "lrs": child.lrs,
                        "schedule": child.schedule,
                        "plateau": child.plateau,
                        "fork": lineage,
                        "changes": [c.seq for c in kept],
                        **_asked(body),
                    },
                )
                store.append_event(
                    parent,
                    actor,
                    "forked",
                    locked.now,
                    k + 1,
                    before,
                    after,
                    body.reason,
                    {"fork": body.name, "at_step": k, **_asked(body)},
                )
                return store.require_run(body.name), True
        except IntegrityError:
            # Another request created a run of that name between our read and our insert.
            with Session(self.runs.engine) as session:
                existing = Store(session).run(body.name)
            if existing is None:  # pragma: no cover - the unique name is the only constraint hit
                raise
            return same_definition(existing, digest, "exists, and is not this fork"), False


def _ran_through(changes: list[ChangeRecord], k: int) -> list[ChangeRecord]:
    """The records of what ran that start at or below k and end above it."""
    return [
        c for c in changes if c.kind == "ran" and c.to_step is not None and c.effective_step <= k < c.to_step
    ]


def _keep_ran_to(store: Store, run: RunRecord, cut: list[ChangeRecord], k: int, now: datetime) -> None:
    """Give `run` (the new attempt, or the fork) the steps up to k of each record in `cut`."""
    for c in cut:
        store.add_change(
            run, "ran", c.effective_step, now, decided_at=k, to_step=k, lrs=c.lrs, momentum=c.momentum
        )


def _served(run: RunRecord, k: int, field: str) -> None:
    if k > run.high_water:
        raise Conflict(
            f"step {k} of run {run.name!r} was never served (the high-water mark is {run.high_water}): "
            "go back to a served step; a change from a later step is POST /schedule or /scale",
            [FieldError((field,), f"must be at most the high-water mark {run.high_water}")],
            extra={"high_water": run.high_water},
        )


def _asked(body: RewindIn | ForkIn) -> dict[str, Any]:
    """The call's changes, as its events record them."""
    asked: dict[str, Any] = {}
    if body.schedule is not None:
        asked |= {"schedule": body.schedule, "restart": body.restart}
    if body.scale is not None:
        asked["scale"] = body.scale
    return asked


def _add_changes(
    store: Store, run: RunRecord, timeline: Timeline, body: RewindIn | ForkIn, k: int, now: datetime
) -> list[float] | None:
    """Record the call's changes, from step k + 1 on, decided at k: the LRs there after them
    (None where the plan has no value and the call changes nothing)."""
    changes: list[Change] = []
    if body.schedule is not None:
        try:
            build_schedule(body.schedule, run.lrs)
        except SpecError as exc:
            raise SpecError(
                [e if e.loc[:1] == ("lrs",) else e.prefixed("schedule") for e in exc.errors]
            ) from None
        changes.append(ScheduleChange(k + 1, body.schedule, body.restart))
    if body.scale is not None:
        changes.append(ScaleChange(k + 1, body.scale))
    for change in changes:
        timeline = timeline.plus(change)
    if not changes:
        return lrs_at(timeline, k + 1)
    try:
        after = timeline.at(k + 1).lrs
    except DomainError as exc:
        field = "schedule" if body.schedule is not None else "scale"
        raise Invalid(
            f"with these changes the run has no LR at step {k + 1}, where they take effect: {exc.reason}",
            [FieldError((field,), f"gives no finite LR >= 0 at step {k + 1}")],
            extra={"step": k + 1},
        ) from None
    for change in changes:
        if isinstance(change, ScheduleChange):
            store.add_change(
                run, "schedule", k + 1, now, schedule=change.spec, restart=change.restart, decided_at=k
            )
        else:
            assert isinstance(change, ScaleChange)
            store.add_change(run, "scale", k + 1, now, factor=change.factor, decided_at=k)
    return after


def _restore_plateau(store: Store, run: RunRecord, k: int, into: int, field: str) -> None:
    """Give run `into` the plateau state `run` had after its watched metrics at steps <= k."""
    if run.plateau is None:
        return
    config = PlateauConfig.model_validate(run.plateau)
    found = store.plateau_after(run.id, config.metric, k)
    if found is None:
        store.delete_plateau_state(into)  # no metric counted yet: the plateau starts afresh
        return
    step, state = found
    if state is None:
        # Posted before each post kept its state: only the current state, if it is that post's.
        current = store.plateau_state(run.id)
        if current is None or current.last_step != step:
            raise Conflict(
                f"the plateau state after the {config.metric!r} metric of step {step} was not kept (it was "
                "posted before lrtower kept one per post): go back to a step at or after the last such post",
                [FieldError((field,), f"the plateau state at step {step} is unknown")],
            )
        state = asdict(current)
    store.save_plateau_state(into, PlateauRecord(**state))
