"""The edges of the HTTP surface, on real `lrtower serve` processes: which hosts a server without
tokens answers (DNS rebinding), and the headers every answer carries."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from lrtower_server.api.app import create_app
from lrtower_server.core.auth import Tokens
from lrtower_server.core.config import Settings
from lrtower_server.db.engine import make_engine
from servers import Server

STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}
JSON = {"content-type": "application/json"}


def _create(url: str, name: str) -> None:
    assert httpx.post(f"{url}/runs", json={"name": name, "lr": 0.1, "schedule": STEP}).status_code == 201


def _is_host_problem(response: httpx.Response) -> bool:
    return (
        response.status_code == 400
        and response.headers["content-type"] == "application/problem+json"
        and response.json()["errors"][0]["field"] == "header.Host"
    )


def test_a_server_without_tokens_answers_only_its_own_host_names(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    port = server.url.rsplit(":", 1)[1]
    _create(server.url, "n1")
    # A page on a rebinding domain: the browser sends its own origin, same-origin as it believes.
    evil = {
        "host": f"evil.example:{port}",
        "origin": f"http://evil.example:{port}",
        "sec-fetch-site": "same-origin",
    }
    finish = httpx.post(f"{server.url}/ui/runs/n1/finish", data={"reason": "x"}, headers=evil)
    assert _is_host_problem(finish)
    assert _is_host_problem(httpx.post(f"{server.url}/runs/n1/scale", json={"factor": 0.5}, headers=evil))
    assert _is_host_problem(
        httpx.get(f"{server.url}/runs/n1/lr", params={"step": 5}, headers=evil)
    )  # hot path
    assert _is_host_problem(httpx.get(f"{server.url}/healthz", headers={"host": ""}))
    run = httpx.get(f"{server.url}/runs/n1").json()
    assert run["state"] == "live" and run["high_water"] == -1 and not run["changes"]  # nothing done

    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
        assert (
            httpx.get(f"{server.url}/runs/n1/lr", params={"step": 5}, headers={"host": host}).status_code
            == 200
        )


def test_the_allowed_hosts_are_a_setting(start_server: Callable[..., Server]) -> None:
    server = start_server(env={"LRTOWER_ALLOWED_HOSTS": "127.0.0.1, tower.internal, *.lab.example"})
    _create_with = {"host": "tower.internal"}
    assert (
        httpx.post(
            f"{server.url}/runs", json={"name": "n2", "lr": 0.1, "schedule": STEP}, headers=_create_with
        ).status_code
        == 201
    )
    assert httpx.get(f"{server.url}/runs/n2", headers={"host": "gpu7.lab.example:80"}).status_code == 200
    assert _is_host_problem(httpx.get(f"{server.url}/runs/n2", headers={"host": "lab.example.evil.org"}))
    assert _is_host_problem(httpx.get(f"{server.url}/runs/n2", headers={"host": "localhost"}))  # not listed


def test_a_server_with_tokens_answers_any_host(start_server: Callable[..., Server]) -> None:
    server = start_server("--auth")
    answer = httpx.get(f"{server.url}/runs", headers={"host": "tower.example.org"})
    assert answer.status_code == 401  # the token decides, whatever the name the caller used


def test_refusals_carry_the_headers_their_status_needs(start_server: Callable[..., Server]) -> None:
    server = start_server()
    not_allowed = httpx.delete(f"{server.url}/healthz")
    assert not_allowed.status_code == 405 and not_allowed.headers["allow"] == "GET, HEAD"
    assert not_allowed.headers["content-type"] == "application/problem+json"
    # Every method of the path, whichever of its routes Starlette tried first.
    assert httpx.request("OPTIONS", f"{server.url}/runs").headers["allow"] == "GET, HEAD, POST"
    undecodable = httpx.post(
        f"{server.url}/runs", content=b"\xff\xfe{", headers={"content-type": "application/json"}
    )
    assert undecodable.status_code == 422 and undecodable.json()["errors"][0]["field"] == "body"


@pytest.fixture
def hot_and_route(database_url: str) -> Iterator[tuple[TestClient, TestClient, str]]:
    """The whole app (the hot path first) and the route alone, on a server with tokens; and a
    write token, whose first use is made so that the hot path knows it."""
    settings = Settings(database_url=database_url, auth="required")
    engine = make_engine(settings)
    app = create_app(settings)
    secret = Tokens(engine).create("trainer", "write", actor="test")[1]
    with TestClient(app) as hot:
        route = TestClient(app.hot_path.app)  # what the hot path hands on: FastAPI's stack
        ok = {"authorization": f"Bearer {secret}"}
        assert (
            hot.post("/runs", json={"name": "r", "lr": 0.1, "schedule": STEP}, headers=ok).status_code == 201
        )
        assert hot.get("/runs/r/lr", params={"step": 1}, headers=ok).status_code == 200  # cached now
        yield hot, route, secret
    engine.dispose()


def test_two_authorization_headers_are_refused_on_both_paths(
    hot_and_route: tuple[TestClient, TestClient, str],
) -> None:
    hot, route, secret = hot_and_route
    for pair in (
        [("authorization", "Bearer bogus"), ("authorization", f"Bearer {secret}")],
        [("authorization", f"Bearer {secret}"), ("authorization", f"Bearer {secret}")],
    ):
        for client in (hot, route):
            answer = client.get("/runs/r/lr", params={"step": 2}, headers=pair)
            assert answer.status_code == 400, answer.text
            assert answer.json()["errors"][0]["field"] == "header.Authorization"
    # Two Accept headers: the first counts, on both.
    both = [("authorization", f"Bearer {secret}"), ("accept", "text/plain"), ("accept", "application/json")]
    assert (
        hot.get("/runs/r/lr", params={"step": 1}, headers=both).text
        == route.get("/runs/r/lr", params={"step": 1}, headers=both).text
        == repr(0.1)
    )


def test_the_bearer_scheme_is_case_insensitive_and_a_401_names_it(
    hot_and_route: tuple[TestClient, TestClient, str],
) -> None:
    hot, route, secret = hot_and_route
    for scheme in ("bearer", "BEARER", "Bearer"):
        for client in (hot, route):
            answer = client.get(
                "/runs/r/lr", params={"step": 1}, headers={"authorization": f"{scheme} {secret}"}
            )
            assert answer.status_code == 200, (scheme, answer.text)
    missing = hot.get("/runs/r/lr", params={"step": 1})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="lrtower"'
    wrong = hot.get("/runs/r/lr", params={"step": 1}, headers={"authorization": "Bearer lrt_wrong"})
    assert wrong.headers["www-authenticate"] == 'Bearer realm="lrtower", error="invalid_token"'


@pytest.mark.parametrize("asked", ["a b", "<script>", "x" * 8000, b"\xe9\xff", "", "ok-id_1.2:3"])
def test_both_paths_answer_a_request_id_and_replace_an_unusable_one(
    hot_and_route: tuple[TestClient, TestClient, str], asked: str | bytes
) -> None:
    hot, route, secret = hot_and_route
    headers = {"authorization": f"Bearer {secret}", "x-request-id": asked}
    for client in (hot, route):
        answered = client.get("/runs/r/lr", params={"step": 1}, headers=headers).headers["x-request-id"]
        if asked == "ok-id_1.2:3":
            assert answered == asked
        else:
            assert answered != asked and len(answered) == 32 and answered.isalnum()
    assert (
        len(
            hot.get("/runs/r/lr", params={"step": 1}, headers={"authorization": f"Bearer {secret}"}).headers[
                "x-request-id"
            ]
        )
        == 32
    )


def test_head_answers_as_get_without_a_body(hot_and_route: tuple[TestClient, TestClient, str]) -> None:
    hot, _, secret = hot_and_route
    ok = {"authorization": f"Bearer {secret}"}
    for path in ("/healthz", "/runs/r", "/runs/r/lr?step=1", "/openapi.json"):
        get, head = hot.get(path, headers=ok), hot.head(path, headers=ok)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"], path


def _served_steps(client: TestClient, headers: dict[str, str]) -> tuple[float, float]:
    text = client.get("/metrics", headers=headers).text
    found = dict(
        re.findall(
            r'^(lrtower_served_steps_total|lrtower_lr_answers_total\{source="route"\}) (\S+)$', text, re.M
        )
    )
    return float(found.get("lrtower_served_steps_total", 0)), float(
        found.get('lrtower_lr_answers_total{source="route"}', 0)
    )


def test_every_served_step_is_counted_once_on_either_path(
    hot_and_route: tuple[TestClient, TestClient, str], database_url: str
) -> None:
    hot, _, secret = hot_and_route
    ok = {"authorization": f"Bearer {secret}"}
    steps, by_route = _served_steps(hot, ok)
    engine = make_engine(Settings(database_url=database_url))
    fresh = {"authorization": f"Bearer {Tokens(engine).create('new', 'write', actor='test')[1]}"}
    engine.dispose()
    not_cached = hot.get("/runs/r/lr", params={"step": 7}, headers=fresh)  # the route serves it
    assert not_cached.status_code == 200
    assert (
        hot.get("/runs/r/lr", params={"start": 8, "stop": 12}, headers=fresh).status_code == 200
    )  # hot path
    after, after_route = _served_steps(hot, ok)
    assert (after - steps, after_route - by_route) == (5, 1)


def _trickle(url: str, parts: list[bytes], every: float, until: float) -> tuple[float, bytes]:
    """Send `parts` one at a time, `every` seconds apart, then wait; the seconds until the server
    closed the connection, and what it answered."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port))) as connection:
        connection.settimeout(every)
        answer = b""
        for part in [*parts, *[b""] * int(until / every)]:
            try:
                if part:
                    connection.sendall(part)
                chunk = connection.recv(65536)
                if not chunk:
                    return time.monotonic() - started, answer
                answer += chunk
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started, answer
    return time.monotonic() - started, answer


def test_requests_that_trickle_in_are_closed_within_the_read_timeout(
    start_server: Callable[..., Server],
) -> None:
    server = start_server(env={"LRTOWER_READ_TIMEOUT": "1.5"})
    header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40
    body = b"POST /runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{"
    slow = [[header[i : i + 2] for i in range(0, len(header), 2)], [body, *[b" "] * 30], []]
    with ThreadPoolExecutor(max_workers=30) as pool:
        trickling = [pool.submit(_trickle, server.url, slow[i % 3], 0.3, 6.0) for i in range(30)]
        time.sleep(0.5)
        served = [httpx.get(f"{server.url}/healthz", timeout=2).status_code for _ in range(20)]  # meanwhile
        closed = [f.result() for f in trickling]
    assert served == [200] * 20
    assert all(seconds < 3.5 for seconds, _ in closed), sorted(s for s, _ in closed)  # 1.5 s, and slack
    for (_, answer), parts in zip(closed, [slow[i % 3] for i in range(30)], strict=True):
        if parts is not slow[1]:  # no answer had begun: a 408 problem says why
            assert answer.startswith(b"HTTP/1.1 408 ") and b"LRTOWER_READ_TIMEOUT" in answer
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_integers_take_whole_number_floats_in_bodies_and_queries_alike(client: TestClient) -> None:
    """JSON Schema's `integer` is any number without a fraction: `20000.0` and `2e4` are integers
    to a generated client, in a body and in a query alike; a fraction is refused in both."""
    spec = {"type": "StepLR", "step_size": 10.0, "gamma": 0.5}
    created = client.post(
        "/runs", json={"name": "w", "lr": 0.1, "schedule": spec, "plateau": {"patience": 2.0}}
    )
    assert created.status_code == 201, created.text
    assert client.get("/runs/w/lr", params={"step": "1e1"}).json()["lr"] == 0.05  # step 10: one decay
    scaled = client.post("/runs/w/scale", headers=JSON, content=b'{"factor": 0.5, "from_step": 2e4}')
    assert scaled.status_code == 200 and scaled.json()["effective_step"] == 20000
    posted = client.post("/runs/w/metrics", headers=JSON, content=b'{"step": 11.0, "value": 1.5}')
    assert posted.status_code == 200 and posted.json()["accepted"] is True
    assert client.get("/runs/w/events", params={"limit": "2.0"}).json()["events"][1]["seq"] == 2
    for url, body in (
        ("/runs/w/scale", b'{"factor": 0.5, "from_step": 20000.5}'),
        ("/runs/w/metrics", b'{"step": 1e400, "value": 1.5}'),
        ("/schedules/preview", b'{"lr": 0.1, "schedule": {"type": "StepLR", "step_size": 2.5}}'),
    ):
        refused = client.post(url, headers=JSON, content=body)
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["field"] in (
            "body.from_step",
            "body.step",
            "body.schedule.step_size",
        )
    for query in ("limit=2.5", "limit=5_0", "limit=%2B5", "after=1e-1"):
        refused = client.get(f"/runs/w/events?{query}")
        assert (
            refused.status_code == 422
            and refused.json()["errors"][0]["field"] == f"query.{query.split('=')[0]}"
        )
