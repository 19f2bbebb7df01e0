from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """A real `lrtower serve` process."""

    url: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no shutdown, no flush
        self.process.wait(timeout=10)


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
