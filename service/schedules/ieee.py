"""IEEE-754 versions of the math functions where Python raises instead.

JAX, TensorFlow and NumPy compute `pow`, `floor`, `ceil` and `cos` with IEEE semantics: an
overflow is inf, and a value off the domain is NaN. Python's `math` raises instead. The optax
and Keras formulas use these so that they follow their library to the same value; the engine
then refuses any step whose LR is not finite (`Schedule.at`).
"""

from __future__ import annotations

import math


def ieee_pow(x: float, y: float) -> float:
    """`x ** y` as C's `pow` (what XLA and TensorFlow call for float64 on CPU)."""
    try:
        return math.pow(x, y)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.inf if x == 0.0 else math.nan


def floor(x: float) -> float:
    return float(math.floor(x)) if math.isfinite(x) else x


def ceil(x: float) -> float:
    return float(math.ceil(x)) if math.isfinite(x) else x


def cos(x: float) -> float:
    return math.cos(x) if math.isfinite(x) else math.nan
