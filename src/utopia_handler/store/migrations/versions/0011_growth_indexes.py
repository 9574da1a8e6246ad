"""Indexes for what the console filters and sorts by, so its pages cost the same at any size

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 11:00:00.000000

orders (state, id): a state's list, newest first, and the bounded counts per state;
orders (customer_name_folded): the search by the beginning of a name;
callbacks (outcome, received_at): Home's not-handled callbacks of the last 7 days.
The worker's claim already has orders (state, next_attempt_at) from 0001.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_orders_state_id", "orders", ["state", "id"])
    op.create_index("ix_orders_customer_name_folded", "orders", ["customer_name_folded"])
    op.create_index("ix_callbacks_outcome_received", "callbacks", ["outcome", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_callbacks_outcome_received", table_name="callbacks")
    op.drop_index("ix_orders_customer_name_folded", table_name="orders")
    op.drop_index("ix_orders_state_id", table_name="orders")
