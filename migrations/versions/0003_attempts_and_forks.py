"""attempts and forks: rewind a run to a served step, branch a run into a new one

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:15:00.000000

- runs: the current `attempt`, and the lineage of a fork (`parent`, `forked_at`, `parent_head`);
- changes and metrics: the attempt that made them, and the one whose rewind discarded them;
  a change's `decided_at` (the last step its decision saw), a metric's plateau state after it;
- metrics: one counted value per (run, name, step), the discarded ones kept beside it;
- attempts: one row per rewind.

Rows written before this revision are attempt 1. Their changes get `decided_at` =
effective_step - 1, the latest it can have been; their metrics carry no plateau state, so a
rewind below the last of them that discards one is refused (see `core/branching.py`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("parent", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("forked_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("parent_head", sa.String(length=64), nullable=True))
        batch.create_check_constraint("attempt", "attempt >= 1")
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("decided_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("discarded_in", sa.Integer(), nullable=True))
    op.execute("UPDATE changes SET decided_at = effective_step - 1")
    with op.batch_alter_table("changes") as batch:
        batch.alter_column("decided_at", existing_type=sa.BigInteger(), nullable=False)
    with op.batch_alter_table("metrics") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("discarded_in", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("plateau", sa.JSON(), nullable=True))
        batch.drop_constraint("uq_metrics_run_id_name_step", type_="unique")
    op.create_index(
        op.f("uq_metrics_counted"),
        "metrics",
        ["run_id", "name", "step"],
        unique=True,
        sqlite_where=sa.text("discarded_in IS NULL"),
        postgresql_where=sa.text("discarded_in IS NULL"),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("rewound_to", sa.BigInteger(), nullable=False),
        sa.Column("discarded_to", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_attempts_run_id_runs"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        sa.UniqueConstraint("run_id", "number", name=op.f("uq_attempts_run_id_number")),
    )


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_index("uq_metrics_counted", table_name="metrics")
    op.execute("DELETE FROM metrics WHERE discarded_in IS NOT NULL")
    with op.batch_alter_table("metrics") as batch:
        batch.create_unique_constraint("uq_metrics_run_id_name_step", ["run_id", "name", "step"])
        batch.drop_column("plateau")
        batch.drop_column("discarded_in")
        batch.drop_column("attempt")
    op.execute("DELETE FROM changes WHERE discarded_in IS NOT NULL")
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("discarded_in")
        batch.drop_column("attempt")
        batch.drop_column("decided_at")
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("attempt", type_="check")  # named by the convention: ck_runs_attempt
        batch.drop_column("parent_head")
        batch.drop_column("forked_at")
        batch.drop_column("parent")
        batch.drop_column("attempt")
