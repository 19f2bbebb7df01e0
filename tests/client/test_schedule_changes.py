"""A live run's schedule change against a real server, as docs/client.md ("Changing a live run's
schedule") tells it: the worked example's numbers, and what `lrtower runs show` prints of the
schedule in force and the schedules before it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lrtower import ChangeResult, Client
from lrtower.cli.commands import lrtower

ROOT = Path(__file__).resolve().parents[2]
FIRST = {"type": "CosineAnnealingLR", "T_max": 1000}
SHORTER = {"type": "CosineAnnealingLR", "T_max": 500}
PLATEAU = {"metric": "val_loss", "factor": 0.5, "patience": 0}


def section() -> str:
    text = (ROOT / "docs" / "client.md").read_text()
    return text.split("\n## Changing a live run's schedule\n", 1)[1].split("\n## ", 1)[0]


def show(server: str, run: str) -> str:
    result = CliRunner().invoke(
        lrtower, ["runs", "show", run], env={"LRTOWER_URL": server, "LRTOWER_TOKEN": None}
    )
    assert result.exit_code == 0, result.output
    return result.output


def worked_example(client: Client, run: str, restart: bool, undo: bool = False) -> ChangeResult:
    """The documented sequence, on `run`; with `undo`, the scale that undoes what carries over."""
    client.create_run(run, FIRST, lr=0.1, plateau=PLATEAU)
    client.lr_range(run, 0, 100)
    client.scale(run, 0.5, reason="loss spikes")
    client.post_metric(run, 100, 0.80, name="val_loss")
    assert client.post_metric(run, 150, 0.82, name="val_loss").reduced
    client.lr_range(run, 100, 200)
    change = client.change_schedule(run, SHORTER, restart=restart, reason="a shorter cosine")
    if undo:
        client.scale(run, 4.0, from_step=200)
    return change


def test_the_documented_example_answers_the_documented_numbers(tower: str) -> None:
    doc = section()
    with Client(tower) as client:
        restarted = worked_example(client, "demo", restart=True)
        absolute = worked_example(client, "demo-absolute", restart=False)
        worked_example(client, "demo-undone", restart=True, undo=True)
        assert (restarted.effective_step, absolute.effective_step) == (200, 200)
        assert restarted.lr_before == absolute.lr_before == [0.022612712429686845]
        assert restarted.lr_after == [0.025] and absolute.lr_after == [0.016362712429686843]
        for value in (restarted.lr_before, restarted.lr_after, absolute.lr_after):
            assert f"{value}" in doc
        for step in (200, 450, 700):
            with_restart = client.curve("demo", step, step + 1).lr[0]
            without = client.curve("demo-absolute", step, step + 1).lr[0]
            assert f"| {step} | {with_restart!r} | {without!r} |" in doc
        assert client.curve("demo-undone", 200, 201).lr == [0.1]
        assert 'client.scale("demo", 4.0, from_step=200)' in doc and "answer 0.1" in doc

        now = client.get_run("demo").schedule_now
        assert now is not None and (now.step, now.from_step, now.restart, now.change_seq) == (
            200,
            200,
            True,
            3,
        )
        assert (now.schedule, now.scale, now.plateau_factors) == (SHORTER, 0.5, [0.5])
        assert client.get_run("demo").schedule == FIRST


def test_runs_show_prints_the_schedule_in_force_and_its_history(tower: str) -> None:
    with Client(tower) as client:
        worked_example(client, "demo-shown", restart=True)
    printed = show(tower, "demo-shown")
    block = printed[printed.index("in force at step") : printed.index("changes:")]
    assert block.startswith("in force at step 200") and block in section()  # the page shows it as printed
    assert "schedule    " + json.dumps(FIRST) + " (as created)" in printed


def history(printed: str) -> dict[str, list[str]]:
    """The schedule history's rows by their first column (FROM STEP), split into words."""
    rows = printed.split("schedule history:\n", 1)[1].split("changes:", 1)[0].splitlines()
    assert rows[0].split() == ["FROM", "STEP", "RESTART", "STATUS", "BY", "REASON", "SCHEDULE"]
    return {row.split()[0]: row.split() for row in rows[1:]}


def test_runs_show_marks_pending_changes_and_names_where_each_came_from(tower: str) -> None:
    step = {"type": "StepLR", "step_size": 10, "gamma": 0.5}
    exp = {"type": "ExponentialLR", "gamma": 0.9}
    with Client(tower) as client:
        client.create_run("shown", step, lr=0.1)
        printed = show(tower, "shown")
        assert "  from      step 0: the run's own schedule" in printed and "  scale     x1 " in printed
        assert "schedule history:" not in printed and "  plateau   " not in printed  # nothing to list

        client.lr_range("shown", 0, 41)
        client.change_schedule("shown", exp, from_step=50, reason="decay later")  # decided at 40
        client.rewind("shown", 30, schedule=SHORTER, restart=True, reason="spike at 38")
        client.lr_range("shown", 31, 61)
        client.fork("shown", "shown-fork", 60, schedule=step, reason="try steps")
        client.change_schedule("shown", step, from_step=500, reason="even later")

    rows = history(show(tower, "shown"))
    assert list(rows) == ["0", "31", "500"]  # the change decided at 40 went with the rewound attempt
    assert rows["0"][1:4] == ["-", "replaced", "anonymous"]
    assert rows["31"][1:6] == ["yes", "in", "force", "anonymous", "spike"]  # the rewind's, from k + 1
    assert rows["500"][1:6] == ["no", "pending", "anonymous", "even", "later"]

    forked = show(tower, "shown-fork")
    assert "  from      step 61 (change 2), read at the run's own step" in forked
    rows = history(forked)
    assert list(rows) == ["0", "31", "61"]
    assert rows["31"][1:6] == ["yes", "replaced", "?", "(made", "on"]  # in the parent's trail
    assert rows["61"][1:6] == ["no", "in", "force", "anonymous", "try"]
