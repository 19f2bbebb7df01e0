"""One error base, one error shape: RFC 9457 problem+json, with the path of every bad field.

Raise a `Problem` (or one of its kinds) anywhere below the routes; the handlers installed by
`install(app)` turn it, request validation errors, and the schedule engine's SpecError and
DomainError into problem+json. Nothing a user sends may become a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from .observability import DATABASE_ERRORS
from .schedules import DomainError, FieldError, SpecError

log = logging.getLogger("lrtower")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:lrtower:problem:"


class Problem(Exception):
    """An error answered as problem+json. Subclasses fix the status and title."""

    status = 400
    title = "Bad request"
    kind = "bad-request"

    def __init__(
        self,
        detail: str,
        errors: Sequence[FieldError] = (),
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = [_field(e) for e in self.errors]
        body.update(self.extra)
        return body


class NotFound(Problem):
    status, title, kind = 404, "Not found", "not-found"


class Conflict(Problem):
    status, title, kind = 409, "Conflict", "conflict"


class Invalid(Problem):
    status, title, kind = 422, "Invalid request", "invalid"


class NoValue(Problem):
    status, title, kind = 422, "No learning rate at this step", "no-value"


class Unavailable(Problem):
    status, title, kind = 503, "Service unavailable", "unavailable"


class Internal(Problem):
    status, title, kind = 500, "Internal server error", "internal"


def _field(error: FieldError) -> dict[str, Any]:
    return {
        "loc": list(error.loc),
        "field": ".".join(str(part) for part in error.loc),
        "msg": error.msg,
    }


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        problem.body(), status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def _request_errors(exc: RequestValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        errors.append(FieldError(loc, msg, None))
    return errors


def install(app: FastAPI) -> None:
    """Answer every error as problem+json."""

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(SpecError)
    async def _spec(_: Request, exc: SpecError) -> JSONResponse:
        # Specs arrive only in bodies: name the field as the body's own validation does.
        return problem_response(Invalid("the request is invalid", exc.prefixed("body").errors))

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem_response(NoValue(str(exc), extra={"step": exc.step}))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(Invalid("the request is invalid", _request_errors(exc)))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def _database(_: Request, exc: DBAPIError | PoolTimeout) -> JSONResponse:
        # The database went away or is busy (a restart, a failover, a killed connection, SQLite's
        # busy timeout, every pooled connection in use). Nothing was committed; the pool replaces
        # broken connections; retrying is safe.
        cause = getattr(exc, "orig", None) or exc
        log.warning("database unavailable: %s", type(cause).__name__)
        DATABASE_ERRORS.inc()
        response = problem_response(Unavailable("the database is unavailable; retry shortly"))
        response.headers["retry-after"] = "1"
        return response

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, __: ClientDisconnect) -> Response:
        # The caller left before its request was read: nothing failed here, and no one will read
        # an answer (499, as proxies log it).
        log.info("the client disconnected before its request was read")
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error", exc_info=exc)
        return problem_response(Internal("an internal error occurred; it has been logged"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's 400 for a body it cannot decode
            return problem_response(
                Invalid("the request is invalid", [FieldError(("body",), "not JSON text: it must be UTF-8")])
            )
        # Its headers matter: 405 names the methods allowed (Allow), 401 the scheme (WWW-Authenticate).
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_methods_of(request))
        problem = Problem(str(exc.detail), headers=headers)
        problem.status, problem.title, problem.kind = exc.status_code, str(exc.detail), "http"
        return problem_response(problem)


def _methods_of(request: Request) -> list[str]:
    """Every method some route answers at this path, asked of the router itself: Starlette's 405
    names only the first route's (GET for `/runs`, which POST also answers); HEAD wherever GET is
    (head.py)."""
    methods = [
        method
        for method in ("DELETE", "GET", "PATCH", "POST", "PUT")
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.routes
        )
    ]
    return sorted([*methods, "HEAD"] if "GET" in methods else methods)
