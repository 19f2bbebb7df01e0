"""What a step of the job's thread pays for lookahead: the windows are fetched by one long-lived
worker thread per feed (never a thread per window), which goes with its feed and is made again
in a forked child."""

from __future__ import annotations

import gc
import multiprocessing
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection

import httpx
import pytest

from lrtower import Client, Retry, ServerError
from lrtower.lookahead import LRFeed
from lrtower.scheduler import RemoteScheduler
from training import model, optimizer

WINDOW = 8


class RangeServer:
    """Answers range requests as the server does (lr = step / 1000), and notes which thread asked."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.ranges: list[tuple[int, int]] = []
        self.failing: set[int] = set()  # the requests (counted from 0) to answer 503
        self.gate: threading.Event | None = None  # when set, the worker's requests wait for it

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        start, stop = int(params["start"]), int(params["stop"])
        if self.gate is not None and threading.current_thread().name == "lrtower-lookahead":
            self.gate.wait(5)
        self.threads.append(threading.current_thread().name)
        self.ranges.append((start, stop))
        if len(self.ranges) - 1 in self.failing:
            return httpx.Response(503, json={"title": "Service Unavailable", "status": 503})
        steps = list(range(start, stop))
        return httpx.Response(200, json={"run": "r", "steps": steps, "lr": [s / 1000 for s in steps]})


@pytest.fixture
def server() -> RangeServer:
    return RangeServer()


@pytest.fixture
def client(server: RangeServer) -> Iterator[Client]:
    with Client("http://tower.test", retry=Retry(retries=0), transport=httpx.MockTransport(server)) as client:
        yield client


def _walk(feed: LRFeed, steps: range) -> list[float]:
    """Step through `steps` as a job does, giving the background fetch its time at each window."""
    lrs = []
    for step in steps:
        answer = feed.at(step)
        assert answer is not None
        lrs.append(answer.lrs[0])
        if feed._pending is not None:
            feed._pending.result(timeout=5)  # a training step is long next to a fetch
    return lrs


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lrtower-lookahead"]


def test_every_window_after_the_first_is_fetched_by_one_worker_thread(
    client: Client, server: RangeServer
) -> None:
    feed = LRFeed(client, "r", lookahead=WINDOW, plateau=False)
    before = len(_workers())
    lrs = _walk(feed, range(10 * WINDOW))

    assert lrs == [s / 1000 for s in range(10 * WINDOW)]
    assert server.ranges == [(k * WINDOW, (k + 1) * WINDOW) for k in range(11)]  # never 3 windows ahead
    assert server.threads[0] == threading.current_thread().name  # the first step waits for its window
    assert set(server.threads[1:]) == {"lrtower-lookahead"}
    assert len(_workers()) == before + 1


def test_the_worker_goes_with_its_feed(client: Client) -> None:
    feed = LRFeed(client, "r", lookahead=WINDOW, plateau=False)
    before = set(_workers())
    _walk(feed, range(3 * WINDOW))
    (worker,) = set(_workers()) - before
    del feed
    gc.collect()
    worker.join(timeout=5)
    assert not worker.is_alive()


def _child(feed: LRFeed, server: RangeServer, conn: Connection) -> None:
    try:
        lrs = _walk(feed, range(3 * WINDOW, 6 * WINDOW))
        conn.send((lrs, server.threads[-3:]))
    except BaseException as exc:
        conn.send(repr(exc))
    finally:
        conn.close()


def test_a_forked_child_fetches_with_a_worker_of_its_own(client: Client, server: RangeServer) -> None:
    feed = LRFeed(client, "r", lookahead=WINDOW, plateau=False)
    _walk(feed, range(3 * WINDOW))  # the parent's worker exists, and is idle
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    child = context.Process(target=_child, args=(feed, server, theirs))
    child.start()
    assert ours.poll(30), "the child hung: it waited on its parent's worker"
    answer = ours.recv()
    child.join(timeout=5)
    assert answer == ([s / 1000 for s in range(3 * WINDOW, 6 * WINDOW)], ["lrtower-lookahead"] * 3)


def test_a_failed_background_fetch_reaches_the_job_and_the_worker_goes_on(
    client: Client, server: RangeServer
) -> None:
    """An error met by the worker is raised on the job's thread (strict), and the same worker
    fetches the windows after it."""
    server.failing = {1}  # the first background fetch
    feed = LRFeed(client, "r", lookahead=WINDOW, plateau=False, strict=True)
    assert feed.at(0) is not None
    assert feed._pending is not None
    feed._pending.exception(timeout=5)
    with pytest.raises(ServerError, match="503"):
        feed.at(1)
    worker = _workers()
    assert _walk(feed, range(WINDOW, 4 * WINDOW)) == [s / 1000 for s in range(WINDOW, 4 * WINDOW)]
    assert _workers() == worker
    assert server.threads[2] == threading.current_thread().name  # the job asks again itself
    assert set(server.threads[3:]) == {"lrtower-lookahead"}


def test_a_closed_feed_drops_the_fetches_it_has_not_begun(client: Client, server: RangeServer) -> None:
    """Its owner closes the client next: a queued fetch that ran after that would open the client
    again, and leave the connection open."""
    server.gate = threading.Event()  # holds the worker's fetches
    feed = LRFeed(client, "r", lookahead=WINDOW, plateau=False)
    before = set(_workers())
    assert feed.at(0) is not None  # the next window is being fetched in the background
    (worker,) = set(_workers()) - before
    ran: list[int] = []
    feed._worker.submit(lambda: ran.append(1) or {})  # queued behind it
    feed.close()
    server.gate.set()
    worker.join(timeout=5)
    assert not worker.is_alive() and ran == []
    assert _walk(feed, range(WINDOW, 3 * WINDOW)) == [s / 1000 for s in range(WINDOW, 3 * WINDOW)]


def test_a_scheduler_that_goes_mid_fetch_leaves_no_connection_open(tower: str) -> None:
    """The scheduler closes the client it made when it goes, its feed first: no fetch queued
    then opens a connection that nobody closes (a ResourceWarning, here an error)."""
    for i in range(20):
        opt = optimizer("sgd", model(), 0.1)
        scheduler = RemoteScheduler(
            opt, f"gone-{i}", tower, lookahead=4, schedule={"type": "StepLR", "step_size": 3}
        )
        for _ in range(3 + i % 3):  # at, or just past, the step that queues the next window
            opt.step()
            scheduler.step()
        del scheduler
        gc.collect()
    time.sleep(0.2)  # any fetch still queued would run now
    gc.collect()
