"""Real `lrtower serve` processes for end-to-end tests."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass


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
