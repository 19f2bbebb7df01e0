"""A run's LR curve as inline SVG, drawn by the service for the console (no JavaScript, no
plotting library): the planned curve of every param group, the served steps shaded up to the
high-water mark, and a marker at each schedule change, scale and plateau reduction whose
`<title>` (shown on hover) says what it was, who made it and why."""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

WIDTH, HEIGHT = 900, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 28
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
MARKS = {"schedule_changed": "#222", "scaled": "#8b4513", "plateau_reduced": "#b00020"}


@dataclass(frozen=True)
class Marker:
    seq: int
    kind: str
    step: int
    title: str


def curve_svg(
    steps: list[int],
    lrs: list[list[float]],
    high_water: int,
    markers: list[Marker],
    log: bool = False,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """`lrs[i]` holds every group's LR at `steps[i]`. Returns an `<svg>` element."""
    if not steps:
        return f'<svg class="curve" width="{width}" height="{height}" role="img"><text x="8" y="20">no steps</text></svg>'
    values = [v for row in lrs for v in row if not log or v > 0]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if log:
        low, high = math.log10(low), math.log10(high)
    if high <= low:
        low, high = low - 1e-12 - abs(low) * 0.05, high + 1e-12 + abs(high) * 0.05
    first, last = steps[0], max(steps[-1], steps[0] + 1)
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def x(step: float) -> float:
        return LEFT + (step - first) / (last - first) * plot_w

    def y(lr: float) -> float:
        value = math.log10(lr) if log else lr
        return TOP + (1 - (value - low) / (high - low)) * plot_h

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
    for g in range(len(lrs[0])):
        points = " ".join(
            f"{x(s):.1f},{y(row[g]):.1f}" for s, row in zip(steps, lrs, strict=True) if not log or row[g] > 0
        )
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
        text = f"{10**value:.3g}" if log else f"{value:.3g}"
        parts.append(
            f'<text x="{LEFT - 6}" y="{label_y}" font-size="11" text-anchor="end">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def sparkline(values: list[float], width: int = 120, height: int = 24) -> str:
    """A small line of the LR over a run's planned steps, for the runs list."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    points = " ".join(
        f"{i / (len(values) - 1) * width:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}"
        for i, v in enumerate(values)
    )
    return (
        f'<svg class="sparkline" width="{width}" height="{height}" aria-hidden="true">'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.2" points={quoteattr(points)}/></svg>'
    )
