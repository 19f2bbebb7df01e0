"""All SQL: runs, changes, events. The store never commits: its caller owns the transaction.

ORM objects stay in here; callers get frozen records.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from . import audit
from .models import Change, Event, IdempotentWrite, Metric, PlateauState, Run


def utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without a zone; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    lrs: list[float] | None
    spec: dict[str, Any]
    plateau: dict[str, Any] | None
    labels: dict[str, str]
    definition_hash: str
    state: str
    version: int
    high_water: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ChangeRecord:
    seq: int
    kind: str
    effective_step: int
    spec: dict[str, Any] | None
    restart: bool
    factor: float | None
    factors: list[float] | None
    created_at: datetime


@dataclass(frozen=True)
class PlateauRecord:
    best: float | None
    """None while the best is still the mode's worst (+-inf): JSON and SQL hold no infinity."""
    num_bad_epochs: int
    cooldown_counter: int
    factors: list[float]
    reductions: int
    last_step: int


@dataclass(frozen=True)
class EventRecord:
    seq: int
    at: datetime
    actor: str
    kind: str
    effective_step: int | None
    lr_before: list[float] | None
    lr_after: list[float] | None
    reason: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


def _run(row: Run) -> RunRecord:
    return RunRecord(
        id=row.id,
        name=row.name,
        lrs=row.lrs,
        spec=row.spec,
        plateau=row.plateau,
        labels=row.labels,
        definition_hash=row.definition_hash,
        state=row.state,
        version=row.version,
        high_water=row.high_water,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
    )


class Store:
    def __init__(self, session: Session) -> None:
        self.session = session

    def run(self, name: str) -> RunRecord | None:
        row = self.session.scalar(select(Run).where(Run.name == name))
        return None if row is None else _run(row)

    def runs(self, after: str | None, limit: int, labels: dict[str, str]) -> list[RunRecord]:
        """Runs by name, after `after`, whose labels include all of `labels`."""
        query = select(Run).order_by(Run.name)
        if after is not None:
            query = query.where(Run.name > after)
        found: list[RunRecord] = []
        # Labels are JSON: filter in Python, reading in pages, so any database does it alike.
        # Closed when done, even early: on PostgreSQL the pages come from a server-side cursor.
        with closing(self.session.scalars(query.execution_options(yield_per=500))) as rows:
            for row in rows:
                if all(row.labels.get(k) == v for k, v in labels.items()):
                    found.append(_run(row))
                    if len(found) == limit:
                        break
        return found

    def insert_run(
        self,
        name: str,
        lrs: list[float] | None,
        spec: dict[str, Any],
        plateau: dict[str, Any] | None,
        labels: dict[str, str],
        definition_hash: str,
        now: datetime,
    ) -> RunRecord:
        row = Run(
            name=name,
            lrs=lrs,
            spec=spec,
            plateau=plateau,
            labels=labels,
            definition_hash=definition_hash,
            state="live",
            version=0,
            high_water=-1,
            created_at=now,
            updated_at=now,
        )
        self.session.add(row)
        self.session.flush()
        return _run(row)

    def changes(self, run_id: int) -> list[ChangeRecord]:
        rows = self.session.scalars(select(Change).where(Change.run_id == run_id).order_by(Change.seq))
        return [
            ChangeRecord(
                seq=r.seq,
                kind=r.kind,
                effective_step=r.effective_step,
                spec=r.spec,
                restart=r.restart,
                factor=r.factor,
                factors=r.factors,
                created_at=utc(r.created_at),
            )
            for r in rows
        ]

    def mark(self, name: str) -> tuple[int, int] | None:
        """(version, high_water) of the run; None if there is no such run."""
        row = self.session.execute(select(Run.version, Run.high_water).where(Run.name == name)).one_or_none()
        return None if row is None else (row[0], row[1])

    def raise_mark(self, name: str, step: int) -> tuple[int, int] | None:
        """Raise the run's high-water mark to `step` (never lower it), atomically, and return
        (version, high_water) as they are after the raise; None if there is no such run."""
        result = self.session.execute(
            update(Run)
            .where(Run.name == name)
            .values(
                high_water=func.max(Run.high_water, step)
                if _is_sqlite(self.session)
                else func.greatest(Run.high_water, step)
            )
            .returning(Run.version, Run.high_water)
        ).one_or_none()
        return None if result is None else (result[0], result[1])

    def append_event(
        self,
        run: RunRecord,
        actor: str,
        kind: str,
        at: datetime,
        effective_step: int | None = None,
        lr_before: list[float] | None = None,
        lr_after: list[float] | None = None,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> EventRecord:
        last = self.session.execute(
            select(Event.seq, Event.hash).where(Event.run_id == run.id).order_by(Event.seq.desc()).limit(1)
        ).one_or_none()
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, audit.GENESIS)
        record = EventRecord(
            seq=seq,
            at=at,
            actor=actor,
            kind=kind,
            effective_step=effective_step,
            lr_before=lr_before,
            lr_after=lr_after,
            reason=reason,
            details=details or {},
            prev_hash=prev_hash,
            hash="",
        )
        record = replace(record, hash=audit.chain_hash(prev_hash, event_payload(run.name, record)))
        self.session.add(Event(run_id=run.id, **asdict(record)))
        return record

    # -- writes under the run's lock -------------------------------------------------------

    def lock_run(self, name: str) -> RunRecord | None:
        """The run, locked against concurrent changes until the transaction ends. (SQLite
        writers already hold the database's write lock: they begin IMMEDIATE.)"""
        row = self.session.scalar(select(Run).where(Run.name == name).with_for_update())
        return None if row is None else _run(row)

    def add_change(
        self,
        run: RunRecord,
        kind: str,
        effective_step: int,
        now: datetime,
        spec: dict[str, Any] | None = None,
        restart: bool = False,
        factor: float | None = None,
        factors: list[float] | None = None,
    ) -> None:
        """Append a change and bump the run's version, so every cached copy reloads."""
        seq = (self.session.scalar(select(func.max(Change.seq)).where(Change.run_id == run.id)) or 0) + 1
        self.session.add(
            Change(
                run_id=run.id,
                seq=seq,
                kind=kind,
                effective_step=effective_step,
                spec=spec,
                restart=restart,
                factor=factor,
                factors=factors,
                created_at=now,
            )
        )
        self.session.execute(
            update(Run).where(Run.id == run.id).values(version=Run.version + 1, updated_at=now)
        )

    def set_state(self, run: RunRecord, state: str, now: datetime) -> None:
        self.session.execute(update(Run).where(Run.id == run.id).values(state=state, updated_at=now))

    def recent_metrics(self, run_id: int, limit: int) -> list[tuple[str, int, float]]:
        """The last `limit` metrics posted, newest first: (name, step, value)."""
        rows = self.session.execute(
            select(Metric.name, Metric.step, Metric.value)
            .where(Metric.run_id == run_id)
            .order_by(Metric.id.desc())
            .limit(limit)
        ).all()
        return [(row[0], row[1], row[2]) for row in rows]

    def metric(self, run_id: int, name: str, step: int) -> tuple[float, dict[str, Any]] | None:
        row = self.session.execute(
            select(Metric.value, Metric.answer).where(
                Metric.run_id == run_id, Metric.name == name, Metric.step == step
            )
        ).one_or_none()
        return None if row is None else (row[0], row[1])

    def add_metric(
        self, run_id: int, name: str, step: int, value: float, answer: dict[str, Any], now: datetime
    ) -> None:
        self.session.add(
            Metric(run_id=run_id, name=name, step=step, value=value, answer=answer, created_at=now)
        )

    def idempotent_write(self, run_id: int, key: str) -> tuple[str, dict[str, Any]] | None:
        """The (request hash, answer) of the write made under `key`, if any."""
        row = self.session.execute(
            select(IdempotentWrite.request_hash, IdempotentWrite.answer).where(
                IdempotentWrite.run_id == run_id, IdempotentWrite.key == key
            )
        ).one_or_none()
        return None if row is None else (row[0], row[1])

    def add_idempotent_write(
        self, run_id: int, key: str, request_hash: str, answer: dict[str, Any], now: datetime
    ) -> None:
        self.session.add(
            IdempotentWrite(run_id=run_id, key=key, request_hash=request_hash, answer=answer, created_at=now)
        )

    def plateau_state(self, run_id: int) -> PlateauRecord | None:
        row = self.session.get(PlateauState, run_id)
        if row is None:
            return None
        return PlateauRecord(
            best=row.best,
            num_bad_epochs=row.num_bad_epochs,
            cooldown_counter=row.cooldown_counter,
            factors=list(row.factors),
            reductions=row.reductions,
            last_step=row.last_step,
        )

    def save_plateau_state(
        self,
        run_id: int,
        best: float | None,
        num_bad_epochs: int,
        cooldown_counter: int,
        factors: list[float],
        reductions: int,
        last_step: int,
    ) -> None:
        self.session.merge(
            PlateauState(
                run_id=run_id,
                best=best,
                num_bad_epochs=num_bad_epochs,
                cooldown_counter=cooldown_counter,
                factors=factors,
                reductions=reductions,
                last_step=last_step,
            )
        )

    def events(self, run_id: int, after: int = 0, limit: int | None = None) -> list[EventRecord]:
        query = select(Event).where(Event.run_id == run_id, Event.seq > after).order_by(Event.seq)
        if limit is not None:
            query = query.limit(limit)
        return [
            EventRecord(
                seq=e.seq,
                at=utc(e.at),
                actor=e.actor,
                kind=e.kind,
                effective_step=e.effective_step,
                lr_before=e.lr_before,
                lr_after=e.lr_after,
                reason=e.reason,
                details=e.details,
                prev_hash=e.prev_hash,
                hash=e.hash,
            )
            for e in self.session.scalars(query)
        ]


def event_payload(run_name: str, event: EventRecord) -> dict[str, Any]:
    """What an event's hash covers: every field but the hashes themselves."""
    return {
        "run": run_name,
        "seq": event.seq,
        "at": utc(event.at).isoformat(),
        "actor": event.actor,
        "kind": event.kind,
        "effective_step": event.effective_step,
        "lr_before": event.lr_before,
        "lr_after": event.lr_after,
        "reason": event.reason,
        "details": event.details,
    }


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"
