from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from pytest_postgresql import factories

from databases import BACKENDS, PG_CTL, database
from halves import HALVES
from parity import TALLIES
from servers import Server, launch

# CI replays the same examples every run, so that a landing is never decided by a new draw;
# local runs explore afresh (and remember what failed).
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


throwaway_postgres = factories.postgresql_proc(executable=PG_CTL)
"""A cluster of the session's own, started only if a test asks for it (databases.py)."""

SERVERS = {"start_server", "server", "tower"}
"""The fixtures that start `lrtower serve` processes."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts a server process is `slow`, as are the modules that mark themselves
    (they start training jobs, replicas or a browser): `pytest -m "not slow"` is the fast lane."""
    for item in items:
        if SERVERS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.section("optional halves of the suite")
    for half in ("PostgreSQL", "browser"):
        terminalreporter.write_line(f"{half}: {HALVES.get(half, 'not asked for by the tests selected')}")
    if not TALLIES:
        return
    terminalreporter.section("parity with the reference libraries")
    terminalreporter.write_line(
        f"{'family':<36}{'cases':>7}{'points':>10}{'max rel err':>13}{'max abs/peak':>14}"
    )
    for family, t in sorted(TALLIES.items()):
        terminalreporter.write_line(
            f"{family:<36}{t.cases:>7}{t.points:>10}{t.max_rel:>13.3g}{t.max_abs_of_peak:>14.3g}"
        )


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each backend, migrated: every test that uses it runs on both."""
    with database(request, tmp_path) as url:
        yield url


@pytest.fixture
def start_server(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Server]]:
    """Start `lrtower serve` on the test's database, as often as a test needs (for restarts,
    and for several replicas)."""
    started: list[Server] = []

    def start(*args: str, port: int | None = None, env: dict[str, str] | None = None) -> Server:
        """`port`: the same one again, to restart a server where its clients expect it; `env`:
        settings of its own."""
        server = launch(tmp_path, database_url, *args, port=port, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., Server]) -> str:
    return start_server().url
