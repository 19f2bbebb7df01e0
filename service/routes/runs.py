"""/runs: create, list and read runs; serve their LRs; plot their curves."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import Field

from ..deps import Reader, RunsDep, Writer
from ..errors import Invalid
from ..schedules import STEP_MAX, FieldError
from ..schemas import RUN_NAME, ChangeOut, LrOut, RangeOut, RunCreate, RunOut, RunPage, problems
from ..store import ChangeRecord, RunRecord
from ..timeline import Answer

router = APIRouter(tags=["runs"], responses=problems(401, 403, 404, 409, 413, 422))
MAX_POINTS = 100_000
StepQuery = Annotated[int | None, Query(ge=0, le=STEP_MAX)]
Stride = Annotated[int, Query(ge=1, le=STEP_MAX)]
LabelFilter = Annotated[str, Field(pattern=r"^[^=]{1,64}=.{0,256}$")]


def run_out(run: RunRecord, changes: list[ChangeRecord]) -> RunOut:
    return RunOut(
        name=run.name,
        lrs=run.lrs,
        schedule=run.spec,
        plateau=run.plateau,
        labels=run.labels,
        state=run.state,
        version=run.version,
        high_water=run.high_water,
        changes=[
            ChangeOut(
                seq=c.seq,
                kind=c.kind,
                effective_step=c.effective_step,
                schedule=c.spec,
                restart=c.restart,
                factor=c.factor,
                factors=c.factors,
                created_at=c.created_at,
            )
            for c in changes
        ],
        created_at=run.created_at,
        updated_at=run.updated_at,
    )


def steps_of(start: int | None, stop: int | None, stride: int) -> range:
    """[start, stop) by stride, at most MAX_POINTS points."""
    if start is None or stop is None:
        missing = "start" if start is None else "stop"
        raise Invalid("give `step`, or `start` and `stop`", [FieldError(("query", missing), "required")])
    if stop <= start:
        raise Invalid(
            "`stop` must be above `start`", [FieldError(("query", "stop"), f"must be > start ({start})")]
        )
    steps = range(start, stop, stride)
    if len(steps) > MAX_POINTS:
        raise Invalid(
            f"a range holds at most {MAX_POINTS} points, this one {len(steps)}",
            [FieldError(("query", "stop"), f"at most {MAX_POINTS} points per request")],
        )
    return steps


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
def create_run(body: RunCreate, runs: RunsDep, caller: Writer, response: Response) -> RunOut:
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
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
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
def get_run(run: str, runs: RunsDep, caller: Reader) -> RunOut:
    return run_out(*runs.get(run))


@router.get(
    "/runs/{run}/lr",
    response_model=LrOut | RangeOut,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string", "example": "0.001"}}}}},
)
def get_lr(
    run: str,
    request: Request,
    runs: RunsDep,
    caller: Reader,
    step: StepQuery = None,
    start: StepQuery = None,
    stop: StepQuery = None,
    stride: Stride = 1,
) -> LrOut | RangeOut | PlainTextResponse:
    """The LR of `step`, or of every step in [start, stop) by `stride` (lookahead). Served steps
    never change afterwards. With `Accept: text/plain`, a single step's LR alone, as text."""
    if step is not None:
        (answer,) = runs.serve(run, range(step, step + 1))
        if "text/plain" in request.headers.get("accept", ""):
            return PlainTextResponse(repr(answer.lrs[0]))
        return LrOut(run=run, step=step, lr=answer.lrs[0], lrs=answer.lrs, momentum=answer.momentum)
    return range_out(run, runs.serve(run, steps_of(start, stop, stride)))


@router.get("/runs/{run}/curve", response_model=RangeOut)
def get_curve(
    run: str, runs: RunsDep, caller: Reader, start: StepQuery = 0, stop: StepQuery = 1000, stride: Stride = 1
) -> RangeOut:
    """The planned curve over [start, stop), for plotting. Unlike /lr, it serves nothing."""
    return range_out(run, runs.curve(run, steps_of(start, stop, stride)))
