"""orders.customer_name_folded: the customer's name without case or accents, for the search

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 09:00:00.000000

Numbered 0009 and based on 0006 because 0007 and 0008 are being written in other branches; the
merge relinks `down_revision` to the newest of them. Nothing here depends on them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from utopia_handler.addresses import normalise_name

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_name_folded", sa.String(length=200), nullable=True))
    # Folding accents is Python's (unicodedata), so existing names are folded here, row by row.
    orders = sa.table(
        "orders",
        sa.column("id", sa.Integer()),
        sa.column("customer_name", sa.String()),
        sa.column("customer_name_folded", sa.String()),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(orders.c.id, orders.c.customer_name).where(orders.c.customer_name.is_not(None))
    ).all()
    for order_id, name in rows:
        connection.execute(
            orders.update()
            .where(orders.c.id == order_id)
            .values(customer_name_folded=normalise_name(name)[:200] or None)
        )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("customer_name_folded")
