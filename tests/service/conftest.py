from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lrtower_server import migrate
from lrtower_server.app import create_app
from lrtower_server.config import Settings
from lrtower_server.db import make_engine


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A migrated SQLite file of its own for every test."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'lrtower.db'}", auth="off")
    engine = make_engine(settings)
    migrate.upgrade(engine)
    engine.dispose()
    return settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client
