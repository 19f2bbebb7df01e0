"""A run's planned length (`total_steps`): set at creation, shown by the API, validated, and the
console's default range; and the migration that added it keeps older runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from databases import BACKENDS, database
from lrtower_server.api.app import create_app
from lrtower_server.core.config import Settings
from lrtower_server.db import migrate
from lrtower_server.db.engine import make_engine
from lrtower_server.schedules import STEP_MAX

SPEC = {"type": "CosineAnnealingLR", "T_max": 300}


def create(client: TestClient, name: str = "planned", **body: Any) -> Any:
    return client.post("/runs", json={"name": name, "lr": 0.1, "schedule": SPEC, **body})


def test_a_run_created_with_total_steps_shows_it_and_one_without_shows_null(client: TestClient) -> None:
    made = create(client, total_steps=300)
    assert made.status_code == 201, made.text
    assert made.json()["total_steps"] == 300
    assert client.get("/runs/planned").json()["total_steps"] == 300
    assert [r["total_steps"] for r in client.get("/runs").json()["runs"]] == [300]
    assert create(client, "open-ended").json()["total_steps"] is None
    assert client.get("/runs/open-ended").json()["total_steps"] is None
    created = client.get("/runs/planned/events").json()["events"][0]
    assert created["kind"] == "run_created" and created["details"]["total_steps"] == 300
    assert "total_steps" not in client.get("/runs/open-ended/events").json()["events"][0]["details"]
    assert client.get("/runs/planned/events/verify").json()["ok"]


def test_a_fork_plans_its_parents_length(client: TestClient) -> None:
    create(client, total_steps=300)
    client.get("/runs/planned/lr", params={"step": 40})
    forked = client.post("/runs/planned/fork", json={"name": "branch", "at_step": 30, "reason": "try"})
    assert forked.status_code == 201, forked.text
    assert client.get("/runs/branch").json()["total_steps"] == 300


def test_the_bounds_are_one_and_one_past_the_last_step(client: TestClient) -> None:
    assert create(client, "one", total_steps=1).json()["total_steps"] == 1
    assert create(client, "most", total_steps=STEP_MAX + 1).json()["total_steps"] == STEP_MAX + 1
    assert create(client, "whole-float", total_steps=300.0).json()["total_steps"] == 300


@pytest.mark.parametrize("bad", [0, -1, STEP_MAX + 2, 1.5, "300", True, [300]])
def test_an_invalid_total_steps_is_a_422_naming_the_field(client: TestClient, bad: Any) -> None:
    response = create(client, total_steps=bad)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert "body.total_steps" in [e["field"] for e in body["errors"]], body
    assert client.get("/runs/planned").status_code == 404


def test_creating_again_with_another_total_steps_conflicts_and_omitting_it_attaches(
    client: TestClient,
) -> None:
    first = create(client, total_steps=300).json()
    again = create(client, total_steps=300)
    assert again.status_code == 200 and again.json() == first
    attached = create(client)  # a job that does not know the length attaches
    assert attached.status_code == 200 and attached.json()["total_steps"] == 300
    other = create(client, total_steps=400)
    assert other.status_code == 409 and other.headers["content-type"] == "application/problem+json"
    problem = other.json()
    assert problem["total_steps"] == 300 and "total_steps 300, not 400" in problem["detail"]
    create(client, "unplanned")
    assert create(client, "unplanned", total_steps=300).status_code == 409
    assert client.get("/runs/unplanned").json()["total_steps"] is None


def test_the_console_draws_the_planned_run_by_default(client: TestClient) -> None:
    create(client, total_steps=300)
    create(client, "long", total_steps=50_000)
    create(client, "unplanned")
    assert client.get("/runs/planned/lr", params={"step": 120}).status_code == 200
    drawn = client.get("/ui/runs/planned/chart.json").json()
    assert drawn["start"] == 0 and drawn["stop"] == 300 and drawn["steps"][-1] == 299
    assert client.get("/ui/runs/long/chart.json").json()["stop"] == 50_000
    assert client.get("/ui/runs/unplanned/chart.json").json()["stop"] == 1000  # as before: no plan
    asked = client.get("/ui/runs/planned/chart.json", params={"start": 10, "stop": 20}).json()
    assert (asked["start"], asked["stop"]) == (10, 20)
    past = client.get("/ui/runs/planned/chart.json", params={"start": 400}).json()
    assert past["stop"] > 400  # a range that starts past the plan still draws something
    assert "planned to step 300" in client.get("/ui/runs/planned/sparkline.svg").text
    assert "planned to step 50000" in client.get("/ui/runs/long/sparkline.svg").text


def test_a_job_that_runs_longer_is_answered_and_drawn_to_its_mark(client: TestClient) -> None:
    create(client, total_steps=300)
    answer = client.get("/runs/planned/lr", params={"start": 0, "stop": 451})
    assert answer.status_code == 200 and answer.json()["steps"][-1] == 450
    assert client.get("/runs/planned").json()["high_water"] == 450
    assert client.get("/ui/runs/planned/chart.json").json()["stop"] == 451


# -- the migration ----------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request, tmp_path, migrated=False) as url:
        yield url


def test_the_migration_keeps_older_runs_without_a_planned_length(empty_database: str) -> None:
    engine = make_engine(Settings(database_url=empty_database))
    migrate.upgrade(engine, "0004")
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO runs (name, lrs, spec, plateau, labels, definition_hash, state, version,"
                " high_water, attempt, created_at, updated_at) VALUES ('older', '[0.1]',"
                " '{\"type\": \"CosineAnnealingLR\", \"T_max\": 300}', NULL, '{}', :digest, 'live', 0, 41,"
                " 1, :now, :now)"
            ),
            {"digest": "0" * 64, "now": now},
        )
    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)
    with engine.begin() as connection:
        row = connection.execute(text("SELECT name, high_water, total_steps FROM runs")).one()
    assert tuple(row) == ("older", 41, None)
    engine.dispose()
    with TestClient(create_app_for(empty_database)) as client:
        shown = client.get("/runs/older").json()
        assert shown["total_steps"] is None and shown["high_water"] == 41
        assert client.get("/ui/runs/older/chart.json").json()["stop"] == 1000

    engine = make_engine(Settings(database_url=empty_database))
    migrate.downgrade(engine, "0004")
    with engine.begin() as connection:
        assert connection.execute(text("SELECT name FROM runs")).scalar_one() == "older"
    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)
    engine.dispose()


def create_app_for(url: str) -> Any:
    return create_app(Settings(database_url=url, auth="off", allowed_hosts=["testserver"]))
