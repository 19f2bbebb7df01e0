"""The runs' SQL: runs, changes, metrics, attempts, events (tokens' is in tokens.py). The store
never commits: its caller owns the transaction.

ORM objects stay in here; callers get frozen records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, LargeBinary, Text, cast, delete, exists, func, or_, select, text, update
from sqlalchemy.orm import Session

from ..core import audit
from ..core.problems import NotFound
from ..core.vocabulary import ChangeKind, EventKind, RunState
from .models import AdminEvent, Attempt, Change, Event, IdempotentWrite, Metric, PlateauState, Run


def utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without a zone; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    lrs: list[float] | None
    schedule: dict[str, Any]
    plateau: dict[str, Any] | None
    labels: dict[str, str]
    definition_hash: str
    state: RunState
    version: int
    high_water: int
    created_at: datetime
    updated_at: datetime
    attempt: int = 1
    parent: str | None = None
    forked_at: int | None = None
    parent_head: str | None = None
    total_steps: int | None = None
    divergence: int | None = None
    """The seq of the latest fallback event that found a divergence (None: none)."""


@dataclass(frozen=True)
class AttemptRecord:
    number: int
    rewound_to: int
    discarded_to: int
    actor: str
    reason: str
    started_at: datetime


@dataclass(frozen=True)
class ChangeRecord:
    seq: int
    kind: ChangeKind
    effective_step: int
    schedule: dict[str, Any] | None
    restart: bool
    factor: float | None
    factors: list[float] | None
    created_at: datetime
    decided_at: int
    """The last step its decision saw (see models.Change)."""
    to_step: int | None = None
    lrs: list[float] | None = None
    momentum: list[float] | None = None
    attempt: int = 1
    discarded_in: int | None = None


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


@dataclass(frozen=True)
class StoredEvent:
    """An event as read back from the database, which anyone with access to it can edit.

    Each field holds the event's value, or None where the stored value is not a value of the
    field's type (text in an integer column, JSON that is not a list of numbers, a timestamp that
    is not one): such a field is named in `damaged`, and the event breaks the hash chain.
    """

    seq: int | None
    at: datetime | None
    actor: str | None
    kind: str | None
    effective_step: int | None
    lr_before: list[float] | None
    lr_after: list[float] | None
    reason: str | None
    details: dict[str, Any] | None
    prev_hash: str | None
    hash: str | None
    damaged: tuple[str, ...] = ()

    def record(self) -> EventRecord | None:
        """The event as it was written, if every field could be read."""
        if self.damaged:
            return None
        return EventRecord(**{field.name: getattr(self, field.name) for field in fields(EventRecord)})


def _run(row: Run) -> RunRecord:
    return RunRecord(
        id=row.id,
        name=row.name,
        lrs=row.lrs,
        schedule=row.spec,
        plateau=row.plateau,
        labels=row.labels,
        definition_hash=row.definition_hash,
        state=row.state,
        version=row.version,
        high_water=row.high_water,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        attempt=row.attempt,
        parent=row.parent,
        forked_at=row.forked_at,
        parent_head=row.parent_head,
        total_steps=row.total_steps,
        divergence=row.divergence,
    )


class Store:
    def __init__(self, session: Session) -> None:
        self.session = session

    def run(self, name: str) -> RunRecord | None:
        row = self.session.scalar(select(Run).where(Run.name == name))
        return None if row is None else _run(row)

    def require_run(self, name: str) -> RunRecord:
        """The run named `name`, or NotFound."""
        run = self.run(name)
        if run is None:
            raise NotFound(f"no run named {name!r}")
        return run

    def runs(
        self, after: str | None, limit: int, labels: dict[str, str], patterns: Sequence[str] | None = None
    ) -> list[RunRecord]:
        """Runs by name, after `after`, whose labels include all of `labels` and whose name
        matches one of `patterns` (globs of `*` and `?`; None: any name): one query, filtered by
        the database, so a page costs the same however many runs do not match."""
        query = select(Run).order_by(Run.name).limit(limit)
        if after is not None:
            query = query.where(Run.name > after)
        for key, value in labels.items():
            query = query.where(self._has_label(key, value))
        if patterns is not None:
            query = query.where(or_(*(self._matches(pattern) for pattern in patterns)))
        return [_run(row) for row in self.session.scalars(query)]

    def _matches(self, pattern: str) -> ColumnElement[bool]:
        """A run name matching a glob of `*` and `?` (the only special characters a pattern may
        hold, auth.PATTERN), case-sensitively on both databases."""
        if _is_sqlite(self.session):
            return Run.name.op("GLOB")(pattern)  # SQLite's LIKE ignores case; GLOB does not
        like = pattern.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
        return Run.name.like(like.replace("*", "%").replace("?", "_"), escape="\\")

    def _has_label(self, key: str, value: str) -> ColumnElement[bool]:
        if _is_sqlite(self.session):
            # json_each, not a JSON path: a path cannot quote every key (one holding `"`, say).
            pairs = func.json_each(Run.labels).table_valued("key", "value")
            return exists().where(pairs.c.key == key, pairs.c.value == value)
        same: ColumnElement[bool] = Run.labels[key].as_string() == value  # ->>, the key a bound parameter
        return same

    def insert_run(
        self,
        name: str,
        lrs: list[float] | None,
        schedule: dict[str, Any],
        plateau: dict[str, Any] | None,
        labels: dict[str, str],
        definition_hash: str,
        now: datetime,
        high_water: int = -1,
        parent: tuple[str, int, str] | None = None,
        total_steps: int | None = None,
    ) -> RunRecord:
        """A new run; a fork also gives its mark, and its `parent` as (name, step, chain head)."""
        parent_name, forked_at, parent_head = parent if parent is not None else (None, None, None)
        row = Run(
            name=name,
            lrs=lrs,
            spec=schedule,
            plateau=plateau,
            labels=labels,
            definition_hash=definition_hash,
            state="live",
            version=0,
            high_water=high_water,
            attempt=1,
            parent=parent_name,
            forked_at=forked_at,
            parent_head=parent_head,
            total_steps=total_steps,
            created_at=now,
            updated_at=now,
        )
        self.session.add(row)
        self.session.flush()
        return _run(row)

    def changes(self, run_id: int, *, discarded: bool = False) -> list[ChangeRecord]:
        """The run's changes in force, by seq; with `discarded`, also those rewinds discarded."""
        query = select(Change).where(Change.run_id == run_id).order_by(Change.seq)
        if not discarded:
            query = query.where(Change.discarded_in.is_(None))
        return [
            ChangeRecord(
                seq=r.seq,
                kind=r.kind,
                effective_step=r.effective_step,
                schedule=r.spec,
                restart=r.restart,
                factor=r.factor,
                factors=r.factors,
                created_at=utc(r.created_at),
                decided_at=r.decided_at,
                attempt=r.attempt,
                discarded_in=r.discarded_in,
                to_step=r.to_step,
                lrs=r.lrs,
                momentum=r.momentum,
            )
            for r in self.session.scalars(query)
        ]

    def attempts(self, run_id: int) -> list[AttemptRecord]:
        """The run's rewinds, oldest first: attempt 2 onwards."""
        rows = self.session.scalars(select(Attempt).where(Attempt.run_id == run_id).order_by(Attempt.number))
        return [
            AttemptRecord(r.number, r.rewound_to, r.discarded_to, r.actor, r.reason, utc(r.started_at))
            for r in rows
        ]

    def chain_head(self, run_id: int) -> str:
        """The hash of the run's last event (the genesis value if it has none)."""
        head = self.session.scalar(
            select(Event.hash).where(Event.run_id == run_id).order_by(Event.seq.desc()).limit(1)
        )
        return head or audit.GENESIS

    def mark(self, name: str) -> tuple[int, int] | None:
        """(version, high_water) of the run; None if there is no such run."""
        row = self.session.execute(select(Run.version, Run.high_water).where(Run.name == name)).one_or_none()
        return None if row is None else (row[0], row[1])

    def raise_marks(
        self, raises: list[tuple[str, int, int]], max_ahead: int, reserve: int = 0
    ) -> dict[tuple[str, int], int]:
        """Raise runs' high-water marks (never lower them), atomically: `raises` holds (name,
        version, step), and each raise, to `step + reserve`, is made on two conditions: the run is
        still at `version`, and `step` is at most `max_ahead` past its mark. The mark after the
        raise of every (name, version) whose conditions held, or that another process had raised
        to `step` already (nothing is written then); the others are absent.

        One statement, not one per run: each costs more than the commit they share. On PostgreSQL
        the rows are locked first in name order, so that two processes raising overlapping groups
        never wait on each other in a cycle (SQLite has one writer at a time); rows already raised
        that far are neither locked nor written, so replicas whose ranks ask for the same window
        make one write between them."""
        names, versions, tops = (list(column) for column in zip(*raises, strict=True))
        if _is_sqlite(self.session):
            rows = ", ".join(f"(:n{i}, :v{i}, :t{i})" for i in range(len(raises)))
            params: dict[str, Any] = {"ahead": max_ahead, "reserve": reserve}
            for i, (name, version, step) in enumerate(raises):
                params |= {f"n{i}": name, f"v{i}": version, f"t{i}": step}
            statement = text(
                f"WITH asked(name, version, top) AS (VALUES {rows}) "
                "UPDATE runs SET high_water = max(runs.high_water, asked.top + :reserve) FROM asked "
                "WHERE runs.name = asked.name AND runs.version = asked.version "
                "AND runs.high_water < asked.top AND runs.high_water >= asked.top - :ahead "
                "RETURNING runs.name, runs.version, runs.high_water"
            )
            found = self.session.execute(statement, params).all()
        else:
            # Arrays, not a VALUES list: one statement shape whatever the group's size.
            asked = (
                "unnest(CAST(:names AS text[]), CAST(:versions AS integer[]), CAST(:tops AS bigint[])) "
                "AS asked(name, version, top)"
            )
            arrays = {"names": names, "versions": versions, "tops": tops}
            self.session.execute(
                text(
                    f"SELECT runs.id FROM runs JOIN {asked} ON runs.name = asked.name "
                    "WHERE runs.high_water < asked.top ORDER BY runs.name FOR UPDATE OF runs"
                ),
                arrays,
            )
            found = self.session.execute(
                text(
                    "UPDATE runs SET high_water = greatest(runs.high_water, asked.top + :reserve) "
                    f"FROM {asked} "
                    "WHERE runs.name = asked.name AND runs.version = asked.version "
                    "AND runs.high_water < asked.top AND runs.high_water >= asked.top - :ahead "
                    "RETURNING runs.name, runs.version, runs.high_water"
                ),
                {**arrays, "ahead": max_ahead, "reserve": reserve},
            ).all()
        marks = {(row[0], int(row[1])): int(row[2]) for row in found}
        missing = {(name, version): top for name, version, top in raises if (name, version) not in marks}
        if missing:  # raised that far already (by another process), or a condition failed
            current = self.session.execute(
                select(Run.name, Run.version, Run.high_water).where(Run.name.in_({n for n, _ in missing}))
            ).all()
            for name, version, high_water in current:
                top = missing.get((name, version))
                if top is not None and high_water >= top:
                    marks[(name, version)] = high_water
        return marks

    def append_event(
        self,
        run: RunRecord,
        actor: str,
        kind: EventKind,
        at: datetime,
        effective_step: int | None = None,
        lr_before: list[float] | None = None,
        lr_after: list[float] | None = None,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> EventRecord:
        record = EventRecord(
            seq=0,
            at=at,
            actor=actor,
            kind=kind,
            effective_step=effective_step,
            lr_before=lr_before,
            lr_after=lr_after,
            reason=reason,
            details=details or {},
            prev_hash="",
            hash="",
        )
        return append_to_trail(self.session, Event, run.name, record, run_id=run.id)

    # -- writes under the run's lock -------------------------------------------------------

    def lock_run(self, name: str) -> RunRecord:
        """The run, locked against concurrent changes until the transaction ends, or NotFound.
        (SQLite writers already hold the database's write lock: they begin IMMEDIATE.)"""
        row = self.session.scalar(select(Run).where(Run.name == name).with_for_update())
        if row is None:
            raise NotFound(f"no run named {name!r}")
        return _run(row)

    def add_change(
        self,
        run: RunRecord,
        kind: ChangeKind,
        effective_step: int,
        now: datetime,
        schedule: dict[str, Any] | None = None,
        restart: bool = False,
        factor: float | None = None,
        factors: list[float] | None = None,
        decided_at: int | None = None,
        to_step: int | None = None,
        lrs: list[float] | None = None,
        momentum: list[float] | None = None,
    ) -> None:
        """Append a change and bump the run's version, so every cached copy reloads. It was
        decided at the run's mark unless `decided_at` says otherwise (a plateau reduction: the
        metric's step)."""
        seq = (self.session.scalar(select(func.max(Change.seq)).where(Change.run_id == run.id)) or 0) + 1
        self.session.add(
            Change(
                run_id=run.id,
                seq=seq,
                kind=kind,
                effective_step=effective_step,
                spec=schedule,
                restart=restart,
                factor=factor,
                factors=factors,
                to_step=to_step,
                lrs=lrs,
                momentum=momentum,
                created_at=now,
                decided_at=run.high_water if decided_at is None else decided_at,
                attempt=run.attempt,
            )
        )
        self.session.execute(
            update(Run).where(Run.id == run.id).values(version=Run.version + 1, updated_at=now)
        )

    def raise_high_water(self, run: RunRecord, step: int) -> None:
        """Count steps up to `step` as served, under the run's lock (a record of what ran)."""
        self.session.execute(
            update(Run).where(Run.id == run.id, Run.high_water < step).values(high_water=step)
        )

    def set_divergence(self, run: RunRecord, seq: int, now: datetime) -> None:
        """Name fallback event `seq` as the run's latest divergence, and bump the run's version so
        that every process's copy, which names it in its answers, reloads."""
        self.session.execute(
            update(Run)
            .where(Run.id == run.id)
            .values(divergence=seq, version=Run.version + 1, updated_at=now)
        )

    def set_state(self, run: RunRecord, state: RunState, now: datetime) -> None:
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

    def metric_counts(self, run_id: int, start: int, stop: int) -> dict[str, int]:
        """How many counted posts each metric has at steps in [start, stop)."""
        rows = self.session.execute(
            select(Metric.name, func.count())
            .where(*_counted(run_id, start, stop))
            .group_by(Metric.name)
            .order_by(Metric.name)
        ).all()
        return {row[0]: row[1] for row in rows}

    def metric_series(
        self, run_id: int, name: str, start: int, stop: int, every: int
    ) -> tuple[list[int], list[float]]:
        """(steps, values) of every `every`-th counted post of `name` at steps in [start, stop)."""
        numbered = (
            select(Metric.step, Metric.value, func.row_number().over(order_by=Metric.step).label("n"))
            .where(*_counted(run_id, start, stop), Metric.name == name)
            .subquery()
        )
        rows = self.session.execute(
            select(numbered.c.step, numbered.c.value)
            .where((numbered.c.n - 1) % every == 0)
            .order_by(numbered.c.step)
        ).all()
        return [row[0] for row in rows], [row[1] for row in rows]

    def metric(self, run_id: int, name: str, step: int) -> tuple[float, dict[str, Any]] | None:
        """The (value, answer) of the metric that counts at `step`, if one was posted."""
        row = self.session.execute(
            select(Metric.value, Metric.answer).where(
                Metric.run_id == run_id,
                Metric.name == name,
                Metric.step == step,
                Metric.discarded_in.is_(None),
            )
        ).one_or_none()
        return None if row is None else (row[0], row[1])

    def add_metric(
        self,
        run: RunRecord,
        name: str,
        step: int,
        value: float,
        answer: dict[str, Any],
        now: datetime,
        plateau: dict[str, Any] | None = None,
    ) -> None:
        """Record a post; `plateau` is the plateau state after it, where the plateau watches it."""
        self.session.add(
            Metric(
                run_id=run.id,
                name=name,
                step=step,
                value=value,
                answer=answer,
                created_at=now,
                attempt=run.attempt,
                plateau=plateau,
            )
        )

    def plateau_after(self, run_id: int, name: str, step: int) -> tuple[int, dict[str, Any] | None] | None:
        """(step, plateau state after it) of the last counted post of `name` at or below `step`."""
        row = self.session.execute(
            select(Metric.step, Metric.plateau)
            .where(
                Metric.run_id == run_id,
                Metric.name == name,
                Metric.step <= step,
                Metric.discarded_in.is_(None),
            )
            .order_by(Metric.step.desc())
            .limit(1)
        ).one_or_none()
        return None if row is None else (row[0], row[1])

    def discard_above(self, run_id: int, step: int, attempt: int) -> tuple[list[int], int]:
        """Mark the changes decided above `step`, and the metrics posted above it, as discarded
        by `attempt`: (the seqs of those changes, the number of those metrics)."""
        seqs = list(
            self.session.scalars(
                update(Change)
                .where(Change.run_id == run_id, Change.discarded_in.is_(None), Change.decided_at > step)
                .values(discarded_in=attempt)
                .returning(Change.seq)
            )
        )
        metrics = self.session.scalars(
            update(Metric)
            .where(Metric.run_id == run_id, Metric.discarded_in.is_(None), Metric.step > step)
            .values(discarded_in=attempt)
            .returning(Metric.id)
        ).all()
        return sorted(seqs), len(metrics)

    def start_attempt(self, run: RunRecord, step: int, actor: str, reason: str, now: datetime) -> int:
        """Start the run's next attempt at `step`, its new mark: the attempt's number."""
        number = run.attempt + 1
        self.session.add(
            Attempt(
                run_id=run.id,
                number=number,
                rewound_to=step,
                discarded_to=run.high_water,
                actor=actor,
                reason=reason,
                started_at=now,
            )
        )
        self.session.execute(
            update(Run)
            .where(Run.id == run.id)
            .values(attempt=number, high_water=step, version=Run.version + 1, updated_at=now)
        )
        return number

    def delete_plateau_state(self, run_id: int) -> None:
        self.session.execute(delete(PlateauState).where(PlateauState.run_id == run_id))

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

    def save_plateau_state(self, run_id: int, state: PlateauRecord) -> None:
        self.session.merge(PlateauState(run_id=run_id, **asdict(state)))

    def events(
        self, run_id: int, after: int = 0, limit: int | None = None, *, written_order: bool = False
    ) -> list[StoredEvent]:
        """The run's events after seq `after`, by seq; or, `written_order`, in the order they were
        appended (ids grow with every append, which holds the run's lock), which a tampered seq
        does not change. See `read_trail`."""
        return read_trail(self.session, Event, after, limit, written_order, Event.run_id == run_id)


# -- tokens -----------------------------------------------------------------------------------


# -- hash-chained trails: a run's events, the admin trail ------------------------------------------

Trail = type[Event] | type[AdminEvent]
"""A table of hash-chained events: a run's (`events`, one chain per run) or the admin trail."""


def append_to_trail(
    session: Session, table: Trail, trail: str, record: EventRecord, **keys: Any
) -> EventRecord:
    """Append `record` to the trail named `trail` (a run's name, or `ADMIN_TRAIL`), numbered and
    chained after its last event; `keys` select the chain in `table` (a run's id). The caller
    holds what serializes appends to it (the run's lock; the admin trail's)."""
    where = [getattr(table, key) == value for key, value in keys.items()]
    last = session.execute(
        select(table.seq, table.hash).where(*where).order_by(table.seq.desc()).limit(1)
    ).one_or_none()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, audit.GENESIS)
    record = replace(record, seq=seq, prev_hash=prev_hash)
    record = replace(record, hash=audit.chain_hash(prev_hash, audit.event_payload(trail, record)))
    session.add(table(**keys, **asdict(record)))
    return record


def read_trail(
    session: Session,
    table: Trail,
    after: int,
    limit: int | None,
    written_order: bool,
    *where: ColumnElement[bool],
) -> list[StoredEvent]:
    """A trail's events after seq `after`, by seq, or in the order they were written.

    Every value is read as the database holds it and checked in Python, so that a row edited
    behind the service's back, whatever was written into it, is shown as damaged rather than
    failing the read. SQLite keeps any value in any column: each is read as its storage class
    and its bytes. PostgreSQL keeps every column's type, but a json column takes any JSON: it
    is read as text.
    """
    columns = [getattr(table, name) for name in _EVENT_READERS]
    sqlite = _is_sqlite(session)
    selected: list[ColumnElement[Any]]
    if sqlite:
        selected = [part for column in columns for part in (func.typeof(column), cast(column, LargeBinary))]
    else:
        selected = [cast(column, Text) if column.key in _JSON_COLUMNS else column for column in columns]
    query = (
        select(*selected).where(*where, table.seq > after).order_by(table.id if written_order else table.seq)
    )
    if limit is not None:
        query = query.limit(limit)
    found = []
    for row in session.execute(query):
        stored = [_as_stored(row[2 * i], row[2 * i + 1]) for i in range(len(columns))] if sqlite else row
        found.append(_read_event(stored))
    return found


# -- reading events back, whatever the database holds -------------------------------------------


class _Unreadable(ValueError):
    """A stored value that is not a value of its field's type."""


def _as_stored(storage_class: str, data: bytes | None) -> object:
    """A value as SQLite holds it, whatever its column's declared type: an int, a str or None;
    anything else (a real, a blob, text that is not UTF-8) as its bytes, which no field takes."""
    if data is None:
        return None
    if storage_class == "integer":
        return int(data)
    if storage_class == "text":
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data
    return data


def _integer(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _Unreadable


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    raise _Unreadable


def _moment(value: object) -> datetime:
    """A timestamp: PostgreSQL's, in the session's time zone, or the text SQLAlchemy wrote into
    SQLite, in UTC. Always in UTC, as it was hashed."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        raise _Unreadable
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _refuse_constant(name: str) -> float:
    raise _Unreadable(name)  # NaN and Infinity: JSON has none, and the hash cannot take them


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Unreadable(text)
    return number


_MAX_NESTING = 128
"""Deeper than anything the service writes (a spec nests at most 64 containers deep), and well
within what the answer's JSON encoder takes (about 250)."""


def _json(value: object) -> Any:
    if not isinstance(value, str):
        raise _Unreadable
    decoded = json.loads(value, parse_constant=_refuse_constant, parse_float=_finite)
    stack = [(decoded, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > _MAX_NESTING:
                raise _Unreadable
            stack.extend((inner, depth + 1) for inner in (item.values() if isinstance(item, dict) else item))
    return decoded


def _lrs(value: object) -> list[float] | None:
    decoded = _json(value) if value is not None else None
    if decoded is None or (isinstance(decoded, list) and all(map(_is_lr, decoded))):
        return decoded
    raise _Unreadable


def _is_lr(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _object(value: object) -> dict[str, Any]:
    decoded = _json(value)
    if isinstance(decoded, dict):
        return decoded
    raise _Unreadable


def _nullable(read: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda value: None if value is None else read(value)


_EVENT_READERS: dict[str, Callable[[object], Any]] = {
    "seq": _integer,
    "at": _moment,
    "actor": _text,
    "kind": _text,
    "effective_step": _nullable(_integer),
    "lr_before": _lrs,
    "lr_after": _lrs,
    "reason": _nullable(_text),
    "details": _object,
    "prev_hash": _text,
    "hash": _text,
}
"""How each field of an event is read back, in the order they are selected."""
_JSON_COLUMNS = ("lr_before", "lr_after", "details")


def _read_event(stored: Sequence[object]) -> StoredEvent:
    values: dict[str, Any] = {}
    damaged = []
    for (name, read), value in zip(_EVENT_READERS.items(), stored, strict=True):
        try:
            values[name] = read(value)
        except (ValueError, TypeError, OverflowError, RecursionError):
            # Whatever the value is, it is not what the service wrote: show the event, say so.
            values[name] = None
            damaged.append(name)
    return StoredEvent(**values, damaged=tuple(damaged))


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _counted(run_id: int, start: int, stop: int) -> tuple[ColumnElement[bool], ...]:
    """The posts of a run that count (no rewind discarded them) at steps in [start, stop)."""
    return (Metric.run_id == run_id, Metric.discarded_in.is_(None), Metric.step >= start, Metric.step < stop)
