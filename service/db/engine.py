"""The database engine: SQLite in WAL mode with foreign keys and a busy timeout, or PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from ..core.config import Settings

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_BEGIN = "sqlite_begin"
"""Execution option: how SQLite transactions begin, DEFERRED (reads) or IMMEDIATE (writes)."""


def writer(engine: Engine) -> Engine:
    """The same engine, beginning transactions ready to write."""
    return engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})


def make_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        # pre_ping replaces connections the server dropped (a restart, a killed backend) before use;
        # a request that still finds the pool exhausted after pool_timeout gets a 503.
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=settings.pool_size,
            max_overflow=settings.pool_overflow,
            pool_timeout=10,
        )
    # The service decides when transactions begin (BEGIN IMMEDIATE for writes), not pysqlite.
    engine = create_engine(url, connect_args={"check_same_thread": False, "isolation_level": None})
    synchronous = settings.sqlite_synchronous

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # Writers take the write lock up front (IMMEDIATE): a deferred transaction that reads
        # then writes can fail with SQLITE_BUSY instead of waiting its turn.
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine
