"""POST /runs/{run}/fallbacks: what a job ran during an outage, recorded in the audit trail."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lrtower_server.core.auth import Tokens

GAMMA = 0.99
RUN = {"name": "job", "lrs": [0.1, 0.01], "schedule": {"type": "ExponentialLR", "gamma": GAMMA}}


def planned(step: int) -> list[float]:
    return [0.1 * GAMMA**step, 0.01 * GAMMA**step]


def report(client: TestClient, body: dict[str, Any], key: str | None = None, **headers: str) -> Any:
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/runs/job/fallbacks", json=body, headers=headers)


def test_a_stretch_nobody_was_served_becomes_the_record_of_its_steps(client: TestClient) -> None:
    assert client.post("/runs", json=RUN).status_code == 201
    assert client.get("/runs/job/lr", params={"start": 0, "stop": 50}).status_code == 200  # mark 49
    held = planned(49)
    body = {
        "attempt": 1,
        "stretches": [{"from_step": 50, "to_step": 120, "lrs": held}],
        "dropped_metric_posts": 3,
        "reason": "ConnectError: connection refused",
    }
    answer = report(client, body, key="outage-1")
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["diverged"] is False and result["divergence"] == [] and result["steps"] == 71

    again = report(client, body, key="outage-1")  # a retry: the same answer, no second event
    assert again.json() == result
    events = client.get("/runs/job/events").json()["events"]
    fallbacks = [e for e in events if e["kind"] == "fallback"]
    assert len(fallbacks) == 1
    (event,) = fallbacks
    assert event["seq"] == result["seq"] and event["effective_step"] == 50
    assert event["lr_after"] == held and event["lr_before"] == pytest.approx(planned(50), rel=1e-12)
    assert event["reason"] == "ConnectError: connection refused"
    details = event["details"]
    assert details["stretches"] == body["stretches"] and details["dropped_metric_posts"] == 3
    assert details["divergence"] == [] and details["high_water"] == 49 and details["rank"] is None
    assert client.get("/runs/job/events/verify").json()["ok"] is True

    markers = client.get("/ui/runs/job/chart.json").json()["markers"]
    assert [m["step"] for m in markers if m["kind"] == "fallback"] == [50]
    # /curve keeps answering the plan; the event says what ran.
    assert client.get("/runs/job/curve", params={"start": 60, "stop": 61}).json()["lr"] == [
        pytest.approx(planned(60)[0], rel=1e-12)
    ]


def test_a_stretch_over_steps_served_with_other_lrs_is_a_divergence(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    assert client.post("/runs", json=RUN).status_code == 201
    assert client.get("/runs/job/lr", params={"start": 0, "stop": 101}).status_code == 200  # another rank
    held = planned(39)
    caplog.set_level(logging.WARNING, logger="lrtower")
    body = {"rank": 3, "stretches": [{"from_step": 40, "to_step": 140, "lrs": held}]}
    result = report(client, body).json()
    assert result["diverged"] is True
    (divergence,) = result["divergence"]
    assert (divergence["from_step"], divergence["to_step"]) == (40, 100)  # 101-140: nobody was served
    assert divergence["fallback_lrs"] == held
    assert divergence["served_lrs"] == pytest.approx(planned(40), rel=1e-12)
    assert divergence["served_lrs_last"] == pytest.approx(planned(100), rel=1e-12)
    (event,) = [e for e in client.get("/runs/job/events").json()["events"] if e["kind"] == "fallback"]
    assert event["details"]["divergence"] == result["divergence"] and event["details"]["rank"] == 3
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "diverged" in r.getMessage()
    ]
    assert logged and "rank 3" in logged[0] and "steps 40-100" in logged[0]
    assert client.get("/runs/job/events/verify").json()["ok"] is True

    # The LR held equals what was served at the first steps (a constant stretch of the plan): no divergence there.
    same = report(client, {"stretches": [{"from_step": 39, "to_step": 39, "lrs": held}]}).json()
    assert same["diverged"] is False


@pytest.mark.parametrize(
    ("stretches", "field"),
    [
        ([{"from_step": -1, "to_step": 3, "lrs": [0.1, 0.01]}], "stretches.0.from_step"),
        ([{"from_step": 0, "to_step": 2**53 + 1, "lrs": [0.1, 0.01]}], "stretches.0.to_step"),
        ([{"from_step": 5, "to_step": 3, "lrs": [0.1, 0.01]}], "stretches.0.to_step"),
        ([{"from_step": 0, "to_step": 3, "lrs": [0.1, -0.5]}], "stretches.0.lrs.1"),
        ([{"from_step": 0, "to_step": 3, "lrs": [0.1, "Infinity"]}], "stretches.0.lrs.1"),
        ([{"from_step": 0, "to_step": 3, "lrs": [0.1]}], "stretches.0.lrs"),
        (
            [
                {"from_step": 0, "to_step": 9, "lrs": [0.1, 0.01]},
                {"from_step": 9, "to_step": 12, "lrs": [0.1, 0.01]},
            ],
            "stretches.1.from_step",
        ),
        ([{"from_step": s, "to_step": s, "lrs": [0.1, 0.01]} for s in range(1001)], "stretches"),
        ([{"from_step": 0, "to_step": 1, "lrs": [0.1, 0.01], "extra": 1}], "stretches.0.extra"),
    ],
)
def test_invalid_reports_name_the_field(client: TestClient, stretches: list[Any], field: str) -> None:
    assert client.post("/runs", json=RUN).status_code == 201
    answer = report(client, {"stretches": stretches})
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    assert f"body.{field}" in [e["field"] for e in answer.json()["errors"]], answer.json()
    assert [e for e in client.get("/runs/job/events").json()["events"] if e["kind"] == "fallback"] == []


def test_an_unknown_run_is_a_404(client: TestClient) -> None:
    answer = client.post("/runs/nope/fallbacks", json={"stretches": []})
    assert answer.status_code == 404


def test_reporting_needs_write_scope(secured: tuple[TestClient, Tokens]) -> None:
    client, tokens = secured
    reader = tokens.create("dashboard", "read", actor="test")[1]
    writer = tokens.create("trainer", "write", actor="test")[1]
    assert client.post("/runs", json=RUN, headers={"authorization": f"Bearer {writer}"}).status_code == 201
    body = {"stretches": [{"from_step": 0, "to_step": 3, "lrs": [0.1, 0.01]}]}
    assert report(client, body).status_code == 401
    assert report(client, body, authorization=f"Bearer {reader}").status_code == 403
    written = report(client, body, authorization=f"Bearer {writer}")
    assert written.status_code == 200
    events = client.get("/runs/job/events", headers={"authorization": f"Bearer {reader}"}).json()["events"]
    assert [e["actor"] for e in events if e["kind"] == "fallback"] == ["trainer"]
