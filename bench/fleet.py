"""A fleet of training jobs on one server: J jobs x R ranks, each rank asking for its LRs as LRFeed does.

Each rank mirrors `lrtower.lookahead.LRFeed` (what `RemoteScheduler` runs), request for request:

- it fetches `GET /runs/{run}/lr?start=A&stop=B&stride=1`, windows of `lookahead` steps; as soon
  as it enters a window it fetches the next one in the background, and with lookahead 1 it asks
  at every step, waiting for the answer;
- on a run that reduces on a plateau, a window never reaches past the next metric step (the
  cadence is known: `metric_every=E`), so the window after a metric step is fetched only once
  the metric is posted, and the rank waits for it (by design: once per E steps);
- every E steps each rank posts the job's metric (`POST /runs/{run}/metrics`, the same all-reduced
  value from every rank of the job) before asking for that step.

A rank trains a step in T seconds (simulated, on its own clock; a wait for an LR or a metric post
delays its later steps). A quarter of the runs have a plateau config and are fed a flat loss, so
they reduce; halfway through the measurement an operator scales a few runs (`POST .../scale`,
with a reason). Runs are created with the real client (`lrtower.AsyncClient`).

**The load generator.** LRFeed fetches each window in a thread of its own, and thousands of
ranks in one process cannot each hold a thread and a connection; so each rank here is a
coroutine of one asyncio process, and its requests go, byte for byte as LRFeed's `Client` sends
them (path, query, JSON body), over a lean HTTP/1.1 keep-alive pool (`--client lrtower` sends
them through `lrtower.AsyncClient` instead: the real client, slower per request). A rank sleeps
between the steps where something happens (a window to fetch, a metric to post), so idle steps
cost nothing. Real ranks each hold their own connection; this pool shares a few, so a server
here pays fewer connection setups than with a real fleet. The generator watches itself (its CPU
share and its event loop's lag) and says when it, not the server, was the limit.

**What it reports**, over the measurement (after a warm-up while jobs start):
rank-steps per second; server CPU seconds per 1,000 rank-steps (/proc/<pid>/stat of the server
and its children); window latency p50/p99 as ranks see it; the share of steps on which a rank
waited for its LR (late: a prefetched window had not arrived; by design: lookahead 1, or the
window after a metric step); and database writes per run per new window: high-water-mark raises
counted by the server (`lrtower_mark_raises_total`, from GET /metrics: SQLite offers no
cross-connection write counter) and, on PostgreSQL, by the database itself
(`pg_stat_user_tables.n_tup_upd` of `runs`, less the version bumps of plateau reductions and
scales), read before the jobs start and after the server stops.

**Capacity.** For each database (SQLite with the shipped settings, synchronous=FULL; PostgreSQL)
and lookahead (64 and 1), the fleet grows until one server process pinned to CPU 0 (the
generator on CPU 1) stops sustaining it: a fleet passes when window p99 < 50 ms, no rank waited
for a prefetched window, no request failed, no two ranks got different LRs for a step, and the
generator was not the limit. With lookahead 1 every step waits for its LR by design, so there the
wait criterion is the p99 alone. The result is "ranks at T = 0.1 s per step". The machine may be
shared: each fleet records the CPU other processes took meanwhile, and a failing fleet that was
disturbed (over 0.25 cores) is measured again (`--retries`).

`--metric-from rank0` has only the first rank of a job post its metric (the others then fetch a
one-step window at each metric step, as LRFeed does), to see what the other ranks' identical
posts cost.

    python bench/fleet.py                      # both databases, lookahead 64 and 1 (~10 min)
    python bench/fleet.py --quick              # a short check
    python bench/fleet.py --db sqlite --lookahead 64 --ranks 2000   # one fleet, printed, nothing written

Writes bench/results/fleet.json and fleet.md, and prints the figures. PostgreSQL is reached at
$LRTOWER_BENCH_POSTGRES (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres); each run
creates its own database and drops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from engine import machine
from sqlalchemy import create_engine, text

import lrtower
from lrtower import AsyncClient, LrtowerError, Retry
from lrtower_server.core.config import Settings
from lrtower_server.db import migrate
from lrtower_server.db.engine import make_engine

HERE = Path(__file__).resolve().parent
SPEC = {"type": "CosineAnnealingLR", "T_max": 1_000_000, "eta_min": 1e-5}
PLATEAU = {"metric": "loss", "patience": 0, "factor": 0.5, "min_lr": 1e-6}
P99_GOAL_MS = 50.0
GENERATOR_CPU_LIMIT = 0.9
"""Above this share of its core (or with its event loop late by over LAG_LIMIT_MS at p99), the
generator may be what limits the fleet, and the figures are not the server's."""
LAG_LIMIT_MS = 20.0
DISTURBED_CORES = 0.25
"""The machine is shared: a fleet during which other processes took more than this (in cores)
was disturbed, and if it failed, it is measured again."""
ADMIN_URL = os.environ.get("LRTOWER_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
USER_AGENT = f"lrtower-client/{lrtower.__version__}"
TICK = os.sysconf("SC_CLK_TCK")


# -- databases and servers --------------------------------------------------------------------


class Database:
    """A fresh database for one benchmark: a SQLite file, or a PostgreSQL database of its own."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self._home = Path(tempfile.mkdtemp(prefix=f"lrtower-{name}-"))
        self._pg_name = f"lrtower_{name}_{os.getpid()}"
        if kind == "sqlite":
            self.url = f"sqlite:///{self._home / 'fleet.db'}"
        else:
            with self._admin() as admin:
                admin.execute(text(f"DROP DATABASE IF EXISTS {self._pg_name} WITH (FORCE)"))
                admin.execute(text(f"CREATE DATABASE {self._pg_name}"))
            self.url = ADMIN_URL.rsplit("/", 1)[0] + f"/{self._pg_name}"
        engine = make_engine(Settings(database_url=self.url))
        migrate.upgrade(engine)
        engine.dispose()

    @contextmanager
    def _admin(self) -> Iterator[Any]:
        engine = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                yield connection
        finally:
            engine.dispose()

    def counters(self) -> dict[str, float]:
        """What the database itself counts (PostgreSQL only): commits, and rows updated in `runs`."""
        if self.kind != "postgresql":
            return {}
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as db:
                commits = db.execute(
                    text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
                ).scalar_one()
                updates = db.execute(
                    text("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'runs'")
                ).scalar_one()
        finally:
            engine.dispose()
        return {"xact_commit": float(commits), "runs_n_tup_upd": float(updates)}

    def settled_counters(self) -> dict[str, float]:
        """The counters once the servers' backends have reported all they did (they report when
        they exit, and at most once a second while busy): read until two reads agree."""
        last = self.counters()
        for _ in range(20):
            time.sleep(0.5)
            now = self.counters()
            if now == last:
                return now
            last = now
        return last

    def drop(self) -> None:
        if self.kind == "postgresql":
            with self._admin() as admin:
                admin.execute(text(f"DROP DATABASE IF EXISTS {self._pg_name} WITH (FORCE)"))
        shutil.rmtree(self._home, ignore_errors=True)


def pinned(cpu: int, command: list[str]) -> list[str]:
    return (
        ["taskset", "-c", str(cpu), *command]
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1
        else command
    )


def busy_cpu_seconds() -> tuple[float, float]:
    """CPU seconds spent by the whole machine (all CPUs, /proc/stat), and by PostgreSQL's processes
    (not pinned: part of the servers' work on PostgreSQL)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    machine_total = (user + nice + system + irq + softirq + steal) / TICK
    postgres = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text_ = stat.read_text()
        except OSError:
            continue
        name, rest = text_.split(" (", 1)[1].rsplit(")", 1)
        if name == "postgres":
            found = rest.split()
            postgres += (int(found[11]) + int(found[12])) / TICK
    return machine_total, postgres


def pin_self(cpu: int) -> None:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


class Server:
    """One `lrtower serve` process (with its workers), pinned to `cpu`, without auth (loopback)."""

    def __init__(self, database: Database, port: int, cpu: int, workers: int = 1) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "LRTOWER_DATABASE_URL": database.url,
            # One anonymous caller makes every write here: no per-token limits.
            "LRTOWER_WRITE_RATE": "0",
            "LRTOWER_CREATE_RATE": "0",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        lrtower_bin = str(Path(sys.executable).parent / "lrtower")
        command = [lrtower_bin, "serve", "--port", str(port), "--workers", str(workers)]
        self.process = subprocess.Popen(
            pinned(cpu, command), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(300):
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise SystemExit(f"the server on port {port} exited: {self.stderr()}")
            time.sleep(0.1)
        else:
            self.stop()
            raise SystemExit(f"the server on port {port} did not start")
        # Workers start one by one: wait until every one answers (each counts in the CPU figures).
        time.sleep(1.0 if workers > 1 else 0.0)

    def pids(self) -> list[int]:
        """The server process and all its descendants (uvicorn's workers)."""
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                with suppress(OSError):
                    todo += [int(child) for child in (task / "children").read_text().split()]
        return found

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        return total

    def metrics(self) -> dict[str, float]:
        body = httpx.get(f"{self.url}/metrics", timeout=10).text
        found: dict[str, float] = {}
        for name, value in re.findall(
            r"^(lrtower_mark_(?:groups|raises)_total|lrtower_database_errors_total) ([\d.e+]+)$", body, re.M
        ):
            found[name] = found.get(name, 0.0) + float(value)
        statuses: dict[str, float] = {}
        for status, value in re.findall(
            r'^lrtower_requests_total\{[^}]*status="(\d+)"[^}]*\} ([\d.e+]+)$', body, re.M
        ):
            statuses[status] = statuses.get(status, 0.0) + float(value)
        found["responses_5xx"] = sum(v for s, v in statuses.items() if s.startswith("5"))
        return found

    def stderr(self) -> str:
        if self.process.stderr is None:
            return ""
        return self.process.stderr.read().decode(errors="replace")[-2000:]

    def stop(self) -> str:
        """Stop it; what it wrote to stderr (tracebacks, if any)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.stderr()


# -- the wire: LRFeed's requests ----------------------------------------------------------------


class Wire(Protocol):
    """How a rank sends LRFeed's two requests; each returns the HTTP status and what it read."""

    async def window(self, run: str, start: int, stop: int) -> tuple[int, list[float] | None]: ...

    async def metric(self, run: str, step: int, value: float) -> tuple[int, bool]: ...

    async def close(self) -> None: ...


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection: a request at a time, answers with a Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self._fail(ConnectionError(f"an answer without Content-Length: {head[:200]!r}"))
            return
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
        total = end + 4 + length
        if len(buffer) < total:
            return
        status, body = int(head[9:12]), bytes(buffer[end + 4 : total])
        del buffer[:total]
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("the server closed the connection"))

    def _fail(self, error: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


class RawWire:
    """LRFeed's requests, as its `Client` words them, over a pool of keep-alive connections."""

    def __init__(self, url: str, size: int = 64) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        self.size = size
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiting: deque[asyncio.Future[_Connection]] = deque()
        self._head = (
            f"Host: {self.host}:{self.port}\r\naccept: application/json\r\nuser-agent: {USER_AGENT}\r\n"
        )

    async def _acquire(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._open -= 1
        if self._open < self.size:
            self._open += 1
            try:
                _, connection = await asyncio.get_running_loop().create_connection(
                    _Connection, self.host, self.port
                )
            except OSError:
                self._open -= 1
                raise
            return connection
        waiter: asyncio.Future[_Connection] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        return await waiter

    def _release(self, connection: _Connection) -> None:
        if connection.closed:
            self._open -= 1
            return
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    async def _send(self, raw: bytes) -> tuple[int, bytes]:
        for attempt in range(3):
            connection = await self._acquire()
            try:
                answer = await connection.request(raw)
            except ConnectionError:
                # An idle connection the server closed (keep-alive timeout) as we sent: again,
                # on a new one. Both requests are idempotent, so resending is safe.
                self._release(connection)
                if attempt == 2:
                    raise
                continue
            self._release(connection)
            return answer
        raise AssertionError("unreachable")

    async def window(self, run: str, start: int, stop: int) -> tuple[int, list[float] | None]:
        raw = f"GET /runs/{run}/lr?start={start}&stop={stop}&stride=1 HTTP/1.1\r\n{self._head}\r\n"
        status, body = await self._send(raw.encode())
        return status, json.loads(body)["lr"] if status == 200 else None

    async def metric(self, run: str, step: int, value: float) -> tuple[int, bool]:
        body = json.dumps({"step": step, "value": value}).encode()
        raw = (
            f"POST /runs/{run}/metrics HTTP/1.1\r\n{self._head}content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode() + body
        status, answer = await self._send(raw)
        return status, bool(json.loads(answer).get("reduced")) if status < 300 else False

    async def close(self) -> None:
        for connection in self._idle:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()


class ClientWire:
    """The same requests through the real `lrtower.AsyncClient` (no retries: failures count)."""

    def __init__(self, url: str) -> None:
        self.client = AsyncClient(url, retry=Retry(retries=0))

    async def window(self, run: str, start: int, stop: int) -> tuple[int, list[float] | None]:
        try:
            got = await self.client.lr_range(run, start, stop)
        except LrtowerError as exc:
            return getattr(exc, "status", 599), None
        return 200, got.lr

    async def metric(self, run: str, step: int, value: float) -> tuple[int, bool]:
        try:
            got = await self.client.post_metric(run, step, value)
        except LrtowerError as exc:
            return getattr(exc, "status", 599), False
        return 200, got.reduced

    async def close(self) -> None:
        await self.client.aclose()


# -- the fleet ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mix:
    """What the jobs do, the same for every fleet size."""

    ranks_per_job: int = 8
    step_time: float = 0.1
    metric_every: int = 100
    plateau_every: int = 4
    """Every this many jobs, one has a plateau config (and a flat loss, so it reduces)."""
    scale_every: int = 25
    """Every this many jobs, an operator scales one halfway through the measurement."""
    metric_from: str = "all"
    """Which ranks post the job's metric: "all" (the same all-reduced value from every rank), or
    "rank0" (only the first rank; the others then fetch one step alone at each metric step, as
    LRFeed does when it expects a metric it does not post)."""
    route: str = "spread"
    """How ranks reach several servers: "spread" (one by one: a run's ranks hit different
    replicas), or "run" (every rank of a run to one replica, as deploy/nginx.conf routes)."""
    warmup: float = 10.0
    """Seconds before the measurement: jobs start over its first 60%."""
    seconds: float = 15.0


@dataclass
class Tally:
    """What the ranks saw during the measurement (and, for windows, over the whole fleet's life)."""

    window_ms: list[float] = field(default_factory=list)
    prefetch_ms: list[float] = field(default_factory=list)
    """Of those, the windows fetched in the background..."""
    waited_window_ms: list[float] = field(default_factory=list)
    """...and those fetched while the rank waits."""
    metric_ms: list[float] = field(default_factory=list)
    wait_late_ms: list[float] = field(default_factory=list)
    waits_by_design: int = 0
    metric_waits: int = 0
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    windows: dict[tuple[str, int, int], tuple[float, ...]] = field(default_factory=dict)
    mismatches: int = 0
    reductions: set[tuple[str, int]] = field(default_factory=set)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class Fleet:
    def __init__(self, mix: Mix, jobs: int, lookahead: int, wires: list[Wire], prefix: str) -> None:
        self.mix = mix
        self.lookahead = lookahead
        self.wires = wires
        self.tally = Tally()
        self.measuring = False
        self.done = False
        self.runs = [f"{prefix}-j{job}" for job in range(jobs)]
        self.ranks = [
            Rank(
                self,
                run,
                job % mix.plateau_every == 0,
                wires[(job if mix.route == "run" else job * mix.ranks_per_job + i) % len(wires)],
                posts=mix.metric_from == "all" or i == 0,
            )
            for job, run in enumerate(self.runs)
            for i in range(mix.ranks_per_job)
        ]

    def steps_done(self, now: float) -> int:
        return sum(rank.progress(now) for rank in self.ranks)


class Rank:
    """One rank: LRFeed's windows, prefetch and metric posts, on a simulated training clock."""

    def __init__(self, fleet: Fleet, run: str, plateau: bool, wire: Wire, posts: bool = True) -> None:
        self.fleet, self.run, self.plateau, self.wire, self.posts = fleet, run, plateau, wire, posts
        self.lookahead = fleet.lookahead
        self.every = fleet.mix.metric_every
        self.period = fleet.mix.step_time
        self.top = -1
        self.pending: asyncio.Task[int] | None = None
        self.pending_start = 0
        self.last_metric = 0  # LRFeed's expect_metrics(every, first=every)
        self.step, self.base, self.next = -1, 0.0, 0

    def progress(self, now: float) -> int:
        """Steps done by `now`: those done up to the last event, and the idle steps since."""
        if self.step < 0:
            return 0
        idle = min(max(0, math.floor((now - self.base) / self.period)), self.next - self.step - 1)
        return self.step + 1 + idle

    async def run_job(self, start: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, start - loop.time()))
        step, due = 0, loop.time()
        while not self.fleet.done:
            blocked = await self.at(step)
            now = loop.time()
            base = now if blocked else due  # a wait delays every later step of this rank
            nxt = self.next_event(step)
            self.step, self.base, self.next = step, base, nxt
            target = base + (nxt - step) * self.period
            pending = self.pending
            if pending is not None and not pending.done() and target > now:
                await asyncio.wait((pending,), timeout=target - now)
                if pending.done():
                    # LRFeed takes a landed window in at the next step, and may fetch the next.
                    now = loop.time()
                    ahead = max(1, math.ceil((now - base) / self.period))
                    if step + ahead < nxt:
                        nxt, target = step + ahead, base + ahead * self.period
                        self.next = nxt
            delay = target - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            step, due = nxt, target
        if self.pending is not None:
            self.pending.cancel()

    async def at(self, step: int) -> bool:
        """LRFeed.at(step), after RemoteScheduler's post of the step's metric; whether it waited."""
        loop = asyncio.get_running_loop()
        tally, measuring = self.fleet.tally, self.fleet.measuring
        blocked = False
        if self.posts and step and step % self.every == 0:
            started = loop.time()
            # Every rank posts the job's all-reduced value; a flat loss makes a plateau reduce.
            value = 1.0 if self.plateau else 1.0 / (1.0 + step / 1000)
            try:
                status, reduced = await self.wire.metric(self.run, step, value)
            except (OSError, ValueError, KeyError) as exc:
                status, reduced = 0, False
                tally.error(type(exc).__name__)
            if measuring:
                tally.metric_ms.append((loop.time() - started) * 1e3)
                tally.metric_waits += 1
                tally.requests += 1
                if status >= 300:
                    tally.error(f"metric {status}")
            if reduced:
                tally.reductions.add((self.run, step))
            self.last_metric = step
            blocked = True
        self.collect()
        if step > self.top:
            started = loop.time()
            late = False
            if self.pending is not None and self.pending_start <= step:
                await self.pending
                self.collect()
                late = True
            if step > self.top:
                stop = max(self.window_end(step), step + 1)
                self.top = max(self.top, await self.fetch(step, stop, waiting=True))
            if measuring:
                if late:
                    tally.wait_late_ms.append((loop.time() - started) * 1e3)
                else:
                    tally.waits_by_design += 1
            blocked = True
        self.maybe_refill(step)
        return blocked

    def collect(self) -> None:
        if self.pending is not None and self.pending.done():
            self.top = max(self.top, self.pending.result())
            self.pending = None

    def window_end(self, start: int) -> int:
        end = start + self.lookahead
        if not self.plateau:
            return end
        last, every = self.last_metric, self.every
        return min(end, last + every * max(1, -(-(start - last) // every)))

    def maybe_refill(self, step: int) -> None:
        if self.lookahead == 1 or self.pending is not None or self.top - step >= self.lookahead:
            return
        start = max(self.top + 1, step + 1)
        end = self.window_end(start)
        if end > start:
            self.pending = asyncio.get_running_loop().create_task(self.fetch(start, end))
            self.pending_start = start

    def next_event(self, step: int) -> int:
        """The next step at which LRFeed would do anything but a lookup."""
        candidates = [self.top + 1, (step // self.every + 1) * self.every]
        if self.lookahead > 1 and self.pending is None:
            refill = self.top - self.lookahead + 1
            if refill > step and self.window_end(self.top + 1) > self.top + 1:
                candidates.append(refill)
        return max(step + 1, min(candidates))

    async def fetch(self, start: int, stop: int, waiting: bool = False) -> int:
        """Fetch [start, stop); the last step now known (as if fetched, on a failure: LRFeed goes
        on with the last LR)."""
        tally = self.fleet.tally
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            status, lrs = await self.wire.window(self.run, start, stop)
        except (OSError, ValueError, KeyError) as exc:
            status, lrs = 0, None
            tally.error(type(exc).__name__)
        if self.fleet.measuring:
            tally.window_ms.append((loop.time() - started) * 1e3)
            (tally.waited_window_ms if waiting else tally.prefetch_ms).append(tally.window_ms[-1])
            tally.requests += 1
            if status != 200:
                tally.error(f"window {status}")
        if lrs is not None:
            key = (self.run, start, stop)
            seen = tally.windows.setdefault(key, tuple(lrs))
            if seen != tuple(lrs):
                tally.mismatches += 1
        return stop - 1


class Lag:
    """How late the generator's event loop wakes up: its lag is the generator's saturation."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.running = True

    async def watch(self, measuring: Fleet) -> None:
        loop = asyncio.get_running_loop()
        while self.running:
            asked = loop.time()
            await asyncio.sleep(0.02)
            if measuring.measuring:
                self.samples.append((loop.time() - asked - 0.02) * 1e3)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def create_runs(urls: list[str], runs: list[str], mix: Mix) -> None:
    """Create the fleet's runs with the real client, as RemoteScheduler(schedule=...) does."""
    clients = [AsyncClient(url) for url in urls]
    semaphore = asyncio.Semaphore(32)

    async def create(i: int, run: str) -> None:
        async with semaphore:
            plateau = PLATEAU if i % mix.plateau_every == 0 else None
            await clients[i % len(clients)].create_run(run, SPEC, lr=0.1, plateau=plateau)

    try:
        await asyncio.gather(*(create(i, run) for i, run in enumerate(runs)))
    finally:
        for client in clients:
            await client.aclose()


async def operator(urls: list[str], runs: list[str], mix: Mix, tally: Tally) -> int:
    """An operator scales a few runs by half, with a reason; how many changes landed."""
    client = AsyncClient(urls[-1])
    scaled = 0
    try:
        for i, run in enumerate(runs):
            if i % mix.scale_every == mix.scale_every // 2:
                try:
                    await client.scale(run, 0.5, reason="fleet bench: an operator halves the LR mid-run")
                    scaled += 1
                except LrtowerError as exc:
                    tally.error(f"scale {getattr(exc, 'status', type(exc).__name__)}")
    finally:
        await client.aclose()
    return scaled


def make_wires(urls: list[str], client: str, pool: int) -> list[Wire]:
    return [RawWire(url, pool) if client == "raw" else ClientWire(url) for url in urls]


async def drive(
    mix: Mix,
    jobs: int,
    lookahead: int,
    urls: list[str],
    prefix: str,
    client: str,
    pool: int,
    servers_cpu: Callable[[], float],
) -> tuple[Fleet, dict[str, float]]:
    """Run the fleet: warm up, measure, stop. The fleet, and the measurement's own figures."""
    loop = asyncio.get_running_loop()
    wires = make_wires(urls, client, pool)
    fleet = Fleet(mix, jobs, lookahead, wires, prefix)
    # The ranks are long-lived: keep the collector from walking them in the loop's way.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)
    await create_runs(urls, fleet.runs, mix)
    rng = random.Random(jobs * 1000 + lookahead)
    begin = loop.time() + 0.5
    tasks = []
    for job in range(jobs):
        job_start = begin + rng.uniform(0, mix.warmup * 0.6)
        for rank in fleet.ranks[job * mix.ranks_per_job : (job + 1) * mix.ranks_per_job]:
            # Ranks of a job start together, within the jitter of their processes' clocks.
            tasks.append(loop.create_task(rank.run_job(job_start + rng.uniform(0, 0.005))))
    lag = Lag()
    watcher = loop.create_task(lag.watch(fleet))
    await asyncio.sleep(begin + mix.warmup - loop.time())
    fleet.measuring = True
    started, cpu_started = loop.time(), time.process_time()
    steps_started = fleet.steps_done(started)
    on_servers, (on_machine, on_postgres) = servers_cpu(), busy_cpu_seconds()
    await asyncio.sleep(mix.seconds / 2)
    scaled = await operator(urls, fleet.runs, mix, fleet.tally)
    await asyncio.sleep(max(0.0, started + mix.seconds - loop.time()))
    ended = loop.time()
    fleet.measuring = False
    server_cpu, generator_cpu = servers_cpu() - on_servers, time.process_time() - cpu_started
    off_machine, off_postgres = busy_cpu_seconds()
    # What the machine's other users took meanwhile (other engineers' tests): in cores.
    others = off_machine - on_machine - server_cpu - generator_cpu - (off_postgres - on_postgres)
    figures = {
        "seconds": ended - started,
        "rank_steps": fleet.steps_done(ended) - steps_started,
        "server_cpu_s": server_cpu,
        "postgres_cpu_s": off_postgres - on_postgres,
        "others_cores": others / (ended - started),
        "generator_cpu": generator_cpu / (ended - started),
        "lag_p99_ms": percentile(lag.samples, 0.99),
        "scaled": scaled,
    }
    fleet.done = True
    lag.running = False
    await asyncio.sleep(0)
    for task in [*tasks, watcher]:
        task.cancel()
    await asyncio.gather(*tasks, watcher, return_exceptions=True)
    for wire in wires:
        await wire.close()
    return fleet, figures


def measure(
    database: Database,
    mix: Mix,
    ranks: int,
    lookahead: int,
    *,
    replicas: int = 1,
    workers: int = 1,
    client: str = "raw",
    pool: int = 64,
    server_cpu: int = 0,
    port: int = 8971,
    label: str = "f",
) -> dict[str, Any]:
    """One fleet of `ranks` ranks on fresh servers of `database`: the figures of the module doc."""
    jobs = max(1, round(ranks / mix.ranks_per_job))
    servers = [Server(database, port + i, server_cpu, workers) for i in range(replicas)]
    stderr = ""
    try:
        before_db = database.settled_counters()
        before_marks = _sum_metrics(servers)
        urls, prefix = [s.url for s in servers], f"{label}{jobs}x{lookahead}"
        fleet, figures = asyncio.run(
            drive(
                mix,
                jobs,
                lookahead,
                urls,
                prefix,
                client,
                pool,
                lambda: sum(s.cpu_seconds() for s in servers),
            )
        )
        after_marks = _sum_metrics(servers)
    finally:
        stderr = "".join(server.stop() for server in servers)
    after_db = database.settled_counters()
    return summarize(
        fleet, figures, jobs, lookahead, mix, before_marks, after_marks, before_db, after_db, stderr
    )


def _sum_metrics(servers: list[Server]) -> dict[str, float]:
    total: dict[str, float] = {}
    for server in servers:
        for name, value in server.metrics().items():
            total[name] = total.get(name, 0.0) + value
    return total


def summarize(
    fleet: Fleet,
    figures: dict[str, float],
    jobs: int,
    lookahead: int,
    mix: Mix,
    before_marks: dict[str, float],
    after_marks: dict[str, float],
    before_db: dict[str, float],
    after_db: dict[str, float],
    stderr: str,
) -> dict[str, Any]:
    tally = fleet.tally
    seconds, rank_steps = figures["seconds"], figures["rank_steps"]
    ranks = jobs * mix.ranks_per_job
    new_windows = len(tally.windows)
    raises = after_marks.get("lrtower_mark_raises_total", 0.0) - before_marks.get(
        "lrtower_mark_raises_total", 0.0
    )
    groups = after_marks.get("lrtower_mark_groups_total", 0.0) - before_marks.get(
        "lrtower_mark_groups_total", 0.0
    )
    five_xx = after_marks.get("responses_5xx", 0.0) - before_marks.get("responses_5xx", 0.0)
    changes = len(tally.reductions) + figures["scaled"]
    result: dict[str, Any] = {
        "ranks": ranks,
        "jobs": jobs,
        "lookahead": lookahead,
        "seconds": seconds,
        "rank_steps_per_s": rank_steps / seconds,
        "pace": rank_steps / seconds / (ranks / mix.step_time),
        "requests_per_s": tally.requests / seconds,
        "server_cpu_share": figures["server_cpu_s"] / seconds,
        "server_cpu_s_per_1000_rank_steps": figures["server_cpu_s"] / rank_steps * 1000
        if rank_steps
        else math.nan,
        "server_cpu_ms_per_request": figures["server_cpu_s"] / tally.requests * 1e3
        if tally.requests
        else math.nan,
        "window_p50_ms": percentile(tally.window_ms, 0.50),
        "window_p99_ms": percentile(tally.window_ms, 0.99),
        "prefetch_p50_ms": percentile(tally.prefetch_ms, 0.50),
        "prefetch_p99_ms": percentile(tally.prefetch_ms, 0.99),
        "waiting_window_p99_ms": percentile(tally.waited_window_ms, 0.99),
        "metric_p50_ms": percentile(tally.metric_ms, 0.50),
        "metric_p99_ms": percentile(tally.metric_ms, 0.99),
        "waited_late_share": len(tally.wait_late_ms) / rank_steps if rank_steps else math.nan,
        "waited_by_design_share": tally.waits_by_design / rank_steps if rank_steps else math.nan,
        "waited_share": (len(tally.wait_late_ms) + tally.waits_by_design) / rank_steps
        if rank_steps
        else math.nan,
        "late_wait_p99_ms": percentile(tally.wait_late_ms, 0.99),
        "errors": dict(tally.errors),
        "server_5xx": five_xx,
        "mismatched_windows": tally.mismatches,
        "plateau_reductions": len(tally.reductions),
        "scaled_runs": figures["scaled"],
        "new_windows": new_windows,
        "mark_raises": raises,
        "mark_commits": groups,
        "writes_per_new_window_server": raises / new_windows if new_windows else math.nan,
        "generator_cpu_share": figures["generator_cpu"],
        "generator_lag_p99_ms": figures["lag_p99_ms"],
    }
    if after_db:
        updates = after_db["runs_n_tup_upd"] - before_db["runs_n_tup_upd"]
        result["db_runs_rows_updated"] = updates
        result["db_commits"] = after_db["xact_commit"] - before_db["xact_commit"]
        # Each plateau reduction and each scale bumps its run's version: one update each.
        result["writes_per_new_window_db"] = (updates - changes) / new_windows if new_windows else math.nan
    result["postgres_cpu_share"] = figures["postgres_cpu_s"] / seconds
    result["others_cores"] = figures["others_cores"]
    result["disturbed"] = figures["others_cores"] > DISTURBED_CORES
    result["generator_bound"] = figures["generator_cpu"] > GENERATOR_CPU_LIMIT or (
        figures["lag_p99_ms"] > LAG_LIMIT_MS and not result["disturbed"]
    )
    result["passes"] = (
        result["window_p99_ms"] < P99_GOAL_MS
        and not result["waited_late_share"]
        and not tally.errors
        and not five_xx
        and not tally.mismatches
        and not result["generator_bound"]
    )
    if "Traceback" in stderr:
        result["server_tracebacks"] = stderr[-1500:]
    return result


def show(result: dict[str, Any]) -> str:
    r = result
    flags = "pass" if r["passes"] else "FAIL"
    if r["generator_bound"]:
        flags += " (generator-bound)"
    if r["disturbed"]:
        flags += f" (disturbed: others took {r['others_cores']:.2f} cores)"
    writes = f"{r['writes_per_new_window_server']:.2f}"
    if "writes_per_new_window_db" in r:
        writes += f"/{r['writes_per_new_window_db']:.2f}db"
    return (
        f"{r['ranks']:>6} ranks L{r['lookahead']:<3} {r['rank_steps_per_s']:>8.0f} steps/s "
        f"pace {r['pace']:.2f} {r['requests_per_s']:>6.0f} req/s cpu {r['server_cpu_share']:.2f} "
        f"({r['server_cpu_s_per_1000_rank_steps']:.3f} s/1k steps) p50 {r['window_p50_ms']:.1f} "
        f"p99 {r['window_p99_ms']:.1f} ms (prefetch p99 {r['prefetch_p99_ms']:.1f}, waited-for p99 {r['waiting_window_p99_ms']:.1f}) metric p50 {r['metric_p50_ms']:.0f} p99 {r['metric_p99_ms']:.0f} waited {r['waited_share']:.4f} late {r['waited_late_share']:.4f} "
        f"writes/window {writes} gen {r['generator_cpu_share']:.2f} lag {r['generator_lag_p99_ms']:.1f} ms "
        f"err {sum(r['errors'].values())} 5xx {r['server_5xx']:.0f} -> {flags}"
    )


def capacity(
    database: Database,
    mix: Mix,
    lookahead: int,
    start: int,
    trials: int,
    client: str,
    pool: int,
    retries: int = 1,
) -> dict[str, Any]:
    """Grow the fleet until it stops passing, then narrow down: the largest fleet that passed."""
    passed: dict[str, Any] | None = None
    failed: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    ranks = start
    trial = 0
    while trial < trials:
        result = measure(database, mix, ranks, lookahead, client=client, pool=pool, label=f"c{len(rows)}-")
        rows.append(result)
        print(f"  {database.kind:<10} {show(result)}", flush=True)
        if result["disturbed"] and not result["passes"] and retries:
            retries -= 1
            time.sleep(5)
            continue  # the same size again, hopefully alone on the machine
        trial += 1
        if result["passes"]:
            if passed is None or result["ranks"] > passed["ranks"]:
                passed = result
        elif failed is None or result["ranks"] < failed["ranks"]:
            failed = result
        if result["generator_bound"] and not result["passes"]:
            break  # beyond what this generator can offer: the capacity is at least `passed`
        if passed is not None and failed is not None:
            if failed["ranks"] <= passed["ranks"] * 1.15:
                break
            ranks = round(math.sqrt(passed["ranks"] * failed["ranks"]))
        elif failed is None:
            # Aim at about 85% of the server's core, from what this fleet cost; at most x2.5.
            share = max(result["server_cpu_share"], 0.05)
            ranks = round(ranks * min(2.5, max(1.3, 0.85 / share)))
        else:
            ranks = round(ranks / 2)
        ranks = max(mix.ranks_per_job, round(ranks / mix.ranks_per_job) * mix.ranks_per_job)
        if any(r["ranks"] == ranks and not r["disturbed"] for r in rows):
            break
    return {
        "database": database.kind,
        "lookahead": lookahead,
        "capacity_ranks": passed["ranks"] if passed else 0,
        "first_failing_ranks": failed["ranks"] if failed else None,
        "limited_by_generator": bool(rows and rows[-1]["generator_bound"] and not rows[-1]["passes"]),
        "at_capacity": passed,
        "trials": rows,
    }


def write(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    mix = result["mix"]
    md = [
        f"Largest fleet one server process sustains on one core (pinned to CPU 0; load generator on "
        f"CPU 1), at T = {mix['step_time']} s per step: window p99 < {P99_GOAL_MS:.0f} ms, no rank waiting "
        "for a prefetched window, no failed request.",
        "",
        "| database | lookahead | ranks at T = 0.1 s | rank-steps/s | server CPU s / 1,000 rank-steps | "
        "window p50 / p99 ms | steps waiting for the LR | DB writes per run per new window | next size tried |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["capacity"]:
        r = c["at_capacity"]
        if r is None:
            md.append(
                f"| {c['database']} | {c['lookahead']} | none passed | | | | | | {c['first_failing_ranks']} |"
            )
            continue
        writes = f"{r['writes_per_new_window_server']:.2f} (server)"
        if "writes_per_new_window_db" in r:
            writes += f", {r['writes_per_new_window_db']:.2f} (pg_stat)"
        failing = c["first_failing_ranks"]
        nxt = f"{failing} failed" if failing else "none failed"
        if c["limited_by_generator"]:
            nxt += " (generator-bound)"
        md.append(
            f"| {c['database']} | {c['lookahead']} | **{r['ranks']:,}** | {r['rank_steps_per_s']:,.0f} | "
            f"{r['server_cpu_s_per_1000_rank_steps']:.3f} | {r['window_p50_ms']:.1f} / {r['window_p99_ms']:.1f} | "
            f"{r['waited_share']:.2%} (late: {r['waited_late_share']:.2%}) | {writes} | {nxt} |"
        )
    md += [
        "",
        f"Mix: {mix['ranks_per_job']} ranks per job; a metric every {mix['metric_every']} steps ("
        f"{'all ranks post' if mix['metric_from'] == 'all' else 'rank 0 posts'} the job's value); every {mix['plateau_every']}th run reduces on a plateau (a flat loss); an operator "
        f"scales every {mix['scale_every']}th run halfway; {mix['warmup']:.0f} s warm-up, {mix['seconds']:.0f} s "
        "measured per fleet size. Steps waiting for the LR: with lookahead 1 every step (by design); with 64, "
        "the window after a plateau run's metric step, which cannot be fetched before the metric is posted.",
        "",
        "Every fleet size tried:",
        "",
        "| database | lookahead | ranks | rank-steps/s | req/s | server CPU | window p50 / p99 ms | "
        "p99 ms: prefetched / waited-for windows | metric post p50 / p99 ms | late waits | "
        "writes per new window | generator CPU / lag p99 | other users' load (cores) | passes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["capacity"]:
        for r in c["trials"]:
            writes = f"{r['writes_per_new_window_server']:.2f}"
            if "writes_per_new_window_db" in r:
                writes += f" / {r['writes_per_new_window_db']:.2f} (pg)"
            verdict = "yes" if r["passes"] else "no"
            if r["generator_bound"]:
                verdict += " (generator-bound)"
            md.append(
                f"| {c['database']} | {r['lookahead']} | {r['ranks']:,} | {r['rank_steps_per_s']:,.0f} | "
                f"{r['requests_per_s']:,.0f} | {r['server_cpu_share']:.0%} | {r['window_p50_ms']:.1f} / "
                f"{r['window_p99_ms']:.1f} | {r['prefetch_p99_ms']:.1f} / {r['waiting_window_p99_ms']:.1f} | "
                f"{r['metric_p50_ms']:.0f} / {r['metric_p99_ms']:.0f} | {r['waited_late_share']:.2%} | {writes} | "
                f"{r['generator_cpu_share']:.0%} / {r['generator_lag_p99_ms']:.0f} ms | {r['others_cores']:.2f} | {verdict} |"
            )
    m = result["machine"]
    md += ["", f"Machine: {m['cpu']}, {m['cpus']} CPUs, Python {m['python']}; client: {result['client']}."]
    (out / "fleet.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--lookahead", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--ranks", type=int, help="measure this one fleet size (no search)")
    parser.add_argument("--start", type=int, nargs=2, default=[160, 160], metavar=("L64", "L1"),
                        help="the first fleet size of the search, for lookahead 64 and for 1")  # fmt: skip
    parser.add_argument("--trials", type=int, default=4, help="fleet sizes tried per search")
    parser.add_argument(
        "--retries", type=int, default=1, help="disturbed failing trials measured again, per search"
    )
    parser.add_argument("--warmup", type=float, default=Mix.warmup)
    parser.add_argument("--seconds", type=float, default=Mix.seconds)
    parser.add_argument("--ranks-per-job", type=int, default=Mix.ranks_per_job)
    parser.add_argument("--metric-every", type=int, default=Mix.metric_every)
    parser.add_argument("--step-time", type=float, default=Mix.step_time)
    parser.add_argument("--metric-from", choices=["all", "rank0"], default=Mix.metric_from)
    parser.add_argument("--client", choices=["raw", "lrtower"], default="raw",
                        help="raw: LRFeed's requests over a lean pool; lrtower: through lrtower.AsyncClient")  # fmt: skip
    parser.add_argument("--pool", type=int, default=64, help="connections per server (raw client)")
    parser.add_argument("--quick", action="store_true", help="short measurements, two sizes per search")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.seconds, args.trials = (
            min(args.warmup, 7.0),
            min(args.seconds, 6.0),
            min(args.trials, 2),
        )
    mix = Mix(
        ranks_per_job=args.ranks_per_job,
        step_time=args.step_time,
        metric_every=args.metric_every,
        metric_from=args.metric_from,
        warmup=args.warmup,
        seconds=args.seconds,
    )
    pin_self(1)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    found = []
    for kind in kinds:
        database = Database(kind, "fleet")
        try:
            for lookahead in args.lookahead:
                if args.ranks:
                    result = measure(database, mix, args.ranks, lookahead, client=args.client, pool=args.pool)
                    print(f"  {kind:<10} {show(result)}", flush=True)
                    found.append(
                        {
                            "database": kind,
                            "lookahead": lookahead,
                            "capacity_ranks": None,
                            "first_failing_ranks": None,
                            "limited_by_generator": result["generator_bound"],
                            "at_capacity": result,
                            "trials": [result],
                        }
                    )
                    continue
                start = args.start[0] if lookahead > 1 else args.start[1]
                found.append(
                    capacity(
                        database, mix, lookahead, start, args.trials, args.client, args.pool, args.retries
                    )
                )
        finally:
            database.drop()
    if args.ranks:
        for c in found:
            print(json.dumps(c["at_capacity"], indent=2, default=str))
        return
    search = {"trials": args.trials, "retries": args.retries, "start": args.start}
    result = {
        "machine": machine(),
        "mix": asdict(mix),
        "client": args.client,
        "search": search,
        "capacity": found,
    }
    write(args.out, result)


if __name__ == "__main__":
    main()
