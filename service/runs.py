"""Use cases over the store: create and read runs, and serve their LRs with step consistency.

Serving keeps, per run, the compiled timeline, its version, and the highest step this process
knows was served (the mark). A step at or below the mark is answered from memory: no change
can touch it, since every change lands above the mark it reads under the run's lock. A step
above it raises the run's mark in the database, in the same statement that returns the run's
version, and reloads the timeline if the version moved.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import audit
from .db import writer
from .errors import Conflict, NotFound
from .schedules import SpecError, build_schedule
from .schedules.plateau import PlateauConfig
from .schemas import RunCreate
from .store import ChangeRecord, RunRecord, Store
from .timeline import Answer, Change, PlateauChange, ScaleChange, ScheduleChange, Timeline


@dataclass(frozen=True)
class _Served:
    version: int
    timeline: Timeline
    mark: int


def definition_hash(body: RunCreate) -> str:
    """What makes two creations of a run the same: its base LRs, schedule, plateau and labels."""
    definition = {
        "lrs": body.base_lrs,
        "schedule": body.schedule,
        "plateau": body.plateau.model_dump() if body.plateau else None,
        "labels": body.labels,
    }
    return hashlib.sha256(audit.canonical(definition)).hexdigest()


def _prefixed(exc: SpecError, field: str) -> SpecError:
    return SpecError([e if e.loc[:1] == ("lrs",) else e.prefixed(field) for e in exc.errors])


def timeline_of(run: RunRecord, changes: list[ChangeRecord]) -> Timeline:
    plateau = PlateauConfig.model_validate(run.plateau) if run.plateau else None
    return Timeline(run.lrs, run.spec, plateau, [_change(c) for c in changes])


def _change(record: ChangeRecord) -> Change:
    if record.kind == "schedule" and record.spec is not None:
        return ScheduleChange(record.effective_step, record.spec, record.restart)
    if record.kind == "scale" and record.factor is not None:
        return ScaleChange(record.effective_step, record.factor)
    if record.kind == "plateau" and record.factors is not None:
        return PlateauChange(record.effective_step, tuple(record.factors))
    raise ValueError(f"malformed change {record.seq}: {record.kind}")  # pragma: no cover - schema prevents it


class Runs:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = writer(engine)
        self._served: dict[str, _Served] = {}
        self._lock = threading.Lock()

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
        digest = definition_hash(body)
        lrs_at_zero = schedule.at(0)[0]
        try:
            with Session(self._writer) as session, session.begin():
                store = Store(session)
                existing = store.run(body.name)
                if existing is not None:
                    return self._same_or_conflict(existing, digest), False
                now = datetime.now(UTC)
                run = store.insert_run(
                    name=body.name,
                    lrs=body.base_lrs,
                    spec=body.schedule,
                    plateau=body.plateau.model_dump() if body.plateau else None,
                    labels=body.labels,
                    definition_hash=digest,
                    now=now,
                )
                store.append_event(
                    run,
                    actor,
                    "run_created",
                    at=now,
                    effective_step=0,
                    lr_after=lrs_at_zero,
                    details={"lrs": body.base_lrs, "schedule": body.schedule, "plateau": run.plateau},
                )
                return run, True
        except IntegrityError:
            # Another request created it between our read and our insert.
            with Session(self.engine) as session:
                existing = Store(session).run(body.name)
            if existing is None:  # pragma: no cover - the unique name is the only constraint hit
                raise
            return self._same_or_conflict(existing, digest), False

    @staticmethod
    def _same_or_conflict(existing: RunRecord, digest: str) -> RunRecord:
        if existing.definition_hash != digest:
            raise Conflict(
                f"run {existing.name!r} exists with a different definition",
                extra={"high_water": existing.high_water},
            )
        return existing

    def get(self, name: str) -> tuple[RunRecord, list[ChangeRecord]]:
        with Session(self.engine) as session, session.begin():
            store = Store(session)
            run = store.run(name)
            if run is None:
                raise NotFound(f"no run named {name!r}")
            return run, store.changes(run.id)

    def page(
        self, after: str | None, limit: int, labels: dict[str, str]
    ) -> list[tuple[RunRecord, list[ChangeRecord]]]:
        with Session(self.engine) as session, session.begin():
            store = Store(session)
            return [(run, store.changes(run.id)) for run in store.runs(after, limit, labels)]

    # -- serving ----------------------------------------------------------------------------

    def serve(self, name: str, steps: range) -> list[Answer]:
        """The answers for `steps`, which count as served: they never change afterwards."""
        served = self._served.get(name)
        top = steps[-1]
        if served is not None and top <= served.mark:
            return [served.timeline.at(s) for s in steps]
        with Session(self._writer) as session, session.begin():
            store = Store(session)
            raised = store.raise_mark(name, top)
            if raised is None:
                raise NotFound(f"no run named {name!r}")
            version, mark = raised
            if served is None or served.version != version:
                run = store.run(name)
                assert run is not None  # the row was just updated in this transaction
                served = _Served(version, timeline_of(run, store.changes(run.id)), mark)
            else:
                served = _Served(version, served.timeline, mark)
            # Computed before the commit: a step with no value raises, and the mark stays put.
            answers = [served.timeline.at(s) for s in steps]
        with self._lock:
            current = self._served.get(name)
            if current is None or (current.version, current.mark) <= (served.version, served.mark):
                self._served[name] = served
        return answers

    def curve(self, name: str, steps: range) -> list[Answer]:
        """The planned answers for `steps`, without serving them: later changes may alter them."""
        run, changes = self.get(name)
        timeline = timeline_of(run, changes)
        return [timeline.at(s) for s in steps]


def preview(base_lrs: list[float] | None, spec: dict[str, Any], steps: range) -> list[Answer]:
    try:
        timeline = Timeline(base_lrs, spec, None)
    except SpecError as exc:
        raise _prefixed(exc, "schedule") from None
    return [timeline.at(s) for s in steps]
