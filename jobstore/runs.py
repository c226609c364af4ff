"""The run/step/event store: every SQL statement the durable engine issues.

Each function takes an open connection so the engine decides transaction
boundaries (an event, the runs it starts and the runs it cancels commit
together). Claims and checkpoints are compare-and-set statements: a statement
names the state it expects, and no row means another worker got there first.
A lease is fenced by its token (``lease_owner`` holds the worker id plus a
fresh nonce per claim), so even the same worker re-claiming its own run cannot
be confused with its earlier, lost execution. ``RunSession`` is the hot path:
one DBAPI connection held for a whole execution, plain SQL, one short write
transaction per checkpoint. Nothing here knows what a function does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from jobstore.db import Database
from jobstore.errors import StorageError
from jobstore.records import ACTIVE, EventRecord, RunRecord, RunStatus, StepRecord, StepStatus
from jobstore.tables import events, runs, steps

log = logging.getLogger("stationsync.jobstore")

_ACTIVE = [s.value for s in ACTIVE]
_RUNNING = RunStatus.RUNNING.value


def _insert_ignore(db: Database, table: sa.Table, key: sa.Column[Any], row: dict[str, Any]) -> Any:
    # RETURNING tells reliably whether the row went in; rowcount of an INSERT
    # is not reported by every driver.
    ins: Any = sqlite.insert(table) if db.is_sqlite else postgresql.insert(table)
    return ins.values(**row).on_conflict_do_nothing().returning(key)


# --- events -----------------------------------------------------------------


def insert_event(db: Database, conn: Connection, row: dict[str, Any]) -> bool:
    """Insert an event; False when its idempotency key was already used."""
    return conn.execute(_insert_ignore(db, events, events.c.id, row)).first() is not None


def event_by_key(conn: Connection, key: str) -> EventRecord | None:
    row = conn.execute(sa.select(events).where(events.c.idempotency_key == key)).first()
    return None if row is None else EventRecord.from_row(row)


def event_by_id(conn: Connection, event_id: str) -> EventRecord | None:
    row = conn.execute(sa.select(events).where(events.c.id == event_id)).first()
    return None if row is None else EventRecord.from_row(row)


def set_event_outcome(conn: Connection, event_id: str, outcome: str) -> None:
    conn.execute(sa.update(events).where(events.c.id == event_id).values(outcome=outcome))


def events_sent_by_run(conn: Connection, run_id: str) -> list[EventRecord]:
    rows = conn.execute(
        sa.select(events).where(events.c.source_run_id == run_id).order_by(events.c.created_at)
    )
    return [EventRecord.from_row(r) for r in rows]


def list_events(
    conn: Connection, *, name: str | None = None, limit: int = 100
) -> list[EventRecord]:
    q = sa.select(events).order_by(events.c.created_at.desc()).limit(limit)
    if name:
        q = q.where(events.c.name == name)
    return [EventRecord.from_row(r) for r in conn.execute(q)]


# --- runs -------------------------------------------------------------------


def insert_run(db: Database, conn: Connection, row: dict[str, Any]) -> bool:
    """Insert a run; False when its singleton key is held by an active run."""
    return conn.execute(_insert_ignore(db, runs, runs.c.id, row)).first() is not None


def active_run_id(conn: Connection, singleton_key: str) -> str | None:
    return conn.execute(
        sa.select(runs.c.id).where(runs.c.singleton_key == singleton_key)
    ).scalar_one_or_none()


def get_run(conn: Connection, run_id: str) -> RunRecord | None:
    row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
    return None if row is None else RunRecord.from_row(row)


def active_runs_of(conn: Connection, function_ids: Iterable[str]) -> list[RunRecord]:
    rows = conn.execute(
        sa.select(runs)
        .where(runs.c.function_id.in_(list(function_ids)), runs.c.status.in_(_ACTIVE))
        .order_by(runs.c.created_at)
    )
    return [RunRecord.from_row(r) for r in rows]


def waiting_for(conn: Connection, event_name: str) -> list[RunRecord]:
    rows = conn.execute(
        sa.select(runs).where(
            runs.c.status == RunStatus.WAITING.value, runs.c.wait_event == event_name
        )
    )
    return [RunRecord.from_row(r) for r in rows]


def list_runs(
    conn: Connection,
    *,
    function_id: str | None = None,
    statuses: Sequence[str] | None = None,
    triggers: Sequence[str] | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[RunRecord]:
    """Runs, newest first, filtered by function, status, trigger and creation time."""
    q = sa.select(runs).order_by(runs.c.created_at.desc(), runs.c.id).limit(limit).offset(offset)
    if function_id:
        q = q.where(runs.c.function_id == function_id)
    if statuses:
        q = q.where(runs.c.status.in_([str(s) for s in statuses]))
    if triggers:
        q = q.where(runs.c.trigger.in_([str(t) for t in triggers]))
    if since is not None:
        q = q.where(runs.c.created_at >= since)
    if until is not None:
        q = q.where(runs.c.created_at < until)
    return [RunRecord.from_row(r) for r in conn.execute(q)]


def claim_candidates(
    conn: Connection, now: float, limit: int, function_ids: Sequence[str]
) -> list[tuple[str, str, str, str | None]]:
    """(id, status, function id, lease owner) of runs this worker could take now, oldest first:
    due queued or waiting ones, and running ones whose lease expired."""
    due = sa.or_(runs.c.wake_at.is_(None), runs.c.wake_at <= now)
    q = (
        sa.select(runs.c.id, runs.c.status, runs.c.function_id, runs.c.lease_owner)
        .where(
            runs.c.function_id.in_(list(function_ids)),
            sa.or_(
                sa.and_(runs.c.status == RunStatus.QUEUED.value, due),
                sa.and_(runs.c.status == RunStatus.WAITING.value, runs.c.wake_at <= now),
                sa.and_(runs.c.status == _RUNNING, runs.c.lease_expires_at < now),
            ),
        )
        .order_by(runs.c.created_at)
        .limit(limit)
    )
    return [(r.id, r.status, r.function_id, r.lease_owner) for r in conn.execute(q)]


def claim(
    conn: Connection,
    run_id: str,
    token: str,
    now: float,
    lease_s: float,
    expected: str,
    timeout_s: float,
) -> RunRecord | None:
    """Take a run if it is still in the state the candidate query saw.

    Taking over an expired lease counts a crash. The first claim fixes the
    run's deadline, so the timeout covers retries and waits too.
    """
    cond: list[Any] = [runs.c.id == run_id, runs.c.status == expected]
    values: dict[str, Any] = {
        "status": _RUNNING,
        "lease_owner": token,
        "executed_by": token.split("#", 1)[0],
        "lease_expires_at": now + lease_s,
        "attempt": runs.c.attempt + 1,
        "updated_at": now,
        "started_at": sa.func.coalesce(runs.c.started_at, now),
        "deadline_at": sa.func.coalesce(runs.c.deadline_at, now + timeout_s),
        "wait_step": None,
        "wait_event": None,
        "wait_match": None,
    }
    if expected == _RUNNING:
        cond.append(runs.c.lease_expires_at < now)
        values["crash_count"] = runs.c.crash_count + 1
    else:
        cond.append(sa.or_(runs.c.wake_at.is_(None), runs.c.wake_at <= now))
    row = conn.execute(sa.update(runs).where(*cond).values(**values).returning(runs)).first()
    return None if row is None else RunRecord.from_row(row)


def holds_lease(conn: Connection, run_id: str, token: str, now: float) -> bool:
    """Touch the run if this lease token still holds it; the checkpoint guard."""
    return (
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == run_id, runs.c.lease_owner == token, runs.c.status == _RUNNING)
            .values(updated_at=now)
            .returning(runs.c.id)
        ).first()
        is not None
    )


def renew_lease(
    conn: Connection, run_id: str, token: str, now: float, lease_s: float
) -> bool | None:
    """Extend one lease; None when it is no longer held, else whether cancel was asked."""
    row = conn.execute(
        sa.update(runs)
        .where(runs.c.id == run_id, runs.c.lease_owner == token, runs.c.status == _RUNNING)
        .values(lease_expires_at=now + lease_s)
        .returning(runs.c.cancel_requested)
    ).first()
    return None if row is None else bool(row[0])


def park(
    conn: Connection,
    run_id: str,
    token: str,
    now: float,
    *,
    status: RunStatus,
    wake_at: float | None,
    wait: tuple[str, str, str] | None = None,
    same_attempt: bool = False,
    error: str | None = None,
) -> bool:
    """Release a run to sleep, wait for an event, or retry later.

    ``same_attempt`` hands back the attempt number taken by the claim: a run
    resumed after a sleep, a wait or a shutdown is still on the same attempt.
    """
    step, event, match = wait if wait else (None, None, None)
    values: dict[str, Any] = {
        "status": status.value,
        "wake_at": wake_at,
        "lease_owner": None,
        "lease_expires_at": None,
        "wait_step": step,
        "wait_event": event,
        "wait_match": match,
        "updated_at": now,
        "error": error,
    }
    if same_attempt:
        values["attempt"] = runs.c.attempt - 1
    return (
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == run_id, runs.c.lease_owner == token, runs.c.status == _RUNNING)
            .values(**values)
            .returning(runs.c.id)
        ).first()
        is not None
    )


def wake(conn: Connection, run_id: str, step: str, now: float) -> bool:
    """Queue a run waiting on ``step``; False if it is no longer waiting there."""
    return (
        conn.execute(
            sa.update(runs)
            .where(
                runs.c.id == run_id,
                runs.c.status == RunStatus.WAITING.value,
                runs.c.wait_step == step,
            )
            .values(
                status=RunStatus.QUEUED.value,
                wake_at=None,
                wait_step=None,
                wait_event=None,
                wait_match=None,
                updated_at=now,
            )
            .returning(runs.c.id)
        ).first()
        is not None
    )


def finish(
    conn: Connection,
    run_id: str,
    now: float,
    status: RunStatus,
    *,
    token: str | None,
    expected: RunStatus | None = None,
    output: str | None = None,
    error: str | None = None,
    cancelled_by: str | None = None,
) -> RunRecord | None:
    """End a run and free its singleton slot; with a token, only if that lease
    still holds it; with ``expected``, only if it is still in that status.

    Returns the run as it was finished, or None when nothing matched.
    """
    cond: list[Any] = [runs.c.id == run_id, runs.c.status.in_(_ACTIVE)]
    if token is not None:
        cond.append(runs.c.lease_owner == token)
    if expected is not None:
        cond.append(runs.c.status == expected.value)
    values: dict[str, Any] = {
        "status": status.value,
        "singleton_key": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "wake_at": None,
        "wait_step": None,
        "wait_event": None,
        "wait_match": None,
        "ended_at": now,
        "updated_at": now,
        "output": output,
        "error": error,
    }
    if cancelled_by is not None:
        values["cancelled_by"] = cancelled_by
    row = conn.execute(sa.update(runs).where(*cond).values(**values).returning(runs)).first()
    return None if row is None else RunRecord.from_row(row)


def request_cancel(conn: Connection, run_id: str, by: str) -> bool:
    return (
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == run_id, runs.c.status.in_(_ACTIVE))
            .values(cancel_requested=True, cancelled_by=by)
            .returning(runs.c.id)
        ).first()
        is not None
    )


def lock_function(db: Database, conn: Connection, function_id: str) -> None:
    """Serialize claims of one function until the transaction ends, so a count of
    its running runs stays true until the claim commits. SQLite's IMMEDIATE
    transactions are serialized already."""
    if not db.is_sqlite:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:f))"), {"f": function_id})


def count_running(conn: Connection, function_id: str) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(runs)
            .where(runs.c.function_id == function_id, runs.c.status == _RUNNING)
        ).scalar_one()
    )


# --- steps ------------------------------------------------------------------


def load_steps(conn: Connection, run_id: str) -> dict[str, StepRecord]:
    rows = conn.execute(sa.select(steps).where(steps.c.run_id == run_id).order_by(steps.c.seq))
    return {r.name: StepRecord.from_row(r) for r in rows}


def save_step(db: Database, conn: Connection, row: dict[str, Any]) -> None:
    """Insert or overwrite one step row."""
    ins: Any = sqlite.insert(steps) if db.is_sqlite else postgresql.insert(steps)
    update = {k: ins.excluded[k] for k in row if k not in ("run_id", "name")}
    conn.execute(
        ins.values(**row).on_conflict_do_update(index_elements=["run_id", "name"], set_=update)
    )


def complete_waiting_step(
    conn: Connection, run_id: str, name: str, result: str, now: float
) -> None:
    conn.execute(
        sa.update(steps)
        .where(steps.c.run_id == run_id, steps.c.name == name)
        .values(status=StepStatus.COMPLETED.value, result=result, ended_at=now, wake_at=None)
    )


def copy_completed_steps(conn: Connection, from_run: str, to_run: str) -> int:
    rows = conn.execute(
        sa.select(steps).where(
            steps.c.run_id == from_run, steps.c.status == StepStatus.COMPLETED.value
        )
    ).all()
    if rows:
        conn.execute(steps.insert(), [{**r._mapping, "run_id": to_run} for r in rows])
    return len(rows)


def steps_of(conn: Connection, run_id: str) -> list[StepRecord]:
    return list(load_steps(conn, run_id).values())


# --- the hot path: one connection per executing run ----------------------------

_STEP_COLUMNS = (
    "run_id, name, seq, kind, status, attempts, result, error, errors, "
    "started_at, ended_at, wake_at, progress_current, progress_total, progress_message"
)
_SAVE_STEP = (
    f"INSERT INTO steps ({_STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, name) DO UPDATE SET seq = excluded.seq, kind = excluded.kind, "
    "status = excluded.status, attempts = excluded.attempts, result = excluded.result, "
    "error = excluded.error, errors = excluded.errors, started_at = excluded.started_at, "
    "ended_at = excluded.ended_at, wake_at = excluded.wake_at, "
    # A finished step keeps the last progress it reported.
    "progress_current = COALESCE(excluded.progress_current, steps.progress_current), "
    "progress_total = COALESCE(excluded.progress_total, steps.progress_total), "
    "progress_message = COALESCE(excluded.progress_message, steps.progress_message)"
)
_SAVE_PROGRESS = (
    f"INSERT INTO steps ({_STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, name) DO UPDATE SET status = excluded.status, "
    "started_at = excluded.started_at, progress_current = excluded.progress_current, "
    "progress_total = excluded.progress_total, progress_message = excluded.progress_message"
)
_GUARD = "SELECT cancel_requested FROM runs WHERE id = ? AND lease_owner = ? AND status = 'running'"

StepRow = tuple[
    str,
    str,
    int,
    str,
    str,
    int,
    str | None,
    str | None,
    str | None,
    float | None,
    float | None,
    float | None,
    int | None,
    int | None,
    str | None,
]


class RunSession:
    """The checkpoint writer of one execution: one connection, plain SQL.

    Each write is one short transaction: the lease guard, then the step row.
    On SQLite the transaction is IMMEDIATE, so nothing can change the run
    between guard and write; on PostgreSQL the guard takes a share lock on the
    run row, so a takeover waits until the checkpoint has committed. The
    connection sits idle (no open transaction) between checkpoints.
    """

    def __init__(self, db: Database, run_id: str, token: str) -> None:
        self.run_id = run_id
        self.token = token
        self._db = db
        self._sqlite = db.is_sqlite
        self._error: type[BaseException] = db.engine.dialect.loaded_dbapi.Error
        if self._sqlite:
            self._guard, self._save, self._progress = _GUARD, _SAVE_STEP, _SAVE_PROGRESS
        else:
            # psycopg speaks the "format" paramstyle.
            self._guard = _GUARD.replace("?", "%s") + " FOR SHARE"
            self._save = _SAVE_STEP.replace("?", "%s")
            self._progress = _SAVE_PROGRESS.replace("?", "%s")
        self._conn: Any = None
        self._cur: Any = None

    def save_step(self, row: StepRow) -> bool | None:
        """Write a step row if the lease still holds: None when it was lost,
        else whether a cancel has been requested meanwhile."""
        return self._guarded(self._save, row)

    def save_progress(self, row: StepRow) -> bool | None:
        return self._guarded(self._progress, row)

    def _guarded(self, sql: str, row: StepRow) -> bool | None:
        if self._cur is None:
            self._open()
        cur = self._cur
        try:
            if self._sqlite:
                cur.execute("BEGIN IMMEDIATE")
            cur.execute(self._guard, (self.run_id, self.token))
            found = cur.fetchone()
            if found is None:
                self._conn.rollback()
                return None
            cur.execute(sql, row)
            if self._sqlite:
                cur.execute("COMMIT")
            else:
                self._conn.commit()
            return bool(found[0])
        except self._error as exc:
            self._discard()
            raise StorageError(f"checkpoint of run {self.run_id} failed: {exc}") from exc

    def _open(self) -> None:
        try:
            self._conn = self._db.engine.raw_connection()
            self._cur = self._conn.cursor()
        except sa.exc.DBAPIError as exc:
            raise StorageError(f"cannot open database {self._db.safe_url}: {exc.orig}") from exc

    def _discard(self) -> None:
        # After a failure the connection's state is unknown: drop it and let
        # the next write open a fresh one.
        conn, self._conn, self._cur = self._conn, None, None
        if conn is not None:
            try:
                conn.invalidate()
            except Exception:  # already failing: the first error is the news
                log.debug("could not discard a failed connection", exc_info=True)

    def close(self) -> None:
        conn, self._conn, self._cur = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # returning to the pool must not mask the result
                log.debug("could not return a connection to the pool", exc_info=True)
