"""The audit trail shows tampering, whatever an edit of the database writes into an event: verify
names the first bad event, and the trail (API and console) shows what can no longer be read,
instead of failing. Each table runs on the backend whose column types allow its edits."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lrtower_server.api.app import create_app
from lrtower_server.core.config import Settings

STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}

# (the SET clause of an UPDATE of event 2, the field it leaves unreadable)
EITHER = [
    ("lr_after = '\"abc\"'", "lr_after"),  # JSON, but a string where a list of floats belongs
    ("lr_after = '1.5'", "lr_after"),
    ("lr_after = '[0.5, \"x\"]'", "lr_after"),
    ("lr_after = '[1e999]'", "lr_after"),  # overflows to infinity: no LR, and nothing JSON can hash
    ("lr_after = '{\"lr\": 0.5}'", "lr_after"),
    ("details = '[1, 2]'", "details"),
    ("details = 'null'", "details"),
    (f"details = '{{\"a\": {'[' * 300}{']' * 300}}}'", "details"),  # deeper than any answer can encode
]
SQLITE = [  # SQLite keeps whatever it is given, in any column
    ("lr_after = 'not json{'", "lr_after"),
    ("lr_after = '[NaN]'", "lr_after"),
    ("details = '{\"a\": '", "details"),
    ("effective_step = 'soon'", "effective_step"),
    ("effective_step = 1.5", "effective_step"),  # a float where an int belongs
    ("at = 'yesterday'", "at"),
    ("at = '2026-01-01 00:00:00.000000 and then some'", "at"),
    ("at = 12", "at"),
    ("actor = X'00ff'", "actor"),  # a blob
    ("reason = CAST(X'ff' AS TEXT)", "reason"),  # text that is not UTF-8
    ("kind = 7.5", None),  # stored as the text '7.5': readable, and it breaks the hash
    ("hash = X'01'", "hash"),
    ("seq = 'two'", "seq"),
]
POSTGRESQL = [  # PostgreSQL keeps every column's type; its json columns take any JSON
    ("lr_after = '\"abc\"'::json", "lr_after"),
    ("details = '\"abc\"'::json", "details"),
    ("at = at + interval '1 microsecond'", None),
    ("effective_step = effective_step + 1", None),
]


def three_events(client: TestClient, name: str) -> None:
    assert client.post("/runs", json={"name": name, "lr": 1.0, "schedule": STEP}).status_code == 201
    assert client.post(f"/runs/{name}/scale", json={"factor": 0.5, "reason": "too hot"}).status_code == 200
    assert client.post(f"/runs/{name}/schedule", json={"schedule": STEP, "reason": "back"}).status_code == 200


def tamper(settings: Settings, name: str, assignment: str) -> None:
    """Edit event 2 of the run behind the service's back, as someone with access to the database can."""
    engine = create_engine(settings.database_url)
    with engine.begin() as db:
        run_id = db.execute(text("SELECT id FROM runs WHERE name = :name"), {"name": name}).scalar_one()
        db.execute(text(f"UPDATE events SET {assignment} WHERE run_id = :run AND seq = 2"), {"run": run_id})
    engine.dispose()


def test_any_edit_is_reported_and_the_trail_still_reads(client: TestClient, settings: Settings) -> None:
    sqlite = settings.database_url.startswith("sqlite")
    for i, (assignment, damaged) in enumerate(EITHER + (SQLITE if sqlite else POSTGRESQL)):
        name = f"run-{i}"
        three_events(client, name)
        assert client.get(f"/runs/{name}/events/verify").json()["ok"]
        tamper(settings, name, assignment)

        verdict = client.get(f"/runs/{name}/events/verify")
        assert verdict.json() == {"ok": False, "count": 3, "first_bad_seq": 2}, (assignment, verdict.text)
        page = client.get(f"/runs/{name}/events")
        assert page.status_code == 200, (assignment, page.text)
        events = page.json()["events"]
        # (In order of seq: one that is no number is listed last.)
        assert sorted(e["damaged"] for e in events) == [[], [], [damaged] if damaged else []], assignment
        if damaged:
            bad = next(e for e in events if e["damaged"])
            assert bad[damaged] is None, assignment
            assert bad["seq"] == (None if damaged == "seq" else 2), assignment
        console = client.get(f"/ui/runs/{name}")
        assert console.status_code == 200, (assignment, console.text)
        assert "hash chain broken at event 2" in console.text, assignment
        assert (f'data-damaged="{damaged}"' in console.text) == bool(damaged), assignment


def test_an_edit_that_keeps_valid_values_is_still_reported(client: TestClient, settings: Settings) -> None:
    three_events(client, "job")
    tamper(settings, "job", "lr_after = '[0.25]'")
    assert client.get("/runs/job/events/verify").json() == {"ok": False, "count": 3, "first_bad_seq": 2}
    events = client.get("/runs/job/events").json()["events"]
    assert events[1]["lr_after"] == [0.25] and events[1]["damaged"] == []


def test_an_intact_trail_verifies_in_any_session_time_zone(client: TestClient, settings: Settings) -> None:
    """The hash covers each timestamp in UTC; PostgreSQL hands timestamps back in the session's
    zone, which a server's or a role's settings may make anything."""
    three_events(client, "job")
    url = make_url(settings.database_url)
    if url.get_backend_name() == "postgresql":
        options = f"{url.query.get('options', '')} -ctimezone=Asia/Kathmandu".strip()
        url = url.update_query_dict({"options": options})
    zoned = settings.model_copy(update={"database_url": url.render_as_string(hide_password=False)})
    with TestClient(create_app(zoned)) as elsewhere:
        assert elsewhere.get("/runs/job/events/verify").json() == {
            "ok": True,
            "count": 3,
            "first_bad_seq": None,
        }
        at = elsewhere.get("/runs/job/events").json()["events"][0]["at"]
    assert at == client.get("/runs/job/events").json()["events"][0]["at"]


def test_the_openapi_model_documents_damage(client: TestClient) -> None:
    event = client.get("/openapi.json").json()["components"]["schemas"]["EventOut"]
    assert "damaged" in event["properties"] and event["properties"]["damaged"]["description"]
