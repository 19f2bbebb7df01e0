"""Hostile input: every free-text field, header, count and path refuses what the databases cannot
store, or what would rewrite how the audit trail reads, with a 422 problem naming the field; never
a 500. Each table row runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lrtower_server.core.auth import Tokens
from lrtower_server.core.config import Settings
from lrtower_server.core.problems import Invalid
from lrtower_server.db.engine import make_engine

STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}
RUN = {"name": "job", "lr": 1.0, "schedule": STEP, "plateau": {"metric": "loss", "patience": 0}}

CONTROL = [
    "nul\x00",
    "escape\x1b[2J",
    "line\nbreak",
    "carriage\rreturn",
    "tab\tstop",
    "del\x7f",
    "csi\x9b31m",
]
"""C0 (NUL refused by PostgreSQL; ESC, CR and LF rewrite a terminal or a line-oriented view), DEL, C1."""

Body = Callable[[str], dict[str, Any]]
FREE_TEXT: list[tuple[str, Body, str]] = [
    ("/runs", lambda text: {**RUN, "name": "other", "labels": {"team": text}}, "body.labels.team"),
    ("/runs", lambda text: {**RUN, "name": "other", "labels": {text: "vision"}}, "body.labels."),
    ("/runs/job/metrics", lambda text: {"step": 1, "value": 0.5, "name": text}, "body.name"),
    ("/runs/job/schedule", lambda text: {"schedule": STEP, "reason": text}, "body.reason"),
    ("/runs/job/scale", lambda text: {"factor": 0.5, "reason": text}, "body.reason"),
    ("/runs/job/state", lambda text: {"state": "finished", "reason": text}, "body.reason"),
]
TOO_BIG = [2**31, 10**20]
"""Past what a 32-bit integer column holds, and past what a 64-bit one does."""


def refused(response: Any, field: str) -> bool:
    """A 422 problem+json that names `field` (or a field under it)."""
    fields = [e["field"] for e in response.json().get("errors", [])]
    return (
        response.status_code == 422
        and response.headers["content-type"] == "application/problem+json"
        and any(f.startswith(field) for f in fields)
    )


def still_whole(client: TestClient) -> None:
    assert client.get("/runs/job/lr", params={"step": 3}).json()["lr"] == 1.0
    assert client.get("/runs/job/events/verify").json()["ok"]


@pytest.fixture
def job(client: TestClient) -> TestClient:
    assert client.post("/runs", json=RUN).status_code == 201
    return client


def test_control_characters_are_refused_in_every_free_text_field(job: TestClient) -> None:
    for path, body, field in FREE_TEXT:
        for text in CONTROL:
            response = job.post(path, json=body(text))
            assert refused(response, field), (path, text, response.status_code, response.text)
    for path, change in [("/runs/job/scale", {"factor": 0.5}), ("/runs/job/schedule", {"schedule": STEP})]:
        for text in CONTROL:
            # As bytes: a header is bytes on the wire, and C1 characters are not ASCII.
            response = job.post(path, json=change, headers={b"Idempotency-Key": text.encode("latin-1")})
            assert refused(response, "header.Idempotency-Key"), (path, text, response.text)
    assert [e["kind"] for e in job.get("/runs/job/events").json()["events"]] == ["run_created"]
    still_whole(job)
    # Text that is merely not ASCII is welcome.
    fine = job.post("/runs/job/scale", json={"factor": 0.5, "reason": "naïve — spikes ✓"})
    assert fine.status_code == 200, fine.text
    assert job.get("/runs/job/events").json()["events"][-1]["reason"] == "naïve — spikes ✓"


def test_a_run_name_no_run_can_have_is_refused_before_the_database(job: TestClient) -> None:
    for method, path in [
        ("POST", "/runs/a%00b/scale"),
        ("POST", "/runs/a%00b/schedule"),
        ("POST", "/runs/a%00b/metrics"),
        ("POST", "/runs/a%00b/state"),
        ("GET", "/runs/a%00b/events"),
        ("GET", "/runs/a%00b/events/verify"),
    ]:
        response = job.request(method, path, json={})
        assert refused(response, "path.run"), (path, response.status_code, response.text)
    still_whole(job)


def test_counts_are_bounded_by_the_columns_they_reach(job: TestClient) -> None:
    for number in TOO_BIG:
        for field in ("patience", "cooldown"):
            body = {**RUN, "name": "big", "plateau": {"metric": "loss", field: number}}
            response = job.post("/runs", json=body)
            assert refused(response, f"body.plateau.{field}"), (field, number, response.text)
        response = job.get("/runs/job/events", params={"after": number})
        assert refused(response, "query.after"), (number, response.text)
    assert job.get("/runs/job/events", params={"after": 2**31 - 1}).json()["events"] == []
    still_whole(job)


def test_the_largest_cooldown_and_patience_are_stored_and_served(job: TestClient) -> None:
    """At the bound, the counters that count up to them go into their 32-bit columns."""
    longest = {"metric": "loss", "patience": 0, "cooldown": 2**31 - 1}
    assert job.post("/runs", json={**RUN, "name": "cool", "plateau": longest}).status_code == 201
    assert not job.post("/runs/cool/metrics", json={"step": 1, "value": 1.0}).json()["reduced"]
    assert job.post("/runs/cool/metrics", json={"step": 2, "value": 1.0}).json()["reduced"]
    for step in range(3, 6):  # in cooldown from here on: no more reductions, no errors
        answer = job.post("/runs/cool/metrics", json={"step": step, "value": 1.0})
        assert answer.status_code == 200 and not answer.json()["reduced"], answer.text
    patient = {"metric": "loss", "patience": 2**31 - 1}
    assert job.post("/runs", json={**RUN, "name": "patient", "plateau": patient}).status_code == 201
    for step in range(1, 4):
        assert job.post("/runs/patient/metrics", json={"step": step, "value": 1.0}).status_code == 200
    assert job.get("/runs/cool/events/verify").json() == {"ok": True, "count": 2, "first_bad_seq": None}


def test_token_names_are_printable_and_fit_their_columns(settings: Settings) -> None:
    tokens = Tokens(make_engine(settings))
    for name in [*CONTROL, "", "x" * 129]:
        with pytest.raises(Invalid) as refusal:
            tokens.create(name, "read", actor="test")[1]
        assert refusal.value.errors[0].loc == ("name",), name
    assert tokens.all() == []
    assert tokens.create("ci bot für vision", "read", actor="test")[1].startswith("lrt_")
    tokens.engine.dispose()


@pytest.mark.slow
def test_the_cli_refuses_a_bad_token_name_with_a_message(settings: Settings, tmp_path: Path) -> None:
    lrtower = str(Path(sys.executable).parent / "lrtower")
    env = {**os.environ, "LRTOWER_DATABASE_URL": settings.database_url}
    result = subprocess.run(
        [lrtower, "token", "create", "\x1b[2Jroot", "--scope", "admin"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 1 and "invalid token name" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr + result.stdout
