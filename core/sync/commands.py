"""What pages and the CLI may ask of the sync: start, cancel, confirm a delete, retry.

Each command is one engine call. Starting a sync when one is already running
is refused by the database (the function is a singleton), and the answer names
the run that holds it, so two people pressing "Sync now" together get one run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from core.engine import Engine, SendResult, Trigger
from core.errors import UnknownRunError
from core.sync.events import DELETE_CONFIRMED, SYNC_FUNCTION, SYNC_REQUESTED, SyncOptions
from jobstore import synclogs


@dataclass(frozen=True)
class SyncRequest:
    started: bool
    run_id: str
    sync_id: str
    message: str


def _describe_running(engine: Engine, run_id: str) -> tuple[str, str]:
    """(sync id, a sentence naming the run) for an active run of the sync."""
    log = synclogs.sync_log_for_run(engine.db, run_id) if run_id else None
    sync_id = log.id if log is not None else run_id
    try:
        run = engine.get_run(run_id)
    except UnknownRunError:
        return sync_id, f"A sync is already running (run {run_id})."
    since = datetime.fromtimestamp(run.started_at or run.created_at, UTC).strftime("%H:%M:%S UTC")
    who = f" by {run.triggered_by}" if run.triggered_by else ""
    status = log.status.value if log is not None else run.status.value
    return sync_id, (
        f"A sync is already running: run {run_id} ({run.trigger.value}{who}, since {since}, "
        f"{status.replace('_', ' ')})."
    )


def _outcome(engine: Engine, result: SendResult, sync_id: str, what: str) -> SyncRequest:
    if result.started:
        return SyncRequest(
            True, result.started[0], sync_id, f"{what} started: run {result.started[0]}."
        )
    holder = result.refused.get(SYNC_FUNCTION, "")
    running_sync, message = _describe_running(engine, holder)
    return SyncRequest(False, holder, running_sync, message)


def request_sync(
    engine: Engine, *, dry_run: bool = False, delete_stale: bool = False, by: str
) -> SyncRequest:
    """Start a sync now, unless one is running (then name that one)."""
    sync_id = uuid.uuid4().hex
    opts = SyncOptions(dry_run=dry_run, delete_stale=delete_stale, sync_id=sync_id)
    result = engine.send(SYNC_REQUESTED, opts.as_data(), sent_by=by, trigger=Trigger.MANUAL)
    return _outcome(engine, result, sync_id, "Dry run" if dry_run else "Sync")


def cancel_sync(engine: Engine, run_id: str, by: str) -> bool:
    """Cancel a sync run; False when it had already finished."""
    return engine.cancel(run_id, by)


def confirm_delete(engine: Engine, sync_id: str, by: str, confirm: bool = True) -> bool:
    """Answer a sync waiting to delete stale stations; True if a waiting sync heard it."""
    result = engine.send(
        DELETE_CONFIRMED, {"sync_id": sync_id, "confirm": bool(confirm), "by": by}, sent_by=by
    )
    return bool(result.woken)


def retry_sync(engine: Engine, run_id: str, by: str) -> SyncRequest:
    """Run a finished sync again from after its last completed step."""
    log = synclogs.sync_log_for_run(engine.db, run_id)  # before the new run takes the log over
    result = engine.retry(run_id, by)
    return _outcome(engine, result, log.id if log is not None else run_id, "Retry")
