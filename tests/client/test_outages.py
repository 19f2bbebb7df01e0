"""Outages with real servers and real training loops: the job is back within seconds of the
server, whatever the outage's length, and reports the steps it ran on its last LR, which become
the run's record of them; a rank cut off alone is a divergence, which every rank warns of."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lrtower import Client, RemoteScheduler
from lrtower.lookahead import PROBE_EVERY, LRFeed
from servers import Server, launch
from training import model, optimizer

GAMMA = 0.999
SPEC = {"type": "ExponentialLR", "gamma": GAMMA}
NEVER_REDUCES = {"metric": "loss", "patience": 1_000_000}


def planned(step: int) -> float:
    return 0.1 * GAMMA**step


def on_plan(step: int, lr: float) -> bool:
    return lr == pytest.approx(planned(step), rel=1e-9)


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def fallbacks(client: Client, run: str) -> list[Any]:
    return [e for e in client.events(run, limit=1000).events if e.kind == "fallback"]


def wait_for(found: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := found()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return value


class Job(threading.Thread):
    """A training loop on its own thread: a step every `pause` seconds, a metric every 20 steps;
    it holds at step `hold_at` until `go` is set. Each step's (time, step, LR) goes to `trace`."""

    def __init__(self, scheduler: RemoteScheduler, hold_at: int, pause: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.scheduler, self.hold_at, self.pause = scheduler, hold_at, pause
        self.trace: list[tuple[float, int, float]] = []
        self.held, self.go, self.stop = threading.Event(), threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                step = self.scheduler.last_epoch + 1
                self.scheduler.optimizer.step()
                self.scheduler.step(1.0 / step if step % 20 == 0 else None)
                self.trace.append((time.monotonic(), step, float(self.scheduler.get_last_lr()[0])))
                if step == self.hold_at:
                    self.held.set()
                    self.go.wait()
                time.sleep(self.pause)
        except BaseException as exc:  # handed to the test
            self.error = exc


@pytest.mark.parametrize("outage", [10.0, pytest.param(60.0, marks=pytest.mark.slow)])
def test_the_job_reconnects_within_seconds_and_reports_its_fallback_stretch(
    start_server: Callable[..., Server], outage: float
) -> None:
    server = start_server()
    run = f"outage-{int(outage)}"
    scheduler = RemoteScheduler(
        optimizer("sgd", model(), 0.1), run, server.url, metric_every=20, schedule=SPEC, plateau=NEVER_REDUCES
    )
    job = Job(scheduler, hold_at=159)
    job.start()
    assert job.held.wait(60)
    time.sleep(1.0)  # the window fetched in the background has come back: nothing is in flight
    server.kill()
    killed = len(job.trace)
    job.go.set()
    time.sleep(outage)
    server = start_server(port=port_of(server))
    back = time.monotonic()
    try:
        # The first step after the restart that runs on the plan again is the reconnection.
        reconnected = wait_for(
            lambda: next((r for r in job.trace[killed:] if r[0] > back and on_plan(r[1], r[2])), None),
            15,
            "the job did not reconnect",
        )
        time.sleep(1.0)
    finally:
        job.stop.set()
        job.join(30)
    assert job.error is None
    print(
        f"\n  outage of {outage:.0f} s: on the plan again {reconnected[0] - back:.2f} s after the server's return"
    )
    assert reconnected[0] - back < 3.0, f"reconnected {reconnected[0] - back:.1f} s after the server's return"

    during = job.trace[killed:]
    ran = [(step, lr) for _, step, lr in during if not on_plan(step, lr)]
    assert ran, "no step ran on the last LR"
    held = ran[0][1]
    assert {lr for _, lr in ran} == {held} and held == planned(ran[0][0] - 1)
    first, last = ran[0][0], ran[-1][0]
    assert [step for step, _ in ran] == list(range(first, last + 1))
    assert all(on_plan(step, lr) for _, step, lr in during if step > last)  # on the plan ever after

    with Client(server.url) as client:
        (event,) = wait_for(lambda: fallbacks(client, run), 10, "no fallback event")
        assert event.effective_step == first and event.lr_after == [held]
        details = event.details
        assert details["stretches"] == [{"from_step": first, "to_step": last, "lrs": [held]}]
        assert details["divergence"] == [] and details["attempt"] == 1
        posts = [s for _, s, _ in during if s % 20 == 0 and s < reconnected[1]]
        assert 0 < details["dropped_metric_posts"] <= len(posts)
        assert client.verify(run).ok
        chart = httpx.get(f"{server.url}/ui/runs/{run}/chart.json").json()
        assert [m["step"] for m in chart["markers"] if m["kind"] == "fallback"] == [first]
        # Nobody was served those steps: the curve (and so plots and the chart) says what ran.
        curve = client.curve(run, first - 5, last + 6)
        assert curve.lr[5:-5] == [held] * (last - first + 1)
        assert all(on_plan(step, lr) for step, lr in zip(curve.steps[-5:], curve.lr[-5:], strict=True))
        assert chart["high_water"] >= last


class Partition(httpx.BaseTransport):
    """The network as one rank sees it: cut off at will, the server up all along."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.cut = False
        self.sent: list[tuple[float, str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((time.monotonic(), request.method, request.url.path))
        if self.cut:
            raise httpx.ConnectError("connection refused", request=request)
        return self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


@pytest.fixture
def logged_server(tmp_path: Path, database_url: str) -> Iterator[tuple[Server, Path]]:
    log = tmp_path / "server.log"
    server = launch(tmp_path, database_url, log=log)
    yield server, log
    server.stop()


def test_a_rank_cut_off_while_the_others_are_served_is_a_divergence(
    logged_server: tuple[Server, Path], caplog: pytest.LogCaptureFixture
) -> None:
    server, server_log = logged_server
    caplog.set_level(logging.INFO, logger="lrtower")
    partition = Partition()
    with Client(server.url) as direct, Client(server.url, transport=partition) as cut_off:
        ranks = [
            RemoteScheduler(
                optimizer("sgd", model(), 0.1), "partition", client=direct, lookahead=8, schedule=SPEC
            ),
            RemoteScheduler(optimizer("sgd", model(), 0.1), "partition", client=cut_off, lookahead=8),
        ]
        for rank, scheduler in enumerate(ranks):
            scheduler.feed.rank = rank

        def step_all() -> list[float]:
            for scheduler in ranks:
                scheduler.optimizer.step()
                scheduler.step()
            return [float(s.get_last_lr()[0]) for s in ranks]

        for _ in range(50):
            step_all()
        time.sleep(0.5)  # rank 1's background window is back: nothing in flight
        partition.cut = True
        trace = []
        for _ in range(100):
            lrs = step_all()
            trace.append((ranks[0].last_epoch, lrs))
            time.sleep(0.01)
        partition.cut = False
        healed = time.monotonic()
        while not on_plan(ranks[1].last_epoch + 1, step_all()[1]):  # the step the call takes
            assert time.monotonic() - healed < 3.0, "rank 1 did not reconnect"
            time.sleep(0.01)
        for _ in range(20):
            step_all()
        lost = [(step, lrs[1]) for step, lrs in trace if not on_plan(step, lrs[1])]
        assert lost and all(on_plan(step, lrs[0]) for step, lrs in trace)  # rank 0 was served throughout
        first, held = lost[0]

        (event,) = wait_for(lambda: fallbacks(direct, "partition"), 10, "no fallback event")
        details = event.details
        assert details["rank"] == 1 and details["stretches"][0]["from_step"] == first
        (divergence,) = details["divergence"]
        assert divergence["from_step"] == first and divergence["to_step"] >= lost[-1][0]
        assert divergence["fallback_lrs"] == [held]
        assert divergence["served_lrs"] == [pytest.approx(planned(first), rel=1e-12)]
        assert direct.verify("partition").ok
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "diverged" in r.getMessage()
    ]
    # The rank cut off warns of its report; the rank that was served, of its next window's
    # answer, which names the event; neither warns twice.
    reported = [w for w in warned if "(rank 1)" in w]
    told = [w for w in warned if f"event {event.seq} " in w and "(rank 1)" not in w]
    assert len(reported) == 1 and f"steps {first} to" in reported[0]
    assert len(told) == 1 and "a rank ran other LRs than the tower served it" in told[0], warned
    assert len(warned) == 2, warned
    assert "diverged" in server_log.read_text() and "rank 1" in server_log.read_text()


def test_metric_posts_during_an_outage_do_not_slow_the_probes(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    watched = Partition()
    with Client(server.url, transport=watched) as client:
        client.create_run("probed", SPEC, lr=0.1, plateau=NEVER_REDUCES)
        feed = LRFeed(client, "probed", lookahead=4, metric_every=1)
        for step in range(1, 20):
            feed.post_metric(step, 1.0 / step)
            assert feed.at(step) is not None
        server.kill()
        down = time.monotonic()
        slowest = 0.0
        step = 20
        while time.monotonic() - down < 12:  # long past the old schedule's 1 + 2 + 5 s
            started = time.monotonic()
            feed.post_metric(step, 1.0 / step)  # every step: dropped, never sent
            feed.at(step)
            slowest = max(slowest, time.monotonic() - started) if step > 22 else 0.0
            step += 1
            time.sleep(0.01)
        outage = [(t, method, path) for t, method, path in watched.sent if t > down]
        probes = [t for t, _, path in outage if path == "/healthz"]
        posts = [t for t, method, path in outage if method == "POST"]
        assert len(posts) <= 4  # the one that found the server gone, with its 3 retries (the default)
        assert len(probes) >= 9
        gaps = [b - a for a, b in itertools.pairwise(probes)]
        assert max(gaps) < PROBE_EVERY + 0.6 and min(gaps) > PROBE_EVERY - 0.2  # no backoff, no flood
        assert slowest < 0.5  # a step never waits on the server that is down
        feed.close()


def test_a_job_cut_off_alone_leaves_what_it_ran_as_the_record_of_those_steps(
    logged_server: tuple[Server, Path],
) -> None:
    """Nobody else was served those steps: what the job ran there (LR and cycled momentum) is
    what the run answers for them from then on, and the plan resumes after them."""
    server, _ = logged_server
    cycle = {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 400}
    partition = Partition()
    with Client(server.url, transport=partition) as client:
        scheduler = RemoteScheduler(
            optimizer("sgd", model(), 0.01), "alone", client=client, lookahead=8, schedule=cycle
        )
        trace: list[tuple[int, float, float]] = []

        def step() -> None:
            scheduler.optimizer.step()
            scheduler.step()
            group = scheduler.optimizer.param_groups[0]
            trace.append((scheduler.last_epoch, float(group["lr"]), float(group["momentum"])))

        for _ in range(40):
            step()
        time.sleep(0.5)  # the background window is back: nothing in flight
        partition.cut = True
        for _ in range(60):
            step()
        partition.cut = False
        healed = time.monotonic()
        while not fallbacks(client, "alone"):  # the steps go on until a probe answers and it reports
            assert time.monotonic() - healed < PROBE_EVERY * 5, "the job did not report"
            step()
            time.sleep(0.01)
        for _ in range(20):
            step()
        (report,) = fallbacks(client, "alone")
        (stretch,) = report.details["stretches"]
        (recorded,) = report.details["recorded"]
        assert (recorded["from_step"], recorded["to_step"]) == (stretch["from_step"], stretch["to_step"])
        ran = {s: (lr, m) for s, lr, m in trace}
        first, last = stretch["from_step"], stretch["to_step"]
        assert last - first >= 40
        assert {ran[s] for s in range(first, last + 1)} == {(stretch["lrs"][0], stretch["momentum"][0])}
        curve = client.curve("alone", 0, max(ran) + 1)
        answered = {
            s: (lr, m[0]) for s, lr, m in zip(curve.steps, curve.lr, curve.momentum or [], strict=True)
        }
        assert all(answered[s] == ran[s] for s in ran), "the run answers every step as it ran"
        assert client.get_run("alone").high_water >= last
