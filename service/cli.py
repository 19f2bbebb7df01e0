"""The `lrtower` command: serve, and manage the database."""

from __future__ import annotations

import click
import uvicorn
from sqlalchemy.engine import make_url

from . import migrate
from .config import Settings
from .db import make_engine


@click.group()
def main() -> None:
    """lrtower: a control tower for learning rates."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Serve the API. On the embedded SQLite default, migrations are applied first."""
    settings = Settings()
    engine = make_engine(settings)
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        migrate.upgrade(engine)
    engine.dispose()
    click.echo(f"lrtower serving http://{host}:{port} (database {settings.database_url})")
    uvicorn.run("lrtower_server.app:create_app", factory=True, host=host, port=port)


@main.group()
def db() -> None:
    """Database schema."""


@db.command()
def upgrade() -> None:
    """Apply every pending migration."""
    settings = Settings()
    engine = make_engine(settings)
    migrate.upgrade(engine)
    click.echo(f"database at {migrate.current(engine)}")
