"""what a job ran while it could not reach the tower, as the record of unserved steps

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 15:30:00.000000

- changes: kind `ran`, the LRs (and momentum) a job reported it ran on steps
  `effective_step`..`to_step` that nobody had been served: those steps answer them from then on;
- runs: `divergence`, the seq of the latest fallback event that found a rank ran other LRs than
  the tower served (null: none), which every `/lr` answer of the run names in a header.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("to_step", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("lrs", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("momentum", sa.JSON(), nullable=True))
        batch.drop_constraint("kind", type_="check")  # named by the convention: ck_changes_kind
        batch.create_check_constraint("kind", "kind IN ('schedule', 'scale', 'plateau', 'ran')")
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("divergence", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("divergence")
    op.execute("DELETE FROM changes WHERE kind = 'ran'")
    with op.batch_alter_table("changes") as batch:
        batch.drop_constraint("kind", type_="check")
        batch.create_check_constraint("kind", "kind IN ('schedule', 'scale', 'plateau')")
        batch.drop_column("momentum")
        batch.drop_column("lrs")
        batch.drop_column("to_step")
