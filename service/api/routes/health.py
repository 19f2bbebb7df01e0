"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from ...core.auth import Forbidden
from ...db import migrate
from ...schemas import problems
from ..deps import Reader
from ..errors import PROBLEM_JSON
from ..observability import metrics_body

router = APIRouter(tags=["health"])


@router.get("/healthz", openapi_extra={"security": []})
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **problems(401, 403)},
)
def metrics(request: Request, caller: Reader) -> Response:
    """Prometheus metrics (text format): requests and latency per route, the hot path's answers by
    source, served steps, changes by kind, database errors, the connection pool."""
    if caller.reach is not None:
        raise Forbidden(
            f"token {caller.name!r} reaches only some runs: the metrics are the whole server's, and "
            "need a token that reaches every run"
        )
    request.app.hot_path.flush()  # this process's latest counts, not a quarter second old
    body, content_type = metrics_body(request.app.state.engine)
    return Response(body, media_type=content_type)


@router.get("/readyz", response_model=None, responses=problems(503), openapi_extra={"security": []})
def readyz(request: Request) -> dict[str, str] | JSONResponse:
    """The database is reachable and its schema is at the latest migration."""
    try:
        ready = migrate.is_at_head(request.app.state.engine)
        detail = "ok" if ready else "the database schema is not at the latest migration"
    except SQLAlchemyError as exc:
        ready, detail = False, f"the database is unreachable: {type(exc).__name__}"
    if ready:
        return {"status": "ok"}
    body = {"type": "about:blank", "title": "Not ready", "status": 503, "detail": detail}
    return JSONResponse(body, status_code=503, media_type=PROBLEM_JSON)
