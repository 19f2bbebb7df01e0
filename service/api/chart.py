"""What the console's charts draw, as JSON for `static/chart.js`: a run's planned LR per param
group over a range of steps, exactly as the API answers them (sampled to about `POINTS` steps;
every step once the range is that narrow), the steps served, a marker per change, the tails that
rewinds discarded and the forks taken from it, as branches, and its metrics on the same steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from ..core.auth import Caller
from ..core.problems import NotFound
from ..core.runs import Runs
from ..core.serving import timeline_of
from ..core.timeline import Answer, Timeline
from ..db.store import AttemptRecord, ChangeRecord, RunRecord, StoredEvent
from ..schedules import STEP_MAX, DomainError

POINTS = 600
"""Steps drawn per curve: about one per pixel of a wide chart."""
BRANCH_POINTS = 200
"""Steps drawn per branch (a discarded tail, a fork)."""
METRIC_POINTS = 2000
"""Posts drawn per metric (every k-th where there are more)."""
METRIC_NAMES = 32
"""Metrics drawn per run; the plateau's is always among them."""
CURVE_WORK = 100_000.0
"""The most work one drawn curve may take (points x groups x cost units, about 0.1 s)."""
MARKED = {
    "schedule_changed": "schedule",
    "scaled": "scale",
    "plateau_reduced": "plateau",
    "rewound": "rewind",
    "forked": "fork",
    "fallback": "fallback",
}


def planned(timeline: Timeline, steps: range) -> list[Answer]:
    """The planned answers, up to the schedule's end if it has one (OneCycleLR); nothing served.
    A schedule costly to evaluate is drawn with fewer points, so that a page stays quick."""
    most = max(2, int(CURVE_WORK // timeline.work(1)))
    if len(steps) > most:
        steps = range(steps.start, steps.stop, math.ceil((steps.stop - steps.start) / most))
    try:
        return timeline.over(steps)
    except DomainError:
        pass
    answers = []  # the curve ends where the schedule does: answer up to its first step without a value
    for step in steps:
        try:
            answers.append(timeline.at(step))
        except DomainError:
            break
    return answers


def sampled(start: int, stop: int, points: int) -> range:
    return range(start, stop, max(1, (stop - start) // points))


def markers(events: list[StoredEvent]) -> list[dict[str, Any]]:
    """A marker per change of the LR (schedule, scale, plateau, rewind, fork): who and why."""
    return [
        {
            "seq": e.seq,
            "kind": MARKED[e.kind],
            "step": e.effective_step,
            "actor": e.actor,
            "reason": e.reason,
            "title": title(e),
        }
        for e in events
        if e.kind in MARKED and e.effective_step is not None
    ]


def title(event: StoredEvent) -> str:
    what = f"{MARKED[str(event.kind)]} from step {event.effective_step} by {event.actor}"
    return what + (f": {event.reason}" if event.reason else "")


def default_stop(run: RunRecord, marked: list[dict[str, Any]], start: int) -> int:
    """Where a run's chart ends unless asked: at its planned end (`total_steps`), or past its mark
    if the job ran longer; without a planned end, past its mark and its last change, by a quarter."""
    if run.total_steps is not None:
        end = min(STEP_MAX + 1, max(run.total_steps, run.high_water + 1))
        if end > start:
            return end
    last = max([run.high_water, *(int(m["step"]) for m in marked), 0])
    return min(STEP_MAX + 1, max(start + 10, math.ceil(last * 1.25), 1000))


def chart_source(run: str) -> dict[str, str]:
    """Where `static/chart.js` reads a run's chart from."""
    return {"name": run, "url": f"/ui/runs/{run}/chart.json"}


def chart_data(runs: Runs, viewer: Caller, name: str, start: int, stop: int | None) -> dict[str, Any]:
    """Everything a chart of run `name` draws over [start, stop) (stop: `default_stop`)."""
    run, every_change, attempts = runs.history(name)
    events = runs.events(name)
    marked = markers(events)
    stop = stop if stop is not None and stop > start else default_stop(run, marked, start)
    changes = [c for c in every_change if c.discarded_in is None]
    answers = planned(timeline_of(run, changes), sampled(start, stop, POINTS))
    plateau = run.plateau.get("metric") if isinstance(run.plateau, dict) else None
    return {
        "run": run.name,
        "attempt": run.attempt,
        "high_water": run.high_water,
        "start": start,
        "stop": stop,
        "steps": [a.step for a in answers],
        "lrs": [list(group) for group in zip(*(a.lrs for a in answers), strict=True)],
        "markers": marked,
        "branches": [
            *discarded(run, every_change, attempts, start, stop),
            *forks(runs, viewer, events, stop),
        ],
        "plateau_metric": plateau,
        "metrics": {
            metric: {"steps": steps, "values": values}
            for metric, (steps, values) in runs.metric_series(
                name, start, stop, METRIC_POINTS, METRIC_NAMES, plateau
            ).items()
        },
    }


def preview_data(answers: list[Answer], start: int, stop: int) -> dict[str, Any]:
    """A spec's curve in the playground, in the shape of a run's chart: nothing served, changed
    or posted."""
    return {
        "run": "preview",
        "attempt": 1,
        "high_water": -1,
        "start": start,
        "stop": stop,
        "steps": [a.step for a in answers],
        "lrs": [list(group) for group in zip(*(a.lrs for a in answers), strict=True)],
        "markers": [],
        "branches": [],
        "plateau_metric": None,
        "metrics": {},
    }


def discarded(
    run: RunRecord, changes: list[ChangeRecord], attempts: list[AttemptRecord], start: int, stop: int
) -> Iterator[dict[str, Any]]:
    """The steps each earlier attempt served above the rewind that ended it, within [start, stop),
    as that attempt answered them: its own changes, as they stood then."""
    for ended in attempts:
        attempt = ended.number - 1
        low, high = max(ended.rewound_to + 1, start), min(ended.discarded_to + 1, stop)
        if low >= high:
            continue
        kept = [
            c
            for c in changes
            if c.attempt <= attempt and (c.discarded_in is None or c.discarded_in > attempt)
        ]
        answers = planned(timeline_of(run, kept), sampled(low, high, BRANCH_POINTS))
        if answers:
            yield _branch(f"attempt {attempt} (discarded)", "attempt", answers)


def forks(runs: Runs, viewer: Caller, events: list[StoredEvent], stop: int) -> Iterator[dict[str, Any]]:
    """Each fork taken from the run (that the viewer may see), from its fork step on."""
    for event in events:
        details = event.details if isinstance(event.details, dict) else {}
        child = details.get("fork")
        if event.kind != "forked" or not isinstance(child, str) or not viewer.reaches(child):
            continue
        try:
            record, changes, _ = runs.get(child)
        except NotFound:  # archived and gone, or renamed in the database
            continue
        low = max(record.forked_at or 0, 0)
        if low >= stop:
            continue
        answers = planned(timeline_of(record, changes), sampled(low, stop, BRANCH_POINTS))
        if answers:
            yield _branch(f"fork {child}", "fork", answers)


def _branch(label: str, kind: str, answers: list[Answer]) -> dict[str, Any]:
    return {
        "label": label,
        "kind": kind,
        "steps": [a.step for a in answers],
        "lrs": [list(group) for group in zip(*(a.lrs for a in answers), strict=True)],
    }
