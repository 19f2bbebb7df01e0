"""/schedules/preview: evaluate a spec over a range, storing nothing."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import Reader
from ..runs import preview
from ..schemas import PreviewIn, RangeOut, problems
from .runs import range_out, steps_of

router = APIRouter(tags=["schedules"], responses=problems(401, 403, 413, 422))


@router.post("/schedules/preview", response_model=RangeOut)
def preview_schedule(body: PreviewIn, caller: Reader) -> RangeOut:
    """Validate a spec and evaluate it over [start, stop) by `stride`, for checks and plots."""
    return range_out("", preview(body.base_lrs, body.schedule, steps_of(body.start, body.stop, body.stride)))
