"""`schedule_now` in the API's run: the schedule in force at the step after the mark, where it took
over, and the scale and plateau factors carried into it, following every change, a rewind that
discards one, and a fork. The LR served there is what it describes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from lrtower_server.core.timeline import Plan, ScaleChange, ScheduleChange
from lrtower_server.schedules import build_schedule
from lrtower_server.schedules.plateau import reduce_by_plateau

STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}
COSINE = {"type": "CosineAnnealingLR", "T_max": 50}
EXP = {"type": "ExponentialLR", "gamma": 0.9}
PLATEAU = {"metric": "val_loss", "factor": 0.5, "patience": 0}


def create(client: TestClient, name: str, **body: Any) -> dict[str, Any]:
    response = client.post("/runs", json={"name": name, "lr": 0.1, "schedule": STEP, **body})
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


def post(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def serve(client: TestClient, name: str, stop: int) -> None:
    assert client.get(f"/runs/{name}/lr", params={"start": 0, "stop": stop}).status_code == 200


def now(client: TestClient, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/runs/{name}").json()["schedule_now"]
    return found


def described(now: dict[str, Any], lrs: list[float], step: int, min_lr: float = 0.0) -> list[float]:
    """The LRs at `step` as `schedule_now` describes them (the formula of its documentation)."""
    origin = now["from_step"] if now["restart"] else 0
    values = [lr * now["scale"] for lr in build_schedule(now["schedule"], lrs).at(step - origin)[0]]
    factors = now["plateau_factors"] or [1.0] * len(values)
    return reduce_by_plateau(values, factors, [min_lr] * len(values))


def test_a_new_run_applies_its_own_schedule(client: TestClient) -> None:
    created = create(client, "fresh")
    expected = {
        "step": 0,
        "schedule": STEP,
        "from_step": 0,
        "restart": False,
        "change_seq": None,
        "scale": 1.0,
        "plateau_factors": None,
    }
    assert created["schedule_now"] == expected and now(client, "fresh") == expected
    assert created["schedule"] == STEP
    listed = client.get("/runs").json()["runs"]
    assert [r["schedule_now"] for r in listed if r["name"] == "fresh"] == [expected]


def test_after_a_schedule_change_with_and_without_restart(client: TestClient) -> None:
    for name, restart in (("restarted", True), ("absolute", False)):
        create(client, name, plateau=PLATEAU)
        serve(client, name, 10)
        post(client, f"/runs/{name}/scale", {"factor": 0.5, "reason": "spikes"})  # from step 10
        post(client, f"/runs/{name}/metrics", {"step": 12, "value": 1.0, "name": "val_loss"})
        reduced = post(client, f"/runs/{name}/metrics", {"step": 14, "value": 1.1, "name": "val_loss"})
        assert reduced["reduced"] and reduced["effective_step"] == 14
        serve(client, name, 20)
        change = post(
            client, f"/runs/{name}/schedule", {"schedule": COSINE, "restart": restart, "reason": "cosine"}
        )
        run = client.get(f"/runs/{name}").json()
        assert run["schedule"] == STEP  # as created: unchanged
        assert run["schedule_now"] == {
            "step": 20,
            "schedule": COSINE,
            "from_step": 20,
            "restart": restart,
            "change_seq": 3,  # the scale, the plateau reduction, then this change
            "scale": 0.5,
            "plateau_factors": [0.5],
        }
        for step in (20, 21, 45, 90):
            served = client.get(f"/runs/{name}/lr", params={"step": step}).json()["lrs"]
            assert served == described(run["schedule_now"], [0.1], step), (name, step)
        assert change["lr_after"] == described(run["schedule_now"], [0.1], 20)
    # With restart, the cosine's own step 0 (0.1), times the scale and the reduction carried over;
    # without, the cosine read at step 20, times them too.
    assert client.get("/runs/restarted/lr", params={"step": 20}).json()["lr"] == 0.1 * 0.5 * 0.5
    cosine_at_20 = build_schedule(COSINE, [1.0]).at(20)[0][0]
    absolute = client.get("/runs/absolute/lr", params={"step": 20}).json()["lr"]
    assert absolute == pytest.approx(0.1 * 0.5 * 0.5 * cosine_at_20, rel=1e-15)


def test_a_change_for_a_later_step_is_in_force_once_the_mark_reaches_it(client: TestClient) -> None:
    create(client, "later")
    serve(client, "later", 5)
    post(client, "/runs/later/schedule", {"schedule": EXP, "from_step": 30, "restart": True})
    post(client, "/runs/later/scale", {"factor": 0.25, "from_step": 40})
    assert now(client, "later") | {"step": None} == {
        "step": None,
        "schedule": STEP,
        "from_step": 0,
        "restart": False,
        "change_seq": None,
        "scale": 1.0,
        "plateau_factors": None,
    }
    serve(client, "later", 29)
    assert now(client, "later")["change_seq"] is None  # step 29 is next: not yet in force
    serve(client, "later", 30)
    assert now(client, "later") == {
        "step": 30,
        "schedule": EXP,
        "from_step": 30,
        "restart": True,
        "change_seq": 1,
        "scale": 1.0,
        "plateau_factors": None,
    }
    serve(client, "later", 40)
    assert now(client, "later")["scale"] == 0.25 and now(client, "later")["change_seq"] == 1


def test_a_rewind_that_discards_a_change_takes_it_out(client: TestClient) -> None:
    create(client, "spiky")
    serve(client, "spiky", 21)
    post(client, "/runs/spiky/schedule", {"schedule": COSINE, "restart": True})  # decided at 20
    serve(client, "spiky", 41)
    post(client, "/runs/spiky/schedule", {"schedule": EXP})  # decided at 40: from 41
    assert now(client, "spiky")["schedule"] == EXP and now(client, "spiky")["change_seq"] == 2

    post(client, "/runs/spiky/rewind", {"to_step": 30, "reason": "spike"})  # drops the second
    run = client.get("/runs/spiky").json()
    assert [c["seq"] for c in run["changes"]] == [1]
    assert run["schedule_now"] == {
        "step": 31,
        "schedule": COSINE,
        "from_step": 21,
        "restart": True,
        "change_seq": 1,
        "scale": 1.0,
        "plateau_factors": None,
    }
    served = client.get("/runs/spiky/lr", params={"step": 41}).json()["lrs"]
    assert served == described(run["schedule_now"], [0.1], 41)

    post(client, "/runs/spiky/rewind", {"to_step": 10, "reason": "earlier", "schedule": EXP, "scale": 0.5})
    run = client.get("/runs/spiky").json()
    assert [c["kind"] for c in run["changes"]] == ["schedule", "scale"]  # the first was decided at 20
    assert run["schedule_now"] | {"change_seq": None} == {
        "step": 11,
        "schedule": EXP,
        "from_step": 11,
        "restart": False,
        "change_seq": None,
        "scale": 0.5,
        "plateau_factors": None,
    }
    assert run["schedule_now"]["change_seq"] == run["changes"][0]["seq"]


def test_a_fork_has_the_parents_schedule_as_of_k_under_its_own_seqs(client: TestClient) -> None:
    create(client, "parent")
    serve(client, "parent", 11)
    post(client, "/runs/parent/scale", {"factor": 0.5})
    post(client, "/runs/parent/schedule", {"schedule": COSINE, "from_step": 15, "restart": True})
    serve(client, "parent", 21)
    fork = client.post("/runs/parent/fork", json={"name": "child", "at_step": 20, "schedule": EXP})
    assert fork.status_code == 201, fork.text
    child = fork.json()
    assert [(c["seq"], c["kind"]) for c in child["changes"]] == [
        (1, "scale"),
        (2, "schedule"),
        (3, "schedule"),
    ]
    assert child["schedule_now"] == {
        "step": 21,
        "schedule": EXP,
        "from_step": 21,
        "restart": False,
        "change_seq": 3,
        "scale": 0.5,
        "plateau_factors": None,
    }
    assert child["schedule"] == STEP and now(client, "parent")["schedule"] == COSINE


def test_of_two_changes_at_one_step_the_later_is_in_force() -> None:
    plan = Plan(
        STEP,
        [
            ScheduleChange(5, COSINE, restart=True),
            ScaleChange(5, 0.5),
            ScheduleChange(5, EXP, restart=False),
            ScaleChange(3, 0.1),
        ],
    )
    at_4, at_5 = plan.in_force(4), plan.in_force(5)
    assert (at_4.spec, at_4.change, at_4.scale, at_4.origin) == (STEP, None, 0.1, 0)
    assert (at_5.spec, at_5.change, at_5.scale, at_5.origin) == (EXP, 2, 0.1 * 0.5, 0)
    assert plan.in_force(5).factors is None
