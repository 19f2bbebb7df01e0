"""The tables: typed SQLAlchemy 2.0 models with named constraints.

ORM objects stay inside the store; everything above it works with plain values. Every schema
change is an alembic migration in `migrations/`, which works on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..core.vocabulary import CHANGE_KINDS, RUN_STATES, SCOPES, ChangeKind, RunState, Scope

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[float]: JSON,
        datetime: DateTime(timezone=True),
        float: Double,
    }


class Run(Base):
    """A named schedule for one training job, with its high-water mark and version."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(f"state IN {RUN_STATES}", name="state"),
        CheckConstraint("high_water >= -1", name="high_water"),
        CheckConstraint("attempt >= 1", name="attempt"),
        CheckConstraint("total_steps >= 1", name="total_steps"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    lrs: Mapped[list[float] | None]
    spec: Mapped[dict[str, Any]]
    plateau: Mapped[dict[str, Any] | None]
    labels: Mapped[dict[str, Any]]
    definition_hash: Mapped[str] = mapped_column(String(64))
    """sha256 of the canonical definition (lrs, spec, plateau, labels): creating the same run
    again is recognised by it."""
    state: Mapped[RunState] = mapped_column(String(16), default="live")
    version: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped by every change to what the run answers: a cached copy is current iff its
    version is."""
    high_water: Mapped[int] = mapped_column(BigInteger, default=-1)
    """The highest step served so far (-1: none). Changes take effect only above it."""
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """The attempt now served: each rewind starts a new one (SPEC §4.10)."""
    parent: Mapped[str | None] = mapped_column(String(128))
    """The run this one was forked from, at step `forked_at`, when the parent's audit chain
    ended in `parent_head`."""
    forked_at: Mapped[int | None] = mapped_column(BigInteger)
    parent_head: Mapped[str | None] = mapped_column(String(64))
    total_steps: Mapped[int | None] = mapped_column(BigInteger)
    divergence: Mapped[int | None] = mapped_column(Integer)
    """The seq of the latest `fallback` event that found a rank ran other LRs than the tower
    served (None: none): every `/lr` answer of the run names it (the lrtower-divergence header)."""
    """How many steps the job plans (steps 0 to total_steps - 1), if it said: where clients'
    lookahead windows, plots and the console stop. Steps past it are still answered."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Change(Base):
    """A change to what a run answers from `effective_step` on: a new schedule, a scale, or a
    plateau reduction (the new factor of every group); or, of kind `ran`, the LRs (and momentum)
    a job ran on steps `effective_step`..`to_step` while it could not reach the tower."""

    __tablename__ = "changes"
    __table_args__ = (
        UniqueConstraint("run_id", "seq"),
        CheckConstraint(f"kind IN {CHANGE_KINDS}", name="kind"),
        CheckConstraint("effective_step >= 0", name="effective_step"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="RESTRICT"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[ChangeKind] = mapped_column(String(16))
    effective_step: Mapped[int] = mapped_column(BigInteger)
    spec: Mapped[dict[str, Any] | None]
    restart: Mapped[bool] = mapped_column(Boolean, default=False)
    factor: Mapped[float | None]
    factors: Mapped[list[float] | None]
    to_step: Mapped[int | None] = mapped_column(BigInteger)
    lrs: Mapped[list[float] | None]
    momentum: Mapped[list[float] | None]
    created_at: Mapped[datetime]
    decided_at: Mapped[int] = mapped_column(BigInteger)
    """The last step its decision saw: the mark, for an operator's change; the metric's step,
    for a plateau reduction. A rewind to step k keeps the changes decided at or below k."""
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    discarded_in: Mapped[int | None] = mapped_column(Integer)
    """The attempt whose rewind discarded it (None: in force)."""


class Attempt(Base):
    """A rewind: the run's attempt `number` answers steps 0..`rewound_to` as before it, and
    discards what the attempt before it served above them (up to `discarded_to`)."""

    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("run_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="RESTRICT"))
    number: Mapped[int] = mapped_column(Integer)
    rewound_to: Mapped[int] = mapped_column(BigInteger)
    discarded_to: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime]


class PlateauState(Base):
    """ReduceLROnPlateau's whole state for a run (best is NULL while it is +-inf)."""

    __tablename__ = "plateau_states"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="RESTRICT"), primary_key=True)
    best: Mapped[float | None]
    num_bad_epochs: Mapped[int] = mapped_column(Integer)
    cooldown_counter: Mapped[int] = mapped_column(Integer)
    factors: Mapped[list[float]]
    reductions: Mapped[int] = mapped_column(Integer)
    last_step: Mapped[int] = mapped_column(BigInteger, default=-1)
    """The highest step a watched metric was posted for."""


class Metric(Base):
    """A posted metric, with the answer it got, so that posting it again replays that answer.

    One counts per (run, name, step); those a rewind discarded stay, marked, beside it."""

    __tablename__ = "metrics"
    __table_args__ = (
        Index(
            "uq_metrics_counted",
            "run_id",
            "name",
            "step",
            unique=True,
            sqlite_where=text("discarded_in IS NULL"),
            postgresql_where=text("discarded_in IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(128))
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float]
    answer: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    discarded_in: Mapped[int | None] = mapped_column(Integer)
    plateau: Mapped[dict[str, Any] | None]
    """The plateau state after this post, for a metric the plateau watches: a rewind restores it."""


class IdempotentWrite(Base):
    """A change made under an `Idempotency-Key`, with the answer it got: the same key again
    replays that answer instead of changing the run twice."""

    __tablename__ = "idempotent_writes"
    __table_args__ = (UniqueConstraint("run_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="RESTRICT"))
    key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    """sha256 of the endpoint and the canonical body: the same key with another body is refused."""
    answer: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class TrailEntry:
    """The columns of an entry of a hash-chained trail, a run's or the admin trail: one reader
    and one chain (`store.read_trail`, `store.append_to_trail`) serve both."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    effective_step: Mapped[int | None] = mapped_column(BigInteger)
    lr_before: Mapped[list[float] | None]
    lr_after: Mapped[list[float] | None]
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Event(TrailEntry, Base):
    """One entry of a run's append-only audit trail, chained by SHA-256."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("run_id", "seq"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="RESTRICT"))
    seq: Mapped[int] = mapped_column(Integer)


class Token(Base):
    """An API token: only its SHA-256 is stored; the secret is shown once, at creation."""

    __tablename__ = "tokens"
    __table_args__ = (CheckConstraint(f"scope IN {SCOPES}", name="scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    scope: Mapped[Scope] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    runs: Mapped[list[str] | None] = mapped_column(JSON)
    """The run-name patterns (globs) it reaches; None: every run."""
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    """Written at most once a minute per token, never once per request."""
    previous_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    """The secret a rotation replaced, accepted still until `previous_until`."""
    previous_until: Mapped[datetime | None]


class AdminEvent(TrailEntry, Base):
    """One entry of the global, append-only trail of token administration, chained by SHA-256 as
    a run's events are (the same columns, but the run)."""

    __tablename__ = "admin_events"

    seq: Mapped[int] = mapped_column(Integer, unique=True)
