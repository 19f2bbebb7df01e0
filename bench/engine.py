"""Schedule engine cost: every type at step 10 and at step 10**12, against torch's step().

For each type, the time of one `schedule.at(step)` is set beside the time of one
`scheduler.step()` of torch, measured in the same run: the same class for torch types, and
for the other families a LambdaLR with a cosine lambda, which is what such a schedule is when
run locally in torch. The ratio is engine time / torch time (lower is better; 1.0 = parity).

A range is answered in one pass (`schedule.over`): its cost per point, over steps 10..1009 and
10**12..10**12+999, is set beside the single step's as `range/step` (lower is better).

    python bench/engine.py [--repeat 5] [--out bench/results]

Prints a table, and writes bench/results/engine.json and engine.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import timeit
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lrtower_server.schedules import build_schedule
from lrtower_server.schedules.examples import EXAMPLES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "schedules"))
import torch_oracle

BASE_LRS = [0.1, 0.01]
FAR = 10**12
RANGE_POINTS = 1000


def per_call(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds per call over `repeat` timings of an auto-sized loop."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return statistics.median(t / number for t in timer.repeat(repeat=repeat, number=number))


def torch_step_cost(spec: dict[str, Any] | None, repeat: int) -> float:
    optimizer = torch_oracle.make_optimizer(BASE_LRS)
    if spec is None:
        scheduler: Any = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * e / 100000))
        )
    else:
        scheduler = torch_oracle.make_scheduler(spec, optimizer)
    return per_call(scheduler.step, repeat)


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # torch warns about stepping without an optimizer step

    lambda_baseline = torch_step_cost(None, args.repeat)
    rows = []
    for name, spec in EXAMPLES.items():
        schedule = build_schedule(spec, BASE_LRS)
        near = per_call(lambda s=schedule: s.at(10), args.repeat)  # type: ignore[misc]
        far = per_call(lambda s=schedule: s.at(FAR), args.repeat)  # type: ignore[misc]
        in_range = max(
            per_call(lambda s=schedule, r=steps: s.over(r), args.repeat) / RANGE_POINTS  # type: ignore[misc]
            for steps in (range(10, 10 + RANGE_POINTS), range(FAR, FAR + RANGE_POINTS))
        )
        is_torch = "." not in name
        baseline = torch_step_cost(spec, args.repeat) if is_torch else lambda_baseline
        rows.append(
            {
                "type": name,
                "engine_us_step_10": near * 1e6,
                "engine_us_step_1e12": far * 1e6,
                "torch_us_per_step": baseline * 1e6,
                "torch_baseline": name if is_torch else "LambdaLR(cosine lambda)",
                "ratio": max(near, far) / baseline,
                "far_over_near": far / near,
                "engine_us_per_range_point": in_range * 1e6,
                "range_over_step": in_range / max(near, far),
            }
        )

    header = (
        f"{'type':<40}{'step 10 µs':>11}{'step 1e12 µs':>13}{'torch µs':>10}{'ratio':>7}{'far/near':>9}"
        f"{'range µs/pt':>12}{'range/step':>11}"
    )
    lines = [header]
    for r in rows:
        lines.append(
            f"{r['type']:<40}{r['engine_us_step_10']:>11.2f}{r['engine_us_step_1e12']:>13.2f}"
            f"{r['torch_us_per_step']:>10.2f}{r['ratio']:>7.2f}{r['far_over_near']:>9.2f}"
            f"{r['engine_us_per_range_point']:>12.2f}{r['range_over_step']:>11.2f}"
        )
    worst = max(rows, key=lambda r: r["ratio"])
    summary = (
        f"{len(rows)} types; worst ratio {worst['ratio']:.2f} ({worst['type']}); "
        f"{sum(r['ratio'] <= 1.0 for r in rows)} of {len(rows)} at or under one torch step(); "
        f"a range point costs {statistics.median(r['range_over_step'] for r in rows):.2f} of a single step "
        f"(median; worst {max(r['range_over_step'] for r in rows):.2f})"
    )
    print("\n".join(lines))
    print(summary)

    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "base_lrs": BASE_LRS, "rows": rows, "summary": summary}
    (args.out / "engine.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "| type | step 10 (µs) | step 10^12 (µs) | torch step() (µs) | ratio | far/near | range (µs/point) | range/step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| `{r['type']}` | {r['engine_us_step_10']:.2f} | {r['engine_us_step_1e12']:.2f} | "
        f"{r['torch_us_per_step']:.2f} | {r['ratio']:.2f} | {r['far_over_near']:.2f} | "
        f"{r['engine_us_per_range_point']:.2f} | {r['range_over_step']:.2f} |"
        for r in rows
    ]
    md.append("")
    md.append(
        f"{summary}. Machine: {result['machine']['cpu']}, Python {result['machine']['python']}, torch {result['machine']['torch']}."
    )
    (args.out / "engine.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
