"""FastAPI dependencies as typed aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from ..core.auth import ANONYMOUS, Caller, Forbidden, Tokens
from ..core.branching import Branching
from ..core.problems import NotFound, Problem
from ..core.runs import Runs
from ..core.serving import Serving
from ..core.vocabulary import Scope
from ..schedules import FieldError
from ..schemas import RUN_NAME
from .headers import read_headers
from .ratelimit import RateLimit


def get_runs(request: Request) -> Runs:
    runs: Runs = request.app.state.runs
    return runs


def get_branching(request: Request) -> Branching:
    branching: Branching = request.app.state.branching
    return branching


def get_serving(request: Request) -> Serving:
    serving: Serving = request.app.state.serving
    return serving


def _caller(needed: Scope) -> object:
    def dependency(request: Request) -> Caller:
        if read_headers(request.scope["headers"]).authorization_twice:
            raise Problem(
                "send one Authorization header: with two, which one counts would be a guess",
                [FieldError(("header", "Authorization"), "given more than once")],
            )
        tokens: Tokens | None = request.app.state.tokens
        if tokens is None:  # auth is off
            caller = Caller(ANONYMOUS, "admin")
        else:
            caller = tokens.authenticate(request.headers.get("authorization"))
        run = request.path_params.get("run")
        if isinstance(run, str) and not caller.reaches(run):
            raise NotFound(f"no run named {run!r}")  # as if it did not exist: names do not leak
        if not caller.allows(needed):
            raise Forbidden(f"token {caller.name!r} has scope {caller.scope!r}; this needs {needed!r}")
        if needed == "write":
            writes: RateLimit = request.app.state.write_limit
            writes.take(caller.name)
        return caller

    return Depends(dependency)


def _creator(request: Request, caller: Writer) -> Caller:
    creations: RateLimit = request.app.state.create_limit
    creations.take(caller.name)
    return caller


RunPath = Annotated[str, Path(pattern=RUN_NAME, description="The run's name")]
"""A name no run can have is refused (422) before it reaches the database, which may not even
take it as text (PostgreSQL refuses NUL)."""
RunsDep = Annotated[Runs, Depends(get_runs)]
ServingDep = Annotated[Serving, Depends(get_serving)]
BranchingDep = Annotated[Branching, Depends(get_branching)]
Reader = Annotated[Caller, _caller("read")]
"""Who asks, with `read` scope at least; a `{run}` in the path must be within its reach (else 404)."""
Writer = Annotated[Caller, _caller("write")]
Creator = Annotated[Caller, Depends(_creator)]
"""A writer who may create one more run now."""


def _administrator(caller: Annotated[Caller, _caller("admin")]) -> Caller:
    if caller.reach is not None:
        raise Forbidden(
            f"token {caller.name!r} reaches only some runs: administering tokens and reading the admin "
            "trail need an admin token that reaches every run"
        )
    return caller


Administrator = Annotated[Caller, Depends(_administrator)]
"""An `admin` token that reaches every run: tokens and the admin trail are the whole server's."""


def within_reach(caller: Caller, run: str) -> None:
    """404 for a run the caller does not reach, exactly as for a run that does not exist: for a
    run named in a body (a run to create, a fork's name)."""
    if not caller.reaches(run):
        raise NotFound(f"no run named {run!r}")
