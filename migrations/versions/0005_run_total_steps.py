"""a run's planned length

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:30:00.000000

- runs: `total_steps`, how many steps the job plans (null: not said), where clients' lookahead
  windows, plots and the console stop. Runs created before this revision have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("total_steps", sa.BigInteger(), nullable=True))
        batch.create_check_constraint("total_steps", "total_steps >= 1")


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("total_steps", type_="check")  # named by the convention: ck_runs_total_steps
        batch.drop_column("total_steps")
