"""What a job that logs at INFO sees of the client: lrtower's own events, not a line per request."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
import torch

from lrtower import Client, RemoteScheduler

HTTP = ("httpx", "httpcore")
STEP = {"type": "StepLR", "step_size": 10, "gamma": 0.5}


@pytest.fixture
def unset_http_loggers() -> Iterator[None]:
    """httpx's loggers as a fresh process has them (NOTSET), whatever earlier tests' clients did."""
    saved = {name: logging.getLogger(name).level for name in HTTP}
    for name in HTTP:
        logging.getLogger(name).setLevel(logging.NOTSET)
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def http_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.split(".")[0] in HTTP]


def some_calls(client: Client, run: str) -> None:
    client.create_run(run, STEP, lr=0.1, plateau={"metric": "loss"})
    client.lr(run, 3)
    client.lr_range(run, 4, 20)
    client.post_metric(run, 21, 1.0)
    client.curve(run, 0, 100)


def test_the_client_keeps_httpx_quiet_under_an_info_root_logger(
    tower: str, caplog: pytest.LogCaptureFixture, unset_http_loggers: None
) -> None:
    caplog.set_level(logging.INFO)  # as logging.basicConfig(level=logging.INFO) does
    httpx.get(f"{tower}/healthz")
    assert [r.getMessage() for r in http_records(caplog)] == [
        f'HTTP Request: GET {tower}/healthz "HTTP/1.1 200 OK"'
    ]  # what it would print for every request
    caplog.clear()

    with Client(tower) as client:
        some_calls(client, "quiet")
    assert http_records(caplog) == []
    assert [logging.getLogger(name).level for name in HTTP] == [logging.WARNING, logging.WARNING]


def test_an_application_that_set_httpx_s_level_keeps_it(
    tower: str, caplog: pytest.LogCaptureFixture, unset_http_loggers: None
) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.INFO)
    with Client(tower) as client:
        some_calls(client, "chatty")
    assert logging.getLogger("httpx").level == logging.INFO
    requests = [r.getMessage() for r in http_records(caplog)]
    assert len(requests) == 5 and all(m.startswith("HTTP Request: ") for m in requests)
    assert f"HTTP Request: POST {tower}/runs/chatty/metrics" in requests[3]


def test_the_clients_own_events_log_under_lrtower(
    tower: str, caplog: pytest.LogCaptureFixture, unset_http_loggers: None
) -> None:
    caplog.set_level(logging.INFO)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = RemoteScheduler(optimizer, "logged", tower, schedule=STEP, lookahead=1)
    try:
        for _ in range(8):
            optimizer.step()
            scheduler.step()
        with Client(tower) as operator:
            operator.rewind("logged", 5, scale=0.5, reason="loss spike")
        for _ in range(3):  # this job's attempt has ended: it warns once, and goes on
            optimizer.step()
            scheduler.step()
    finally:
        scheduler.feed.close()
        scheduler.client.close()
    assert http_records(caplog) == []
    events = [(r.name, r.levelno) for r in caplog.records if "was rewound" in r.getMessage()]
    assert len(events) == 1 and events[0][0].split(".")[0] == "lrtower" and events[0][1] == logging.WARNING
