"""Errors raised by the lrtower client.

Every error is an `LrtowerError`::

    LrtowerError
    ├── ServerUnreachable      no answer after every retry: connection refused or reset, timeout
    ├── UnreadableAnswer       a success status with a body that is not lrtower's (a proxy's page)
    └── APIError               the server answered with an error (RFC 9457 problem+json)
        ├── Unauthorized       401: a missing or unknown token
        ├── Forbidden          403: the token's scope does not allow this
        ├── NotFound           404: no such run
        ├── Conflict           409: conflicts with the run's history; `high_water` says its mark
        ├── TooLarge           413: the request body is too large
        ├── Invalid            422: invalid input; `errors` names every bad field
        └── ServerError        5xx, after every retry of the transient ones (502, 503, 504)

An `APIError` carries what the server said: `status`, `type`, `title`, `detail`, `errors`, and
the whole `problem` document. `ServerUnreachable` chains httpx's error as its `__cause__`.

What the application can fix, the client says with a warning (`warnings.warn`)::

    UserWarning
    └── LateMetricWarning      a metric reached the run after its step was served: its plateau
                               reduction lands later than torch's would

What it cannot fix (an outage, a rewind of the run by an operator), the client logs under the
`lrtower` logger instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class LrtowerError(Exception):
    """Base of every error the client raises."""


class ServerUnreachable(LrtowerError):
    """The server could not be reached, or did not answer in time, after every retry."""


class UnreadableAnswer(LrtowerError):
    """The server (or something in front of it) answered success with a body that is not the
    API's JSON."""


class LateMetricWarning(UserWarning):
    """A metric was posted for a step whose LR had been served already, so the run applies it
    from a later step than torch's `ReduceLROnPlateau` would. Its message names both steps and
    the likely cause. Given once per run and scheduler."""


@dataclass(frozen=True)
class FieldError:
    """One invalid field: its dotted path (`schedule.step_size`) and what is wrong with it."""

    field: str
    msg: str
    loc: tuple[str | int, ...] = ()


class APIError(LrtowerError):
    """The server answered with an error status and (normally) a problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.type: str = str(problem.get("type", "about:blank"))
        self.title: str = str(problem.get("title", ""))
        self.detail: str = str(problem.get("detail", ""))
        self.errors: list[FieldError] = [
            FieldError(str(e.get("field", "")), str(e.get("msg", "")), tuple(e.get("loc", ())))
            for e in problem.get("errors") or ()
            if isinstance(e, dict)
        ]
        super().__init__(self._message())

    def __reduce__(self) -> tuple[type[APIError], tuple[int, dict[str, Any]]]:
        # Rebuilt from what it was made of, so it crosses process boundaries (pool workers).
        return type(self), (self.status, self.problem)

    def _message(self) -> str:
        message = (
            f"{self.status} {self.title}: {self.detail}" if self.detail else f"{self.status} {self.title}"
        )
        return "; ".join([message, *(f"{e.field}: {e.msg}" for e in self.errors)])


class Unauthorized(APIError):
    """401: the token is missing, unknown or revoked."""


class Forbidden(APIError):
    """403: the token's scope does not allow this call."""


class NotFound(APIError):
    """404: no run of that name."""


class Conflict(APIError):
    """409: the request conflicts with the run's history or its definition."""

    @property
    def high_water(self) -> int | None:
        """The run's highest served step, when the conflict is with it."""
        value = self.problem.get("high_water")
        return value if isinstance(value, int) else None

    @property
    def attempt(self) -> int | None:
        """The run's current attempt, when the conflict is a pinned attempt a rewind ended."""
        value = self.problem.get("attempt")
        return value if isinstance(value, int) else None


class TooLarge(APIError):
    """413: the request body is larger than the server accepts."""


class Invalid(APIError):
    """422: invalid input, or a step where the schedule has no value; `errors` names the fields."""


class ServerError(APIError):
    """5xx: the server failed, or stayed unavailable through every retry."""


_BY_STATUS: dict[int, type[APIError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: Invalid,
}


def api_error(status: int, problem: dict[str, Any]) -> APIError:
    """The error class for `status`, carrying the server's problem document."""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    return cls(status, problem)
