"""The schedule engine: a JSON spec in, a pure `step -> LRs` function out. No I/O."""

from .base import STEP_MAX, BuildContext, DomainError, FieldError, Schedule, SpecError, SpecModel
from .registry import build_schedule, parse_spec

__all__ = [
    "STEP_MAX",
    "BuildContext",
    "DomainError",
    "FieldError",
    "Schedule",
    "SpecError",
    "SpecModel",
    "build_schedule",
    "parse_spec",
]
