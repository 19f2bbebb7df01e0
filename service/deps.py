"""FastAPI dependencies as typed aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .runs import Runs


def get_runs(request: Request) -> Runs:
    runs: Runs = request.app.state.runs
    return runs


RunsDep = Annotated[Runs, Depends(get_runs)]
ACTOR = "anonymous"
"""The actor of writes until tokens identify callers."""
