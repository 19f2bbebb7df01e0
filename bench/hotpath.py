"""The hot path, `GET /runs/{run}/lr`, against a bare ASGI app on the same server, and its neighbours.

Both apps run under the same uvicorn settings (one worker, pinned to CPU 0; wrk on CPU 1, 64
connections), and are measured alternately in every round; the figures are medians over rounds.

- **hot path**: requests per second and p99 of the lr endpoint (JSON; text/plain; with a bearer
  token, and with one limited to runs by name patterns; a range of 1,000 points; a run whose
  answers carry the lrtower-divergence header), as ratios to the bare app;
- **in-process**: the same two apps called directly (no network), in µs per request;
- **O(1)**: step 10 against step 10^12, and a run with 100,000 audit events and metrics against
  a fresh one (each ratio should be about 1.0);
- **many runs**: 100,000 runs in the database, random runs and steps, and the server's resident
  memory, with its run cache bounded (LRTOWER_CACHE_RUNS);
- **writes**: metric posts per second with durable commits (SQLite, synchronous=FULL).
- **new steps**: steps no one asked before (each raises its run's mark durably) against the same
  steps once served, on SQLite and PostgreSQL, with the shipped settings and with variants of the
  group commit (a batching window, a reserve): hotpath_new_steps.json and .md.

    python bench/hotpath.py [--rounds 3] [--seconds 5] [--out bench/results]

Installs wrk from Debian's packages if it is missing. Writes hotpath.json and hotpath.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from engine import machine
from sqlalchemy import insert

from lrtower_server.api.app import create_app
from lrtower_server.core.auth import Tokens
from lrtower_server.core.config import Settings
from lrtower_server.db import migrate
from lrtower_server.db.engine import make_engine
from lrtower_server.db.models import Event, Metric, Run

HERE = Path(__file__).resolve().parent
SPEC = {"type": "CosineAnnealingLR", "T_max": 100_000, "eta_min": 1e-5}
RANDOM_RUNS = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/runs/r" .. math.random(0, {n} - 1) .. "/lr?step=" .. math.random(0, 1000))
end
"""
# Every request a step (or window) not asked before: no answer is sent twice, so none is cached.
DISTINCT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/runs/bench/lr?{query}")
end
"""
# New steps, as jobs ask them: round robin over the runs, each run's next step each time. With
# `marks` set, every run's steps wrap at its mark: the same steps, once served.
NEW_STEPS = """
runs = {n}
marks = {marks}
counters = {{}}
for r = 0, runs - 1 do counters[r] = 0 end
turn = -1
request = function()
  turn = (turn + 1) % runs
  local step = counters[turn]
  counters[turn] = step + 1
  if marks[turn] then step = step % (marks[turn] + 1) end
  return wrk.format("GET", "/runs/n" .. turn .. "/lr?step=" .. step)
end
"""
NEW_STEP_RUNS = 50
METRIC_POSTS = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/runs/writes/metrics", {{["content-type"] = "application/json"}},
                    '{{"step": ' .. counter .. ', "value": 0.5, "name": "bench"}}')
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    return found


def pinned(cpu: int, command: list[str]) -> list[str]:
    return (
        ["taskset", "-c", str(cpu), *command] if shutil.which("taskset") and os.cpu_count() != 1 else command
    )


def start(command: list[str], env: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            httpx.get(url, timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{command} did not start")


def wrk(
    binary: str,
    url: str,
    seconds: float,
    headers: dict[str, str] | None = None,
    script: str | None = None,
    connections: int = 64,
) -> dict[str, float]:
    args = [binary, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for key, value in (headers or {}).items():
        args += ["-H", f"{key}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        if script:
            lua.write(script)
    if script:
        args += ["-s", lua.name]
    out = subprocess.run(pinned(1, [*args, url]), capture_output=True, text=True, check=True).stdout
    os.unlink(lua.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return {
        "rps": rps,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def rss_mib(pid: int) -> float:
    total = 0
    for child in [
        pid,
        *map(int, subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()),
    ]:
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def seed(url: str, n_runs: int) -> None:
    """The database: runs for the hot path, a busy run (100,000 events and metrics), many runs."""
    engine = make_engine(Settings(database_url=url))
    migrate.upgrade(engine)
    now = datetime.now(UTC)
    digest = hashlib.sha256(b"bench").hexdigest()

    def run(name: str, high_water: int = -1, divergence: int | None = None) -> dict[str, Any]:
        return {"name": name, "lrs": [0.1], "spec": SPEC, "plateau": None, "labels": {}, "definition_hash": digest,
                "state": "live", "version": 0, "high_water": high_water, "created_at": now, "updated_at": now,
                "divergence": divergence}  # fmt: skip

    with engine.begin() as db:
        db.execute(insert(Run), [run(name) for name in ("bench", "busy", "writes")])
        # A run where a rank ran other LRs than the tower served: every answer names the event.
        db.execute(insert(Run), [run("diverged", divergence=7)])
        # Runs that jobs have served up to step 1000: reading them needs no write.
        db.execute(insert(Run), [run(f"r{i}", 1000) for i in range(n_runs)])
        busy = db.execute(Run.__table__.select().where(Run.name == "busy")).one().id
        db.execute(insert(Metric), [{"run_id": busy, "name": "loss", "step": s, "value": 1.0, "answer": {},
                                     "created_at": now} for s in range(100_000)])  # fmt: skip
        db.execute(insert(Event), [{"run_id": busy, "seq": s, "at": now, "actor": "bench", "kind": "scaled",
                                    "effective_step": s, "lr_before": [0.1], "lr_after": [0.1], "reason": None,
                                    "details": {}, "prev_hash": "0" * 64, "hash": "0" * 64}
                                   for s in range(1, 100_001)])  # fmt: skip
    engine.dispose()


def in_process(app: Any, path: bytes, query: bytes, repeat: int = 20_000) -> float:
    """µs per request, calling the ASGI app directly. The answer must be a 200 (a host name the
    server refuses would time its 400 instead)."""
    scope = {"type": "http", "method": "GET", "path": path.decode(), "raw_path": path, "query_string": query,
             "headers": [(b"host", b"127.0.0.1")], "http_version": "1.1", "scheme": "http", "root_path": "",
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}  # fmt: skip
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def first(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async def send(message: dict[str, Any]) -> None:
        pass

    async def loop() -> float:
        await app(scope, receive, first)
        if statuses != {200}:
            raise SystemExit(f"{path.decode()}?{query.decode()} answered {statuses}, not 200")
        for _ in range(200):
            await app(scope, receive, send)
        started = time.perf_counter()
        for _ in range(repeat):
            await app(scope, receive, send)
        return (time.perf_counter() - started) / repeat * 1e6

    return asyncio.run(loop())


NEW_STEP_VARIANTS: dict[str, dict[str, str]] = {
    "shipped": {},
    "no window": {"LRTOWER_MARK_WINDOW_MS": "0"},
    "window 1 ms": {"LRTOWER_MARK_WINDOW_MS": "1"},
    "window 4 ms": {"LRTOWER_MARK_WINDOW_MS": "4"},
    "reserve 16": {"LRTOWER_MARK_RESERVE": "16"},
    "reserve 64": {"LRTOWER_MARK_RESERVE": "64"},
}
"""The group commit's settings measured: the shipped ones, a batching window, a reserve."""


def new_steps(binary: str, seconds: float, rounds: int) -> dict[str, Any]:
    """Steps asked for the first time (above the mark: each raises it durably), round robin over
    50 runs with 32 connections, against the same steps once served, on one server of each
    backend with the shipped settings (SQLite: synchronous=FULL), then with each variant of the
    group commit's settings."""
    results: dict[str, Any] = {}
    backends = {"sqlite": f"sqlite:///{Path(tempfile.mkdtemp()) / 'new.db'}"}
    admin_url = os.environ.get(
        "LRTOWER_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    database = f"lrtower_bench_new_{os.getpid()}"
    admin = None
    try:
        from sqlalchemy import create_engine, text

        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {database}"))
        backends["postgresql"] = admin_url.rsplit("/", 1)[0] + f"/{database}"
    except Exception as exc:  # no PostgreSQL here: SQLite alone
        print(f"new steps: PostgreSQL skipped ({type(exc).__name__})")
    try:
        for backend, url in backends.items():
            engine = make_engine(Settings(database_url=url))
            migrate.upgrade(engine)
            engine.dispose()
            results[backend] = {
                variant: _new_steps_case(binary, url, extra, seconds, rounds, f"{tag}-")
                for tag, (variant, extra) in enumerate(NEW_STEP_VARIANTS.items())
            }
            print(f"new steps, {backend}: {json.dumps(results[backend])}")
    finally:
        if admin is not None and "postgresql" in backends:
            with admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            admin.dispose()
    return results


def _new_steps_case(
    binary: str, url: str, extra: dict[str, str], seconds: float, rounds: int, tag: str
) -> dict[str, Any]:
    env = {**os.environ, "LRTOWER_DATABASE_URL": url, **extra}
    base = "http://127.0.0.1:8964"
    server = start(
        pinned(0, [str(Path(sys.executable).parent / "lrtower"), "serve", "--port", "8964"]),
        env,
        f"{base}/healthz",
    )
    try:
        rows: dict[str, list[dict[str, float]]] = {"new": [], "served": []}
        for round_ in range(rounds):
            prefix = f"n{tag}{round_}-"
            for i in range(NEW_STEP_RUNS):
                httpx.post(
                    f"{base}/runs", json={"name": f"{prefix}{i}", "lr": 0.1, "schedule": SPEC}
                ).raise_for_status()
            script = NEW_STEPS.replace("/runs/n", f"/runs/{prefix}")
            rows["new"].append(
                wrk(binary, base, seconds, script=script.format(n=NEW_STEP_RUNS, marks="{}"), connections=32)
            )
            marks = {
                i: httpx.get(f"{base}/runs/{prefix}{i}").json()["high_water"] for i in range(NEW_STEP_RUNS)
            }
            table = "{" + ", ".join(f"[{i}] = {m}" for i, m in marks.items() if m >= 0) + "}"
            rows["served"].append(
                wrk(binary, base, seconds, script=script.format(n=NEW_STEP_RUNS, marks=table), connections=32)
            )
        metrics = httpx.get(f"{base}/metrics").text
    finally:
        server.terminate()
        server.wait()
    median = {name: {k: statistics.median(r[k] for r in got) for k in got[0]} for name, got in rows.items()}
    return {
        **median,
        "new_over_served": median["new"]["rps"] / median["served"]["rps"],
        "group_commit": _group_commit_figures(metrics),
    }


def _group_commit_figures(metrics: str) -> dict[str, float]:
    found = {
        name: float(value)
        for name, value in re.findall(r"^(lrtower_mark_(?:groups|raises)_total) ([\d.e+]+)$", metrics, re.M)
    }
    groups, raises = found.get("lrtower_mark_groups_total", 0.0), found.get("lrtower_mark_raises_total", 0.0)
    return {"commits": groups, "raises": raises, "raises_per_commit": raises / groups if groups else 0.0}


def write_new_steps(results: dict[str, Any], out: Path, seconds: float, rounds: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "hotpath_new_steps.json").write_text(
        json.dumps({"machine": machine(), "seconds": seconds, "rounds": rounds, "results": results}, indent=2)
        + "\n"
    )
    md = [
        "| backend | settings | new: req/s | new: p99 ms | served: req/s | served: p99 ms | new / served "
        "| raises per commit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backend, variants in results.items():
        for variant, r in variants.items():
            md.append(
                f"| {backend} | {variant} | {r['new']['rps']:.0f} | {r['new']['p99_ms']:.1f} | "
                f"{r['served']['rps']:.0f} | {r['served']['p99_ms']:.1f} | {r['new_over_served']:.2f} | "
                f"{r['group_commit']['raises_per_commit']:.1f} |"
            )
    md += [
        "",
        f"Steps asked for the first time, round robin over {NEW_STEP_RUNS} runs, 32 connections, {seconds:.0f} s "
        f"per case, median of {rounds} rounds; 'served' asks the same steps again, on the same server. Goal: "
        "new >= 0.50 x served, p99 < 50 ms. Settings: 'shipped' is the default (no window on SQLite, 1 ms on "
        "PostgreSQL); a window makes each group commit wait that long for more raises (LRTOWER_MARK_WINDOW_MS); a reserve raises each mark that many "
        "steps past the step asked (LRTOWER_MARK_RESERVE), so a change lands up to that many steps later.",
    ]
    (out / "hotpath_new_steps.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--new-steps-only", action="store_true", help="only the new-steps case")
    args = parser.parse_args()
    binary = ensure_wrk()
    write_new_steps(new_steps(binary, args.seconds, args.rounds), args.out, args.seconds, args.rounds)
    if args.new_steps_only:
        return
    bin_dir = Path(sys.executable).parent
    home = Path(tempfile.mkdtemp())
    db_url = f"sqlite:///{home / 'bench.db'}"
    seed(db_url, args.runs)
    engine = make_engine(Settings(database_url=db_url))
    tokens = Tokens(engine)
    _, token = tokens.create("bench", "read", actor="bench")
    # A team's token, limited to runs by name: 4 patterns, the run matching the last.
    _, scoped = tokens.create(
        "bench-team", "read", actor="bench", runs=["vision-*", "nlp-*", "eval-?", "ben*"]
    )
    engine.dispose()

    # The setup below serves step 10^12 in one request, far past the reach a server allows by default.
    env = {**os.environ, "LRTOWER_DATABASE_URL": db_url, "LRTOWER_MAX_AHEAD": str(2**53)}
    bare = start(pinned(0, [str(bin_dir / "uvicorn"), "bare_app:app", "--port", "8961", "--no-access-log",
                            "--app-dir", str(HERE)]), env, "http://127.0.0.1:8961/")  # fmt: skip
    tower = start(
        pinned(0, [str(bin_dir / "lrtower"), "serve", "--port", "8962"]), env, "http://127.0.0.1:8962/healthz"
    )
    secured = start(pinned(0, [str(bin_dir / "lrtower"), "serve", "--port", "8963", "--auth"]), env,
                    "http://127.0.0.1:8963/healthz")  # fmt: skip
    lr = "http://127.0.0.1:8962/runs/{run}/lr?{query}"
    try:
        # Serve far ahead once: the reads below are at or below the mark, as for ranks in step.
        for run in ("bench", "busy", "diverged"):
            httpx.get(lr.format(run=run, query=f"step={10**12}"))
        for secret in (token, scoped):
            httpx.get(
                "http://127.0.0.1:8963/runs/bench/lr?step=10", headers={"authorization": f"Bearer {secret}"}
            )
        cases = {
            "bare ASGI app": ("http://127.0.0.1:8961/", None),
            "lr, JSON": (lr.format(run="bench", query="step=10"), None),
            "lr, text/plain": (lr.format(run="bench", query="step=10"), {"accept": "text/plain"}),
            "lr, with a token": (
                "http://127.0.0.1:8963/runs/bench/lr?step=10",
                {"authorization": f"Bearer {token}"},
            ),
            "lr, with a token limited to runs": (
                "http://127.0.0.1:8963/runs/bench/lr?step=10",
                {"authorization": f"Bearer {scoped}"},
            ),
            "lr, step 10^12": (lr.format(run="bench", query=f"step={10**12}"), None),
            "lr, busy run": (lr.format(run="busy", query="step=10"), None),
            "lr, diverged run": (lr.format(run="diverged", query="step=10"), None),
            "lr, range of 1,000": (lr.format(run="bench", query="start=0&stop=1000"), None),
        }
        distinct = {
            "lr, every step new": DISTINCT.format(query='step=" .. counter .. "'),
            "lr, every range of 1,000 new": DISTINCT.format(
                query='start=" .. counter .. "&stop=" .. counter + 1000 .. "'
            ),
        }
        measured: dict[str, list[dict[str, float]]] = {name: [] for name in [*cases, *distinct]}
        for _ in range(args.rounds):
            for name, (url, headers) in cases.items():
                measured[name].append(wrk(binary, url, args.seconds, headers))
            for name, script in distinct.items():
                measured[name].append(wrk(binary, "http://127.0.0.1:8962", args.seconds, script=script))
        rss_before = rss_mib(tower.pid)
        many = wrk(binary, "http://127.0.0.1:8962", args.seconds * 2, script=RANDOM_RUNS.format(n=args.runs))
        rss_after = rss_mib(tower.pid)
        writes = wrk(binary, "http://127.0.0.1:8962", args.seconds, script=METRIC_POSTS)
    finally:
        for process in (bare, tower, secured):
            process.terminate()
            process.wait()

    sys.path.insert(0, str(HERE))
    import bare_app

    app = create_app(Settings(database_url=db_url, auth="off"))
    app.state.serving.serve("bench", range(10, 11), consume=True)
    process_bare = in_process(bare_app.app, b"/", b"")
    process_lr = in_process(app, b"/runs/bench/lr", b"step=10")

    median = {
        name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in measured.items()
    }
    base = median["bare ASGI app"]["rps"]
    rows = [{"case": name, **m, "ratio_to_bare": m["rps"] / base} for name, m in median.items()]
    single = median["lr, JSON"]["rps"]
    summary = {
        "hot_path_ratio": single / base,
        "p99_ms": median["lr, JSON"]["p99_ms"],
        "range_1000_cost_over_single": single / median["lr, range of 1,000"]["rps"],
        "uncached_ratio": median["lr, every step new"]["rps"] / base,
        "uncached_range_1000_cost_over_single": median["lr, every step new"]["rps"]
        / median["lr, every range of 1,000 new"]["rps"],
        "text_cost_over_json": single / median["lr, text/plain"]["rps"],
        "scoped_over_unscoped_token": median["lr, with a token limited to runs"]["rps"]
        / median["lr, with a token"]["rps"],
        "far_over_near": single / median["lr, step 10^12"]["rps"],
        "busy_over_fresh": single / median["lr, busy run"]["rps"],
        "diverged_over_calm": single / median["lr, diverged run"]["rps"],
        "in_process_us": {"bare": process_bare, "lr": process_lr},
        "many_runs": {
            "runs": args.runs,
            "cache_runs": Settings().cache_runs,
            **many,
            "rss_mib_before": rss_before,
            "rss_mib_after": rss_after,
        },
        "metric_posts_per_s": writes["rps"],
    }
    lines = [f"{'case':<22}{'req/s':>10}{'p99 ms':>9}{'vs bare':>9}"]
    lines += [f"{r['case']:<22}{r['rps']:>10.0f}{r['p99_ms']:>9.2f}{r['ratio_to_bare']:>9.2f}" for r in rows]
    lines.append(json.dumps(summary, indent=2))
    print("\n".join(lines))

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": machine(),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "rows": rows,
        "summary": summary,
    }
    (args.out / "hotpath.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["| case | req/s | p99 (ms) | vs bare app |", "|---|---|---|---|"]
    md += [f"| {r['case']} | {r['rps']:.0f} | {r['p99_ms']:.2f} | {r['ratio_to_bare']:.2f} |" for r in rows]
    s = summary
    md += [
        "",
        f"- hot path / bare app: **{s['hot_path_ratio']:.2f}** (goal >= 0.60), p99 {s['p99_ms']:.2f} ms (goal < 10)",
        f"- a range of 1,000 points costs {s['range_1000_cost_over_single']:.2f}x a single read (goal < 5)",
        f"- never asked before (nothing cached): every step new / bare app {s['uncached_ratio']:.2f}; every range of "
        f"1,000 new costs {s['uncached_range_1000_cost_over_single']:.1f}x every step new",
        f"- text/plain costs {s['text_cost_over_json']:.2f}x JSON (goal <= 1)",
        f"- a token limited to runs (4 patterns) / a token that reaches every run: "
        f"{s['scoped_over_unscoped_token']:.2f} (goal >= 0.95)",
        f"- step 10^12 / step 10: {s['far_over_near']:.2f}; a run with 100,000 events and metrics / a fresh one: "
        f"{s['busy_over_fresh']:.2f} (goal: about 1.0)",
        f"- a run whose answers name a divergence (one more header) costs {s['diverged_over_calm']:.2f}x a calm "
        "one (goal: about 1.0)",
        f"- in-process: bare app {process_bare:.1f} µs, lr {process_lr:.1f} µs per request",
        f"- {args.runs:,} runs served to step 1000, random runs and steps 0-1000: {many['rps']:.0f} req/s, p99 {many['p99_ms']:.1f} ms; "
        f"server memory {rss_before:.0f} -> {rss_after:.0f} MiB (cache bound {Settings().cache_runs:,} runs)",
        f"- metric posts with durable commits: {writes['rps']:.0f}/s",
        f"- machine: {result['machine']['cpu']}, Python {result['machine']['python']}",
    ]
    (args.out / "hotpath.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
