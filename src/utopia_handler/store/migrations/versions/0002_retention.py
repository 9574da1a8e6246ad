"""retention: callback bodies may be purged, orders record when their payloads were purged

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A purged callback keeps its ref, msg, outcome and time; only the raw body goes.
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.alter_column("body", existing_type=sa.Text(), nullable=True)
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
    op.execute("UPDATE callbacks SET body = '' WHERE body IS NULL")
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.alter_column("body", existing_type=sa.Text(), nullable=False)
