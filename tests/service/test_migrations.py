"""Migrations on a real SQLite file: up to head, down to base, up again; and the engine's pragmas."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from lrtower_server import migrate
from lrtower_server.config import Settings
from lrtower_server.db import make_engine
from lrtower_server.models import Base

TABLES = {"runs", "changes", "plateau_states", "metrics", "events", "tokens"}


def test_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'lrtower.db'}"))
    assert migrate.current(engine) is None
    assert not migrate.is_at_head(engine)

    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES

    migrate.downgrade(engine, "base")
    assert migrate.current(engine) is None
    assert not TABLES & set(inspect(engine).get_table_names())

    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)


def test_migrations_match_the_models(tmp_path: Path) -> None:
    """The migrated schema has every column of every model: nothing was left out of a migration."""
    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'lrtower.db'}"))
    migrate.upgrade(engine)
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'lrtower.db'}"))
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_the_app_refuses_a_database_not_at_head(tmp_path: Path) -> None:
    import pytest
    from fastapi.testclient import TestClient

    from lrtower_server.app import SchemaNotAtHead, create_app

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'old.db'}", auth="off")
    with pytest.raises(SchemaNotAtHead, match="lrtower db upgrade"), TestClient(create_app(settings)):
        pass
