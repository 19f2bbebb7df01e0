"""Prometheus metrics, request ids and JSON logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lrtower_server.api.observability import REQUEST_ID, JsonFormatter

STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}
LR = "/runs/{run}/lr"


def scrape(client: TestClient | httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_move_with_requests(client: TestClient) -> None:
    before = scrape(client)
    assert (
        client.post(
            "/runs", json={"name": "m", "lr": 1.0, "schedule": STEP, "plateau": {"patience": 0}}
        ).status_code
        == 201
    )
    for _ in range(3):  # the first from the database, then the bytes already sent
        assert client.get("/runs/m/lr", params={"step": 5}).status_code == 200
    assert client.get("/runs/m/lr", params={"start": 0, "stop": 4}).status_code == 200
    once = {"idempotency-key": "scale-once"}
    assert client.post("/runs/m/scale", json={"factor": 0.5}, headers=once).status_code == 200
    assert client.post("/runs/m/scale", json={"factor": 0.5}, headers=once).status_code == 200  # a replay
    assert client.post("/runs/m/scale", json={"factor": 0.5, "from_step": 1}).status_code == 409  # refused
    client.post("/runs/m/metrics", json={"step": 10, "value": 1.0})
    assert client.post("/runs/m/metrics", json={"step": 11, "value": 2.0}).json()["reduced"]
    assert client.get("/runs/nope").status_code == 404
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("lrtower_requests_total", route=LR, method="GET", status="200") == 4
    assert moved("lrtower_request_seconds_count", route=LR) == 4
    assert moved("lrtower_lr_answers_total", source="database") == 1  # step 5: the first
    assert moved("lrtower_lr_answers_total", source="sent") == 2  # step 5 again, twice
    assert moved("lrtower_lr_answers_total", source="memory") == 1  # steps 0-3: below the mark
    assert moved("lrtower_served_steps_total") == 3 + 4
    assert moved("lrtower_changes_total", kind="scale") == 1
    assert moved("lrtower_changes_total", kind="plateau") == 1
    assert moved("lrtower_requests_total", route="/runs/{run}", method="GET", status="404") == 1
    assert moved("lrtower_requests_total", route="/runs", method="POST", status="201") == 1
    assert ("lrtower_pool_checked_out", ()) in after


def test_request_ids(client: TestClient) -> None:
    made = client.get("/runs").headers["x-request-id"]
    assert len(made) == 32 and made != client.get("/runs").headers["x-request-id"]
    assert (
        client.get("/runs", headers={"x-request-id": "job-7.rank-3"}).headers["x-request-id"]
        == "job-7.rank-3"
    )
    replaced = client.get("/runs", headers={"x-request-id": "no spaces allowed"}).headers["x-request-id"]
    assert replaced != "no spaces allowed" and len(replaced) == 32
    client.post("/runs", json={"name": "ids", "lr": 1.0, "schedule": STEP})
    hot = client.get("/runs/ids/lr", params={"step": 1}, headers={"x-request-id": "abc"})
    assert hot.headers["x-request-id"] == "abc"  # the hot path echoes one, and makes none


def test_log_lines_are_json_with_the_request_id() -> None:
    record = logging.LogRecord(
        "lrtower", logging.WARNING, __file__, 1, "database unavailable: %s", ("X",), None
    )
    token = REQUEST_ID.set("req-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert line["message"] == "database unavailable: X" and line["request_id"] == "req-1"
    assert line["level"] == "warning" and line["logger"] == "lrtower" and line["time"].endswith("+00:00")


@pytest.mark.slow
def test_a_served_process_logs_json_and_adds_up_its_workers_metrics(
    tmp_path: Path, database_url: str
) -> None:
    from servers import free_port

    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "lrtower"), "serve", "--port", str(port), "--workers", "2"],
        env={"PATH": str(Path(sys.executable).parent), "LRTOWER_DATABASE_URL": database_url},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with httpx.Client(base_url=url) as client:
            client.post("/runs", json={"name": "w", "lr": 1.0, "schedule": STEP})
            before = value(scrape(client), "lrtower_served_steps_total")
            for step in range(40):  # new connections: both workers answer some
                assert httpx.get(f"{url}/runs/w/lr", params={"step": step}).status_code == 200
            time.sleep(0.5)  # each worker hands its counts over within a quarter second
            # Whichever worker answers the scrape, it counts both workers' steps.
            for _ in range(4):
                assert value(scrape(client), "lrtower_served_steps_total") - before == 40
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and all(json.loads(line)["level"] for line in lines)
    assert any("Application startup complete" in json.loads(line)["message"] for line in lines)
