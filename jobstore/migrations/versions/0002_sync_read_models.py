"""sync log read-model columns and the station watch table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:05:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tarana_sync_logs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("rns_fetched", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("missing", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("online", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("offline", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("fetch_complete", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("seen_at", sa.Float(precision=53), nullable=True))
        batch_op.create_index("ix_tarana_sync_logs_run", ["run_id"], unique=False)

    op.create_table(
        "station_watch",
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("device_status", sa.String(length=16), nullable=True),
        sa.Column("sync_id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("serial_number", name=op.f("pk_station_watch")),
    )


def downgrade() -> None:
    op.drop_table("station_watch")
    with op.batch_alter_table("tarana_sync_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_tarana_sync_logs_run")
        batch_op.drop_column("seen_at")
        batch_op.drop_column("fetch_complete")
        batch_op.drop_column("offline")
        batch_op.drop_column("online")
        batch_op.drop_column("missing")
        batch_op.drop_column("rns_fetched")
