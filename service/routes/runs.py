"""/runs: create, list and read runs; serve their LRs; plot their curves."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import Field

from ..deps import Creator, Reader, RunPath, RunsDep, ServingDep
from ..observability import FROM_ROUTE, SERVED_STEPS
from ..schemas import RUN_NAME, LrAnswer, LrOut, RangeOut, RunCreate, RunOut, RunPage, problems
from ..store import ChangeRecord, RunRecord
from ..timeline import Answer
from ..wire import STEP_PARAMETERS, QueryInt, parse_step_query

router = APIRouter(tags=["runs"], responses=problems(401, 403, 404, 409, 413, 422, 429))
LabelFilter = Annotated[str, Field(pattern=r"^[^=\x00-\x1f\x7f-\x9f]{1,64}=[^\x00-\x1f\x7f-\x9f]{0,256}$")]


def run_out(run: RunRecord, changes: list[ChangeRecord]) -> RunOut:
    return RunOut.model_validate({**vars(run), "changes": changes}, from_attributes=True)


def range_out(run: str, answers: list[Answer]) -> RangeOut:
    several = len(answers[0].lrs) > 1
    momentum = [a.momentum for a in answers if a.momentum is not None]
    return RangeOut(
        run=run,
        steps=[a.step for a in answers],
        lr=[a.lrs[0] for a in answers],
        lrs=[a.lrs for a in answers] if several else None,
        momentum=momentum if len(momentum) == len(answers) else None,
    )


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
def get_lr(
    run: RunPath, request: Request, serving: ServingDep, caller: Reader
) -> LrOut | RangeOut | PlainTextResponse:
    """The LR of `step`, or of every step in [start, stop) by `stride` (lookahead). Served steps
    never change afterwards. With `Accept: text/plain`, a single step's LR alone, as text.

    Only a consumer (a `write` token, or anyone on a server without tokens) may ask steps above
    the high-water mark, and at most LRTOWER_MAX_AHEAD steps past it; `/curve` shows the plan."""
    asked = parse_step_query(request.query_params.multi_items())
    answers = serving.serve(run, asked.steps, consume=caller.allows("write"))
    FROM_ROUTE.inc()
    SERVED_STEPS.inc(len(answers))
    if asked.single:
        (answer,) = answers
        if "text/plain" in request.headers.get("accept", ""):
            return PlainTextResponse(repr(answer.lrs[0]))
        return LrOut(run=run, step=answer.step, lr=answer.lrs[0], lrs=answer.lrs, momentum=answer.momentum)
    return range_out(run, answers)


@router.get(
    "/runs/{run}/curve",
    response_model=RangeOut,
    openapi_extra={"parameters": [p for p in STEP_PARAMETERS if p["name"] != "step"]},
)
def get_curve(run: RunPath, request: Request, serving: ServingDep, caller: Reader) -> RangeOut:
    """The planned curve over [start, stop) (default [0, 1000)), for plotting. Unlike /lr, it
    serves nothing, so anyone who may read may ask any step."""
    asked = parse_step_query(request.query_params.multi_items(), default_range=range(0, 1000))
    return range_out(run, serving.plan(run, asked.steps))
