"""`lrtower runs create --total-steps`, `runs show`, and `lrtower plot`'s default range from a
run's planned length, against a real server process."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import lrtower.cli.plot as plot
from cli_runs import cli, ok
from lrtower import Client
from lrtower.cli.commands import lrtower
from lrtower.cli.plot import run_curve, spec_curve

COSINE = {"type": "CosineAnnealingLR", "T_max": 2000}


@pytest.fixture
def client(tower: str) -> Iterator[Client]:
    with Client(tower) as client:
        yield client


def test_runs_create_takes_total_steps_from_the_file_or_the_option(
    tower: str, client: Client, tmp_path: Path
) -> None:
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"name": "cli-planned", "lr": 0.1, "schedule": COSINE, "total_steps": 2000}))
    ok(tower, "runs", "create", "-f", str(run))
    assert client.get_run("cli-planned").total_steps == 2000
    assert "total steps 2000" in ok(tower, "runs", "show", "cli-planned")
    assert json.loads(ok(tower, "runs", "show", "cli-planned", "--json"))["total_steps"] == 2000

    ok(tower, "runs", "create", "-f", str(run), "--name", "cli-option", "--total-steps", "500")
    assert client.get_run("cli-option").total_steps == 500
    other = cli(tower, "runs", "create", "-f", str(run), "--name", "cli-option", "--total-steps", "600")
    assert other.exit_code == 1 and "409" in other.output and "total_steps 500" in other.output
    assert cli(tower, "runs", "create", "-f", str(run), "--total-steps", "0").exit_code == 2
    client.create_run("cli-unplanned", COSINE, lr=0.1)
    assert "total steps" not in ok(tower, "runs", "show", "cli-unplanned")


def test_plot_draws_a_planned_run_from_0_to_its_total_steps(
    tower: str, client: Client, tmp_path: Path
) -> None:
    client.create_run("plot-2000", COSINE, lr=0.1, total_steps=2000)
    client.lr_range("plot-2000", 0, 100)
    curve = run_curve(client, "plot-2000", 0, None, 2000)
    assert curve.steps == list(range(2000)) and curve.high_water == 99
    assert curve.lrs == [client.curve("plot-2000", 0, 2000).lr]
    assert run_curve(client, "plot-2000", 0, 300, 2000).steps[-1] == 299  # --stop still wins
    assert run_curve(client, "plot-2000", 2500, None, 100).steps[0] == 2500  # past the plan

    svg = tmp_path / "planned.svg"
    ok(tower, "plot", "plot-2000", "-o", str(svg))
    assert "curve-0" in {element.get("id") for element in ET.parse(svg).iter()}

    client.create_run("plot-unplanned", COSINE, lr=0.1)
    assert run_curve(client, "plot-unplanned", 0, None, 2000).steps[-1] == 999  # as before: no plan


def test_plot_of_a_run_that_ran_longer_reaches_its_mark(client: Client) -> None:
    client.create_run("plot-overrun", COSINE, lr=0.1, total_steps=200)
    client.lr_range("plot-overrun", 0, 260)
    assert run_curve(client, "plot-overrun", 0, None, 1000).steps[-1] == 259


def test_plot_of_a_run_file_draws_its_total_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[int, int]] = []

    def recorded(definition: Any, lr: Any, start: int, stop: int, points: int) -> Any:
        asked.append((start, stop))
        return spec_curve(definition, lr, start, stop, points)

    monkeypatch.setattr(plot, "spec_curve", recorded)
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"name": "local", "lr": 0.1, "schedule": COSINE, "total_steps": 1500}))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(COSINE))
    out = str(tmp_path / "local.svg")
    for args in (["-f", str(run)], ["-f", str(spec), "--lr", "0.1"], ["-f", str(run), "--stop", "20"]):
        result = CliRunner().invoke(lrtower, ["plot", *args, "-o", out])
        assert result.exit_code == 0, result.output
    assert asked == [(0, 1500), (0, 1000), (0, 20)]
