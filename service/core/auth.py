"""Bearer tokens with scopes read < write < admin, limited to runs, expiring and rotating. Only a
token's SHA-256 is stored.

A token is looked up by the SHA-256 of what the caller presents: an index lookup whose timing
could at most reveal a hash of a 256-bit random secret, which helps no one forge it.
Lookups are cached for `CACHE_SECONDS`, so a revoked (or changed) token stops working within that
time; an expiry, and the end of a rotation's grace period, are checked against the clock at every
request, cached or not. The cache holds at most `CACHE_ENTRIES` lookups, unknown tokens included,
so a flood of made-up tokens costs database reads but never memory.

A token may be limited to runs whose names match one of its patterns (`Reach`): everything about
a run outside them answers 404, as if it did not exist. Every creation, rotation, revocation and
change of a token is an event of the admin trail, a hash chain of its own (`GET /audit`), which
never holds a secret nor its hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db.engine import writer
from ..db.store import StoredEvent
from ..db.tokens import ADMIN_TRAIL, TokenRecord, TokenStore
from ..schedules import FieldError
from ..schemas import VerifyOut, no_control_characters
from . import audit
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


PATTERN = re.compile(r"[A-Za-z0-9._*?-]{1,128}")
"""A run-name pattern: a run name's characters, with `*` (any characters) and `?` (any one)."""
MAX_PATTERNS = 32


@dataclass(frozen=True)
class Reach:
    """The runs a token reaches: those whose name matches one of its patterns (globs of `*`
    and `?`, matched against the whole name, case-sensitively)."""

    patterns: tuple[str, ...]
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        alternatives = (
            "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p) for p in self.patterns
        )
        object.__setattr__(self, "_regex", re.compile("|".join(f"(?:{a})" for a in alternatives)))

    def __call__(self, run: str) -> bool:
        return self._regex.fullmatch(run) is not None


def reach_of(patterns: Sequence[str] | None, field_name: str = "runs") -> Reach | None:
    """The reach of these patterns (None: every run), or a 422 naming the bad one."""
    if patterns is None:
        return None
    if not 1 <= len(patterns) <= MAX_PATTERNS:
        raise Invalid(
            f"give 1 to {MAX_PATTERNS} run-name patterns, or none for every run",
            [FieldError((field_name,), f"{len(patterns)} patterns")],
        )
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or PATTERN.fullmatch(pattern) is None:
            raise Invalid(
                f"invalid run-name pattern {pattern!r}: use a run name's characters (A-Z a-z 0-9 . _ -) "
                "with * for any characters and ? for any one, 1 to 128 of them",
                [FieldError((field_name, i), "not a run-name pattern", pattern)],
            )
    return Reach(tuple(patterns))


@dataclass(frozen=True)
class Caller:
    name: str
    scope: Scope
    reach: Reach | None = None
    """The runs it reaches (None: every run)."""

    def allows(self, needed: Scope) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(needed)

    def reaches(self, run: str) -> bool:
        return self.reach is None or self.reach(run)


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


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Lookup:
    """What a presented secret was found to be: a caller, or why it is refused; and until when
    (by the clock) it stays so, at the latest: an expiry, or a rotation's grace period."""

    caller: Caller | None
    refused: str = "the token is unknown or revoked"
    until: datetime | None = None


class Tokens:
    """The tokens: who a request comes from, and their administration, audited.

    `clock` tells the time for expiries and grace periods (a test's own clock)."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utc_now) -> None:
        self.engine = engine
        self.clock = clock
        self._cache: dict[str, tuple[float, _Lookup]] = {}
        self._noted: dict[str, float] = {}  # token name -> when this process last noted its use
        self._lock = threading.Lock()

    # -- administration, each an event of the admin trail -----------------------------------

    def create(
        self,
        name: str,
        scope: Scope,
        *,
        actor: str,
        runs: Sequence[str] | None = None,
        expires_at: datetime | None = None,
        reason: str | None = None,
    ) -> tuple[TokenRecord, str]:
        """Create a token; returns it and its secret, which is shown this once and stored only hashed."""
        if scope not in SCOPES:
            raise Invalid(
                f"scope must be one of {', '.join(SCOPES)}, got {scope!r}",
                [FieldError(("scope",), "unknown")],
            )
        _check_name(name)
        reach_of(runs)
        now = self.clock()
        _check_expiry(expires_at, now)
        secret = _new_secret()
        patterns = None if runs is None else list(runs)
        try:
            with Session(writer(self.engine)) as session, session.begin():
                store = TokenStore(session)
                token = store.insert(name, scope, hash_secret(secret), now, patterns, expires_at)
                store.append(actor, "token_created", now, reason, _described(token))
        except IntegrityError:
            raise Conflict(f"a token named {name!r} exists") from None
        return token, secret

    def rotate(
        self, name: str, grace: timedelta, *, actor: str, reason: str | None = None
    ) -> tuple[TokenRecord, str]:
        """Give the token a new secret; the current one keeps working for `grace`, then stops."""
        if grace < timedelta(0):
            raise Invalid("the grace period cannot be negative", [FieldError(("grace_seconds",), "below 0")])
        now = self.clock()
        secret = _new_secret()
        with Session(writer(self.engine)) as session, session.begin():
            store = TokenStore(session)
            if not store.rotate(name, hash_secret(secret), now + grace):
                raise NotFound(f"no live token named {name!r}")
            token = store.named(name)
            assert token is not None  # updated just now, under this transaction
            store.append(
                actor,
                "token_rotated",
                now,
                reason,
                {**_described(token), "grace_seconds": grace.total_seconds()},
            )
        self._forget()
        return token, secret

    def revoke(self, name: str, *, actor: str, reason: str | None = None) -> None:
        now = self.clock()
        with Session(writer(self.engine)) as session, session.begin():
            store = TokenStore(session)
            token = store.named(name)
            if token is None or not store.revoke(name, now):
                raise NotFound(f"no live token named {name!r}")
            store.append(actor, "token_revoked", now, reason, {"token": name})
        self._forget()

    def change(
        self,
        name: str,
        *,
        actor: str,
        scope: Scope | None = None,
        runs: Sequence[str] | None = None,
        every_run: bool = False,
        expires_at: datetime | None = None,
        never_expires: bool = False,
        reason: str | None = None,
    ) -> TokenRecord:
        """Change a token's scope, its patterns (`every_run` lifts them), or its expiry."""
        values: dict[str, Any] = {}
        if scope is not None:
            if scope not in SCOPES:
                raise Invalid(
                    f"scope must be one of {', '.join(SCOPES)}", [FieldError(("scope",), "unknown")]
                )
            values["scope"] = scope
        if runs is not None or every_run:
            reach_of(runs)
            values["runs"] = None if every_run else list(runs or ())
        now = self.clock()
        if expires_at is not None or never_expires:
            _check_expiry(expires_at, now)
            values["expires_at"] = None if never_expires else expires_at
        if not values:
            raise Invalid(
                "nothing to change: give a scope, patterns or an expiry", [FieldError((), "empty change")]
            )
        with Session(writer(self.engine)) as session, session.begin():
            store = TokenStore(session)
            before = store.named(name)
            if before is None or not store.change(name, **values):
                raise NotFound(f"no live token named {name!r}")
            token = store.named(name)
            assert token is not None
            store.append(
                actor, "token_changed", now, reason, {**_described(token), "before": _described(before)}
            )
        self._forget()
        return token

    def all(self) -> list[TokenRecord]:
        with Session(self.engine) as session:
            return TokenStore(session).all()

    def trail(self, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        with Session(self.engine) as session:
            return TokenStore(session).trail(after, limit)

    def verify(self) -> VerifyOut:
        with Session(self.engine) as session:
            return audit.verify_chain(ADMIN_TRAIL, TokenStore(session).trail(written_order=True))

    # -- who a request comes from -----------------------------------------------------------

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
        found = cached[1]
        if found.caller is None:
            raise Unauthorized(found.refused, invalid=True)
        if found.until is not None and self.clock() >= found.until:
            raise Unauthorized(_ended(found), invalid=True)
        return found.caller

    def cached(self, header: str | None) -> Caller | None:
        """The caller behind `header` if the cache knows it, it is still fresh and still valid;
        None if not (unknown, expired or malformed: `authenticate` finds out, and explains)."""
        presented = _presented(header)
        cached = None if presented is None else self._cache.get(presented)
        if cached is None or cached[0] < time.monotonic():
            return None
        found = cached[1]
        if found.until is not None and self.clock() >= found.until:
            return None
        return found.caller

    def _lookup(self, presented: str) -> _Lookup:
        now = self.clock()
        with Session(self.engine) as session:
            found = TokenStore(session).presented(presented, now)
        if found is None:
            return _Lookup(None)
        token, current = found
        if token.revoked_at is not None:
            return _Lookup(None)
        if token.expires_at is not None and now >= token.expires_at:
            return _Lookup(None, f"token {token.name!r} expired at {token.expires_at:%Y-%m-%d %H:%M:%S} UTC")
        ends = [t for t in (token.expires_at, None if current else token.previous_until) if t is not None]
        self._note_use(token.name, now)
        caller = Caller(token.name, token.scope, reach_of(token.runs))
        return _Lookup(caller, until=min(ends) if ends else None)

    def _note_use(self, name: str, now: datetime) -> None:
        """Write the token's last use, at most once a minute (here, and in the database)."""
        seen = time.monotonic()
        if seen - self._noted.get(name, -1e9) < 60:
            return
        self._noted[name] = seen
        with Session(writer(self.engine)) as session, session.begin():
            TokenStore(session).used(name, now)

    def _forget(self) -> None:
        with self._lock:
            self._cache.clear()


def _ended(found: _Lookup) -> str:
    assert found.caller is not None and found.until is not None
    return f"token {found.caller.name!r} expired at {found.until:%Y-%m-%d %H:%M:%S} UTC"


def _new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _check_expiry(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
        raise Invalid(
            "a token's expiry must be a time in the future, with its zone",
            [FieldError(("expires_at",), "in the past")],
        )


def _described(token: TokenRecord) -> dict[str, Any]:
    """A token as the admin trail records it: never its secret, nor a hash of it."""
    return {
        "token": token.name,
        "scope": token.scope,
        "runs": token.runs,
        "expires_at": None if token.expires_at is None else token.expires_at.isoformat(),
    }
