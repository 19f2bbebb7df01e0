from __future__ import annotations

import os
from typing import Any

from hypothesis import settings

from parity import TALLIES

# CI replays the same examples every run, so that a landing is never decided by a new draw;
# local runs explore afresh (and remember what failed).
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLIES:
        return
    terminalreporter.section("parity with the reference libraries")
    terminalreporter.write_line(
        f"{'family':<36}{'cases':>7}{'points':>10}{'max rel err':>13}{'max abs/peak':>14}"
    )
    for family, t in sorted(TALLIES.items()):
        terminalreporter.write_line(
            f"{family:<36}{t.cases:>7}{t.points:>10}{t.max_rel:>13.3g}{t.max_abs_of_peak:>14.3g}"
        )
