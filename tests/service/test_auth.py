"""Bearer tokens: scopes, revocation, the actor in the audit trail, and the CLI."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lrtower_server.core.auth import Tokens

RUN = {"name": "secure", "lr": 0.1, "schedule": {"type": "StepLR", "step_size": 10}}


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def test_scopes(secured: tuple[TestClient, Tokens]) -> None:
    client, tokens = secured
    reader, writer = (
        tokens.create("dashboard", "read", actor="test")[1],
        tokens.create("trainer", "write", actor="test")[1],
    )
    assert client.post("/runs", json=RUN).status_code == 401
    assert client.post("/runs", json=RUN, headers=bearer("lrt_wrong")).status_code == 401
    forbidden = client.post("/runs", json=RUN, headers=bearer(reader))
    assert forbidden.status_code == 403 and forbidden.headers["content-type"] == "application/problem+json"
    assert client.post("/runs", json=RUN, headers=bearer(writer)).status_code == 201
    # A reader reads what a consumer served, and never serves (moves the mark) itself.
    refused = client.get("/runs/secure/lr", params={"step": 3}, headers=bearer(reader))
    assert refused.status_code == 403 and "write" in refused.json()["detail"]
    assert client.get("/runs/secure/lr", params={"step": 3}, headers=bearer(writer)).status_code == 200
    assert client.get("/runs/secure/lr", params={"step": 3}, headers=bearer(reader)).status_code == 200
    assert client.get("/runs/secure/lr", params={"step": 3}).status_code == 401
    events = client.get("/runs/secure/events", headers=bearer(reader)).json()["events"]
    assert events[0]["actor"] == "trainer"


def test_revoked_tokens_stop_working(
    secured: tuple[TestClient, Tokens], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, tokens = secured
    monkeypatch.setattr("lrtower_server.core.auth.CACHE_SECONDS", 0.0)  # servers re-check at once
    secret = tokens.create("temp", "read", actor="test")[1]
    assert client.get("/runs", headers=bearer(secret)).status_code == 200
    tokens.revoke("temp", actor="test")
    assert client.get("/runs", headers=bearer(secret)).status_code == 401


def test_tokens_are_stored_hashed(secured: tuple[TestClient, Tokens]) -> None:
    _, tokens = secured
    secret = tokens.create("ci", "admin", actor="test")[1]
    with tokens.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT secret_hash FROM tokens").scalar()
    assert stored is not None and secret not in stored and len(stored) == 64


@pytest.mark.slow
def test_token_cli(tmp_path: Path, database_url: str) -> None:
    env = {**os.environ, "LRTOWER_DATABASE_URL": database_url}
    lrtower = str(Path(sys.executable).parent / "lrtower")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([lrtower, *args], env=env, capture_output=True, text=True, cwd=tmp_path)

    assert run("db", "upgrade").returncode == 0
    created = run("token", "create", "alice", "--scope", "read", "--reason", "dashboards")
    assert created.returncode == 0 and created.stdout.startswith("lrt_")
    listed = run("token", "list")
    header, alice = listed.stdout.splitlines()
    assert header.split() == ["NAME", "SCOPE", "RUNS", "CREATED", "EXPIRES", "LAST", "USED", "STATE"]
    assert alice.split()[:3] == ["alice", "read", "*"] and alice.split()[-3:] == ["never", "never", "live"]
    assert created.stdout.strip() not in listed.stdout
    team = run("token", "create", "vision-ci", "--scope", "write", "--runs", "vision-*", "--runs", "shared-?",
               "--expires", "90d", "--actor", "ops-bot")  # fmt: skip
    assert team.returncode == 0, team.stderr
    (vision,) = [t for t in json.loads(run("token", "list", "--json").stdout) if t["name"] == "vision-ci"]
    assert vision["runs"] == ["vision-*", "shared-?"] and vision["expires_at"] is not None
    rotated = run("token", "rotate", "vision-ci", "--grace", "2h", "--reason", "leaked in a log")
    assert rotated.returncode == 0 and rotated.stdout.startswith("lrt_") and rotated.stdout != team.stdout
    assert "old secret until" in run("token", "list").stdout
    changed = run("token", "change", "vision-ci", "--every-run", "--never-expires", "--reason", "promoted")
    assert changed.returncode == 0 and json.loads(changed.stdout)["runs"] is None
    assert run("token", "revoke", "alice").returncode == 0
    assert "revoked" in run("token", "list").stdout
    assert run("token", "revoke", "alice").returncode != 0
    assert run("token", "create", "bob", "--scope", "root").returncode != 0
    assert run("token", "create", "bob", "--runs", "a b").returncode != 0  # not a run-name pattern
    assert run("token", "create", "bob", "--expires", "soon").returncode != 0
    trail = run("token", "audit").stdout.splitlines()
    assert [line.split()[4] for line in trail] == [
        "token_created", "token_created", "token_rotated", "token_changed", "token_revoked",
    ]  # fmt: skip
    assert trail[1].split()[3] == "ops-bot" and trail[2].split()[3] == getpass.getuser()
    for secret in (created.stdout, team.stdout, rotated.stdout):
        assert secret.strip() not in "\n".join(trail)
    assert run("token", "audit", "--verify").stdout.startswith("ok: 5 events")


@pytest.mark.slow
def test_serving_off_loopback_without_auth_warns(tmp_path: Path) -> None:
    from servers import free_port

    env = {**os.environ, "LRTOWER_DATABASE_URL": f"sqlite:///{tmp_path / 'open.db'}"}
    lrtower = str(Path(sys.executable).parent / "lrtower")
    process = subprocess.Popen(
        [lrtower, "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--no-auth"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert "without authentication" in process.stderr.readline()
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_the_hot_path_checks_tokens_too(secured: tuple[TestClient, Tokens]) -> None:
    client, tokens = secured
    writer = tokens.create("trainer", "write", actor="test")[1]
    assert client.post("/runs", json=RUN, headers=bearer(writer)).status_code == 201
    for _ in range(2):  # the first asks the database for the token; the second, the cache
        assert client.get("/runs/secure/lr", params={"step": 3}, headers=bearer(writer)).status_code == 200
        assert client.get("/runs/secure/lr", params={"step": 3}).status_code == 401
        assert (
            client.get("/runs/secure/lr", params={"step": 3}, headers=bearer("lrt_nope")).status_code == 401
        )
