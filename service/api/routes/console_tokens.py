"""/ui/tokens: token administration in the console, for admin tokens that reach every run.

List, create (with run patterns and an expiry; the secret is shown once, on the page that answers
the form), rotate and revoke, each with a reason, each an event of the admin trail.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from ...core.auth import Caller, Forbidden
from ...core.problems import Problem
from ...schemas import TokenCreate, TokenRotate
from .console import Viewer, form_of, page
from .tokens import tokens_of

router = APIRouter(prefix="/ui", include_in_schema=False)


def _administrator(viewer: Caller) -> Caller:
    if not viewer.allows("admin") or viewer.reach is not None:
        raise Forbidden(f"token {viewer.name!r}: the tokens page needs an admin token that reaches every run")
    return viewer


def _tokens_page(
    request: Request, viewer: Caller, secret: tuple[str, str] | None = None, error: str | None = None
) -> Response:
    """The tokens, the admin trail's last events, and the secret a form just made (shown this once)."""
    tokens = tokens_of(request)
    context = {
        "live": False,  # a refresh would wipe a secret shown once
        "tokens": tokens.all(),
        "trail": list(reversed(tokens.trail())),
        "verify": tokens.verify(),
        "secret": secret,
        "error": error,
        "viewer": viewer,
    }
    return page(request, "tokens.html", context, status_code=200 if error is None else 422)


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, viewer: Viewer) -> Response:
    return _tokens_page(request, _administrator(viewer))


@router.post("/tokens")
async def create_form(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request, _administrator(viewer), "admin")
    tokens = tokens_of(request)
    try:
        body = TokenCreate(
            name=form.get("name", ""),
            scope=form.get("scope", "read"),  # type: ignore[arg-type]  # validated by the model
            runs=[p.strip() for p in form.get("runs", "").split(",") if p.strip()] or None,
            expires_in_days=int(form["expires_in_days"]) if form.get("expires_in_days") else None,
            reason=form.get("reason") or None,
        )
        expires = (
            None if body.expires_in_days is None else tokens.clock() + timedelta(days=body.expires_in_days)
        )
        token, secret = tokens.create(
            body.name, body.scope, actor=viewer.name, runs=body.runs, expires_at=expires, reason=body.reason
        )
    except (ValueError, ValidationError) as exc:
        return _tokens_page(request, viewer, error=f"invalid token: {exc}")
    except Problem as exc:
        return _tokens_page(request, viewer, error=exc.detail)
    return _tokens_page(request, viewer, secret=(token.name, secret))


@router.post("/tokens/{name}/rotate")
async def rotate_form(request: Request, name: str, viewer: Viewer) -> Response:
    form = await form_of(request, _administrator(viewer), "admin")
    try:
        body = TokenRotate(
            grace_seconds=int(form.get("grace_seconds") or 3600), reason=form.get("reason") or None
        )
        token, secret = tokens_of(request).rotate(
            name, timedelta(seconds=body.grace_seconds), actor=viewer.name, reason=body.reason
        )
    except (ValueError, ValidationError) as exc:
        return _tokens_page(request, viewer, error=f"invalid rotation: {exc}")
    except Problem as exc:
        return _tokens_page(request, viewer, error=exc.detail)
    return _tokens_page(request, viewer, secret=(token.name, secret))


@router.post("/tokens/{name}/revoke")
async def revoke_form(request: Request, name: str, viewer: Viewer) -> Response:
    form = await form_of(request, _administrator(viewer), "admin")
    try:
        tokens_of(request).revoke(name, actor=viewer.name, reason=form.get("reason") or None)
    except Problem as exc:
        return _tokens_page(request, viewer, error=exc.detail)
    return RedirectResponse("/ui/tokens", status_code=303)
