"""`lrtower plot`: a run's LR curve (or a spec's) as a PNG, SVG or PDF.

A run's plot shows its planned curve, the steps already served (shaded up to the high-water
mark), and a marker at each schedule change, scale and plateau reduction, labelled with its
reason. The figure's parts carry SVG ids (`curve-0`, `served`, `change-<seq>`) for tools that
read the SVG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .. import Client
from ..results import Event
from .options import connect, connection, load_definition

MARKED = {"schedule_changed": "schedule", "scaled": "scale", "plateau_reduced": "plateau"}
# Apart from the groups' colours (matplotlib's cycle), and told apart by line style too.
STYLES = {"schedule": ("black", "--"), "scale": ("saddlebrown", "-."), "plateau": ("darkred", ":")}
FORMATS = (".png", ".svg", ".pdf")


@dataclass(frozen=True)
class Marker:
    seq: int
    kind: str
    step: int
    label: str


@dataclass(frozen=True)
class Curve:
    """What a plot shows: the LR of every group at `steps`, what was served, and the changes."""

    title: str
    steps: list[int]
    lrs: list[list[float]]
    """lrs[g][i]: group g's LR at steps[i]."""
    high_water: int = -1
    markers: list[Marker] = field(default_factory=list)


def stride_for(start: int, stop: int, points: int) -> int:
    return max(1, math.ceil((stop - start) / points))


def run_curve(client: Client, run: str, start: int, stop: int | None, points: int) -> Curve:
    """A run's planned curve over [start, stop) in at most `points` points, with its changes."""
    found = client.get_run(run)
    events = _all_events(client, run)
    markers = [  # a damaged event (a None field) has nothing trustworthy to mark
        Marker(e.seq, MARKED[e.kind], e.effective_step, _label(e.kind, e))
        for e in events
        if e.seq is not None and e.kind in MARKED and e.effective_step is not None and not e.damaged
    ]
    if stop is None and found.total_steps is not None:
        # The planned run, and the steps served past it if the job ran longer.
        stop = max(found.total_steps, found.high_water + 1)
        stop = stop if stop > start else None
    if stop is None:
        last = max([found.high_water, *(m.step for m in markers)], default=0)
        stop = max(start + 10, 1000, math.ceil(last * 1.25))
    answer = client.curve(run, start, stop, stride_for(start, stop, points))
    by_group = [list(column) for column in zip(*answer.lrs, strict=True)]
    return Curve(run, answer.steps, by_group, found.high_water, markers)


def _all_events(client: Client, run: str) -> list[Event]:
    events: list[Event] = []
    after = 0
    while True:
        page = client.events(run, after=after, limit=1000)
        events += page.events
        # A damaged event may have lost its seq: page on from the highest one that was read.
        last = max((e.seq for e in page.events if e.seq is not None), default=None)
        if last is None or last <= after:
            return events
        after = last


def _label(kind: str, event: Event) -> str:
    what = MARKED[kind]
    if kind == "scaled":
        what = f"x{(event.details or {}).get('factor', '?')}"
    return f"{what} @ {event.effective_step}" + (f": {event.reason}" if event.reason else "")


def spec_curve(definition: dict[str, Any], lr: float | None, start: int, stop: int, points: int) -> Curve:
    """A schedule spec's curve, computed here by lrtower's engine: no server needed.

    `definition` is a schedule spec, or a run definition holding one (with its `lr` or `lrs`).
    """
    try:
        from lrtower_server.schedules import DomainError, SpecError, build_schedule
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"plotting a spec runs lrtower's schedule engine, which needs {exc.name!r}: "
            "pip install 'lrtower[server]' (or plot a run on a server)"
        ) from None
    spec = definition.get("schedule", definition)
    lrs = [lr] if lr is not None else definition.get("lrs") or _listed(definition.get("lr"))
    try:
        schedule = build_schedule(spec, lrs)
    except SpecError as exc:
        raise click.ClickException(f"invalid spec: {exc}" + ("" if lrs else " (pass --lr)")) from None
    steps, values = [], []
    for step in range(start, stop, stride_for(start, stop, points)):
        try:
            values.append(schedule.at(step)[0])
        except DomainError:
            break  # the schedule ends here (OneCycleLR past total_steps)
        steps.append(step)
    by_group = [list(column) for column in zip(*values, strict=True)] if values else []
    return Curve(str(definition.get("name", spec.get("type", "schedule"))), steps, by_group)


def _listed(lr: Any) -> list[float] | None:
    return None if lr is None else [lr]


def render(curve: Curve, path: Path, log: bool = False) -> None:
    """Draw `curve` into `path`; its suffix picks the format."""
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        raise click.ClickException("plotting needs matplotlib: pip install 'lrtower[plot]'") from None
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    axes = figure.subplots()
    for g, lrs in enumerate(curve.lrs):
        label = f"group {g}" if len(curve.lrs) > 1 else "planned LR"
        (line,) = axes.plot(curve.steps, lrs, drawstyle="steps-post", label=label, linewidth=1.4)
        line.set_gid(f"curve-{g}")
    if curve.high_water >= 0 and curve.steps:
        served = axes.axvspan(
            curve.steps[0],
            min(curve.high_water, curve.steps[-1]),
            color="0.5",
            alpha=0.15,
            label=f"served (to step {curve.high_water})",
        )
        served.set_gid("served")
    labelled: set[str] = set()
    for marker in curve.markers:
        color, style = STYLES[marker.kind]
        line = axes.axvline(
            marker.step,
            color=color,
            linestyle=style,
            linewidth=1.2,
            label=None if marker.kind in labelled else marker.kind,
        )
        labelled.add(marker.kind)
        line.set_gid(f"change-{marker.seq}")
        axes.annotate(
            marker.label,
            (marker.step, 1),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
            color=color,
        )
    if log:
        axes.set_yscale("log")
    axes.set(title=curve.title, xlabel="step", ylabel="learning rate")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.savefig(path, dpi=120)


@click.command()
@click.argument("run", required=False)
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Plot this spec (JSON or YAML; a schedule or a run definition) instead of a run.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The image: .png, .svg or .pdf.",
)
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--stop",
    type=click.IntRange(min=1),
    help="Default: the run's total_steps if it has one, else past its changes, at least 1000.",
)
@click.option(
    "--points",
    type=click.IntRange(2, 100_000),
    default=2000,
    show_default=True,
    help="How many steps to sample.",
)
@click.option("--lr", type=click.FloatRange(min=0), help="The base LR of a spec that has none.")
@click.option("--log", is_flag=True, help="A logarithmic LR axis.")
@connection
@click.pass_context
def plot(
    ctx: click.Context,
    run: str | None,
    path: Path | None,
    output: Path,
    start: int,
    stop: int | None,
    points: int,
    lr: float | None,
    log: bool,
) -> None:
    """Plot the LR curve of RUN, or of a spec given with -f, into an image."""
    if (run is None) == (path is None):
        raise click.UsageError("give a RUN, or a spec with -f (not both)")
    if output.suffix.lower() not in FORMATS:
        raise click.BadParameter(f"{output.name}: use {', '.join(FORMATS)}", param_hint="-o")
    if stop is not None and stop <= start:
        raise click.BadParameter(f"must be above --start ({start})", param_hint="--stop")
    if path is not None:
        definition = load_definition(path)
        planned = definition.get("total_steps")  # a run definition's planned length
        default = planned if isinstance(planned, int) and planned > start else 1000
        curve = spec_curve(definition, lr, start, stop or default, points)
    else:
        assert run is not None
        curve = run_curve(connect(ctx), run, start, stop, points)
    render(curve, output, log)
    click.echo(f"wrote {output}")
