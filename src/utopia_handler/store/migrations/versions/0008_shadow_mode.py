"""shadow mode: orders received in it, and the writes it recorded instead of sending

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("shadow", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "shadow_writes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("run", sa.Integer(), nullable=True),
        sa.Column("step", sa.String(length=32), nullable=True),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("shadow_writes", schema=None) as batch_op:
        batch_op.create_index("ix_shadow_writes_order_id", ["order_id"], unique=False)


def downgrade() -> None:
    op.drop_table("shadow_writes")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("shadow")
