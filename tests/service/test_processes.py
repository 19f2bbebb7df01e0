"""Durability: acknowledged writes survive kill -9 (step consistency under load: test_scale_out.py)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from servers import Server

SPEC = {"type": "CosineAnnealingLR", "T_max": 5000}
PLATEAU = {"patience": 0, "factor": 0.7, "threshold": 0.0}
RUNS = ["alpha", "beta", "gamma"]


def test_acknowledged_writes_survive_kill_9(start_server: Callable[..., Server]) -> None:
    """A replica is killed in the middle of a burst of writes, while another one serves on."""
    server, other = start_server(), start_server()
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
    for url in (restarted.url, other.url):
        run = httpx.get(f"{url}/runs/dur").json()
        scales = {c["effective_step"] for c in run["changes"] if c["kind"] == "scale"}
        assert set(acked_scales) <= scales
        for step in acked_metrics:
            again = httpx.post(f"{url}/runs/dur/metrics", json={"step": step, "value": 1.0})
            assert again.status_code == 200  # it is there: the same post replays its answer
        for step, lr in served.items():
            assert httpx.get(f"{url}/runs/dur/lr", params={"step": step}).json()["lr"] == lr
        verify: dict[str, Any] = httpx.get(f"{url}/runs/dur/events/verify").json()
        assert verify["ok"] and verify["count"] >= 1 + len(acked_scales)
