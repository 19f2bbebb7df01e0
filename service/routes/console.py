"""/ui: the web console, server-rendered (Jinja2), read-only for now: the runs, and each run's
curve, metrics and audit trail. Pages refresh themselves while a job runs.

When tokens are required, a browser signs in once at /ui/login with a token; it is kept in an
HttpOnly, SameSite=Strict cookie that only the console's pages read (the API still takes bearer
headers only, so no other site can make a browser write through it).
"""

from __future__ import annotations

import math
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..auth import ANONYMOUS, Caller, Tokens, Unauthorized
from ..deps import RunsDep
from ..runs import Runs, timeline_of
from ..schedules import STEP_MAX, DomainError
from ..svg import Marker, curve_svg, sparkline
from ..timeline import Answer, Timeline

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=str(files("lrtower_server") / "templates"))
COOKIE = "lrtower_token"
REFRESH_MS = 3000
MARKED = {"schedule_changed": "schedule", "scaled": "scale", "plateau_reduced": "plateau"}


class SignIn(Exception):
    """The console needs a token: the browser is sent to /ui/login."""


def console_caller(request: Request) -> Caller:
    tokens: Tokens | None = request.app.state.tokens
    if tokens is None:
        return Caller(ANONYMOUS, "admin")
    secret = request.cookies.get(COOKIE)
    header = request.headers.get("authorization") or (f"Bearer {secret}" if secret else None)
    try:
        return tokens.authenticate(header)
    except Unauthorized:
        raise SignIn() from None


Viewer = Annotated[Caller, Depends(console_caller)]


def page(request: Request, name: str, context: dict[str, Any]) -> Response:
    """The whole page, or only its main part when the page's own refresh asks for it."""
    fragment = request.headers.get("x-lrtower-fragment") == "1"
    template = name.replace(".html", "_main.html") if fragment else name
    return templates.TemplateResponse(request, template, {"live": True, "refresh_ms": REFRESH_MS, **context})


@router.get("", response_class=RedirectResponse)
def console_home() -> RedirectResponse:
    return RedirectResponse("/ui/runs", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form() -> HTMLResponse:
    return HTMLResponse(
        '<!doctype html><title>Sign in · lrtower</title><form method="post" action="/ui/login" '
        'style="font:14px system-ui;margin:40px"><h1>lrtower</h1><p>This server requires a token '
        '(<code>lrtower token create NAME --scope read</code>).</p><input name="token" type="password" '
        'placeholder="lrt_..." size="50" autofocus> <button>Sign in</button></form>'
    )


@router.post("/login")
async def login(request: Request) -> Response:
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (fields.get("token") or [""])[0].strip()
    tokens: Tokens | None = request.app.state.tokens
    if tokens is not None:
        try:
            tokens.authenticate(f"Bearer {token}")
        except Unauthorized:
            return RedirectResponse("/ui/login", status_code=303)
    response = RedirectResponse("/ui/runs", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    runs: RunsDep,
    viewer: Viewer,
    q: str = "",
    label: Annotated[str, Query(max_length=320)] = "",
    state: str = "",
) -> Response:
    wanted = dict([label.split("=", 1)]) if "=" in label else {}
    rows = []
    for run, changes in runs.page(None, 200, wanted):
        if (q and q not in run.name) or (state and run.state != state):
            continue
        horizon = max(1000, math.ceil(max(run.high_water, *(c.effective_step for c in changes), 0) * 1.25))
        timeline = timeline_of(run, changes)
        answers = _planned(timeline, range(0, horizon, max(1, horizon // 60)))
        now = _planned(timeline, range(max(run.high_water, 0), max(run.high_water, 0) + 1))
        last = changes[-1] if changes else None
        rows.append(
            {
                "name": run.name,
                "labels": run.labels,
                "state": run.state,
                "high_water": run.high_water,
                "lr": now[0].lrs[0] if now else None,
                "last_change": f"{last.kind} from step {last.effective_step}" if last else None,
                "sparkline": sparkline([a.lrs[0] for a in answers]),
            }
        )
    return page(request, "runs.html", {"rows": rows, "q": q, "label": label, "state": state})


@router.get("/runs/{run}", response_class=HTMLResponse)
def run_page(
    request: Request,
    run: str,
    runs: RunsDep,
    viewer: Viewer,
    start: Annotated[int, Query(ge=0, le=STEP_MAX)] = 0,
    stop: Annotated[int | None, Query(ge=1, le=STEP_MAX)] = None,
    log: bool = False,
) -> Response:
    record, changes = runs.get(run)
    events = _all_events(runs, run)
    markers = [
        Marker(e.seq, e.kind, e.effective_step, _title(e))
        for e in events
        if e.kind in MARKED and e.effective_step is not None
    ]
    last = max([record.high_water, *(m.step for m in markers), 0])
    stop = stop if stop is not None and stop > start else max(start + 10, math.ceil(last * 1.25), 1000)
    answers = _planned(timeline_of(record, changes), range(start, stop, max(1, (stop - start) // 600)))
    svg = curve_svg([a.step for a in answers], [a.lrs for a in answers], record.high_water, markers, log)
    context = {
        "run": record,
        "svg": svg,
        "start": start,
        "stop": stop,
        "log": log,
        "metrics": runs.recent_metrics(run),
        "events": events,
        "verify": runs.verify(run),
    }
    return page(request, "run.html", context)


def _title(event: Any) -> str:
    what = f"{MARKED[event.kind]} from step {event.effective_step} by {event.actor}"
    return what + (f": {event.reason}" if event.reason else "")


def _planned(timeline: Timeline, steps: range) -> list[Answer]:
    """The planned answers, up to the schedule's end if it has one (OneCycleLR); nothing served."""
    answers = []
    for step in steps:
        try:
            answers.append(timeline.at(step))
        except DomainError:
            break
    return answers


def _all_events(runs: Runs, run: str) -> list[Any]:
    events: list[Any] = []
    while True:
        batch = runs.events(run, events[-1].seq if events else 0, 1000)
        if not batch:
            return events
        events += batch
