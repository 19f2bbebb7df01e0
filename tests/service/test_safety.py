"""No caller may freeze a run, serve a non-finite LR, hold the database or take unbounded work:
who may move the mark and how far, finite answers, bounded work per request, rate limits.
Each test runs on SQLite and PostgreSQL; most ask through the hot path and the route alike."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from lrtower_server.api.app import create_app
from lrtower_server.core.auth import Tokens
from lrtower_server.core.config import Settings
from lrtower_server.db.engine import make_engine
from lrtower_server.schedules import STEP_MAX
from servers import launch

STEP_LR = {"type": "StepLR", "step_size": 10, "gamma": 0.5}


@pytest.fixture
def both(settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    """The app as served (hot path first) and its FastAPI route alone, on one database."""
    app = create_app(settings)
    with TestClient(app) as hot:
        yield hot, TestClient(partial(FastAPI.__call__, app))


def problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def mark(client: TestClient, run: str) -> int:
    high_water: int = client.get(f"/runs/{run}").json()["high_water"]
    return high_water


# -- 1. who moves the mark, and how far ----------------------------------------------------------


@pytest.mark.parametrize("query", ["step=9007199254740992", "step=100000", "start=0&stop=10002"])
def test_one_request_cannot_freeze_a_run(both: tuple[TestClient, TestClient], query: str) -> None:
    for path, client in enumerate(both):
        run = f"victim-{path}"
        client.post("/runs", json={"name": run, "lr": 0.1, "schedule": STEP_LR})
        field = "query.step" if query.startswith("step") else "query.stop"
        body = problem(client.get(f"/runs/{run}/lr?{query}"), 422, field)
        assert "/curve" in body["detail"] and body["high_water"] == -1
        assert mark(client, run) == -1
        # The run still takes changes and metrics from its next step on.
        assert client.post(f"/runs/{run}/scale", json={"factor": 0.5}).json()["effective_step"] == 0
        assert client.post(f"/runs/{run}/metrics", json={"step": 1, "value": 1.0}).status_code == 200


def test_the_reach_is_counted_from_the_mark_and_is_a_setting(database_url: str) -> None:
    app = create_app(
        Settings(database_url=database_url, auth="off", max_ahead=50, allowed_hosts=["testserver"])
    )
    with TestClient(app) as hot:
        route = TestClient(partial(FastAPI.__call__, app))
        hot.post("/runs", json={"name": "r", "lr": 0.1, "schedule": STEP_LR})
        for client in (hot, route):
            problem(client.get("/runs/r/lr", params={"step": 50}), 422, "query.step")
        assert hot.get("/runs/r/lr", params={"step": 49}).status_code == 200
        assert route.get("/runs/r/lr", params={"start": 50, "stop": 100}).status_code == 200  # 99 <= 49 + 50
        assert mark(hot, "r") == 99
        # Far behind the mark is fine: those steps are served already.
        assert hot.get("/runs/r/lr", params={"start": 0, "stop": 100}).status_code == 200


def test_a_read_token_never_moves_the_mark(database_url: str) -> None:
    settings = Settings(database_url=database_url, auth="required")
    engine = make_engine(settings)
    tokens = Tokens(engine)
    reader, writer = (
        tokens.create("dashboard", "read", actor="test")[1],
        tokens.create("trainer", "write", actor="test")[1],
    )
    app = create_app(settings)
    with TestClient(app) as hot:
        route = TestClient(partial(FastAPI.__call__, app))
        as_reader = {"authorization": f"Bearer {reader}"}
        as_writer = {"authorization": f"Bearer {writer}"}
        hot.post("/runs", json={"name": "v", "lr": 0.1, "schedule": STEP_LR}, headers=as_writer)
        assert hot.get("/runs", headers=as_reader).status_code == 200  # the reader is in the token cache
        for params in ({"step": STEP_MAX}, {"step": 0}, {"start": 0, "stop": 5}):
            fast = problem(hot.get("/runs/v/lr", params=params, headers=as_reader), 403)
            slow = problem(route.get("/runs/v/lr", params=params, headers=as_reader), 403)
            assert fast == slow and "write" in fast["detail"] and "/curve" in fast["detail"]
        assert hot.get("/runs/v", headers=as_reader).json()["high_water"] == -1
        # What a consumer served, a reader reads, on both paths; the plan is open to it.
        assert hot.get("/runs/v/lr", params={"step": 20}, headers=as_writer).status_code == 200
        for client in (hot, route):
            assert client.get("/runs/v/lr", params={"step": 20}, headers=as_reader).json()["lr"] == 0.025
            plan = client.get(
                "/runs/v/curve", params={"start": 10**12, "stop": 10**12 + 2}, headers=as_reader
            )
            assert plan.status_code == 200 and len(plan.json()["steps"]) == 2
        assert hot.get("/runs/v", headers=as_reader).json()["high_water"] == 20
    engine.dispose()


def test_a_metric_the_plateau_does_not_watch_needs_no_lr(client: TestClient) -> None:
    """Past the end of a OneCycleLR there is no LR at mark + 1: a metric the plateau does not
    watch is still recorded (with no LR), and the watched one says why it cannot be."""
    spec = {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10}
    plateau = {"metric": "val_loss", "patience": 0}
    client.post("/runs", json={"name": "short", "lr": 0.1, "schedule": spec, "plateau": plateau})
    assert client.get("/runs/short/lr", params={"start": 0, "stop": 11}).status_code == 200  # 0..total_steps
    answer = client.post("/runs/short/metrics", json={"step": 5, "value": 1.0, "name": "train_loss"})
    assert answer.status_code == 200 and answer.json()["lr"] is None and answer.json()["effective_step"] == 11
    again = client.post("/runs/short/metrics", json={"step": 5, "value": 1.0, "name": "train_loss"})
    assert again.json() == answer.json()
    problem(client.post("/runs/short/metrics", json={"step": 5, "value": 1.0}), 422)


# -- 2. every answer is a finite LR >= 0 ----------------------------------------------------------


def test_an_overflowing_scale_serves_no_infinity(both: tuple[TestClient, TestClient]) -> None:
    hot, route = both
    hot.post("/runs", json={"name": "g", "lr": 0.1, "schedule": {"type": "ExponentialLR", "gamma": 1.01}})
    assert hot.post("/runs/g/scale", json={"factor": 1e300}).status_code == 200  # finite at step 0
    for client in (hot, route):
        for headers in ({}, {"accept": "text/plain"}):
            body = problem(client.get("/runs/g/lr", params={"step": 2500}, headers=headers), 422)
            assert body["type"].endswith("no-value") and body["step"] == 2500
        body = problem(client.get("/runs/g/lr", params={"start": 2490, "stop": 2510}), 422)
        assert body["type"].endswith("no-value")
    assert mark(hot, "g") == -1  # refused steps are not served
    curve = hot.get("/runs/g/curve", params={"start": 2490, "stop": 2510})
    assert problem(curve, 422)["step"] >= 2490


def test_a_change_that_overflows_where_it_lands_is_refused(client: TestClient) -> None:
    client.post("/runs", json={"name": "g", "lr": 0.1, "schedule": {"type": "ExponentialLR", "gamma": 1.01}})
    client.get("/runs/g/lr", params={"step": 4000})  # 0.1 * 1.01**4001 is about 2e16
    body = problem(client.post("/runs/g/scale", json={"factor": 1e300}), 422, "body.factor")
    assert body["step"] == 4001
    assert client.post("/runs/g/scale", json={"factor": 1e200}).status_code == 200
    problem(client.post("/runs/g/scale", json={"factor": 1e200}), 422, "body.factor")  # the product overflows
    ended = {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 5}
    problem(client.post("/runs/g/schedule", json={"schedule": ended}), 422, "body.schedule")
    assert client.get("/runs/g/events/verify").json()["ok"]
    assert len(client.get("/runs/g").json()["changes"]) == 1


def test_a_run_whose_plan_ended_can_be_given_a_new_one(client: TestClient) -> None:
    spec = {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10}
    client.post("/runs", json={"name": "ended", "lr": 0.1, "schedule": spec})
    client.get("/runs/ended/lr", params={"start": 0, "stop": 11})
    problem(client.get("/runs/ended/lr", params={"step": 11}), 422)
    change = client.post("/runs/ended/schedule", json={"schedule": {"type": "ConstantLR", "factor": 0.1}})
    assert change.status_code == 200 and change.json()["lr_before"] is None
    assert client.get("/runs/ended/lr", params={"step": 11}).json()["lr"] == pytest.approx(0.1)


# -- 3. answers computed before the write, and off the event loop ----------------------------------


def test_an_answer_is_computed_before_any_write(client: TestClient, settings: Settings) -> None:
    """A step without a value is found out before the mark is touched: no UPDATE is even sent,
    and the write lock is never taken for it."""
    engine = client.app.state.serving.engine  # type: ignore[attr-defined]
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    client.post("/runs", json={"name": "g", "lr": 0.1, "schedule": {"type": "ExponentialLR", "gamma": 1.01}})
    client.post("/runs/g/scale", json={"factor": 1e300})
    statements.clear()
    problem(client.get("/runs/g/lr", params={"step": 2500}), 422)
    assert statements and not any(
        ("UPDATE RUNS" in s.upper() or "BEGIN IMMEDIATE" in s.upper()) for s in statements
    )
    statements.clear()
    assert client.get("/runs/g/lr", params={"step": 10}).status_code == 200
    assert [s for s in statements if "UPDATE RUNS" in s.upper()]  # one conditional raise


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/runs/wide/curve", {"start": 0, "stop": 100_000}, "query.stop"),
        ("/runs/wide/lr", {"start": 0, "stop": 10_000}, "query.stop"),
    ],
)
def test_the_work_of_one_request_is_bounded_by_points_and_groups(
    client: TestClient, path: str, params: dict[str, int], field: str
) -> None:
    client.post("/runs", json={"name": "wide", "lrs": [0.1] * 64, "schedule": STEP_LR})
    body = problem(client.get(path, params=params), 422, field)
    assert "64 param groups" in body["detail"]
    assert mark(client, "wide") == -1
    assert client.get(path, params={"start": 0, "stop": 1000}).status_code == 200
    preview = {"lrs": [0.1] * 64, "schedule": STEP_LR, "start": 0, "stop": 100_000}
    problem(client.post("/schedules/preview", json=preview), 422, "body.stop")


def test_specs_are_bounded_in_size(client: TestClient) -> None:
    huge = {"type": "StepLR", "step_size": 10, "comment": "x" * 70_000}
    for response in (
        client.post("/runs", json={"name": "big", "lrs": [0.1] * 64, "schedule": huge}),
        client.post("/schedules/preview", json={"lrs": [0.1] * 64, "schedule": huge}),
    ):
        body = problem(response, 422, "body.schedule")
        assert "65536 bytes" in str(body["errors"])
    client.post("/runs", json={"name": "small", "lr": 0.1, "schedule": STEP_LR})
    body = problem(client.post("/runs/small/schedule", json={"schedule": huge}), 422, "body.schedule")
    assert "65536 bytes" in str(body["errors"])


# -- 4. label filters in SQL; per-token limits ------------------------------------------------------


def test_label_filters_are_exact_for_any_key(client: TestClient, settings: Settings) -> None:
    labels = [{'we"ird': "v"}, {"a.b": "x y"}, {"team": "a", "it's": "1"}, {"team": "b"}, {"$[0]": "v"}]
    for i, label in enumerate(labels):
        client.post("/runs", json={"name": f"r{i}", "lr": 0.1, "schedule": STEP_LR, "labels": label})
    engine = client.app.state.runs.engine  # type: ignore[attr-defined]
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    def names(*filters: str) -> list[str]:
        page = client.get("/runs", params={"label": list(filters)}).json()
        return [run["name"] for run in page["runs"]]

    assert names('we"ird=v') == ["r0"] and names("a.b=x y") == ["r1"] and names("$[0]=v") == ["r4"]
    assert names("team=a", "it's=1") == ["r2"] and names("team=a", "it's=2") == []
    assert names("team=b") == ["r3"] and names("team=") == []
    listing = [s for s in statements if "FROM runs" in s and "ORDER BY runs.name" in s]
    assert listing and all("LIMIT" in s and ("json_each" in s or "->>" in s) for s in listing)


def test_writes_and_creations_are_rate_limited_per_token(database_url: str) -> None:
    settings = Settings(
        database_url=database_url,
        auth="off",
        allowed_hosts=["testserver"],
        write_rate=0.5,
        write_burst=4,
        create_burst=2,
    )
    with TestClient(create_app(settings)) as client:
        for name in ("a", "b"):  # each creation is a write too
            assert (
                client.post("/runs", json={"name": name, "lr": 0.1, "schedule": STEP_LR}).status_code == 201
            )
        limited = client.post("/runs", json={"name": "c", "lr": 0.1, "schedule": STEP_LR})
        body = problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1 and "LRTOWER_CREATE_RATE" in body["detail"]
        assert client.post("/runs/a/metrics", json={"step": 1, "value": 1.0}).status_code == 200
        refused = client.post("/runs/a/metrics", json={"step": 2, "value": 1.0})
        assert problem(refused, 429)["retry_after"] == int(refused.headers["retry-after"])
        assert client.get("/runs/a/lr", params={"step": 1}).status_code == 200  # reads are not limited
        assert "c" not in [r["name"] for r in client.get("/runs").json()["runs"]]


# -- 6. a caller that leaves is not an error ---------------------------------------------------------


@pytest.mark.slow
def test_a_client_that_leaves_mid_request_or_mid_answer_logs_no_error(
    tmp_path: Path, database_url: str
) -> None:
    log = tmp_path / "stderr.log"
    server = launch(tmp_path, database_url, log=log)
    try:
        spec = {"type": "CosineAnnealingLR", "T_max": 1000}
        created = httpx.post(f"{server.url}/runs", json={"name": "d", "lr": 0.1, "schedule": spec})
        assert created.status_code == 201
        port = int(server.url.rsplit(":", 1)[1])
        partial_body = b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"step":'
        for head in (
            b"POST /ui/runs/d/scale HTTP/1.1\r\nHost: 127.0.0.1\r\n" + partial_body,
            b"POST /runs/d/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n" + partial_body,
            b"GET /runs/d/lr?start=0&stop=9000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"GET /runs/d/curve?start=0&stop=100000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", port)) as connection:
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
                connection.sendall(head)
                time.sleep(0.2)
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(1.0)
        assert httpx.get(f"{server.url}/runs/d/lr", params={"step": 3}).status_code == 200  # still serving
    finally:
        server.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines and not [line for line in lines if line["level"] in ("error", "critical")], lines


def test_a_long_answer_does_not_hold_the_event_loop(server: str) -> None:
    """100,000 steps of 3 param groups at or below the mark, asked afresh, are computed in a worker
    thread: /healthz, asked just after, is answered first (it used to wait for the whole range).
    Three groups, so that the answer takes long enough (about half a second, with its 300,000
    floats) to still be on its way when /healthz is asked, now that a range is computed in one pass."""
    spec = {"type": "CosineAnnealingLR", "T_max": 1000}
    body = {"name": "long", "lrs": [0.1, 0.2, 0.3], "schedule": spec}
    assert httpx.post(f"{server}/runs", json=body).status_code == 201
    for start in range(0, 100_000, 10_000):  # raise the mark to 100,000, one reach at a time
        assert (
            httpx.get(f"{server}/runs/long/lr", params={"start": start, "stop": start + 10_000}).status_code
            == 200
        )
    finished: dict[str, float] = {}

    def long_range() -> None:
        response = httpx.get(f"{server}/runs/long/lr", params={"start": 0, "stop": 100_000}, timeout=60)
        assert response.status_code == 200 and len(response.json()["steps"]) == 100_000
        finished["range"] = time.monotonic()

    worker = threading.Thread(target=long_range)
    worker.start()
    time.sleep(0.1)
    assert httpx.get(f"{server}/healthz", timeout=60).status_code == 200
    finished["healthz"] = time.monotonic()
    worker.join()
    assert finished["healthz"] < finished["range"]
