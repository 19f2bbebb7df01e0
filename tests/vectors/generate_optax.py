"""Write tests/vectors/optax.json: optax's own values for lrtower's `optax.*` specs.

Not a test: run it with a Python that has optax and jax (CPU), from the repository root:

    python3 -m venv /tmp/ref-optax && /tmp/ref-optax/bin/pip install jax optax
    /tmp/ref-optax/bin/python tests/vectors/generate_optax.py

Each case is a spec exactly as a client sends it, the run's base LRs (or null), and steps. The
spec is turned into the optax call it names and evaluated at each step with 64-bit jax
(`jax_enable_x64`, float64 values, int64 counts), one eager call per step. A value that is not
finite is written as null: lrtower must answer that step with a domain error.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

OUT = Path(__file__).with_name("optax.json")
BIG = [10**6, 10**9 + 7, 10**12, 2**53]


def span(*ranges: tuple[int, int], extra: list[int] | None = None) -> list[int]:
    """Steps of the given half-open ranges plus extra steps, sorted and unique."""
    steps: set[int] = set(extra or [])
    for lo, hi in ranges:
        steps.update(range(lo, hi))
    return sorted(steps)


def case(spec: dict[str, Any], steps: list[int], base_lrs: list[float] | None = None) -> dict[str, Any]:
    return {"spec": spec, "base_lrs": base_lrs, "steps": steps}


def lin(init: float, end: float, ts: int, **kw: Any) -> dict[str, Any]:
    return {
        "type": "optax.linear_schedule",
        "init_value": init,
        "end_value": end,
        "transition_steps": ts,
        **kw,
    }


CASES: list[dict[str, Any]] = [
    # constant
    case({"type": "optax.constant_schedule", "value": 0.1}, [0, 1, 100, *BIG]),
    case({"type": "optax.constant_schedule", "value": 3e-4}, [0, 7, 10**12], [3e-4, 1e-4, 6e-4]),
    # linear / polynomial
    case(lin(1.0, 0.01, 100), span((0, 110), extra=BIG)),
    case(lin(0.0, 1e-3, 37, transition_begin=13), span((0, 60), extra=BIG), [1e-3, 5e-4]),
    case(lin(0.5, 0.7, 0), [0, 1, 5, 10**12]),
    case(lin(0.5, 0.7, -5), [0, 1, 5, 10**12]),
    case(lin(2.5e-3, 0.0, 10**9), [0, 1, 10**6, 5 * 10**8 + 3, 10**9 - 1, 10**9, *BIG]),
    case(
        {
            "type": "optax.polynomial_schedule",
            "init_value": 1.0,
            "end_value": 0.01,
            "power": 2,
            "transition_steps": 100,
            "transition_begin": 5,
        },
        span((0, 120), extra=BIG),
    ),
    case(
        {
            "type": "optax.polynomial_schedule",
            "init_value": 0.3,
            "end_value": 0.001,
            "power": 0.5,
            "transition_steps": 250,
        },
        span(
            (
                0,
                260,
            ),
            extra=BIG,
        ),
        [0.3, 0.03, 3.0],
    ),
    case(
        {
            "type": "optax.polynomial_schedule",
            "init_value": 0.01,
            "end_value": 0.1,
            "power": 3.7,
            "transition_steps": 1000,
            "transition_begin": 1000,
        },
        span((990, 2010), extra=[0, *BIG]),
    ),
    case(
        {
            "type": "optax.polynomial_schedule",
            "init_value": 0.2,
            "end_value": 0.0,
            "power": 0.0,
            "transition_steps": 10,
        },
        span((0, 15)),
    ),
    # exponential_decay
    case(
        {"type": "optax.exponential_decay", "init_value": 0.1, "transition_steps": 1000, "decay_rate": 0.96},
        span((0, 50), extra=[999, 1000, 1001, 12345, *BIG]),
    ),
    case(
        {
            "type": "optax.exponential_decay",
            "init_value": 1.0,
            "transition_steps": 7,
            "decay_rate": 0.5,
            "staircase": True,
        },
        span((0, 80), extra=[10**3, 10**4 + 3, *BIG]),
        [1.0, 0.25],
    ),
    case(
        {
            "type": "optax.exponential_decay",
            "init_value": 0.05,
            "transition_steps": 10,
            "decay_rate": 0.9,
            "transition_begin": 25,
            "end_value": 0.01,
        },
        span((0, 250), extra=BIG),
    ),
    case(
        {
            "type": "optax.exponential_decay",
            "init_value": 0.001,
            "transition_steps": 3,
            "decay_rate": 1.5,
            "transition_begin": 2,
            "staircase": True,
            "end_value": 0.5,
        },
        span((0, 60), extra=BIG),
    ),
    case(
        {"type": "optax.exponential_decay", "init_value": 0.001, "transition_steps": 100, "decay_rate": 1.01},
        span((0, 20), extra=[10**4, 10**5, 10**6, 10**7, 10**12]),
    ),
    case(
        {
            "type": "optax.exponential_decay",
            "init_value": 0.1,
            "transition_steps": 10,
            "decay_rate": 1.0,
            "end_value": 0.05,
        },
        [0, 1, 10, 10**12],
    ),
    case(
        {
            "type": "optax.exponential_decay",
            "init_value": 0.1,
            "transition_steps": 10,
            "decay_rate": 0.5,
            "end_value": 0.2,
        },
        [0, 1, 10, 100, 10**12],
    ),
    case(
        {"type": "optax.exponential_decay", "init_value": 0.1, "transition_steps": 1, "decay_rate": 0.999999},
        [0, 1, 2, 10**3, 10**6, 10**7, 10**8, 10**9, 10**12, 2**53],
    ),
    # cosine
    case(
        {"type": "optax.cosine_decay_schedule", "init_value": 0.1, "decay_steps": 1000},
        span((0, 30), (980, 1010), extra=[250, 500, 750, *BIG]),
    ),
    case(
        {
            "type": "optax.cosine_decay_schedule",
            "init_value": 1.0,
            "decay_steps": 97,
            "alpha": 0.1,
            "exponent": 2.0,
        },
        span((0, 110), extra=BIG),
        [1.0, 0.5, 0.1],
    ),
    case(
        {
            "type": "optax.cosine_decay_schedule",
            "init_value": 0.02,
            "decay_steps": 1,
            "alpha": 0.5,
            "exponent": 0.5,
        },
        [0, 1, 2, 10**12],
    ),
    case(
        {"type": "optax.cosine_decay_schedule", "init_value": 3e-4, "decay_steps": 10**9},
        [0, 1, 2, 10**6, 5 * 10**8, 10**9 - 10**3, 10**9 - 1, 10**9, *BIG],
    ),
    case(
        {
            "type": "optax.warmup_cosine_decay_schedule",
            "init_value": 0.0,
            "peak_value": 1e-3,
            "warmup_steps": 50,
            "decay_steps": 500,
        },
        span((0, 520), extra=BIG),
        [1e-3, 1e-4],
    ),
    case(
        {
            "type": "optax.warmup_cosine_decay_schedule",
            "init_value": 1e-5,
            "peak_value": 0.1,
            "warmup_steps": 0,
            "decay_steps": 100,
            "end_value": 0.001,
            "exponent": 1.5,
        },
        span((0, 110), extra=BIG),
    ),
    case(
        {
            "type": "optax.warmup_cosine_decay_schedule",
            "init_value": 0.3,
            "peak_value": 0.1,
            "warmup_steps": 7,
            "decay_steps": 20,
            "end_value": 0.2,
        },
        span((0, 30), extra=BIG),
        [0.1, 0.2, 0.05],
    ),
    case(
        {
            "type": "optax.warmup_cosine_decay_schedule",
            "init_value": 0.1,
            "peak_value": 0.0,
            "warmup_steps": 5,
            "decay_steps": 10,
            "end_value": 0.05,
        },
        span((0, 15)),
    ),
    case(
        {
            "type": "optax.warmup_exponential_decay_schedule",
            "init_value": 0.0,
            "peak_value": 0.01,
            "warmup_steps": 100,
            "transition_steps": 50,
            "decay_rate": 0.8,
        },
        span((0, 400), extra=BIG),
    ),
    case(
        {
            "type": "optax.warmup_exponential_decay_schedule",
            "init_value": 1e-4,
            "peak_value": 0.01,
            "warmup_steps": 10,
            "transition_steps": 5,
            "decay_rate": 0.5,
            "transition_begin": 7,
            "staircase": True,
            "end_value": 1e-4,
        },
        span((0, 120), extra=BIG),
        [0.01, 0.001],
    ),
    case(
        {"type": "optax.warmup_constant_schedule", "init_value": 0.0, "peak_value": 0.5, "warmup_steps": 30},
        span((0, 40), extra=BIG),
    ),
    case(
        {"type": "optax.warmup_constant_schedule", "init_value": 0.1, "peak_value": 0.5, "warmup_steps": 0},
        [0, 1, 10**12],
    ),
    # piecewise
    case(
        {
            "type": "optax.piecewise_constant_schedule",
            "init_value": 0.1,
            "boundaries_and_scales": {"200": 0.5, "100": 0.1, "300": 3.0},
        },
        span((95, 105), (195, 205), (295, 305), extra=[0, *BIG]),
        [0.1, 0.2],
    ),
    case(
        {
            "type": "optax.piecewise_constant_schedule",
            "init_value": 0.7,
            "boundaries_and_scales": {"0": 0.5, "-3": 0.9, "5": 0.0, "8": 2.0},
        },
        span((0, 12), extra=BIG),
    ),
    case({"type": "optax.piecewise_constant_schedule", "init_value": 0.25}, [0, 5, 10**12]),
    case(
        {"type": "optax.piecewise_constant_schedule", "init_value": 0.25, "boundaries_and_scales": {}},
        [0, 5, 10**12],
    ),
    case(
        {
            "type": "optax.piecewise_interpolate_schedule",
            "interpolate_type": "linear",
            "init_value": 1.0,
            "boundaries_and_scales": {"4": 0.1, "8": 0.01},
        },
        span((0, 12), extra=BIG),
    ),
    case(
        {
            "type": "optax.piecewise_interpolate_schedule",
            "interpolate_type": "cosine",
            "init_value": 0.01,
            "boundaries_and_scales": {"100": 10.0, "1000": 0.01, "1001": 0.5, "1002": 1.0, "5000": 0.3},
        },
        span((0, 120), (990, 1010), extra=[2000, 4999, 5000, 5001, *BIG]),
        [0.01, 0.1, 0.001],
    ),
    case(
        {
            "type": "optax.piecewise_interpolate_schedule",
            "interpolate_type": "linear",
            "init_value": 0.2,
            "boundaries_and_scales": {"0": 0.5, "-10": 2.0, "20": 0.1},
        },
        span((0, 25), extra=BIG),
    ),
    case(
        {
            "type": "optax.piecewise_interpolate_schedule",
            "interpolate_type": "cosine",
            "init_value": 0.05,
            "boundaries_and_scales": {"1000000000000": 0.001},
        },
        [0, 1, 10**6, 5 * 10**11, 10**12 - 1, 10**12, 2**53],
    ),
    case(
        {"type": "optax.piecewise_interpolate_schedule", "interpolate_type": "linear", "init_value": 0.05},
        [0, 3, 10**12],
    ),
    # join / sgdr
    case(
        {
            "type": "optax.join_schedules",
            "boundaries": [10],
            "schedules": [
                lin(0.0, 1.0, 10),
                {
                    "type": "optax.exponential_decay",
                    "init_value": 1.0,
                    "transition_steps": 1,
                    "decay_rate": 0.5,
                },
            ],
        },
        span((0, 40), extra=BIG),
    ),
    case(
        {
            "type": "optax.join_schedules",
            "boundaries": [100, 50, 300],
            "schedules": [
                lin(0.1, 0.2, 200),
                {"type": "optax.cosine_decay_schedule", "init_value": 0.3, "decay_steps": 60},
                {"type": "optax.constant_schedule", "value": 0.05},
                {
                    "type": "optax.join_schedules",
                    "boundaries": [5],
                    "schedules": [
                        {"type": "optax.constant_schedule", "value": 0.01},
                        {
                            "type": "optax.polynomial_schedule",
                            "init_value": 0.02,
                            "end_value": 0.0,
                            "power": 2.0,
                            "transition_steps": 40,
                        },
                    ],
                },
            ],
        },
        span((0, 360), extra=BIG),
        [0.1, 1.0],
    ),
    case(
        {
            "type": "optax.join_schedules",
            "boundaries": [-5, 20, 20],
            "schedules": [
                {"type": "optax.constant_schedule", "value": 9.0},
                lin(0.0, 0.1, 10),
                {"type": "optax.constant_schedule", "value": 0.7},
                {"type": "optax.cosine_decay_schedule", "init_value": 0.1, "decay_steps": 10},
            ],
        },
        span((0, 35), extra=BIG),
    ),
    case(
        {"type": "optax.join_schedules", "boundaries": [], "schedules": [lin(0.3, 0.1, 10)]},
        span((0, 12)),
    ),
    case(
        {
            "type": "optax.sgdr_schedule",
            "cosine_kwargs": [
                {"init_value": 0.0, "peak_value": 0.1, "warmup_steps": 10, "decay_steps": 100},
                {
                    "init_value": 0.0,
                    "peak_value": 0.05,
                    "warmup_steps": 5,
                    "decay_steps": 200,
                    "end_value": 0.001,
                },
                {
                    "init_value": 0.01,
                    "peak_value": 0.02,
                    "warmup_steps": 0,
                    "decay_steps": 50,
                    "exponent": 2.0,
                },
            ],
        },
        span((0, 360), extra=BIG),
        [0.1, 0.05],
    ),
    case(
        {
            "type": "optax.sgdr_schedule",
            "cosine_kwargs": [
                {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 3, "decay_steps": 13},
            ],
        },
        span((0, 20), extra=BIG),
    ),
    # onecycle
    case(
        {"type": "optax.cosine_onecycle_schedule", "transition_steps": 1000, "peak_value": 0.1},
        span((0, 20), (290, 310), (990, 1010), extra=[150, 500, 800, *BIG]),
        [0.1, 0.01],
    ),
    case(
        {
            "type": "optax.cosine_onecycle_schedule",
            "transition_steps": 3,
            "peak_value": 1.0,
            "pct_start": 0.25,
            "div_factor": 4.0,
            "final_div_factor": 10.0,
        },
        span((0, 6), extra=BIG),
    ),
    case(
        {"type": "optax.linear_onecycle_schedule", "transition_steps": 1000, "peak_value": 0.1},
        span((0, 10), (295, 305), (845, 855), (995, 1005), extra=[100, 500, 900, *BIG]),
    ),
    case(
        {
            "type": "optax.linear_onecycle_schedule",
            "transition_steps": 100,
            "peak_value": 2.0,
            "pct_start": 0.5,
            "pct_final": 1.0,
            "div_factor": 8.0,
            "final_div_factor": 100.0,
        },
        span((0, 105), extra=BIG),
    ),
    case(
        {
            "type": "optax.linear_onecycle_schedule",
            "transition_steps": 50,
            "peak_value": 0.3,
            "pct_start": 0.4,
            "pct_final": 0.4,
        },
        span((0, 55), extra=BIG),
        [0.3, 0.6, 0.9],
    ),
]


def to_optax(spec: dict[str, Any]) -> Any:
    """The optax schedule a spec names, called with the spec's arguments."""
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    name = spec["type"].removeprefix("optax.")
    if name == "join_schedules":
        kwargs["schedules"] = [to_optax(child) for child in kwargs["schedules"]]
    if "boundaries_and_scales" in kwargs and kwargs["boundaries_and_scales"] is not None:
        kwargs["boundaries_and_scales"] = {int(k): v for k, v in kwargs["boundaries_and_scales"].items()}
    return getattr(optax, name)(**kwargs)


def evaluate(fn: Any, step: int) -> float | None:
    value = float(fn(jnp.asarray(step, dtype=jnp.int64)))
    return value if math.isfinite(value) else None


def main() -> None:
    cases = []
    for c in CASES:
        fn = to_optax(c["spec"])
        cases.append({**c, "values": [evaluate(fn, s) for s in c["steps"]]})
    header = {
        "library": "optax",
        "version": optax.__version__,
        "jax_version": jax.__version__,
        "precision": "float64 (jax_enable_x64), int64 counts, eager calls",
        "generated_by": "tests/vectors/generate_optax.py",
    }
    lines = [json.dumps(c, separators=(",", ":")) for c in cases]
    head = json.dumps(header, indent=2)[:-2]
    OUT.write_text(head + ',\n  "cases": [\n' + ",\n".join(lines) + "\n  ]\n}\n")
    points = sum(len(c["steps"]) for c in cases)
    print(f"wrote {OUT} with {len(cases)} cases, {points} points", file=sys.stderr)


if __name__ == "__main__":
    main()
