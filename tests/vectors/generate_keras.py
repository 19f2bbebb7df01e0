"""Write tests/vectors/keras.json: Keras' own values for lrtower's `keras.*` specs.

Not a test: run it with a Python that has keras and tensorflow-cpu, from the repository root:

    python3 -m venv /tmp/ref-keras && /tmp/ref-keras/bin/pip install keras tensorflow-cpu
    /tmp/ref-keras/bin/python tests/vectors/generate_keras.py

Why the TensorFlow backend: the values must be Keras' float64 numbers. With
`keras.config.set_floatx("float64")` and float64 inputs, the TensorFlow backend computes every
operation in float64. The jax, torch and numpy backends do not: Keras' type promotion
(`keras.src.backend.common.dtypes.result_type`, table BIT64_TO_BIT32_DTYPE) turns float64 into
float32 for `ops.cos`, `ops.floor` and `ops.ceil` on those backends, so CosineDecay,
CosineDecayRestarts and the staircase/cycle variants come out rounded to float32 there.
`--backend jax --out FILE` writes the same cases from the jax backend (with jax_enable_x64) to
measure that difference; tests/vectors/keras.json is the TensorFlow one.

Each case is a spec exactly as a client sends it, the run's base LRs (or null), and steps. The
class is constructed with the spec's arguments (floats as float64, integers as int64) and called
with an int64 step, as an optimizer's `iterations`. A value that is not finite is written as
null: lrtower must answer that step with a domain error.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

BIG = [10**6, 10**9 + 7, 10**12, 2**53]


def span(*ranges: tuple[int, int], extra: list[int] | None = None) -> list[int]:
    """Steps of the given half-open ranges plus extra steps, sorted and unique."""
    steps: set[int] = set(extra or [])
    for lo, hi in ranges:
        steps.update(range(lo, hi))
    return sorted(steps)


def case(spec: dict[str, Any], steps: list[int], base_lrs: list[float] | None = None) -> dict[str, Any]:
    return {"spec": spec, "base_lrs": base_lrs, "steps": steps}


def exp(**kw: Any) -> dict[str, Any]:
    return {"type": "keras.ExponentialDecay", **kw}


def poly(**kw: Any) -> dict[str, Any]:
    return {"type": "keras.PolynomialDecay", **kw}


def cos(**kw: Any) -> dict[str, Any]:
    return {"type": "keras.CosineDecay", **kw}


def sgdr(**kw: Any) -> dict[str, Any]:
    return {"type": "keras.CosineDecayRestarts", **kw}


def pw(boundaries: list[int], values: list[float]) -> dict[str, Any]:
    return {"type": "keras.PiecewiseConstantDecay", "boundaries": boundaries, "values": values}


def inv(**kw: Any) -> dict[str, Any]:
    return {"type": "keras.InverseTimeDecay", **kw}


CASES: list[dict[str, Any]] = [
    # ExponentialDecay
    case(
        exp(initial_learning_rate=0.1, decay_steps=1000, decay_rate=0.96),
        span((0, 40), extra=[999, 1000, 1001, 123457, *BIG]),
    ),
    case(
        exp(initial_learning_rate=1.0, decay_steps=7, decay_rate=0.5, staircase=True),
        span((0, 60), extra=[10**4 + 3, *BIG]),
        [1.0, 0.3],
    ),
    case(
        exp(initial_learning_rate=0.01, decay_steps=2.5, decay_rate=0.9, staircase=True),
        span((0, 30), extra=BIG),
    ),
    case(
        exp(initial_learning_rate=0.001, decay_steps=100, decay_rate=1.01),
        span((0, 10), extra=[10**4, 10**5, 10**6, 10**7, 10**12]),
    ),
    case(exp(initial_learning_rate=0.05, decay_steps=10, decay_rate=0.0), [0, 1, 10, 10**12]),
    case(
        exp(initial_learning_rate=0.05, decay_steps=1, decay_rate=0.999999),
        [0, 1, 2, 10**3, 10**6, 10**7, 10**8, 10**12, 2**53],
        [0.05, 0.5, 0.005],
    ),
    # PiecewiseConstantDecay
    case(pw([100, 110], [1.0, 0.5, 0.1]), span((95, 115), extra=[0, *BIG])),
    case(pw([0], [0.3, 0.03]), [0, 1, 2, 10**12], [0.3, 0.6]),
    case(
        pw([-5, 0, 10, 10**6, 10**12], [9.0, 0.5, 0.25, 0.0, 0.125, 0.0625]),
        span((0, 15), extra=[10**6 - 1, 10**6, 10**6 + 1, 10**12 - 1, 10**12, 10**12 + 1, 2**53]),
    ),
    case(pw([1, 2, 3, 5, 8, 13], [0.1, 0.2, 0.3, 0.5, 0.8, 1.3, 2.1]), span((0, 16)), [0.1, 0.01, 1.0]),
    # PolynomialDecay
    case(poly(initial_learning_rate=0.1, decay_steps=100), span((0, 110), extra=BIG)),
    case(
        poly(initial_learning_rate=0.1, decay_steps=10000, end_learning_rate=0.01, power=0.5),
        span((0, 20), (9990, 10010), extra=[5000, *BIG]),
        [0.1, 0.05],
    ),
    case(
        poly(initial_learning_rate=0.001, decay_steps=50, end_learning_rate=0.1, power=2.0),
        span((0, 60), extra=BIG),
    ),
    case(
        poly(initial_learning_rate=0.1, decay_steps=10, end_learning_rate=0.0, power=1.0, cycle=True),
        span((0, 45), extra=[10**6, 10**6 + 1, 10**9 + 7, 10**12, 10**12 + 3]),
    ),
    case(
        poly(initial_learning_rate=0.2, decay_steps=7, end_learning_rate=0.02, power=2.0, cycle=True),
        span((0, 50), extra=[10**6 + 3, 10**7 + 1]),
        [0.2, 0.4, 0.1],
    ),
    case(poly(initial_learning_rate=0.5, decay_steps=2.5, power=1.5, cycle=True), span((0, 20))),
    case(poly(initial_learning_rate=0.5, decay_steps=20, power=0.0), span((0, 25))),
    # InverseTimeDecay
    case(inv(initial_learning_rate=0.1, decay_steps=1.0, decay_rate=0.5), span((0, 30), extra=BIG)),
    case(
        inv(initial_learning_rate=0.01, decay_steps=1000, decay_rate=2.0, staircase=True),
        span((0, 5), (995, 1005), (1995, 2005), extra=BIG),
        [0.01, 0.001],
    ),
    case(inv(initial_learning_rate=0.3, decay_steps=7.5, decay_rate=0.1), span((0, 40), extra=BIG)),
    case(inv(initial_learning_rate=0.3, decay_steps=10, decay_rate=0.0), [0, 5, 10**12]),
    # CosineDecay
    case(cos(initial_learning_rate=0.1, decay_steps=1000), span((0, 20), (990, 1010), extra=[500, *BIG])),
    case(cos(initial_learning_rate=1.0, decay_steps=97, alpha=0.1), span((0, 105), extra=BIG), [1.0, 0.5]),
    case(
        cos(initial_learning_rate=0.0, decay_steps=200, alpha=0.05, warmup_target=0.01, warmup_steps=50),
        span((0, 260), extra=BIG),
        [0.01, 0.001, 0.02],
    ),
    case(
        cos(initial_learning_rate=0.5, decay_steps=30, warmup_target=0.1, warmup_steps=10),
        span((0, 45), extra=BIG),
    ),
    case(
        cos(initial_learning_rate=0.5, decay_steps=30, warmup_target=0.2, warmup_steps=0),
        span((0, 35), extra=BIG),
    ),
    case(cos(initial_learning_rate=3e-4, decay_steps=1), [0, 1, 2, 10**12]),
    case(
        cos(initial_learning_rate=3e-4, decay_steps=10**9, warmup_target=1e-3, warmup_steps=10**6),
        [0, 1, 10**5, 10**6 - 1, 10**6, 10**6 + 1, 5 * 10**8, 10**9, 10**9 + 10**6 - 1, 10**9 + 10**6, *BIG],
    ),
    # CosineDecayRestarts
    case(sgdr(initial_learning_rate=0.1, first_decay_steps=10), span((0, 160), extra=BIG)),
    case(
        sgdr(initial_learning_rate=0.1, first_decay_steps=25, t_mul=1.0, m_mul=0.9, alpha=0.1),
        span((0, 130), extra=BIG),
        [0.1, 0.2],
    ),
    case(
        sgdr(initial_learning_rate=1.0, first_decay_steps=10, t_mul=3.0, m_mul=0.5),
        span((0, 140), extra=[400, 1209, 1210, 1211, 3640, 3641, *BIG]),
    ),
    case(
        sgdr(initial_learning_rate=0.01, first_decay_steps=20, t_mul=1.5, m_mul=0.8, alpha=0.05),
        span((0, 300), extra=BIG),
        [0.01, 0.001, 0.1],
    ),
    case(
        sgdr(initial_learning_rate=0.2, first_decay_steps=40, t_mul=0.5), span((0, 85), extra=[10**6, 10**12])
    ),
    case(
        sgdr(initial_learning_rate=0.02, first_decay_steps=5, t_mul=1.1, m_mul=1.2, alpha=0.0),
        span((0, 120), extra=[10**6, 10**9, 10**12]),
    ),
    case(
        sgdr(initial_learning_rate=0.02, first_decay_steps=1000.5, t_mul=2.0, m_mul=0.7, alpha=0.01),
        span((0, 10), (995, 1005), (2995, 3010), extra=BIG),
    ),
]


def to_keras(spec: dict[str, Any], keras: Any, np: Any) -> Any:
    """The Keras schedule a spec names, constructed with every float argument as float64.

    Defaults the spec leaves out are passed explicitly too: Keras' TensorFlow backend turns a
    Python float into a float32 tensor before casting it to float64 (0.0001 would become
    9.999999747378752e-05), while lrtower, like the formula, means the float64 value.
    """
    cls = getattr(keras.optimizers.schedules, spec["type"].removeprefix("keras."))
    kwargs: dict[str, Any] = {
        name: p.default
        for name, p in inspect.signature(cls).parameters.items()
        if isinstance(p.default, float) and name not in spec
    }
    kwargs.update({k: v for k, v in spec.items() if k != "type"})
    for key, value in kwargs.items():
        if isinstance(value, float):
            kwargs[key] = np.float64(value)
        elif key == "values":
            kwargs[key] = [np.float64(v) for v in value]
        elif key == "boundaries":
            kwargs[key] = [np.int64(b) for b in value]
    return cls(**kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("keras.json"))
    args = parser.parse_args()

    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    import keras
    import numpy as np

    keras.config.set_floatx("float64")
    if args.backend == "tensorflow":
        import tensorflow as tf

        def as_step(step: int) -> Any:
            return tf.constant(step, dtype=tf.int64)

        backend_version = f"tensorflow {tf.__version__}"
    else:
        import jax.numpy as jnp

        def as_step(step: int) -> Any:
            return jnp.asarray(step, dtype=jnp.int64)

        backend_version = f"jax {jax.__version__}"

    cases = []
    for c in CASES:
        schedule = to_keras(c["spec"], keras, np)
        values: list[float | None] = []
        for step in c["steps"]:
            out = schedule(as_step(step))
            if "float64" not in str(out.dtype):
                raise SystemExit(f"{c['spec']} computed in {out.dtype}, not float64")
            v = float(out)
            values.append(v if math.isfinite(v) else None)
        cases.append({**c, "values": values})

    header = {
        "library": "keras",
        "version": keras.__version__,
        "backend": backend_version,
        "precision": "floatx float64, float64 arguments, int64 steps",
        "generated_by": "tests/vectors/generate_keras.py",
    }
    lines = [json.dumps(c, separators=(",", ":")) for c in cases]
    head = json.dumps(header, indent=2)[:-2]
    args.out.write_text(head + ',\n  "cases": [\n' + ",\n".join(lines) + "\n  ]\n}\n")
    points = sum(len(c["steps"]) for c in cases)
    print(f"wrote {args.out} with {len(cases)} cases, {points} points ({backend_version})", file=sys.stderr)


if __name__ == "__main__":
    main()
