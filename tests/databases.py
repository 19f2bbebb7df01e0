"""The databases the tests run on: a SQLite file, or a schema of its own in the PostgreSQL test
database named by $LRTOWER_TEST_POSTGRES_URL (CI creates a fresh one per run)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lrtower_server import migrate
from lrtower_server.config import Settings
from lrtower_server.db import make_engine

BACKENDS = ["sqlite", "postgresql"]
POSTGRES_URL = os.environ.get("LRTOWER_TEST_POSTGRES_URL")


@contextmanager
def database(backend: str, home: Path, migrated: bool = True) -> Iterator[str]:
    """A fresh, empty database URL (migrated to head unless told not to), removed afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{home / 'lrtower.db'}"
        _migrate(url, migrated)
        yield url
        return
    if POSTGRES_URL is None:
        reason = "PostgreSQL tests need LRTOWER_TEST_POSTGRES_URL (a database they may create schemas in)"
        if os.environ.get("LRTOWER_TEST_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRES_URL, pool_pre_ping=True)  # a test may kill its connections
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    base = make_url(POSTGRES_URL)
    # Every connection of this test (and of the servers it starts) works in its own schema.
    url = base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    try:
        _migrate(url, migrated)
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _migrate(url: str, migrated: bool) -> None:
    if migrated:
        engine = make_engine(Settings(database_url=url))
        migrate.upgrade(engine)
        engine.dispose()
