"""The `lrtower` command group and its client commands."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import Client, LrtowerError
from ..results import Change, Event, Run, ScheduleNow
from .options import as_json, connect, connection, load_definition
from .output import echo, echo_json, escaped, table
from .plot import plot

F = TypeVar("F", bound=Callable[..., Any])

# Commands of the server package, imported only when run: the client needs none of its dependencies.
SERVER_COMMANDS = {
    "serve": "Serve the API (needs lrtower[server]).",
    "db": "Database schema (needs lrtower[server]).",
    "token": "API tokens (needs lrtower[server]).",
}


class Lrtower(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *SERVER_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SERVER_COMMANDS:
            return super().get_command(ctx, name)
        try:
            command: click.Command = getattr(importlib.import_module("lrtower_server.cli"), name)
        except ModuleNotFoundError as exc:
            missing = exc.name

            @click.command(
                name, help=SERVER_COMMANDS[name], context_settings={"ignore_unknown_options": True}
            )
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                raise click.ClickException(
                    f"`lrtower {name}` runs the server, which is not installed (no module {missing!r}): "
                    "pip install 'lrtower[server]'"
                )

            return unavailable
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LrtowerError as exc:  # what the server said, without a traceback
            raise click.ClickException(escaped(str(exc))) from exc


@click.group(cls=Lrtower)
@click.version_option(package_name="lrtower")
def lrtower() -> None:
    """lrtower: a control tower for learning rates."""


@lrtower.group()
def runs() -> None:
    """Create, list, show and change runs."""


@runs.command("create")
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The run as JSON or YAML: name, lr or lrs, schedule, plateau, labels, total_steps.",
)
@click.option("--name", help="The run's name (overrides the file's).")
@click.option(
    "--total-steps",
    type=click.IntRange(min=1),
    help="How many steps the job plans (overrides the file's): lookahead, plots and the console stop there.",
)
@connection
@as_json
@click.pass_context
def runs_create(
    ctx: click.Context, path: Path, name: str | None, total_steps: int | None, as_json: bool
) -> None:
    """Create a run from a file. Creating it again with the same definition is a no-op."""
    body = load_definition(path)
    if name is not None:
        body["name"] = name
    if total_steps is not None:
        body["total_steps"] = total_steps
    if "name" not in body or "schedule" not in body:
        raise click.BadParameter(f"{path}: a run needs `name` and `schedule`", param_hint="-f")
    known = ("lr", "lrs", "plateau", "labels", "total_steps")
    unknown = sorted(set(body) - {"name", "schedule", *known})
    if unknown:
        raise click.BadParameter(f"{path}: unknown fields {', '.join(unknown)}", param_hint="-f")
    run = connect(ctx).create_run(body["name"], body["schedule"], **{k: body[k] for k in known if k in body})
    if as_json:
        echo_json(run)
    else:
        echo(f"run {run.name}: {run.state}, version {run.version}, high-water {run.high_water}")


@runs.command("list")
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="Keep runs with this label (repeatable)."
)
@click.option("--state", type=click.Choice(["live", "finished", "archived"]), help="Keep runs in this state.")
@connection
@as_json
@click.pass_context
def runs_list(ctx: click.Context, labels: tuple[str, ...], state: str | None, as_json: bool) -> None:
    """List runs by name."""
    wanted = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep:
            raise click.BadParameter(f"{label!r} is not KEY=VALUE", param_hint="--label")
        wanted[key] = value
    client, found, after = connect(ctx), [], None
    while True:
        page = client.list_runs(after=after, limit=1000, labels=wanted)
        found += [run for run in page.runs if state is None or run.state == state]
        if page.next_after is None:
            break
        after = page.next_after
    if as_json:
        echo_json(found)
        return
    table(
        ["NAME", "STATE", "SERVED", "VERSION", "LABELS"],
        [[r.name, r.state, r.high_water, r.version, _labels(r)] for r in found],
    )


def _labels(run: Run) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(run.labels.items()))


@runs.command("show")
@click.argument("run")
@connection
@as_json
@click.pass_context
def runs_show(ctx: click.Context, run: str, as_json: bool) -> None:
    """Show a run: its definition, state, the schedule in force now and how it got there, and
    its changes."""
    client = connect(ctx)
    found = client.get_run(run)
    if as_json:
        echo_json(found)
        return
    echo(f"name        {found.name}")
    echo(f"state       {found.state}")
    echo(f"lrs         {found.lrs}")
    echo(f"schedule    {json.dumps(found.schedule)} (as created)")
    echo(f"plateau     {json.dumps(found.plateau)}")
    echo(f"labels      {_labels(found)}")
    echo(f"high-water  {found.high_water}")
    if found.total_steps is not None:
        echo(f"total steps {found.total_steps}")
    echo(f"attempt     {found.attempt}")
    if found.fork is not None:
        echo(f"forked from {found.fork.parent} at step {found.fork.at_step}")
    echo(f"version     {found.version}")
    echo(f"created     {found.created_at:%Y-%m-%d %H:%M:%S %Z}")
    if found.schedule_now is not None:
        _schedule_now(found, found.schedule_now)
        if any(c.kind == "schedule" for c in found.changes):
            echo("schedule history:")
            table(
                ["FROM STEP", "RESTART", "STATUS", "BY", "REASON", "SCHEDULE"],
                _schedule_history(found, found.schedule_now, _trail(client, run)),
            )
    if found.changes:
        echo("changes:")
        table(
            ["SEQ", "KIND", "FROM STEP", "WHAT"],
            [[c.seq, c.kind, c.effective_step, _what(c)] for c in found.changes],
        )
    if found.attempts:
        echo("attempts:")
        table(
            ["ATTEMPT", "FROM STEP", "DISCARDED", "BY", "REASON"],
            [
                [a.number, a.rewound_to + 1, f"{a.rewound_to + 1}..{a.discarded_to}", a.actor, a.reason]
                for a in found.attempts
            ],
        )


def _schedule_now(run: Run, now: ScheduleNow) -> None:
    """The schedule in force at the step after the mark, and the factors it inherited."""
    echo(f"in force at step {now.step} (the next step served):")
    echo(f"  schedule  {json.dumps(now.schedule)}")
    if now.change_seq is None:
        echo(f"  from      step {now.from_step}: the run's own schedule")
    elif now.restart:
        echo(
            f"  from      step {now.from_step} (change {now.change_seq}), restarted: "
            f"its own step 0 is step {now.from_step}"
        )
    else:
        echo(f"  from      step {now.from_step} (change {now.change_seq}), read at the run's own step")
    echo(f"  scale     x{now.scale:.6g} (every scale in force, carried over)")
    if run.plateau is not None:
        factors = now.plateau_factors
        shown = "x1 (no reduction)" if factors is None else " ".join(f"x{f:.6g}" for f in factors)
        echo(f"  plateau   {shown} (the plateau factors in force, carried over)")


def _schedule_history(run: Run, now: ScheduleNow, trail: list[Event]) -> list[list[Any]]:
    """A row per schedule the run has had or will have, in the order they take over: the run's
    own, then every schedule change in force (those a rewind discarded are not), with who made
    it and why, from the audit trail."""
    created = next((e for e in trail if e.kind == "run_created"), None)
    rows: list[list[Any]] = [
        [
            0,
            "-",
            "in force" if now.change_seq is None else "replaced",
            _by(created),
            "(created)" if created is None or not created.reason else created.reason,
            json.dumps(run.schedule),
        ]
    ]
    changes = sorted(
        (c for c in run.changes if c.kind == "schedule"), key=lambda c: (c.effective_step, c.seq)
    )
    for change in changes:
        # A change's event is written in its transaction, at the same time and step. Changes a
        # fork copied were made on the parent: their events are in the parent's trail.
        made = next(
            (
                e
                for e in trail
                if e.kind in ("schedule_changed", "rewound", "run_created")
                and e.effective_step == change.effective_step
                and e.at == change.created_at
            ),
            None,
        )
        if made is not None:
            reason = made.reason or ""
        else:
            reason = f"(made on {run.fork.parent})" if run.fork is not None else ""
        status = "in force" if change.seq == now.change_seq else "replaced"
        if change.effective_step > now.step:
            status = "pending"
        rows.append(
            [
                change.effective_step,
                "yes" if change.restart else "no",
                status,
                _by(made),
                reason,
                json.dumps(change.schedule),
            ]
        )
    return rows


def _by(event: Event | None) -> str:
    return "?" if event is None or event.actor is None else event.actor


def _trail(client: Client, run: str) -> list[Event]:
    """The run's whole audit trail, a page at a time."""
    found, after = list[Event](), 0
    while True:
        page = client.events(run, after=after, limit=1000).events
        found += page
        last = max((e.seq for e in page if e.seq is not None), default=None)
        if last is None or last <= after:
            return found
        after = last


def _what(change: Change) -> str:
    if change.kind == "schedule":
        return json.dumps(change.schedule) + (" (restart)" if change.restart else "")
    if change.kind == "scale":
        return f"x{change.factor:g}" if change.factor is not None else ""
    if change.kind == "ran":
        lrs = ", ".join(f"{lr:g}" for lr in change.lrs or ())
        return f"ran LR {lrs} through step {change.to_step} (a fallback report)"
    return "plateau factors " + ", ".join(f"{f:g}" for f in change.factors or ())


@runs.command("scale")
@click.argument("run")
@click.argument("factor", type=click.FloatRange(min=0, min_open=True))
@click.option("--from-step", type=click.IntRange(min=0), help="Default: the step after the high-water mark.")
@click.option("--reason", help="Why, for the audit trail.")
@connection
@as_json
@click.pass_context
def runs_scale(
    ctx: click.Context, run: str, factor: float, from_step: int | None, reason: str | None, as_json: bool
) -> None:
    """Multiply a live run's LR by FACTOR from a future step."""
    result = connect(ctx).scale(run, factor, from_step=from_step, reason=reason)
    _changed(result, as_json)


@runs.command("schedule")
@click.argument("run")
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The new schedule spec, as JSON or YAML.",
)
@click.option("--from-step", type=click.IntRange(min=0), help="Default: the step after the high-water mark.")
@click.option("--restart", is_flag=True, help="The new schedule counts its steps from 0 where it starts.")
@click.option("--reason", help="Why, for the audit trail.")
@connection
@as_json
@click.pass_context
def runs_schedule(
    ctx: click.Context,
    run: str,
    path: Path,
    from_step: int | None,
    restart: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Replace a live run's schedule from a future step."""
    spec = load_definition(path)
    result = connect(ctx).change_schedule(run, spec, from_step=from_step, restart=restart, reason=reason)
    _changed(result, as_json)


def _changed(result: Any, as_json: bool) -> None:
    if as_json:
        echo_json(result)
    else:
        echo(f"from step {result.effective_step}: lr {_short(result.lr_before)} -> {_short(result.lr_after)}")


def _branch_changes(path: Path | None, restart: bool, scale: float | None) -> dict[str, Any]:
    if restart and path is None:
        raise click.UsageError("--restart applies to a new schedule: give it with -f")
    changes: dict[str, Any] = {"scale": scale, "restart": restart}
    if path is not None:
        changes["schedule"] = load_definition(path)
    return changes


_NEW_SCHEDULE = click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A new schedule spec from the step after K, as JSON or YAML.",
)
_RESTART = click.option(
    "--restart", is_flag=True, help="The new schedule counts its steps from 0 where it starts."
)
_SCALE = click.option(
    "--scale", type=click.FloatRange(min=0, min_open=True), help="Multiply the LR from the step after K."
)


@runs.command("rewind")
@click.argument("run")
@click.option("--to", "to_step", type=click.IntRange(min=0), required=True, help="K: the checkpoint's step.")
@_SCALE
@_NEW_SCHEDULE
@_RESTART
@click.option("--reason", required=True, help="Why, for the audit trail.")
@connection
@as_json
@click.pass_context
def runs_rewind(
    ctx: click.Context,
    run: str,
    to_step: int,
    scale: float | None,
    path: Path | None,
    restart: bool,
    reason: str,
    as_json: bool,
) -> None:
    """Start a new attempt of RUN at step K, to resume from K's checkpoint: steps up to K answer as
    before, and from K + 1 the plan as it stood when K was served, with the changes given here.
    Jobs still running the old attempt get no new LR: restart them from the checkpoint."""
    result = connect(ctx).rewind(run, to_step, reason=reason, **_branch_changes(path, restart, scale))
    if as_json:
        echo_json(result)
        return
    echo(f"run {result.run}: attempt {result.attempt} from step {result.effective_step}")
    echo(f"lr {_short(result.lr_before)} -> {_short(result.lr_after)}")
    if result.discarded_to > result.to_step:
        echo(
            f"discarded: steps {result.to_step + 1}..{result.discarded_to} of attempt {result.attempt - 1}, "
            f"{len(result.dropped_changes)} changes, {result.dropped_metrics} metrics"
        )


@runs.command("fork")
@click.argument("run")
@click.argument("new")
@click.option("--at", "at_step", type=click.IntRange(min=0), required=True, help="K: the last step shared.")
@_SCALE
@_NEW_SCHEDULE
@_RESTART
@click.option("--reason", help="Why, for the audit trail.")
@connection
@as_json
@click.pass_context
def runs_fork(
    ctx: click.Context,
    run: str,
    new: str,
    at_step: int,
    scale: float | None,
    path: Path | None,
    restart: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Make the run NEW from RUN at step K: it answers steps up to K as RUN did, and from K + 1
    RUN's plan as it stood when K was served, with the changes given here."""
    found = connect(ctx).fork(run, new, at_step, reason=reason, **_branch_changes(path, restart, scale))
    if as_json:
        echo_json(found)
        return
    echo(f"run {found.name}: forked from {run} at step {at_step}, high-water {found.high_water}")


@runs.command("finish")
@click.argument("run")
@click.option("--archive", is_flag=True, help="Archive it instead (it can no longer be finished or changed).")
@click.option("--reason", help="Why, for the audit trail.")
@connection
@click.pass_context
def runs_finish(ctx: click.Context, run: str, archive: bool, reason: str | None) -> None:
    """Mark a run finished (or archived): it still serves its LRs but takes no more changes."""
    found = connect(ctx).set_state(run, "archived" if archive else "finished", reason=reason)
    echo(f"run {found.name}: {found.state}")


@lrtower.command()
@click.argument("run")
@click.argument("step", type=click.IntRange(min=0))
@connection
@as_json
@click.pass_context
def lr(ctx: click.Context, run: str, step: int, as_json: bool) -> None:
    """Serve STEP's LR, as a training job is served it, and print it (every group's, if several).

    This changes the run: STEP and every step before it are frozen from now on (the high-water
    mark moves up to STEP), so a later scale, schedule change or plateau reduction applies only
    after it. Above the mark it needs a write token. To look without changing anything, use
    `lrtower curve`.
    """
    answer = connect(ctx).lr(run, step)
    if as_json:
        echo_json(answer)
    else:
        echo(_lrs(answer.lrs))


def _lrs(lrs: list[float]) -> str:
    return " ".join(repr(x) for x in lrs)


@lrtower.command()
@click.argument("run")
@click.argument("start", type=click.IntRange(min=0))
@click.argument("stop", type=click.IntRange(min=1))
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Only every N-th step from START.",
)
@connection
@as_json
@click.pass_context
def curve(ctx: click.Context, run: str, start: int, stop: int, every: int, as_json: bool) -> None:
    """Print the planned LRs of steps START to STOP - 1, without serving them: a line per step,
    with every group's LR.

    This changes nothing: the high-water mark stays where it is, so the steps above it may still
    change (a scale, a schedule change, a plateau reduction), and a read token is enough. Use it
    to look at a run; `lrtower lr` is what a job is served, and freezes the steps up to it. At
    most 100,000 steps per call.
    """
    if stop <= start:
        raise click.BadParameter(f"must be above START ({start})", param_hint="STOP")
    answer = connect(ctx).curve(run, start, stop, every)
    if as_json:
        echo_json(answer)
        return
    groups = len(answer.lrs[0]) if answer.lrs else 1
    header = ["STEP", "LR"] if groups == 1 else ["STEP", *(f"LR[{g}]" for g in range(groups))]
    rows = [[step, *(repr(x) for x in lrs)] for step, lrs in zip(answer.steps, answer.lrs, strict=True)]
    table(header, rows)


@lrtower.command()
@click.argument("run")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Start after this event (a seq).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many events (default: all).")
@connection
@as_json
@click.pass_context
def events(ctx: click.Context, run: str, after: int, limit: int | None, as_json: bool) -> None:
    """Print a run's audit trail, oldest first."""
    client, found = connect(ctx), list[Event]()
    while limit is None or len(found) < limit:
        page = client.events(run, after=after, limit=min(1000, limit - len(found)) if limit else 1000)
        found += page.events
        # A damaged event may have lost its seq: page on from the highest one that was read.
        last = max((e.seq for e in page.events if e.seq is not None), default=None)
        if last is None or last <= after:
            break
        after = last
    if as_json:
        echo_json(found)
        return
    table(
        ["SEQ", "AT", "ACTOR", "KIND", "STEP", "LR", "REASON"],
        [
            [
                "?" if e.seq is None else e.seq,
                "?" if e.at is None else f"{e.at:%Y-%m-%d %H:%M:%S}",
                e.actor,
                e.kind,
                "" if e.effective_step is None else e.effective_step,
                _transition(e),
                e.reason or "",
            ]
            for e in found
        ],
    )


def _transition(event: Event) -> str:
    after = _short(event.lr_after) if event.lr_after else ""
    return f"{_short(event.lr_before)} -> {after}" if event.lr_before else after


def _short(lrs: list[float] | None) -> str:
    """LRs to a few digits; `none` where there are none (past a schedule's end)."""
    return "none" if lrs is None else " ".join(f"{x:.6g}" for x in lrs)


@lrtower.command()
@click.argument("run")
@connection
@as_json
@click.pass_context
def verify(ctx: click.Context, run: str, as_json: bool) -> None:
    """Check a run's audit trail: exit 0 if its hash chain holds, 1 if an event was edited or deleted."""
    result = connect(ctx).verify(run)
    if as_json:
        echo_json(result)
    elif result.ok:
        echo(f"ok: {result.count} events, hash chain intact")
    else:
        echo(f"BROKEN: the chain breaks at event {result.first_bad_seq} of {result.count}")
    ctx.exit(0 if result.ok else 1)


lrtower.add_command(plot)
