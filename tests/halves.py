"""What ran of the suite's two optional halves (PostgreSQL, and the browser tests), and why not:
the fixtures that provide them record it here, and the end of the run prints it (conftest)."""

from __future__ import annotations

import os

import pytest

HALVES: dict[str, str] = {}


def unavailable(half: str, reason: str, required_by: str) -> None:
    """Skip the tests that need `half`, or fail them when the environment variable `required_by`
    is set (as CI sets it): a half CI expects must never pass as skipped."""
    HALVES[half] = f"skipped: {reason}"
    if os.environ.get(required_by):
        HALVES[half] = f"FAILED ({required_by} is set): {reason}"
        pytest.fail(f"{reason} ({required_by} is set)")
    pytest.skip(reason)
