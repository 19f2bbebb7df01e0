"""Writes to a live run: schedule changes, scales, metrics, its state; and its audit trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query

from ...schemas import (
    SEQ_MAX,
    ChangeResult,
    EventOut,
    EventPage,
    MetricIn,
    MetricOut,
    RunOut,
    ScaleIn,
    ScheduleChangeIn,
    StateIn,
    VerifyOut,
    problems,
)
from ..deps import Reader, RunPath, RunsDep, Writer
from ..wire import QueryInt
from .runs import run_out

router = APIRouter(tags=["changes"], responses=problems(401, 403, 404, 409, 413, 422, 429))
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string per change (a UUID): a retry with the same key replays the first "
        "answer instead of changing the run twice",
    ),
]


@router.post("/runs/{run}/schedule", response_model=ChangeResult)
def change_schedule(
    run: RunPath, body: ScheduleChangeIn, runs: RunsDep, caller: Writer, key: IdempotencyKey = None
) -> ChangeResult:
    """Replace the schedule from a step above the high-water mark (409 at or below it)."""
    return runs.change_schedule(run, body, caller.name, key)


@router.post("/runs/{run}/scale", response_model=ChangeResult, name="scale_run")
def scale(
    run: RunPath, body: ScaleIn, runs: RunsDep, caller: Writer, key: IdempotencyKey = None
) -> ChangeResult:
    """Multiply the LR from a step above the high-water mark (409 at or below it)."""
    return runs.scale(run, body, caller.name, key)


@router.post("/runs/{run}/metrics", response_model=MetricOut)
def post_metric(run: RunPath, body: MetricIn, runs: RunsDep, caller: Writer) -> MetricOut:
    """Post a metric. The plateau's watched metric may reduce the LR: from `step` if it is above
    the high-water mark, else from the step after it (`effective_step` says which). Posting the
    same (name, step, value) again returns the same answer; another value for it is a 409."""
    return runs.post_metric(run, body, caller.name)


@router.post("/runs/{run}/state", response_model=RunOut)
def set_state(run: RunPath, body: StateIn, runs: RunsDep, caller: Writer) -> RunOut:
    """Mark the run finished or archived: it serves its LRs still, but takes no more changes."""
    runs.set_state(run, body, caller.name)
    return run_out(*runs.get(run))


@router.get("/runs/{run}/events", response_model=EventPage, name="list_events")
def events(
    run: RunPath,
    runs: RunsDep,
    caller: Reader,
    after: Annotated[int, Query(ge=0, le=SEQ_MAX), QueryInt] = 0,
    limit: Annotated[int, Query(ge=1, le=1000), QueryInt] = 100,
) -> EventPage:
    """The audit trail, oldest first, from after `after` (a seq). An event edited in the database
    so that a field can no longer be read shows that field as null, named in `damaged`."""
    found = runs.events(run, after, limit)
    return EventPage(run=run, events=[EventOut.model_validate(e, from_attributes=True) for e in found])


@router.get("/runs/{run}/events/verify", response_model=VerifyOut, name="verify_events")
def verify(run: RunPath, runs: RunsDep, caller: Reader) -> VerifyOut:
    """Recompute the hash chain of the audit trail: any edited or deleted event breaks it."""
    return runs.verify(run)
