"""The web console's pages, through the ASGI app: the runs list, a run's curve (SVG) with its
served steps and change markers, metrics and audit trail; live fragments; signing in."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from lrtower_server.app import create_app
from lrtower_server.auth import Tokens
from lrtower_server.config import Settings
from lrtower_server.db import make_engine

STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}


class Rows(HTMLParser):
    """The `data-*` rows of one table, by its id."""

    def __init__(self, table: str, attribute: str) -> None:
        super().__init__()
        self.table, self.attribute, self.inside, self.found = table, attribute, False, list[str]()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "table":
            self.inside = values.get("id") == self.table
        elif tag == "tr" and self.inside and values.get(self.attribute):
            self.found.append(str(values[self.attribute]))


def rows(html: str, table: str, attribute: str) -> list[str]:
    parser = Rows(table, attribute)
    parser.feed(html)
    return parser.found


def svg_of(html: str) -> ET.Element:
    start, end = html.index('<svg class="curve"'), html.index("</svg>", html.index('<svg class="curve"')) + 6
    return ET.fromstring(html[start:end])


def busy_run(client: TestClient) -> None:
    body = {
        "name": "vision-1",
        "lr": 1.0,
        "schedule": STEP,
        "plateau": {"patience": 0},
        "labels": {"team": "vision"},
    }
    assert client.post("/runs", json=body).status_code == 201
    assert client.post("/runs", json={"name": "nlp-1", "lr": 0.1, "schedule": STEP}).status_code == 201
    client.get("/runs/vision-1/lr", params={"step": 30})
    client.post("/runs/vision-1/scale", json={"factor": 0.5, "reason": "loss <spikes>"})
    client.post("/runs/vision-1/metrics", json={"step": 40, "value": 1.0})
    assert client.post("/runs/vision-1/metrics", json={"step": 41, "value": 2.0}).json()["reduced"]


def test_the_runs_list_filters_by_name_label_and_state(client: TestClient) -> None:
    busy_run(client)
    client.post("/runs/nlp-1/state", json={"state": "finished"})
    page = client.get("/ui/runs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert rows(page.text, "runs", "data-run") == ["nlp-1", "vision-1"]
    assert 'class="sparkline"' in page.text and ">30<" in page.text  # the served step
    assert rows(client.get("/ui/runs", params={"q": "vis"}).text, "runs", "data-run") == ["vision-1"]
    assert rows(client.get("/ui/runs", params={"label": "team=vision"}).text, "runs", "data-run") == [
        "vision-1"
    ]
    assert rows(client.get("/ui/runs", params={"state": "finished"}).text, "runs", "data-run") == ["nlp-1"]
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/runs"


def test_a_run_page_draws_its_curve_changes_metrics_and_audit_trail(
    client: TestClient, settings: Settings
) -> None:
    busy_run(client)
    page = client.get("/ui/runs/vision-1").text
    svg = svg_of(page)
    ids = {element.get("id"): element for element in svg.iter()}
    assert "curve-0" in ids and "served" in ids
    events = client.get("/runs/vision-1/events").json()["events"]
    changed = [e for e in events if e["kind"] != "run_created"]
    titles = {e["seq"]: ids[f"change-{e['seq']}"].findtext("title") for e in changed}
    assert titles[changed[0]["seq"]] == "scale from step 31 by anonymous: loss <spikes>"  # escaped, read back
    assert titles[changed[1]["seq"]] == "plateau from step 41 by anonymous"
    assert [int(ids[f"change-{e['seq']}"].get("data-step", -1)) for e in changed] == [31, 41]
    assert rows(page, "events", "data-seq") == [str(e["seq"]) for e in events]
    assert "hash chain intact (3 events)" in page and "<td>loss</td>" in page

    zoomed = svg_of(client.get("/ui/runs/vision-1", params={"start": 35, "stop": 60, "log": 1}).text)
    assert zoomed.get("data-log") == "true"
    assert {el.get("id") for el in zoomed.iter()} >= {"curve-0", "change-3"} and "change-2" not in {
        el.get("id") for el in zoomed.iter()
    }  # the scale at step 31 is outside steps 35-60

    tamper = create_engine(settings.database_url)
    with tamper.begin() as db:
        db.execute(text("UPDATE events SET reason = 'nothing' WHERE seq = 2"))
    tamper.dispose()
    assert "hash chain broken at event 2" in client.get("/ui/runs/vision-1").text


def test_pages_refresh_their_main_part(client: TestClient) -> None:
    busy_run(client)
    whole = client.get("/ui/runs/vision-1").text
    fragment = client.get("/ui/runs/vision-1", headers={"x-lrtower-fragment": "1"}).text
    assert "setInterval" in whole and "<html" in whole
    assert "<html" not in fragment and 'id="high-water">30<' in fragment
    client.get("/runs/vision-1/lr", params={"step": 77})
    assert 'id="high-water">77<' in client.get("/ui/runs/vision-1", headers={"x-lrtower-fragment": "1"}).text


def test_unknown_runs_and_bad_ranges_are_refused(client: TestClient) -> None:
    assert client.get("/ui/runs/nope").status_code == 404
    busy_run(client)
    assert client.get("/ui/runs/vision-1", params={"start": -1}).status_code == 422


def test_with_tokens_the_console_signs_in_once_and_the_api_ignores_its_cookie(database_url: str) -> None:
    settings = Settings(database_url=database_url, auth="required")
    engine = make_engine(settings)
    reader = Tokens(engine).create("viewer", "read")
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        assert client.get("/ui/runs", follow_redirects=False).headers["location"] == "/ui/login"
        refused = client.post(
            "/ui/login",
            content="token=lrt_wrong",
            headers={"content-type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert refused.headers["location"] == "/ui/login" and "lrtower_token" not in client.cookies
        signed = client.post(
            "/ui/login",
            content=f"token={reader}",
            headers={"content-type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert signed.headers["location"] == "/ui/runs" and "httponly" in signed.headers["set-cookie"].lower()
        assert "samesite=strict" in signed.headers["set-cookie"].lower()
        assert client.get("/ui/runs").status_code == 200
        assert client.get("/runs").status_code == 401  # the API takes bearer headers only


FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_forms_change_a_live_run_with_a_reason_from_the_console_only(client: TestClient) -> None:
    busy_run(client)
    page = client.get("/ui/runs/vision-1").text
    assert 'id="scale-form"' in page and 'id="schedule-form"' in page and 'id="finish-form"' in page
    done = client.post(
        "/ui/runs/vision-1/scale", content="factor=0.25&reason=too+hot", headers=FORM, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/ui/runs/vision-1"
    events = client.get("/runs/vision-1/events").json()["events"]
    assert (
        events[-1]["kind"] == "scaled"
        and events[-1]["reason"] == "too hot"
        and events[-1]["details"]["factor"] == 0.25
    )
    spec = '{"type": "ExponentialLR", "gamma": 0.9}'
    client.post("/ui/runs/vision-1/schedule", content=f"schedule={spec}&restart=1&reason=decay", headers=FORM)
    assert client.get("/runs/vision-1/events").json()["events"][-1]["kind"] == "schedule_changed"

    bad = client.post(
        "/ui/runs/vision-1/schedule", content='schedule={"type": "StepLR"}&reason=x', headers=FORM
    )
    assert bad.status_code == 200 and "schedule.step_size" in bad.text  # shown back on the page
    late = client.post("/ui/runs/vision-1/scale", content="factor=0.5&from_step=3&reason=x", headers=FORM)
    assert "high-water mark" in late.text
    forged = {**FORM, "origin": "https://evil.example", "sec-fetch-site": "cross-site"}
    refused = client.post("/ui/runs/vision-1/scale", content="factor=0.5&reason=x", headers=forged)
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert len(client.get("/runs/vision-1/events").json()["events"]) == len(events) + 1  # nothing more

    client.post("/ui/runs/vision-1/finish", content="reason=converged", headers=FORM)
    finished = client.get("/ui/runs/vision-1").text
    assert "state-finished" in finished and 'id="scale-form"' not in finished


def test_a_read_token_sees_the_pages_but_no_forms(database_url: str) -> None:
    settings = Settings(database_url=database_url, auth="required")
    engine = make_engine(settings)
    tokens = Tokens(engine)
    reader, writer = tokens.create("viewer", "read"), tokens.create("operator", "write")
    admin = tokens.create("root", "admin")
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        client.post(
            "/runs",
            json={"name": "r", "lr": 0.1, "schedule": STEP},
            headers={"authorization": f"Bearer {writer}"},
        )
        client.post("/ui/login", content=f"token={reader}", headers=FORM)
        page = client.get("/ui/runs/r").text
        assert "<svg" in page and 'id="scale-form"' not in page
        assert client.post("/ui/runs/r/scale", content="factor=0.5&reason=x", headers=FORM).status_code == 403
        client.post("/ui/login", content=f"token={writer}", headers=FORM)
        assert 'id="scale-form"' in client.get("/ui/runs/r").text
        client.post("/ui/runs/r/scale", content="factor=0.5&reason=ok", headers=FORM)
        assert (
            client.get("/runs/r/events", headers={"authorization": f"Bearer {reader}"}).json()["events"][-1][
                "actor"
            ]
            == "operator"
        )
        client.post("/ui/login", content=f"token={admin}", headers=FORM)
        everything = client.get("/ui/runs/r").text
        assert all(f'id="{form}"' in everything for form in ("scale-form", "schedule-form", "finish-form"))


def test_the_playground_draws_a_spec_and_names_its_bad_fields(client: TestClient) -> None:
    drawn = client.get("/ui/playground").text  # an example to start from
    assert "curve-0" in drawn and 'class="broken field-error"' not in drawn
    spec = '{"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 100}'
    svg = svg_of(client.get("/ui/playground", params={"spec": spec, "lr": "", "stop": 500}).text)
    points = svg.find("polyline")
    assert points is not None and len(points.get("points", "").split()) == 101  # it ends with the schedule
    bad = client.get("/ui/playground", params={"spec": '{"type": "StepLR", "step_size": 0}'}).text
    assert 'data-field="step_size"' in bad and "greater than or equal to 1" in bad and "curve-0" not in bad
    assert 'data-field="spec"' in client.get("/ui/playground", params={"spec": "{not json"}).text
    fragment = client.get("/ui/playground", params={"spec": spec}, headers={"x-lrtower-fragment": "1"}).text
    assert 'id="preview"' in fragment and "<html" not in fragment


def test_the_runs_list_pages(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lrtower_server.routes.console.PAGE", 1)
    busy_run(client)
    first = client.get("/ui/runs").text
    assert rows(first, "runs", "data-run") == ["nlp-1"] and "after=nlp-1" in first
    second = client.get("/ui/runs", params={"after": "nlp-1"}).text
    assert rows(second, "runs", "data-run") == ["vision-1"]
