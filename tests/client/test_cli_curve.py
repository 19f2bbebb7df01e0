"""`lrtower curve` reads a run's plan without serving it; `lrtower lr` serves (and freezes) a step."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from cli_runs import cli, ok
from lrtower import Client, _calls
from lrtower.cli.commands import lrtower

STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}


def api_curve(server: str, run: str, start: int, stop: int, stride: int = 1) -> dict[str, Any]:
    """What GET /runs/{run}/curve answers, read without the client library."""
    answer = httpx.get(f"{server}/runs/{run}/curve", params={"start": start, "stop": stop, "stride": stride})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def printed_rows(output: str) -> tuple[list[str], list[tuple[int, list[float]]]]:
    header, *lines = output.splitlines()
    rows = [(int(step), [float(x) for x in lrs]) for step, *lrs in (line.split() for line in lines)]
    return header.split(), rows


@pytest.fixture
def client(tower: str) -> Iterator[Client]:
    with Client(tower) as client:
        yield client


def test_curve_prints_the_apis_planned_lrs_and_leaves_the_mark_where_it_is(
    tower: str, client: Client
) -> None:
    client.create_run("curved", STEP, lrs=[0.1, 0.01])
    ok(tower, "lr", "curved", "30")
    assert client.get_run("curved").high_water == 30

    header, rows = printed_rows(ok(tower, "curve", "curved", "20", "60", "--every", "5"))
    planned = api_curve(tower, "curved", 20, 60, 5)
    assert header == ["STEP", "LR[0]", "LR[1]"]
    assert [step for step, _ in rows] == planned["steps"] == list(range(20, 60, 5))
    assert [lrs for _, lrs in rows] == planned["lrs"]  # every digit: printed with repr
    as_json = json.loads(ok(tower, "curve", "curved", "0", "100", "--json"))
    planned = api_curve(tower, "curved", 0, 100)
    assert (as_json["steps"], as_json["lr"], as_json["lrs"]) == (
        planned["steps"],
        planned["lr"],
        planned["lrs"],
    )
    assert client.get_run("curved").high_water == 30  # nothing was served

    # Looking froze nothing: a scale made now changes the steps the curve showed above the mark.
    looked = dict(rows)[55]
    ok(tower, "runs", "scale", "curved", "0.5")
    assert client.get_run("curved").changes[-1].effective_step == 31
    assert dict(printed_rows(ok(tower, "curve", "curved", "55", "56"))[1])[55] == [x * 0.5 for x in looked]


def test_lr_serves_the_step_so_a_later_change_lands_after_it(tower: str, client: Client) -> None:
    client.create_run("served", STEP, lr=0.1)
    planned = api_curve(tower, "served", 45, 46)["lr"][0]
    assert client.get_run("served").high_water == -1
    assert [float(x) for x in ok(tower, "lr", "served", "45").split()] == [planned]
    assert client.get_run("served").high_water == 45  # steps up to 45 are frozen
    ok(tower, "runs", "scale", "served", "0.5")
    assert client.get_run("served").changes[-1].effective_step == 46
    _, rows = printed_rows(ok(tower, "curve", "served", "45", "47"))
    assert rows == [(45, [planned]), (46, [planned * 0.5])]


def test_one_group_reads_lr_and_a_bad_range_is_refused(tower: str, client: Client) -> None:
    client.create_run("single", STEP, lr=1.0)
    header, rows = printed_rows(ok(tower, "curve", "single", "9", "11"))
    assert header == ["STEP", "LR"] and rows == [(9, [1.0]), (10, [0.5])]
    refused = cli(tower, "curve", "single", "5", "5")
    assert refused.exit_code == 2 and "must be above START (5)" in refused.output
    missing = cli(tower, "curve", "nope", "0", "10")
    assert missing.exit_code == 1 and "404" in missing.output and "Traceback" not in missing.output


def test_the_help_says_which_to_use_when() -> None:
    lr_help = CliRunner().invoke(lrtower, ["lr", "--help"]).output
    curve_help = CliRunner().invoke(lrtower, ["curve", "--help"]).output
    assert "frozen" in lr_help and "lrtower curve" in lr_help
    assert "without serving" in curve_help and "lrtower lr" in curve_help and "--every" in curve_help


def test_a_fallback_report_is_what_curve_prints_and_runs_show_lists(tower: str, client: Client) -> None:
    client.create_run("reported", STEP, lr=0.4)
    client.lr_range("reported", 0, 20)  # served to step 19
    reported = client.send(
        _calls.report_fallbacks(
            "reported", stretches=[{"from_step": 20, "to_step": 29, "lrs": [0.3]}], idempotency_key="k"
        )
    )
    assert reported.recorded == [(20, 29)] and reported.high_water == 29
    _, rows = printed_rows(ok(tower, "curve", "reported", "18", "32"))
    assert rows == [(s, [api_curve(tower, "reported", s, s + 1)["lr"][0]]) for s in range(18, 32)]
    assert [lrs for s, lrs in rows if 20 <= s <= 29] == [[0.3]] * 10
    shown = ok(tower, "runs", "show", "reported")
    assert "ran LR 0.3 through step 29 (a fallback report)" in shown and "high-water  29" in shown
