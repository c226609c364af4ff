"""The sync's own records: one log row per sync, its skipped records, diffs and changes.

The sync writes through the small functions here (create, patch, add errors,
store skipped records and diffs, record station changes); pages read through
the read models at the bottom (``SyncLog`` records, the skipped list, the
diff, the change feed and a history frame). Errors are a JSON list that only
ever grows: nothing is cut.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd
import sqlalchemy as sa

from jobstore.db import Database
from jobstore.records import Record, column
from jobstore.stations import executemany
from jobstore.tables import station_changes as changes_table
from jobstore.tables import station_watch, steps, sync_diffs, sync_logs, sync_skipped


class SyncStatus(StrEnum):
    RUNNING = "running"
    NEEDS_CONFIRMATION = "needs_confirmation"
    COMPLETED = "completed"
    COMPLETED_WITH_WARNINGS = "completed_with_warnings"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (SyncStatus.RUNNING, SyncStatus.NEEDS_CONFIRMATION)


FINISHED = tuple(s.value for s in SyncStatus if s.finished)


class Change(StrEnum):
    APPEARED = "appeared"
    DISAPPEARED = "disappeared"
    WENT_OFFLINE = "went_offline"
    CAME_ONLINE = "came_online"


def _errors(text: str) -> list[str]:
    errors = json.loads(text) if text else []
    return [str(e) for e in errors] if isinstance(errors, list) else [str(errors)]


@dataclass(frozen=True)
class SyncLog(Record):
    id: str
    run_id: str | None
    status: SyncStatus
    trigger_type: str
    triggered_by: str
    dry_run: bool
    delete_stale: bool
    stations_fetched: int
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    skipped: int
    duplicates: int
    pages: int
    retries: int
    delete_candidates: int
    needs_confirmation: bool
    errors: list[str] = field(metadata=column("errors", _errors))
    attempt: int
    started_at: float
    completed_at: float | None
    duration_s: float | None
    rns_fetched: int
    missing: int
    online: int | None
    offline: int | None
    fetch_complete: bool
    seen_at: float | None

    @property
    def sync_id(self) -> str:
        return self.id

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def written(self) -> int:
        """Station rows this sync wrote (inserted, updated, deleted, marked missing)."""
        return self.inserted + self.updated + self.deleted + self.missing


# --- writes (the sync) ------------------------------------------------------


def create_log(db: Database, values: Mapping[str, Any]) -> None:
    """Insert the log row of a sync, or leave an existing one as it is."""
    with db.write() as conn:
        conn.execute(db.insert_ignore(sync_logs).values(**values))


def attach_run(
    db: Database, sync_id: str, run_id: str, attempt: int, trigger: str, triggered_by: str
) -> None:
    """Point the log at the run now working on it; a new run (a retry) reopens the log."""
    with db.write() as conn:
        row = conn.execute(
            sa.select(sync_logs.c.run_id, sync_logs.c.status).where(sync_logs.c.id == sync_id)
        ).first()
        if row is None:
            return
        values: dict[str, Any] = {"attempt": attempt}
        if row.run_id != run_id:
            values.update(
                run_id=run_id, status=SyncStatus.RUNNING.value, trigger_type=trigger,
                triggered_by=triggered_by, completed_at=None, needs_confirmation=False,
            )  # fmt: skip
        elif not SyncStatus(row.status).finished:
            values["status"] = SyncStatus.RUNNING.value
        conn.execute(sa.update(sync_logs).where(sync_logs.c.id == sync_id).values(**values))


def step_seconds(db: Database, run_id: str) -> float:
    """Time the run's work steps took, by the engine's own records.

    Steps that failed count too (their latest attempt), so a failed sync shows
    the time it spent failing. Waiting (for a confirmation, a retry or a
    worker) is not work and is left out.
    """
    q = sa.select(sa.func.coalesce(sa.func.sum(steps.c.ended_at - steps.c.started_at), 0.0)).where(
        steps.c.run_id == run_id,
        steps.c.kind == "run",
        steps.c.status.in_(["completed", "failed"]),
    )
    with db.read() as conn:
        return float(conn.execute(q).scalar_one())


def previous_seen_at(db: Database, sync_id: str) -> float | None:
    """When the latest other sync that saw the whole fleet saw it."""
    q = sa.select(sa.func.max(sync_logs.c.seen_at)).where(sync_logs.c.id != sync_id)
    with db.read() as conn:
        value = conn.execute(q).scalar_one_or_none()
    return None if value is None else float(value)


def update_log(db: Database, sync_id: str, **values: Any) -> None:
    with db.write() as conn:
        conn.execute(sa.update(sync_logs).where(sync_logs.c.id == sync_id).values(**values))


def add_to_log(
    db: Database, sync_id: str, *, errors: Sequence[str] = (), **increments: int
) -> None:
    """Append errors and add to counters, atomically."""
    with db.write() as conn:
        values: dict[str, Any] = {k: sync_logs.c[k] + v for k, v in increments.items() if v}
        if errors:
            q = sa.select(sync_logs.c.errors).where(sync_logs.c.id == sync_id)
            if not db.is_sqlite:
                q = q.with_for_update()
            current = conn.execute(q).scalar_one_or_none()
            kept = json.loads(current) if current else []
            values["errors"] = json.dumps([*kept, *errors])
        if values:
            conn.execute(sa.update(sync_logs).where(sync_logs.c.id == sync_id).values(**values))


def replace_skipped(db: Database, sync_id: str, skipped: Iterable[tuple[str | None, str]]) -> int:
    """Store every skipped record of a sync (replacing any from an earlier attempt)."""
    rows = [{"sync_id": sync_id, "serial_number": s, "reason": r} for s, r in skipped]
    with db.write() as conn:
        conn.execute(sa.delete(sync_skipped).where(sync_skipped.c.sync_id == sync_id))
        if rows:
            conn.execute(sync_skipped.insert(), rows)
    return len(rows)


def replace_diffs(
    db: Database, sync_id: str, diffs: Iterable[tuple[str, str, Any, Any]], batch: int = 5000
) -> int:
    """Store a dry run's diff: (serial, action, before, after) with before/after as dicts."""
    with db.write() as conn:
        conn.execute(sa.delete(sync_diffs).where(sync_diffs.c.sync_id == sync_id))
        count = 0
        rows: list[dict[str, Any]] = []
        for serial, action, before, after in diffs:
            rows.append({
                "sync_id": sync_id, "serial_number": serial, "action": action,
                "before": None if before is None else json.dumps(before),
                "after": None if after is None else json.dumps(after),
            })  # fmt: skip
            if len(rows) >= batch:
                conn.execute(sync_diffs.insert(), rows)
                count += len(rows)
                rows = []
        if rows:
            conn.execute(sync_diffs.insert(), rows)
            count += len(rows)
    return count


def watch_state(db: Database) -> dict[str, str | None]:
    """The station statuses the watch function saw last time, by serial number."""
    with db.read() as conn:
        rows = conn.execute(sa.select(station_watch.c.serial_number, station_watch.c.device_status))
        return {r[0]: r[1] for r in rows}


def record_changes(
    db: Database,
    sync_id: str,
    at: float,
    changes: Sequence[tuple[str, Change]],
    gone: Sequence[str],
    now_status: Mapping[str, str | None],
) -> int:
    """Store changes and move the watch state on, in one transaction (so it is idempotent).

    ``gone`` leave the watch state; ``now_status`` entries are set in it.
    """
    t, w = changes_table, station_watch
    insert_changes = db.insert_ignore(t).values(
        {c: sa.bindparam(c) for c in ("sync_id", "serial_number", "change", "at")}
    )
    drop = sa.delete(w).where(w.c.serial_number == sa.bindparam("s"))
    keep = db.upsert(w, ["serial_number"], ["device_status", "sync_id", "updated_at"]).values(
        {c: sa.bindparam(c) for c in ("serial_number", "device_status", "sync_id", "updated_at")}
    )
    with db.write() as conn:
        executemany(
            db, conn, insert_changes, ("sync_id", "serial_number", "change", "at"),
            [(sync_id, s, c.value, at) for s, c in changes],
        )  # fmt: skip
        executemany(db, conn, drop, ("s",), [(s,) for s in gone])
        executemany(
            db, conn, keep, ("serial_number", "device_status", "sync_id", "updated_at"),
            [(s, st, sync_id, at) for s, st in now_status.items()],
        )  # fmt: skip
    return len(changes)


# --- reads (the pages) ------------------------------------------------------


def list_sync_logs(db: Database, limit: int = 200) -> list[SyncLog]:
    """The newest sync logs first."""
    q = sa.select(sync_logs).order_by(sync_logs.c.started_at.desc(), sync_logs.c.id).limit(limit)
    with db.read() as conn:
        return [SyncLog.from_row(r) for r in conn.execute(q)]


def get_sync_log(db: Database, sync_id: str) -> SyncLog | None:
    with db.read() as conn:
        row = conn.execute(sa.select(sync_logs).where(sync_logs.c.id == sync_id)).first()
    return None if row is None else SyncLog.from_row(row)


def sync_log_for_run(db: Database, run_id: str) -> SyncLog | None:
    """The log of the sync a run works on (a retried run shares its sync's log)."""
    with db.read() as conn:
        row = conn.execute(sa.select(sync_logs).where(sync_logs.c.run_id == run_id)).first()
        if row is None:
            row = conn.execute(sa.select(sync_logs).where(sync_logs.c.id == run_id)).first()
    return None if row is None else SyncLog.from_row(row)


def latest_sync_log(db: Database, finished_only: bool = False) -> SyncLog | None:
    q = sa.select(sync_logs).order_by(sync_logs.c.started_at.desc()).limit(1)
    if finished_only:
        q = q.where(sync_logs.c.status.in_(FINISHED))
    with db.read() as conn:
        row = conn.execute(q).first()
    return None if row is None else SyncLog.from_row(row)


def skipped_records(db: Database, sync_id: str) -> list[tuple[str | None, str]]:
    """Every record a sync skipped, as (serial number or None, reason)."""
    q = (
        sa.select(sync_skipped.c.serial_number, sync_skipped.c.reason)
        .where(sync_skipped.c.sync_id == sync_id)
        .order_by(sync_skipped.c.id)
    )
    with db.read() as conn:
        return [(r[0], r[1]) for r in conn.execute(q)]


def diff_rows(db: Database, sync_id: str) -> list[dict[str, Any]]:
    """A dry run's diff: dicts of serial, action (insert/update/delete/missing), before, after."""
    q = sa.select(sync_diffs).where(sync_diffs.c.sync_id == sync_id).order_by(sync_diffs.c.id)
    with db.read() as conn:
        return [
            {
                "serial": r.serial_number,
                "action": r.action,
                "before": json.loads(r.before) if r.before else None,
                "after": json.loads(r.after) if r.after else None,
            }
            for r in conn.execute(q)
        ]


def station_changes(
    db: Database, limit: int = 500, sync_id: str | None = None
) -> list[dict[str, Any]]:
    """The newest station changes: dicts of sync_id, serial, change, at."""
    t = changes_table
    q = sa.select(t).order_by(t.c.at.desc(), t.c.id.desc()).limit(limit)
    if sync_id is not None:
        q = q.where(t.c.sync_id == sync_id)
    with db.read() as conn:
        return [
            {"sync_id": r.sync_id, "serial": r.serial_number, "change": r.change, "at": r.at}
            for r in conn.execute(q)
        ]


def sync_history_frame(db: Database, limit: int = 1000) -> pd.DataFrame:
    """Finished and running syncs, oldest first, for charts."""
    t = sync_logs
    cols = [
        t.c.id.label("sync_id"), t.c.started_at, t.c.completed_at, t.c.duration_s, t.c.status,
        t.c.trigger_type, t.c.dry_run, t.c.stations_fetched.label("fetched"), t.c.online,
        t.c.offline, t.c.inserted, t.c.updated, t.c.deleted, t.c.missing, t.c.unchanged,
        t.c.skipped, t.c.retries,
    ]  # fmt: skip
    q = sa.select(*cols).order_by(t.c.started_at.desc()).limit(limit)
    with db.read() as conn:
        rows = list(conn.execute(q))
    names = [c.name for c in cols]
    frame = pd.DataFrame.from_records(rows, columns=names)
    frame = frame.iloc[::-1].reset_index(drop=True)
    frame["started_at"] = pd.to_datetime(frame["started_at"].astype("float64"), unit="s", utc=True)
    frame["completed_at"] = pd.to_datetime(
        frame["completed_at"].astype("float64"), unit="s", utc=True
    )
    return frame
