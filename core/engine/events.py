"""Events in, runs out: what one event starts, cancels and wakes, in one transaction.

An event row goes in first (its idempotency key is unique, so a duplicate
stops here and reports what the first one did). Then one run per function
whose trigger matches (a singleton's unique key refuses a second active run,
and the refusal names the run that holds it), cancel requests for active runs
whose cancel-on matches, and the wake-up of runs waiting for it. A finished
run announces itself the same way, as ``<function>.completed``, ``.failed``
or ``.cancelled``, in the transaction that finishes it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from core.engine.function import Function, Registry, cron_event, lookup
from jobstore import runs as store
from jobstore.db import Database
from jobstore.records import RunRecord, RunStatus, Trigger

_SUFFIX = {RunStatus.COMPLETED: "completed", RunStatus.CANCELLED: "cancelled"}


@dataclass(frozen=True)
class SendResult:
    """What an event did: runs started, refused (function id -> run holding the
    singleton), cancelled and woken. ``duplicate`` when its key was seen before."""

    event_id: str
    duplicate: bool = False
    started: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    woken: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str | None:
        """The run this event started, or the active run that refused it."""
        if self.started:
            return self.started[0]
        return next(iter(self.refused.values()), None)


def finished_event_name(function_id: str, status: RunStatus) -> str:
    """``<id>.completed``, ``<id>.cancelled``, or ``<id>.failed`` for every other end."""
    return f"{function_id}.{_SUFFIX.get(status, 'failed')}"


class Dispatcher:
    """Applies events to the run table, inside a transaction the caller owns."""

    def __init__(self, db: Database, registry: Registry, now: Callable[[], float]) -> None:
        self.db = db
        self.registry = registry
        self.now = now

    def send_in(
        self,
        conn: Connection,
        name: str,
        data: dict[str, Any],
        key: str | None,
        sent_by: str,
        trigger: Trigger | None,
        source_run_id: str | None = None,
    ) -> SendResult:
        now = self.now()
        event_id = uuid.uuid4().hex
        data_text = json.dumps(data, default=str)
        row = {
            "id": event_id,
            "name": name,
            "data": data_text,
            "idempotency_key": key,
            "sent_by": sent_by,
            "source_run_id": source_run_id,
            "created_at": now,
        }
        if not store.insert_event(self.db, conn, row):
            assert key is not None
            existing = store.event_by_key(conn, key)
            outcome = (existing.outcome if existing else None) or {}
            return SendResult(
                event_id=existing.id if existing else "",
                duplicate=True,
                started=list(outcome.get("started", [])),
                refused=dict(outcome.get("refused", {})),
            )
        # What handlers see as ctx.event: the stored JSON, not the caller's objects.
        event = {"id": event_id, "name": name, "data": json.loads(data_text), "ts": now}
        started: list[str] = []
        refused: dict[str, str] = {}
        for fn in self.registry.triggered_by(name):
            kind = Trigger.CRON if name == cron_event(fn.id) else (trigger or Trigger.EVENT)
            run_id, holder = self.start_run(conn, fn, event, kind, sent_by, now)
            if run_id is not None:
                started.append(run_id)
            else:
                refused[fn.id] = holder or ""
        cancelled = self._cancel_matching(conn, name, event, sent_by, now, started)
        woken = self._wake_waiting(conn, name, event, now)
        outcome_text = json.dumps(
            {"started": started, "refused": refused, "cancelled": cancelled, "woken": woken}
        )
        store.set_event_outcome(conn, event_id, outcome_text)
        return SendResult(event_id, False, started, refused, cancelled, woken)

    def start_run(
        self,
        conn: Connection,
        fn: Function,
        event: Mapping[str, Any],
        trigger: Trigger,
        sent_by: str,
        now: float,
        parent_run_id: str | None = None,
    ) -> tuple[str | None, str | None]:
        """(new run id, None), or (None, id of the active run holding the singleton)."""
        # The holder can finish between our refused insert and the lookup of
        # who refused it; then the slot is free and a second insert succeeds.
        for _ in range(3):
            run_id = uuid.uuid4().hex
            if self._insert_run(conn, fn, run_id, event, trigger, sent_by, now, parent_run_id):
                return run_id, None
            holder = store.active_run_id(conn, fn.id)
            if holder is not None:
                return None, holder
        return None, None

    def _insert_run(
        self,
        conn: Connection,
        fn: Function,
        run_id: str,
        event: Mapping[str, Any],
        trigger: Trigger,
        sent_by: str,
        now: float,
        parent_run_id: str | None,
    ) -> bool:
        keys = []
        for c in fn.cancel_on:
            value = lookup(event, c.match) if c.match else None
            # A triggering event without the field is matched on the run id,
            # so a cancel event can always name the run it means.
            keys.append([c.event, {c.match: run_id if value is None else value} if c.match else {}])
        return store.insert_run(
            self.db,
            conn,
            {
                "id": run_id,
                "function_id": fn.id,
                "trigger": trigger.value,
                "event_id": event.get("id"),
                "triggered_by": sent_by,
                "status": RunStatus.QUEUED.value,
                "attempt": 0,
                "singleton_key": fn.id if fn.singleton else None,
                "cancel_keys": json.dumps(keys),
                "parent_run_id": parent_run_id,
                "created_at": now,
                "updated_at": now,
            },
        )

    def _cancel_matching(
        self,
        conn: Connection,
        name: str,
        event: Mapping[str, Any],
        sent_by: str,
        now: float,
        skip: Sequence[str],
    ) -> list[str]:
        fns = self.registry.cancelled_by(name)
        if not fns:
            return []
        cancelled = []
        by = f"event {name}" + (f" from {sent_by}" if sent_by else "")
        for run in store.active_runs_of(conn, [f.id for f in fns]):
            if run.id in skip:
                continue
            for ev_name, cond in json.loads(run.cancel_keys_json or "[]"):
                if ev_name == name and all(lookup(event, p) == v for p, v in cond.items()):
                    self.cancel_in(conn, run, by, now)
                    cancelled.append(run.id)
                    break
        return cancelled

    def _wake_waiting(
        self, conn: Connection, name: str, event: Mapping[str, Any], now: float
    ) -> list[str]:
        woken = []
        for run in store.waiting_for(conn, name):
            cond = json.loads(run.wait_match_json or "{}")
            if not run.wait_step or not all(lookup(event, p) == v for p, v in cond.items()):
                continue
            # Queue the run first, compare-and-set: if its timeout already
            # claimed it, the event must not rewrite a step it has moved past.
            if store.wake(conn, run.id, run.wait_step, now):
                store.complete_waiting_step(
                    conn, run.id, run.wait_step, json.dumps(event, default=str), now
                )
                woken.append(run.id)
        return woken

    def cancel_in(self, conn: Connection, run: RunRecord, by: str, now: float) -> None:
        """Cancel at once a run nobody executes; otherwise ask its worker to stop."""
        if run.status in (RunStatus.QUEUED, RunStatus.WAITING):
            ended = store.finish(
                conn,
                run.id,
                now,
                RunStatus.CANCELLED,
                token=None,
                expected=run.status,
                error=f"cancelled by {by}",
                cancelled_by=by,
            )
            if ended is not None:
                self.emit_finished(conn, ended)
                return
        # Running, or claimed a moment ago: its worker stops at the next step.
        store.request_cancel(conn, run.id, by)

    def emit_finished(self, conn: Connection, run: RunRecord) -> SendResult:
        data: dict[str, Any] = {
            "run_id": run.id,
            "function_id": run.function_id,
            "status": run.status.value,
            "trigger": run.trigger.value,
        }
        if run.output_json is not None:
            data["output"] = run.output
        if run.error is not None:
            data["error"] = run.error
        return self.send_in(
            conn,
            finished_event_name(run.function_id, run.status),
            data,
            None,
            f"run {run.id}",
            None,
            run.id,
        )
