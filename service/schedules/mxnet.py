"""Placeholder: filled in by its family's implementation."""

from .base import SpecModel

SPECS: tuple[type[SpecModel], ...] = ()
