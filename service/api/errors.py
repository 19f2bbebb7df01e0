"""Every error answered as RFC 9457 problem+json, with the path of every bad field.

`install(app)` installs the handlers that turn a `Problem` (core/problems.py, raised anywhere
below the routes), request validation errors, and the schedule engine's SpecError and DomainError
into problem+json. Nothing a user sends may become a 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from ..core.problems import Internal, Invalid, NoValue, Problem, Unavailable
from ..schedules import DomainError, FieldError, SpecError
from .observability import DATABASE_ERRORS

log = logging.getLogger("lrtower")

PROBLEM_JSON = "application/problem+json"


LOCATIONS = ("body", "query", "header", "path")
HEADERS = {"idempotency_key": "Idempotency-Key"}
"""The inputs the core names that arrive as headers."""


def _located(error: FieldError, method: str) -> FieldError:
    """The field named where the request carried it. The core names an input alone
    (`from_step`), knowing nothing of HTTP: a header is named as such, any other input is in the
    query of a GET and in the body of a write."""
    if error.loc[:1] and error.loc[0] in LOCATIONS:
        return error
    first = error.loc[0] if error.loc else ""
    if first in HEADERS:
        return FieldError(("header", HEADERS[str(first)], *error.loc[1:]), error.msg, error.value)
    return error.prefixed("query" if method in ("GET", "HEAD") else "body")


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
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        exc.errors = [_located(error, request.method) for error in exc.errors]
        return problem_response(exc)

    @app.exception_handler(SpecError)
    async def _spec(request: Request, exc: SpecError) -> JSONResponse:
        # The engine names a spec's fields as the core names inputs: located the same way.
        errors = [_located(error, request.method) for error in exc.errors]
        return problem_response(Invalid("the request is invalid", errors))

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
