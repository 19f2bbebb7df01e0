"""One error base for everything lrtower refuses: a `Problem` names its HTTP status and title,
the reason, and every bad field with its path. The API answers it as problem+json (api/errors.py);
the command line prints its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..schedules import FieldError

TYPE_BASE = "urn:lrtower:problem:"


class Problem(Exception):
    """An error answered as problem+json. Subclasses fix the status and title."""

    status = 400
    title = "Bad request"
    kind = "bad-request"

    def __init__(
        self,
        detail: str,
        errors: Sequence[FieldError] = (),
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = [_field(e) for e in self.errors]
        body.update(self.extra)
        return body


class NotFound(Problem):
    status, title, kind = 404, "Not found", "not-found"


class Conflict(Problem):
    status, title, kind = 409, "Conflict", "conflict"


class Invalid(Problem):
    status, title, kind = 422, "Invalid request", "invalid"


class NoValue(Problem):
    status, title, kind = 422, "No learning rate at this step", "no-value"


class Unavailable(Problem):
    status, title, kind = 503, "Service unavailable", "unavailable"


class Internal(Problem):
    status, title, kind = 500, "Internal server error", "internal"


def _field(error: FieldError) -> dict[str, Any]:
    return {
        "loc": list(error.loc),
        "field": ".".join(str(part) for part in error.loc),
        "msg": error.msg,
    }
