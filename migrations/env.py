"""Alembic environment: runs on the connection lrtower hands it (see lrtower_server.db.migrate)."""

from __future__ import annotations

from alembic import context

from lrtower_server.db.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them; batch mode does that portably
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
