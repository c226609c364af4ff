"""The run/step/event store: every SQL statement the durable engine issues.

Each function takes an open connection so the engine decides transaction
boundaries (an event, the runs it starts and the runs it cancels commit
together). Claims and checkpoints are compare-and-set updates: a statement
names the state it expects, and a row count of zero means another worker got
there first. Nothing here knows what a function does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobstore.db import Database
from jobstore.records import ACTIVE, EventRecord, RunRecord, RunStatus, StepRecord, StepStatus
from jobstore.tables import events, runs, steps

_ACTIVE = [s.value for s in ACTIVE]


# --- events -----------------------------------------------------------------


def insert_event(db: Database, conn: Connection, row: dict[str, Any]) -> bool:
    """Insert an event; False when its idempotency key was already used."""
    result = conn.execute(db.insert_ignore(events).values(**row))
    return bool(result.rowcount)


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


def list_events(conn: Connection, *, name: str | None = None, limit: int = 100) -> list[EventRecord]:
    q = sa.select(events).order_by(events.c.created_at.desc()).limit(limit)
    if name:
        q = q.where(events.c.name == name)
    return [EventRecord.from_row(r) for r in conn.execute(q)]


# --- runs -------------------------------------------------------------------


def insert_run(db: Database, conn: Connection, row: dict[str, Any]) -> bool:
    """Insert a run; False when its singleton key is held by an active run."""
    return bool(conn.execute(db.insert_ignore(runs).values(**row)).rowcount)


def active_run_id(conn: Connection, singleton_key: str) -> str | None:
    return conn.execute(
        sa.select(runs.c.id).where(runs.c.singleton_key == singleton_key)
    ).scalar_one_or_none()


def get_run(conn: Connection, run_id: str) -> RunRecord | None:
    row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
    return None if row is None else RunRecord.from_row(row)


def active_runs_of(conn: Connection, function_ids: Iterable[str]) -> list[RunRecord]:
    rows = conn.execute(
        sa.select(runs).where(
            runs.c.function_id.in_(list(function_ids)), runs.c.status.in_(_ACTIVE)
        )
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
    limit: int = 200,
) -> list[RunRecord]:
    q = sa.select(runs).order_by(runs.c.created_at.desc()).limit(limit)
    if function_id:
        q = q.where(runs.c.function_id == function_id)
    if statuses:
        q = q.where(runs.c.status.in_(list(statuses)))
    if triggers:
        q = q.where(runs.c.trigger.in_(list(triggers)))
    if since is not None:
        q = q.where(runs.c.created_at >= since)
    return [RunRecord.from_row(r) for r in conn.execute(q)]


def claim_candidates(conn: Connection, now: float, limit: int) -> list[tuple[str, str]]:
    """Runs a worker could take now: due queued or waiting ones, and expired leases."""
    due = sa.or_(runs.c.wake_at.is_(None), runs.c.wake_at <= now)
    q = (
        sa.select(runs.c.id, runs.c.status)
        .where(
            sa.or_(
                sa.and_(runs.c.status == RunStatus.QUEUED.value, due),
                sa.and_(runs.c.status == RunStatus.WAITING.value, runs.c.wake_at <= now),
                sa.and_(
                    runs.c.status == RunStatus.RUNNING.value, runs.c.lease_expires_at < now
                ),
            )
        )
        .order_by(runs.c.created_at)
        .limit(limit)
    )
    return [(r.id, r.status) for r in conn.execute(q)]


def claim(
    conn: Connection, run_id: str, owner: str, now: float, lease_s: float, expected: str
) -> bool:
    """Take a run if it is still in the state the candidate query saw."""
    cond = [runs.c.id == run_id, runs.c.status == expected]
    values: dict[str, Any] = {
        "status": RunStatus.RUNNING.value,
        "lease_owner": owner,
        "lease_expires_at": now + lease_s,
        "attempt": runs.c.attempt + 1,
        "updated_at": now,
        "started_at": sa.func.coalesce(runs.c.started_at, now),
    }
    if expected == RunStatus.RUNNING.value:
        cond.append(runs.c.lease_expires_at < now)
        values["crash_count"] = runs.c.crash_count + 1
    else:
        cond.append(sa.or_(runs.c.wake_at.is_(None), runs.c.wake_at <= now))
    return bool(conn.execute(sa.update(runs).where(*cond).values(**values)).rowcount)


def set_deadline(conn: Connection, run_id: str, deadline: float) -> None:
    conn.execute(
        sa.update(runs)
        .where(runs.c.id == run_id, runs.c.deadline_at.is_(None))
        .values(deadline_at=deadline)
    )


def holds_lease(conn: Connection, run_id: str, owner: str, now: float) -> bool:
    """Touch the run if this worker still holds it; the checkpoint guard."""
    return bool(
        conn.execute(
            sa.update(runs)
            .where(
                runs.c.id == run_id,
                runs.c.lease_owner == owner,
                runs.c.status == RunStatus.RUNNING.value,
            )
            .values(updated_at=now)
        ).rowcount
    )


def renew_leases(
    conn: Connection, run_ids: Sequence[str], owner: str, now: float, lease_s: float
) -> tuple[set[str], set[str]]:
    """Extend leases; return (ids still held, ids with a cancel request)."""
    if not run_ids:
        return set(), set()
    conn.execute(
        sa.update(runs)
        .where(
            runs.c.id.in_(list(run_ids)),
            runs.c.lease_owner == owner,
            runs.c.status == RunStatus.RUNNING.value,
        )
        .values(lease_expires_at=now + lease_s)
    )
    rows = conn.execute(
        sa.select(runs.c.id, runs.c.cancel_requested).where(
            runs.c.id.in_(list(run_ids)),
            runs.c.lease_owner == owner,
            runs.c.status == RunStatus.RUNNING.value,
        )
    ).all()
    return {r.id for r in rows}, {r.id for r in rows if r.cancel_requested}


def park(
    conn: Connection,
    run_id: str,
    owner: str,
    now: float,
    *,
    status: RunStatus,
    wake_at: float | None,
    wait: tuple[str, str, str] | None = None,
) -> bool:
    """Release a run to sleep, wait for an event, or retry later."""
    step, event, match = wait if wait else (None, None, None)
    return bool(
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == run_id, runs.c.lease_owner == owner)
            .values(
                status=status.value,
                wake_at=wake_at,
                lease_owner=None,
                lease_expires_at=None,
                wait_step=step,
                wait_event=event,
                wait_match=match,
                updated_at=now,
            )
        ).rowcount
    )


def wake(conn: Connection, run_id: str, now: float) -> None:
    conn.execute(
        sa.update(runs)
        .where(runs.c.id == run_id, runs.c.status == RunStatus.WAITING.value)
        .values(
            status=RunStatus.QUEUED.value,
            wake_at=None,
            wait_step=None,
            wait_event=None,
            wait_match=None,
            updated_at=now,
        )
    )


def finish(
    conn: Connection,
    run_id: str,
    now: float,
    status: RunStatus,
    *,
    owner: str | None,
    output: str | None = None,
    error: str | None = None,
    cancelled_by: str | None = None,
) -> bool:
    """End a run and free its singleton slot; with an owner, only if still held."""
    cond = [runs.c.id == run_id, runs.c.status.in_(_ACTIVE)]
    if owner is not None:
        cond.append(runs.c.lease_owner == owner)
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
    return bool(conn.execute(sa.update(runs).where(*cond).values(**values)).rowcount)


def request_cancel(conn: Connection, run_id: str, by: str) -> bool:
    return bool(
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == run_id, runs.c.status.in_(_ACTIVE))
            .values(cancel_requested=True, cancelled_by=by)
        ).rowcount
    )


def count_running(conn: Connection, function_id: str) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(runs)
            .where(runs.c.function_id == function_id, runs.c.status == RunStatus.RUNNING.value)
        ).scalar_one()
    )


def function_of(conn: Connection, run_id: str) -> str | None:
    return conn.execute(
        sa.select(runs.c.function_id).where(runs.c.id == run_id)
    ).scalar_one_or_none()


# --- steps ------------------------------------------------------------------


def load_steps(conn: Connection, run_id: str) -> dict[str, StepRecord]:
    rows = conn.execute(sa.select(steps).where(steps.c.run_id == run_id).order_by(steps.c.seq))
    return {r.name: StepRecord.from_row(r) for r in rows}


def save_step(db: Database, conn: Connection, row: dict[str, Any]) -> None:
    """Insert or overwrite one step row (the checkpoint)."""
    keys = ["run_id", "name"]
    update = [k for k in row if k not in keys]
    conn.execute(db.upsert(steps, keys, update).values(**row))


def update_step(conn: Connection, run_id: str, name: str, **values: Any) -> None:
    conn.execute(
        sa.update(steps).where(steps.c.run_id == run_id, steps.c.name == name).values(**values)
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
