"""/tokens and /audit: token administration, and the admin trail that records it (admin tokens
that reach every run)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request

from ...core.auth import Tokens
from ...core.problems import Problem
from ...db.tokens import TokenRecord
from ...schemas import (
    SEQ_MAX,
    AuditPage,
    EventOut,
    TokenChange,
    TokenCreate,
    TokenName,
    TokenOut,
    TokenRevoke,
    TokenRotate,
    TokenSecret,
    VerifyOut,
    problems,
)
from ..deps import Administrator
from ..wire import QueryInt

router = APIRouter(tags=["tokens"], responses=problems(401, 403, 404, 409, 413, 422))


def tokens_of(request: Request) -> Tokens:
    tokens: Tokens | None = request.app.state.tokens
    if tokens is None:
        raise Problem("this server runs without tokens (--no-auth): there are none to administer")
    return tokens


def token_out(token: TokenRecord) -> TokenOut:
    return TokenOut.model_validate(token, from_attributes=True)


@router.get("/tokens", response_model=list[TokenOut], name="list_tokens")
def list_tokens(request: Request, caller: Administrator) -> list[TokenOut]:
    """Every token, revoked ones included: scope, the runs it reaches, expiry, last use."""
    return [token_out(t) for t in tokens_of(request).all()]


@router.post("/tokens", response_model=TokenSecret, status_code=201, name="create_token")
def create_token(request: Request, body: TokenCreate, caller: Administrator) -> TokenSecret:
    """Create a token. Its secret is in this answer only: the server keeps its SHA-256."""
    tokens = tokens_of(request)
    expires = None if body.expires_in_days is None else tokens.clock() + timedelta(days=body.expires_in_days)
    token, secret = tokens.create(
        body.name, body.scope, actor=caller.name, runs=body.runs, expires_at=expires, reason=body.reason
    )
    return TokenSecret(token=token_out(token), secret=secret)


@router.post("/tokens/{name}/rotate", response_model=TokenSecret, name="rotate_token")
def rotate_token(request: Request, name: TokenName, body: TokenRotate, caller: Administrator) -> TokenSecret:
    """Give the token a new secret (in this answer only); the old one works `grace_seconds` more."""
    token, secret = tokens_of(request).rotate(
        name, timedelta(seconds=body.grace_seconds), actor=caller.name, reason=body.reason
    )
    return TokenSecret(token=token_out(token), secret=secret)


@router.patch("/tokens/{name}", response_model=TokenOut, name="change_token")
def change_token(request: Request, name: TokenName, body: TokenChange, caller: Administrator) -> TokenOut:
    """Change the token's scope, the runs it reaches, or its expiry; servers apply it within seconds."""
    tokens = tokens_of(request)
    expires = None if body.expires_in_days is None else tokens.clock() + timedelta(days=body.expires_in_days)
    token = tokens.change(
        name,
        actor=caller.name,
        scope=body.scope,
        runs=body.runs,
        every_run=body.every_run,
        expires_at=expires,
        never_expires=body.never_expires,
        reason=body.reason,
    )
    return token_out(token)


@router.post("/tokens/{name}/revoke", response_model=TokenOut, name="revoke_token")
def revoke_token(request: Request, name: TokenName, body: TokenRevoke, caller: Administrator) -> TokenOut:
    """Revoke the token: servers stop accepting it within seconds (5 at most)."""
    tokens = tokens_of(request)
    tokens.revoke(name, actor=caller.name, reason=body.reason)
    return token_out(next(t for t in tokens.all() if t.name == name))


@router.get("/audit", response_model=AuditPage, name="list_admin_events")
def audit_trail(
    request: Request,
    caller: Administrator,
    after: Annotated[int, Query(ge=0, le=SEQ_MAX), QueryInt] = 0,
    limit: Annotated[int, Query(ge=1, le=1000), QueryInt] = 100,
) -> AuditPage:
    """The admin trail, oldest first: who created, rotated, revoked or changed which token, when and
    why. It never holds a secret, nor a hash of one."""
    found = tokens_of(request).trail(after, limit)
    return AuditPage(events=[EventOut.model_validate(e, from_attributes=True) for e in found])


@router.get("/audit/verify", response_model=VerifyOut, name="verify_admin_events")
def verify_audit(request: Request, caller: Administrator) -> VerifyOut:
    """Recompute the admin trail's hash chain: any edited or deleted event breaks it."""
    return tokens_of(request).verify()
