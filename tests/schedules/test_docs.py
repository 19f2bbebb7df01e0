"""The docs hold: doctests run, every type has an example and a row in docs/schedules.md,
and the README's expressions compute what the same Python lambda computes."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import lrtower_server.schedules as schedules_pkg
import torch_oracle
from lrtower_server.schedules import build_schedule
from lrtower_server.schedules.examples import EXAMPLES
from lrtower_server.schedules.expression import Expression
from lrtower_server.schedules.registry import TYPE_NAMES

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(m.name for m in pkgutil.iter_modules(schedules_pkg.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"lrtower_server.schedules.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_every_type_has_an_example_that_answers_near_and_far() -> None:
    assert set(EXAMPLES) == set(TYPE_NAMES)
    for name, spec in EXAMPLES.items():
        schedule = build_schedule(spec, [0.1, 0.01])
        for step in (0, 10, 10**12):
            lrs, _ = schedule.at(step)
            assert len(lrs) == 2, name


def test_every_type_is_documented() -> None:
    text = (ROOT / "docs" / "schedules.md").read_text()
    missing = [name for name in TYPE_NAMES if f"`{name}`" not in text]
    assert not missing


def readme_expressions() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("### `lr_lambda` expressions", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+) \| `(.+)` \|$", section, re.MULTILINE)
    return [source for name, source in rows if name != "schedule"]


def test_readme_expressions_equal_python() -> None:
    sources = readme_expressions()
    assert len(sources) >= 9
    for source in sources:
        expr, reference = Expression.compile(source), torch_oracle.py_lambda(source)
        for step in (0, 1, 9, 10, 499, 500, 501, 4000, 9999, 30000, 60000, 10**6):
            assert expr(step) == reference(step), (source, step)
