"""/runs: create, list and read runs; serve their LRs; plot their curves."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from ...db.store import ChangeRecord, RunRecord
from ...schemas import RUN_NAME, LrAnswer, RangeOut, RunCreate, RunOut, RunPage, problems
from ..deps import Creator, Reader, RunPath, RunsDep, ServingDep
from ..headers import read_headers
from ..observability import FROM_ROUTE, SERVED_STEPS
from ..wire import (
    JSON,
    STEP_PARAMETERS,
    TEXT,
    QueryInt,
    answer_body,
    asked_steps,
    parse_step_query,
    range_body,
    wants_text,
)

router = APIRouter(tags=["runs"], responses=problems(401, 403, 404, 409, 413, 422, 429))
LabelFilter = Annotated[str, Field(pattern=r"^[^=\x00-\x1f\x7f-\x9f]{1,64}=[^\x00-\x1f\x7f-\x9f]{0,256}$")]


def run_out(run: RunRecord, changes: list[ChangeRecord]) -> RunOut:
    return RunOut.model_validate({**vars(run), "changes": changes}, from_attributes=True)


@router.post("/runs", response_model=RunOut, status_code=201, responses={200: {"model": RunOut}})
def create_run(body: RunCreate, runs: RunsDep, caller: Creator, response: Response) -> RunOut:
    """Create a run. The same definition again answers 200 with the run; a different one, 409."""
    run, created = runs.create(body, caller.name)
    if not created:
        response.status_code = 200
    return run_out(run, [] if created else runs.get(run.name)[1])


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
    page = runs.page(after, limit, wanted)
    return RunPage(
        runs=[run_out(run, changes) for run, changes in page],
        next_after=page[-1][0].name if len(page) == limit else None,
    )


@router.get("/runs/{run}", response_model=RunOut)
def get_run(run: RunPath, runs: RunsDep, caller: Reader) -> RunOut:
    return run_out(*runs.get(run))


@router.get(
    "/runs/{run}/lr",
    response_model=LrAnswer,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string", "example": "0.001"}}}}},
    openapi_extra={"parameters": STEP_PARAMETERS},
)
def get_lr(run: RunPath, request: Request, serving: ServingDep, caller: Reader) -> Response:
    """The LR of `step`, or of every step in [start, stop) by `stride` (lookahead). Served steps
    never change afterwards. With `Accept: text/plain`, a single step's LR alone, as text.

    Only a consumer (a `write` token, or anyone on a server without tokens) may ask steps above
    the high-water mark, and at most LRTOWER_MAX_AHEAD steps past it; `/curve` shows the plan."""
    asked = asked_steps(request.scope["query_string"])
    answers = serving.serve(run, asked.steps, consume=caller.allows("write"))
    FROM_ROUTE.inc()
    SERVED_STEPS.inc(len(answers))
    text = wants_text(asked, read_headers(request.scope["headers"]).accept)
    return Response(answer_body(run, asked, answers, text), media_type=TEXT if text else JSON)


@router.get(
    "/runs/{run}/curve",
    response_model=RangeOut,
    openapi_extra={"parameters": [p for p in STEP_PARAMETERS if p["name"] != "step"]},
)
def get_curve(run: RunPath, request: Request, serving: ServingDep, caller: Reader) -> Response:
    """The planned curve over [start, stop) (default [0, 1000)), for plotting. Unlike /lr, it
    serves nothing, so anyone who may read may ask any step."""
    asked = parse_step_query(request.query_params.multi_items(), default_range=range(0, 1000))
    return Response(range_body(run, serving.plan(run, asked.steps)), media_type=JSON)
