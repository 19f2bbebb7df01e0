"""The tokens' SQL, and the admin trail's. Only a token's SHA-256 is stored; the caller owns the
transaction.

The admin trail is one hash chain for the whole server, of the same shape as a run's events:
appends to it are serialized by a lock on its own (`_lock_trail`), so that two administrators'
actions, on any replica, never take the same seq.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, text, update
from sqlalchemy.orm import Session

from ..core.vocabulary import Scope
from .models import AdminEvent, Token
from .store import EventRecord, StoredEvent, append_to_trail, read_trail, utc

ADMIN_TRAIL = "tokens"
"""The admin trail's name in its events' hashes (where a run's events have the run's name)."""
LAST_USE_EVERY = timedelta(minutes=1)
"""A token's last use is written at most this often."""


@dataclass(frozen=True)
class TokenRecord:
    name: str
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None
    runs: list[str] | None = None
    """The run-name patterns it reaches; None: every run."""
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    previous_until: datetime | None = None
    """Until when the secret a rotation replaced is still accepted (None: no rotation pending)."""


def _record(token: Token) -> TokenRecord:
    return TokenRecord(
        name=token.name,
        scope=token.scope,
        created_at=utc(token.created_at),
        revoked_at=token.revoked_at and utc(token.revoked_at),
        runs=token.runs,
        expires_at=token.expires_at and utc(token.expires_at),
        last_used_at=token.last_used_at and utc(token.last_used_at),
        previous_until=token.previous_until and utc(token.previous_until),
    )


class TokenStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def insert(
        self,
        name: str,
        scope: Scope,
        secret_hash: str,
        now: datetime,
        runs: list[str] | None = None,
        expires_at: datetime | None = None,
    ) -> TokenRecord:
        """Add a token; IntegrityError if its name (or hash) is taken, at the flush."""
        token = Token(
            name=name, scope=scope, secret_hash=secret_hash, created_at=now, runs=runs, expires_at=expires_at
        )
        self.session.add(token)
        self.session.flush()
        return _record(token)

    def all(self) -> list[TokenRecord]:
        return [_record(t) for t in self.session.scalars(select(Token).order_by(Token.name))]

    def named(self, name: str) -> TokenRecord | None:
        """The live (unrevoked) token named `name`, if any."""
        token = self.session.scalar(select(Token).where(Token.name == name, Token.revoked_at.is_(None)))
        return None if token is None else _record(token)

    def revoke(self, name: str, now: datetime) -> bool:
        """Revoke the live token named `name`; False if there is none."""
        return self._update(name, revoked_at=now, previous_hash=None, previous_until=None)

    def rotate(self, name: str, secret_hash: str, until: datetime) -> bool:
        """Give the live token `name` a new secret; its current one is accepted until `until`."""
        return self._update(
            name, previous_hash=Token.secret_hash, previous_until=until, secret_hash=secret_hash
        )

    def change(self, name: str, **values: Any) -> bool:
        """Change the live token's scope, patterns or expiry."""
        return self._update(name, **values)

    def _update(self, name: str, **values: Any) -> bool:
        done = self.session.execute(
            update(Token).where(Token.name == name, Token.revoked_at.is_(None)).values(**values)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]  # a CursorResult for UPDATE

    def presented(self, secret_hash: str, now: datetime) -> tuple[TokenRecord, bool] | None:
        """The token whose secret hashes to `secret_hash` (revoked or not), and whether it was its
        current secret (not one a rotation replaced, still in its grace period)."""
        token = self.session.scalar(
            select(Token).where(
                or_(
                    Token.secret_hash == secret_hash,
                    (Token.previous_hash == secret_hash) & (Token.previous_until > now),
                )
            )
        )
        if token is None:
            return None
        return _record(token), token.secret_hash == secret_hash

    def used(self, name: str, now: datetime) -> None:
        """Note a use of the token, if its last noted use is older than LAST_USE_EVERY."""
        stale: ColumnElement[bool] = or_(
            Token.last_used_at.is_(None), Token.last_used_at < now - LAST_USE_EVERY
        )
        self.session.execute(update(Token).where(Token.name == name, stale).values(last_used_at=now))

    # -- the admin trail --------------------------------------------------------------------

    def append(
        self, actor: str, kind: str, at: datetime, reason: str | None, details: dict[str, Any]
    ) -> EventRecord:
        """Append an event to the admin trail, under its lock."""
        _lock_trail(self.session)
        record = EventRecord(0, at, actor, kind, None, None, None, reason, details, "", "")
        return append_to_trail(self.session, AdminEvent, ADMIN_TRAIL, record)

    def trail(
        self, after: int = 0, limit: int | None = None, *, written_order: bool = False
    ) -> list[StoredEvent]:
        return read_trail(self.session, AdminEvent, after, limit, written_order)


def _lock_trail(session: Session) -> None:
    """Serialize appends to the admin trail until the transaction ends: on PostgreSQL a
    transaction-level advisory lock (the trail has no row to lock before its first event); on
    SQLite every writer holds the database's write lock already (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('lrtower.admin_events'))"))
