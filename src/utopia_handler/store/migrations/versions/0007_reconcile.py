"""reconcile_runs and job_leases: reconciliation with UTOPIA's order list, one process at a time

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New tables only: a release still on 0006 runs on this schema unchanged.
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.Column("network", sa.String(length=32), nullable=True),
        sa.Column(
            "outcome",
            sa.Enum(
                "ok", "failed", "unreadable", name="reconcileoutcome", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("baseline", sa.Boolean(), nullable=False),
        sa.Column("listed_count", sa.Integer(), nullable=False),
        sa.Column("new_count", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("new_refs", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reconcile_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reconcile_runs_network_outcome", ["network", "outcome"], unique=False
        )
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=80), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("last_started_at", sa.DateTime(), nullable=True),
        sa.Column("last_good_at", sa.DateTime(), nullable=True),
        sa.Column("alerted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
    with op.batch_alter_table("reconcile_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_reconcile_runs_network_outcome")
    op.drop_table("reconcile_runs")
