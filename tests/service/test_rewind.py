"""Rewinds and forks through the ASGI app, on both databases (SPEC §4.10).

The promises, each checked against what the run answered before:
- steps 0..k answer after a rewind (and in a fork) exactly what they answered before, bit for bit;
- above k, the plan as it stood when k was the last step served: a job that replays the same
  steps and metrics gets the same answers, and the plateau decides as torch's
  ReduceLROnPlateau restored from its state_dict at k;
- every answer names its attempt; a caller pinned to an ended attempt gets a 409 naming the
  current one for steps above k, and the steps the attempts share.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from lr_references import approx

STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}
CONSTANT = {"type": "StepLR", "step_size": 100_000}
SCHEDULES = [
    STEP,
    {"type": "CosineAnnealingLR", "T_max": 40, "eta_min": 0.001},
    {"type": "ExponentialLR", "gamma": 0.97},
    {
        "type": "SequentialLR",
        "schedulers": [
            {"type": "LinearLR", "start_factor": 0.1, "total_iters": 5},
            {"type": "CosineAnnealingLR", "T_max": 50},
        ],
        "milestones": [5],
    },
    {"type": "OneCycleLR", "max_lr": 1.0, "total_steps": 500},
]
_names = itertools.count()


def _lr_range(client: TestClient, run: str, start: int, stop: int, **params: Any) -> dict[str, Any]:
    response = client.get(f"/runs/{run}/lr", params={"start": start, "stop": stop, **params})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _lrs(client: TestClient, run: str, start: int, stop: int) -> list[list[float]]:
    """Every group's LR of [start, stop), as served (the bytes' floats, so bitwise)."""
    answer = _lr_range(client, run, start, stop)
    rows: list[list[float]] = answer["lrs"] or [[lr] for lr in answer["lr"]]
    return rows


@dataclass
class Job:
    """A training job against the run: at every step, the metric of that step (if any) is posted
    first, then the step's LR is asked; an operator may scale the run at a step."""

    run: str
    metrics: dict[int, float] = field(default_factory=dict)
    scales: dict[int, float] = field(default_factory=dict)
    """Step -> factor: the operator scales the run when the job reaches that step."""

    def train(self, client: TestClient, start: int, stop: int) -> dict[int, list[float]]:
        answers = {}
        for step in range(start, stop):
            if step in self.metrics:
                posted = client.post(
                    f"/runs/{self.run}/metrics", json={"step": step, "value": self.metrics[step]}
                )
                assert posted.status_code == 200, posted.text
            answer = client.get(f"/runs/{self.run}/lr", params={"step": step}).json()
            answers[step] = answer["lrs"]
            if step in self.scales:
                scaled = client.post(f"/runs/{self.run}/scale", json={"factor": self.scales[step]})
                assert scaled.status_code == 200, scaled.text
        return answers


@st.composite
def jobs(draw: st.DrawFn) -> tuple[dict[str, Any], Job, int, int]:
    """A run's definition, a job against it, how far it trains, and the step to go back to."""
    steps = draw(st.integers(5, 45))
    plateau = {
        "metric": "loss",
        "patience": draw(st.integers(0, 2)),
        "factor": draw(st.sampled_from([0.1, 0.5])),
        "cooldown": draw(st.integers(0, 2)),
    }
    definition = {"lrs": [1.0, 0.1], "schedule": draw(st.sampled_from(SCHEDULES)), "plateau": plateau}
    every = draw(st.integers(1, 4))
    values = st.floats(0.1, 10.0, allow_nan=False, allow_infinity=False)
    job = Job(
        run=f"prop-{next(_names)}",
        metrics={s: draw(values) for s in range(every, steps, every)},
        scales={
            s: draw(st.sampled_from([0.5, 2.0])) for s in draw(st.sets(st.integers(0, steps - 1), max_size=3))
        },
    )
    return definition, job, steps, draw(st.integers(0, steps - 1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=jobs(), fork=st.booleans())
def test_going_back_keeps_every_answer_up_to_k_and_replays_the_rest(
    client: TestClient, case: tuple[dict[str, Any], Job, int, int], fork: bool
) -> None:
    definition, job, steps, k = case
    assert client.post("/runs", json={"name": job.run, **definition}).status_code == 201
    before = job.train(client, 0, steps)
    if fork:
        made = client.post(f"/runs/{job.run}/fork", json={"name": f"{job.run}-f", "at_step": k})
        assert made.status_code == 201, made.text
        job = Job(f"{job.run}-f", job.metrics, job.scales)
    else:
        rewound = client.post(f"/runs/{job.run}/rewind", json={"to_step": k, "reason": "replay"})
        assert rewound.status_code == 200, rewound.text
    # Steps 0..k: the very floats served before.
    assert _lrs(client, job.run, 0, k + 1) == [before[s] for s in range(k + 1)]
    # Above k: the job replays the same metrics and the operator the same scales (those decided
    # above k were discarded with the old future): the same answers again.
    again = job.train(client, k + 1, steps)
    assert again == {s: before[s] for s in range(k + 1, steps)}


def test_the_plateau_decides_as_torch_restored_from_its_state_dict(client: TestClient) -> None:
    config = {"patience": 1, "factor": 0.5, "cooldown": 1, "threshold": 0.01}
    first = [5.0, 4.0, 4.0, 4.5, 3.0, 3.0, 3.1, 3.2, 2.0, 2.5]
    k = 6  # the checkpoint: metrics 1..6 counted
    second = [3.5, 3.6, 3.7, 1.0, 1.0, 1.1]  # the resumed job sees other values
    job = Job("torch-restored", metrics={s: v for s, v in enumerate(first, start=1)})
    client.post(
        "/runs",
        json={"name": job.run, "lr": 0.1, "schedule": CONSTANT, "plateau": {"metric": "loss", **config}},
    )
    job.train(client, 0, len(first) + 1)
    assert client.post(f"/runs/{job.run}/rewind", json={"to_step": k, "reason": "resume"}).status_code == 200
    job.metrics = {s: v for s, v in enumerate(second, start=k + 1)}
    served = job.train(client, k + 1, k + 1 + len(second))

    optimizer = torch.optim.SGD([torch.zeros(1)], lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **config)
    for value in first[:k]:
        optimizer.step()
        plateau.step(value)
    saved = {"optimizer": optimizer.state_dict(), "plateau": plateau.state_dict()}
    optimizer = torch.optim.SGD([torch.zeros(1)], lr=0.1)
    optimizer.load_state_dict(saved["optimizer"])
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **config)
    plateau.load_state_dict(saved["plateau"])
    expected = []
    for value in second:
        optimizer.step()
        plateau.step(value)
        expected.append(optimizer.param_groups[0]["lr"])
    assert [served[s][0] for s in range(k + 1, k + 1 + len(second))] == approx(expected)
    assert len(set(expected)) > 1  # the restored plateau reduced: the check is not of a constant


def test_a_rewind_keeps_what_was_decided_by_k_and_drops_the_rest(client: TestClient) -> None:
    client.post("/runs", json={"name": "r", "lr": 1.0, "schedule": STEP})
    client.get("/runs/r/lr", params={"step": 20})
    early = client.post("/runs/r/scale", json={"factor": 0.5, "from_step": 60, "reason": "planned"}).json()
    client.get("/runs/r/lr", params={"step": 40})
    late = client.post("/runs/r/scale", json={"factor": 0.1, "reason": "spike"}).json()
    assert (early["effective_step"], late["effective_step"]) == (60, 41)
    result = client.post("/runs/r/rewind", json={"to_step": 30, "schedule": CONSTANT, "restart": True,
                                                 "scale": 0.25, "reason": "resume from ckpt 30"}).json()  # fmt: skip
    assert result["attempt"] == 2 and result["to_step"] == 30 and result["effective_step"] == 31
    assert result["dropped_changes"] == [2] and result["discarded_to"] == 40
    assert result["lr_before"] == [0.125] and result["lr_after"] == [0.25]  # 1.0 restarted, x 0.25
    run = client.get("/runs/r").json()
    assert (run["attempt"], run["high_water"]) == (2, 30)
    assert [(c["kind"], c["effective_step"]) for c in run["changes"]] == [
        ("scale", 60),  # decided at mark 20 <= 30: it stays
        ("schedule", 31),
        ("scale", 31),
    ]
    assert run["attempts"][0] | {"started_at": None} == {
        "number": 2, "rewound_to": 30, "discarded_to": 40, "actor": "anonymous",
        "reason": "resume from ckpt 30", "started_at": None,
    }  # fmt: skip
    assert _lrs(client, "r", 58, 62) == [[0.25], [0.25], [0.125], [0.125]]
    events = client.get("/runs/r/events").json()["events"]
    rewound = events[-1]
    assert rewound["kind"] == "rewound" and rewound["effective_step"] == 31
    assert rewound["lr_before"] == [0.125] and rewound["lr_after"] == [0.25]
    assert rewound["details"]["dropped_changes"] == [2] and rewound["details"]["discarded_to"] == 40
    assert client.get("/runs/r/events/verify").json()["ok"] is True


def test_answers_name_their_attempt_and_a_pinned_caller_never_gets_another(client: TestClient) -> None:
    client.post("/runs", json={"name": "p", "lr": 1.0, "schedule": STEP})
    first = client.get("/runs/p/lr", params={"step": 25, "attempt": 1}).json()
    assert first["attempt"] == 1 and first["lr"] == 0.25
    client.post("/runs/p/rewind", json={"to_step": 12, "scale": 0.5, "reason": "spike"})
    ended = client.get("/runs/p/lr", params={"step": 13, "attempt": 1})
    assert ended.status_code == 409 and ended.headers["content-type"] == "application/problem+json"
    assert ended.json()["attempt"] == 2 and ended.json()["errors"][0]["field"] == "query.attempt"
    ranged = client.get("/runs/p/lr", params={"start": 10, "stop": 14, "attempt": 1})
    assert ranged.status_code == 409
    shared = client.get("/runs/p/lr", params={"step": 12, "attempt": 1}).json()
    assert shared["attempt"] == 1 and shared["lr"] == 0.5  # both attempts answer step 12 so
    assert client.get("/runs/p/lr", params={"step": 13, "attempt": 2}).json()["lr"] == 0.25
    unpinned = client.get("/runs/p/lr", params={"step": 25}).json()
    assert unpinned["attempt"] == 2 and unpinned["lr"] == 0.125
    assert _lr_range(client, "p", 20, 22)["attempt"] == 2
    assert client.get("/runs/p/curve", params={"start": 0, "stop": 3}).json()["attempt"] == 2
    text = client.get("/runs/p/lr", params={"step": 25}, headers={"Accept": "text/plain"})
    assert text.text == "0.125" and text.headers["lrtower-attempt"] == "2"
    future = client.get("/runs/p/lr", params={"step": 26, "attempt": 3})
    assert future.status_code == 409 and future.json()["attempt"] == 2
    stale = client.post("/runs/p/metrics", json={"step": 30, "value": 1.0, "attempt": 1})
    assert stale.status_code == 409 and stale.json()["attempt"] == 2
    assert client.post("/runs/p/metrics", json={"step": 30, "value": 1.0, "attempt": 2}).status_code == 200


def test_metrics_above_k_no_longer_count_and_may_be_posted_again(client: TestClient) -> None:
    client.post(
        "/runs",
        json={"name": "m", "lr": 1.0, "schedule": CONSTANT, "plateau": {"metric": "loss", "patience": 0}},
    )
    Job("m", metrics={1: 1.0, 2: 2.0, 3: 3.0}).train(client, 0, 4)  # 2 and 3 reduce
    assert client.get("/runs/m/lr", params={"step": 3}).json()["lr"] == approx(0.01)
    result = client.post("/runs/m/rewind", json={"to_step": 1, "reason": "resume"}).json()
    assert result["dropped_metrics"] == 2 and len(result["dropped_changes"]) == 2
    again = client.post("/runs/m/metrics", json={"step": 2, "value": 0.5})  # another value than before
    assert again.status_code == 200 and again.json()["reduced"] is False
    assert client.get("/runs/m/lr", params={"step": 2}).json()["lr"] == 1.0
    replayed = client.post("/runs/m/metrics", json={"step": 1, "value": 1.0})  # counted still: a replay
    assert replayed.status_code == 200
    assert client.post("/runs/m/metrics", json={"step": 1, "value": 9.0}).status_code == 409


def test_a_fork_shares_the_parent_up_to_k_and_records_its_lineage(client: TestClient) -> None:
    client.post(
        "/runs", json={"name": "parent", "lrs": [1.0, 0.5], "schedule": STEP, "labels": {"team": "a"}}
    )
    parent_lrs = _lrs(client, "parent", 0, 31)
    head = client.get("/runs/parent/events").json()["events"][-1]["hash"]
    made = client.post(
        "/runs/parent/fork", json={"name": "child", "at_step": 20, "scale": 0.5, "reason": "half"}
    )
    assert made.status_code == 201, made.text
    child = made.json()
    assert child["fork"] == {"parent": "parent", "at_step": 20, "parent_head": head}
    assert (child["high_water"], child["attempt"], child["labels"]) == (20, 1, {"team": "a"})
    assert _lrs(client, "child", 0, 21) == parent_lrs[:21]
    assert _lrs(client, "child", 21, 23) == [[lr * 0.5 for lr in row] for row in parent_lrs[21:23]]
    assert _lrs(client, "parent", 21, 23) == parent_lrs[21:23]  # the parent is untouched
    created = client.get("/runs/child/events").json()["events"]
    assert [e["kind"] for e in created] == ["run_created"]
    assert created[0]["details"]["fork"] == child["fork"] and created[0]["reason"] == "half"
    assert created[0]["lr_before"] == parent_lrs[21] and created[0]["lr_after"] == [0.125, 0.0625]
    forked = client.get("/runs/parent/events").json()["events"][-1]
    assert (
        forked["kind"] == "forked" and forked["details"]["fork"] == "child" and forked["effective_step"] == 21
    )
    again = client.post(
        "/runs/parent/fork", json={"name": "child", "at_step": 20, "scale": 0.5, "reason": "x"}
    )
    assert again.status_code == 200 and again.json()["name"] == "child"
    other = client.post("/runs/parent/fork", json={"name": "child", "at_step": 19})
    assert other.status_code == 409
    for run in ("parent", "child"):
        assert client.get(f"/runs/{run}/events/verify").json()["ok"] is True


def test_bad_rewinds_and_forks_are_named_problems(client: TestClient) -> None:
    client.post("/runs", json={"name": "b", "lr": 1.0, "schedule": STEP})
    client.get("/runs/b/lr", params={"step": 10})
    checks: list[tuple[str, dict[str, Any], int, str]] = [
        ("rewind", {"to_step": 11, "reason": "x"}, 409, "body.to_step"),
        ("rewind", {"to_step": 5}, 422, "body.reason"),
        ("rewind", {"to_step": -1, "reason": "x"}, 422, "body.to_step"),
        ("rewind", {"to_step": 5, "reason": "x", "restart": True}, 422, "body"),
        ("rewind", {"to_step": 5, "reason": "x", "scale": 0}, 422, "body.scale"),
        ("rewind", {"to_step": 5, "reason": "x", "schedule": {"type": "StepLR"}}, 422, "body.schedule.step_size"),
        ("rewind", {"to_step": 5, "reason": "x", "scale": 1e308, "schedule": {"type": "ConstantLR", "factor": 1.0, "total_iters": 1}}, 200, ""),
        ("fork", {"name": "c", "at_step": 11}, 409, "body.at_step"),
        ("fork", {"name": "bad name", "at_step": 1}, 422, "body.name"),
        ("fork", {"name": "b", "at_step": 1}, 409, ""),
    ]  # fmt: skip
    for action, body, status, field_name in checks:
        response = client.post(f"/runs/b/{action}", json=body)
        assert response.status_code == status, (action, body, response.text)
        if field_name:
            assert field_name in [e["field"] for e in response.json()["errors"]], response.json()
    assert client.post("/runs/nope/rewind", json={"to_step": 0, "reason": "x"}).status_code == 404
    client.post("/runs/b/state", json={"state": "finished"})
    assert client.post("/runs/b/rewind", json={"to_step": 0, "reason": "x"}).status_code == 409
    assert client.post("/runs/b/fork", json={"name": "from-finished", "at_step": 3}).status_code == 201


def test_a_rewind_retried_under_its_key_starts_one_attempt(client: TestClient) -> None:
    client.post("/runs", json={"name": "k", "lr": 1.0, "schedule": STEP})
    client.get("/runs/k/lr", params={"step": 30})
    body = {"to_step": 20, "reason": "every rank asks"}
    answers = [
        client.post("/runs/k/rewind", json=body, headers={"Idempotency-Key": "resume-1-20"}).json()
        for _ in range(3)
    ]
    assert answers[0] == answers[1] == answers[2] and answers[0]["attempt"] == 2
    assert client.get("/runs/k").json()["attempt"] == 2
    assert (
        client.post("/runs/k/rewind", json=body, headers={"Idempotency-Key": "another"}).json()["attempt"]
        == 3
    )


def test_verify_catches_an_edited_rewind(client: TestClient, database_url: str) -> None:
    client.post("/runs", json={"name": "t", "lr": 1.0, "schedule": STEP})
    client.get("/runs/t/lr", params={"step": 30})
    client.post("/runs/t/rewind", json={"to_step": 20, "reason": "honest"})
    engine = create_engine(database_url)
    with engine.begin() as db:
        db.execute(text("UPDATE events SET reason = 'forged' WHERE kind = 'rewound'"))
    engine.dispose()
    verdict = client.get("/runs/t/events/verify").json()
    assert verdict["ok"] is False and verdict["first_bad_seq"] == 2


@pytest.mark.parametrize("k", [0, 7, 30])
def test_every_k_from_0_to_the_mark(client: TestClient, k: int) -> None:
    client.post("/runs", json={"name": "e", "lr": 1.0, "schedule": STEP})
    before = _lrs(client, "e", 0, 31)
    assert client.post("/runs/e/rewind", json={"to_step": k, "reason": "x"}).status_code == 200
    assert _lrs(client, "e", 0, 31) == before  # no changes, no metrics: the same plan
    assert client.get("/runs/e").json()["high_water"] == 30  # served again up to 30


def test_the_console_shows_attempts_forks_and_the_discarded_tail(client: TestClient) -> None:
    client.post("/runs", json={"name": "c", "lr": 1.0, "schedule": STEP})
    client.get("/runs/c/lr", params={"step": 60})
    client.post("/runs/c/rewind", json={"to_step": 40, "scale": 0.1, "reason": "spike at 55"})
    client.post("/runs/c/fork", json={"name": "c-fork", "at_step": 30, "reason": "branch"})
    page = client.get("/ui/runs/c").text
    assert 'id="attempts"' in page and "attempt 2 (current)" in page and "steps 41 to 60 of attempt 1" in page
    assert "spike at 55" in page and 'href="/ui/runs/c-fork"' in page
    # The chart's branches: attempt 1's LRs of steps 41..60 as it served them, and the fork from 30.
    chart = client.get("/ui/runs/c/chart.json").json()
    tail, fork = chart["branches"]
    assert (tail["label"], tail["kind"], tail["steps"]) == (
        "attempt 1 (discarded)",
        "attempt",
        list(range(41, 61)),
    )
    assert chart["lrs"][0][50] == pytest.approx(tail["lrs"][0][9] * 0.1)  # before the rewind's scale
    assert (fork["label"], fork["kind"], fork["steps"][0]) == ("fork c-fork", "fork", 30)
    assert fork["lrs"][0][0] == chart["lrs"][0][30]  # it branches off its parent's curve
    assert [m["kind"] for m in chart["markers"]] == ["rewind", "fork"]
    child = client.get("/ui/runs/c-fork").text
    assert 'id="lineage"' in child and 'href="/ui/runs/c"' in child and "at step 30" in child
