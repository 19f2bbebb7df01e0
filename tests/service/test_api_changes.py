"""Live changes, metrics and plateau, state, and the audit trail, through the ASGI app."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from lrtower_server.core.config import Settings
from parity import assert_close

CONSTANT = {"type": "ConstantLR", "factor": 1.0, "total_iters": 1}
STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}


def make(client: TestClient, name: str = "job", **body: Any) -> None:
    response = client.post("/runs", json={"name": name, "lr": 1.0, "schedule": STEP, **body})
    assert response.status_code == 201, response.text


def lr(client: TestClient, step: int, name: str = "job") -> float:
    value: float = client.get(f"/runs/{name}/lr", params={"step": step}).json()["lr"]
    return value


def test_schedule_change_lands_above_the_mark(client: TestClient) -> None:
    make(client)
    assert lr(client, 15) == 0.5
    result = client.post(
        "/runs/job/schedule", json={"schedule": CONSTANT, "restart": True, "reason": "flat"}
    ).json()
    assert result["effective_step"] == 16 and result["lr_before"] == [0.5] and result["lr_after"] == [1.0]
    assert lr(client, 15) == 0.5  # a served step never changes
    assert lr(client, 16) == 1.0
    conflict = client.post("/runs/job/schedule", json={"schedule": CONSTANT, "from_step": 16})
    assert conflict.status_code == 409 and conflict.json()["high_water"] == 16
    assert conflict.json()["errors"][0]["field"] == "body.from_step"


def test_scale_and_future_changes(client: TestClient) -> None:
    make(client)
    assert client.post("/runs/job/scale", json={"factor": 0.1, "from_step": 100}).status_code == 200
    assert lr(client, 99) == 0.5**9 and lr(client, 100) == 0.5**10 * 0.1
    run = client.get("/runs/job").json()
    assert [c["kind"] for c in run["changes"]] == ["scale"] and run["version"] == 1


def test_bad_changes(client: TestClient) -> None:
    make(client)
    assert client.post("/runs/job/scale", json={"factor": 0}).status_code == 422
    bad = client.post("/runs/job/schedule", json={"schedule": {"type": "StepLR", "step_size": -1}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.schedule.step_size"
    assert client.post("/runs/nope/scale", json={"factor": 0.5}).status_code == 404


def test_a_change_retried_under_its_idempotency_key_applies_once(client: TestClient) -> None:
    make(client)
    key = {"Idempotency-Key": "3f1c2a7e-scale-1"}
    first = client.post("/runs/job/scale", json={"factor": 0.5, "reason": "spikes"}, headers=key)
    assert first.status_code == 200
    lr(client, first.json()["effective_step"] + 5)  # the mark moves past where the change landed
    again = client.post("/runs/job/scale", json={"factor": 0.5, "reason": "spikes"}, headers=key)
    assert again.status_code == 200 and again.json() == first.json()
    assert [c["kind"] for c in client.get("/runs/job").json()["changes"]] == ["scale"]
    assert [e["kind"] for e in client.get("/runs/job/events").json()["events"]] == ["run_created", "scaled"]
    # The same key for another change is a client bug: refused, and nothing changes.
    other = client.post("/runs/job/scale", json={"factor": 0.25}, headers=key)
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "header.Idempotency-Key"
    schedule = client.post("/runs/job/schedule", json={"schedule": CONSTANT}, headers=key)
    assert schedule.status_code == 422
    # A new key is a new change; a key is per run.
    assert (
        client.post("/runs/job/scale", json={"factor": 0.5}, headers={"Idempotency-Key": "k2"}).status_code
        == 200
    )
    make(client, "other")
    assert (
        client.post("/runs/other/scale", json={"factor": 0.5, "reason": "spikes"}, headers=key).status_code
        == 200
    )
    assert len(client.get("/runs/job").json()["changes"]) == 2


def test_a_retried_change_replays_even_after_the_run_finished(client: TestClient) -> None:
    make(client)
    key = {"Idempotency-Key": "sched-1"}
    body = {"schedule": CONSTANT, "restart": True}
    first = client.post("/runs/job/schedule", json=body, headers=key).json()
    assert client.post("/runs/job/state", json={"state": "finished"}).status_code == 200
    assert client.post("/runs/job/schedule", json=body, headers=key).json() == first
    assert client.post("/runs/job/schedule", json=body).status_code == 409


def test_bad_idempotency_keys_are_refused(client: TestClient) -> None:
    make(client)
    for key in ("", "x" * 129, "has space"):
        response = client.post("/runs/job/scale", json={"factor": 0.5}, headers={"Idempotency-Key": key})
        assert response.status_code == 422, key
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert client.get("/runs/job").json()["changes"] == []


def test_metrics_are_idempotent_and_conflict_on_another_value(client: TestClient) -> None:
    make(client, plateau={"patience": 0, "factor": 0.5})
    first = client.post("/runs/job/metrics", json={"step": 1, "value": 1.0}).json()
    again = client.post("/runs/job/metrics", json={"step": 1, "value": 1.0}).json()
    assert first == again
    other = client.post("/runs/job/metrics", json={"step": 1, "value": 2.0})
    assert other.status_code == 409 and "all-reduced" in other.json()["detail"]
    reduced = client.post("/runs/job/metrics", json={"step": 2, "value": 1.0}).json()
    assert reduced["reduced"] and reduced["effective_step"] == 2 and reduced["lr"] == 0.5
    for raw in (
        b'{"step": 3, "value": NaN}',
        b'{"step": 3, "value": Infinity}',
        b'{"step": 3, "value": "1"}',
    ):
        nan = client.post("/runs/job/metrics", content=raw, headers={"content-type": "application/json"})
        assert nan.status_code == 422 and nan.json()["errors"][0]["field"] == "body.value"


def test_a_metric_for_a_served_step_applies_after_the_mark(client: TestClient) -> None:
    make(client, plateau={"patience": 0, "factor": 0.5})
    lr(client, 40)
    client.post("/runs/job/metrics", json={"step": 1, "value": 1.0})
    answer = client.post("/runs/job/metrics", json={"step": 2, "value": 1.0}).json()
    assert answer["effective_step"] == 41 and answer["reduced"]
    assert lr(client, 40) == 0.5**4 and lr(client, 41) == 0.5**4 * 0.5


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cfg=st.fixed_dictionaries(
        {
            "mode": st.sampled_from(["min", "max"]),
            "factor": st.floats(0.1, 0.9),
            "patience": st.integers(0, 3),
            "threshold": st.sampled_from([0.0, 1e-4, 0.1]),
            "threshold_mode": st.sampled_from(["rel", "abs"]),
            "cooldown": st.integers(0, 2),
            "min_lr": st.sampled_from([0.0, 1e-3]),
        }
    ),
    values=st.lists(st.sampled_from([1.0, 0.9, 0.5, 2.0, 0.99]), min_size=1, max_size=25),
)
@pytest.mark.slow
def test_plateau_through_http_equals_torch(
    client: TestClient, cfg: dict[str, Any], values: list[float]
) -> None:
    name = f"p{abs(hash((str(cfg), str(values)))) % 10**12}"
    if client.get(f"/runs/{name}").status_code == 200:
        return  # hypothesis replayed an example this client already holds
    assert (
        client.post("/runs", json={"name": name, "lr": 0.1, "schedule": CONSTANT, "plateau": cfg}).status_code
        == 201
    )
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **cfg)
    want, got = [], []
    for step, value in enumerate(values, start=1):
        scheduler.step(value)
        want.append([optimizer.param_groups[0]["lr"]])
        client.post(f"/runs/{name}/metrics", json={"step": step, "value": value})
        got.append([lr(client, step, name)])
    assert_close("torch plateau (http)", want, got, (cfg, values))


def test_finished_runs_serve_but_take_no_changes(client: TestClient) -> None:
    make(client)
    finished = client.post("/runs/job/state", json={"state": "finished", "reason": "done"})
    assert finished.status_code == 200 and finished.json()["state"] == "finished"
    assert lr(client, 5) == 1.0
    assert client.post("/runs/job/scale", json={"factor": 0.5}).status_code == 409


def test_audit_trail_chains_and_detects_tampering(client: TestClient, settings: Settings) -> None:
    make(client, plateau={"patience": 0})
    client.post("/runs/job/scale", json={"factor": 0.5, "reason": "too hot"})
    client.post("/runs/job/metrics", json={"step": 1, "value": 1.0})
    client.post("/runs/job/metrics", json={"step": 2, "value": 1.0})
    events = client.get("/runs/job/events").json()["events"]
    assert [e["kind"] for e in events] == ["run_created", "scaled", "plateau_reduced"]
    assert events[1]["reason"] == "too hot" and events[1]["actor"] == "anonymous"
    assert events[1]["prev_hash"] == events[0]["hash"]
    assert client.get("/runs/job/events", params={"after": 1, "limit": 1}).json()["events"][0]["seq"] == 2
    assert client.get("/runs/job/events/verify").json() == {"ok": True, "count": 3, "first_bad_seq": None}

    # Edit the database behind the service's back, as someone with access to it could.
    tamper = create_engine(settings.database_url)
    with tamper.begin() as db:
        db.execute(text("UPDATE events SET reason = 'nothing to see' WHERE seq = 2"))
    assert client.get("/runs/job/events/verify").json() == {"ok": False, "count": 3, "first_bad_seq": 2}
    with tamper.begin() as db:
        db.execute(text("UPDATE events SET reason = 'too hot' WHERE seq = 2"))
        db.execute(text("DELETE FROM events WHERE seq = 1"))
    tamper.dispose()
    assert client.get("/runs/job/events/verify").json() == {"ok": False, "count": 2, "first_bad_seq": 2}
