"""Write tests/vectors/mxnet.json: MXNet's own values for lrtower's `mxnet.*` specs.

Not a test: run it with a Python that has mxnet 1.9.1 (its wheels exist for old Pythons only;
mxnet 1.9.1 needs numpy < 1.20), from the repository root:

    python3.8 -m venv /tmp/ref-mxnet && /tmp/ref-mxnet/bin/pip install mxnet==1.9.1 'numpy<1.20'
    /tmp/ref-mxnet/bin/python tests/vectors/generate_mxnet.py

MXNet's schedulers keep state, and lrtower defines LR(step) as what a scheduler returns when it
is called with num_update = 0, 1, ..., step in order. So each case constructs a fresh scheduler
and calls it at every num_update from 0 to the case's `dense` bound, recording the listed steps.
Listed steps past that bound are then called one by one, in increasing order, skipping the calls
in between. That skip is exact for every case here:

- FactorScheduler and MultiFactorScheduler catch up in a `while` loop that performs every
  skipped decay one multiplication at a time, exactly as the skipped calls would have;
- PolyScheduler and CosineScheduler change state only at num_update <= max_update, and every
  case calls each of those (the script checks that `dense` >= max_update).
"""

from __future__ import annotations

import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

import mxnet
from mxnet import lr_scheduler

OUT = Path(__file__).with_name("mxnet.json")


RECORD_ALL = 2000
"""Cases called densely beyond this many steps record a sample of them (the JSON stays small)."""


def case(spec: dict, dense: int, extra: list | None = None, base_lrs: list | None = None) -> dict:
    """Called at every step 0..dense, then at each of `extra` (larger steps).

    Records every step up to dense when dense <= RECORD_ALL, else a sample: the first 300 steps,
    the 300 around each of warmup_steps, max_update and the 16384th decay, and about 1000 more
    spread over the range.
    """
    if dense <= RECORD_ALL:
        recorded = set(range(dense + 1))
    else:
        recorded = set(range(300)) | set(range(0, dense + 1, max(1, dense // 1000))) | {dense}
        for mark in (spec.get("warmup_steps", 0), spec.get("max_update", 0), 16384 * spec.get("step", 0)):
            if isinstance(mark, int):
                recorded |= {n for n in range(mark - 150, mark + 150) if 0 <= n <= dense}
    steps = sorted(recorded | set(extra or []))
    return {"spec": spec, "base_lrs": base_lrs, "steps": steps, "dense": dense}


def factor(**kw: Any) -> dict:
    return {"type": "mxnet.FactorScheduler", **kw}


def multi(**kw: Any) -> dict:
    return {"type": "mxnet.MultiFactorScheduler", **kw}


def poly(**kw: Any) -> dict:
    return {"type": "mxnet.PolyScheduler", **kw}


def cosine(**kw: Any) -> dict:
    return {"type": "mxnet.CosineScheduler", **kw}


CASES = [
    # FactorScheduler
    case(factor(step=10, factor=0.5, stop_factor_lr=0.1, base_lr=1.0), 60, [10**5, 10**6, 10**7]),
    case(factor(step=1000), 3000, [10**6, 10**9]),
    case(factor(step=3, factor=0.9, base_lr=0.1), 600, [10**6], [0.1, 0.01]),
    case(factor(step=1, factor=0.999, stop_factor_lr=0.0, base_lr=0.01), 20000, [10**5, 10**6]),
    case(factor(step=7, factor=0.99, stop_factor_lr=0.0, base_lr=0.5), 3000, [10**6, 10**7]),
    case(
        factor(step=10, factor=0.5, stop_factor_lr=1e-3, base_lr=0.1, warmup_steps=20, warmup_begin_lr=0.001),
        120,
        [10**6],
        [0.1, 0.2, 0.05],
    ),
    case(
        factor(step=4, factor=0.7, base_lr=0.3, warmup_steps=9, warmup_begin_lr=0.01, warmup_mode="constant"),
        80,
        [10**6],
    ),
    case(factor(step=5, factor=0.5, base_lr=1e-9), 30, [10**6]),
    case(factor(step=2, factor=0.0, stop_factor_lr=1e-4, base_lr=0.1), 10, [10**6]),
    case(
        factor(step=10**6, factor=0.5, stop_factor_lr=0.0, base_lr=1.0), 5, [10**6, 10**6 + 1, 10**9, 10**12]
    ),
    case(factor(step=1, factor=0.5, stop_factor_lr=0.0, base_lr=1.0, warmup_steps=3), 1200, [10**5]),
    # MultiFactorScheduler
    case(multi(step=[5, 8], factor=0.1, base_lr=1.0), 12, [10**6, 10**12]),
    case(multi(step=[30, 60, 90], factor=0.5, base_lr=0.1, warmup_steps=10), 120, [10**12], [0.1, 0.01]),
    case(multi(step=[1], factor=0.3), 5, [10**12]),
    case(
        multi(step=[10, 20, 100], factor=0.9, base_lr=0.05, warmup_steps=50, warmup_begin_lr=0.01),
        130,
        [10**9],
    ),
    case(
        multi(
            step=[10, 20],
            factor=0.5,
            base_lr=0.2,
            warmup_steps=15,
            warmup_begin_lr=0.05,
            warmup_mode="constant",
        ),
        40,
    ),
    case(
        multi(step=[10**6, 10**9, 10**12], factor=0.5, base_lr=1.0),
        3,
        [10**6, 10**6 + 1, 10**9, 10**9 + 1, 10**12, 10**12 + 1, 2**53],
    ),
    case(multi(step=[3, 6, 9, 12, 15, 18, 21, 24], factor=0.8, base_lr=0.3), 30, None, [0.3, 0.03, 3.0]),
    case(multi(step=[4, 7]), 10),
    # PolyScheduler
    case(poly(max_update=100, base_lr=0.1, pwr=2, final_lr=0), 150, [10**6, 10**12]),
    case(
        poly(max_update=200, base_lr=0.1, pwr=1, final_lr=0.01, warmup_steps=10), 220, [10**12], [0.1, 0.05]
    ),
    case(
        poly(
            max_update=50,
            base_lr=0.2,
            pwr=0.5,
            final_lr=0.0,
            warmup_steps=5,
            warmup_begin_lr=0.001,
            warmup_mode="constant",
        ),
        60,
        [10**12],
    ),
    case(poly(max_update=77, base_lr=0.01, pwr=3.3, final_lr=0.1), 90, [10**12]),
    case(poly(max_update=20, base_lr=0.5, pwr=0, final_lr=0.1), 25, [10**12]),
    case(poly(max_update=1000), 1010, [10**12]),
    case(
        poly(max_update=10**6, base_lr=0.003, pwr=2, final_lr=1e-5, warmup_steps=1000),
        10**6 + 2,
        [10**9, 10**12, 2**53],
        [0.003, 0.0003, 0.006],
    ),
    case(poly(max_update=1, base_lr=0.1, pwr=2), 3, [10**12]),
    # CosineScheduler
    case(cosine(max_update=100, base_lr=0.1, final_lr=0), 150, [10**6, 10**12]),
    case(cosine(max_update=110, base_lr=1.0, final_lr=0.001, warmup_steps=10), 130, [10**12], [1.0, 0.1]),
    case(
        cosine(
            max_update=40,
            base_lr=0.3,
            final_lr=0.01,
            warmup_steps=8,
            warmup_begin_lr=0.02,
            warmup_mode="constant",
        ),
        50,
    ),
    case(cosine(max_update=1, base_lr=0.1), 3, [10**12]),
    case(cosine(max_update=1000), 1010, [10**12]),
    case(
        cosine(max_update=10**6, base_lr=0.1, final_lr=1e-4, warmup_steps=10**4, warmup_begin_lr=1e-3),
        10**6 + 2,
        [10**9, 10**12, 2**53],
        [0.1, 0.2, 0.01],
    ),
    case(cosine(max_update=60, base_lr=0.01, final_lr=0.05, warmup_steps=0), 70, [10**12]),
]


def to_mxnet(spec: dict) -> Any:
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    return getattr(lr_scheduler, spec["type"][len("mxnet.") :])(**kwargs)


def main() -> None:
    cases = []
    for c in CASES:
        spec = c["spec"]
        dense = c.pop("dense")
        if "max_update" in spec and dense < spec["max_update"]:
            raise SystemExit(
                f"{spec}: call every num_update up to max_update ({dense} < {spec['max_update']})"
            )
        scheduler = to_mxnet(spec)
        wanted = set(c["steps"])
        values = {}
        for n in range(dense + 1):
            v = scheduler(n)
            if n in wanted:
                values[n] = v
        for n in c["steps"]:
            if n > dense:
                values[n] = scheduler(n)
        out = []
        for n in c["steps"]:
            v = float(values[n])
            out.append(v if math.isfinite(v) else None)
        cases.append({**c, "values": out})

    header = {
        "library": "mxnet",
        "version": mxnet.__version__,
        "python": platform.python_version(),
        "precision": "Python floats (double); the schedulers are plain Python",
        "generated_by": "tests/vectors/generate_mxnet.py",
    }
    lines = [json.dumps(c, separators=(",", ":")) for c in cases]
    head = json.dumps(header, indent=2)[:-2]
    OUT.write_text(head + ',\n  "cases": [\n' + ",\n".join(lines) + "\n  ]\n}\n")
    points = sum(len(c["steps"]) for c in cases)
    print(f"wrote {OUT} with {len(cases)} cases, {points} points", file=sys.stderr)


if __name__ == "__main__":
    main()
