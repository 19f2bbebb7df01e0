"""The server's commands of `lrtower`: serve, and manage the database and tokens.

The `lrtower` command itself lives in the client package (`lrtower.cli`), which loads these
only when one of them is run, so its client commands work without the server installed.
"""

from __future__ import annotations

import getpass
import json
import os
import tempfile
from datetime import UTC, datetime, timedelta

import click
import uvicorn
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from .api.observability import log_config
from .api.protocol import ReadDeadline
from .core.auth import Tokens
from .core.config import Settings
from .core.problems import Problem
from .core.vocabulary import SCOPES, Scope
from .db import migrate
from .db.engine import make_engine
from .db.tokens import TokenRecord

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@click.option(
    "--database-url", envvar="LRTOWER_DATABASE_URL", help="Database URL (default: sqlite:///lrtower.db)."
)
@click.option(
    "--auth/--no-auth",
    default=None,
    help="Require bearer tokens, or not. Default: $LRTOWER_AUTH, else required unless on loopback only.",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="Log every request (it costs a good share of the hot path's time).",
)
def serve(
    host: str, port: int, workers: int, database_url: str | None, auth: bool | None, access_log: bool
) -> None:
    """Serve the API. On the embedded SQLite default, migrations are applied first.

    Bearer tokens are required, unless the server listens on loopback only or --no-auth is given.
    """
    if database_url:
        os.environ["LRTOWER_DATABASE_URL"] = database_url
    settings = Settings()
    if auth is None:
        required = host not in LOOPBACK if settings.auth is None else settings.auth == "required"
    else:
        required = auth
    if not required and host not in LOOPBACK:
        click.echo(
            f"warning: serving {host} without authentication: anyone who reaches it can change runs; it "
            f"answers only the Host names in LRTOWER_ALLOWED_HOSTS ({','.join(settings.allowed_hosts)})",
            err=True,
        )
    # The workers build their app from the environment (uvicorn's factory), so settle it here.
    os.environ["LRTOWER_AUTH"] = "required" if required else "off"
    engine = make_engine(settings)
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        migrate.upgrade(engine)
    engine.dispose()
    mode = "tokens required" if required else "no auth"
    click.echo(f"lrtower serving http://{host}:{port} ({mode}; database {settings.database_url})")
    click.echo(f"console: http://{host}:{port}/ui")
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker writes its metrics here; /metrics adds them up, whichever worker answers.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="lrtower-metrics-")
    uvicorn.run(
        "lrtower_server.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=ReadDeadline,
        access_log=access_log,
        log_config=log_config(access_log),
    )


@click.group()
def token() -> None:
    """API tokens (stored hashed; a secret is shown once). Every change is in the admin trail."""


def _actor(actor: str | None) -> str:
    """Who a command acts as, in the admin trail: `--actor`, else the operating system's user."""
    return actor or getpass.getuser()


ACTOR = click.option("--actor", help="Who acts, for the admin trail. Default: the OS user.")
REASON = click.option("--reason", help="Why, for the admin trail.")
RUNS = click.option(
    "--runs",
    "runs",
    multiple=True,
    metavar="PATTERN",
    help="Reach only runs whose name matches (* any characters, ? any one); repeatable. Default: every run.",
)
EXPIRES = click.option(
    "--expires", metavar="WHEN", help="90d, 12h, 30m, 2w, or a date/time (UTC unless given)."
)


@token.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(SCOPES), default="write", show_default=True)
@RUNS
@EXPIRES
@ACTOR
@REASON
def token_create(
    name: str, scope: Scope, runs: tuple[str, ...], expires: str | None, actor: str | None, reason: str | None
) -> None:
    """Create a token and print its secret, once."""
    tokens = Tokens(_migrated_engine())
    try:
        _, secret = tokens.create(
            name,
            scope,
            actor=_actor(actor),
            runs=list(runs) or None,
            expires_at=_when(expires, tokens.clock()),
            reason=reason,
        )
    except Problem as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(secret)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def token_list(as_json: bool) -> None:
    """List tokens: name, scope, runs reached, created, expires, last used, state."""
    found = Tokens(_migrated_engine()).all()
    if as_json:
        click.echo(json.dumps([_token_json(t) for t in found], indent=2))
        return
    rows = [["NAME", "SCOPE", "RUNS", "CREATED", "EXPIRES", "LAST USED", "STATE"]]
    for t in found:
        state = f"revoked {_at(t.revoked_at)}" if t.revoked_at else "live"
        if t.previous_until and not t.revoked_at:
            state += f" (old secret until {_at(t.previous_until)})"
        rows.append([t.name, t.scope, ",".join(t.runs) if t.runs else "*", _at(t.created_at),
                     _at(t.expires_at) or "never", _at(t.last_used_at) or "never", state])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@token.command("rotate")
@click.argument("name")
@click.option(
    "--grace",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="How long the old secret still works.",
)
@ACTOR
@REASON
def token_rotate(name: str, grace: str, actor: str | None, reason: str | None) -> None:
    """Give a token a new secret and print it, once; the old one stops after the grace period."""
    try:
        _, secret = Tokens(_migrated_engine()).rotate(
            name, _duration(grace), actor=_actor(actor), reason=reason
        )
    except Problem as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(secret)


@token.command("change")
@click.argument("name")
@click.option("--scope", type=click.Choice(SCOPES))
@RUNS
@click.option("--every-run", is_flag=True, help="Lift the token's run patterns: it reaches every run.")
@EXPIRES
@click.option("--never-expires", is_flag=True, help="Lift the token's expiry.")
@ACTOR
@REASON
def token_change(
    name: str,
    scope: Scope | None,
    runs: tuple[str, ...],
    every_run: bool,
    expires: str | None,
    never_expires: bool,
    actor: str | None,
    reason: str | None,
) -> None:
    """Change a token's scope, the runs it reaches, or its expiry (servers apply it within seconds)."""
    tokens = Tokens(_migrated_engine())
    try:
        changed = tokens.change(
            name,
            actor=_actor(actor),
            scope=scope,
            runs=list(runs) or None,
            every_run=every_run,
            expires_at=_when(expires, tokens.clock()),
            never_expires=never_expires,
            reason=reason,
        )
    except Problem as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(json.dumps(_token_json(changed)))


@token.command("revoke")
@click.argument("name")
@ACTOR
@REASON
def token_revoke(name: str, actor: str | None, reason: str | None) -> None:
    """Revoke a token (servers stop accepting it within seconds)."""
    try:
        Tokens(_migrated_engine()).revoke(name, actor=_actor(actor), reason=reason)
    except Problem as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"revoked {name}")


@token.command("audit")
@click.option("--verify", is_flag=True, help="Check the trail's hash chain instead: exit 1 if it is broken.")
def token_audit(verify: bool) -> None:
    """The admin trail: every creation, rotation, revocation and change of a token."""
    tokens = Tokens(_migrated_engine())
    if verify:
        result = tokens.verify()
        if not result.ok:
            raise click.ClickException(f"BROKEN at event {result.first_bad_seq} of {result.count}")
        click.echo(f"ok: {result.count} events")
        return
    for e in tokens.trail():
        token_name = (e.details or {}).get("token", "")
        click.echo(f"{e.seq}  {_at(e.at)}  {e.actor}  {e.kind}  {token_name}  {e.reason or ''}".rstrip())


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `45s`, `2w` as a timedelta."""
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.isdigit():
        raise click.BadParameter(f"{text!r}: give a whole number and a unit, s, m, h, d or w (90d, 1h)")
    return timedelta(seconds=int(number) * _UNITS[unit])


def _when(text: str | None, now: datetime) -> datetime | None:
    """An expiry: a duration from now (`90d`), or a date or date/time (UTC unless it says)."""
    if text is None:
        return None
    if text[-1:] in _UNITS and text[:-1].isdigit():
        return now + _duration(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: give a duration (90d) or a date (2027-03-01)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _at(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def _token_json(t: TokenRecord) -> dict[str, object]:
    return {
        "name": t.name,
        "scope": t.scope,
        "runs": t.runs,
        "created_at": t.created_at.isoformat(),
        "expires_at": t.expires_at and t.expires_at.isoformat(),
        "last_used_at": t.last_used_at and t.last_used_at.isoformat(),
        "revoked_at": t.revoked_at and t.revoked_at.isoformat(),
        "previous_until": t.previous_until and t.previous_until.isoformat(),
    }


def _migrated_engine() -> Engine:
    engine = make_engine(Settings())
    if not migrate.is_at_head(engine):
        raise click.ClickException("the database is not at the latest migration: run `lrtower db upgrade`")
    return engine


@click.group()
def db() -> None:
    """Database schema."""


@db.command()
def upgrade() -> None:
    """Apply every pending migration."""
    settings = Settings()
    engine = make_engine(settings)
    migrate.upgrade(engine)
    click.echo(f"database at {migrate.current(engine)}")
