"""How the client commands print: aligned tables for people, JSON for programs.

Everything printed for people goes through `echo`, which escapes control characters: text from
the server (a reason, a label, a name) must not move the cursor, colour the terminal, or start a
new line that looks like a row of the table (a reason holding `\n3  2026-12-02  alice  ...`).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

import click


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
"""C0, DEL and C1 (which holds CSI, the 8-bit escape sequence start), written as `\\xNN`."""


def escaped(text: str) -> str:
    return text.translate(_CONTROLS)


def echo(line: str) -> None:
    """Print one line for people, its control characters escaped."""
    click.echo(escaped(line))


def echo_json(value: Any) -> None:
    click.echo(json.dumps(_plain(value), indent=2))


def table(header: list[str], rows: list[list[Any]]) -> None:
    """Columns padded to their widest cell; the last one is left ragged."""
    cells = [header, *([escaped(str(cell)) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*padded, row[-1]]).rstrip())  # escaped above
