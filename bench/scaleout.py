"""Scale-out under the fleet mix: 1, 2 and 3 replicas on one PostgreSQL database; 1 and 2 workers on SQLite.

Replicas are separate `lrtower serve` processes on their own ports, sharing one PostgreSQL
database; the ranks are spread over them one by one, so the ranks of one run hit different
replicas, or (the configurations marked so) routed as deploy/nginx.conf routes them, every rank
of a run to one replica. On SQLite, `lrtower serve --workers 2` runs two worker processes on one port. The load
is fleet.py's generator and mix (imported from it): the same fleet, at lookahead 64 and 1, for
every configuration.

**Pinning.** This machine has two cores: every server process (all replicas, all workers) is
pinned to CPU 0 with taskset, and the load generator to CPU 1. The servers therefore share one
core, and throughput beyond two busy processes cannot be shown here: the figures that carry over
to more cores are the costs, per request and per new window.

Reported per configuration: rank-steps and requests per second, window p50/p99, server CPU per
request (all server processes, from /proc/<pid>/stat), and database writes per run per new
window (high-water-mark raises counted by the servers' `lrtower_mark_raises_total`, and on
PostgreSQL by the database itself: `pg_stat_user_tables.n_tup_upd` of `runs`, less the version
bumps of plateau reductions and scales). What must hold, printed with the figures:

- CPU per request does not grow with replicas (within 10% of one replica's);
- database writes per new window stay at most one per run, however many replicas and ranks.

    python bench/scaleout.py [--ranks 600 120] [--seconds 15] [--quick]

Writes bench/results/scaleout.json and scaleout.md.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from engine import machine
from fleet import HERE, Database, Mix, measure, pin_self, show

CONFIGS = (
    ("postgresql", 1, 1, "spread"),
    ("postgresql", 2, 1, "spread"),
    ("postgresql", 3, 1, "spread"),
    ("postgresql", 2, 1, "run"),
    ("postgresql", 3, 1, "run"),
    ("sqlite", 1, 1, "spread"),
    ("sqlite", 1, 2, "spread"),
)
"""(database, replicas, workers per replica, how ranks reach the replicas: see fleet.Mix.route)."""
CPU_TOLERANCE = 1.10
WRITES_TOLERANCE = 0.02
"""pg_stat's counts are read before the jobs start and after the server stops: a window that
straddles the measurement's edges counts a write without its window."""


def label(database: str, replicas: int, workers: int, route: str) -> str:
    if workers > 1:
        return f"{database}, {workers} workers"
    routed = ", a run's ranks to one replica" if route == "run" else ""
    return f"{database}, {replicas} replica{'s' if replicas > 1 else ''}{routed}"


def invariants(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two rules, checked per lookahead and database against its one-process figure."""
    checks = []
    for row in rows:
        base = next(
            r for r in rows if r["database"] == row["database"] and r["lookahead"] == row["lookahead"]
            and r["replicas"] == 1 and r["workers"] == 1
        )  # fmt: skip
        processes = row["replicas"] * row["workers"]
        if processes > 1:
            cpu, base_cpu = row["server_cpu_ms_per_request"], base["server_cpu_ms_per_request"]
            checks.append(
                {
                    "rule": "CPU per request does not grow with processes",
                    "config": row["config"],
                    "lookahead": row["lookahead"],
                    "value": cpu / base_cpu,
                    "holds": cpu <= base_cpu * CPU_TOLERANCE,
                    "detail": f"{cpu:.3f} ms vs {base_cpu:.3f} ms with one process ({cpu / base_cpu:.2f}x)",
                }
            )
        # Counted by the database where it can (PostgreSQL); on SQLite, the raises the servers
        # asked for, an upper bound (a raise that finds the window raised already writes nothing).
        counted_by = "pg_stat" if "writes_per_new_window_db" in row else "raises asked"
        writes = row.get("writes_per_new_window_db", row["writes_per_new_window_server"])
        checks.append(
            {
                "rule": "database writes per run per new window <= 1",
                "config": row["config"],
                "lookahead": row["lookahead"],
                "value": writes,
                "holds": writes <= 1.0 + WRITES_TOLERANCE,
                "detail": f"{writes:.2f} writes per new window ({counted_by})",
            }
        )
    return checks


def write(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaleout.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    md = [
        "All server processes pinned to CPU 0, the load generator to CPU 1 (taskset): the servers share "
        "one core, so throughput cannot grow here; the costs per request and per window are what carry over.",
        "",
        "| configuration | lookahead | ranks | rank-steps/s | req/s | window p50 / p99 ms | metric post p50 / p99 ms | "
        "server CPU | CPU ms per request | PostgreSQL's CPU | DB writes per run per new window | "
        "commits per new window |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        writes = f"{r['writes_per_new_window_server']:.2f} (raises asked)"
        if "writes_per_new_window_db" in r:
            writes = f"{r['writes_per_new_window_db']:.2f} (pg_stat); " + writes
        commits = r["mark_commits"] / r["new_windows"] if r["new_windows"] else math.nan
        pg_cpu = f"{r['postgres_cpu_share']:.0%}" if r["database"] == "postgresql" else "-"
        errors = sum(r["errors"].values()) + r["server_5xx"]
        note = f" ({errors:.0f} errors)" if errors else ""
        md.append(
            f"| {r['config']}{note} | {r['lookahead']} | {r['ranks']:,} | {r['rank_steps_per_s']:,.0f} | "
            f"{r['requests_per_s']:,.0f} | {r['window_p50_ms']:.1f} / {r['window_p99_ms']:.1f} | "
            f"{r['metric_p50_ms']:.0f} / {r['metric_p99_ms']:.0f} | {r['server_cpu_share']:.0%} | "
            f"{r['server_cpu_ms_per_request']:.3f} | {pg_cpu} | {writes} | {commits:.2f} |"
        )
    md += ["", "What must hold:", ""]
    for c in result["invariants"]:
        md.append(f"- {'holds' if c['holds'] else '**does not hold**'}: {c['rule']}, {c['config']}, "
                  f"lookahead {c['lookahead']}: {c['detail']}")  # fmt: skip
    mix, m = result["mix"], result["machine"]
    md += [
        "",
        f"Fleet mix (bench/fleet.py): {mix['ranks_per_job']} ranks per job, T = {mix['step_time']} s per step, a "
        f"metric every {mix['metric_every']} steps from every rank, every {mix['plateau_every']}th run reducing on "
        f"a plateau, an operator scaling every {mix['scale_every']}th run halfway; {mix['warmup']:.0f} s warm-up, "
        f"{mix['seconds']:.0f} s measured. Ranks are spread over the replicas one by one (a run's ranks hit "
        f"different replicas), or, where it says so, every rank of a run goes to one replica. Commits per new window: the servers' mark group commits. Machine: {m['cpu']}, "
        f"{m['cpus']} CPUs, Python {m['python']}.",
    ]
    (out / "scaleout.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def rewrite(out: Path) -> None:
    """The tables again, from the figures in scaleout.json (after a change of the rules' wording)."""
    result = json.loads((out / "scaleout.json").read_text())
    result["invariants"] = invariants(result["rows"])
    write(out, result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs=2, default=[600, 120], metavar=("L64", "L1"),
                        help="the fleet, in ranks, at lookahead 64 and at lookahead 1")  # fmt: skip
    parser.add_argument("--lookahead", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--warmup", type=float, default=Mix.warmup)
    parser.add_argument("--seconds", type=float, default=Mix.seconds)
    parser.add_argument("--quick", action="store_true", help="short measurements, lookahead 64 only")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--rewrite", action="store_true", help="only redo the tables from scaleout.json")
    args = parser.parse_args()
    if args.rewrite:
        rewrite(args.out)
        return
    if args.quick:
        args.warmup, args.seconds, args.lookahead = min(args.warmup, 7.0), min(args.seconds, 6.0), [64]
    mix = Mix(warmup=args.warmup, seconds=args.seconds)
    pin_self(1)
    rows = []
    databases: dict[str, Database] = {}
    try:
        for kind, replicas, workers, route in CONFIGS:
            if kind not in databases:
                databases[kind] = Database(kind, "scaleout")
            for lookahead in args.lookahead:
                ranks = args.ranks[0] if lookahead > 1 else args.ranks[1]
                found = measure(
                    databases[kind], replace(mix, route=route), ranks, lookahead, replicas=replicas,
                    workers=workers, label=f"s{replicas}{workers}{route[0]}-",
                )  # fmt: skip
                config = label(kind, replicas, workers, route)
                print(f"  {config:<24} {show(found)}", flush=True)
                rows.append(
                    {"config": config, "database": kind, "replicas": replicas, "workers": workers,
                     "route": route, **found}
                )  # fmt: skip
    finally:
        for database in databases.values():
            database.drop()
    checks = invariants(rows)
    result = {"machine": machine(), "mix": asdict(mix), "rows": rows, "invariants": checks}
    write(args.out, result)
    holds = all(c["holds"] for c in checks)
    print(f"\nall invariants hold: {holds}")


if __name__ == "__main__":
    main()
