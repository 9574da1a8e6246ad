"""message_actions: the work a routed UTOPIA message asks for, and its attempts; every callback
with its order

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
# Numbered after reconciliation's 0007, which is written beside this one; the merge relinks it.
down_revision = "0008"
branch_labels = None
depends_on = None

_OUTCOMES = ("started", "ok", "retry", "uncertain", "rejected", "held", "final", "failed")


def upgrade() -> None:
    # New tables only, and order ids on old callbacks: a release still on 0006 runs unchanged.
    op.create_table(
        "message_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("msg", sa.String(length=200), nullable=False),
        sa.Column("event", sa.String(length=200), nullable=True),
        sa.Column(
            "action",
            sa.Enum(
                "notify",
                "hold",
                "ticket",
                "note",
                name="messageactionkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "done",
                "waiting",
                "closed",
                name="messageactionstate",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(length=80), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("retrying_since", sa.DateTime(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("ticket_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("message_actions", schema=None) as batch_op:
        batch_op.create_index("ix_message_actions_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_message_actions_order_id", ["order_id"], unique=False)
    op.create_table(
        "message_action_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=80), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column(
            "outcome",
            sa.Enum(*_OUTCOMES, name="attemptoutcome", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["action_id"], ["message_actions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("message_action_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_message_action_attempts_action_id", ["action_id"], unique=False)
    # Callbacks stored before every message went with its order: link those whose order exists.
    op.execute(
        "UPDATE callbacks SET order_id = "
        "(SELECT orders.id FROM orders WHERE orders.order_ref = callbacks.order_ref) "
        "WHERE order_id IS NULL AND lower(trim(msg)) <> 'test'"
    )


def downgrade() -> None:
    with op.batch_alter_table("message_action_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_message_action_attempts_action_id")
    op.drop_table("message_action_attempts")
    with op.batch_alter_table("message_actions", schema=None) as batch_op:
        batch_op.drop_index("ix_message_actions_order_id")
        batch_op.drop_index("ix_message_actions_due")
    op.drop_table("message_actions")
