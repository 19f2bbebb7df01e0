"""Step consistency across real server processes on one database, under concurrent reads and
writes: one process, worker processes, and replicas; and replicas that lose their database
connections under load. Every test runs on SQLite and on PostgreSQL (see conftest)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import create_engine, text

from servers import Server

SPEC = {"type": "CosineAnnealingLR", "T_max": 5000}
PLATEAU = {"patience": 0, "factor": 0.7, "threshold": 0.0}
RUNS = ["alpha", "beta", "gamma", "delta"]
READERS = 32


@dataclass
class Log:
    """Everything asked and answered, with times, from every thread."""

    answers: list[tuple[str, int, float, float]] = field(default_factory=list)  # run, step, lr, when
    changes: list[tuple[str, int, float]] = field(default_factory=list)  # run, effective step, asked
    statuses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        if response.status_code != 200:
            # The only failure a client may see is a 503 problem (a lost database connection).
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"

    def check(self) -> None:
        """No (run, step) answered two ways; no change at or below a step served before it."""
        seen: dict[tuple[str, int], float] = {}
        for name, step, lr, _ in self.answers:
            assert seen.setdefault((name, step), lr) == lr, (
                f"{name} step {step}: {seen[(name, step)]} and {lr}"
            )
        for name, effective, asked in self.changes:
            before = [step for run, step, _, t in self.answers if run == name and t < asked]
            assert not before or effective > max(before), (name, effective, max(before))


def hammer(
    urls: list[str],
    seconds: float,
    log: Log,
    during: Callable[[], None] | None = None,
    answers: int = 0,
    changes: int = 0,
) -> None:
    """32 readers advancing through the runs' steps with jitter and lag, like the ranks of jobs,
    each on a replica of its own; two writers posting metrics, scales and schedule changes
    through random replicas; and `during`, in the main thread. They go on for `seconds`, and
    then until the log holds `answers` reads and `changes` changes (a slow machine needs longer
    to make as many), up to ten times as long."""
    started = time.monotonic()

    def going() -> bool:
        elapsed = time.monotonic() - started
        if elapsed < seconds:
            return True
        return elapsed < 10 * seconds and (len(log.answers) < answers or len(log.changes) < changes)

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        steps = dict.fromkeys(RUNS, 0)
        with httpx.Client(base_url=urls[seed % len(urls)], timeout=30) as client:
            while going():
                name = rng.choice(RUNS)
                steps[name] += rng.randint(0, 3)
                step = max(0, steps[name] - rng.randint(0, 5))  # ranks lag and repeat
                response = client.get(f"/runs/{name}/lr", params={"step": step})
                log.status(response)
                if response.status_code == 200:
                    with log.lock:
                        log.answers.append((name, step, response.json()["lr"], time.monotonic()))

    def writer(index: int) -> None:
        rng = random.Random(1000 + index)
        clients = [httpx.Client(base_url=url, timeout=30) for url in urls]
        # Each run's metrics come from one writer, in step order, as from a job's rank 0.
        mine = RUNS[index::2]
        metric_step = dict.fromkeys(mine, 0)
        while going():
            client, name, asked = rng.choice(clients), rng.choice(RUNS), time.monotonic()
            action = rng.random()
            if action < 0.6:
                name = rng.choice(mine)
                metric_step[name] += 1
                response = client.post(
                    f"/runs/{name}/metrics", json={"step": metric_step[name], "value": 1.0}
                )
            elif action < 0.8:
                response = client.post(f"/runs/{name}/scale", json={"factor": 0.9})
            else:
                change = {"schedule": {"type": "StepLR", "step_size": 7}, "restart": rng.random() < 0.5}
                response = client.post(f"/runs/{name}/schedule", json=change)
            log.status(response)
            body = response.json()
            if response.status_code == 200 and body.get("reduced", True):
                with log.lock:
                    log.changes.append((name, body["effective_step"], asked))
            time.sleep(rng.uniform(0, 0.01))
        for client in clients:
            client.close()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
    threads += [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    if during is not None:
        during()
    for thread in threads:
        thread.join()


def create_runs(url: str) -> None:
    for name in RUNS:
        body = {"name": name, "lr": 0.1, "schedule": SPEC, "plateau": PLATEAU}
        assert httpx.post(f"{url}/runs", json=body).status_code == 201


@pytest.mark.parametrize("topology", ["one process", "two workers", "three replicas"])
def test_no_step_is_ever_answered_two_ways(
    start_server: Callable[..., Server], topology: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if topology == "one process":
        urls = [start_server().url]
    elif topology == "two workers":
        urls = [start_server("--workers", "2").url]
    else:
        urls = [start_server().url for _ in range(3)]
    create_runs(urls[0])
    log = Log()
    hammer(urls, seconds=6, log=log, answers=2001, changes=21)
    log.check()
    assert len(log.answers) > 2000 and len(log.changes) > 20, (len(log.answers), len(log.changes))
    assert log.statuses.get(503, 0) == 0  # nothing failed: every request got its answer
    with capsys.disabled():
        print(f"\n  {topology}: {len(log.answers)} reads, {len(log.changes)} changes, {log.statuses}")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite has no server to lose
def test_replicas_recover_from_killed_database_connections(
    start_server: Callable[..., Server], database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL's backends are terminated under load: requests in flight get 503 problems,
    never a wrong answer, and the replicas serve again without a restart."""
    urls = [start_server().url for _ in range(2)]
    create_runs(urls[0])
    admin = create_engine(database_url)
    killed = 0

    def kill_connections() -> None:
        nonlocal killed
        for _ in range(8):
            time.sleep(0.5)
            with admin.begin() as connection:
                killed += len(
                    connection.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                            "AND backend_type = 'client backend'"
                        )
                    ).all()
                )

    log = Log()
    hammer(urls, seconds=6, log=log, during=kill_connections, answers=1001)
    admin.dispose()
    log.check()
    assert killed > 0 and len(log.answers) > 1000
    for url in urls:  # both serve again, without a restart
        for step in range(10_000, 10_050):
            assert httpx.get(f"{url}/runs/alpha/lr", params={"step": step}).status_code == 200
    with capsys.disabled():
        print(f"\n  {killed} backends terminated: {len(log.answers)} reads, statuses {log.statuses}")
