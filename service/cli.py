"""The server's commands of `lrtower`: serve, and manage the database and tokens.

The `lrtower` command itself lives in the client package (`lrtower.cli`), which loads these
only when one of them is run, so its client commands work without the server installed.
"""

from __future__ import annotations

import os
import tempfile

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
    """API tokens (stored hashed; a secret is shown once)."""


@token.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(SCOPES), default="write", show_default=True)
def token_create(name: str, scope: Scope) -> None:
    """Create a token and print its secret, once."""
    try:
        secret = Tokens(_migrated_engine()).create(name, scope)
    except Problem as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(secret)


@token.command("list")
def token_list() -> None:
    """List tokens: name, scope, created, revoked."""
    for info in Tokens(_migrated_engine()).list():
        revoked = f"revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "live"
        click.echo(f"{info.name}\t{info.scope}\t{info.created_at:%Y-%m-%d %H:%M}\t{revoked}")


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke a token (servers stop accepting it within seconds)."""
    try:
        Tokens(_migrated_engine()).revoke(name)
    except Problem as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"revoked {name}")


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
