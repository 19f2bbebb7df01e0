"""Real `lrtower serve` processes for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


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

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def launch(
    home: Path,
    database_url: str,
    *args: str,
    port: int | None = None,
    log: Path | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    """Start `lrtower serve` in `home` on `database_url` (and `env`, settings of its own), and
    wait until it is ready. Its log lines (stderr) go to `log` if given."""
    port = port or free_port()
    env = {**os.environ, **(env or {}), "LRTOWER_DATABASE_URL": database_url}
    with open(log or os.devnull, "wb") as stderr:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "lrtower"), "serve", "--port", str(port), *args],
            env=env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    server = Server(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{server.url}/readyz").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the server did not become ready (exit code {process.poll()})")
        time.sleep(0.05)
