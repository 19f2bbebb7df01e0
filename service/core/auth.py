"""Bearer tokens with scopes read < write < admin. Only a token's SHA-256 is stored.

A token is looked up by the SHA-256 of what the caller presents: an index lookup whose timing
could at most reveal a hash of a 256-bit random secret, which helps no one forge it.
Lookups are cached for `CACHE_SECONDS`, so a revoked token stops working within that time. The
cache holds at most `CACHE_ENTRIES` lookups, unknown tokens included, so a flood of made-up
tokens costs database reads but never memory.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db.engine import writer
from ..db.store import TokenRecord, TokenStore
from ..schedules import FieldError
from ..schemas import no_control_characters
from .problems import Conflict, Invalid, NotFound, Problem
from .vocabulary import SCOPES, Scope

PREFIX = "lrt_"
CACHE_SECONDS = 5.0
CACHE_ENTRIES = 4096
ANONYMOUS = "anonymous"


class Unauthorized(Problem):
    status, title, kind = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str, extra: dict[str, Any] | None = None, invalid: bool = False) -> None:
        # RFC 6750 §3: a 401 names the scheme it wants, and says when the token sent was not valid.
        challenge = 'Bearer realm="lrtower"' + (', error="invalid_token"' if invalid else "")
        super().__init__(detail, extra=extra, headers={"WWW-Authenticate": challenge})


class Forbidden(Problem):
    status, title, kind = 403, "Forbidden", "forbidden"


@dataclass(frozen=True)
class Caller:
    name: str
    scope: Scope

    def allows(self, needed: Scope) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(needed)


NAME_MAX = 128
"""A token's name is the actor of its writes, kept in 128-character columns."""


def _check_name(name: str) -> None:
    """A token's name is shown as the actor of every write made with it, in every audit trail:
    1 to NAME_MAX characters, none of them a control character."""
    try:
        if not 1 <= len(name) <= NAME_MAX:
            raise ValueError(f"must have 1 to {NAME_MAX} characters, not {len(name)}")
        no_control_characters(name)
    except ValueError as exc:
        raise Invalid(
            f"invalid token name {name!r}: {exc}", [FieldError(("name",), str(exc), name)]
        ) from None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _presented(header: str | None) -> str | None:
    """The hash of the token in an `Authorization: Bearer <token>` header; None if there is none.
    The scheme's name is case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` are Bearer."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return hash_secret(token.strip())


class Tokens:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cache: dict[str, tuple[float, Caller | None]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, scope: Scope) -> str:
        """Create a token; returns its secret, which is shown this once and stored only hashed."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        _check_name(name)
        secret = PREFIX + secrets.token_urlsafe(32)
        try:
            with Session(writer(self.engine)) as session, session.begin():
                TokenStore(session).insert(name, scope, hash_secret(secret), datetime.now(UTC))
        except IntegrityError:
            raise Conflict(f"a token named {name!r} exists") from None
        return secret

    def list(self) -> list[TokenRecord]:
        with Session(self.engine) as session:
            return TokenStore(session).all()

    def revoke(self, name: str) -> None:
        with Session(writer(self.engine)) as session, session.begin():
            if not TokenStore(session).revoke(name, datetime.now(UTC)):
                raise NotFound(f"no live token named {name!r}")
        with self._lock:
            self._cache.clear()

    def authenticate(self, header: str | None) -> Caller:
        """The caller behind an `Authorization: Bearer <token>` header, or 401."""
        presented = _presented(header)
        if presented is None:
            raise Unauthorized("send `Authorization: Bearer <token>`", extra={"hint": "lrtower token create"})
        now = time.monotonic()
        cached = self._cache.get(presented)
        if cached is None or cached[0] < now:
            cached = (now + CACHE_SECONDS, self._lookup(presented))
            with self._lock:
                self._cache.pop(presented, None)
                self._cache[presented] = cached
                while len(self._cache) > CACHE_ENTRIES:  # the oldest lookup goes first
                    del self._cache[next(iter(self._cache))]
        if cached[1] is None:
            raise Unauthorized("the token is unknown or revoked", invalid=True)
        return cached[1]

    def cached(self, header: str | None) -> Caller | None:
        """The caller behind `header` if the cache knows it and it is still fresh; None if not
        (unknown, expired or malformed: `authenticate` finds out, and explains)."""
        presented = _presented(header)
        cached = None if presented is None else self._cache.get(presented)
        if cached is None or cached[0] < time.monotonic():
            return None
        return cached[1]

    def _lookup(self, presented: str) -> Caller | None:
        with Session(self.engine) as session:
            token = TokenStore(session).live(presented)
        return None if token is None else Caller(token.name, token.scope)
