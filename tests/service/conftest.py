from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from lrtower_server.api.app import create_app
from lrtower_server.core.auth import Tokens
from lrtower_server.core.config import Settings
from lrtower_server.db.engine import make_engine


@pytest.fixture
def settings(database_url: str) -> Settings:
    """A migrated database of its own for every test, on each backend."""
    return Settings(database_url=database_url, auth="off", allowed_hosts=["testserver"])  # TestClient's


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def secured(database_url: str) -> Iterator[tuple[TestClient, Tokens]]:
    """An app that requires tokens, and the tokens' store to make them with."""
    settings = Settings(database_url=database_url, auth="required")
    engine = make_engine(settings)
    with TestClient(create_app(settings)) as client:
        yield client, Tokens(engine)
    engine.dispose()
