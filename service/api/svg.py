"""A run's sparkline for the runs list: a small SVG image of its planned LR, drawn by the
service (one image per row, loaded as the row is shown; the charts are static/chart.js).

Any finite value can be drawn, up to the largest float: the arithmetic below is arranged so that
it never overflows, and values it cannot place (inf, nan) are left out rather than turned into
coordinates.
"""

from __future__ import annotations

import math
import sys
from xml.sax.saxutils import escape, quoteattr


def sparkline(values: list[float], caption: str, title: str, width: int = 190, height: int = 24) -> str:
    """A small line of the LR over a run's planned steps, with `caption` (the LR at the mark)
    written beside it: a standalone SVG document, served as an image for the runs list."""
    line_w = width - 70  # the rest holds the caption
    placed = [v if math.isfinite(v) else None for v in values]
    low, high = _bounds([v for v in placed if v is not None])
    points = " ".join(
        f"{i / max(len(values) - 1, 1) * line_w:.1f},{height - 2 - _fraction(v, low, high) * (height - 4):.1f}"
        for i, v in enumerate(placed)
        if v is not None
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sparkline" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img"><title>{escape(title)}</title>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.2" points={quoteattr(points)}/>'
        f'<text x="{width - 2}" y="{height / 2 + 4:.0f}" font-family="system-ui, sans-serif" font-size="12" '
        f'text-anchor="end">{escape(caption)}</text></svg>'
    )


def _bounds(values: list[float]) -> tuple[float, float]:
    """The value axis's (low, high) for finite `values`, widened a little when they are all equal
    (so a flat line sits mid-chart), and kept finite even around the largest float."""
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    if high <= low:
        pad = abs(low) * 0.05 or 1e-12
        low, high = max(low - pad, -sys.float_info.max), min(high + pad, sys.float_info.max)
    return low, high


def _fraction(value: float, low: float, high: float) -> float:
    """How far up the axis `value` (between `low` and `high`, which `_bounds` keeps apart) is,
    from 0 to 1."""
    span = high - low
    if math.isfinite(span):
        return (value - low) / span
    # Only beyond half the largest float: halving keeps these differences finite, and the
    # values are then far too large for halving to lose any of them.
    return (value / 2 - low / 2) / (high / 2 - low / 2)
