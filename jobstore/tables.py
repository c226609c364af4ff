"""The schema: every table Stationsync keeps, as SQLAlchemy Core metadata.

Times are stored as UTC epoch seconds (double precision): compact, fast to
compare in SQL on both SQLite and PostgreSQL, and never ambiguous about zones.
JSON documents are stored as text written by our own encoder so that the
bytes are the same on both databases. Alembic migrations in
``jobstore/migrations`` create and upgrade these tables; this module is what
they are checked against.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Time = sa.Float(precision=53)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("function_id", sa.String(100), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("event_id", sa.String(32)),
    sa.Column("triggered_by", sa.String(200), nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    # Holds the function id while a singleton run is active, NULL otherwise: the
    # unique index makes "one active run" a database fact, not a check-then-insert.
    sa.Column("singleton_key", sa.String(100), unique=True),
    sa.Column("lease_owner", sa.String(100)),
    # The last worker that executed the run; unlike the lease, kept after it ends.
    sa.Column("executed_by", sa.String(200)),
    sa.Column("lease_expires_at", Time),
    sa.Column("wake_at", Time),
    sa.Column("deadline_at", Time),
    sa.Column("crash_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cancelled_by", sa.String(200)),
    sa.Column("cancel_keys", sa.Text),
    sa.Column("wait_step", sa.String(200)),
    sa.Column("wait_event", sa.String(200)),
    sa.Column("wait_match", sa.Text),
    sa.Column("parent_run_id", sa.String(32)),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("started_at", Time),
    sa.Column("ended_at", Time),
    sa.Column("updated_at", Time),
    sa.Column("output", sa.Text),
    sa.Column("error", sa.Text),
    sa.Index("ix_runs_status_wake", "status", "wake_at"),
    sa.Index("ix_runs_function_created", "function_id", "created_at"),
    sa.Index("ix_runs_wait_event", "wait_event"),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("result", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("errors", sa.Text),
    sa.Column("started_at", Time),
    sa.Column("ended_at", Time),
    sa.Column("wake_at", Time),
    sa.Column("progress_current", sa.Integer),
    sa.Column("progress_total", sa.Integer),
    sa.Column("progress_message", sa.Text),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.String(300), unique=True),
    sa.Column("sent_by", sa.String(200), nullable=False, server_default=""),
    sa.Column("source_run_id", sa.String(32)),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("outcome", sa.Text),
    sa.Index("ix_events_name_created", "name", "created_at"),
    sa.Index("ix_events_source_run", "source_run_id"),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("acquired_at", Time, nullable=False),
    sa.Column("renewed_at", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("job_id", sa.String(200), primary_key=True),
    sa.Column("function_id", sa.String(100), nullable=False),
    sa.Column("cron", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_by", sa.String(200), nullable=False, server_default=""),
    sa.Column("updated_at", Time, nullable=False),
)

# --- the base-station sync -------------------------------------------------

base_stations = sa.Table(
    "base_stations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("serial_number", sa.String(64), nullable=False, unique=True),
    sa.Column("hostname", sa.Text),
    sa.Column("site_name", sa.Text),
    sa.Column("active_connections", sa.Integer, nullable=False, server_default="0"),
    sa.Column("market", sa.Text),
    sa.Column("lat", sa.Float(precision=53)),
    sa.Column("lng", sa.Float(precision=53)),
    sa.Column("region", sa.Text),
    sa.Column("height_m", sa.Float(precision=53)),
    sa.Column("azimuth_deg", sa.Float(precision=53)),
    sa.Column("band", sa.Text),
    sa.Column("device_status", sa.String(16)),
    sa.Column("region_id", sa.String(64)),
    sa.Column("market_id", sa.String(64)),
    sa.Column("site_id", sa.String(64)),
    sa.Column("cell_id", sa.String(64)),
    sa.Column("sector_id", sa.String(64)),
    sa.Column("cell_name", sa.Text),
    sa.Column("sector_name", sa.Text),
    sa.Column("first_seen", Time, nullable=False),
    # Written only when the row is written or goes missing, so an unchanged
    # station is never rewritten; the read model derives the rest.
    sa.Column("last_seen", Time, nullable=False),
    sa.Column("last_changed", Time, nullable=False),
    sa.Column("missing_since", Time),
    sa.Index("ix_base_stations_market", "market"),
)

sync_logs = sa.Table(
    "tarana_sync_logs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("run_id", sa.String(32)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("trigger_type", sa.String(16), nullable=False),
    sa.Column("triggered_by", sa.String(200), nullable=False, server_default=""),
    sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("delete_stale", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("stations_fetched", sa.Integer, nullable=False, server_default="0"),
    sa.Column("inserted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unchanged", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("duplicates", sa.Integer, nullable=False, server_default="0"),
    sa.Column("pages", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("delete_candidates", sa.Integer, nullable=False, server_default="0"),
    sa.Column("needs_confirmation", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("errors", sa.Text),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("started_at", Time, nullable=False),
    sa.Column("completed_at", Time),
    sa.Column("duration_s", sa.Float(precision=53)),
    # Added by migration 0002: what the read models need without replaying steps.
    sa.Column("rns_fetched", sa.Integer, nullable=False, server_default="0"),
    sa.Column("missing", sa.Integer, nullable=False, server_default="0"),
    sa.Column("online", sa.Integer),
    sa.Column("offline", sa.Integer),
    sa.Column("fetch_complete", sa.Boolean, nullable=False, server_default=sa.false()),
    # Set only by a sync that saw the whole fleet and wrote it: every station
    # without missing_since was seen at this time (see jobstore.stations).
    sa.Column("seen_at", Time),
    sa.Index("ix_tarana_sync_logs_started", "started_at"),
    sa.Index("ix_tarana_sync_logs_run", "run_id"),
)

sync_skipped = sa.Table(
    "sync_skipped",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync_id", sa.String(32), nullable=False, index=True),
    sa.Column("serial_number", sa.Text),
    sa.Column("reason", sa.Text, nullable=False),
)

sync_diffs = sa.Table(
    "sync_diffs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync_id", sa.String(32), nullable=False, index=True),
    sa.Column("serial_number", sa.String(64), nullable=False),
    sa.Column("action", sa.String(8), nullable=False),
    sa.Column("before", sa.Text),
    sa.Column("after", sa.Text),
)

station_changes = sa.Table(
    "station_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync_id", sa.String(32), nullable=False, index=True),
    sa.Column("serial_number", sa.String(64), nullable=False),
    sa.Column("change", sa.String(16), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.UniqueConstraint("sync_id", "serial_number", "change"),
)

# The station states as of the last sync the watch function looked at, so it
# can say what appeared, disappeared, went offline or came online since then.
station_watch = sa.Table(
    "station_watch",
    metadata,
    sa.Column("serial_number", sa.String(64), primary_key=True),
    sa.Column("device_status", sa.String(16)),
    sa.Column("sync_id", sa.String(32), nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)
