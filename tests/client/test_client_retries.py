"""What the client retries and raises, what its requests carry, idempotency end to end, and timeouts."""

from __future__ import annotations

import json
import pickle
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import lrtower
from fault_injection import LOST, REFUSED, Flaky, problem
from lr_references import CONSTANT, EXPONENTIAL, FAST, STEP, approx, engine_lrs, torch_lrs, torch_plateau
from lrtower import (
    APIError,
    Client,
    Conflict,
    Forbidden,
    Invalid,
    LrtowerError,
    NotFound,
    Retry,
    ServerError,
    ServerUnreachable,
    TooLarge,
    Unauthorized,
    UnreadableAnswer,
)
from servers import free_port


def answering(status: int, seen: list[httpx.Request], **response: Any) -> httpx.MockTransport:
    """A transport that answers every request with `status`, counting them in `seen`."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, **response)

    return httpx.MockTransport(handler)


@pytest.fixture
def server(tower: str) -> str:
    """One server for the module (each test's runs have names of their own), not one per test."""
    return tower


# -- retries -------------------------------------------------------------------------------


def test_transient_errors_are_retried_against_the_real_server(server: str) -> None:
    flaky = Flaky({("GET", "/runs/retried/lr"): [503, 503], ("POST", "/runs"): [502, REFUSED]})
    with httpx.HTTPTransport() as real, Client(server, retry=FAST, transport=flaky.sync(real)) as tower:
        assert tower.create_run("retried", STEP, lr=0.1).name == "retried"
        assert len(flaky.requests("POST", "/runs")) == 3
        assert tower.lr("retried", 7).lr == approx(torch_lrs(STEP, [0.1], 8)[7][0])
        assert len(flaky.requests("GET", "/runs/retried/lr")) == 3
        assert tower.get_run("retried").high_water == 7


@pytest.mark.parametrize(
    ("status", "error"),
    [(408, APIError), (429, APIError), (502, ServerError), (503, ServerError), (504, ServerError)],
)
def test_transient_statuses_are_retried_then_raise(status: int, error: type[APIError]) -> None:
    for call in (lambda t: t.get_run("r"), lambda t: t.scale("r", 0.5), lambda t: t.post_metric("r", 1, 0.5)):
        seen: list[httpx.Request] = []
        with (
            Client(
                "http://tower.test", retry=FAST, transport=answering(status, seen, json=problem(status))
            ) as tower,
            pytest.raises(error) as raised,
        ):
            call(tower)
        assert len(seen) == 3  # the first attempt and FAST's 2 retries
        assert raised.value.status == status and raised.value.detail == f"detail {status}"
        assert type(raised.value) is error


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, APIError),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (413, TooLarge),
        (422, Invalid),
        (500, ServerError),
        (501, ServerError),
    ],
)
def test_other_errors_are_not_retried(status: int, error: type[APIError]) -> None:
    seen: list[httpx.Request] = []
    with (
        Client(
            "http://tower.test", retry=FAST, transport=answering(status, seen, json=problem(status))
        ) as tower,
        pytest.raises(error) as raised,
    ):
        tower.scale("r", 0.5)
    assert len(seen) == 1
    assert type(raised.value) is error and raised.value.status == status
    assert raised.value.problem == problem(status) and f"Title {status}: detail {status}" in str(raised.value)


def test_connection_errors_are_retried_then_raise_server_unreachable() -> None:
    seen: list[httpx.Request] = []
    errors: list[httpx.ConnectError] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        errors.append(httpx.ConnectError("connection refused", request=request))
        raise errors[-1]

    with (
        Client("http://tower.test", retry=FAST, transport=httpx.MockTransport(handler)) as tower,
        pytest.raises(ServerUnreachable) as raised,
    ):
        tower.lr("r", 3)
    assert len(seen) == 3
    assert raised.value.__cause__ is errors[-1]
    assert isinstance(raised.value, LrtowerError) and not isinstance(raised.value, APIError)
    assert "http://tower.test/runs/r/lr" in str(raised.value) and "ConnectError" in str(raised.value)


def test_nothing_listening_raises_server_unreachable() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}", retry=Retry(retries=1, backoff=0.001)) as tower,
        pytest.raises(ServerUnreachable) as raised,
    ):
        tower.get_run("r")
    assert isinstance(raised.value.__cause__, httpx.ConnectError)


def test_retry_after_is_honored() -> None:
    seen: list[httpx.Request] = []
    # Backoff alone would pause up to 30 s between attempts: Retry-After: 0 asks for none.
    slow = Retry(retries=3, backoff=30.0, max_backoff=30.0)
    transport = answering(503, seen, json=problem(503), headers={"Retry-After": "0"})
    started = time.monotonic()
    with Client("http://tower.test", retry=slow, transport=transport) as tower, pytest.raises(ServerError):
        tower.get_run("r")
    assert len(seen) == 4 and time.monotonic() - started < 2

    # A longer Retry-After is capped at max_backoff.
    seen.clear()
    capped = Retry(retries=2, backoff=30.0, max_backoff=0.01)
    transport = answering(429, seen, json=problem(429), headers={"Retry-After": "3600"})
    started = time.monotonic()
    with Client("http://tower.test", retry=capped, transport=transport) as tower, pytest.raises(APIError):
        tower.get_run("r")
    assert len(seen) == 3 and time.monotonic() - started < 2


def test_retry_pauses() -> None:
    policy = Retry(retries=5, backoff=0.5, max_backoff=3.0)
    for attempt in range(6):
        pauses = [policy.pause(attempt, None) for _ in range(50)]
        assert all(0 <= p <= min(3.0, 0.5 * 2**attempt) for p in pauses)
    request = httpx.Request("GET", "http://tower.test/")
    assert policy.pause(0, httpx.Response(503, headers={"Retry-After": "2"}, request=request)) == 2.0
    assert policy.pause(0, httpx.Response(503, headers={"Retry-After": "60"}, request=request)) == 3.0
    assert policy.pause(0, httpx.Response(503, headers={"Retry-After": "-5"}, request=request)) == 0.0
    dated = httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, request=request)
    assert all(0 <= policy.pause(0, dated) <= 0.5 for _ in range(50))  # a date: backoff instead


def test_ready_is_never_retried() -> None:
    seen: list[httpx.Request] = []
    with Client("http://tower.test", retry=FAST, transport=answering(503, seen, json=problem(503))) as tower:
        assert tower.ready() is False
    assert len(seen) == 1 and seen[0].url.path == "/readyz"

    seen.clear()
    with Client(
        "http://tower.test", retry=FAST, transport=answering(200, seen, json={"status": "ok"})
    ) as tower:
        assert tower.ready() is True

    def refused(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    seen.clear()
    with (
        Client("http://tower.test", retry=FAST, transport=httpx.MockTransport(refused)) as tower,
        pytest.raises(ServerUnreachable),
    ):
        tower.ready()
    assert len(seen) == 1


def test_error_bodies_that_are_not_problem_json() -> None:
    html = "<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
    seen: list[httpx.Request] = []
    transport = answering(502, seen, html=html)
    with (
        Client("http://tower.test", retry=FAST, transport=transport) as tower,
        pytest.raises(ServerError) as raised,
    ):
        tower.lr("r", 1)
    assert len(seen) == 3  # still a transient status
    error = raised.value
    assert error.status == 502 and error.title == "Bad Gateway" and error.problem["status"] == 502
    assert "nginx" in error.detail and str(error).startswith("502 Bad Gateway: <html>")

    page = "<html>" + "x" * 1000 + "</html>"
    with (
        Client("http://tower.test", transport=answering(404, seen, text=page)) as tower,
        pytest.raises(NotFound) as not_found,
    ):
        tower.get_run("r")
    assert not_found.value.title == "Not Found" and len(not_found.value.detail) == 200

    # JSON that is not a problem document (no title): a stand-in from the status, the body as detail.
    with (
        Client("http://tower.test", transport=answering(401, seen, json={"message": "who?"})) as tower,
        pytest.raises(Unauthorized) as unauthorized,
    ):
        tower.get_run("r")
    assert unauthorized.value.title == "Unauthorized" and "who?" in unauthorized.value.detail


def test_a_success_status_with_a_body_that_is_not_json_raises_an_lrtower_error() -> None:
    seen: list[httpx.Request] = []
    page = "<html>captive portal</html>"
    with (
        Client("http://tower.test", retry=FAST, transport=answering(200, seen, text=page)) as tower,
        pytest.raises(UnreadableAnswer, match="captive portal"),
    ):
        tower.lr("r", 1)


def test_api_errors_survive_pickling() -> None:
    error = NotFound(404, problem(404))
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is NotFound and copy.status == 404 and copy.problem == problem(404)
    assert str(copy) == str(error)


def test_requests_carry_what_the_api_expects() -> None:
    seen: list[httpx.Request] = []
    transport = answering(404, seen, json=problem(404))
    with Client("http://tower.test/prefix/", "s3cret", retry=FAST, transport=transport) as tower:
        assert tower.url == "http://tower.test/prefix"
        calls: list[Callable[[], object]] = [
            lambda: tower.get_run("a/b c"),
            lambda: tower.list_runs(after="x", limit=5, labels={"team": "vision", "env": "a=b"}),
            lambda: tower.lr_range("r", 0, 10, 2),
            lambda: tower.create_run("r", STEP, lr=0.1),
            lambda: tower.post_metric("r", 3, 0.5),
            lambda: tower.scale("r", 0.5, from_step=7),
        ]
        for call in calls:
            with pytest.raises(NotFound):
                call()
    quoted, listed, ranged, created, metric, scaled = seen
    assert quoted.url.raw_path == b"/prefix/runs/a%2Fb%20c"
    assert listed.url.path == "/prefix/runs"
    assert listed.url.params.multi_items() == [
        ("limit", "5"),
        ("after", "x"),
        ("label", "team=vision"),
        ("label", "env=a=b"),
    ]
    assert dict(ranged.url.params) == {"start": "0", "stop": "10", "stride": "2"}
    assert json.loads(created.content) == {"name": "r", "schedule": STEP, "lr": 0.1}  # no nulls
    assert json.loads(metric.content) == {"step": 3, "value": 0.5}
    assert json.loads(scaled.content) == {"factor": 0.5, "from_step": 7}
    assert str(uuid.UUID(scaled.headers["idempotency-key"])) == scaled.headers["idempotency-key"]
    for request in seen:
        assert request.headers["authorization"] == "Bearer s3cret"
        assert request.headers["accept"] == "application/json"
        assert request.headers["user-agent"] == f"lrtower-client/{lrtower.__version__}"


# -- idempotency end to end ----------------------------------------------------------------


def test_a_scale_whose_answer_is_lost_is_applied_once(server: str) -> None:
    path = "/runs/once/scale"
    flaky = Flaky({("POST", path): [LOST]})
    with httpx.HTTPTransport() as real, Client(server, retry=FAST, transport=flaky.sync(real)) as tower:
        tower.create_run("once", STEP, lr=0.1)
        tower.lr("once", 3)
        result = tower.scale("once", 0.5, reason="lost answer")
        attempts = flaky.requests("POST", path)
        assert len(attempts) == 2
        keys = [a.headers.get("idempotency-key") for a in attempts]
        assert keys[0] and keys[0] == keys[1] and attempts[0].content == attempts[1].content

        assert result.effective_step == 4 and result.version == 1
        assert result.lr_after == approx([engine_lrs(STEP, [0.1], 4)[0] * 0.5])
        run = tower.get_run("once")
        assert [(c.kind, c.factor) for c in run.changes] == [("scale", 0.5)] and run.version == 1
        for step in (4, 9):
            assert tower.lr("once", step).lr == approx(engine_lrs(STEP, [0.1], step)[0] * 0.5)
        assert [e.kind for e in tower.events("once").events] == ["run_created", "scaled"]

        # A key given by the caller: the same change twice is applied once, the first answer replayed.
        first = tower.scale("once", 0.5, idempotency_key="halve-once")
        assert tower.scale("once", 0.5, idempotency_key="halve-once") == first
        assert [c.kind for c in tower.get_run("once").changes] == ["scale", "scale"]
        # The same key for another request is refused.
        with pytest.raises(Invalid) as reused:
            tower.scale("once", 0.25, idempotency_key="halve-once")
        assert reused.value.errors[0].field == "header.Idempotency-Key"
        # Every call gets a key of its own.
        tower.scale("once", 2.0)
        tower.change_schedule("once", STEP)
        writes = [r for r in flaky.seen if r.method == "POST" and r.url.path != "/runs"]
        *earlier, scale_key, change_key = [r.headers["idempotency-key"] for r in writes]
        assert scale_key != change_key and not {scale_key, change_key} & set(earlier)
        assert earlier == [keys[0], keys[0], "halve-once", "halve-once", "halve-once"]


def test_a_schedule_change_whose_answer_is_lost_is_applied_once(server: str) -> None:
    path = "/runs/switch/schedule"
    flaky = Flaky({("POST", path): [LOST, 503]})
    with httpx.HTTPTransport() as real, Client(server, retry=FAST, transport=flaky.sync(real)) as tower:
        tower.create_run("switch", STEP, lr=0.1)
        tower.lr("switch", 5)
        result = tower.change_schedule("switch", EXPONENTIAL, restart=True)
        attempts = flaky.requests("POST", path)
        assert len(attempts) == 3 and len({a.headers["idempotency-key"] for a in attempts}) == 1
        assert result.effective_step == 6
        assert [c.kind for c in tower.get_run("switch").changes] == ["schedule"]
        assert tower.lr("switch", 8).lr == approx(torch_lrs(EXPONENTIAL, [0.1], 3)[2][0])


def test_a_metric_whose_answer_is_lost_is_counted_once(server: str) -> None:
    path = "/runs/metric/metrics"
    flaky = Flaky({("POST", path): [None, LOST]})
    values = [1.0, 1.0, 1.0]
    expected = torch_plateau(values, 0.1, patience=0, factor=0.5)
    with httpx.HTTPTransport() as real, Client(server, retry=FAST, transport=flaky.sync(real)) as tower:
        tower.create_run("metric", CONSTANT, lr=0.1, plateau={"patience": 0, "factor": 0.5})
        results = [tower.post_metric("metric", step, value) for step, value in enumerate(values, start=1)]
        attempts = flaky.requests("POST", path)
        assert len(attempts) == 4 and attempts[1].content == attempts[2].content
        assert [r.lr for r in results] == approx(expected)
        assert [r.reduced for r in results] == [False, True, True]
        reductions = [e for e in tower.events("metric").events if e.kind == "plateau_reduced"]
        assert [e.effective_step for e in reductions] == [2, 3]
        assert tower.lr("metric", 3).lr == approx(expected[2])


def test_a_run_creation_whose_answer_is_lost_succeeds_once(server: str) -> None:
    flaky = Flaky({("POST", "/runs"): [LOST]})
    with httpx.HTTPTransport() as real, Client(server, retry=FAST, transport=flaky.sync(real)) as tower:
        run = tower.create_run("created", STEP, lr=0.1, labels={"k": "v"})
        assert len(flaky.requests("POST", "/runs")) == 2
        assert (run.name, run.state, run.high_water, run.labels) == ("created", "live", -1, {"k": "v"})
        assert [e.kind for e in tower.events("created").events] == ["run_created"]
        assert [r.name for r in tower.list_runs(labels={"k": "v"}).runs] == ["created"]


# -- timeout -------------------------------------------------------------------------------


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with (
            Client(url, timeout=0.3, retry=Retry(retries=0)) as tower,
            pytest.raises(ServerUnreachable) as raised,
        ):
            tower.lr("r", 1)
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3
    assert isinstance(raised.value.__cause__, httpx.TimeoutException)
