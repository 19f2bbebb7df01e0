"""FastAPI dependencies as typed aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .auth import ANONYMOUS, Caller, Forbidden, Tokens
from .runs import Runs


def get_runs(request: Request) -> Runs:
    runs: Runs = request.app.state.runs
    return runs


def _caller(needed: str) -> object:
    def dependency(request: Request) -> Caller:
        tokens: Tokens | None = request.app.state.tokens
        if tokens is None:  # auth is off
            return Caller(ANONYMOUS, "admin")
        caller = tokens.authenticate(request.headers.get("authorization"))
        if not caller.allows(needed):
            raise Forbidden(f"token {caller.name!r} has scope {caller.scope!r}; this needs {needed!r}")
        return caller

    return Depends(dependency)


RunsDep = Annotated[Runs, Depends(get_runs)]
Reader = Annotated[Caller, _caller("read")]
Writer = Annotated[Caller, _caller("write")]
