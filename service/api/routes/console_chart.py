"""The console's charts: the data a run's chart draws (`/ui/runs/{run}/chart.json`, read by
`static/chart.js`), and the comparison of several runs on one chart (`/ui/compare`)."""

from __future__ import annotations

import re
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ...core.problems import NotFound
from ...schedules import STEP_MAX
from ...schemas import RUN_NAME
from ..chart import chart_data, chart_source, default_stop, markers
from ..deps import RunsDep
from ..wire import QueryInt
from .console import SECURITY_HEADERS, RunName, Viewer, page

router = APIRouter(prefix="/ui", include_in_schema=False)
COMPARED = 8
"""The most runs one comparison overlays."""


@router.get("/runs/{run}/chart.json")
async def chart_json(
    run: RunName,
    runs: RunsDep,
    viewer: Viewer,
    start: Annotated[int, Query(ge=0, le=STEP_MAX), QueryInt] = 0,
    stop: Annotated[int | None, Query(ge=1, le=STEP_MAX + 1), QueryInt] = None,
) -> Response:
    """What the run's chart draws over [start, stop); by default up to a quarter past its mark and
    its last change. Never stored by a browser: it changes as the run is served."""
    data = await anyio.to_thread.run_sync(chart_data, runs, viewer, run, start, stop)
    return JSONResponse(data, headers={"cache-control": "no-store", **SECURITY_HEADERS})


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    runs: RunsDep,
    viewer: Viewer,
    run: Annotated[list[str] | None, Query(max_length=COMPARED)] = None,
    metric: Annotated[str, Query(max_length=128)] = "",
    log: bool = False,
) -> Response:
    """Up to eight runs' LRs overlaid on one chart, and one metric of theirs on a second."""
    shown: list[str] = []
    stop = 1
    missing: list[str] = []
    metrics: set[str] = set()
    watched: set[str] = set()  # the plateaus' metrics: shown unless another is asked for
    for name in dict.fromkeys(run or []):  # each once, in the order asked
        try:
            if re.fullmatch(RUN_NAME, name) is None or not viewer.reaches(name):
                raise NotFound(name)
            record, _, _ = runs.get(name)
        except NotFound:
            missing.append(name[:128])
            continue
        shown.append(record.name)
        if isinstance(record.plateau, dict):
            watched.add(str(record.plateau.get("metric")))
        stop = max(stop, default_stop(record, markers(runs.events(name)), 0))
        metrics |= set(runs.metric_names(name))
    context: dict[str, Any] = {
        "viewer": viewer,
        "shown": shown,
        "sources": [chart_source(name) for name in shown],
        "stop": stop,
        "log": log,
        "missing": missing,
        "metrics": sorted(metrics),
        "metric": metric
        if metric in metrics
        else next(iter(sorted(watched & metrics)), min(metrics, default="")),
        "live": bool(shown),
    }
    return page(request, "compare.html", context)
