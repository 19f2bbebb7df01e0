"""The client library against a real `lrtower serve`: every call, its errors, auth, retries,
idempotency, timeouts, fork safety and the asyncio twin.

Expected LRs come from torch's own schedulers (or the server's schedule engine), never from
hard-coded numbers. Faults (503s, lost answers, refused connections) are injected with an
`httpx.MockTransport` that answers or raises by itself, or forwards to the real server first.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import multiprocessing
import pickle
import pydoc
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from multiprocessing.connection import Connection
from typing import Any

import httpx
import pytest
import torch
from torch.optim import lr_scheduler

import lrtower
from lrtower import (
    LR,
    APIError,
    AsyncClient,
    Change,
    ChangeResult,
    Client,
    Conflict,
    Event,
    EventPage,
    FieldError,
    Forbidden,
    Invalid,
    LRRange,
    LrtowerError,
    MetricResult,
    NotFound,
    Retry,
    Run,
    RunPage,
    ServerError,
    ServerUnreachable,
    TooLarge,
    Unauthorized,
    UnreadableAnswer,
    Verification,
)
from lrtower_server.core.auth import Tokens
from lrtower_server.core.config import Settings
from lrtower_server.db.engine import make_engine
from lrtower_server.schedules import build_schedule
from servers import Server, free_port

STEP = {"type": "StepLR", "step_size": 3, "gamma": 0.5}
EXPONENTIAL = {"type": "ExponentialLR", "gamma": 0.9}
WARMUP_THEN_DECAY = {
    "type": "SequentialLR",
    "schedulers": [
        {"type": "LinearLR", "start_factor": 0.1, "total_iters": 4},
        {"type": "ExponentialLR", "gamma": 0.8},
    ],
    "milestones": [4],
}
CONSTANT = {"type": "StepLR", "step_size": 100_000}
FAST = Retry(retries=2, backoff=0.001)


# -- references ----------------------------------------------------------------------------


def _optimizer(base_lrs: list[float]) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in base_lrs]
    return torch.optim.SGD(groups, lr=base_lrs[0])


def _scheduler(spec: dict[str, Any], optimizer: torch.optim.Optimizer) -> Any:
    kwargs = {key: value for key, value in spec.items() if key != "type"}
    if spec["type"] == "SequentialLR":
        children = [_scheduler(child, optimizer) for child in spec["schedulers"]]
        return lr_scheduler.SequentialLR(optimizer, children, spec["milestones"])
    return getattr(lr_scheduler, spec["type"])(optimizer, **kwargs)


def torch_lrs(spec: dict[str, Any], base_lrs: list[float], steps: int) -> list[list[float]]:
    """Every group's LR after 0, 1, ..., steps - 1 calls of torch's `scheduler.step()`."""
    optimizer = _optimizer(base_lrs)
    scheduler = _scheduler(spec, optimizer)
    lrs = [list(scheduler.get_last_lr())]
    for _ in range(steps - 1):
        optimizer.step()
        scheduler.step()
        lrs.append(list(scheduler.get_last_lr()))
    return lrs


def torch_plateau(values: list[float], base_lr: float, **config: Any) -> list[float]:
    """The LR after each `ReduceLROnPlateau.step(value)`, on a constant base LR."""
    optimizer = _optimizer([base_lr])
    scheduler = lr_scheduler.ReduceLROnPlateau(optimizer, **config)
    lrs = []
    for value in values:
        optimizer.step()
        scheduler.step(value)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def engine_lrs(spec: dict[str, Any], base_lrs: list[float], step: int) -> list[float]:
    """The server's schedule engine, as a second reference."""
    lrs, _ = build_schedule(spec, base_lrs).at(step)
    return list(lrs)


def approx(values: Any) -> Any:
    """pytest.approx, also for a list of rows (every group's LR at every step)."""
    if isinstance(values, list) and values and isinstance(values[0], list):
        return [approx(row) for row in values]
    return pytest.approx(values, rel=1e-12, abs=1e-15)


# -- fault injection -----------------------------------------------------------------------

LOST = "lost"  # forward to the server, then lose its answer (ReadTimeout)
REFUSED = "refused"  # raise ConnectError without reaching the server
Fault = int | str | None  # an int: answer this status without reaching the server; None: forward


def problem(status: int) -> dict[str, Any]:
    return {
        "type": "urn:test:problem",
        "title": f"Title {status}",
        "status": status,
        "detail": f"detail {status}",
    }


class Flaky:
    """Forwards every request to a real server, except that the faults planned for a
    (method, path) are injected first, one per request. Records every request it sees."""

    def __init__(self, plan: dict[tuple[str, str], list[Fault]] | None = None) -> None:
        self.plan = {key: list(faults) for key, faults in (plan or {}).items()}
        self.seen: list[httpx.Request] = []

    def requests(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.seen if r.method == method and r.url.path == path]

    def _fault(self, request: httpx.Request) -> Fault | None:
        self.seen.append(request)
        faults = self.plan.get((request.method, request.url.path))
        fault = faults.pop(0) if faults else None
        if fault == REFUSED:
            raise httpx.ConnectError("connection refused (injected)", request=request)
        return fault

    @staticmethod
    def _copy(response: httpx.Response) -> httpx.Response:
        hop = {"content-length", "content-encoding", "transfer-encoding"}
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in hop]
        return httpx.Response(response.status_code, headers=headers, content=response.content)

    def sync(self, real: httpx.HTTPTransport) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            fault = self._fault(request)
            if isinstance(fault, int):
                return httpx.Response(fault, json=problem(fault))
            response = real.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
            if fault == LOST:
                raise httpx.ReadTimeout("the answer was lost (injected)", request=request)
            return self._copy(response)

        return httpx.MockTransport(handler)

    def async_(self, real: httpx.AsyncHTTPTransport) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            fault = self._fault(request)
            if isinstance(fault, int):
                return httpx.Response(fault, json=problem(fault))
            response = await real.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
            if fault == LOST:
                raise httpx.ReadTimeout("the answer was lost (injected)", request=request)
            return self._copy(response)

        return httpx.MockTransport(handler)


def answering(status: int, seen: list[httpx.Request], **response: Any) -> httpx.MockTransport:
    """A transport that answers every request with `status`, counting them in `seen`."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, **response)

    return httpx.MockTransport(handler)


# -- 1. the full tour --------------------------------------------------------------------


def test_tour_of_every_call(server: str) -> None:
    with Client(server) as tower:
        assert tower.url == server
        assert tower.ready() is True

        run = tower.create_run("tour", STEP, lr=0.1, labels={"suite": "tour"})
        assert isinstance(run, Run)
        assert (run.name, run.state, run.high_water, run.version) == ("tour", "live", -1, 0)
        assert run.lrs == [0.1] and run.schedule == STEP and run.labels == {"suite": "tour"}
        assert run.changes == [] and run.plateau is None

        again = tower.create_run("tour", STEP, lr=0.1, labels={"suite": "tour"})
        assert again.name == run.name and again.created_at == run.created_at and again.version == 0
        with pytest.raises(Conflict) as conflict:
            tower.create_run("tour", {**STEP, "gamma": 0.4}, lr=0.1, labels={"suite": "tour"})
        assert conflict.value.high_water == -1 and "different definition" in conflict.value.detail

        # list_runs: a label filter, one run a page, following next_after.
        for name in ("tour-b", "tour-c"):
            tower.create_run(name, STEP, lr=0.1, labels={"suite": "tour"})
        tower.create_run("other", STEP, lr=0.1, labels={"suite": "other"})
        names: list[str] = []
        after: str | None = None
        for _ in range(10):
            page = tower.list_runs(after=after, limit=1, labels={"suite": "tour"})
            assert isinstance(page, RunPage) and len(page.runs) <= 1
            names += [r.name for r in page.runs]
            if page.next_after is None:
                break
            after = page.next_after
        assert names == ["tour", "tour-b", "tour-c"]
        everything = tower.list_runs()
        assert [r.name for r in everything.runs] == ["other", "tour", "tour-b", "tour-c"]
        assert everything.next_after is None

        fetched = tower.get_run("tour")
        assert fetched.name == "tour" and fetched.created_at == run.created_at and fetched.schedule == STEP

        reference = torch_lrs(STEP, [0.1], 20)
        # curve plans without serving: the high-water mark stays put.
        curve = tower.curve("tour", 0, 20)
        assert curve.steps == list(range(20)) and curve.lrs == approx(reference)
        assert tower.get_run("tour").high_water == -1

        one = tower.lr("tour", 4)
        assert isinstance(one, LR) and (one.run, one.step) == ("tour", 4)
        assert one.lr == approx(reference[4][0]) and one.lrs == approx(reference[4]) and one.momentum is None
        assert tower.get_run("tour").high_water == 4

        span = tower.lr_range("tour", 0, 12, 3)
        assert isinstance(span, LRRange) and span.steps == [0, 3, 6, 9]
        assert span.lr == approx([reference[s][0] for s in span.steps])
        assert span.lrs == [[lr] for lr in span.lr]  # filled even for one param group
        assert span.at(6) == LR("tour", 6, span.lr[2], [span.lr[2]], None)
        for outside in (7, 12, -3, 1000):
            with pytest.raises(IndexError):
                span.at(outside)
        assert tower.get_run("tour").high_water == 9

        # change_schedule and scale land after the high-water mark.
        restarted = torch_lrs(EXPONENTIAL, [0.1], 10)
        changed = tower.change_schedule("tour", EXPONENTIAL, restart=True, reason="slower")
        assert isinstance(changed, ChangeResult)
        assert (changed.run, changed.effective_step, changed.version) == ("tour", 10, 1)
        assert changed.lr_before == approx(reference[10]) and changed.lr_after == approx(restarted[0])
        assert tower.lr("tour", 12).lrs == approx(restarted[2])

        scaled = tower.scale("tour", 0.5, reason="spikes")
        assert (scaled.effective_step, scaled.version) == (13, 2)
        assert scaled.lr_before == approx(restarted[3])
        assert scaled.lr_after == approx([restarted[3][0] * 0.5])
        assert tower.lr("tour", 15).lr == approx(restarted[5][0] * 0.5)

        changes = tower.get_run("tour").changes
        assert all(isinstance(c, Change) for c in changes)
        assert [(c.kind, c.effective_step) for c in changes] == [("schedule", 10), ("scale", 13)]
        assert changes[0].schedule == EXPONENTIAL and changes[0].restart and changes[1].factor == 0.5

        finished = tower.set_state("tour", "finished", reason="converged")
        assert isinstance(finished, Run) and finished.state == "finished"
        with pytest.raises(Conflict) as refused:
            tower.scale("tour", 0.5)
        assert "finished" in refused.value.detail and refused.value.high_water is None
        assert tower.lr("tour", 16).lr == approx(restarted[6][0] * 0.5)  # still serves

        trail = tower.events("tour")
        assert isinstance(trail, EventPage) and trail.run == "tour"
        assert all(isinstance(e, Event) for e in trail.events)
        assert [e.kind for e in trail.events] == ["run_created", "schedule_changed", "scaled", "run_finished"]
        assert [e.seq for e in trail.events] == [1, 2, 3, 4]
        assert {e.actor for e in trail.events} == {"anonymous"}
        assert [e.reason for e in trail.events] == [None, "slower", "spikes", "converged"]
        assert all(e.prev_hash == before.hash for before, e in pairwise(trail.events))
        assert [e.seq for e in tower.events("tour", after=2).events] == [3, 4]
        assert [e.seq for e in tower.events("tour", limit=1).events] == [1]

        verified = tower.verify("tour")
        assert isinstance(verified, Verification)
        assert (verified.ok, verified.count, verified.first_bad_seq) == (True, 4, None)

        preview = tower.preview(STEP, lr=0.1, start=0, stop=20, stride=2)
        assert preview.steps == list(range(0, 20, 2))
        assert preview.lr == approx([reference[s][0] for s in preview.steps])
        tower.close()  # a closed client opens a new connection when used again
        assert tower.ready() is True


def test_several_param_groups(server: str) -> None:
    lrs = [0.1, 0.01]
    reference = torch_lrs(WARMUP_THEN_DECAY, lrs, 12)
    with Client(server) as tower:
        run = tower.create_run("groups", WARMUP_THEN_DECAY, lrs=lrs)
        assert run.lrs == lrs
        for step in (0, 2, 4, 5):
            answer = tower.lr("groups", step)
            assert answer.lrs == approx(reference[step]) and answer.lr == approx(reference[step][0])
        span = tower.lr_range("groups", 0, 12)
        assert span.lrs == approx(reference) and span.lr == approx([r[0] for r in reference])
        assert span.at(7).lrs == approx(reference[7])
        assert tower.curve("groups", 0, 12).lrs == approx(reference)
        assert tower.preview(WARMUP_THEN_DECAY, lrs=lrs, stop=12).lrs == approx(reference)


def test_plateau_reduces_when_torch_does(server: str) -> None:
    values = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85]
    config = {"patience": 1, "factor": 0.5}
    expected = torch_plateau(values, 0.1, **config)
    assert len(set(expected)) >= 3  # the sequence does reduce, twice
    with Client(server) as tower:
        tower.create_run("plateau", CONSTANT, lr=0.1, plateau={"metric": "val_loss", **config})
        before = 0.1
        for step, (value, lr) in enumerate(zip(values, expected, strict=True), start=1):
            result = tower.post_metric("plateau", step, value)
            assert isinstance(result, MetricResult) and result.accepted
            assert result.reduced == (lr < before), step
            assert result.effective_step == step
            assert result.lr == approx(lr) and result.lrs == approx([lr])
            assert tower.lr("plateau", step).lr == approx(lr)
            before = lr
        # The same post again answers the same; another value for that step is a conflict.
        assert tower.post_metric("plateau", 3, values[2], name="val_loss").lr == approx(expected[2])
        with pytest.raises(Conflict):
            tower.post_metric("plateau", 3, 7.0)
        reductions = [e for e in tower.events("plateau").events if e.kind == "plateau_reduced"]
        assert len(reductions) == sum(b < a for a, b in pairwise([0.1, *expected]))


# -- 2. API errors -------------------------------------------------------------------------


def test_api_errors(server: str) -> None:
    with Client(server, retry=FAST) as tower, pytest.raises(NotFound) as missing:
        tower.get_run("nope")
        error = missing.value
        assert error.status == 404 and error.problem["type"] == "urn:lrtower:problem:not-found"
        assert error.type == error.problem["type"] and "nope" in error.detail and error.detail in str(error)
        for call in (
            lambda: tower.lr("nope", 1),
            lambda: tower.events("nope"),
            lambda: tower.scale("nope", 2),
        ):
            with pytest.raises(NotFound):
                call()

        with pytest.raises(Invalid) as invalid:
            tower.create_run("bad", {"type": "StepLR", "step_size": -1}, lr=0.1)
        assert invalid.value.status == 422 and invalid.value.errors[0].field == "schedule.step_size"
        assert isinstance(invalid.value.errors[0], FieldError) and invalid.value.errors[0].msg
        assert invalid.value.errors[0].loc == ("schedule", "step_size")
        assert "schedule.step_size" in str(invalid.value) and invalid.value.detail in str(invalid.value)

        tower.create_run("served", STEP, lr=0.1)
        with pytest.raises(Invalid) as negative:
            tower.lr("served", -1)
        assert negative.value.errors[0].field == "query.step"

        tower.lr("served", 10)
        with pytest.raises(Conflict) as conflict:
            tower.scale("served", 0.5, from_step=5)
        assert conflict.value.status == 409 and conflict.value.high_water == 10
        assert conflict.value.errors[0].field == "body.from_step" and conflict.value.detail in str(
            conflict.value
        )
        with pytest.raises(Conflict) as schedule_conflict:
            tower.change_schedule("served", EXPONENTIAL, from_step=10)
        assert schedule_conflict.value.high_water == 10

        with pytest.raises(TooLarge) as too_large:
            tower.scale("served", 0.5, reason="x" * 2_000_000)
        assert too_large.value.status == 413

        for caught in (missing, invalid, conflict, too_large):
            assert isinstance(caught.value, APIError) and isinstance(caught.value, LrtowerError)
        assert tower.get_run("served").changes == []  # nothing above was applied


# -- 3. auth -------------------------------------------------------------------------------


@pytest.fixture
def secured(start_server: Callable[..., Server], database_url: str) -> tuple[str, str, str]:
    """A server requiring tokens: its URL, a read token and a write token (named "trainer")."""
    url = start_server("--auth").url
    engine = make_engine(Settings(database_url=database_url))
    try:
        tokens = Tokens(engine)
        return url, tokens.create("dashboard", "read"), tokens.create("trainer", "write")
    finally:
        engine.dispose()


def test_auth(secured: tuple[str, str, str]) -> None:
    url, reader, writer = secured
    with Client(url, retry=FAST) as anonymous:
        with pytest.raises(Unauthorized) as unauthorized:
            anonymous.create_run("secure", STEP, lr=0.1)
        assert unauthorized.value.status == 401 and isinstance(unauthorized.value, APIError)
        with pytest.raises(Unauthorized):
            anonymous.list_runs()
        assert anonymous.ready() is True  # readiness needs no token
    with Client(url, "lrt_wrong", retry=FAST) as wrong, pytest.raises(Unauthorized):
        wrong.list_runs()
    with Client(url, reader, retry=FAST) as dashboard:
        with pytest.raises(Forbidden) as forbidden:
            dashboard.create_run("secure", STEP, lr=0.1)
        assert forbidden.value.status == 403 and "read" in forbidden.value.detail
    with Client(url, writer) as trainer:
        assert trainer.create_run("secure", STEP, lr=0.1).state == "live"
        assert trainer.scale("secure", 0.5).effective_step == 0
    with Client(url, reader) as dashboard:
        with pytest.raises(Forbidden) as above:  # serving a new step is a consumer's, not a reader's
            dashboard.lr("secure", 4)
        assert "write" in above.value.detail and above.value.problem["high_water"] == -1
        assert dashboard.curve("secure", 4, 5).lr[0] == approx(torch_lrs(STEP, [0.1], 5)[4][0] * 0.5)
    with Client(url, writer) as trainer:
        trainer.lr("secure", 4)
    with Client(url, reader) as dashboard:
        assert dashboard.lr("secure", 4).lr == approx(torch_lrs(STEP, [0.1], 5)[4][0] * 0.5)
        with pytest.raises(Forbidden):
            dashboard.scale("secure", 0.5)
        assert {e.actor for e in dashboard.events("secure").events} == {"trainer"}
        assert dashboard.verify("secure").ok


def test_url_and_token_from_the_environment(
    secured: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, reader, writer = secured
    monkeypatch.setenv("LRTOWER_URL", url + "/")
    monkeypatch.setenv("LRTOWER_TOKEN", writer)
    with Client() as tower:
        assert tower.url == url
        tower.create_run("env", STEP, lr=0.1)
        tower.scale("env", 0.5, reason="from the environment")
        assert [e.actor for e in tower.events("env").events] == ["trainer", "trainer"]
    # Arguments win over the environment.
    with Client(token=reader, retry=FAST) as tower, pytest.raises(Forbidden):
        tower.scale("env", 0.5)
    monkeypatch.delenv("LRTOWER_TOKEN")
    with Client(retry=FAST) as tower, pytest.raises(Unauthorized):
        tower.get_run("env")


# -- 4. retries ----------------------------------------------------------------------------


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


# -- 5. idempotency end to end -----------------------------------------------------------


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
        assert [r.name for r in tower.list_runs().runs] == ["created"]


# -- 6. timeout ----------------------------------------------------------------------------


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


# -- 7. fork safety and threads ----------------------------------------------------------


def test_a_forked_child_gets_its_own_connection(server: str) -> None:
    steps = 160
    reference = [lrs[0] for lrs in torch_lrs(STEP, [0.1], steps)]
    # No retries, so that a connection shared by mistake shows instead of being retried away.
    with Client(server, timeout=5, retry=Retry(retries=0)) as tower:
        tower.create_run("forked", STEP, lr=0.1)
        parent_answer = tower.lr("forked", 5).lr  # the parent's pool now holds a connection

        def child(conn: Connection) -> None:
            try:
                conn.send([(a.step, a.lr) for a in (tower.lr("forked", s) for s in [5, *range(1, steps, 2)])])
            except BaseException as exc:  # reported to the parent
                conn.send(repr(exc))
            finally:
                conn.close()

        context = multiprocessing.get_context("fork")
        receiving, sending = context.Pipe(duplex=False)
        process = context.Process(target=child, args=(sending,))
        process.start()
        sending.close()
        # The parent keeps asking while the child does: over one socket, their answers would mix.
        ours = [(a.step, a.lr) for a in (tower.lr("forked", s) for s in range(0, steps, 2))]
        assert receiving.poll(20), "the child sent nothing"
        theirs = receiving.recv()
        process.join(10)
        assert process.exitcode == 0
        assert isinstance(theirs, list), theirs
        assert theirs[0] == (5, parent_answer) and parent_answer == approx(reference[5])
        assert [step for step, _ in theirs[1:]] == list(range(1, steps, 2))
        assert [lr for _, lr in theirs[1:]] == approx(reference[1::2])
        assert [step for step, _ in ours] == list(range(0, steps, 2))
        assert [lr for _, lr in ours] == approx(reference[0::2])
        # The parent's connection still works afterwards.
        assert tower.lr("forked", steps).lr == approx(engine_lrs(STEP, [0.1], steps)[0])
        assert tower.get_run("forked").high_water == steps


def test_one_client_shared_between_threads(server: str) -> None:
    reference = torch_lrs(STEP, [0.1], 64)
    with Client(server) as tower:
        tower.create_run("threads", STEP, lr=0.1)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda step: tower.lr("threads", step), range(64)))
        assert [a.step for a in answers] == list(range(64))
        assert [a.lr for a in answers] == approx([r[0] for r in reference])


# -- 8. AsyncClient ------------------------------------------------------------------------


def test_async_client_against_the_real_server(server: str) -> None:
    reference = torch_lrs(STEP, [0.1], 12)
    values = [1.0, 1.0, 1.0]
    plateau = torch_plateau(values, 0.1, patience=1, factor=0.5)
    config = {"metric": "val_loss", "patience": 1, "factor": 0.5}

    async def tour() -> None:
        async with AsyncClient(server, retry=FAST) as tower:
            assert tower.url == server and await tower.ready() is True
            run = await tower.create_run("async", STEP, lr=0.1)
            assert isinstance(run, Run) and run.state == "live" and run.high_water == -1
            assert (await tower.create_run("async", STEP, lr=0.1)).created_at == run.created_at
            one = await tower.lr("async", 4)
            assert isinstance(one, LR) and one.lr == approx(reference[4][0])
            span = await tower.lr_range("async", 0, 12, 2)
            assert span.lr == approx([reference[s][0] for s in span.steps]) and span.at(4).lr == one.lr
            assert (await tower.curve("async", 0, 12)).lrs == approx(reference)
            assert (await tower.get_run("async")).high_water == 10
            await tower.create_run("async-plateau", CONSTANT, lr=0.1, plateau=config)
            results = [await tower.post_metric("async-plateau", s, v) for s, v in enumerate(values, start=1)]
            assert all(isinstance(r, MetricResult) for r in results)
            assert [r.lr for r in results] == approx(plateau)
            assert [r.reduced for r in results] == [False, False, True]
            assert (await tower.lr("async-plateau", 3)).lr == approx(plateau[2])
            scaled = await tower.scale("async", 0.5)
            assert isinstance(scaled, ChangeResult) and scaled.effective_step == 11
            page = await tower.events("async")
            assert [e.kind for e in page.events] == ["run_created", "scaled"]
            assert [e.seq for e in page.events] == [1, 2] and {e.actor for e in page.events} == {"anonymous"}
            assert all(isinstance(e, Event) for e in page.events)
            assert (await tower.verify("async")) == Verification(ok=True, count=2)
            assert [e.kind for e in (await tower.events("async-plateau")).events][-1] == "plateau_reduced"
            assert [r.name for r in (await tower.list_runs()).runs] == ["async", "async-plateau"]
            assert (await tower.preview(STEP, lr=0.1, stop=12)).lrs == approx(reference)
            with pytest.raises(NotFound) as missing:
                await tower.get_run("nope")
            assert missing.value.status == 404
            with pytest.raises(Conflict) as conflict:
                await tower.scale("async", 0.5, from_step=3)
            assert conflict.value.high_water == 10
            # Concurrent calls over one client.
            many = await asyncio.gather(*(tower.lr("async", s) for s in range(5)))
            assert [m.lr for m in many] == approx([r[0] for r in reference[:5]])

    asyncio.run(tour())


def test_async_retries_and_lost_answers(server: str) -> None:
    flaky = Flaky(
        {
            ("GET", "/runs/async-retry/lr"): [503, 504, REFUSED],
            ("POST", "/runs/async-retry/scale"): [LOST],
        }
    )

    async def scenario() -> None:
        async with httpx.AsyncHTTPTransport() as real:
            retry = Retry(retries=3, backoff=0.001)
            async with AsyncClient(server, retry=retry, transport=flaky.async_(real)) as tower:
                await tower.create_run("async-retry", STEP, lr=0.1)
                assert (await tower.lr("async-retry", 2)).lr == approx(engine_lrs(STEP, [0.1], 2)[0])
                assert len(flaky.requests("GET", "/runs/async-retry/lr")) == 4
                result = await tower.scale("async-retry", 0.5)
                attempts = flaky.requests("POST", "/runs/async-retry/scale")
                assert (
                    len(attempts) == 2
                    and attempts[0].headers["idempotency-key"] == attempts[1].headers["idempotency-key"]
                )
                assert result.lr_after == approx([engine_lrs(STEP, [0.1], 3)[0] * 0.5])
                assert [c.kind for c in (await tower.get_run("async-retry")).changes] == ["scale"]

    asyncio.run(scenario())


def test_async_retries_exhausted() -> None:
    seen: list[httpx.Request] = []
    refused: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if not refused:  # the very first attempt: refused; then 503s
            refused.append(request)
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(503, json=problem(503))

    async def scenario() -> None:
        async with AsyncClient(
            "http://tower.test", retry=FAST, transport=httpx.MockTransport(handler)
        ) as tower:
            with pytest.raises(ServerError) as raised:
                await tower.lr("r", 1)
            assert raised.value.status == 503
            assert len(seen) == 3
            seen.clear()
            assert await tower.ready() is False  # 503 answered once, not retried
            assert len(seen) == 1

    asyncio.run(scenario())


# -- 9. signatures -------------------------------------------------------------------------


def test_methods_keep_their_builders_signatures() -> None:
    with Client("http://tower.test") as tower:
        scale = inspect.signature(tower.scale)
        assert list(scale.parameters) == ["run", "factor", "from_step", "reason", "idempotency_key"]
        assert scale.parameters["factor"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert scale.parameters["from_step"].kind is inspect.Parameter.KEYWORD_ONLY
        assert scale.return_annotation == "ChangeResult"  # what the method returns, not the builder's Call
        assert tower.scale.__name__ == "scale" and tower.scale.__doc__ and "factor" in tower.scale.__doc__
        assert list(inspect.signature(tower.create_run).parameters) == [
            "name",
            "schedule",
            "lr",
            "lrs",
            "plateau",
            "labels",
        ]
        assert list(inspect.signature(tower.lr).parameters) == ["run", "step"]
    assert list(inspect.signature(AsyncClient("http://tower.test").scale).parameters) == list(
        scale.parameters
    )
    # On the class, as help() and editors read it: a method, with `self`, its result and its documentation.
    assert list(inspect.signature(Client.scale).parameters) == ["self", *scale.parameters]
    assert inspect.signature(AsyncClient.lr).return_annotation == "Awaitable[LR]"
    assert Client.lr.__qualname__ == "Client.lr" and AsyncClient.lr.__qualname__ == "AsyncClient.lr"
    documented = pydoc.render_doc(Client, renderer=pydoc.plaintext)
    for name in ("create_run", "lr", "lr_range", "scale", "post_metric", "events", "verify", "preview"):
        assert f"{name}(self, " in documented, name
    with pytest.raises(TypeError):
        Client("http://tower.test").scale("r", 0.5, 10)  # type: ignore[misc]  # from_step is keyword-only


def test_an_async_client_refuses_a_second_event_loop_clearly(server: str) -> None:
    async def use(tower: AsyncClient) -> bool:
        return await tower.ready()

    async def first_and_close(tower: AsyncClient) -> bool:
        ready = await tower.ready()
        await tower.aclose()
        return ready

    tower = AsyncClient(server)
    first = asyncio.new_event_loop()
    assert first.run_until_complete(use(tower))
    with pytest.raises(RuntimeError, match="one per loop"):
        asyncio.run(use(tower))
    first.run_until_complete(tower.aclose())
    first.close()
    fresh = AsyncClient(server)
    assert asyncio.run(first_and_close(fresh))
    assert asyncio.run(first_and_close(fresh))  # closed: the next loop opens anew
