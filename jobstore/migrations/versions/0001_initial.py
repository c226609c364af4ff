"""engine and station tables

Revision ID: 0001
Revises:
Create Date: 2026-11-23 10:46:37.263793
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "base_stations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.Text(), nullable=True),
        sa.Column("site_name", sa.Text(), nullable=True),
        sa.Column("active_connections", sa.Integer(), server_default="0", nullable=False),
        sa.Column("market", sa.Text(), nullable=True),
        sa.Column("lat", sa.Float(precision=53), nullable=True),
        sa.Column("lng", sa.Float(precision=53), nullable=True),
        sa.Column("region", sa.Text(), nullable=True),
        sa.Column("height_m", sa.Float(precision=53), nullable=True),
        sa.Column("azimuth_deg", sa.Float(precision=53), nullable=True),
        sa.Column("band", sa.Text(), nullable=True),
        sa.Column("device_status", sa.String(length=16), nullable=True),
        sa.Column("region_id", sa.String(length=64), nullable=True),
        sa.Column("market_id", sa.String(length=64), nullable=True),
        sa.Column("site_id", sa.String(length=64), nullable=True),
        sa.Column("cell_id", sa.String(length=64), nullable=True),
        sa.Column("sector_id", sa.String(length=64), nullable=True),
        sa.Column("cell_name", sa.Text(), nullable=True),
        sa.Column("sector_name", sa.Text(), nullable=True),
        sa.Column("first_seen", sa.Float(precision=53), nullable=False),
        sa.Column("last_seen", sa.Float(precision=53), nullable=False),
        sa.Column("last_changed", sa.Float(precision=53), nullable=False),
        sa.Column("missing_since", sa.Float(precision=53), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_base_stations")),
        sa.UniqueConstraint("serial_number", name=op.f("uq_base_stations_serial_number")),
    )
    with op.batch_alter_table("base_stations", schema=None) as batch_op:
        batch_op.create_index("ix_base_stations_market", ["market"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=300), nullable=True),
        sa.Column("sent_by", sa.String(length=200), server_default="", nullable=False),
        sa.Column("source_run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.Float(precision=53), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_events_idempotency_key")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_name_created", ["name", "created_at"], unique=False)
        batch_op.create_index("ix_events_source_run", ["source_run_id"], unique=False)

    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", sa.Float(precision=53), nullable=False),
        sa.Column("renewed_at", sa.Float(precision=53), nullable=False),
        sa.Column("expires_at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("function_id", sa.String(length=100), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=True),
        sa.Column("triggered_by", sa.String(length=200), server_default="", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("singleton_key", sa.String(length=100), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.Float(precision=53), nullable=True),
        sa.Column("wake_at", sa.Float(precision=53), nullable=True),
        sa.Column("deadline_at", sa.Float(precision=53), nullable=True),
        sa.Column("crash_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("cancelled_by", sa.String(length=200), nullable=True),
        sa.Column("cancel_keys", sa.Text(), nullable=True),
        sa.Column("wait_step", sa.String(length=200), nullable=True),
        sa.Column("wait_event", sa.String(length=200), nullable=True),
        sa.Column("wait_match", sa.Text(), nullable=True),
        sa.Column("parent_run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.Float(precision=53), nullable=False),
        sa.Column("started_at", sa.Float(precision=53), nullable=True),
        sa.Column("ended_at", sa.Float(precision=53), nullable=True),
        sa.Column("updated_at", sa.Float(precision=53), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("singleton_key", name=op.f("uq_runs_singleton_key")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_function_created", ["function_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_runs_status_wake", ["status", "wake_at"], unique=False)
        batch_op.create_index("ix_runs_wait_event", ["wait_event"], unique=False)

    op.create_table(
        "schedules",
        sa.Column("job_id", sa.String(length=200), nullable=False),
        sa.Column("function_id", sa.String(length=100), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), server_default="", nullable=False),
        sa.Column("updated_at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_schedules")),
    )
    op.create_table(
        "station_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sync_id", sa.String(length=32), nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_station_changes")),
        sa.UniqueConstraint(
            "sync_id",
            "serial_number",
            "change",
            name=op.f("uq_station_changes_sync_id_serial_number_change"),
        ),
    )
    with op.batch_alter_table("station_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_station_changes_sync_id"), ["sync_id"], unique=False)

    op.create_table(
        "steps",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("errors", sa.Text(), nullable=True),
        sa.Column("started_at", sa.Float(precision=53), nullable=True),
        sa.Column("ended_at", sa.Float(precision=53), nullable=True),
        sa.Column("wake_at", sa.Float(precision=53), nullable=True),
        sa.Column("progress_current", sa.Integer(), nullable=True),
        sa.Column("progress_total", sa.Integer(), nullable=True),
        sa.Column("progress_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "name", name=op.f("pk_steps")),
    )
    op.create_table(
        "sync_diffs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sync_id", sa.String(length=32), nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_diffs")),
    )
    with op.batch_alter_table("sync_diffs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_diffs_sync_id"), ["sync_id"], unique=False)

    op.create_table(
        "sync_skipped",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sync_id", sa.String(length=32), nullable=False),
        sa.Column("serial_number", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_skipped")),
    )
    with op.batch_alter_table("sync_skipped", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_skipped_sync_id"), ["sync_id"], unique=False)

    op.create_table(
        "tarana_sync_logs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("trigger_type", sa.String(length=16), nullable=False),
        sa.Column("triggered_by", sa.String(length=200), server_default="", nullable=False),
        sa.Column("dry_run", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("delete_stale", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("stations_fetched", sa.Integer(), server_default="0", nullable=False),
        sa.Column("inserted", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated", sa.Integer(), server_default="0", nullable=False),
        sa.Column("deleted", sa.Integer(), server_default="0", nullable=False),
        sa.Column("unchanged", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("duplicates", sa.Integer(), server_default="0", nullable=False),
        sa.Column("pages", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("delete_candidates", sa.Integer(), server_default="0", nullable=False),
        sa.Column("needs_confirmation", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("errors", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("started_at", sa.Float(precision=53), nullable=False),
        sa.Column("completed_at", sa.Float(precision=53), nullable=True),
        sa.Column("duration_s", sa.Float(precision=53), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tarana_sync_logs")),
    )
    with op.batch_alter_table("tarana_sync_logs", schema=None) as batch_op:
        batch_op.create_index("ix_tarana_sync_logs_started", ["started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tarana_sync_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_tarana_sync_logs_started")

    op.drop_table("tarana_sync_logs")
    with op.batch_alter_table("sync_skipped", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_skipped_sync_id"))

    op.drop_table("sync_skipped")
    with op.batch_alter_table("sync_diffs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_diffs_sync_id"))

    op.drop_table("sync_diffs")
    op.drop_table("steps")
    with op.batch_alter_table("station_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_station_changes_sync_id"))

    op.drop_table("station_changes")
    op.drop_table("schedules")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_wait_event")
        batch_op.drop_index("ix_runs_status_wake")
        batch_op.drop_index("ix_runs_function_created")

    op.drop_table("runs")
    op.drop_table("leases")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_source_run")
        batch_op.drop_index("ix_events_name_created")

    op.drop_table("events")
    with op.batch_alter_table("base_stations", schema=None) as batch_op:
        batch_op.drop_index("ix_base_stations_market")

    op.drop_table("base_stations")
