"""The schedule engine: a JSON spec in, a pure `step -> LRs` function out. No I/O."""

from .base import (
    MAX_SPEC_COST,
    STEP_MAX,
    BuildContext,
    DomainError,
    FieldError,
    ProductBudget,
    Schedule,
    SpecError,
    SpecModel,
    WholeNumber,
)
from .registry import build_schedule, parse_spec

__all__ = [
    "MAX_SPEC_COST",
    "STEP_MAX",
    "BuildContext",
    "DomainError",
    "FieldError",
    "ProductBudget",
    "Schedule",
    "SpecError",
    "SpecModel",
    "WholeNumber",
    "build_schedule",
    "parse_spec",
]
