"""The request headers the hot path and the routes read: one reading for both, so that the two
cannot answer one request differently.

A second `Authorization` header is refused (400) rather than resolved one way here and another
way there; of other headers given twice, the first counts, as in Starlette's `Headers.get`.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

_USABLE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_PREFIX = os.urandom(12).hex().encode()
_SERIAL = itertools.count()


@dataclass(frozen=True, slots=True)
class RequestHeaders:
    """The headers the hot path and the routes read, each the first given."""

    authorization: bytes | None
    accept: bytes
    request_id: bytes | None
    authorization_twice: bool


def read_headers(raw: Sequence[tuple[bytes, bytes]]) -> RequestHeaders:
    """Read an ASGI scope's headers (names are lowercase there) in one pass."""
    authorization = accept = request_id = None
    twice = False
    for name, value in raw:
        if name == b"authorization":
            if authorization is None:
                authorization = value
            else:
                twice = True
        elif name == b"accept" and accept is None:
            accept = value
        elif name == b"x-request-id" and request_id is None:
            request_id = value
    return RequestHeaders(authorization, accept or b"", request_id, twice)


def request_id(asked: bytes | None) -> bytes:
    """The id an answer carries in `X-Request-ID`: the caller's, if usable (at most 128 of
    `A-Za-z0-9._:-`, so that it is safe in any log or header), else a new one: this process's
    random prefix and a counter, unique without a system call per answer (the hot path makes one
    for nearly every answer)."""
    if asked is not None and _USABLE_ID.fullmatch(asked):
        return asked
    return b"%s%08x" % (_PREFIX, next(_SERIAL))
