"""create_app(settings): the FastAPI application. Wiring only; the logic lives below."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from importlib.metadata import version

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.auth import Tokens
from ..core.branching import Branching
from ..core.config import Settings
from ..core.runs import Runs
from ..core.serving import Limits, Serving
from ..db import migrate
from ..db.engine import make_engine
from . import errors, openapi
from .fastpath import LrFastPath
from .head import HeadAsGet
from .hosts import AllowedHosts
from .limits import BodyLimit
from .observability import Observe
from .ratelimit import RateLimit
from .routes import (
    changes,
    console,
    console_chart,
    console_tokens,
    health,
    reference,
    runs,
    schedules,
    tokens,
)


class App(FastAPI):
    """The FastAPI app, with `GET /runs/{run}/lr` met by the hot path before FastAPI's own stack
    (see fastpath.py); everything the hot path does not answer goes through that stack.

    It overrides `__call__` rather than being wrapped: one object is what every ASGI host, test
    client and worker process loads, with its `state`, routes and lifespan, the hot path in front."""

    hot_path: LrFastPath
    entry: ASGIApp
    """The hot path, behind HEAD-as-GET and, when the server runs without tokens, the Host
    allow-list."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.entry(scope, receive, send)


SWITCH_INTERVAL = 0.001


POSTGRES_MARK_WINDOW_MS = 1.0
"""Measured with `bench/hotpath.py --new-steps-only`: on PostgreSQL, where each commit costs round
trips and the server's own CPU, a 1 ms window doubles the group and raised new steps/s by half;
on SQLite, whose commit is a local fsync, any window only slowed them."""


def mark_window_ms(settings: Settings, engine: Engine) -> float:
    if settings.mark_window_ms is not None:
        return settings.mark_window_ms
    return 0.0 if engine.dialect.name == "sqlite" else POSTGRES_MARK_WINDOW_MS


class SchemaNotAtHead(RuntimeError):
    """The database needs `lrtower db upgrade` before this version can serve it."""


def create_app(settings: Settings | None = None) -> App:
    settings = settings or Settings()
    engine = make_engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Long answers are computed in worker threads, which share the interpreter lock with the
        # event loop. The loop waits up to one switch interval for it each time it wakes: 1 ms
        # instead of 5 keeps every other request's latency low while one computes.
        sys.setswitchinterval(SWITCH_INTERVAL)
        try:
            if not migrate.is_at_head(engine):
                raise SchemaNotAtHead(
                    f"the database at {engine.url.render_as_string(hide_password=True)} is not at the "
                    "latest migration: run `lrtower db upgrade`"
                )
            # What exists now (the modules, FastAPI's and SQLAlchemy's structures) lives as long as
            # the server: out of the collector's sight, a full collection no longer walks it. Those
            # walks made the new-step path's p99 (80 to 110 ms; 13 ms frozen: docs/performance.md).
            # No collection first: the little garbage of startup waits for shutdown, and starting
            # an app costs no full walk of the heap (0.2 to 0.5 s in a test process).
            gc.freeze()
            yield
        finally:
            gc.unfreeze()  # collectable again: a process that starts apps in turn (tests) leaks none
            engine.dispose()

    app = App(
        title="lrtower",
        summary="A control tower for learning rates",
        version=version("lrtower"),
        lifespan=lifespan,
        generate_unique_id_function=openapi.operation_id,
        separate_input_output_schemas=False,  # one schema per model: a spec given is a spec shown
        docs_url=None,  # served from the package's own files (routes/reference.py), not a CDN
        redoc_url=None,
    )
    openapi.install(app)
    app.state.engine = engine
    app.state.runs = Runs(engine)
    app.state.branching = Branching(app.state.runs)
    app.state.serving = Serving(
        engine,
        Limits(
            max_ahead=settings.max_ahead,
            max_work=settings.max_work,
            cache_runs=settings.cache_runs,
            cache_bytes=settings.run_cache_mib << 20,
            mark_reserve=settings.mark_reserve,
            mark_window=mark_window_ms(settings, engine) / 1000,
        ),
    )
    app.state.write_limit = RateLimit(
        "writes", settings.write_rate, settings.write_burst, "LRTOWER_WRITE_RATE"
    )
    app.state.create_limit = RateLimit(
        "run creations", settings.create_rate / 60, settings.create_burst, "LRTOWER_CREATE_RATE"
    )
    # Unset means required: only `lrtower serve` on loopback decides otherwise on its own.
    app.state.tokens = None if settings.auth == "off" else Tokens(engine)
    app.hot_path = LrFastPath(
        Observe(partial(FastAPI.__call__, app)),
        app.state.serving,
        app.state.tokens,
        settings.response_cache_mib << 20,
    )
    app.entry = HeadAsGet(
        app.hot_path if app.state.tokens is not None else AllowedHosts(app.hot_path, settings.allowed_hosts)
    )
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.include_router(runs.router)
    app.include_router(changes.router)
    app.include_router(schedules.router)
    app.include_router(health.router)
    app.include_router(tokens.router)
    app.include_router(console.router)
    app.include_router(console_tokens.router)
    app.include_router(console_chart.router)
    app.include_router(reference.router)
    app.mount("/static", reference.STATIC, name="static")

    @app.exception_handler(console.SignIn)
    async def _sign_in(_: Request, __: console.SignIn) -> RedirectResponse:
        return RedirectResponse("/ui/login", status_code=303)

    return app
