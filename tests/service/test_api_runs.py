"""The runs API through the ASGI app, on a migrated SQLite file per test."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lrtower_server.api.fastpath import ENTRY_BYTES
from lrtower_server.core.config import Settings
from lrtower_server.schedules import build_schedule

WARMUP_COSINE = {
    "type": "SequentialLR",
    "schedulers": [
        {"type": "LinearLR", "start_factor": 0.1, "total_iters": 10},
        {"type": "CosineAnnealingLR", "T_max": 90},
    ],
    "milestones": [10],
}


def create(client: TestClient, name: str = "job-1", **body: Any) -> Any:
    return client.post("/runs", json={"name": name, "lr": 0.1, "schedule": WARMUP_COSINE, **body})


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def test_create_and_read_a_run(client: TestClient) -> None:
    response = create(client, labels={"team": "vision"})
    assert response.status_code == 201
    run = response.json()
    assert run["name"] == "job-1" and run["lrs"] == [0.1] and run["high_water"] == -1
    assert client.get("/runs/job-1").json() == run


def test_creating_again_is_idempotent_and_a_different_definition_conflicts(client: TestClient) -> None:
    first = create(client).json()
    again = create(client)
    assert again.status_code == 200 and again.json() == first
    body = assert_problem(create(client, lr=0.2), 409)
    assert body["high_water"] == -1


def test_lr_equals_the_engine_and_text_plain(client: TestClient) -> None:
    create(client)
    engine = build_schedule(WARMUP_COSINE, [0.1])
    for step in (0, 5, 10, 50, 99, 5000):
        body = client.get("/runs/job-1/lr", params={"step": step}).json()
        assert body == {
            "run": "job-1",
            "attempt": 1,
            "step": step,
            "lr": engine.at(step)[0][0],
            "lrs": engine.at(step)[0],
            "momentum": None,
        }
    far = client.get("/runs/job-1/curve", params={"start": 10**12, "stop": 10**12 + 1}).json()
    assert far["lr"] == [engine.at(10**12)[0][0]]
    text = client.get("/runs/job-1/lr", params={"step": 5}, headers={"accept": "text/plain"})
    assert text.headers["content-type"].startswith("text/plain")
    assert float(text.text) == engine.at(5)[0][0] and text.headers["lrtower-attempt"] == "1"


def test_ranges_are_served_and_curves_are_not(client: TestClient) -> None:
    create(client, name="r", lrs=[0.1, 0.01], lr=None)
    curve = client.get("/runs/r/curve", params={"start": 0, "stop": 20}).json()
    assert len(curve["steps"]) == 20 and len(curve["lrs"][0]) == 2
    assert client.get("/runs/r").json()["high_water"] == -1
    served = client.get("/runs/r/lr", params={"start": 10, "stop": 30, "stride": 5}).json()
    assert served["steps"] == [10, 15, 20, 25]
    assert served["lr"] == [row[0] for row in served["lrs"]]
    assert client.get("/runs/r").json()["high_water"] == 25


def test_the_mark_only_rises(client: TestClient) -> None:
    create(client)
    client.get("/runs/job-1/lr", params={"step": 50})
    client.get("/runs/job-1/lr", params={"step": 7})
    assert client.get("/runs/job-1").json()["high_water"] == 50


def test_momentum_is_part_of_the_answer(client: TestClient) -> None:
    spec = {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 100}
    client.post("/runs", json={"name": "one", "lr": 0.1, "schedule": spec})
    body = client.get("/runs/one/lr", params={"step": 10}).json()
    assert body["momentum"] == build_schedule(spec, [0.1]).at(10)[1]


def test_list_pages_and_filters_by_label(client: TestClient) -> None:
    for i in range(5):
        create(client, name=f"run-{i}", labels={"team": "a" if i % 2 else "b"})
    page = client.get("/runs", params={"limit": 2}).json()
    assert [r["name"] for r in page["runs"]] == ["run-0", "run-1"] and page["next_after"] == "run-1"
    rest = client.get("/runs", params={"after": "run-1"}).json()
    assert [r["name"] for r in rest["runs"]] == ["run-2", "run-3", "run-4"] and rest["next_after"] is None
    team_a = client.get("/runs", params={"label": "team=a"}).json()
    assert [r["name"] for r in team_a["runs"]] == ["run-1", "run-3"]


def test_preview_stores_nothing(client: TestClient) -> None:
    body = client.post(
        "/schedules/preview", json={"lr": 1.0, "schedule": {"type": "StepLR", "step_size": 2}, "stop": 6}
    ).json()
    assert body["lr"] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert client.get("/runs").json()["runs"] == []


@pytest.mark.parametrize(
    ("request_args", "status", "field"),
    [
        ({"json": {"name": "bad name!", "lr": 0.1, "schedule": WARMUP_COSINE}}, 422, "body.name"),
        ({"json": {"name": "x", "lr": -1, "schedule": WARMUP_COSINE}}, 422, "body.lr"),
        ({"json": {"name": "x", "lr": 0.1, "schedule": WARMUP_COSINE, "sheduel": 1}}, 422, "body.sheduel"),
        (
            {"json": {"name": "x", "lr": 0.1, "schedule": {"type": "StepLR", "step_size": 0}}},
            422,
            "body.schedule.step_size",
        ),
        ({"json": {"name": "x", "lr": 0.1, "schedule": {"type": "Nope"}}}, 422, "body.schedule.type"),
        ({"json": {"name": "x", "lr": 0.1, "lrs": [0.1], "schedule": WARMUP_COSINE}}, 422, "body"),
        (
            {
                "json": {
                    "name": "x",
                    "lrs": [0.1, 0.2],
                    "schedule": WARMUP_COSINE,
                    "plateau": {"min_lr": [0, 0, 0]},
                }
            },
            422,
            "body.plateau.min_lr",
        ),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, None),
    ],
)
def test_bad_creations_name_the_field(
    client: TestClient, request_args: dict[str, Any], status: int, field: str | None
) -> None:
    assert_problem(client.post("/runs", **request_args), status, field)


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"step": -1}, 422, "query.step"),
        ({"step": 2**53 + 1}, 422, "query.step"),
        ({"step": 1.5}, 422, "query.step"),
        ({"step": "nan"}, 422, "query.step"),
        ({"start": 10}, 422, "query.stop"),
        ({"start": 10, "stop": 5}, 422, "query.stop"),
        ({"start": 0, "stop": 100_001}, 422, "query.stop"),
    ],
)
def test_bad_steps(client: TestClient, params: dict[str, Any], status: int, field: str) -> None:
    create(client)
    assert_problem(client.get("/runs/job-1/lr", params=params), status, field)


def test_unknown_run_and_step_without_value(client: TestClient) -> None:
    assert_problem(client.get("/runs/nope/lr", params={"step": 1}), 404)
    assert_problem(client.get("/runs/nope"), 404)
    client.post(
        "/runs",
        json={"name": "one", "lr": 0.1, "schedule": {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10}},
    )
    body = assert_problem(client.get("/runs/one/lr", params={"step": 11}), 422)
    assert body["step"] == 11
    assert client.get("/runs/one").json()["high_water"] == -1  # a step without a value is not served


def test_audit_trail_starts_with_creation(client: TestClient, settings: Any) -> None:
    from sqlalchemy import text

    from lrtower_server.db.engine import make_engine

    create(client)
    engine = make_engine(settings)
    with engine.connect() as connection:
        row = connection.execute(text("SELECT kind, actor, seq, lr_after FROM events")).one()
    engine.dispose()
    assert (row.kind, row.actor, row.seq) == ("run_created", "anonymous", 1)
    # SQLite hands JSON columns back as text through a raw query; PostgreSQL, decoded.
    lr_after = json.loads(row.lr_after) if isinstance(row.lr_after, str) else row.lr_after
    assert math.isclose(lr_after[0], 0.01)


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def test_oversized_bodies_get_413_and_the_server_keeps_serving(client: TestClient) -> None:
    huge = (
        b'{"name": "x", "lr": 0.1, "schedule": {"type": "StepLR", "step_size": 1}, "labels": {"a": "'
        + b"x" * 2_000_000
        + b'"}}'
    )
    response = client.post("/runs", content=huge, headers={"content-type": "application/json"})
    assert_problem(response, 413)

    def chunks() -> Any:
        yield b'{"name": "x", "lr": 0.1, "schedule": '
        for _ in range(300):
            yield b" " * 10_000
        yield b'{"type": "StepLR", "step_size": 1}}'

    streamed = client.post("/runs", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(streamed, 413)
    assert client.get("/healthz").status_code == 200


def test_hostile_specs_are_422_not_500(client: TestClient) -> None:
    nested: Any = {"type": "StepLR", "step_size": 1}
    for _ in range(30):
        nested = {"type": "ChainedScheduler", "schedulers": [nested]}
    bombs = [
        {"type": "LambdaLR", "lr_lambda": "9**9**9"},
        {"type": "LambdaLR", "lr_lambda": "__import__('os').system('true')"},
        {"type": "LambdaLR", "lr_lambda": "(" * 5000 + "epoch" + ")" * 5000},
        {"type": "MultiStepLR", "milestones": list(range(20_000))},
        {"type": "StepLR", "step_size": 10**30},
        nested,
    ]
    for spec in bombs:
        response = client.post("/runs", json={"name": "bomb", "lr": 0.1, "schedule": spec})
        assert_problem(response, 422)
        # The engine names the field inside the spec; a spec over the size limit is refused whole.
        assert response.json()["errors"][0]["field"].startswith("body.schedule")


GARBAGE: list[Any] = [
    None,
    [],
    "x",
    -1,
    1.5,
    10**400,
    {"a": [1] * 10},
    {"schedule": None},
    {"factor": "1"},
    {"step": True, "value": 1.0},
    {"step": 1, "value": 1e308, "name": ""},
    {"from_step": -5, "factor": 0.5},
    {"schedule": {"type": "StepLR", "step_size": 1}, "from_step": 2**60},
    {"state": "deleted"},
    {"name": "é" * 200, "lr": 0.1, "schedule": {}},
]
WRITES = [
    "/runs",
    "/runs/job-1/metrics",
    "/runs/job-1/schedule",
    "/runs/job-1/scale",
    "/runs/job-1/state",
    "/schedules/preview",
]
READS = [
    "/runs?limit=0",
    "/runs?limit=abc",
    "/runs?label=novalue",
    "/runs?after=%00",
    "/runs/job-1/lr?step=1.5",
    "/runs/job-1/lr?step=9999999999999999999999",
    "/runs/job-1/lr?start=-1&stop=5",
    "/runs/job-1/lr?start=0&stop=10&stride=0",
    "/runs/job-1/curve?start=5&stop=5",
    "/runs/job-1/events?after=-1",
    "/runs/job-1/events?limit=100000",
    "/runs/%2e%2e/lr?step=1",
    "/runs/" + "x" * 5000 + "/lr?step=1",
]


def test_garbage_anywhere_is_a_4xx_problem(client: TestClient) -> None:
    create(client)
    for path in WRITES:
        for body in GARBAGE:
            response = client.post(path, json=body)
            assert 400 <= response.status_code < 500, (path, body, response.text)
            assert response.headers["content-type"] == "application/problem+json", (path, body)
    for path in READS:
        response = client.get(path)
        assert 400 <= response.status_code < 500, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json", path
    assert client.get("/runs/job-1/lr", params={"step": 3}).status_code == 200  # still serving


def test_steps_at_or_below_the_mark_are_answered_without_the_database(client: TestClient) -> None:
    from sqlalchemy import event

    create(client)
    client.get("/runs/job-1/lr", params={"step": 100})  # raises the mark to 100
    statements: list[str] = []
    engine = client.app.state.engine  # type: ignore[attr-defined]
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    for step in (0, 37, 100):
        assert client.get("/runs/job-1/lr", params={"step": step}).status_code == 200
    assert client.get("/runs/job-1/lr", params={"start": 50, "stop": 101}).status_code == 200
    assert statements == []
    client.get("/runs/job-1/lr", params={"step": 101})  # above the mark: one transaction raises it
    assert any("UPDATE RUNS" in s.upper() for s in statements)


def test_the_hot_path_answers_exactly_as_the_route(settings: Settings) -> None:
    """GET /runs/{run}/lr is met by the ASGI hot path; the FastAPI route behind it must give the
    same answers, so both are asked the same queries (the route through FastAPI's own stack)."""
    from functools import partial

    from fastapi import FastAPI

    from lrtower_server.api.app import create_app

    app = create_app(settings)
    cycling = {"type": "OneCycleLR", "max_lr": [0.1, 0.01], "total_steps": 1000}
    with TestClient(app) as hot:
        route = TestClient(partial(FastAPI.__call__, app))
        step_lr = {"type": "StepLR", "step_size": 10, "gamma": 0.5}
        assert hot.post("/runs", json={"name": "one", "lr": 0.1, "schedule": step_lr}).status_code == 201
        assert (
            hot.post("/runs", json={"name": "two", "lrs": [0.1, 0.01], "schedule": cycling}).status_code
            == 201
        )
        queries = [
            ("one", {"step": 7}),
            ("one", {"step": 12}),
            ("one", {"start": 0, "stop": 40, "stride": 3}),
            ("two", {"step": 500}),
            ("two", {"start": 10, "stop": 20}),
            ("one", {"start": 5, "stop": 6}),
        ]
        for run, params in queries:
            fast, slow = (
                hot.get(f"/runs/{run}/lr", params=params),
                route.get(f"/runs/{run}/lr", params=params),
            )
            assert fast.status_code == slow.status_code == 200
            # One writer of the answer (wire.py): the same bytes, not only the same JSON.
            assert (
                fast.content == slow.content and fast.headers["content-type"] == slow.headers["content-type"]
            )
        text = {"accept": "text/plain"}
        assert (
            hot.get("/runs/two/lr", params={"step": 3}, headers=text).text
            == route.get("/runs/two/lr", params={"step": 3}, headers=text).text
        )
        # What the hot path does not handle, the route answers as ever.
        for params, status in (
            ({"step": "x"}, 422),
            ({"start": 5}, 422),
            ({"step": 2**53 + 1}, 422),
            ({}, 422),
            ({"step": 3, "start": 1}, 422),
        ):
            fast, slow = hot.get("/runs/one/lr", params=params), route.get("/runs/one/lr", params=params)
            assert fast.status_code == slow.status_code == status and fast.json() == slow.json()
        # Sloppy numbers and repeated parameters are refused alike by both (item by item, raw).
        for query in SLOPPY_QUERIES:
            fast, slow = hot.get(f"/runs/one/lr?{query}"), route.get(f"/runs/one/lr?{query}")
            assert fast.status_code == slow.status_code == 422, query
            assert fast.json() == slow.json()
        # A whole number written as JSON writes numbers is that step, on both paths.
        for written in ("7.0", "7e0", "70e-1", "0.7E1", "007"):
            fast, slow = hot.get(f"/runs/one/lr?step={written}"), route.get(f"/runs/one/lr?step={written}")
            assert fast.json() == slow.json() == hot.get("/runs/one/lr", params={"step": 7}).json(), written
        # Past the reach of one request: the same 422 from both, and the mark has not moved.
        mark = hot.get("/runs/one").json()["high_water"]
        far = {"step": mark + 10_001}
        fast, slow = hot.get("/runs/one/lr", params=far), route.get("/runs/one/lr", params=far)
        assert fast.status_code == slow.status_code == 422 and fast.json() == slow.json()
        assert hot.get("/runs/one").json()["high_water"] == mark
        assert hot.get("/runs/nope/lr", params={"step": 1}).status_code == 404
        assert hot.get("/runs/two/lr", params={"step": 5000}).json()["type"].endswith("no-value")


SLOPPY_QUERIES = [
    "step=5_0",
    "step=%2B5",
    "step=+5",
    "step=%205",
    "step=5%20",
    "step=0x10",
    "step=2.5",
    "step=1e-1",
    "step=1e400",
    "step=5.",
    "step=.5",
    "step=1e",
    "step=--5",
    "step=%D9%A3",  # an Arabic-Indic digit, which int() reads as 3
    "step=5&step=6",
    "start=1&stop=5&start=2",
    "start=1&stop=9&stride=0",
    "start=1&stop=9&stride=2_0",
    "step=",
    "step=99999999999999999999",
]


def test_readyz_says_when_the_database_is_not_migrated(client: TestClient, settings: Settings) -> None:
    from sqlalchemy import create_engine, text

    assert client.get("/readyz").status_code == 200
    engine = create_engine(settings.database_url)
    with engine.begin() as db:
        version = db.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        db.execute(text("DELETE FROM alembic_version"))
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.headers["content-type"] == "application/problem+json"
    assert "latest migration" in not_ready.json()["detail"]
    with engine.begin() as db:
        db.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": version})
    engine.dispose()
    assert client.get("/readyz").status_code == 200


def test_the_run_cache_is_bounded_and_an_evicted_run_answers_the_same(settings: Settings) -> None:
    from lrtower_server.core.runs import Runs
    from lrtower_server.core.serving import Limits, Serving
    from lrtower_server.db.engine import make_engine
    from lrtower_server.schemas import RunCreate

    engine = make_engine(settings)
    runs, serving = Runs(engine), Serving(engine, Limits(cache_runs=2))
    spec = {"type": "StepLR", "step_size": 3, "gamma": 0.5}
    for name in ("a", "b", "c"):
        runs.create(RunCreate(name=name, lr=1.0, schedule=spec), "test")
    first = serving.serve("a", range(0, 8), consume=True)
    serving.serve("b", range(0, 8), consume=True)
    serving.serve("c", range(0, 8), consume=True)
    assert serving.cached_runs == 2 and serving.known("a", range(0, 8)) is None  # "a" went first
    assert serving.serve("a", range(0, 8), consume=True) == first  # read back from the database, unchanged
    engine.dispose()


def test_the_hot_path_keeps_at_most_its_bound_of_answers(settings: Settings) -> None:
    from lrtower_server.api.app import create_app

    app = create_app(settings)
    app.hot_path._cache_bytes = 8000  # about 30 answers' worth, each counted with its key and overhead
    with TestClient(app) as client:
        client.post("/runs", json={"name": "b", "lr": 0.1, "schedule": {"type": "StepLR", "step_size": 10}})
        answers = {step: client.get("/runs/b/lr", params={"step": step}).json() for step in range(40)}
        kept = app.hot_path._sent
        assert 0 < app.hot_path._sent_bytes <= 8000 and 0 < len(kept) < 40
        assert app.hot_path._sent_bytes == sum(len(k) + len(v) + ENTRY_BYTES for k, v in kept.items())
        assert all(client.get("/runs/b/lr", params={"step": s}).json() == answers[s] for s in range(40))
