"""Work measured without a clock: the lines of Python a call runs.

A test that bounds time fails on a busy machine and passes on a fast one; the number of lines
run is the same on every machine and every run, and grows exactly when the work does (a loop
over steps or over history where a closed form was meant)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any


def lines_run(call: Callable[[], object]) -> int:
    """How many lines of Python `call()` runs (its exceptions are its own to raise)."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        call()
    finally:
        sys.settrace(previous)
    return count
