"""What operators watch: Prometheus metrics, request ids, and JSON logs.

- `GET /metrics` (Prometheus text format): requests and latency per route, where the hot path's
  answers came from (the bytes already sent, memory, the database), served steps, changes and
  plateau reductions, database errors, and the connection pool. With several worker processes
  (`lrtower serve --workers N`), every worker's figures are added up (prometheus-client's
  multiprocess mode).
- Every answer carries an `X-Request-ID`: the caller's, if it sent a usable one, else a new one
  (headers.request_id, on the hot path as on the routes). Log lines written while a request is
  handled carry its id.
- `JsonFormatter` writes one JSON object per log line. `lrtower serve` uses it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..db.models import Change
from .headers import read_headers, request_id

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
LR_ROUTE = "/runs/{run}/lr"

REQUESTS = Counter("lrtower_requests", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram(
    "lrtower_request_seconds",
    "Time to answer, per route",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LR_ANSWERS = Counter(
    "lrtower_lr_answers",
    "Answers of GET /runs/{run}/lr by where they came from: the hot path's sent (bytes already "
    "sent), memory, database; and route (what the hot path hands on to the API's own stack)",
    ["source"],
)
SERVED_STEPS = Counter("lrtower_served_steps", "Steps answered by GET /runs/{run}/lr, on either path")
CHANGES = Counter("lrtower_changes", "Changes to runs' LRs, by kind (schedule, scale, plateau)", ["kind"])
DATABASE_ERRORS = Counter("lrtower_database_errors", "Requests answered 503 because of the database")


@event.listens_for(Session, "after_flush")
def _changes_flushed(session: Session, _: object) -> None:
    kinds = [row.kind for row in session.new if isinstance(row, Change)]
    if kinds:
        session.info.setdefault("lrtower_changes", []).extend(kinds)


@event.listens_for(Session, "after_commit")
def _changes_committed(session: Session) -> None:
    """`lrtower_changes` counts the changes committed, by kind, wherever they are written: the
    use cases stay free of metrics, and a rolled-back or replayed change is not counted."""
    for kind in session.info.pop("lrtower_changes", ()):
        CHANGES.labels(kind).inc()


@event.listens_for(Session, "after_rollback")
def _changes_rolled_back(session: Session) -> None:
    session.info.pop("lrtower_changes", None)


# Bound once: the hot path only increments.
HOT_OK = REQUESTS.labels(LR_ROUTE, "GET", "200")
HOT_LATENCY = LATENCY.labels(LR_ROUTE)
FROM_SENT, FROM_MEMORY, FROM_DATABASE, FROM_ROUTE = (
    LR_ANSWERS.labels(s) for s in ("sent", "memory", "database", "route")
)


class PoolCollector(Collector):
    """The database connection pool, read at each scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[GaugeMetricFamily]:
        pool: Any = self.engine.pool
        for name, text, read in (
            ("lrtower_pool_checked_out", "Database connections in use", "checkedout"),
            ("lrtower_pool_size", "Database connections the pool keeps", "size"),
        ):
            if hasattr(pool, read):
                yield GaugeMetricFamily(name, text, value=float(getattr(pool, read)()))


def metrics_body(engine: Engine) -> tuple[bytes, str]:
    """The exposition of this process, or of every worker in multiprocess mode."""
    registry = CollectorRegistry()
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    body = generate_latest(registry)
    pool = CollectorRegistry()
    pool.register(PoolCollector(engine))
    return body + generate_latest(pool), CONTENT_TYPE_LATEST


class Observe:
    """ASGI middleware for everything but the hot path: a request id, and requests and latency
    per route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answered_id = request_id(read_headers(scope["headers"]).request_id)
        token = REQUEST_ID.set(answered_id.decode())
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", answered_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            REQUESTS.labels(template, scope["method"], str(status)).inc()
            LATENCY.labels(template).observe(time.perf_counter() - started)
            REQUEST_ID.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request id, and any error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line)


def log_config(access_log: bool) -> dict[str, Any]:
    """uvicorn's `log_config`: JSON lines on stderr for lrtower's and uvicorn's loggers."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        "loggers": {
            "lrtower": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.access": {
                "handlers": ["stderr"],
                "level": "INFO" if access_log else "WARNING",
                "propagate": False,
            },
        },
    }
