"""POST /runs/{run}/fallbacks: what a job ran during an outage, recorded in the audit trail and,
for steps nobody was served, as their record: /lr, /curve and the chart answer what ran."""

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
    assert result["recorded"] == [{"from_step": 50, "to_step": 120}] and result["high_water"] == 120

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
    assert details["recorded"] == result["recorded"]
    assert client.get("/runs/job/events/verify").json()["ok"] is True

    markers = client.get("/ui/runs/job/chart.json").json()["markers"]
    assert [m["step"] for m in markers if m["kind"] == "fallback"] == [50]
    # Steps 50-120 answer what ran, everywhere; step 121 on, the plan again.
    curve = client.get("/runs/job/curve", params={"start": 45, "stop": 125}).json()
    ran = [[lr, lrs[1]] for lr, lrs in zip(curve["lr"], curve["lrs"], strict=True)]
    assert ran[:5] == [pytest.approx(planned(s), rel=1e-12) for s in range(45, 50)]
    assert ran[5:76] == [held] * 71
    assert ran[76:] == [pytest.approx(planned(s), rel=1e-12) for s in range(121, 125)]
    assert client.get("/runs/job/lr", params={"step": 60}).json()["lrs"] == held
    chart = client.get("/ui/runs/job/chart.json", params={"start": 0, "stop": 200}).json()
    assert chart["high_water"] == 120
    # They count as served: a change can only take effect after them.
    late = client.post("/runs/job/scale", json={"factor": 0.5, "from_step": 100})
    assert late.status_code == 409 and late.json()["high_water"] == 120
    assert client.get("/runs/job").json()["high_water"] == 120


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


def test_a_second_rank_reporting_the_same_stretch_agrees_with_the_record(client: TestClient) -> None:
    """Every rank was cut off: the first report is the record, the next ones are compared with it."""
    assert client.post("/runs", json=RUN).status_code == 201
    assert client.get("/runs/job/lr", params={"start": 0, "stop": 50}).status_code == 200
    held = planned(49)
    first = report(client, {"rank": 0, "stretches": [{"from_step": 50, "to_step": 90, "lrs": held}]}).json()
    assert first["recorded"] == [{"from_step": 50, "to_step": 90}]
    second = report(client, {"rank": 1, "stretches": [{"from_step": 50, "to_step": 95, "lrs": held}]}).json()
    assert second["diverged"] is False and second["recorded"] == [{"from_step": 91, "to_step": 95}]
    other = [lr * 2 for lr in held]
    third = report(client, {"rank": 2, "stretches": [{"from_step": 60, "to_step": 70, "lrs": other}]}).json()
    assert third["diverged"] is True and third["recorded"] == []
    assert [(d["from_step"], d["to_step"], d["served_lrs"]) for d in third["divergence"]] == [(60, 70, held)]
    assert client.get("/runs/job/lr", params={"step": 65}).json()["lrs"] == held  # the record stays


def test_a_divergence_is_named_on_every_lr_answer_of_the_run(client: TestClient) -> None:
    assert client.post("/runs", json=RUN).status_code == 201
    assert client.post("/runs", json={**RUN, "name": "other"}).status_code == 201
    served = client.get("/runs/job/lr", params={"start": 0, "stop": 100})
    assert "lrtower-divergence" not in served.headers
    calm = report(client, {"stretches": [{"from_step": 10, "to_step": 10, "lrs": planned(10)}]}).json()
    assert calm["diverged"] is False
    assert "lrtower-divergence" not in client.get("/runs/job/lr", params={"step": 10}).headers
    diverging = {"rank": 1, "stretches": [{"from_step": 20, "to_step": 30, "lrs": planned(5)}]}
    seq = report(client, diverging).json()["seq"]
    asked = [
        ({"step": 5}, {}),  # kept bytes of a served step
        ({"start": 0, "stop": 100}, {}),  # a kept range
        ({"start": 100, "stop": 164}, {}),  # new steps: the mark rises
        ({"step": 7}, {"accept": "text/plain"}),  # text, which also names the attempt
        ({"step": 8, "attempt": 1}, {}),
    ]
    for params, headers in asked:
        answer = client.get("/runs/job/lr", params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["lrtower-divergence"] == str(seq), params
    text = client.get("/runs/job/lr", params={"step": 7}, headers={"accept": "text/plain"})
    assert text.headers["lrtower-attempt"] == "1"
    assert "lrtower-divergence" not in client.get("/runs/other/lr", params={"step": 5}).headers
    later = report(client, {"stretches": [{"from_step": 40, "to_step": 41, "lrs": planned(0)}]}).json()["seq"]
    assert client.get("/runs/job/lr", params={"step": 5}).headers["lrtower-divergence"] == str(later)


def test_a_rewind_or_fork_inside_a_stretch_keeps_its_steps_up_to_there(client: TestClient) -> None:
    assert client.post("/runs", json=RUN).status_code == 201
    assert client.get("/runs/job/lr", params={"start": 0, "stop": 50}).status_code == 200
    held = planned(49)
    report(client, {"stretches": [{"from_step": 50, "to_step": 120, "lrs": held}]})

    forked = client.post("/runs/job/fork", json={"name": "branch", "at_step": 80})
    assert forked.status_code == 201, forked.text
    rewound = client.post(
        "/runs/job/rewind", json={"to_step": 80, "reason": "resumed from the step-80 checkpoint"}
    )
    assert rewound.status_code == 200, rewound.text
    assert rewound.json()["version"] == client.get("/runs/job").json()["version"]  # the record's copy counted
    for run in ("job", "branch"):
        curve = client.get(f"/runs/{run}/curve", params={"start": 78, "stop": 83}).json()
        assert [lrs for lrs in curve["lrs"]][:3] == [held] * 3, run  # steps 78-80: what ran
        assert curve["lrs"][3:] == [pytest.approx(planned(s), rel=1e-12) for s in (81, 82)], run
    assert client.get("/runs/job").json()["high_water"] == 80
    # The discarded attempt is drawn as it answered: what ran, up to 120.
    chart = client.get("/ui/runs/job/chart.json", params={"start": 0, "stop": 200}).json()
    (branch,) = [b for b in chart["branches"] if b["kind"] == "attempt"]
    tail = dict(zip(branch["steps"], branch["lrs"][0], strict=True))
    assert tail[100] == held[0] and tail[120] == held[0]
    # Rewound below the stretch: none of it is left.
    assert client.post("/runs/job/rewind", json={"to_step": 40, "reason": "again"}).status_code == 200
    curve = client.get("/runs/job/curve", params={"start": 60, "stop": 61}).json()
    assert curve["lrs"] == [pytest.approx(planned(60), rel=1e-12)]


def test_a_stretch_records_the_momentum_it_ran_or_else_the_plans(client: TestClient) -> None:
    cycled = {
        "name": "job",
        "lrs": [0.01],
        "schedule": {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 1000},
    }
    assert client.post("/runs", json=cycled).status_code == 201
    assert client.get("/runs/job/lr", params={"start": 0, "stop": 10}).status_code == 200
    body = {
        "stretches": [
            {"from_step": 10, "to_step": 19, "lrs": [0.02], "momentum": [0.9]},
            {"from_step": 20, "to_step": 29, "lrs": [0.03]},
        ]
    }
    assert report(client, body).status_code == 200
    curve = client.get("/runs/job/curve", params={"start": 10, "stop": 30}).json()
    planned_momentum = client.get("/runs/job/curve", params={"start": 30, "stop": 31}).json()["momentum"]
    assert curve["lr"] == [0.02] * 10 + [0.03] * 10
    assert curve["momentum"][:10] == [[0.9]] * 10
    assert all(0.8 <= m[0] < 0.95 for m in curve["momentum"][10:]) and planned_momentum is not None
    two = {"from_step": 40, "to_step": 41, "lrs": [0.02], "momentum": [0.9, 0.8]}
    wrong = report(client, {"stretches": [two]})
    assert wrong.status_code == 422
    assert "body.stretches.0.momentum" in [e["field"] for e in wrong.json()["errors"]]
