"""Rewinds racing with the ranks of both attempts, across real server processes (two workers on
one database, three replicas), and a rewind cut short by `kill -9`. Every test runs on SQLite
and on PostgreSQL.

The property: no (run, attempt, step) is ever answered two ways; a rank pinned to an attempt
gets that attempt's LRs or a 409 naming the newer one, never another attempt's LR; and each
attempt answers the steps up to its rewind as the attempt before it did."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from servers import Server

RUN = "race"
SPEC = {"type": "CosineAnnealingLR", "T_max": 5000}
PLATEAU = {"metric": "loss", "patience": 0, "factor": 0.7, "threshold": 0.0}
RANKS = 12


@dataclass
class Record:
    """(attempt, step) -> LRs answered, with every disagreement; the attempts' rewinds."""

    answers: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    disagreements: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    rewinds: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, pinned: int | None, body: dict[str, Any]) -> None:
        attempt = body["attempt"]
        with self.lock:
            if pinned is not None and attempt != pinned:
                self.foreign.append(f"pinned to {pinned}, got attempt {attempt} at step {body['step']}")
            seen = self.answers.setdefault((attempt, body["step"]), body["lrs"])
            if seen != body["lrs"]:
                self.disagreements.append(f"attempt {attempt} step {body['step']}: {seen} and {body['lrs']}")

    def status(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        if response.status_code == 409:
            assert response.json()["attempt"] is not None, response.text  # a pinned rank's attempt ended
        else:
            assert response.status_code == 200, response.text


def race(urls: list[str], seconds: float, record: Record) -> None:
    """RANKS ranks step through the run, each pinned to the attempt it started in; rank 0 of each
    job posts a metric every 5 steps. A rank whose attempt a rewind ended (409) restarts, as a
    job does from its checkpoint: at the newest attempt's rewind step. Meanwhile an operator
    rewinds the run every half second, through a random replica, to a step near its mark. After
    `seconds`, the operator goes on until it has made 10 rewinds (a slow machine makes fewer in
    the time), up to ten times as long; the ranks stop half a second after it."""
    started = time.monotonic()
    finished = threading.Event()

    def rank(index: int) -> None:
        rng = random.Random(index)
        with httpx.Client(base_url=urls[index % len(urls)], timeout=30) as client:
            pinned: int | None = None
            step = posted_up_to = 0
            while not finished.is_set():
                step += rng.randint(0, 2)
                asked = max(0, step - rng.randint(0, 3))  # ranks lag and repeat
                if index == 0 and asked % 5 == 4 and pinned is not None and asked + 1 > posted_up_to:
                    # rank 0 posts the job's metric (one value per step), in step order
                    posted_up_to = asked + 1
                    body = {"step": asked + 1, "value": 1.0 / (asked + 2), "attempt": pinned}
                    record.status(client.post(f"/runs/{RUN}/metrics", json=body))
                params: dict[str, Any] = (
                    {"step": asked} if pinned is None else {"step": asked, "attempt": pinned}
                )
                response = client.get(f"/runs/{RUN}/lr", params=params)
                record.status(response)
                if response.status_code == 409:  # restart from the checkpoint of the newest attempt
                    run = client.get(f"/runs/{RUN}").json()
                    pinned, step = None, run["attempts"][-1]["rewound_to"] if run["attempts"] else 0
                    continue
                body = response.json()
                record.answered(pinned, body)
                pinned = body["attempt"]

    def operator() -> None:
        rng = random.Random(99)
        while (elapsed := time.monotonic() - started) < seconds or (
            record.rewinds < 10 and elapsed < 10 * seconds
        ):
            time.sleep(0.5)
            with httpx.Client(base_url=rng.choice(urls), timeout=30) as client:
                mark = client.get(f"/runs/{RUN}").json()["high_water"]
                body = {
                    "to_step": max(0, mark - rng.randint(0, 40)),
                    "scale": rng.choice([0.5, 0.9]),
                    "reason": "race",
                }
                response = client.post(f"/runs/{RUN}/rewind", json=body)
                assert response.status_code == 200, response.text
                with record.lock:
                    record.rewinds += 1
        time.sleep(0.5)
        finished.set()

    threads = [threading.Thread(target=rank, args=(i,)) for i in range(RANKS)]
    threads.append(threading.Thread(target=operator))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize("topology", ["two workers", "three replicas"])
def test_rewinds_racing_with_ranks_of_both_attempts(
    start_server: Callable[..., Server], topology: str, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = (
        [start_server("--workers", "2").url]
        if topology == "two workers"
        else [start_server().url for _ in range(3)]
    )
    created = httpx.post(
        f"{urls[0]}/runs", json={"name": RUN, "lr": 0.1, "schedule": SPEC, "plateau": PLATEAU}
    )
    assert created.status_code == 201
    record = Record()
    race(urls, seconds=6, record=record)
    assert not record.disagreements, record.disagreements[:5]
    assert not record.foreign, record.foreign[:5]
    run = httpx.get(f"{urls[0]}/runs/{RUN}").json()
    assert run["attempt"] == record.rewinds + 1 > 5
    # Each attempt answers the steps up to the rewind that started it as the attempt before it.
    shared = 0
    for started in run["attempts"]:
        new, old = started["number"], started["number"] - 1
        for (attempt, step), lrs in record.answers.items():
            if attempt == new and step <= started["rewound_to"] and (old, step) in record.answers:
                assert record.answers[(old, step)] == lrs, (new, step)
                shared += 1
    assert shared > 10 and record.statuses.get(409, 0) > 0, (shared, record.statuses)
    for url in urls:
        assert httpx.get(f"{url}/runs/{RUN}/events/verify").json()["ok"] is True
    with capsys.disabled():
        print(f"\n  {topology}: {len(record.answers)} (attempt, step) answers, {record.rewinds} rewinds, "
              f"{shared} shared steps checked, {record.statuses}")  # fmt: skip


def test_a_rewind_cut_short_by_kill_9_is_all_or_nothing(start_server: Callable[..., Server]) -> None:
    server = start_server()
    body = {"name": "dur", "lr": 0.1, "schedule": SPEC, "plateau": PLATEAU}
    assert httpx.post(f"{server.url}/runs", json=body).status_code == 201
    acked: list[int] = []  # the attempt each acknowledged rewind started
    kill_at = time.monotonic() + random.uniform(0.8, 1.6)

    def rewinds() -> None:
        step = 0
        with httpx.Client(base_url=server.url, timeout=5) as client:
            while True:
                try:
                    step += 20
                    client.get("/runs/dur/lr", params={"step": step})
                    client.post("/runs/dur/metrics", json={"step": step + 1, "value": 1.0 / step})
                    client.post("/runs/dur/scale", json={"factor": 0.99})
                    response = client.post(
                        "/runs/dur/rewind", json={"to_step": step - 10, "scale": 0.9, "reason": "k9"}
                    )
                    if response.status_code == 200:
                        acked.append(response.json()["attempt"])
                except httpx.TransportError:
                    return

    thread = threading.Thread(target=rewinds)
    thread.start()
    while time.monotonic() < kill_at:
        time.sleep(0.005)
    server.kill()
    thread.join()
    assert acked

    restarted = start_server()
    run = httpx.get(f"{restarted.url}/runs/dur").json()
    attempts = run["attempts"]
    events = httpx.get(f"{restarted.url}/runs/dur/events", params={"limit": 1000}).json()["events"]
    rewound = [e for e in events if e["kind"] == "rewound"]
    # Every acknowledged rewind is there; the run is in one attempt, whole: its rows, its event,
    # its mark and the changes it discarded all agree.
    assert run["attempt"] >= acked[-1] and run["attempt"] == len(attempts) + 1 == len(rewound) + 1
    assert [a["number"] for a in attempts] == list(range(2, run["attempt"] + 1))
    assert [e["details"]["attempt"] for e in rewound] == [a["number"] for a in attempts]
    assert run["high_water"] >= attempts[-1]["rewound_to"]
    assert all(c["effective_step"] > 0 for c in run["changes"])
    assert httpx.get(f"{restarted.url}/runs/dur/events/verify").json()["ok"] is True
    answer = httpx.get(f"{restarted.url}/runs/dur/lr", params={"step": run["high_water"] + 1}).json()
    assert answer["attempt"] == run["attempt"]
