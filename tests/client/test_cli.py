"""The client commands of `lrtower` against a real server process, and what they print."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from cli_runs import cli, ok
from lrtower import Client
from lrtower.cli.commands import lrtower
from lrtower.cli.plot import run_curve
from lrtower_server.schedules import build_schedule
from servers import Server, free_port

STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}
RUN_YAML = """\
name: {name}
lrs: [0.1, 0.01]
schedule:
  type: StepLR
  step_size: 10
  gamma: 0.5
plateau: {{metric: val_loss, patience: 0}}
labels: {{team: {team}}}
"""


@pytest.fixture
def server(tower: str) -> str:
    """The module's one server (`tower`): each test here creates runs of its own names."""
    return tower


def run_yaml(folder: Path, name: str = "yaml-run", team: str = "vision") -> Path:
    return _write(folder, "run.yaml", RUN_YAML.format(name=name, team=team))


def test_create_list_and_show_runs(server: str, tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"name": "ignored", "lr": 0.5, "schedule": STEP}))
    yaml = run_yaml(tmp_path, "listed-yaml", team="listing")
    assert "run listed-yaml: live" in ok(server, "runs", "create", "-f", str(yaml))
    ok(server, "runs", "create", "-f", str(yaml))  # the same again: a no-op
    ok(server, "runs", "create", "-f", str(tmp_path / "run.json"), "--name", "listed-json")

    listed = ok(server, "runs", "list").splitlines()
    assert listed[0].split() == ["NAME", "STATE", "SERVED", "VERSION", "LABELS"]
    names = [line.split()[0] for line in listed[1:]]  # with the other tests' runs, in name order
    assert names == sorted(names) and [n for n in names if n.startswith("listed-")] == [
        "listed-json",
        "listed-yaml",
    ]
    assert [
        r["name"] for r in json.loads(ok(server, "runs", "list", "--label", "team=listing", "--json"))
    ] == ["listed-yaml"]
    finished = json.loads(ok(server, "runs", "list", "--state", "finished", "--json"))
    assert all(r["state"] == "finished" for r in finished) and not {"listed-json", "listed-yaml"} & {
        r["name"] for r in finished
    }

    shown = json.loads(ok(server, "runs", "show", "listed-yaml", "--json"))
    assert (
        shown["lrs"] == [0.1, 0.01] and shown["schedule"] == STEP and shown["labels"] == {"team": "listing"}
    )
    assert "high-water  -1" in ok(server, "runs", "show", "listed-yaml")


def test_lr_prints_every_groups_exact_lr_and_serves_it(server: str, tmp_path: Path) -> None:
    ok(server, "runs", "create", "-f", str(run_yaml(tmp_path, "printed")))
    printed = [float(x) for x in ok(server, "lr", "printed", "25").split()]
    optimizer = torch.optim.SGD(
        [{"params": [torch.zeros(1)], "lr": 0.1}, {"params": [torch.zeros(1)], "lr": 0.01}]
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    for _ in range(25):
        scheduler.step()
    assert printed == scheduler.get_last_lr()
    with Client(server) as client:
        assert client.get_run("printed").high_water == 25


def test_changes_events_and_verify(
    start_server: Callable[..., Server], tmp_path: Path, database_url: str
) -> None:
    server = start_server().url  # its own: the test edits the database under it
    run_yaml(tmp_path)
    (tmp_path / "exp.json").write_text(json.dumps({"type": "ExponentialLR", "gamma": 0.9}))
    ok(server, "runs", "create", "-f", str(tmp_path / "run.yaml"))
    ok(server, "lr", "yaml-run", "30")
    scaled = ok(server, "runs", "scale", "yaml-run", "0.5", "--reason", "loss spikes")
    assert scaled.startswith("from step 31: lr 0.0125 0.00125 -> 0.00625 0.000625")
    changed = json.loads(
        ok(server, "runs", "schedule", "yaml-run", "-f", str(tmp_path / "exp.json"), "--from-step", "50",
           "--restart", "--json")
    )  # fmt: skip
    assert changed["effective_step"] == 50
    assert "run yaml-run: finished" in ok(server, "runs", "finish", "yaml-run", "--reason", "done")
    refused = cli(server, "runs", "scale", "yaml-run", "0.5")
    assert refused.exit_code == 1 and "409" in refused.output and "finished" in refused.output

    table = ok(server, "events", "yaml-run").splitlines()
    assert [line.split()[4] for line in table[1:]] == [
        "run_created",
        "scaled",
        "schedule_changed",
        "run_finished",
    ]
    assert "loss spikes" in table[2]
    events = json.loads(ok(server, "events", "yaml-run", "--after", "1", "--limit", "2", "--json"))
    assert [e["seq"] for e in events] == [2, 3] and events[0]["actor"] == "anonymous"
    assert ok(server, "verify", "yaml-run").startswith("ok: 4 events")

    tamper = create_engine(database_url)
    with tamper.begin() as db:
        db.execute(text("UPDATE events SET reason = 'nothing to see' WHERE seq = 2"))
    tamper.dispose()
    broken = cli(server, "verify", "yaml-run")
    assert broken.exit_code == 1 and "BROKEN" in broken.output and "event 2" in broken.output


def test_errors_are_one_clear_line(server: str, tmp_path: Path) -> None:
    missing = cli(server, "lr", "nope", "3")
    assert missing.exit_code == 1 and "404" in missing.output and "no run named 'nope'" in missing.output
    assert "Traceback" not in missing.output

    (tmp_path / "bad.json").write_text("{not json")
    assert cli(server, "runs", "create", "-f", str(tmp_path / "bad.json")).exit_code == 2
    (tmp_path / "odd.json").write_text(json.dumps({"name": "x", "lr": 1, "schedule": STEP, "colour": "red"}))
    odd = cli(server, "runs", "create", "-f", str(tmp_path / "odd.json"))
    assert odd.exit_code == 2 and "colour" in odd.output
    (tmp_path / "invalid.json").write_text(
        json.dumps({"name": "x", "lr": 1, "schedule": {**STEP, "gamma": "x"}})
    )
    invalid = cli(server, "runs", "create", "-f", str(tmp_path / "invalid.json"))
    assert invalid.exit_code == 1 and "422" in invalid.output and "schedule.gamma" in invalid.output

    nowhere = CliRunner().invoke(lrtower, ["runs", "list", "--url", f"http://127.0.0.1:{free_port()}"])
    assert nowhere.exit_code == 1 and "ConnectError" in nowhere.output


def test_plot_a_run_shows_its_curve_served_steps_and_changes(
    server: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    client = Client(server)
    request.addfinalizer(client.close)
    client.create_run("plotted", STEP, lr=1.0, plateau={"metric": "loss", "patience": 0})
    client.lr("plotted", 120)
    client.scale("plotted", 0.5, reason="spikes")
    client.post_metric("plotted", 130, 1.0)
    client.post_metric("plotted", 131, 2.0)  # worse: patience 0 reduces at once
    client.change_schedule("plotted", {"type": "ConstantLR", "factor": 1.0, "total_iters": 1}, from_step=400)
    changes = client.get_run("plotted").changes
    assert [c.kind for c in changes] == ["scale", "plateau", "schedule"]

    curve = run_curve(client, "plotted", 0, None, 2000)
    assert curve.high_water == 120 and curve.steps[-1] == 999  # past the last change, at least 1000
    assert [(m.kind, m.step) for m in curve.markers] == [(c.kind, c.effective_step) for c in changes]
    assert curve.lrs == [client.curve("plotted", 0, 1000).lr]

    svg = tmp_path / "run.svg"
    ok(server, "plot", "plotted", "-o", str(svg), "--log")
    ids = {element.get("id") for element in ET.parse(svg).iter()}
    marked = [e.seq for e in client.events("plotted").events if e.kind != "run_created"]
    assert {"curve-0", "served", *(f"change-{seq}" for seq in marked)} <= ids and len(marked) == 3
    png = tmp_path / "run.png"
    ok(server, "plot", "plotted", "-o", str(png), "--start", "100", "--stop", "300", "--points", "50")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_a_spec_locally_without_a_server(tmp_path: Path) -> None:
    spec = {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 100}
    (tmp_path / "cycle.json").write_text(json.dumps(spec))
    nowhere = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "cycle.svg"
    assert (
        cli(nowhere, "plot", "-f", str(tmp_path / "cycle.json"), "--lr", "0.1", "-o", str(out)).exit_code == 0
    )
    assert "curve-0" in {element.get("id") for element in ET.parse(out).iter()}

    from lrtower.cli.plot import spec_curve

    curve = spec_curve(spec, 0.1, 0, 1000, 1000)
    assert curve.steps == list(range(101))  # torch raises past step total_steps: the plot ends there
    assert curve.lrs[0] == [build_schedule(spec, [0.1]).at(s)[0][0] for s in range(101)]
    run_file = {"name": "r", "lrs": [0.2, 0.02], "schedule": STEP}
    assert spec_curve(run_file, None, 0, 40, 40).lrs[1][-1] == 0.02 * 0.5**3

    unusable = cli(nowhere, "plot", "-f", str(tmp_path / "cycle.json"), "-o", str(tmp_path / "x.gif"))
    assert unusable.exit_code == 2 and ".png" in unusable.output
    both = cli(nowhere, "plot", "run", "-f", str(tmp_path / "cycle.json"), "-o", str(out))
    assert both.exit_code == 2
    (tmp_path / "step.json").write_text(json.dumps(STEP))
    needs_lr = cli(nowhere, "plot", "-f", str(tmp_path / "step.json"), "-o", str(out))
    assert needs_lr.exit_code == 1 and "--lr" in needs_lr.output


@pytest.mark.slow
def test_the_console_script_runs_client_and_server_commands(server: str) -> None:
    lrtower_bin = str(Path(sys.executable).parent / "lrtower")
    with Client(server) as client:
        client.create_run("proc", STEP, lr=0.1)
    done = subprocess.run(
        [lrtower_bin, "lr", "proc", "10", "--url", server], capture_output=True, text=True, check=True
    )
    assert float(done.stdout) == 0.05
    helped = subprocess.run([lrtower_bin, "--help"], capture_output=True, text=True, check=True)
    assert all(name in helped.stdout for name in ("serve", "token", "db", "runs", "lr", "plot"))


def _without(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run the `lrtower` entry point as if `module` were not installed."""
    code = f"import sys; sys.modules[{module!r}] = None; sys.argv = ['lrtower', *{argv!r}]; " + (
        "from lrtower.cli import main; main()"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.slow
def test_missing_extras_are_named_with_the_install_command(tmp_path: Path) -> None:
    no_click = _without("click", "runs", "list")
    assert no_click.returncode == 1 and "pip install 'lrtower[cli]'" in no_click.stderr
    no_server = _without("fastapi", "serve")
    assert no_server.returncode == 1 and "pip install 'lrtower[server]'" in no_server.stderr
    (tmp_path / "step.json").write_text(json.dumps(STEP))
    no_plot = _without("matplotlib", "plot", "-f", str(tmp_path / "step.json"), "--lr", "1", "-o", "x.png")
    assert no_plot.returncode == 1 and "pip install 'lrtower[plot]'" in no_plot.stderr


def test_text_from_the_server_cannot_forge_rows_or_drive_the_terminal(
    start_server: Callable[..., Server], tmp_path: Path, database_url: str
) -> None:
    server = start_server().url  # its own: the test edits the database under it
    ok(server, "runs", "create", "-f", str(run_yaml(tmp_path)))
    ok(server, "runs", "scale", "yaml-run", "0.5", "--reason", "ordinary")
    # A row written before free text was checked, or by hand: a forged row and an ANSI colour.
    forged = "x\n3  2026-12-02 10:00:00  alice-admin  run_finished  approved\x1b[31m\x9b2J"
    old = create_engine(database_url)
    with old.begin() as db:
        db.execute(text("UPDATE events SET reason = :r WHERE seq = 2"), {"r": forged})
    old.dispose()
    printed = ok(server, "events", "yaml-run")
    assert len(printed.splitlines()) == 3  # the header and two events: no third row
    assert "\x1b" not in printed and "\x9b" not in printed
    assert "x\\x0a3  2026-12-02" in printed and "approved\\x1b[31m\\x9b2J" in printed


def _write(folder: Path, name: str, content: str) -> Path:
    (folder / name).write_text(content)
    return folder / name


def test_rewind_and_fork_from_the_command_line(server: str, tmp_path: Path) -> None:
    ok(server, "runs", "create", "-f", str(run_yaml(tmp_path, "cli-spike")))
    ok(server, "lr", "cli-spike", "40")
    (tmp_path / "exp.json").write_text(json.dumps({"type": "ExponentialLR", "gamma": 0.9}))
    printed = ok(
        server, "runs", "rewind", "cli-spike", "--to", "30", "--scale", "0.5", "--reason", "loss spike"
    )
    assert printed.splitlines() == [
        "run cli-spike: attempt 2 from step 31",
        "lr 0.0125 0.00125 -> 0.00625 0.000625",
        "discarded: steps 31..40 of attempt 1, 0 changes, 0 metrics",
    ]
    shown = ok(server, "runs", "show", "cli-spike")
    assert "attempt     2" in shown and "31..40" in shown and "loss spike" in shown
    assert cli(server, "runs", "rewind", "cli-spike", "--to", "3").exit_code == 2  # a reason is required
    no_schedule = cli(server, "runs", "rewind", "cli-spike", "--to", "3", "--restart", "--reason", "x")
    assert no_schedule.exit_code == 2 and "-f" in no_schedule.output
    forked = ok(server, "runs", "fork", "cli-spike", "cli-spike-exp", "--at", "20", "-f", str(tmp_path / "exp.json"),
                "--restart", "--json")  # fmt: skip
    child = json.loads(forked)
    assert child["fork"]["parent"] == "cli-spike" and child["high_water"] == 20
    assert [c["kind"] for c in child["changes"]] == ["schedule"] and child["changes"][0]["restart"] is True
    assert ok(server, "lr", "cli-spike-exp", "21").split() == ["0.1", "0.01"]
    too_far = cli(server, "runs", "fork", "cli-spike", "other", "--at", "999")
    assert too_far.exit_code == 1 and "409" in too_far.output and "never served" in too_far.output
