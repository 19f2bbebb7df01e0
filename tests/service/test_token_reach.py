"""Tokens limited to runs, expiring and rotating, and the admin trail, on both databases.

The matrix: every token scope (read, write, admin) x its run patterns (none, matching the run,
not matching it) x every endpoint that touches a run, the hot path, the console's pages and
forms, `/metrics` and the lists included. Each cell is checked for its status and its body: a
run outside a token's reach answers exactly what a run that does not exist answers.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from lrtower_server.api.app import create_app
from lrtower_server.core.auth import CACHE_SECONDS, Tokens
from lrtower_server.core.config import Settings

STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}
FORM = {"content-type": "application/x-www-form-urlencoded"}
SCOPES = ("read", "write", "admin")
PATTERNS: dict[str, list[str] | None] = {
    "none": None,
    "matching": ["team-*", "x?"],
    "not matching": ["other-*"],
}
NEEDS = {"read": 0, "write": 1, "admin": 2}


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2027, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Tower:
    client: TestClient
    tokens: Tokens
    clock: Clock
    root: str

    def as_(self, secret: str) -> dict[str, str]:
        return {"authorization": f"Bearer {secret}"}

    def new_run(self, name: str) -> None:
        root = self.as_(self.root)
        assert (
            self.client.post(
                "/runs", json={"name": name, "lr": 1.0, "schedule": STEP}, headers=root
            ).status_code
            == 201
        )
        assert self.client.get(f"/runs/{name}/lr", params={"step": 10}, headers=root).status_code == 200


@pytest.fixture
def tower(database_url: str) -> Iterator[Tower]:
    clock = Clock()
    app = create_app(Settings(database_url=database_url, auth="required"))
    with TestClient(app) as client:
        tokens: Tokens = app.state.tokens
        tokens.clock = clock
        _, root = tokens.create("root", "admin", actor="test")
        yield Tower(client, tokens, clock, root)


# An endpoint: (the scope it needs, how to call it on run `run` as `headers`, and what a 2xx body
# says). `cell` numbers the call, so that each makes what it creates under a name of its own.
Call = Callable[[TestClient, str, dict[str, str], int], httpx.Response]
ENDPOINTS: dict[str, tuple[str, Call, Callable[[Any], bool]]] = {
    "get run": ("read", lambda c, r, h, i: c.get(f"/runs/{r}", headers=h), lambda b: b["name"]),
    "lr, served step (hot path)": (
        "read", lambda c, r, h, i: c.get(f"/runs/{r}/lr", params={"step": 5}, headers=h), lambda b: b["lr"] == 1.0,
    ),
    "lr, new step": (
        "write", lambda c, r, h, i: c.get(f"/runs/{r}/lr", params={"step": 11}, headers=h), lambda b: b["lr"] == 0.5,
    ),
    "lr, range": (
        "read", lambda c, r, h, i: c.get(f"/runs/{r}/lr", params={"start": 0, "stop": 4}, headers=h),
        lambda b: b["steps"] == [0, 1, 2, 3],
    ),
    "curve": ("read", lambda c, r, h, i: c.get(f"/runs/{r}/curve", headers=h), lambda b: len(b["steps"]) == 1000),
    "events": ("read", lambda c, r, h, i: c.get(f"/runs/{r}/events", headers=h), lambda b: b["events"][0]["kind"] == "run_created"),
    "verify": ("read", lambda c, r, h, i: c.get(f"/runs/{r}/events/verify", headers=h), lambda b: b["ok"]),
    "metric": (
        "write", lambda c, r, h, i: c.post(f"/runs/{r}/metrics", json={"step": 12, "value": 1.0}, headers=h),
        lambda b: b["accepted"],
    ),
    "scale": ("write", lambda c, r, h, i: c.post(f"/runs/{r}/scale", json={"factor": 0.5}, headers=h), lambda b: b["effective_step"] == 11),
    "schedule": (
        "write", lambda c, r, h, i: c.post(f"/runs/{r}/schedule", json={"schedule": STEP, "from_step": 50}, headers=h),
        lambda b: b["effective_step"] == 50,
    ),
    "state": ("write", lambda c, r, h, i: c.post(f"/runs/{r}/state", json={"state": "finished"}, headers=h), lambda b: b["state"] == "finished"),
    "rewind": (
        "write", lambda c, r, h, i: c.post(f"/runs/{r}/rewind", json={"to_step": 5, "reason": "x"}, headers=h),
        lambda b: b["attempt"] == 2,
    ),
    "fork": (
        "write", lambda c, r, h, i: c.post(f"/runs/{r}/fork", json={"name": f"{r}-f", "at_step": 5}, headers=h),
        lambda b: b["fork"]["at_step"] == 5,
    ),
    "create": (
        "write", lambda c, r, h, i: c.post("/runs", json={"name": f"{r}-new", "lr": 1.0, "schedule": STEP}, headers=h),
        lambda b: b["high_water"] == -1,
    ),
    "console page": ("read", lambda c, r, h, i: c.get(f"/ui/runs/{r}", headers=h), lambda b: True),
    "console sparkline": ("read", lambda c, r, h, i: c.get(f"/ui/runs/{r}/sparkline.svg", headers=h), lambda b: True),
    "console chart": ("read", lambda c, r, h, i: c.get(f"/ui/runs/{r}/chart.json", headers=h), lambda b: True),
    "console scale form": (
        "write", lambda c, r, h, i: c.post(f"/ui/runs/{r}/scale", content="factor=0.5&reason=x", headers={**h, **FORM}),
        lambda b: True,
    ),
}  # fmt: skip
CELLS = list(itertools.product(SCOPES, PATTERNS, ENDPOINTS))


def test_every_endpoint_honours_scope_and_reach(tower: Tower, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = {
        (scope, reach): tower.tokens.create(f"{scope}-{reach}", scope, actor="test", runs=PATTERNS[reach])[1]
        for scope, reach in itertools.product(SCOPES, PATTERNS)
    }
    root = tower.as_(tower.root)
    for i, (scope, reach, endpoint) in enumerate(CELLS):
        run = f"team-{i}"
        tower.new_run(run)
        needed, call, says = ENDPOINTS[endpoint]
        headers = tower.as_(secrets[(scope, reach)])
        cell = (scope, reach, endpoint)
        for _ in range(2 if endpoint.startswith("lr, served") else 1):  # again: from the hot path's cache
            answer = call(tower.client, run, headers, i)
            if reach == "not matching" and not (endpoint == "create" and scope == "read"):
                # Exactly what a run that does not exist answers (to a token that reaches every
                # run); a run to create is named by the body, and answers as such a run would.
                assert answer.status_code == 404, (cell, answer.text)
                if endpoint == "create":
                    assert answer.json()["detail"] == f"no run named '{run}-new'", cell
                else:
                    ghost = call(tower.client, f"{run}-ghost", root, i)
                    assert ghost.status_code == 404, cell
                    assert answer.text == ghost.text.replace(f"{run}-ghost", run), cell
            elif NEEDS[scope] < NEEDS[needed]:
                assert answer.status_code == 403, (cell, answer.text)
                detail = answer.json()["detail"]
                assert f"{needed!r} scope" in detail or f"needs {needed!r}" in detail, cell
            else:
                assert answer.status_code in (200, 201, 303), (cell, answer.text)
                if answer.headers.get("content-type", "").startswith("application/json"):
                    assert says(answer.json()), (cell, answer.json())
    with capsys.disabled():
        print(
            f"\n  token matrix: {len(SCOPES)} scopes x {len(PATTERNS)} reaches x {len(ENDPOINTS)} endpoints = {len(CELLS)} cells"
        )


def test_lists_metrics_and_the_console_list_show_only_what_a_token_reaches(tower: Tower) -> None:
    for name in ("team-a", "team-b", "xy", "other-a", "zeta"):
        tower.new_run(name)
    client = tower.client
    for reach, patterns in PATTERNS.items():
        _, secret = tower.tokens.create(f"list-{reach}", "read", actor="test", runs=patterns)
        headers = tower.as_(secret)
        listed = [r["name"] for r in client.get("/runs", headers=headers).json()["runs"]]
        expected = {
            "none": ["other-a", "team-a", "team-b", "xy", "zeta"],
            "matching": ["team-a", "team-b", "xy"],
            "not matching": ["other-a"],
        }[reach]
        assert listed == expected, reach
        paged = [
            r["name"]
            for r in client.get("/runs", params={"limit": 1, "after": "team-a"}, headers=headers).json()[
                "runs"
            ]
        ]
        assert paged == [n for n in expected if n > "team-a"][:1], (
            reach
        )  # filtered by the database, then paged
        console = client.get("/ui/runs", headers=headers).text
        assert all(
            (f'href="/ui/runs/{n}"' in console) == (n in expected)
            for n in ("team-a", "xy", "other-a", "zeta")
        )
        metrics = client.get("/metrics", headers=headers)
        assert metrics.status_code == (200 if patterns is None else 403), reach
    _, team_admin = tower.tokens.create("team-admin", "admin", actor="test", runs=["team-*"])
    assert client.get("/tokens", headers=tower.as_(team_admin)).status_code == 403
    assert client.get("/audit", headers=tower.as_(team_admin)).status_code == 403


def test_expiry_at_the_boundary_and_rotation_grace(tower: Tower) -> None:
    client, clock = tower.client, tower.clock
    tower.new_run("team-e")
    _, secret = tower.tokens.create(
        "expiring", "read", actor="test", expires_at=clock.now + timedelta(hours=1)
    )
    headers = tower.as_(secret)
    clock.now += timedelta(hours=1) - timedelta(microseconds=1)
    for _ in range(2):  # the route, then the hot path's cache
        assert client.get("/runs/team-e/lr", params={"step": 3}, headers=headers).status_code == 200
    clock.now += timedelta(microseconds=1)
    expired = client.get("/runs/team-e/lr", params={"step": 3}, headers=headers)
    assert expired.status_code == 401 and "expired at 2027-01-01 01:00:00 UTC" in expired.json()["detail"]
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]

    _, old = tower.tokens.create("rotating", "read", actor="test")
    client.get("/runs/team-e", headers=tower.as_(old))
    new_token, new = tower.tokens.rotate("rotating", timedelta(minutes=10), actor="test", reason="leak")
    assert new != old and new_token.previous_until == clock.now + timedelta(minutes=10)
    clock.now += timedelta(minutes=10) - timedelta(seconds=1)
    for secret_ in (old, new, old):
        assert (
            client.get("/runs/team-e/lr", params={"step": 3}, headers=tower.as_(secret_)).status_code == 200
        )
    clock.now += timedelta(seconds=1)
    assert client.get("/runs/team-e/lr", params={"step": 3}, headers=tower.as_(old)).status_code == 401
    assert client.get("/runs/team-e/lr", params={"step": 3}, headers=tower.as_(new)).status_code == 200


def test_last_use_is_written_at_most_once_a_minute(tower: Tower, database_url: str) -> None:
    tower.new_run("team-u")
    _, secret = tower.tokens.create("busy", "read", actor="test")
    engine = create_engine(database_url)

    def last_used() -> Any:
        with engine.connect() as db:
            return db.execute(text("SELECT last_used_at FROM tokens WHERE name = 'busy'")).scalar()

    assert last_used() is None
    for _ in range(50):
        tower.client.get("/runs/team-u/lr", params={"step": 3}, headers=tower.as_(secret))
    first = last_used()
    assert first is not None
    tower.tokens._cache.clear()  # the next request looks the token up again: within the minute, no write
    tower.client.get("/runs/team-u/lr", params={"step": 3}, headers=tower.as_(secret))
    assert last_used() == first
    engine.dispose()


def test_the_admin_trail_records_every_action_without_secrets_and_verify_catches_an_edit(
    tower: Tower, database_url: str
) -> None:
    client, root = tower.client, tower.as_(tower.root)
    made = client.post("/tokens", json={"name": "vision-ci", "scope": "write", "runs": ["vision-*"],
                                        "expires_in_days": 90, "reason": "CI"}, headers=root)  # fmt: skip
    assert made.status_code == 201 and made.json()["token"]["runs"] == ["vision-*"]
    first = made.json()["secret"]
    rotated = client.post(
        "/tokens/vision-ci/rotate", json={"grace_seconds": 60, "reason": "leak"}, headers=root
    ).json()
    changed = client.patch(
        "/tokens/vision-ci",
        json={"scope": "read", "runs": ["vision-*", "eval-*"], "reason": "narrow"},
        headers=root,
    )
    assert changed.status_code == 200 and changed.json()["scope"] == "read"
    assert client.post("/tokens/vision-ci/revoke", json={"reason": "left"}, headers=root).json()["revoked_at"]
    trail = client.get("/audit", headers=root).json()["events"]
    assert [(e["kind"], e["actor"], e["reason"]) for e in trail] == [
        ("token_created", "test", None),
        ("token_created", "root", "CI"),
        ("token_rotated", "root", "leak"),
        ("token_changed", "root", "narrow"),
        ("token_revoked", "root", "left"),
    ]
    assert trail[3]["details"]["before"]["scope"] == "write" and trail[3]["details"]["runs"] == [
        "vision-*",
        "eval-*",
    ]
    written = str(trail) + str(client.get("/tokens", headers=root).json())
    for secret in (tower.root, first, rotated["secret"]):
        assert secret not in written and secret[4:] not in written
    for token_hash in _hashes(database_url):
        assert token_hash not in written
    assert client.get("/audit/verify", headers=root).json() == {"ok": True, "count": 5, "first_bad_seq": None}
    engine = create_engine(database_url)
    with engine.begin() as db:
        db.execute(text("UPDATE admin_events SET reason = 'routine' WHERE seq = 3"))
    engine.dispose()
    assert client.get("/audit/verify", headers=root).json() == {"ok": False, "count": 5, "first_bad_seq": 3}


def _hashes(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    with engine.connect() as db:
        found = [
            h for row in db.execute(text("SELECT secret_hash, previous_hash FROM tokens")) for h in row if h
        ]
    engine.dispose()
    return found


def test_revocation_reaches_the_hot_path_of_another_process_within_the_cache_bound(
    tower: Tower, database_url: str
) -> None:
    """Two apps on one database, as two replicas: a token revoked through one stops on the
    other's hot path within CACHE_SECONDS, the documented bound, once its cached lookup ages."""
    tower.new_run("team-r")
    _, secret = tower.tokens.create("leaving", "read", actor="test")
    other = create_app(Settings(database_url=database_url, auth="required"))
    headers = tower.as_(secret)
    with TestClient(other) as replica:
        for _ in range(2):
            assert replica.get("/runs/team-r/lr", params={"step": 3}, headers=headers).status_code == 200
        tower.tokens.revoke("leaving", actor="test")
        revoked = time.monotonic()
        assert (
            replica.get("/runs/team-r/lr", params={"step": 3}, headers=headers).status_code == 200
        )  # cached
        while replica.get("/runs/team-r/lr", params={"step": 3}, headers=headers).status_code == 200:
            assert time.monotonic() - revoked < CACHE_SECONDS + 2, "still accepted past the bound"
            time.sleep(0.2)
        refused = replica.get("/runs/team-r/lr", params={"step": 3}, headers=headers)
        assert refused.status_code == 401 and refused.json()["detail"] == "the token is unknown or revoked"


def test_token_administration_needs_an_admin_that_reaches_every_run(tower: Tower) -> None:
    client = tower.client
    callers = {
        "read": tower.tokens.create("a-read", "read", actor="test")[1],
        "write": tower.tokens.create("a-write", "write", actor="test")[1],
        "admin limited to runs": tower.tokens.create("a-team", "admin", actor="test", runs=["team-*"])[1],
        "admin": tower.root,
    }
    calls: dict[str, Callable[[dict[str, str]], httpx.Response]] = {
        "list": lambda h: client.get("/tokens", headers=h),
        "create": lambda h: client.post("/tokens", json={"name": f"t-{len(h)}-{time.monotonic_ns()}", "scope": "read"}, headers=h),
        "rotate": lambda h: client.post("/tokens/a-read/rotate", json={"grace_seconds": 0}, headers=h),
        "change": lambda h: client.patch("/tokens/a-write", json={"runs": ["team-*"]}, headers=h),
        "audit": lambda h: client.get("/audit", headers=h),
        "verify": lambda h: client.get("/audit/verify", headers=h),
        "console page": lambda h: client.get("/ui/tokens", headers=h),
    }  # fmt: skip
    for who, secret in callers.items():
        for name, call in calls.items():
            answer = call(tower.as_(secret))
            assert answer.status_code == (403 if who != "admin" else (201 if name == "create" else 200)), (
                who,
                name,
            )
    assert client.post("/tokens/nobody/revoke", json={}, headers=tower.as_(tower.root)).status_code == 404
    bad = client.post("/tokens", json={"name": "x", "runs": ["a b"]}, headers=tower.as_(tower.root))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.runs.0"


def test_the_console_tokens_page_creates_rotates_and_revokes_with_reasons(tower: Tower) -> None:
    client, admin = tower.client, {**tower.as_(tower.root), **FORM}
    made = client.post(
        "/ui/tokens",
        content="name=vision-ci&scope=write&runs=vision-*,+eval-?&expires_in_days=30&reason=CI",
        headers=admin,
    )
    assert made.status_code == 200 and 'id="secret"' in made.text
    secret = made.text.split('id="secret"')[1].split("<code>")[1].split("</code>")[0]
    assert secret.startswith("lrt_")
    assert client.get("/runs", headers=tower.as_(secret)).status_code == 200  # it works, once shown
    page_after = client.get("/ui/tokens", headers=tower.as_(tower.root)).text
    assert secret not in page_after and "vision-*, eval-?" in page_after  # shown once, never again
    rotated = client.post("/ui/tokens/vision-ci/rotate", content="grace_seconds=0&reason=leak", headers=admin)
    assert 'id="secret"' in rotated.text and secret not in rotated.text
    assert client.get("/runs", headers=tower.as_(secret)).status_code == 401  # no grace: the old one stops
    revoked = client.post(
        "/ui/tokens/vision-ci/revoke", content="reason=left", headers=admin, follow_redirects=False
    )
    assert revoked.status_code == 303
    refused = client.post("/ui/tokens", content="name=bad&runs=a+b", headers=admin)
    assert refused.status_code == 422 and "form-error" in refused.text
    forged = client.post(
        "/ui/tokens", content="name=evil", headers={**admin, "origin": "https://evil.example"}
    )
    assert forged.status_code == 403
    trail = [
        (e["kind"], e["reason"]) for e in client.get("/audit", headers=tower.as_(tower.root)).json()["events"]
    ]
    assert trail[-3:] == [("token_created", "CI"), ("token_rotated", "leak"), ("token_revoked", "left")]
