"""/schedules/preview: evaluate a spec over a range, storing nothing."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ...core.runs import planned
from ...schemas import PreviewIn, RangeOut, problems
from ..deps import Reader, ServingDep
from ..wire import JSON, range_body, steps_of

router = APIRouter(tags=["schedules"], responses=problems(401, 403, 413, 422))


@router.post("/schedules/preview", response_model=RangeOut)
def preview_schedule(body: PreviewIn, serving: ServingDep, caller: Reader) -> Response:
    """Validate a spec and evaluate it over [start, stop) by `stride`, for checks and plots."""
    steps = steps_of(body.start, body.stop, body.stride, where="body")
    answers = serving.answers(planned(body.base_lrs, body.schedule), steps)
    return Response(range_body("", answers, None), media_type=JSON)
