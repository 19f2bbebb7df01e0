"""Compare engine answers with a reference, and keep the error figures per family.

A point passes when it is within REL_TOL relative of the reference, or within FLOOR of the
sequence's peak: the references' own rounding leaves values that are exactly 0 at +-1e-17.
Two figures are kept: the largest relative error among points above 1% of the peak, and the
largest absolute error as a fraction of the peak, over all points. Both are printed at the
end of the run (see conftest.py), so every run shows how close each family came.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

REL_TOL = 1e-12
FLOOR = 1e-14


@dataclass
class Tally:
    cases: int = 0
    points: int = 0
    max_rel: float = 0.0
    max_abs_of_peak: float = 0.0


TALLIES: dict[str, Tally] = {}


def assert_close(
    family: str,
    expected: Sequence[Sequence[float]],
    actual: Sequence[Sequence[float]],
    context: object,
    floor: float = FLOOR,
) -> None:
    """Assert every value matches, and record the figures."""
    tally = TALLIES.setdefault(family, Tally())
    tally.cases += 1
    assert len(expected) == len(actual), context
    peak = max((abs(v) for row in expected for v in row), default=0.0)
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert len(want) == len(got), (context, i, want, got)
        for w, g in zip(want, got, strict=True):
            diff = abs(w - g)
            size = max(abs(w), abs(g))
            tally.points += 1
            if peak > 0:
                tally.max_abs_of_peak = max(tally.max_abs_of_peak, diff / peak)
            if size >= 0.01 * peak and size > 0:
                tally.max_rel = max(tally.max_rel, diff / size)
            assert diff <= REL_TOL * size or diff <= floor * peak, (
                f"{context}: point {i}: expected {w!r}, got {g!r} (rel {diff / size:.3g})"
            )


def rel_error(expected: float, actual: float) -> float:
    """|expected - actual| relative to the larger of the two (0 when both are 0)."""
    diff = abs(expected - actual)
    return diff / max(abs(expected), abs(actual)) if diff else 0.0
