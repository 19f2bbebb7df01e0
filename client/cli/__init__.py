"""The `lrtower` command: client commands (runs, lr, events, verify, plot) and the server's
commands (serve, db, token), which load only when run."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .commands import lrtower
    except ModuleNotFoundError as exc:
        if exc.name not in ("click", "yaml"):
            raise
        sys.exit(f"the lrtower command needs {exc.name}: pip install 'lrtower[cli]'")
    lrtower()
