from __future__ import annotations

from typing import Any

from parity import TALLIES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLIES:
        return
    terminalreporter.section("parity with the reference libraries")
    terminalreporter.write_line(f"{'family':<22}{'cases':>8}{'points':>12}{'max rel err':>14}")
    for family, t in sorted(TALLIES.items()):
        terminalreporter.write_line(f"{family:<22}{t.cases:>8}{t.points:>12}{t.max_rel:>14.3g}")
