"""Real server processes under load: step consistency under concurrency, and kill -9 durability."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from servers import Server

SPEC = {"type": "CosineAnnealingLR", "T_max": 5000}
PLATEAU = {"patience": 0, "factor": 0.7, "threshold": 0.0}
RUNS = ["alpha", "beta", "gamma"]


@pytest.mark.parametrize("workers", [1, 2])
def test_no_step_is_ever_answered_two_ways(start_server: Callable[..., Server], workers: int) -> None:
    """One process, and two worker processes sharing one SQLite file."""
    url = start_server("--workers", str(workers)).url
    for name in RUNS:
        assert (
            httpx.post(
                f"{url}/runs", json={"name": name, "lr": 0.1, "schedule": SPEC, "plateau": PLATEAU}
            ).status_code
            == 201
        )
    answers: list[tuple[str, int, float, float]] = []  # (run, step, lr, time answered)
    changes: list[tuple[str, int, float]] = []  # (run, effective step, time asked)
    lock = threading.Lock()
    stop = time.monotonic() + 8

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        steps = dict.fromkeys(RUNS, 0)
        with httpx.Client(base_url=url, timeout=30) as client:
            while time.monotonic() < stop:
                name = rng.choice(RUNS)
                steps[name] += rng.randint(0, 3)
                step = max(0, steps[name] - rng.randint(0, 5))  # ranks lag and repeat
                body = client.get(f"/runs/{name}/lr", params={"step": step}).json()
                with lock:
                    answers.append((name, step, body["lr"], time.monotonic()))

    metric_step = dict.fromkeys(RUNS, 0)  # one metric stream per run, as from rank 0

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=30) as client:
            while time.monotonic() < stop:
                name = rng.choice(RUNS)
                asked = time.monotonic()
                action = rng.random()
                if action < 0.6:
                    metric_step[name] += 1
                    body = client.post(
                        f"/runs/{name}/metrics", json={"step": metric_step[name], "value": 1.0}
                    ).json()
                    effective = body["effective_step"] if body.get("reduced") else None
                elif action < 0.8:
                    effective = client.post(f"/runs/{name}/scale", json={"factor": 0.9}).json()[
                        "effective_step"
                    ]
                else:
                    change = {"schedule": {"type": "StepLR", "step_size": 7}, "restart": rng.random() < 0.5}
                    effective = client.post(f"/runs/{name}/schedule", json=change).json()["effective_step"]
                if effective is not None:
                    with lock:
                        changes.append((name, effective, asked))
                time.sleep(rng.uniform(0, 0.01))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=writer, args=(100 + i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    seen: dict[tuple[str, int], float] = {}
    for name, step, lr, _ in answers:
        assert seen.setdefault((name, step), lr) == lr, (
            f"{name} step {step} answered {seen[(name, step)]} and {lr}"
        )
    for name, effective, asked in changes:
        served_before = [step for run, step, _, t in answers if run == name and t < asked]
        assert not served_before or effective > max(served_before), (name, effective, max(served_before))
    assert len(answers) > 500 and len(changes) > 10  # enough to interleave; the figures are printed
    print(f"{len(answers)} reads, {len(changes)} changes, {len(seen)} distinct (run, step)")


def test_acknowledged_writes_survive_kill_9(start_server: Callable[..., Server]) -> None:
    server = start_server()
    assert (
        httpx.post(
            f"{server.url}/runs", json={"name": "dur", "lr": 0.1, "schedule": SPEC, "plateau": PLATEAU}
        ).status_code
        == 201
    )
    acked_scales: list[int] = []
    acked_metrics: list[int] = []
    served: dict[int, float] = {}
    kill_at = time.monotonic() + random.uniform(0.5, 1.5)

    def writes() -> None:
        step = 0
        with httpx.Client(base_url=server.url, timeout=5) as client:
            while True:
                step += 1
                try:
                    served[step] = client.get("/runs/dur/lr", params={"step": step}).json()["lr"]
                    if client.post("/runs/dur/metrics", json={"step": step, "value": 1.0}).status_code == 200:
                        acked_metrics.append(step)
                    response = client.post(
                        "/runs/dur/scale", json={"factor": 0.99, "from_step": 10**9 + step}
                    )
                    if response.status_code == 200:
                        acked_scales.append(10**9 + step)
                except httpx.TransportError:
                    return

    thread = threading.Thread(target=writes)
    thread.start()
    while time.monotonic() < kill_at:
        time.sleep(0.01)
    server.kill()
    thread.join()
    assert acked_scales and acked_metrics

    restarted = start_server()
    run = httpx.get(f"{restarted.url}/runs/dur").json()
    scales = {c["effective_step"] for c in run["changes"] if c["kind"] == "scale"}
    assert set(acked_scales) <= scales
    for step in acked_metrics:
        again = httpx.post(f"{restarted.url}/runs/dur/metrics", json={"step": step, "value": 1.0})
        assert again.status_code == 200  # it is there: the same post replays its answer
    for step, lr in served.items():
        assert httpx.get(f"{restarted.url}/runs/dur/lr", params={"step": step}).json()["lr"] == lr
    verify: dict[str, Any] = httpx.get(f"{restarted.url}/runs/dur/events/verify").json()
    assert verify["ok"] and verify["count"] >= 1 + len(acked_scales)
