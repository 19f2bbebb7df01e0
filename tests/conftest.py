from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings

from parity import TALLIES
from servers import Server, free_port

# CI replays the same examples every run, so that a landing is never decided by a new draw;
# local runs explore afresh (and remember what failed).
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
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


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start `lrtower serve` on one SQLite file, as often as a test needs (for restarts)."""
    started: list[Server] = []
    database = f"sqlite:///{tmp_path / 'lrtower.db'}"

    def start(*args: str) -> Server:
        port = free_port()
        env = {**os.environ, "LRTOWER_DATABASE_URL": database}
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "lrtower"), "serve", "--port", str(port), *args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = Server(f"http://127.0.0.1:{port}", process)
        started.append(server)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{server.url}/readyz").status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.05)

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.terminate()
            server.process.wait(timeout=10)


@pytest.fixture
def server(start_server: Callable[..., Server]) -> str:
    return start_server().url
