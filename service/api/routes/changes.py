"""Writes to a live run: schedule changes, scales, metrics, its state; and its audit trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from ...core import fallbacks
from ...schemas import (
    SEQ_MAX,
    ChangeResult,
    EventOut,
    EventPage,
    FallbacksIn,
    FallbacksOut,
    ForkIn,
    MetricIn,
    MetricOut,
    RewindIn,
    RewindResult,
    RunOut,
    ScaleIn,
    ScheduleChangeIn,
    StateIn,
    VerifyOut,
    problems,
)
from ..deps import BranchingDep, Creator, Reader, RunPath, RunsDep, ServingDep, Writer, within_reach
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


@router.post("/runs/{run}/rewind", response_model=RewindResult, name="rewind_run")
def rewind(
    run: RunPath,
    body: RewindIn,
    branching: BranchingDep,
    serving: ServingDep,
    caller: Writer,
    key: IdempotencyKey = None,
) -> RewindResult:
    """Start a new attempt of the run at `to_step` k, a served step (the usual k is the step of
    the checkpoint a job resumes from). Steps 0..k answer as before, bit for bit; above k, the
    plan as it stood when k was the last step served, plus this call's changes, from k + 1.
    Changes decided and metrics posted above k are discarded (kept, marked); the plateau state
    is the one after the metrics at steps <= k. Every LR answer names its attempt, and a caller
    pinned to an earlier attempt gets 409 for steps above k. With an Idempotency-Key, every
    rank of a resumed job can ask it and land on the same attempt."""
    result = branching.rewind(run, body, caller.name, key)
    serving.refresh(run)  # this process's copy holds served steps of the attempt that ended
    return result


@router.post(
    "/runs/{run}/fork",
    response_model=RunOut,
    status_code=201,
    responses={200: {"model": RunOut}},
    name="fork_run",
)
def fork(
    run: RunPath, body: ForkIn, runs: RunsDep, branching: BranchingDep, caller: Creator, response: Response
) -> RunOut:
    """Make a new run `name` that answers steps 0..`at_step` as this one did, with its own mark
    at `at_step`; above it, this run's plan as it stood then, plus this call's changes. The same
    fork again answers 200 with the run; another run of that name, 409."""
    within_reach(caller, body.name)
    child, created = branching.fork(run, body, caller.name)
    if not created:
        response.status_code = 200
    return run_out(*runs.get(child.name))


@router.post("/runs/{run}/metrics", response_model=MetricOut)
def post_metric(run: RunPath, body: MetricIn, runs: RunsDep, caller: Writer) -> MetricOut:
    """Post a metric. The plateau's watched metric may reduce the LR: from `step` if it is above
    the high-water mark, else from the step after it (`effective_step` says which). Posting the
    same (name, step, value) again returns the same answer; another value for it is a 409."""
    return runs.post_metric(run, body, caller.name)


@router.post("/runs/{run}/fallbacks", response_model=FallbacksOut, name="report_fallbacks")
def report_fallbacks(
    run: RunPath,
    body: FallbacksIn,
    runs: RunsDep,
    serving: ServingDep,
    caller: Writer,
    key: IdempotencyKey = None,
) -> FallbacksOut:
    """Record what a job ran while it could not reach the server: each stretch of steps and the
    LRs (and momentum) it ran them on, and the metric posts it dropped, as a `fallback` event.
    Steps nobody was served become served, and answer what ran (`recorded`). Steps the tower had
    served with other LRs (to another rank) are a divergence, named in the answer and the event,
    and from then on in the `lrtower-divergence` header of every `/lr` answer of the run. With
    an Idempotency-Key, a retried report makes one event."""
    result = fallbacks.record(runs, run, body, caller.name, key)
    if result.diverged or result.recorded:
        serving.refresh(run)  # this process's copy answers its kept steps without the divergence
    return result


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
