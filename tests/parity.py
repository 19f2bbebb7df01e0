"""Compare engine answers with a reference, and keep the largest relative error per family.

The figures are printed at the end of the run (see conftest.py), so that every run shows how
close each family came to its reference, not only that it passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

REL_TOL = 1e-12


@dataclass
class Tally:
    cases: int = 0
    points: int = 0
    max_rel: float = 0.0


TALLIES: dict[str, Tally] = {}


def rel_error(expected: float, actual: float) -> float:
    if expected == actual:
        return 0.0
    scale = max(abs(expected), abs(actual))
    return abs(expected - actual) / scale if scale > 1e-300 else 0.0


def assert_close(
    family: str, expected: Sequence[Sequence[float]], actual: Sequence[Sequence[float]], context: object
) -> None:
    """Assert every value matches to REL_TOL relative, and record the figures."""
    tally = TALLIES.setdefault(family, Tally())
    tally.cases += 1
    assert len(expected) == len(actual), context
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert len(want) == len(got), (context, i, want, got)
        for w, g in zip(want, got, strict=True):
            err = rel_error(w, g)
            tally.points += 1
            tally.max_rel = max(tally.max_rel, err)
            assert err <= REL_TOL, f"{context}: point {i}: expected {w!r}, got {g!r} (rel {err:.3g})"
