"""Migrations on a real SQLite file and a real PostgreSQL schema: up to head, down to base, up
again; and SQLite's pragmas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from databases import BACKENDS, database, replay_migration
from lrtower_server.core.config import Settings
from lrtower_server.db import migrate
from lrtower_server.db.engine import make_engine
from lrtower_server.db.models import Base

TABLES = {"runs", "changes", "plateau_states", "metrics", "events", "tokens", "idempotent_writes", "attempts"}


@pytest.fixture(params=BACKENDS)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request, tmp_path, migrated=False) as url:
        yield url


def test_upgrade_downgrade_upgrade(empty_database: str) -> None:
    engine = make_engine(Settings(database_url=empty_database))
    assert migrate.current(engine) is None
    assert not migrate.is_at_head(engine)

    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)
    engine.dispose()
    assert set(inspect(engine).get_table_names()) >= TABLES

    migrate.downgrade(engine, "base")
    assert migrate.current(engine) is None
    assert not TABLES & set(inspect(engine).get_table_names())

    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)
    engine.dispose()


def test_migrations_match_the_models(empty_database: str) -> None:
    """The migrated schema has every column of every model: nothing was left out of a migration."""
    engine = make_engine(Settings(database_url=empty_database))
    migrate.upgrade(engine)
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name
    engine.dispose()


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'lrtower.db'}"))
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_the_app_refuses_a_database_not_at_head(empty_database: str) -> None:
    from fastapi.testclient import TestClient

    from lrtower_server.api.app import SchemaNotAtHead, create_app

    settings = Settings(database_url=empty_database, auth="off")
    with pytest.raises(SchemaNotAtHead, match="lrtower db upgrade"), TestClient(create_app(settings)):
        pass


@pytest.fixture(params=BACKENDS)
def another_empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request, tmp_path / "another", migrated=False) as url:
        yield url


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
@pytest.mark.parametrize("another_empty_database", ["postgresql"], indirect=True)
def test_a_replayed_postgresql_schema_is_the_migrated_one(
    database_url: str, empty_database: str, another_empty_database: str
) -> None:
    """The tests' PostgreSQL schemas replay the statements of the session's first migration
    (databases.py; `database_url` made sure it ran): a replayed schema must hold what alembic
    makes, table by table, and be at head."""

    def shape(url: str) -> dict[str, object]:
        engine = make_engine(Settings(database_url=url))
        inspector = inspect(engine)
        found: dict[str, object] = {"head": migrate.is_at_head(engine)}
        for table in inspector.get_table_names():
            found[table] = (
                [
                    (c["name"], str(c["type"]), c["nullable"], c["default"])
                    for c in inspector.get_columns(table)
                ],
                sorted(
                    (i["name"], tuple(i["column_names"]), i["unique"]) for i in inspector.get_indexes(table)
                ),
                sorted(u["name"] for u in inspector.get_unique_constraints(table)),
                sorted(c["name"] for c in inspector.get_check_constraints(table)),
                sorted(f["name"] for f in inspector.get_foreign_keys(table)),
            )
        engine.dispose()
        return found

    engine = make_engine(Settings(database_url=another_empty_database))
    migrate.upgrade(engine)
    engine.dispose()
    replay_migration(empty_database)
    migrated, replayed = shape(another_empty_database), shape(empty_database)
    assert migrated == replayed and migrated["head"] is True and migrated.keys() >= TABLES
