"""Memory stays within its documented bounds under a flood of distinct questions and made-up
tokens: a real server's resident set size, measured before and after the flood."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from lrtower_server.core.auth import Tokens
from lrtower_server.core.config import Settings
from lrtower_server.db.engine import make_engine
from servers import Server

CONCURRENCY = 32
FLOOD_GROWTH_MIB = 6
"""What the flood may add once the caches are full: the caches are bounded, so the growth is
noise (allocator pages, connection buffers). Unbounded, it was about 16 MiB here."""


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")  # pragma: no cover


async def ask(port: int, paths: list[tuple[str, str]]) -> dict[int, int]:
    """GET every (path, token) pair over CONCURRENCY keep-alive connections; the count of each
    status. Plain HTTP/1.1 on sockets: a full client library would be the bottleneck here."""
    statuses: dict[int, int] = {}
    queue = list(reversed(paths))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                path, token = queue.pop()
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
                )
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the RSS from /proc")
def test_a_flood_of_distinct_keys_and_tokens_stays_within_the_caches_bounds(
    start_server: Callable[..., Server], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(Settings(database_url=database_url))
    secret = Tokens(engine).create("trainer", "write", actor="test")[1]
    engine.dispose()
    monkeypatch.setenv("LRTOWER_AUTH", "required")
    monkeypatch.setenv("LRTOWER_RESPONSE_CACHE_MIB", "1")
    server = start_server()
    auth = {"authorization": f"Bearer {secret}"}
    spec = {"type": "CosineAnnealingLR", "T_max": 1000}
    body = {"name": "flood", "lr": 0.1, "schedule": spec}
    assert httpx.post(f"{server.url}/runs", json=body, headers=auth).status_code == 201
    for start in range(0, 60_000, 10_000):
        params = {"start": start, "stop": start + 10_000}
        assert httpx.get(f"{server.url}/runs/flood/lr", params=params, headers=auth).status_code == 200

    def flood(steps: range, bogus: int) -> dict[int, int]:
        paths = [(f"/runs/flood/lr?step={step}", secret) for step in steps]
        paths += [("/runs/flood/lr?step=1", "lrt_" + secrets.token_urlsafe(32)) for _ in range(bogus)]
        return asyncio.run(ask(int(server.url.rsplit(":", 1)[1]), paths))

    # Fill every cache past its bound first, so that what follows can only churn them.
    assert flood(range(0, 15_000), bogus=6_000) == {200: 15_000, 401: 6_000}
    before = rss(server.process.pid)
    assert flood(range(15_000, 60_000), bogus=15_000) == {200: 45_000, 401: 15_000}
    grown = rss(server.process.pid) - before
    assert grown < FLOOD_GROWTH_MIB << 20, f"the flood added {grown / 2**20:.1f} MiB"
    print(
        f"\n  flood of 45,000 keys and 15,000 tokens: RSS {before / 2**20:.1f} MiB, +{grown / 2**20:.2f} MiB"
    )
