"""Use cases over the store: create, read and change runs, post metrics; each in its own transaction.

Serving LRs (the compiled-run cache, the high-water mark) is `serving.py`'s job.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db.engine import writer
from ..db.store import AttemptRecord, ChangeRecord, PlateauRecord, RunRecord, Store, StoredEvent
from ..schedules import STEP_MAX, DomainError, FieldError, SpecError, build_schedule
from ..schedules import plateau as plateau_rule
from ..schedules.plateau import PlateauConfig
from ..schemas import (
    ChangeResult,
    MetricIn,
    MetricOut,
    RunCreate,
    ScaleIn,
    ScheduleChangeIn,
    StateIn,
    VerifyOut,
)
from . import audit
from .problems import Conflict, Invalid
from .serving import timeline_of
from .timeline import PlateauChange, ScaleChange, ScheduleChange, Timeline
from .vocabulary import EventKind

R = TypeVar("R", bound=BaseModel)


def _prefixed(exc: SpecError, field: str) -> SpecError:
    return SpecError([e if e.loc[:1] == ("lrs",) else e.prefixed(field) for e in exc.errors])


class Runs:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.writer = writer(engine)

    # -- runs -------------------------------------------------------------------------------

    def create(self, body: RunCreate, actor: str) -> tuple[RunRecord, bool]:
        """Create the run; if it exists with the same definition, return it (created=False)."""
        try:
            schedule = build_schedule(body.schedule, body.base_lrs)
        except SpecError as exc:
            raise _prefixed(exc, "schedule") from None
        if body.plateau is not None:
            try:
                body.plateau.min_lrs(schedule.n_groups)
            except SpecError as exc:
                raise exc.prefixed("plateau") from None
        digest = audit.definition_hash(body)
        lrs_at_zero = schedule.at(0)[0]
        try:
            with Session(self.writer) as session, session.begin():
                store = Store(session)
                existing = store.run(body.name)
                if existing is not None:
                    return _same_creation(existing, digest, body.total_steps), False
                now = datetime.now(UTC)
                run = store.insert_run(
                    name=body.name,
                    lrs=body.base_lrs,
                    schedule=body.schedule,
                    plateau=body.plateau.model_dump() if body.plateau else None,
                    labels=body.labels,
                    definition_hash=digest,
                    now=now,
                    total_steps=body.total_steps,
                )
                details: dict[str, Any] = {
                    "lrs": body.base_lrs,
                    "schedule": body.schedule,
                    "plateau": run.plateau,
                }
                if body.total_steps is not None:
                    details["total_steps"] = body.total_steps
                store.append_event(
                    run,
                    actor,
                    "run_created",
                    at=now,
                    effective_step=0,
                    lr_after=lrs_at_zero,
                    details=details,
                )
                return run, True
        except IntegrityError:
            # Another request created it between our read and our insert.
            with Session(self.engine) as session:
                existing = Store(session).run(body.name)
            if existing is None:  # pragma: no cover - the unique name is the only constraint hit
                raise
            return _same_creation(existing, digest, body.total_steps), False

    def get(self, name: str) -> tuple[RunRecord, list[ChangeRecord], list[AttemptRecord]]:
        """The run, its changes in force, and its rewinds."""
        with Session(self.engine) as session, session.begin():
            store = Store(session)
            run = store.require_run(name)
            return run, store.changes(run.id), store.attempts(run.id)

    def history(self, name: str) -> tuple[RunRecord, list[ChangeRecord], list[AttemptRecord]]:
        """The run, every change it ever had (those rewinds discarded too), and its rewinds."""
        with Session(self.engine) as session, session.begin():
            store = Store(session)
            run = store.require_run(name)
            return run, store.changes(run.id, discarded=True), store.attempts(run.id)

    def page(
        self, after: str | None, limit: int, labels: dict[str, str], patterns: Sequence[str] | None = None
    ) -> list[tuple[RunRecord, list[ChangeRecord], list[AttemptRecord]]]:
        """A page of runs by name, with labels and names as asked (`patterns`: a token's reach)."""
        with Session(self.engine) as session, session.begin():
            store = Store(session)
            return [
                (run, store.changes(run.id), store.attempts(run.id))
                for run in store.runs(after, limit, labels, patterns)
            ]

    # -- changes, under the run's lock ----------------------------------------------------

    def locked(self, session: Session, name: str) -> Locked:
        store = Store(session)
        run = store.lock_run(name)
        return Locked(store, run, timeline_of(run, store.changes(run.id)), datetime.now(UTC))

    def change_schedule(
        self, name: str, body: ScheduleChangeIn, actor: str, key: str | None = None
    ) -> ChangeResult:
        def make(locked: Locked) -> ChangeResult:
            step = _effective(locked.run, body.from_step)
            try:
                build_schedule(body.schedule, locked.run.lrs)
            except SpecError as exc:
                raise _prefixed(exc, "schedule") from None
            change = ScheduleChange(step, body.schedule, body.restart)
            return self.apply(locked, change, "schedule_changed", actor, body.reason)

        return self.change(name, "schedule", body, key, make, ChangeResult)

    def scale(self, name: str, body: ScaleIn, actor: str, key: str | None = None) -> ChangeResult:
        def make(locked: Locked) -> ChangeResult:
            change = ScaleChange(_effective(locked.run, body.from_step), body.factor)
            return self.apply(locked, change, "scaled", actor, body.reason)

        return self.change(name, "scale", body, key, make, ChangeResult)

    def change(
        self,
        name: str,
        endpoint: str,
        body: BaseModel,
        key: str | None,
        change: Callable[[Locked], R],
        result: type[R],
        live_only: bool = True,
    ) -> R:
        """Make `change` under the run's lock; under an Idempotency-Key seen before, replay its answer.

        The key is looked up before anything else is checked, so a retry gets the first answer even
        after the mark moved past `from_step` or the run was finished. `live_only=False` takes it on
        a finished or archived run too (a record of what a job ran, not a change).
        """
        digest = hashlib.sha256(audit.canonical({endpoint: body.model_dump(mode="json")})).hexdigest()
        with Session(self.writer) as session, session.begin():
            locked = self.locked(session, name)
            if key is not None:
                seen = locked.store.idempotent_write(locked.run.id, key)
                if seen is not None:
                    request_hash, answer = seen
                    if request_hash != digest:
                        raise Invalid(
                            "this Idempotency-Key was used for a different request: use a new key per change",
                            [FieldError(("idempotency_key",), "already used with another body")],
                        )
                    return result.model_validate(answer)
            if live_only:
                require_live(locked.run)
            made = change(locked)
            if key is not None:
                locked.store.add_idempotent_write(
                    locked.run.id, key, digest, made.model_dump(mode="json"), locked.now
                )
        return made

    def apply(
        self,
        locked: Locked,
        change: ScheduleChange | ScaleChange | PlateauChange,
        kind: EventKind,
        actor: str,
        reason: str | None,
        decided_at: int | None = None,
    ) -> ChangeResult:
        """Record `change` and its event. It was decided at the run's mark, or, for a plateau
        reduction, at its metric's step (`decided_at`): a rewind keeps what was decided by then."""
        run, store, step = locked.run, locked.store, change.effective_step
        before = lrs_at(locked.timeline, step)  # None where the old plan has no value (it ended)
        try:
            after = locked.timeline.plus(change).at(step).lrs
        except DomainError as exc:
            # A change must leave a finite LR where it lands; later steps answer 422 no-value.
            field = "factor" if isinstance(change, ScaleChange) else "schedule"
            raise Invalid(
                f"with this change the run has no LR at step {step}, where it takes effect: {exc.reason}",
                [FieldError((field,), f"gives no finite LR >= 0 at step {step}")],
                extra={"step": step},
            ) from None
        if isinstance(change, ScheduleChange):
            store.add_change(run, "schedule", step, locked.now, schedule=change.spec, restart=change.restart)
            details: dict[str, Any] = {"schedule": change.spec, "restart": change.restart}
        elif isinstance(change, ScaleChange):
            store.add_change(run, "scale", step, locked.now, factor=change.factor)
            details = {"factor": change.factor}
        else:
            store.add_change(
                run, "plateau", step, locked.now, factors=list(change.factors), decided_at=decided_at
            )
            details = {"factors": list(change.factors)}
        store.append_event(run, actor, kind, locked.now, step, before, after, reason, details)
        return ChangeResult(
            run=run.name, effective_step=step, lr_before=before, lr_after=after, version=run.version + 1
        )

    def set_state(self, name: str, body: StateIn, actor: str) -> RunRecord:
        with Session(self.writer) as session, session.begin():
            locked = self.locked(session, name)
            if locked.run.state == body.state:
                return locked.run  # already there: nothing to record
            if locked.run.state == "archived":
                raise Conflict(f"run {name!r} is archived", extra={"state": "archived"})
            locked.store.set_state(locked.run, body.state, locked.now)
            locked.store.append_event(
                locked.run,
                actor,
                "run_finished" if body.state == "finished" else "run_archived",
                locked.now,
                reason=body.reason,
                details={"state": body.state},
            )
            return locked.store.require_run(name)

    def post_metric(self, name: str, body: MetricIn, actor: str) -> MetricOut:
        # Every rank of a job posts the job's all-reduced value: all but the first find it stored,
        # and are answered from a read, without queueing for the run's write lock.
        with Session(self.engine) as session, session.begin():
            store = Store(session)
            run = store.require_run(name)
            replayed = _replayed(store, run, body)
        if replayed is not None:
            return replayed
        with Session(self.writer) as session, session.begin():
            locked = self.locked(session, name)
            run, store = locked.run, locked.store
            replayed = _replayed(store, run, body)  # posted meanwhile by another rank
            if replayed is not None:
                return replayed
            config = PlateauConfig.model_validate(run.plateau) if run.plateau else None
            metric = body.name or (config.metric if config else "loss")
            step = body.step if body.step > run.high_water else run.high_water + 1
            reduced = False
            lrs: list[float] | None
            snapshot: PlateauRecord | None = None
            if config is None or metric != config.metric:
                # A metric the plateau does not watch changes nothing: it reports the LR at
                # `step` only where the plan has one.
                lrs = lrs_at(locked.timeline, step)
            else:
                current = locked.timeline.at(step).lrs  # the plateau rule needs it: no value, no post
                lrs = current
                require_live(run)
                record = store.plateau_state(run.id)
                if record is not None and body.step <= record.last_step:
                    raise Conflict(
                        f"metrics of {metric!r} come in step order: step {record.last_step} was posted already",
                        [FieldError(("step",), f"must be above {record.last_step}")],
                    )
                state = state_of(config, record, locked.timeline.n_groups)
                state, reduced = plateau_rule.update(config, state, body.value, current)
                if reduced:
                    change = PlateauChange(step, state.factors)
                    lrs = self.apply(locked, change, "plateau_reduced", actor, None, body.step).lr_after
                snapshot = plateau_record(state, body.step)
                store.save_plateau_state(run.id, snapshot)
            answer = MetricOut(
                accepted=True, reduced=reduced, effective_step=step, lr=lrs[0] if lrs else None, lrs=lrs
            )
            plateau = None if snapshot is None else asdict(snapshot)
            store.add_metric(run, metric, body.step, body.value, answer.model_dump(), locked.now, plateau)
        return answer

    def events(self, name: str, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """The run's events after seq `after`, by seq: at most `limit` of them (None: all)."""
        with Session(self.engine) as session, session.begin():
            store = Store(session)
            run = store.require_run(name)
            return store.events(run.id, after, limit)

    def recent_metrics(self, name: str, limit: int = 50) -> list[tuple[str, int, float]]:
        with Session(self.engine) as session, session.begin():
            store = Store(session)
            run = store.require_run(name)
            return store.recent_metrics(run.id, limit)

    def metric_series(
        self, name: str, start: int, stop: int, most: int, names: int, first: str | None = None
    ) -> dict[str, tuple[list[int], list[float]]]:
        """The run's metrics at steps in [start, stop), for a chart: (steps, values) of each of at
        most `names` metrics (`first` always among them), by name, with at most `most` points
        each (every k-th post where there are more)."""
        with Session(self.engine) as session, session.begin():
            store = Store(session)
            run = store.require_run(name)
            counts = store.metric_counts(run.id, start, stop)
            chosen = ([first] if first in counts else []) + [n for n in counts if n != first]
            return {
                metric: store.metric_series(run.id, metric, start, stop, math.ceil(counts[metric] / most))
                for metric in sorted(chosen[:names])
            }

    def metric_names(self, name: str) -> list[str]:
        """The names of the run's metrics that have counted posts, sorted."""
        with Session(self.engine) as session, session.begin():
            store = Store(session)
            run = store.require_run(name)
            return list(store.metric_counts(run.id, 0, STEP_MAX + 1))

    def verify(self, name: str) -> VerifyOut:
        with Session(self.engine) as session, session.begin():
            store = Store(session)
            run = store.require_run(name)
            return audit.verify_chain(run.name, store.events(run.id, written_order=True))


@dataclass(frozen=True)
class Locked:
    store: Store
    run: RunRecord
    timeline: Timeline
    now: datetime


def same_definition(existing: RunRecord, digest: str, otherwise: str) -> RunRecord:
    """`existing` if its definition hash is `digest` (the same creation again), else 409: the run
    `otherwise` says why."""
    if existing.definition_hash != digest:
        raise Conflict(f"run {existing.name!r} {otherwise}", extra={"high_water": existing.high_water})
    return existing


def _same_creation(existing: RunRecord, digest: str, total_steps: int | None) -> RunRecord:
    """`existing`, if a creation of it again (definition `digest`) matches it, else 409. A planned
    length is not part of the definition (nothing it answers depends on it), but one given must be
    the run's: a job that plans another length than the run was made for is told so, not ignored.
    Omitting it matches any, so that a job may attach without knowing it."""
    run = same_definition(existing, digest, "exists with a different definition")
    if total_steps is not None and total_steps != run.total_steps:
        raise Conflict(
            f"run {run.name!r} exists with total_steps {run.total_steps}, not {total_steps}: "
            "a job of another length is another run",
            extra={"high_water": run.high_water, "total_steps": run.total_steps},
        )
    return run


def require_live(run: RunRecord) -> None:
    if run.state != "live":
        raise Conflict(
            f"run {run.name!r} is {run.state}: it takes no more changes", extra={"state": run.state}
        )


def _effective(run: RunRecord, from_step: int | None) -> int:
    """Where a change lands: `from_step` if it is above the high-water mark, else 409."""
    if from_step is None:
        return run.high_water + 1
    if from_step <= run.high_water:
        raise Conflict(
            f"step {from_step} was already served (the high-water mark is {run.high_water}): "
            f"a change can take effect from step {run.high_water + 1} on",
            [FieldError(("from_step",), f"must be above the high-water mark {run.high_water}")],
            extra={"high_water": run.high_water},
        )
    return from_step


def plateau_record(state: plateau_rule.PlateauState, last_step: int) -> PlateauRecord:
    """The plateau state as stored, after the metric of `last_step`."""
    return PlateauRecord(
        best=state.best if math.isfinite(state.best) else None,
        num_bad_epochs=state.num_bad_epochs,
        cooldown_counter=state.cooldown_counter,
        factors=list(state.factors),
        reductions=state.reductions,
        last_step=last_step,
    )


def state_of(config: PlateauConfig, record: PlateauRecord | None, n_groups: int) -> plateau_rule.PlateauState:
    if record is None:
        return plateau_rule.initial_state(config, n_groups)
    worst = math.inf if config.mode == "min" else -math.inf
    return plateau_rule.PlateauState(
        best=worst if record.best is None else record.best,
        num_bad_epochs=record.num_bad_epochs,
        cooldown_counter=record.cooldown_counter,
        factors=tuple(record.factors),
        reductions=record.reductions,
    )


def planned(base_lrs: list[float] | None, spec: dict[str, Any]) -> Timeline:
    """A spec's timeline for a preview, with errors named as in the request body."""
    try:
        return Timeline(base_lrs, spec, None)
    except SpecError as exc:
        raise _prefixed(exc, "schedule") from None


def lrs_at(timeline: Timeline, step: int) -> list[float] | None:
    try:
        return timeline.at(step).lrs
    except DomainError:
        return None


def _replayed(store: Store, run: RunRecord, body: MetricIn) -> MetricOut | None:
    """The stored answer if this metric (name, step, value) was posted already; 409 if the step
    was posted with another value; None if it is new."""
    if body.attempt is not None and body.attempt != run.attempt:
        raise Conflict(
            f"run {run.name!r} is in attempt {run.attempt}, not {body.attempt}: a rewind ended the job's "
            "attempt, whose metrics no longer count",
            [FieldError(("attempt",), f"the current attempt is {run.attempt}")],
            extra={"attempt": run.attempt, "high_water": run.high_water},
        )
    config = PlateauConfig.model_validate(run.plateau) if run.plateau else None
    metric = body.name or (config.metric if config else "loss")
    seen = store.metric(run.id, metric, body.step)
    if seen is None:
        return None
    value, stored = seen
    if value == body.value:
        return MetricOut.model_validate(stored)  # the same post again: the same answer
    raise Conflict(
        f"step {body.step} of {metric!r} was posted with value {value!r} in attempt {run.attempt}: "
        "the ranks of a job post one all-reduced value per step (for example from rank 0); a job "
        "resumed from a checkpoint below this step rewinds the run to it first (POST "
        f"/runs/{run.name}/rewind), and posts in the attempt that starts",
        [FieldError(("value",), f"already posted as {value!r}")],
    )
