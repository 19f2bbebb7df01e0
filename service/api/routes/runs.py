"""/runs: create, list and read runs; serve their LRs; plot their curves."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from ...core.in_force import schedule_now
from ...db.store import AttemptRecord, ChangeRecord, RunRecord
from ...schemas import RUN_NAME, LrAnswer, RangeOut, RunCreate, RunOut, RunPage, problems
from ..deps import Creator, Reader, RunPath, RunsDep, ServingDep, within_reach
from ..headers import read_headers
from ..observability import FROM_ROUTE, SERVED_STEPS
from ..wire import (
    JSON,
    STEP_PARAMETERS,
    TEXT,
    QueryInt,
    answer_body,
    answer_headers,
    asked_steps,
    parse_step_query,
    range_body,
    wants_text,
)

router = APIRouter(tags=["runs"], responses=problems(401, 403, 404, 409, 413, 422, 429))
LabelFilter = Annotated[str, Field(pattern=r"^[^=\x00-\x1f\x7f-\x9f]{1,64}=[^\x00-\x1f\x7f-\x9f]{0,256}$")]


def run_out(run: RunRecord, changes: list[ChangeRecord], attempts: list[AttemptRecord]) -> RunOut:
    """The run as the API shows it: its changes in force and the schedule they put in force now,
    its rewinds, its lineage."""
    fork = None
    if run.parent is not None:
        fork = {"parent": run.parent, "at_step": run.forked_at, "parent_head": run.parent_head}
    kept = [c for c in changes if c.discarded_in is None]
    return RunOut.model_validate(
        {
            **vars(run),
            "changes": kept,
            "schedule_now": schedule_now(run, kept),
            "attempts": attempts,
            "fork": fork,
        },
        from_attributes=True,
    )


@router.post("/runs", response_model=RunOut, status_code=201, responses={200: {"model": RunOut}})
def create_run(body: RunCreate, runs: RunsDep, caller: Creator, response: Response) -> RunOut:
    """Create a run. The same definition again answers 200 with the run; a different one, 409."""
    within_reach(caller, body.name)
    run, created = runs.create(body, caller.name)
    if not created:
        response.status_code = 200
    return run_out(run, [], []) if created else run_out(*runs.get(run.name))


@router.get("/runs", response_model=RunPage)
def list_runs(
    runs: RunsDep,
    caller: Reader,
    after: Annotated[str | None, Query(pattern=RUN_NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=1000), QueryInt] = 100,
    label: Annotated[list[LabelFilter], Query(max_length=16)] = [],  # noqa: B006  # FastAPI copies defaults
) -> RunPage:
    """Runs by name, a page at a time; `label=key=value` (repeatable) keeps runs with those labels."""
    wanted = dict(item.split("=", 1) for item in label)
    page = runs.page(after, limit, wanted, caller.reach.patterns if caller.reach else None)
    return RunPage(
        runs=[run_out(*found) for found in page],
        next_after=page[-1][0].name if len(page) == limit else None,
    )


@router.get("/runs/{run}", response_model=RunOut)
def get_run(run: RunPath, runs: RunsDep, caller: Reader) -> RunOut:
    return run_out(*runs.get(run))


@router.get(
    "/runs/{run}/lr",
    response_model=LrAnswer,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string", "example": "0.001"}}},
            "headers": {
                "lrtower-attempt": {
                    "description": "The attempt of a text answer (a JSON answer names it in `attempt`).",
                    "schema": {"type": "integer"},
                },
                "lrtower-divergence": {
                    "description": "Only on a run where a rank ran other LRs than the tower served: the "
                    "seq of the latest `fallback` event that found it (GET /runs/{run}/events).",
                    "schema": {"type": "integer"},
                },
            },
        }
    },
    openapi_extra={"parameters": STEP_PARAMETERS},
)
def get_lr(run: RunPath, request: Request, serving: ServingDep, caller: Reader) -> Response:
    """The LR of `step`, or of every step in [start, stop) by `stride` (lookahead). Served steps
    never change afterwards. With `Accept: text/plain`, a single step's LR alone, as text.

    Only a consumer (a `write` token, or anyone on a server without tokens) may ask steps above
    the high-water mark, and at most LRTOWER_MAX_AHEAD steps past it; `/curve` shows the plan."""
    asked = asked_steps(request.scope["query_string"])
    served = serving.serve(run, asked.steps, consume=caller.allows("write"), attempt=asked.attempt)
    FROM_ROUTE.inc()
    SERVED_STEPS.inc(len(served.answers))
    text = wants_text(asked, read_headers(request.scope["headers"]).accept)
    body = answer_body(run, served.attempt, asked, served.answers, text)
    headers = {k.decode(): v.decode() for k, v in answer_headers(served.attempt, served.divergence, text)}
    return Response(body, media_type=TEXT if text else JSON, headers=headers)


@router.get(
    "/runs/{run}/curve",
    response_model=RangeOut,
    openapi_extra={"parameters": [p for p in STEP_PARAMETERS if p["name"] not in ("step", "attempt")]},
)
def get_curve(run: RunPath, request: Request, serving: ServingDep, caller: Reader) -> Response:
    """The planned curve over [start, stop) (default [0, 1000)), for plotting. Unlike /lr, it
    serves nothing, so anyone who may read may ask any step."""
    asked = parse_step_query(request.query_params.multi_items(), default_range=range(0, 1000))
    planned = serving.plan(run, asked.steps)
    return Response(range_body(run, planned.answers, planned.attempt), media_type=JSON)
