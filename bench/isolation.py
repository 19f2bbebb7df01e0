"""Isolation: while a worst-case legal request runs, other callers must not suffer (SPEC §4.9).

For each backend (a SQLite file in a temporary directory; a fresh PostgreSQL database), one real
`lrtower serve` is set up with these runs:

- `other`: CosineAnnealingLR, steps 0..1000 served once at setup (so they are cached);
- `other2`: CosineAnnealingLR with a plateau that watches `loss`;
- `heavy`, `serve-0`..`serve-15`: 64 param groups and the costliest spec the server accepts
  (`heavy_spec`: a LambdaLR and then up to 58 MultiplicativeLRs in one chain, every lr_lambda at
  the expression limits, so every point costs about 64 x 59 expression evaluations);
- `product-0`..`product-31`: 64 groups, a ChainedScheduler of four step-dependent
  MultiplicativeLRs (`product_spec`: products over steps, each run's expressions its own).

Three probes are then sampled, each from its own client thread, one request after another every
`--interval` seconds for `--seconds` per phase:

- `healthz`: GET /healthz;
- `cached`: GET /runs/other/lr?step=N, N one of the steps served at setup;
- `write`: POST /runs/other2/metrics with a new step each time and the metric `probe`, which the
  run's plateau does not watch.

Phases, each on a fresh server process over the same database (a request the client has given
up on keeps computing in the server, so a process is never reused across phases; each process is
warmed the same way before sampling: every probed step asked once, one write):

- `idle`: no load; with `idle-again`, the baseline of every ratio;
- `curve`: GET /runs/heavy/curve over `stop - start` = 100,000 points (64 groups), a new
  window each time;
- `preview`: POST /schedules/preview of `heavy_spec` over 100,000 points with 64 groups, its
  expressions changed slightly each time (nothing a cache could answer);
- `serve`: GET /runs/serve-i/lr?start=M+1&stop=M+1+K, M the run's mark, K = 100,000, the next
  run each time (steps nobody has asked for, which raise the marks);
- `product`: a product run asked at its highest legal step, starting at 2**53 - 1, over /curve
  (the next product run each time: nothing computed yet), or over /schedules/preview (a new
  `product_spec` each time) if /curve refuses every step;
- `idle-again`: no load, last, so that the baseline brackets the run and shows how far it drifted
  (machines are shared: the 1-minute load average as each phase begins is recorded too).

Each load runs back to back in `--load-threads` threads. An answer 422 (the server bounds the
work of one request), or 413, moves the load one rung down its ladder: the points (or K) are
halved, down to 1; for `preview`, then the spec's chain is shortened; for `product`, the step goes
down 2**53 - 1, 5e15, 2e15, 1e15, ... 1000. Answers 429 and 503 (and errors) are counted, and a
request of the same rung follows 50 ms later. What was asked, what was answered, and what was
still running at the end, are recorded. Sampling starts once a load request has run for 0.2 s
or has been answered (or after 10 s, or once every rung was refused).

Reported, per backend and phase: p50, p99 and max of each probe (a probe that failed or timed
out, after 5 s, counts with the time it took), its p99 / idle p99 (idle p99: the mean of the two
idle phases' p99s), for writes the added p99 (p99 - idle p99), and a PASS or MISS against each
target (printed, not asserted): `healthz` and `cached` p99 under 50 ms, `write` added p99 at
most 100 ms, each with no failed probe.

    python bench/isolation.py [--backend sqlite|postgresql|both] [--seconds 8] [--interval 0.015]
                              [--load-threads 1] [--load curve ...] [--quick] [--out bench/results]
                              [--note "what was measured"]

`--quick` samples 2 s per phase, and writes its results under the system's temporary directory
unless `--out` is given, so the recorded figures stay. Writes isolation.json and isolation.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from engine import machine
from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
STEP_MAX = 2**53
GROUPS = 64
BASE_LRS = [0.1 * (1 + i / GROUPS) for i in range(GROUPS)]
MAX_POINTS = 100_000  # the most points the API promises per range request
CACHED_STEPS = 1001  # steps 0..1000 of `other`, served once at setup
SERVE_RUNS = 16
PRODUCT_RUNS = 32
HEAVY_LADDER = (58, 29, 14, 7, 3, 0)  # MultiplicativeLRs after the LambdaLR, costliest first
PROBE_TIMEOUT_S = 5.0
LOAD_TIMEOUT_S = 600.0
RUNNING_AFTER_S = 0.2
SETTLE_MAX_S = 10.0
TARGET_P99_MS = 50.0  # healthz and cached
TARGET_WRITE_ADDED_MS = 100.0
COSINE = {"type": "CosineAnnealingLR", "T_max": 1000}
LOADS = ("curve", "preview", "serve", "product")
REFUSED = ("413", "422")  # too much for one request: ask less
IDLE = ("idle", "idle-again")  # the baseline, and a check of its drift at the end


# -- specs at the limits -------------------------------------------------------------------------


def _balanced(terms: list[str]) -> str:
    """A sum nested as a balanced tree: many terms within the expression's depth limit (32)."""
    if len(terms) == 1:
        return terms[0]
    half = len(terms) // 2
    return f"({_balanced(terms[:half])}+{_balanced(terms[half:])})"


def varying_lambda(salt: int) -> str:
    """A step-dependent lr_lambda at the expression limits (200 nodes), near 1 at every step.

    Exact int powers are the costliest operation per node (the evaluator checks their size).
    `salt` changes the constants, so that two salts never make the same expression.
    """
    terms = [f"(epoch+{salt + i + 1})**2" for i in range(31)]
    return f"1-1e-7*(epoch%7)-1e-40*{_balanced(terms)}"


def constant_lambda(salt: int) -> str:
    """An lr_lambda of the same cost that does not read the step: a spec may hold only four
    step-dependent MultiplicativeLRs, and any number of these."""
    terms = [f"({salt + i + 1}.5+{i})**2" for i in range(32)]
    return f"1-1e-40*{_balanced(terms)}"


def heavy_spec(multipliers: int, salt: int = 0) -> dict[str, Any]:
    """A LambdaLR, then `multipliers` MultiplicativeLRs (at most 58: a spec holds at most 64
    schedules), in one ChainedScheduler of chains of at most 15 children.

    At every step the chain evaluates the LambdaLR, then each later child's factor, for every
    group: with 64 groups and 58 multipliers that is 64 x 59 expressions of 200 nodes a point.
    """
    children = [
        {
            "type": "MultiplicativeLR",
            "lr_lambda": (varying_lambda if k < 4 else constant_lambda)(salt + 100 * (k + 1)),
        }
        for k in range(multipliers)
    ]
    chunks = [
        {"type": "ChainedScheduler", "schedulers": children[i : i + 15]} for i in range(0, multipliers, 15)
    ]
    return {
        "type": "ChainedScheduler",
        "schedulers": [{"type": "LambdaLR", "lr_lambda": varying_lambda(salt)}, *chunks],
    }


def product_spec(salt: int) -> dict[str, Any]:
    """Four step-dependent MultiplicativeLRs (the most a spec may hold), each a sum of 12 `min`s:
    about the costliest products the engine accepts (MAX_SPEC_COST). LR(s) is a product over steps
    1..s of each expression, computed once per compiled run, up to the server's bound."""

    def factor(k: int) -> str:
        terms = " + ".join(f"min(epoch, {salt * 100 + k * 13 + j + 1})" for j in range(12))
        return f"1 - 1e-12 * ({terms})"

    return {
        "type": "ChainedScheduler",
        "schedulers": [{"type": "MultiplicativeLR", "lr_lambda": factor(k)} for k in range(4)],
    }


def halvings(start: int) -> list[int]:
    """start, start // 2, ... 1."""
    sizes = [start]
    while sizes[-1] > 1:
        sizes.append(sizes[-1] // 2)
    return sizes


FAR_STEPS = [STEP_MAX - 1, *(m * 10**k for k in range(15, 2, -1) for m in (5, 2, 1))]


# -- loads -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: dict[str, Any] | None
    shape: str
    """What the request asks, for the record."""
    on_success: Callable[[], None] | None = None


class Load:
    """One kind of worst-case legal request, with its ladder of rungs, costliest first."""

    title = ""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent = 0

    def rungs(self) -> int:
        raise NotImplementedError

    def shape(self, rung: int) -> str:
        """What a request of this rung asks, for the record."""
        raise NotImplementedError

    def request(self, rung: int) -> Request:
        raise NotImplementedError

    def _next(self) -> int:
        with self._lock:
            self._sent += 1
            return self._sent


class CurveLoad(Load):
    title = "GET /runs/heavy/curve, a new window each time"
    sizes = tuple(halvings(MAX_POINTS))

    def rungs(self) -> int:
        return len(self.sizes)

    def shape(self, rung: int) -> str:
        return f"{self.sizes[rung]} points x {GROUPS} groups"

    def request(self, rung: int) -> Request:
        points = self.sizes[rung]
        start = self._next() * points
        return Request(
            "GET", f"/runs/heavy/curve?start={start}&stop={start + points}", None, self.shape(rung)
        )


class PreviewLoad(Load):
    title = "POST /schedules/preview of heavy_spec, a new spec and window each time"
    ladder = tuple((m, p) for m in HEAVY_LADDER for p in halvings(MAX_POINTS))

    def rungs(self) -> int:
        return len(self.ladder)

    def shape(self, rung: int) -> str:
        multipliers, points = self.ladder[rung]
        return f"{points} points x {GROUPS} groups, LambdaLR + {multipliers} MultiplicativeLR"

    def request(self, rung: int) -> Request:
        multipliers, points = self.ladder[rung]
        n = self._next()
        start = n * points
        body = {
            "lrs": BASE_LRS,
            "schedule": heavy_spec(multipliers, salt=10_000 * n),
            "start": start,
            "stop": start + points,
        }
        return Request("POST", "/schedules/preview", body, self.shape(rung))


class ServeLoad(Load):
    title = "GET /runs/serve-i/lr?start=M+1&stop=M+1+K on the next run each time (new steps)"
    sizes = tuple(halvings(MAX_POINTS))

    def __init__(self, runs: list[str]) -> None:
        super().__init__()
        self.runs = runs
        self.marks = dict.fromkeys(runs, -1)

    def rungs(self) -> int:
        return len(self.sizes)

    def shape(self, rung: int) -> str:
        return f"K = {self.sizes[rung]} x {GROUPS} groups"

    def request(self, rung: int) -> Request:
        k = self.sizes[rung]
        run = self.runs[self._next() % len(self.runs)]
        with self._lock:
            start = self.marks[run] + 1

        def served() -> None:
            with self._lock:
                self.marks[run] = max(self.marks[run], start + k - 1)

        return Request(
            "GET", f"/runs/{run}/lr?start={start}&stop={start + k}", None, self.shape(rung), served
        )


class ProductLoad(Load):
    title = "step-dependent MultiplicativeLR at its highest legal step, nothing computed before"
    ladder = tuple((via, s) for via in ("curve", "preview") for s in FAR_STEPS)

    def __init__(self, runs: list[str]) -> None:
        super().__init__()
        self.runs = runs

    def rungs(self) -> int:
        return len(self.ladder)

    def shape(self, rung: int) -> str:
        via, step = self.ladder[rung]
        return f"{via} at step {step}"

    def request(self, rung: int) -> Request:
        via, step = self.ladder[rung]
        n = self._next()
        if via == "curve":
            run = self.runs[n % len(self.runs)]
            return Request("GET", f"/runs/{run}/curve?start={step}&stop={step + 1}", None, self.shape(rung))
        body = {"lrs": BASE_LRS, "schedule": product_spec(1000 + n), "start": step, "stop": step + 1}
        return Request("POST", "/schedules/preview", body, self.shape(rung))


@dataclass
class LoadRecord:
    """What one load did during a phase, shared by its threads."""

    load: Load
    lock: threading.Lock = field(default_factory=threading.Lock)
    rung: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    answer_s: list[float] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    in_flight: dict[int, tuple[float, str]] = field(default_factory=dict)

    def running(self) -> bool:
        now = time.perf_counter()
        with self.lock:
            return bool(self.answered) or any(now - t >= RUNNING_AFTER_S for t, _ in self.in_flight.values())

    def exhausted(self) -> bool:
        with self.lock:
            return self.rung >= self.load.rungs()

    def summary(self) -> dict[str, Any]:
        now = time.perf_counter()
        with self.lock:
            exhausted = self.rung >= self.load.rungs()
            return {
                "request": self.load.title,
                "asked": None if exhausted else self.load.shape(self.rung),
                "every_rung_refused": exhausted,
                "statuses": dict(self.statuses),
                "answered": dict(self.answered),
                "answer_s": _spread(self.answer_s),
                "in_flight_at_end": [
                    {"shape": shape, "running_s": round(now - t, 2)} for t, shape in self.in_flight.values()
                ],
                "refused": self.refused,
            }


def load_thread(url: str, record: LoadRecord, stop: threading.Event) -> None:
    """Send the load's requests back to back until `stop`; 413 or 422 moves one rung down."""
    ident = threading.get_ident()
    load = record.load
    with httpx.Client(base_url=url, timeout=LOAD_TIMEOUT_S) as client:
        while not stop.is_set():
            with record.lock:
                rung = record.rung
            if rung >= load.rungs():
                return
            request = load.request(rung)
            started = time.perf_counter()
            with record.lock:
                record.in_flight[ident] = (started, request.shape)
            detail = ""
            try:
                with client.stream(request.method, request.path, json=request.body) as response:
                    if response.status_code >= 400:
                        detail = _detail(response.read())
                    else:
                        for _ in response.iter_raw():  # read, never parse: it may be huge
                            pass
                status = str(response.status_code)
            except httpx.TimeoutException:
                status = "timeout"
            except httpx.TransportError as exc:
                status = f"error: {type(exc).__name__}"
            elapsed = time.perf_counter() - started
            if stop.is_set():  # the phase is over, and its server gone: not the server's answer
                return
            with record.lock:
                del record.in_flight[ident]
                record.statuses[status] += 1
                if status.startswith("2"):
                    record.answered[request.shape] += 1
                    record.answer_s.append(elapsed)
                elif status in REFUSED:
                    record.refused.setdefault(request.shape, f"{status}: {detail}")
                    record.rung = max(record.rung, rung + 1)
            if status.startswith("2") and request.on_success is not None:
                request.on_success()
            elif status not in REFUSED and not status.startswith("2"):
                time.sleep(0.05)  # 429, 503, errors: the same rung again, shortly


def _detail(body: bytes) -> str:
    try:
        problem = json.loads(body)
        return str(problem.get("detail", problem))[:300]
    except (ValueError, AttributeError):
        return body[:300].decode(errors="replace")


# -- probes --------------------------------------------------------------------------------------


@dataclass
class Probe:
    name: str
    make: Callable[[int], tuple[str, str, dict[str, Any] | None]]
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)


def probes(write_steps: Iterator[int]) -> list[Probe]:
    return [
        Probe("healthz", lambda n: ("GET", "/healthz", None)),
        Probe("cached", lambda n: ("GET", f"/runs/other/lr?step={n * 37 % CACHED_STEPS}", None)),
        Probe(
            "write",
            lambda n: (
                "POST",
                "/runs/other2/metrics",
                {"step": next(write_steps), "value": 0.5, "name": "probe"},
            ),
        ),
    ]


def sample(url: str, probe: Probe, seconds: float, interval: float) -> None:
    """One request after another, `interval` apart, for `seconds`."""
    with httpx.Client(base_url=url, timeout=PROBE_TIMEOUT_S) as client:
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            method, path, body = probe.make(n)
            started = time.perf_counter()
            try:
                status = str(client.request(method, path, json=body).status_code)
            except httpx.TimeoutException:
                status = "timeout"
            except httpx.TransportError as exc:
                status = f"error: {type(exc).__name__}"
            elapsed = time.perf_counter() - started
            probe.latencies_ms.append(elapsed * 1000)
            probe.statuses[status] += 1
            n += 1
            time.sleep(max(0.0, interval - elapsed))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _spread(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
    }


# -- servers and databases -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def lrtower() -> str:
    return str(Path(sys.executable).parent / "lrtower")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Ends the process even while it computes: SIGTERM, then SIGKILL after 3 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def launch(home: Path, database_url: str, log_name: str) -> Server:
    """A real `lrtower serve` on `database_url` (loopback: no auth), ready to answer."""
    port = free_port()
    env = {**os.environ, "LRTOWER_DATABASE_URL": database_url}
    with (home / log_name).open("wb") as log:
        process = subprocess.Popen(
            [lrtower(), "serve", "--port", str(port)], env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT
        )
    server = Server(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise SystemExit(f"lrtower serve did not become ready; see {home / log_name}")
        time.sleep(0.05)


@contextmanager
def database(backend: str, home: Path, admin_url: str) -> Iterator[str]:
    """A fresh database for the backend, migrated; a PostgreSQL one is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{home / 'isolation.db'}"  # `serve` migrates SQLite itself
        return
    name = f"lrtower_bench_isolation_{os.getpid()}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        env = {**os.environ, "LRTOWER_DATABASE_URL": url}
        done = subprocess.run([lrtower(), "db", "upgrade"], env=env, cwd=home, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"lrtower db upgrade failed: {done.stderr[-2000:]}")
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def _must(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code >= 300:
        raise SystemExit(f"setup: {what} answered {response.status_code}: {response.text[:500]}")
    return response


def set_up(url: str) -> dict[str, Any]:
    """The runs of every phase; steps 0..1000 of `other` served once."""
    with httpx.Client(base_url=url, timeout=120) as client:
        _must(client.post("/runs", json={"name": "other", "lr": 0.1, "schedule": COSINE}), "creating other")
        _must(client.get("/runs/other/lr", params={"start": 0, "stop": CACHED_STEPS}), "serving other")
        other2 = {"name": "other2", "lr": 0.1, "schedule": COSINE, "plateau": {"metric": "loss"}}
        _must(client.post("/runs", json=other2), "creating other2")
        refused = {}
        for multipliers in HEAVY_LADDER:
            spec = heavy_spec(multipliers)
            response = client.post("/runs", json={"name": "heavy", "lrs": BASE_LRS, "schedule": spec})
            if response.status_code < 300:
                break
            refused[multipliers] = f"{response.status_code}: {_detail(response.content)}"
        else:
            raise SystemExit(f"setup: no heavy spec was accepted: {refused}")
        for i in range(SERVE_RUNS):
            body = {"name": f"serve-{i}", "lrs": BASE_LRS, "schedule": spec}
            _must(client.post("/runs", json=body), f"creating serve-{i}")
        for i in range(PRODUCT_RUNS):
            body = {"name": f"product-{i}", "lrs": BASE_LRS, "schedule": product_spec(i)}
            _must(client.post("/runs", json=body), f"creating product-{i}")
    return {
        "heavy_spec": f"LambdaLR + {multipliers} MultiplicativeLR in one chain, {GROUPS} groups",
        "heavy_spec_refused": refused,
        "spec_bytes": len(json.dumps(spec)),
    }


def warm(url: str, write_steps: Iterator[int]) -> None:
    """What every phase's process has seen before sampling: each probed step once, and a write."""
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/healthz")
        for step in range(CACHED_STEPS):
            client.get("/runs/other/lr", params={"step": step})
        client.post("/runs/other2/metrics", json={"step": next(write_steps), "value": 0.5, "name": "probe"})


# -- phases --------------------------------------------------------------------------------------


def make_load(name: str) -> Load:
    if name == "curve":
        return CurveLoad()
    if name == "preview":
        return PreviewLoad()
    if name == "serve":
        return ServeLoad([f"serve-{i}" for i in range(SERVE_RUNS)])
    return ProductLoad([f"product-{i}" for i in range(PRODUCT_RUNS)])


def phase(
    home: Path, db_url: str, name: str, args: argparse.Namespace, write_steps: Iterator[int]
) -> dict[str, Any]:
    server = launch(home, db_url, f"server-{name}.log")
    stop = threading.Event()
    record = None if name in IDLE else LoadRecord(make_load(name))
    loadavg = os.getloadavg()[0]
    workers: list[threading.Thread] = []
    try:
        warm(server.url, write_steps)
        settle_s = 0.0
        if record is not None:
            workers = [
                threading.Thread(target=load_thread, args=(server.url, record, stop), daemon=True)
                for _ in range(args.load_threads)
            ]
            for worker in workers:
                worker.start()
            started = time.monotonic()
            while not (record.running() or record.exhausted()) and time.monotonic() - started < SETTLE_MAX_S:
                time.sleep(0.02)
            settle_s = time.monotonic() - started
        sampled = probes(write_steps)
        threads = [
            threading.Thread(target=sample, args=(server.url, p, args.seconds, args.interval))
            for p in sampled
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        load = None if record is None else {**record.summary(), "settle_s": round(settle_s, 2)}
    finally:
        stop.set()
        server.stop()
        for worker in workers:
            worker.join(timeout=10)
    return {
        "phase": name,
        "loadavg_1m": round(loadavg, 2),
        "load": load,
        "probes": {
            p.name: {
                **_spread(p.latencies_ms),
                "failed": sum(c for s, c in p.statuses.items() if not s.startswith("2")),
                "statuses": dict(p.statuses),
            }
            for p in sampled
        },
    }


def judge(phases: list[dict[str, Any]]) -> dict[str, float]:
    """Adds each probe's ratio to idle, added p99, target and verdict; returns the idle p99s.

    The idle p99 of a probe is the mean of its p99 in the two idle phases, which bracket the run.
    """
    idle = [entry["probes"] for entry in phases if entry["phase"] in IDLE]
    baseline = {name: sum(probes[name]["p99"] for probes in idle) / len(idle) for name in idle[0]}
    for entry in phases:
        for name, probe in entry["probes"].items():
            base = baseline[name]
            probe["p99_ratio"] = round(probe["p99"] / base, 2) if base > 0 else None
            probe["added_p99_ms"] = round(probe["p99"] - base, 3)
            if name == "write":
                probe["target"] = f"added p99 <= {TARGET_WRITE_ADDED_MS:.0f} ms"
                met = probe["added_p99_ms"] <= TARGET_WRITE_ADDED_MS
            else:
                probe["target"] = f"p99 < {TARGET_P99_MS:.0f} ms"
                met = probe["p99"] < TARGET_P99_MS
            probe["verdict"] = "PASS" if met and probe["failed"] == 0 else "MISS"
    return {name: round(p99, 3) for name, p99 in baseline.items()}


def server_code() -> dict[str, str | None]:
    """Where the server that `lrtower serve` runs is imported from, and its commit if in git."""
    found = subprocess.run(
        [sys.executable, "-c", "import lrtower_server; print(lrtower_server.__file__)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not found:
        return {"path": None, "commit": None}
    where = Path(found).resolve().parent

    def git(*args: str) -> str | None:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if commit is not None and git("status", "--porcelain", "--", "."):
        commit += " with uncommitted changes"
    return {"path": str(where), "commit": commit}


# -- report --------------------------------------------------------------------------------------

COLUMNS = ("phase", "probe", "n", "failed", "p50 ms", "p99 ms", "max ms", "p99/idle", "+p99 ms", "verdict")


def rows(phases: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for entry in phases:
        for name, p in entry["probes"].items():
            ratio = "-" if p["p99_ratio"] is None else f"{p['p99_ratio']:.2f}"
            out.append(
                [
                    entry["phase"],
                    name,
                    str(p["n"]),
                    str(p["failed"]),
                    f"{p['p50']:.2f}",
                    f"{p['p99']:.2f}",
                    f"{p['max']:.2f}",
                    ratio,
                    f"{p['added_p99_ms']:.2f}",
                    p["verdict"],
                ]
            )
    return out


def load_line(entry: dict[str, Any]) -> str:
    load = entry["load"]
    if load is None:
        return f"{entry['phase']}: no load"
    asked = "every rung refused" if load["every_rung_refused"] else load["asked"]
    answered = ", ".join(f"{n} x {shape}" for shape, n in load["answered"].items()) or "none"
    running = "; ".join(f"{r['shape']} for {r['running_s']} s" for r in load["in_flight_at_end"]) or "none"
    timing = load["answer_s"]
    took = f" (p50 {timing['p50']} s, max {timing['max']} s)" if timing["n"] else ""
    refused = load["refused"]
    first = (
        f" (422 on {len(refused)} larger shape(s), first: {next(iter(refused.values()))!r})"
        if refused
        else ""
    )
    return (
        f"{entry['phase']}: {load['request']}. Asked: {asked}{first}. Answered: {answered}{took}. "
        f"Running at the end: {running}. Statuses: {load['statuses'] or {}}."
    )


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    s = result["settings"]
    code = result["server_code"]
    md = [
        "# Isolation: other callers while a worst-case legal request runs",
        "",
        f"{result['time']}; {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}; "
        f"server code: {code['commit'] or code['path']}.",
        *([f"Note: {result['note']}"] if result["note"] else []),
        f"Every probe sampled for {s['seconds']} s per phase, one request every "
        f"{s['interval'] * 1000:.0f} ms from its own thread; {s['load_threads']} load thread(s); "
        "a fresh server process per phase.",
        f"Targets: `healthz` and `cached` p99 < {TARGET_P99_MS:.0f} ms; `write` p99 at most "
        f"{TARGET_WRITE_ADDED_MS:.0f} ms above idle; no failed probe.",
    ]
    for backend, data in result["backends"].items():
        setup = data["setup"]
        refused = f" (refused: {setup['heavy_spec_refused']})" if setup["heavy_spec_refused"] else ""
        md += [
            "",
            f"## {backend}",
            "",
            f"Heavy spec accepted at creation: {setup['heavy_spec']}{refused}.",
            "",
        ]
        averages = ", ".join(f"{e['phase']} {e['loadavg_1m']}" for e in data["phases"])
        idle = ", ".join(f"{name} {p99:.2f} ms" for name, p99 in data["idle_p99_ms"].items())
        md += [f"The machine's 1-minute load average as each phase began: {averages}.", ""]
        md += [f"Idle p99 (the mean of `idle` and `idle-again`): {idle}.", ""]
        md += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        md += ["| " + " | ".join(row) + " |" for row in rows(data["phases"])]
        md += [""] + [f"- {load_line(entry)}" for entry in data["phases"] if entry["load"] is not None]
    return "\n".join(md) + "\n"


def print_table(backend: str, data: dict[str, Any]) -> None:
    table = [list(COLUMNS), *rows(data["phases"])]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    print(f"\n{backend}: heavy spec {data['setup']['heavy_spec']}")
    for row in table:
        print(
            "  ".join(
                cell.rjust(w) if i >= 2 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for entry in data["phases"]:
        if entry["load"] is not None:
            print(f"  {load_line(entry)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--seconds", type=float, default=None, help="sampling per phase (default 8; 2 with --quick)"
    )
    parser.add_argument("--interval", type=float, default=0.015, help="seconds between one probe's requests")
    parser.add_argument("--load-threads", type=int, default=1)
    parser.add_argument("--load", action="append", choices=LOADS, help="only these loads (repeatable)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--postgres-admin-url", default=ADMIN_URL)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--note", default=None, help="recorded with the results, e.g. which code was measured"
    )
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 8.0
    out: Path = args.out or (
        Path(tempfile.gettempdir()) / "lrtower-isolation" if args.quick else HERE / "results"
    )
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    loads = [name for name in LOADS if not args.load or name in args.load]

    result: dict[str, Any] = {
        "machine": machine(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "server_code": server_code(),
        "note": args.note,
        "settings": {
            "seconds": args.seconds,
            "interval": args.interval,
            "load_threads": args.load_threads,
            "groups": GROUPS,
            "probe_timeout_s": PROBE_TIMEOUT_S,
        },
        "targets": {
            "healthz_p99_ms": TARGET_P99_MS,
            "cached_p99_ms": TARGET_P99_MS,
            "write_added_p99_ms": TARGET_WRITE_ADDED_MS,
        },
        "backends": {},
    }
    started = time.monotonic()
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="lrtower-isolation-") as tmp:
            home = Path(tmp)
            with database(backend, home, args.postgres_admin_url) as db_url:
                write_steps = iter(range(1, STEP_MAX))
                server = launch(home, db_url, "server-setup.log")
                try:
                    setup = set_up(server.url)
                finally:
                    server.stop()
                phases = []
                for name in [IDLE[0], *loads, IDLE[1]]:
                    print(f"{backend}: {name} ...", flush=True)
                    phases.append(phase(home, db_url, name, args, write_steps))
                idle_p99 = judge(phases)
                result["backends"][backend] = {"setup": setup, "idle_p99_ms": idle_p99, "phases": phases}
                print_table(backend, result["backends"][backend])
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    print(f"\n{result['elapsed_s']} s in all")

    out.mkdir(parents=True, exist_ok=True)
    (out / "isolation.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "isolation.md").write_text(report(result))
    print(f"wrote {out / 'isolation.json'} and {out / 'isolation.md'}")


if __name__ == "__main__":
    main()
