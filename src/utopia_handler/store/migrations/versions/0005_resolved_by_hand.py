"""resolved by hand becomes a column instead of a prefix of the reason text

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# What actions.resolve_order wrote before this column existed.
_OLD_PREFIX = "resolved by hand by %"


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("resolved_by_hand", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    orders = sa.table(
        "orders",
        sa.column("state", sa.String()),
        sa.column("reason", sa.Text()),
        sa.column("resolved_by_hand", sa.Boolean()),
    )
    op.execute(
        orders.update()
        .where(orders.c.state == "done", orders.c.reason.like(_OLD_PREFIX))
        .values(resolved_by_hand=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("resolved_by_hand")
