"""The web console's pages, through the ASGI app: the runs list, a run's curve (SVG) with its
served steps and change markers, metrics and audit trail; live fragments; signing in."""

from __future__ import annotations

import html
import json
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from lrtower_server.api.app import create_app
from lrtower_server.api.svg import sparkline
from lrtower_server.core.auth import Tokens
from lrtower_server.core.config import Settings
from lrtower_server.core.runs import Runs
from lrtower_server.core.timeline import Timeline
from lrtower_server.db.engine import make_engine

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


def preview_of(html: str) -> Any:
    """The playground's curve, as the page hands it to its chart (null where the spec has none)."""
    found = re.search(r'<script type="application/json" id="preview-data">(.*?)</script>', html, re.S)
    assert found is not None
    return json.loads(found.group(1))


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
    assert '"url": "/ui/runs/vision-1/chart.json"' in page and '<script src="/static/chart.js" defer>' in page
    chart = client.get("/ui/runs/vision-1/chart.json")
    assert chart.headers["cache-control"] == "no-store" and "content-security-policy" in chart.headers
    drawn = chart.json()
    planned = client.get("/runs/vision-1/curve", params={"start": 0, "stop": 1000}).json()
    assert (drawn["start"], drawn["stop"], drawn["high_water"], drawn["attempt"]) == (0, 1000, 30, 1)
    assert drawn["steps"] == planned["steps"] and drawn["lrs"] == [planned["lr"]]  # as the API answers
    events = client.get("/runs/vision-1/events").json()["events"]
    changed = [e for e in events if e["kind"] != "run_created"]
    assert [(m["seq"], m["kind"], m["step"], m["actor"]) for m in drawn["markers"]] == [
        (changed[0]["seq"], "scale", 31, "anonymous"),
        (changed[1]["seq"], "plateau", 41, "anonymous"),
    ]
    assert drawn["markers"][0]["title"] == "scale from step 31 by anonymous: loss <spikes>"  # text, not HTML
    assert drawn["metrics"] == {"loss": {"steps": [40, 41], "values": [1.0, 2.0]}}
    assert drawn["plateau_metric"] == "loss" and drawn["branches"] == []
    assert rows(page, "events", "data-seq") == [str(e["seq"]) for e in events]
    assert "hash chain intact (3 events)" in page and "<td>loss</td>" in page

    zoomed = client.get("/ui/runs/vision-1/chart.json", params={"start": 35, "stop": 60}).json()
    assert zoomed["steps"] == list(range(35, 60)) and zoomed["metrics"]["loss"]["steps"] == [40, 41]
    wide = client.get("/ui/runs/vision-1/chart.json", params={"start": 0, "stop": 10**9}).json()
    assert 500 <= len(wide["steps"]) <= 601 and wide["steps"][-1] < 10**9
    sampled = client.get(
        "/runs/vision-1/curve", params={"start": wide["steps"][7], "stop": wide["steps"][7] + 1}
    )
    assert wide["lrs"][0][7] == sampled.json()["lr"][0]

    tamper = create_engine(settings.database_url)
    with tamper.begin() as db:
        db.execute(text("UPDATE events SET reason = 'nothing' WHERE seq = 2"))
    tamper.dispose()
    assert "hash chain broken at event 2" in client.get("/ui/runs/vision-1").text


def test_pages_refresh_their_main_part(client: TestClient) -> None:
    busy_run(client)
    whole = client.get("/ui/runs/vision-1").text
    fragment = client.get("/ui/runs/vision-1", headers={"x-lrtower-fragment": "1"}).text
    assert "<html" in whole and "setInterval" not in whole  # one fetch at a time: see below
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
    reader = Tokens(engine).create("viewer", "read", actor="test")[1]
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        assert client.get("/ui/runs", follow_redirects=False).headers["location"] == "/ui/login"
        image = client.get("/ui/runs/r/sparkline.svg", follow_redirects=False)
        assert image.status_code == 303 and image.headers["location"] == "/ui/login"
        refused = client.post(
            "/ui/login",
            content="token=lrt_wrong",
            headers={"content-type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert refused.headers["location"] == "/ui/login" and "lrtower_token" not in client.cookies
        # A page elsewhere posting its author's token: the visitor would act, unknowingly, as them.
        forged = client.post(
            "/ui/login",
            content=f"token={reader}",
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "origin": "https://evil.example",
                "sec-fetch-site": "cross-site",
            },
            follow_redirects=False,
        )
        assert forged.status_code == 403 and forged.headers["content-type"] == "application/problem+json"
        assert "lrtower_token" not in client.cookies and "set-cookie" not in forged.headers
        # The API's description is the same for every server and names no run: it stays open.
        for public in ("/openapi.json", "/docs", "/redoc"):
            assert client.get(public).status_code == 200, public
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
    assert bad.status_code == 422 and "schedule.step_size" in bad.text  # shown back on the page
    assert "setTimeout(refresh" not in bad.text  # its address is the form's: nothing to refresh
    # An error is never taken from the URL, where a link could put any words on the page.
    assert "Wire the funds" not in client.get("/ui/runs/vision-1", params={"error": "Wire the funds"}).text
    late = client.post("/ui/runs/vision-1/scale", content="factor=0.5&from_step=3&reason=x", headers=FORM)
    assert "high-water mark" in late.text
    forged = {**FORM, "origin": "https://evil.example", "sec-fetch-site": "cross-site"}
    refused = client.post("/ui/runs/vision-1/scale", content="factor=0.5&reason=x", headers=forged)
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert len(client.get("/runs/vision-1/events").json()["events"]) == len(events) + 1  # nothing more
    # A form's from_step reads whole numbers as the API does: 9e6 is step 9,000,000; 5_0 is no number.
    sloppy = client.post("/ui/runs/vision-1/scale", content="factor=0.5&from_step=5_0&reason=x", headers=FORM)
    assert sloppy.status_code == 422 and "whole number" in sloppy.text
    client.post("/ui/runs/vision-1/scale", content="factor=0.5&from_step=9e6&reason=x", headers=FORM)
    assert client.get("/runs/vision-1/events").json()["events"][-1]["effective_step"] == 9_000_000

    client.post("/ui/runs/vision-1/finish", content="reason=converged", headers=FORM)
    finished = client.get("/ui/runs/vision-1").text
    assert "state-finished" in finished and 'id="scale-form"' not in finished


def test_a_read_token_sees_the_pages_but_no_forms(database_url: str) -> None:
    settings = Settings(database_url=database_url, auth="required")
    engine = make_engine(settings)
    tokens = Tokens(engine)
    reader, writer = (
        tokens.create("viewer", "read", actor="test")[1],
        tokens.create("operator", "write", actor="test")[1],
    )
    admin = tokens.create("root", "admin", actor="test")[1]
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        client.post(
            "/runs",
            json={"name": "r", "lr": 0.1, "schedule": STEP},
            headers={"authorization": f"Bearer {writer}"},
        )
        client.post("/ui/login", content=f"token={reader}", headers=FORM)
        page = client.get("/ui/runs/r").text
        assert 'id="chart"' in page and 'id="scale-form"' not in page
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
    assert preview_of(drawn)["steps"] == list(range(1000)) and 'class="broken field-error"' not in drawn
    spec = '{"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 100}'
    curve = preview_of(client.get("/ui/playground", params={"spec": spec, "lr": "", "stop": 500}).text)
    assert curve["steps"] == list(range(101))  # it ends with the schedule
    planned = client.post("/schedules/preview", json={"schedule": json.loads(spec), "stop": 101}).json()
    assert curve["lrs"] == [planned["lr"]]  # as the API answers
    bad = client.get("/ui/playground", params={"spec": '{"type": "StepLR", "step_size": 0}'}).text
    assert 'data-field="step_size"' in bad and "greater than or equal to 1" in bad and preview_of(bad) is None
    assert 'data-field="spec"' in client.get("/ui/playground", params={"spec": "{not json"}).text
    fragment = client.get("/ui/playground", params={"spec": spec}, headers={"x-lrtower-fragment": "1"}).text
    assert 'id="preview"' in fragment and "<html" not in fragment


def test_the_runs_list_pages(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lrtower_server.api.routes.console.PAGE", 1)
    busy_run(client)
    first = client.get("/ui/runs").text
    assert rows(first, "runs", "data-run") == ["nlp-1"] and "after=nlp-1" in first
    second = client.get("/ui/runs", params={"after": "nlp-1"}).text
    assert rows(second, "runs", "data-run") == ["vision-1"]


SVG_NS = "{http://www.w3.org/2000/svg}"
NUMERIC = ("x", "y", "x1", "x2", "y1", "y2", "width", "height")


def coordinates(svg: ET.Element) -> list[float]:
    """Every number an SVG places something at (attributes and polyline points)."""
    found = []
    for element in svg.iter():
        found += [float(element.attrib[a]) for a in NUMERIC if a in element.attrib]
        found += [float(n) for pair in element.get("points", "").split() for n in pair.split(",")]
    return found


def sparkline_urls(html: str) -> dict[str, str]:
    return {
        name: src.replace("&amp;", "&")
        for name, src in re.findall(
            r'<tr data-run="([^"]+)">.*?<img class="sparkline"[^>]* src="([^"]+)"', html, re.S
        )
    }


def test_the_runs_list_computes_no_curve_and_each_sparkline_is_a_cacheable_image(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy_run(client)
    spec = {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 30}  # no value past step 30
    assert client.post("/runs", json={"name": "short", "schedule": spec}).status_code == 201
    evaluated = built = 0
    at, build = Timeline.at, Timeline.__init__

    def counted(self: Timeline, step: int) -> Any:
        nonlocal evaluated
        evaluated += 1
        return at(self, step)

    def counted_build(self: Timeline, *args: Any, **kwargs: Any) -> None:
        nonlocal built
        built += 1
        build(self, *args, **kwargs)

    monkeypatch.setattr(Timeline, "at", counted)
    monkeypatch.setattr(Timeline, "__init__", counted_build)
    listed = client.get("/ui/runs").text
    assert evaluated == built == 0  # rows from the database only: no schedule is even compiled
    urls = sparkline_urls(listed)
    assert set(urls) == {"nlp-1", "short", "vision-1"} and 'loading="lazy"' in listed
    assert ">30<" in listed  # the served step

    version = client.get("/runs/vision-1").json()["version"]
    assert urls["vision-1"] == f"/ui/runs/vision-1/sparkline.svg?v={version}&mark=30"
    evaluated = 0
    image = client.get(urls["vision-1"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/svg+xml"
    assert image.headers["cache-control"].startswith("private, max-age=")
    assert 0 < evaluated <= 61  # at most 60 points and the LR at the mark, wherever the run stands
    svg = ET.fromstring(image.text)
    lr_at_mark = client.get("/runs/vision-1/curve", params={"start": 30, "stop": 31}).json()["lr"][0]
    assert svg.findtext(f"{SVG_NS}title", "").startswith(f"LR {lr_at_mark:.4g} at step 30")
    assert svg.findtext(f"{SVG_NS}text") == f"{lr_at_mark:.4g}"

    evaluated = 0
    short = ET.fromstring(client.get(urls["short"]).text)
    line = short.find(f"{SVG_NS}polyline")
    assert line is not None and 0 < len(line.get("points", "").split()) <= 31  # it stops with the schedule
    assert evaluated <= 33
    stale = client.get("/ui/runs/vision-1/sparkline.svg", params={"v": version - 1, "mark": 30})
    assert stale.headers["cache-control"] == "no-store"  # an old URL shows today's plan, not kept
    assert client.get("/ui/runs/nope/sparkline.svg").status_code == 404


def test_the_live_refresh_waits_for_each_fetch_to_settle(client: TestClient) -> None:
    busy_run(client)
    for url in ("/ui/runs", "/ui/runs/vision-1"):
        assert '<script src="/static/console.js" data-refresh-ms="3000" defer>' in client.get(url).text
    script = client.get("/static/console.js").text
    assert "setInterval" not in script
    # The next refresh is scheduled only once this one has finished or failed.
    assert re.search(r"finally \{\s*setTimeout\(refresh, every\)", script)
    assert "document.hidden" in script


def test_a_metric_posted_at_every_step_is_drawn_from_every_kth_post(client: TestClient) -> None:
    assert client.post("/runs", json={"name": "dense", "lr": 0.1, "schedule": STEP}).status_code == 201
    for step in range(1, 26):
        client.post("/runs/dense/metrics", json={"step": step, "value": step / 10, "name": "acc"})
    runs: Runs = client.app.state.runs  # type: ignore[attr-defined]
    assert runs.metric_series("dense", 0, 100, 10, 8) == {
        "acc": ([1, 4, 7, 10, 13, 16, 19, 22, 25], [0.1, 0.4, 0.7, 1.0, 1.3, 1.6, 1.9, 2.2, 2.5])
    }
    assert runs.metric_series("dense", 5, 8, 10, 8) == {"acc": ([5, 6, 7], [0.5, 0.6, 0.7])}
    assert runs.metric_series("dense", 0, 100, 10, 0) == {}
    assert runs.metric_names("dense") == ["acc"]


def test_runs_are_compared_on_one_chart_and_unknown_ones_are_named(client: TestClient) -> None:
    busy_run(client)
    page = client.get(
        "/ui/compare", params=[("run", "vision-1"), ("run", "nlp-1"), ("run", "nope"), ("run", "../x")]
    )
    assert page.status_code == 200 and "content-security-policy" in page.headers
    assert (
        '"url": "/ui/runs/vision-1/chart.json"' in page.text
        and '"url": "/ui/runs/nlp-1/chart.json"' in page.text
    )
    assert (
        'id="missing"' in page.text and "<code>nope</code>" in page.text and "<code>../x</code>" in page.text
    )
    assert "<option selected>loss</option>" in page.text  # the plateau's metric, unless another is asked
    empty = client.get("/ui/compare")
    assert empty.status_code == 200 and 'id="chart"' not in empty.text
    too_many = client.get("/ui/compare", params=[("run", f"r{i}") for i in range(9)])
    assert too_many.status_code == 422


@pytest.mark.parametrize(
    "values",
    [
        [1.8e308, 1.8e308],
        [0.0, 1.8e308],
        [5e-324, 1.8e308, 1e-300],
        [5e-324, 5e-324],
        [1.5e-323, 1e-323],
        [0.0, 0.0],
        [1e308, math.inf, math.nan, 0.1],
    ],
)
def test_any_finite_lr_can_be_drawn_in_a_sparkline(values: list[float]) -> None:
    small = ET.fromstring(sparkline(values, "x", "y"))
    assert all(math.isfinite(n) for n in coordinates(small))
    line = small.find(f"{SVG_NS}polyline")
    assert line is not None and len(line.get("points", "").split()) == len(
        [v for v in values if math.isfinite(v)]
    )


def test_the_playground_answers_its_page_for_any_spec(client: TestClient) -> None:
    deep = client.get("/ui/playground", params={"spec": "[" * 5000})
    assert deep.status_code == 200 and 'data-field="spec"' in deep.text and "nested more than" in deep.text
    quoted = json.dumps({"type": "ExponentialLR", "gamma": 0.9, "note": "[" * 5000})
    in_a_string = client.get("/ui/playground", params={"spec": quoted}).text  # brackets in a string are text
    assert 'data-field="note"' in in_a_string and "nested more than" not in in_a_string
    digits = client.get(
        "/ui/playground", params={"spec": '{"type": "StepLR", "step_size": ' + "9" * 5000 + "}"}
    )
    assert digits.status_code == 200 and 'data-field="spec"' in digits.text
    posted = client.post("/runs", json={"name": "r", "lr": 0.1, "schedule": STEP})
    assert posted.status_code == 201
    form = client.post(
        "/ui/runs/r/schedule",
        content="schedule=" + "[" * 5000 + "&reason=x",
        headers=FORM,
        follow_redirects=False,
    )
    assert form.status_code == 422 and "nested" in form.text


def test_the_playground_draws_huge_lrs_and_refuses_bad_ones(client: TestClient) -> None:
    spec = json.dumps({"type": "ExponentialLR", "gamma": 10})
    for log in ("0", "1"):
        page = client.get("/ui/playground", params={"spec": spec, "lr": "1e308", "log": log})
        assert page.status_code == 200
        curve = preview_of(page.text)  # JSON: a value beyond the largest float would not parse back
        assert curve["steps"][0] == 0 and all(math.isfinite(v) for v in curve["lrs"][0])
    for lr, why in [
        ("inf", "finite number"),
        ("nan", "finite number"),
        ("-1", "greater than or equal to 0"),
        ("abc", "valid number"),
    ]:
        page = client.get("/ui/playground", params={"spec": spec, "lr": lr})
        assert page.status_code == 200 and 'data-field="lr"' in page.text and why in page.text
        assert preview_of(page.text) is None


HOSTILE = [
    "9" * 5000,
    "1e999",
    "-1",
    "-99999999999999999999",
    "abc",
    "nan",
    "x" * 60_000,  # about what a URL may hold (uvicorn refuses longer request lines)
    "\x00\x01\x1b[2J\u202e",
    "team=\x00",
    "maybe",
    "<script>alert(1)</script>",
    "",
]


@pytest.mark.parametrize(
    ("route", "fields"),
    [
        ("/ui/runs", ["q", "label", "state", "after"]),
        ("/ui/runs/vision-1", ["start", "stop", "log", "error"]),
        ("/ui/runs/vision-1/sparkline.svg", ["v", "mark"]),
        ("/ui/runs/vision-1/chart.json", ["start", "stop"]),
        ("/ui/compare", ["run", "metric", "log"]),
        ("/ui/playground", ["spec", "lr", "start", "stop", "log"]),
    ],
)
def test_hostile_query_strings_get_a_page_or_a_4xx(client: TestClient, route: str, fields: list[str]) -> None:
    busy_run(client)
    for field in fields:
        for value in HOSTILE:
            answer = client.get(route, params={field: value})
            assert answer.status_code < 500, (route, field, value[:20])
            assert "<script>alert" not in answer.text  # shown escaped, if at all


def test_hostile_paths_and_forms_get_a_page_or_a_4xx(client: TestClient) -> None:
    busy_run(client)
    for value in HOSTILE:
        for path in ("/ui/runs/{}", "/ui/runs/{}/sparkline.svg", "/ui/runs/{}/chart.json"):
            assert client.get(path.format(quote(value, safe="") or "x")).status_code < 500, (path, value[:20])
    for value in [*HOSTILE, "x" * 100_000]:  # a body may be longer than a URL
        for action, field in [
            ("scale", "factor"),
            ("scale", "from_step"),
            ("schedule", "schedule"),
            ("schedule", "from_step"),
            ("finish", "reason"),
        ]:
            form = {"factor": "0.5", "schedule": json.dumps(STEP), "reason": "x", field: value}
            run = "vision-1" if action == "finish" else "nlp-1"  # nlp-1 stays live for the changes
            answer = client.post(
                f"/ui/runs/{run}/{action}", content=urlencode(form), headers=FORM, follow_redirects=False
            )
            assert answer.status_code < 500, (action, field, value[:20])


def test_a_costly_schedule_is_drawn_with_fewer_points(client: TestClient) -> None:
    """A run's chart draws up to 600 points, but never more work than one curve's budget: a
    product over steps on 64 groups is drawn with a handful of points, quickly, from step 0."""
    from lrtower_server.api.chart import CURVE_WORK

    spec = {"type": "MultiplicativeLR", "lr_lambda": "1 - 1 / (epoch + 10)"}
    assert (
        client.post("/runs", json={"name": "costly", "lrs": [0.1] * 64, "schedule": spec}).status_code == 201
    )
    drawn = client.get("/ui/runs/costly/chart.json").json()["steps"]
    cheap = client.post(
        "/runs", json={"name": "cheap", "lr": 0.1, "schedule": {"type": "StepLR", "step_size": 7}}
    )
    assert cheap.status_code == 201
    assert (
        len(client.get("/ui/runs/cheap/chart.json").json()["steps"]) >= 500
    )  # a cheap one keeps every point
    assert drawn[0] == 0 and 2 <= len(drawn) <= CURVE_WORK // (64 * 100) + 1


def test_audit_rows_show_each_groups_change_and_its_factor(client: TestClient) -> None:
    client.post("/runs", json={"name": "groups", "lrs": [0.1, 0.01], "schedule": STEP})
    client.get("/runs/groups/lr", params={"step": 700})
    client.post("/runs/groups/scale", json={"factor": 0.5, "reason": "hot"})
    page = client.get("/ui/runs/groups").text
    row = page.split('data-seq="2"')[1].split("</tr>")[0]
    cells = re.findall(r'<div data-group="(\d)">(.*?)</div>', row)
    assert [group for group, _ in cells] == ["0", "1"]
    scaled = client.get("/runs/groups/events").json()["events"][1]
    for (_, shown), before, after in zip(cells, scaled["lr_before"], scaled["lr_after"], strict=True):
        assert f"{before:.6g} → {after:.6g}" in shown
    assert all('class="factor">x0.5<' in shown for _, shown in cells)
    assert "/ui/runs/groups?start=201&amp;stop=1201" in row, row  # the curve around step 701


def test_the_playground_picks_every_type_with_a_spec_the_preview_accepts_and_hints_its_parameters(
    client: TestClient,
) -> None:
    page = client.get("/ui/playground").text
    types = re.findall(r'<option value="([^"]+)"', page)
    examples = json.loads(
        page.split('<script type="application/json" id="examples">')[1].split("</script>")[0]
    )
    assert types == sorted(examples) and len(types) == 56
    for name in types:
        spec = examples[name]
        assert (
            client.post(
                "/schedules/preview", json={"schedule": spec, "lrs": [0.1, 0.01], "stop": 50}
            ).status_code
            == 200
        ), name
    hinted = client.get("/ui/playground", params={"spec": json.dumps(examples["StepLR"])}).text
    rows = dict(
        re.findall(
            r'<tr data-parameter="(\w+)"><td><code>\w+</code></td><td>[^<]*</td><td><code>([^<]*)</code>',
            hinted,
        )
    )
    assert rows == {"step_size": "required", "gamma": "0.1"}
    assert 'value="StepLR" selected' in hinted


def test_the_run_page_shows_the_schedule_in_force_and_every_schedule_it_had(client: TestClient) -> None:
    client.post("/runs", json={"name": "s", "lr": 0.1, "schedule": STEP})
    client.get("/runs/s/lr", params={"step": 20})
    client.post("/runs/s/scale", json={"factor": 0.5, "reason": "hot"})
    cosine = {"type": "CosineAnnealingLR", "T_max": 500}
    client.post("/runs/s/schedule", json={"schedule": cosine, "restart": True, "reason": "to cosine"})
    later = {"type": "ExponentialLR", "gamma": 0.99}
    client.post("/runs/s/schedule", json={"schedule": later, "from_step": 400, "reason": "later on"})
    page = client.get("/ui/runs/s").text
    now = client.get("/runs/s").json()["schedule_now"]
    shown = page.split('id="schedule-now"')[1].split("</p>")[0]
    assert f"<code>{json.dumps(cosine, sort_keys=True)}</code>" in html.unescape(shown)
    assert f"restarted at step {now['from_step']}" in shown and "scaled by 0.5" in shown
    assert (
        rows(page, "schedules", "data-seq")[0] == "created" and len(rows(page, "schedules", "data-seq")) == 3
    )
    table = html.unescape(page.split('id="schedules"')[1].split("</table>")[0])
    assert "(in force)" in table and "(pending)" in table and "to cosine" in table and "later on" in table
