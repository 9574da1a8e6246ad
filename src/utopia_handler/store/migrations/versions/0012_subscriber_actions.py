"""subscriber_actions: suspend, unsuspend, change speed and cancel as durable work, and attempts

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_OUTCOMES = ("started", "ok", "retry", "uncertain", "rejected", "held", "final", "failed")
_STATES = ("pending", "done", "waiting", "closed")
_ACTIONS = ("suspend", "unsuspend", "change-speed", "cancel")


def upgrade() -> None:
    # New tables only: a release still on 0011 runs unchanged.
    op.create_table(
        "subscriber_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column(
            "action",
            sa.Enum(*_ACTIONS, name="subscriberactionkind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("cid", sa.String(length=64), nullable=False),
        sa.Column("uia_id", sa.String(length=64), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("service_id", sa.Integer(), nullable=True),
        sa.Column("product", sa.String(length=64), nullable=True),
        sa.Column("product_before", sa.String(length=200), nullable=True),
        sa.Column("issue_date", sa.String(length=10), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=80), nullable=False),
        sa.Column("shadow", sa.Boolean(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(*_STATES, name="messageactionstate", native_enum=False, length=32),
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
    )
    with op.batch_alter_table("subscriber_actions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscriber_actions_due", ["state", "next_attempt_at"], unique=False
        )
        batch_op.create_index("ix_subscriber_actions_order_id", ["order_id"], unique=False)
    op.create_table(
        "subscriber_action_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=40), nullable=False),
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
        sa.ForeignKeyConstraint(["action_id"], ["subscriber_actions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("subscriber_action_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscriber_action_attempts_action_id", ["action_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("subscriber_action_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriber_action_attempts_action_id")
    op.drop_table("subscriber_action_attempts")
    with op.batch_alter_table("subscriber_actions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriber_actions_order_id")
        batch_op.drop_index("ix_subscriber_actions_due")
    op.drop_table("subscriber_actions")
