"""/ui: the web console, server-rendered (Jinja2): the runs, and each run's curve, metrics and
audit trail, with forms to scale, change or finish a live run for tokens that may write. Pages
refresh themselves while a job runs. Form posts must come from the console's own origin.

When tokens are required, a browser signs in once at /ui/login with a token; it is kept in an
HttpOnly, SameSite=Strict cookie that only the console's pages read (the API still takes bearer
headers only, so no other site can make a browser write through it).
"""

from __future__ import annotations

import json
import math
import re
from functools import partial
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import TypeAdapter, ValidationError

from ...core.auth import ANONYMOUS, Caller, Forbidden, Tokens, Unauthorized
from ...core.in_force import schedule_now
from ...core.problems import NotFound, Problem
from ...core.runs import Runs
from ...core.serving import timeline_of
from ...core.timeline import Timeline
from ...core.vocabulary import Scope
from ...db.store import ChangeRecord
from ...schedules import STEP_MAX, SpecError
from ...schedules.examples import EXAMPLES
from ...schedules.registry import MAX_NESTING, TYPE_NAMES
from ...schemas import LR, RUN_NAME, ScaleIn, ScheduleChangeIn, StateIn
from ..chart import POINTS, chart_source, default_stop, markers, planned, preview_data, sampled
from ..deps import RunsDep
from ..ratelimit import RateLimit
from ..svg import sparkline
from ..torch_code import torch_code
from ..wire import QueryInt, integer_text

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=str(files("lrtower_server.api") / "templates"))
COOKIE = "lrtower_token"
REFRESH_MS = 3000
PAGE = 200  # runs per page of the list
SPARK_POINTS = 60  # points of a run's sparkline
SPARK_MAX_AGE = 86_400  # seconds a browser may keep a sparkline: its URL names everything it shows
EXAMPLE_SPEC = json.dumps(
    {
        "type": "SequentialLR",
        "schedulers": [
            {"type": "LinearLR", "start_factor": 0.01, "total_iters": 100},
            {"type": "CosineAnnealingLR", "T_max": 900},
        ],
        "milestones": [100],
    },
    indent=2,
)
BASE_LR: TypeAdapter[float] = TypeAdapter(LR)  # the API's own rule for a base LR: finite, >= 0
JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')  # strings whole, and brackets


class SignIn(Exception):
    """The console needs a token: the browser is sent to /ui/login."""


def console_caller(request: Request) -> Caller:
    tokens: Tokens | None = request.app.state.tokens
    if tokens is None:
        return Caller(ANONYMOUS, "admin")
    secret = request.cookies.get(COOKIE)
    header = request.headers.get("authorization") or (f"Bearer {secret}" if secret else None)
    try:
        caller = tokens.authenticate(header)
    except Unauthorized:
        raise SignIn() from None
    run = request.path_params.get("run")
    if isinstance(run, str) and not caller.reaches(run):
        raise NotFound(f"no run named {run[:128]!r}")  # as for a run that does not exist
    return caller


Viewer = Annotated[Caller, Depends(console_caller)]


def run_name(run: str) -> str:
    """The run named in the path. A name that no run can have is unknown, and no SQL sees it
    (PostgreSQL refuses the NUL byte, for one)."""
    if re.fullmatch(RUN_NAME, run) is None:
        raise NotFound(f"no run named {run[:128]!r}")
    return run


RunName = Annotated[str, Depends(run_name)]


SECURITY_HEADERS = {
    # Only the server's own scripts (static/), no inline script, no plugin, no framing.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
"""What every console page is sent with."""


def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    """The whole page, or only its main part when the page's own refresh asks for it."""
    fragment = request.headers.get("x-lrtower-fragment") == "1"
    template = name.replace(".html", "_main.html") if fragment else name
    return templates.TemplateResponse(
        request,
        template,
        {"live": True, "refresh_ms": REFRESH_MS, **context},
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )


@router.get("", response_class=RedirectResponse)
def console_home() -> RedirectResponse:
    return RedirectResponse("/ui/runs", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form() -> HTMLResponse:
    return HTMLResponse(
        '<!doctype html><title>Sign in · lrtower</title><form method="post" action="/ui/login" '
        'style="font:14px system-ui;margin:40px"><h1>lrtower</h1><p>This server requires a token '
        '(<code>lrtower token create NAME --scope read</code>).</p><input name="token" type="password" '
        'placeholder="lrt_..." size="50" autofocus> <button>Sign in</button></form>',
        headers=SECURITY_HEADERS,
    )


@router.post("/login")
async def login(request: Request) -> Response:
    if not _same_origin(request):  # else a page elsewhere could sign a visitor in as its author
        raise Forbidden("a sign-in was posted from another site")
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
    label: Annotated[str, Query(max_length=320, pattern=r"^[^\x00]*$")] = "",  # no database stores NUL
    state: str = "",
    after: Annotated[str | None, Query(pattern=RUN_NAME)] = None,  # a cursor: the last name listed
) -> Response:
    """The runs, from the database alone: a page of 200 heavy runs must cost no more than a page of
    light ones, so each curve is an image of its own (`sparkline`), loaded only when shown."""
    wanted = dict([label.split("=", 1)]) if "=" in label else {}
    rows = []
    listed = runs.page(after, PAGE, wanted, viewer.reach.patterns if viewer.reach else None)
    for run, changes, _ in listed:
        if (q and q not in run.name) or (state and run.state != state):
            continue
        last = changes[-1] if changes else None
        rows.append(
            {
                "name": run.name,
                "labels": run.labels,
                "state": run.state,
                "high_water": run.high_water,
                "last_change": _last_change(last) if last else None,
                "sparkline": f"/ui/runs/{run.name}/sparkline.svg?"
                + urlencode({"v": run.version, "mark": run.high_water}),
            }
        )
    more = listed[-1][0].name if len(listed) == PAGE else None
    context = {"rows": rows, "q": q, "label": label, "state": state, "more": more, "viewer": viewer}
    return page(request, "runs.html", context)


@router.get("/runs/{run}/sparkline.svg")
def sparkline_image(
    run: RunName,
    runs: RunsDep,
    viewer: Viewer,
    v: Annotated[int | None, Query(ge=0), QueryInt] = None,
    mark: Annotated[int | None, Query(ge=-1, le=STEP_MAX), QueryInt] = None,
) -> Response:
    """A run's planned curve in about 60 points, with its LR at the mark (`mark`, the run's own by
    default). A run's plan only changes with its version, so the answer for the version it names
    (`v`) never changes, and the browser may keep it."""
    record, changes, _ = runs.get(run)
    at = record.high_water if mark is None else mark
    if record.total_steps is not None:  # the planned end, or the mark if the job ran longer
        horizon = min(STEP_MAX + 1, max(record.total_steps, at + 1))
    else:
        horizon = max(1000, math.ceil(max(at, *(c.effective_step for c in changes), 0) * 1.25))
    timeline = timeline_of(record, changes)
    answers = planned(timeline, range(0, horizon, math.ceil(horizon / SPARK_POINTS)))
    now = planned(timeline, range(max(at, 0), max(at, 0) + 1))
    caption = f"{now[0].lrs[0]:.4g}" if now else "—"
    title = f"LR {caption} at step {max(at, 0)}; planned to step {horizon}"
    image = sparkline([a.lrs[0] for a in answers], caption, title)
    fixed = v == record.version
    headers = {
        "cache-control": f"private, max-age={SPARK_MAX_AGE}" if fixed else "no-store",
        # Opened on its own, the image is a document of this origin: it may run nothing.
        "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
        "x-content-type-options": "nosniff",
    }
    return Response(image, media_type="image/svg+xml", headers=headers)


@router.get("/runs/{run}", response_class=HTMLResponse)
def run_page(
    request: Request,
    run: RunName,
    runs: RunsDep,
    viewer: Viewer,
    start: Annotated[int, Query(ge=0, le=STEP_MAX), QueryInt] = 0,
    stop: Annotated[int | None, Query(ge=1, le=STEP_MAX), QueryInt] = None,
    log: bool = False,
) -> Response:
    return _run_view(request, run, runs, viewer, start, stop, log)


def _run_view(
    request: Request,
    run: str,
    runs: Runs,
    viewer: Caller,
    start: int = 0,
    stop: int | None = None,
    log: bool = False,
    error: str | None = None,
) -> Response:
    """The run's page; with the error of a form just posted, which is never read from the URL
    (a link could then put any words on the page)."""
    record, every_change, attempts = runs.history(run)
    events = _all_events(runs, run)
    # A change's event is written in its transaction: at its time, from its step.
    made = {(e.at, e.effective_step): e for e in events if e.kind in ("schedule_changed", "rewound")}
    stop = stop if stop is not None and stop > start else default_stop(record, markers(events), start)
    context = {
        "can_write": viewer.allows("write"),
        "viewer": viewer,
        "lr_change": lr_change,
        "error": error,
        # The answer to a refused form stands at the form's address, which has no page to refresh.
        "live": error is None,
        "run": record,
        "now": schedule_now(record, every_change),
        "schedules": [
            (c, made.get((c.created_at, c.effective_step)))
            for c in every_change
            if c.kind == "schedule" and c.discarded_in is None
        ],
        "attempts": attempts,
        "forks": [e for e in events if e.kind == "forked" and isinstance(e.details, dict)],
        "sources": [chart_source(record.name)],
        "start": start,
        "stop": stop,
        "log": log,
        "metrics": runs.recent_metrics(run),
        "events": events,
        "verify": runs.verify(run),
    }
    return page(request, "run.html", context, status_code=200 if error is None else 422)


def lr_change(before: list[float] | None, after: list[float] | None) -> list[tuple[int, str, str, str]]:
    """An event's LR before and after, per param group, as the audit table shows them: (group,
    before, after, the factor of the change). A field edited into something else shows nothing."""
    rows: list[tuple[int, str, str, str]] = []
    if not isinstance(after, list):
        return rows
    for group, lr in enumerate(after):
        old = before[group] if isinstance(before, list) and group < len(before) else None
        factor = f"x{lr / old:.4g}" if isinstance(old, float | int) and old > 0 and lr != old else ""
        rows.append((group, "" if old is None else f"{old:.6g}", f"{lr:.6g}", factor))
    return rows


def _all_events(runs: Runs, run: str) -> list[Any]:
    # One read, not pages by seq: an event edited in the database may have no readable seq to
    # page after, and it must be shown all the same.
    return runs.events(run)


@router.get("/playground", response_class=HTMLResponse)
def playground(
    request: Request,
    viewer: Viewer,
    spec: Annotated[str, Query(max_length=100_000)] = EXAMPLE_SPEC,
    lr: Annotated[str, Query(max_length=1000)] = "0.1",
    start: Annotated[int, Query(ge=0, le=STEP_MAX), QueryInt] = 0,
    stop: Annotated[int, Query(ge=1, le=STEP_MAX), QueryInt] = 1000,
    log: bool = False,
) -> Response:
    """A spec's curve as it is edited, with each invalid field named next to the editor."""
    errors: list[tuple[str, str]] = []
    preview: dict[str, Any] | None = None
    parsed: Any = None
    try:
        parsed = _load_json(spec)
    except ValueError as exc:
        errors.append(("spec", str(exc)))
    base: list[float] | None = None
    if lr.strip():
        try:
            base = [BASE_LR.validate_strings(lr.strip())]
        except ValidationError as exc:
            errors.append(("lr", f"{lr.strip()[:40]!r}: {exc.errors()[0]['msg']}"))
    if not errors:
        try:
            stop = max(stop, start + 1)
            preview = preview_data(
                planned(Timeline(base, parsed, None), sampled(start, stop, POINTS)), start, stop
            )
        except SpecError as exc:
            errors += [(".".join(map(str, e.loc)) or "spec", e.msg) for e in exc.errors]
        except (ValueError, TypeError, ArithmeticError) as exc:  # whatever the spec, the page answers
            errors.append(("spec", str(exc)))
    code = torch_code(parsed, base[0]) if preview and base else None
    context = {"spec": spec, "lr": lr, "start": start, "stop": stop, "log": log, "errors": errors}
    context |= {
        "preview": preview,
        "torch_code": code,
        "sources": [{"name": "preview", "inline": "preview-data"}],
    }
    chosen = parsed.get("type") if isinstance(parsed, dict) else None
    context |= {
        "types": sorted(EXAMPLES),
        "chosen": chosen,
        "hints": spec_hints(chosen),
        "examples": EXAMPLES,
    }
    context["live"] = False  # it redraws as the spec is edited, not on a timer
    response = page(request, "playground.html", context)
    response.headers["cache-control"] = "no-store"
    return response


def spec_hints(type_name: object) -> list[tuple[str, str, str, str]]:
    """The parameters of a schedule type, from its published schema: (name, type, default or
    "required", description), for the playground's hints."""
    model = TYPE_NAMES.get(str(type_name).removeprefix("torch.")) if isinstance(type_name, str) else None
    if model is None:
        return []
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    hints = []
    for name, field in schema.get("properties", {}).items():
        if name == "type":
            continue
        kinds = [part.get("type", "") for part in field.get("anyOf", [field])]
        default = "required" if name in required else json.dumps(field.get("default"))
        hints.append(
            (name, " or ".join(k for k in kinds if k) or "object", default, field.get("description", ""))
        )
    return hints


def _load_json(text: str) -> Any:
    """`text` as JSON, refusing (ValueError) containers nested deeper than a spec may be before the
    parser recurses into them: it would otherwise run out of stack on a few thousand `[`."""
    depth = 0
    for token in JSON_TOKENS.finditer(text):  # strings are skipped whole: brackets in them don't count
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_NESTING + 1:
                raise ValueError(f"JSON nested more than {MAX_NESTING} levels deep")
        elif bracket in ("]", "}"):
            depth -= 1
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits; a stack still too deep
        raise ValueError(f"not usable JSON: {exc}") from None


# -- writes from the console's forms -----------------------------------------------------------


def _same_origin(request: Request) -> bool:
    """Whether a form post comes from the console's own pages (OWASP: verify the origin with
    standard headers). Browsers send both headers on cross-site posts; other clients are not a
    cross-site request forgery."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or origin.split("://", 1)[-1] == request.headers.get("host")


async def form_of(request: Request, viewer: Caller, needed: Scope = "write") -> dict[str, str]:
    """A console form's fields, if it was posted from the console's own pages by a caller with
    `needed` scope, within its rate of writes."""
    if not _same_origin(request):
        raise Forbidden("a console form was posted from another site")
    if not viewer.allows(needed):
        raise Forbidden(f"token {viewer.name!r} has scope {viewer.scope!r}; this form needs {needed!r}")
    writes: RateLimit = request.app.state.write_limit  # a form post is a write like any other
    writes.take(viewer.name)
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {key: values[0].strip() for key, values in fields.items() if values}


def _back(run: str) -> RedirectResponse:
    return RedirectResponse(f"/ui/runs/{run}", status_code=303)


async def _refused(request: Request, run: str, runs: Runs, viewer: Caller, error: str) -> Response:
    """The run's page again, with why the form was refused (422)."""
    return await anyio.to_thread.run_sync(partial(_run_view, request, run, runs, viewer, error=error))


def _problem_text(exc: Problem | SpecError) -> str:
    detail = exc.detail if isinstance(exc, Problem) else "invalid schedule"
    return "; ".join([detail, *(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in exc.errors)])


def _from_step(form: dict[str, str]) -> int | None:
    """A form's `from_step`: empty for the step after the mark, else a whole number."""
    text = form.get("from_step")
    return integer_text(text) if text else None


@router.post("/runs/{run}/scale")
async def scale_form(request: Request, run: RunName, runs: RunsDep, viewer: Viewer) -> Response:
    form = await form_of(request, viewer)
    try:
        body = ScaleIn(
            factor=float(form.get("factor", "")),
            from_step=_from_step(form),
            reason=form.get("reason") or None,
        )
        await anyio.to_thread.run_sync(runs.scale, run, body, viewer.name)
    except (ValueError, ValidationError) as exc:
        return await _refused(request, run, runs, viewer, f"invalid scale: {exc}")
    except Problem as exc:
        return await _refused(request, run, runs, viewer, _problem_text(exc))
    return _back(run)


@router.post("/runs/{run}/schedule")
async def schedule_form(request: Request, run: RunName, runs: RunsDep, viewer: Viewer) -> Response:
    form = await form_of(request, viewer)
    try:
        body = ScheduleChangeIn(
            schedule=_load_json(form.get("schedule", "")),
            from_step=_from_step(form),
            restart=form.get("restart") == "1",
            reason=form.get("reason") or None,
        )
        await anyio.to_thread.run_sync(runs.change_schedule, run, body, viewer.name)
    except (ValueError, ValidationError) as exc:
        return await _refused(request, run, runs, viewer, f"invalid schedule change: {exc}")
    except (Problem, SpecError) as exc:
        return await _refused(request, run, runs, viewer, _problem_text(exc))
    return _back(run)


@router.post("/runs/{run}/finish")
async def finish_form(request: Request, run: RunName, runs: RunsDep, viewer: Viewer) -> Response:
    form = await form_of(request, viewer)
    try:
        body = StateIn(state="finished", reason=form.get("reason") or None)
        await anyio.to_thread.run_sync(runs.set_state, run, body, viewer.name)
    except ValidationError as exc:
        return await _refused(request, run, runs, viewer, f"invalid reason: {exc}")
    except Problem as exc:
        return await _refused(request, run, runs, viewer, _problem_text(exc))
    return _back(run)


def _last_change(change: ChangeRecord) -> str:
    if change.kind == "ran":  # a fallback report's record of steps nobody was served
        return f"ran on a fallback LR, steps {change.effective_step}-{change.to_step}"
    return f"{change.kind} from step {change.effective_step}"
