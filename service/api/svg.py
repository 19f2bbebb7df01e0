"""A run's LR curve as inline SVG, drawn by the service for the console (no JavaScript, no
plotting library): the planned curve of every param group, the served steps shaded up to the
high-water mark, and a marker at each schedule change, scale and plateau reduction whose
`<title>` (shown on hover) says what it was, who made it and why.

Any finite value can be drawn, up to the largest float, in linear and log mode: the arithmetic
below is arranged so that it never overflows, and values it cannot place (inf, nan, or zero and
below on a log scale) are left out rather than turned into coordinates.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

WIDTH, HEIGHT = 900, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 28
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
MARKS = {
    "schedule_changed": "#222",
    "scaled": "#8b4513",
    "plateau_reduced": "#b00020",
    "rewound": "#6a3d9a",
    "forked": "#008080",
}
DISCARDED = "#999"


@dataclass(frozen=True)
class Marker:
    seq: int
    kind: str
    step: int
    title: str


@dataclass(frozen=True)
class Discarded:
    """What an earlier attempt served above the step a rewind went back to: drawn greyed out."""

    attempt: int
    steps: list[int]
    lrs: list[list[float]]


def curve_svg(
    steps: list[int],
    lrs: list[list[float]],
    high_water: int,
    markers: list[Marker],
    log: bool = False,
    width: int = WIDTH,
    height: int = HEIGHT,
    discarded: tuple[Discarded, ...] = (),
) -> str:
    """`lrs[i]` holds every group's LR at `steps[i]`; `discarded`, the tails earlier attempts
    served and rewinds discarded, drawn greyed out under the current attempt's curve. Returns
    an `<svg>` element."""
    if not steps:
        return f'<svg class="curve" width="{width}" height="{height}" role="img"><text x="8" y="20">no steps</text></svg>'
    values = [_axis_value(v, log) for row in lrs for v in row]
    values += [_axis_value(v, log) for tail in discarded for row in tail.lrs for v in row]
    low, high = _bounds([v for v in values if v is not None])
    first, last = steps[0], max(steps[-1], steps[0] + 1)
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def x(step: float) -> float:
        return LEFT + (step - first) / (last - first) * plot_w

    def y(value: float) -> float:
        return TOP + (1 - _fraction(value, low, high)) * plot_h

    parts = [
        f'<svg class="curve" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="LR curve" data-log="{str(log).lower()}">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#ccc"/>',
    ]
    if high_water >= first:
        right = x(min(high_water, last))
        parts.append(
            f'<rect id="served" x="{LEFT}" y="{TOP}" width="{right - LEFT:.1f}" height="{plot_h}" '
            f'fill="#888" fill-opacity="0.15"><title>served up to step {high_water}</title></rect>'
        )
    if not any(v is not None for v in values):
        note = "no positive LR to draw on a log scale" if log else "no finite LR to draw"
        parts.append(
            f'<text class="note" x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" font-size="13" '
            f'text-anchor="middle" fill="#777">{note}</text>'
        )
    for tail in discarded:
        for g in range(len(tail.lrs[0]) if tail.lrs else 0):
            tail_points = [(s, _axis_value(row[g], log)) for s, row in zip(tail.steps, tail.lrs, strict=True)]
            points = " ".join(
                f"{x(s):.1f},{y(v):.1f}" for s, v in tail_points if v is not None and first <= s <= last
            )
            parts.append(
                f'<polyline id="discarded-{tail.attempt}-{g}" class="discarded" fill="none" stroke="{DISCARDED}" '
                f'stroke-width="1.4" stroke-dasharray="2 2" points="{points}"><title>attempt {tail.attempt}, '
                f"discarded by a rewind (steps {tail.steps[0]} to {tail.steps[-1]})</title></polyline>"
            )
    for g in range(len(lrs[0])):
        placed = ((s, _axis_value(row[g], log)) for s, row in zip(steps, lrs, strict=True))
        points = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in placed if v is not None)
        color = COLORS[g % len(COLORS)]
        parts.append(
            f'<polyline id="curve-{g}" fill="none" stroke="{color}" stroke-width="1.6" points="{points}"/>'
        )
    for marker in markers:
        if not first <= marker.step <= last:
            continue
        mx = x(marker.step)
        color = MARKS.get(marker.kind, "#444")
        parts.append(
            f'<line id="change-{marker.seq}" class="marker {marker.kind}" data-step="{marker.step}" '
            f'x1="{mx:.1f}" x2="{mx:.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="{color}" '
            f'stroke-width="2" stroke-dasharray="4 3"><title>{escape(marker.title)}</title></line>'
        )
    for fraction in (0, 0.5, 1):  # axis labels: first, middle and last step; low and high LR
        step = first + (last - first) * fraction
        parts.append(
            f'<text x="{x(step):.1f}" y="{height - 8}" font-size="11" text-anchor="middle">{int(step)}</text>'
        )
    for value, label_y in ((high, TOP + 10), (low, TOP + plot_h)):
        text = _power_of_ten(value) if log else f"{value:.3g}"
        parts.append(
            f'<text x="{LEFT - 6}" y="{label_y}" font-size="11" text-anchor="end">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def sparkline(values: list[float], caption: str, title: str, width: int = 190, height: int = 24) -> str:
    """A small line of the LR over a run's planned steps, with `caption` (the LR at the mark)
    written beside it: a standalone SVG document, served as an image for the runs list."""
    line_w = width - 70  # the rest holds the caption
    placed = [_axis_value(v, False) for v in values]
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


def _axis_value(lr: float, log: bool) -> float | None:
    """Where `lr` sits on the value axis: itself, or its log10 on a log scale; None if it cannot
    be placed there."""
    if not math.isfinite(lr) or (log and lr <= 0):
        return None
    return math.log10(lr) if log else lr


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


def _power_of_ten(exponent: float) -> str:
    """10**exponent as text, also where the float itself would overflow or vanish."""
    if -300 < exponent < 300:
        return f"{10**exponent:.3g}"
    whole = math.floor(exponent)
    mantissa = float(f"{10 ** (exponent - whole):.3g}")
    if mantissa >= 10:  # rounded up to the next power
        mantissa, whole = 1.0, whole + 1
    return f"{mantissa:g}e{whole:+d}"
