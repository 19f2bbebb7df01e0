"""tokens limited to runs, expiring and rotating; the admin trail

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:45:00.000000

- tokens: the run-name patterns a token reaches (`runs`, null: every run), when it expires, when
  it was last used, and the secret a rotation replaced, accepted until `previous_until`;
- admin_events: the hash-chained trail of token administration, shaped as a run's events.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("runs", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("previous_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("previous_until", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_tokens_previous_hash", ["previous_hash"])
    op.create_table(
        "admin_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("effective_step", sa.BigInteger(), nullable=True),
        sa.Column("lr_before", sa.JSON(), nullable=True),
        sa.Column("lr_after", sa.JSON(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_events")),
        sa.UniqueConstraint("seq", name=op.f("uq_admin_events_seq")),
    )


def downgrade() -> None:
    op.drop_table("admin_events")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_index("ix_tokens_previous_hash")
        batch.drop_column("previous_until")
        batch.drop_column("previous_hash")
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
        batch.drop_column("runs")
