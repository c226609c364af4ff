"""How a sync's log ends when its run does not finish by itself, and the change watcher.

The engine announces a failed run (also a timed-out or dead one) with
``tarana-sync.failed`` and a cancelled one with ``tarana-sync.cancelled``;
the handlers here mark the log ``failed`` or ``cancelled`` with the reason,
and a failure is passed on as ``tarana/sync.failed``. A run that ended before
its first step still gets a log row, so no request vanishes without a trace.
The watcher compares the stations with the states it saw last time and
records what appeared, disappeared, went offline or came online.
"""

from __future__ import annotations

from typing import Any

from core.clock import Clock
from core.engine import Context
from core.settings import Settings
from core.sync.events import SYNC_FAILED, SyncOptions
from jobstore import runs as run_store
from jobstore import stations, synclogs
from jobstore.db import Database
from jobstore.synclogs import Change, SyncStatus


def scrub(text: str, settings: Settings) -> str:
    """The text with the portal password blotted out, should any layer have let it through."""
    secret = settings.tarana_password.reveal()
    return text.replace(secret, "********") if len(secret) >= 4 else text


class Finalizer:
    """Marks the log of a sync whose run failed or was cancelled."""

    def __init__(self, db: Database, clock: Clock, settings: Settings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings

    def on_failure(self, ctx: Context) -> dict[str, Any]:
        info = ctx.step.run("record-failure", self._end, ctx.data, SyncStatus.FAILED)
        if info.get("recorded"):
            ctx.step.send_event("send-failed", SYNC_FAILED, info)
        return dict(info)

    def on_cancelled(self, ctx: Context) -> dict[str, Any]:
        return dict(ctx.step.run("record-cancel", self._end, ctx.data, SyncStatus.CANCELLED))

    def _end(self, data: dict[str, Any], status: SyncStatus) -> dict[str, Any]:
        run_id = str(data.get("run_id") or "")
        error = scrub(str(data.get("error") or status.value), self.settings)
        now = self.clock.now().timestamp()
        log = synclogs.sync_log_for_run(self.db, run_id)
        if log is not None and log.run_id not in (None, run_id):
            log = None  # found by id but another run (a retry) owns it now
        if log is None:
            log = self._log_for_unstarted(run_id, now)
        if log is None:
            return {"recorded": False, "run_id": run_id}
        if log.run_id not in (None, run_id) or log.status.finished:
            return {"recorded": False, "run_id": run_id, "sync_id": log.id}
        synclogs.add_to_log(self.db, log.id, errors=[error])
        synclogs.update_log(
            self.db,
            log.id,
            status=status.value,
            needs_confirmation=False,
            completed_at=now,
            duration_s=synclogs.step_seconds(self.db, run_id),
        )
        return {
            "recorded": True,
            "sync_id": log.id,
            "run_id": run_id,
            "status": status.value,
            "error": error,
            "dry_run": log.dry_run,
            "stations_fetched": log.stations_fetched,
            "inserted": log.inserted,
            "updated": log.updated,
            "deleted": log.deleted,
            "skipped": log.skipped,
            "finished_at": now,
        }

    def _log_for_unstarted(self, run_id: str, now: float) -> synclogs.SyncLog | None:
        """Create the log of a run that ended before its first step wrote one."""
        with self.db.read() as conn:
            run = run_store.get_run(conn, run_id)
            event = run_store.event_by_id(conn, run.event_id) if run and run.event_id else None
        if run is None:
            return None
        data = event.data if event is not None and isinstance(event.data, dict) else {}
        opts = SyncOptions.from_data(data)
        sync_id = opts.sync_id or run_id
        synclogs.create_log(
            self.db,
            {
                "id": sync_id,
                "run_id": run_id,
                "status": SyncStatus.RUNNING.value,
                "trigger_type": run.trigger.value,
                "triggered_by": run.triggered_by,
                "dry_run": opts.dry_run,
                "delete_stale": opts.delete_stale,
                "attempt": max(1, run.attempt),
                "started_at": run.started_at or run.created_at or now,
                "errors": "[]",
            },
        )
        return synclogs.get_sync_log(self.db, sync_id)


class Watcher:
    """Records station changes since the last sync it looked at."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def handle(self, ctx: Context) -> dict[str, Any]:
        data = ctx.data
        if data.get("dry_run") is True:
            return {"changes": 0, "dry_run": True}
        sync_id = str(data.get("sync_id") or data.get("run_id") or ctx.run_id)[:32]
        return dict(ctx.step.run("record-changes", self._record, sync_id))

    def _record(self, sync_id: str) -> dict[str, Any]:
        before = synclogs.watch_state(self.db)
        now = stations.statuses(self.db)
        at = self.clock.now().timestamp()
        changes: list[tuple[str, Change]] = []
        moved: dict[str, str | None] = {}
        for serial, status in now.items():
            if serial not in before:
                changes.append((serial, Change.APPEARED))
                moved[serial] = status
                continue
            old = before[serial]
            if old == status:
                continue
            moved[serial] = status
            if old == "online" and status != "online":
                changes.append((serial, Change.WENT_OFFLINE))
            elif old != "online" and status == "online":
                changes.append((serial, Change.CAME_ONLINE))
        gone = [s for s in before if s not in now]
        changes.extend((s, Change.DISAPPEARED) for s in gone)
        synclogs.record_changes(self.db, sync_id, at, changes, gone, moved)
        counts = {c.value: 0 for c in Change}
        for _, c in changes:
            counts[c.value] += 1
        return {"sync_id": sync_id, "changes": len(changes), **counts}
