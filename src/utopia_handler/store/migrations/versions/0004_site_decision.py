"""site changed hands: the former customer at an order's site and a person's decision about it

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # All nullable: existing orders were never asked the question.
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("former_customer_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("former_customer_name", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("former_customer_status", sa.String(length=32), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "site_decision",
                sa.Enum(
                    "new_customer",
                    "same_person",
                    name="sitedecision",
                    native_enum=False,
                    length=32,
                ),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("site_decision")
        batch_op.drop_column("former_customer_status")
        batch_op.drop_column("former_customer_name")
        batch_op.drop_column("former_customer_id")
