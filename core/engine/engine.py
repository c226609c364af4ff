"""The durable engine: send events, claim runs, execute handlers, checkpoint steps.

Sending an event is one transaction: the event row (its idempotency key is
unique), one run per matching function (a singleton's unique key refuses a
second active run), cancel requests for runs whose cancel-on matches, and the
wake-up of runs waiting for it. Worker threads claim due runs with a
compare-and-set update, hold a lease that a heartbeat renews, and replay the
handler: completed steps return their stored results, the first new step runs.
Every checkpoint first proves the lease is still held, so a worker that lost
its run can never write over the worker that took it over.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from core.clock import Clock, SystemClock
from core.engine.context import (
    Context,
    LeaseLost,
    RunCancelled,
    RunState,
    RunTimedOut,
    StepFailure,
    Suspend,
    backoff_s,
    to_json,
)
from core.engine.function import Function, Registry, cron_event, lookup
from core.errors import (
    NonRetriableError,
    RetryAfterError,
    StationsyncError,
    StorageError,
    UnknownRunError,
)
from jobstore import runs as store
from jobstore.db import Database
from jobstore.records import (
    EventRecord,
    RunRecord,
    RunStatus,
    StepKind,
    StepRecord,
    StepStatus,
    Trigger,
)

log = logging.getLogger("stationsync.engine")


class ShuttingDown(BaseException):
    """Unwinds a handler when its process stops: the run is handed back at once."""


@dataclass(frozen=True)
class SendResult:
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


@dataclass(frozen=True)
class RunDetail:
    run: RunRecord
    steps: list[StepRecord]
    event: EventRecord | None
    sent_events: list[EventRecord]


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Engine:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        *,
        clock: Clock | None = None,
        workers: int = 4,
        poll_interval_s: float = 0.5,
        lease_s: float = 30.0,
        heartbeat_s: float = 10.0,
        max_crashes: int = 3,
        progress_interval_s: float = 0.2,
        worker_id: str | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.clock = clock or SystemClock()
        self.workers = workers
        self.poll_interval_s = poll_interval_s
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.max_crashes = max_crashes
        self.progress_interval_s = progress_interval_s
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._held: dict[str, RunState] = {}
        self._held_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def _now(self) -> float:
        return self.clock.now().timestamp()

    # --- sending events -----------------------------------------------------

    def send(
        self,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        sent_by: str = "",
        trigger: Trigger | None = None,
    ) -> SendResult:
        """Record an event and start, cancel or wake every run it concerns."""
        with self.db.write() as conn:
            result = self._send_in(conn, name, dict(data or {}), idempotency_key, sent_by, trigger)
        self._after_send(result)
        return result

    def _after_send(self, result: SendResult) -> None:
        with self._held_lock:
            for run_id in result.cancelled:
                if run_id in self._held:
                    self._held[run_id].cancel.set()
        if result.started or result.woken:
            self._wakeup.set()

    def _send_in(
        self,
        conn: Connection,
        name: str,
        data: dict[str, Any],
        key: str | None,
        sent_by: str,
        trigger: Trigger | None,
        source_run_id: str | None = None,
    ) -> SendResult:
        now = self._now()
        event_id = uuid.uuid4().hex
        inserted = store.insert_event(
            self.db,
            conn,
            {
                "id": event_id,
                "name": name,
                "data": json.dumps(data, default=str),
                "idempotency_key": key,
                "sent_by": sent_by,
                "source_run_id": source_run_id,
                "created_at": now,
            },
        )
        if not inserted:
            assert key is not None
            existing = store.event_by_key(conn, key)
            outcome = (existing.outcome if existing else None) or {}
            return SendResult(
                event_id=existing.id if existing else "",
                duplicate=True,
                started=list(outcome.get("started", [])),
                refused=dict(outcome.get("refused", {})),
            )
        event = {"id": event_id, "name": name, "data": data, "ts": now}
        started: list[str] = []
        refused: dict[str, str] = {}
        for fn in self.registry.triggered_by(name):
            run_id = uuid.uuid4().hex
            kind = Trigger.CRON if name == cron_event(fn.id) else (trigger or Trigger.EVENT)
            if self._create_run(conn, fn, run_id, event, kind, sent_by, now):
                started.append(run_id)
            else:
                refused[fn.id] = store.active_run_id(conn, fn.id) or ""
        cancelled = self._cancel_matching(conn, name, event, sent_by, now, started)
        woken = self._wake_waiting(conn, name, event, now)
        store.set_event_outcome(
            conn,
            event_id,
            json.dumps(
                {"started": started, "refused": refused, "cancelled": cancelled, "woken": woken}
            ),
        )
        return SendResult(event_id, False, started, refused, cancelled, woken)

    def _create_run(
        self,
        conn: Connection,
        fn: Function,
        run_id: str,
        event: Mapping[str, Any],
        trigger: Trigger,
        sent_by: str,
        now: float,
        parent_run_id: str | None = None,
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
                "event_id": event["id"],
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
        for run in store.active_runs_of(conn, [f.id for f in fns]):
            if run.id in skip:
                continue
            for ev_name, cond in json.loads(run.cancel_keys_json or "[]"):
                if ev_name == name and all(lookup(event, p) == v for p, v in cond.items()):
                    by = f"event {name}" + (f" from {sent_by}" if sent_by else "")
                    self._cancel_in(conn, run, by, now)
                    cancelled.append(run.id)
                    break
        return cancelled

    def _wake_waiting(
        self, conn: Connection, name: str, event: Mapping[str, Any], now: float
    ) -> list[str]:
        woken = []
        for run in store.waiting_for(conn, name):
            cond = json.loads(run.wait_match_json or "{}")
            if run.wait_step and all(lookup(event, p) == v for p, v in cond.items()):
                store.update_step(
                    conn,
                    run.id,
                    run.wait_step,
                    status=StepStatus.COMPLETED.value,
                    result=json.dumps(event, default=str),
                    ended_at=now,
                    wake_at=None,
                )
                store.wake(conn, run.id, now)
                woken.append(run.id)
        return woken

    def _cancel_in(self, conn: Connection, run: RunRecord, by: str, now: float) -> None:
        if run.status in (RunStatus.QUEUED, RunStatus.WAITING):
            if store.finish(
                conn, run.id, now, RunStatus.CANCELLED, owner=None,
                error=f"cancelled by {by}", cancelled_by=by,
            ):
                self._emit_finished(conn, run, RunStatus.CANCELLED, None, f"cancelled by {by}")
        else:
            store.request_cancel(conn, run.id, by)

    # --- commands -----------------------------------------------------------

    def cancel(self, run_id: str, by: str) -> bool:
        """Cancel a run: at once if it is not executing, else at its next step."""
        with self.db.write() as conn:
            run = store.get_run(conn, run_id)
            if run is None:
                raise UnknownRunError(f"no run with id {run_id!r}")
            if run.status.finished:
                return False
            self._cancel_in(conn, run, by, self._now())
        with self._held_lock:
            if run_id in self._held:
                self._held[run_id].cancel.set()
        return True

    def retry(self, run_id: str, by: str, *, from_scratch: bool = False) -> SendResult:
        """Start a new run of a finished one: resuming after its last finished step
        (trigger ``retry``), or from scratch (``rerun``). Singletons still apply."""
        with self.db.write() as conn:
            old = store.get_run(conn, run_id)
            if old is None:
                raise UnknownRunError(f"no run with id {run_id!r}")
            fn = self.registry.get(old.function_id)
            ev = store.event_by_id(conn, old.event_id) if old.event_id else None
            event = ev.as_dict() if ev else {"id": None, "name": "", "data": {}}
            new_id = uuid.uuid4().hex
            kind = Trigger.RERUN if from_scratch else Trigger.RETRY
            now = self._now()
            if not self._create_run(conn, fn, new_id, event, kind, by, now, parent_run_id=old.id):
                holder = store.active_run_id(conn, fn.id) or ""
                return SendResult(event_id=event["id"] or "", refused={fn.id: holder})
            if not from_scratch:
                store.copy_completed_steps(conn, old.id, new_id)
        self._wakeup.set()
        return SendResult(event_id=event["id"] or "", started=[new_id])

    # --- reading ------------------------------------------------------------

    def list_runs(self, **filters: Any) -> list[RunRecord]:
        with self.db.read() as conn:
            return store.list_runs(conn, **filters)

    def get_run(self, run_id: str) -> RunRecord:
        with self.db.read() as conn:
            run = store.get_run(conn, run_id)
        if run is None:
            raise UnknownRunError(f"no run with id {run_id!r}")
        return run

    def run_detail(self, run_id: str) -> RunDetail:
        with self.db.read() as conn:
            run = store.get_run(conn, run_id)
            if run is None:
                raise UnknownRunError(f"no run with id {run_id!r}")
            event = store.event_by_id(conn, run.event_id) if run.event_id else None
            return RunDetail(run, store.steps_of(conn, run_id), event, store.events_sent_by_run(conn, run_id))

    def active_run(self, function_id: str) -> RunRecord | None:
        with self.db.read() as conn:
            active = store.active_runs_of(conn, [function_id])
        return max(active, key=lambda r: r.created_at) if active else None

    def list_events(self, name: str | None = None, limit: int = 100) -> list[EventRecord]:
        with self.db.read() as conn:
            return store.list_events(conn, name=name, limit=limit)

    # --- workers ------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._stopping.clear()
        for i in range(self.workers):
            t = threading.Thread(target=self._work_loop, name=f"stationsync-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._heartbeat_loop, name="stationsync-heartbeat", daemon=True)
        hb.start()
        self._threads.append(hb)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; runs in flight hand themselves back at their next step."""
        self._stopping.set()
        self._wakeup.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def _work_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ran = self.run_once()
            except StationsyncError as exc:
                log.warning("worker could not claim work: %s", exc)
                ran = None
            if ran is None:
                self._wakeup.wait(self.poll_interval_s)
                self._wakeup.clear()

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self.heartbeat_s):
            self.heartbeat()

    def heartbeat(self) -> None:
        """Renew the leases of runs this engine executes; notice cancels and losses."""
        with self._held_lock:
            ids = list(self._held)
        if not ids:
            return
        try:
            with self.db.write() as conn:
                held, cancel = store.renew_leases(conn, ids, self.worker_id, self._now(), self.lease_s)
        except StorageError as exc:
            log.warning("heartbeat failed, will retry: %s", exc)
            return
        with self._held_lock:
            for run_id in ids:
                state = self._held.get(run_id)
                if state is None:
                    continue
                if run_id not in held:
                    state.lost.set()
                if run_id in cancel:
                    state.cancel.set()

    def run_once(self) -> str | None:
        """Claim one due run and execute it in this thread; its id, or None."""
        now = self._now()
        with self.db.read() as conn:
            candidates = store.claim_candidates(conn, now, 20)
        for run_id, status in candidates:
            if not self._has_room(run_id):
                continue
            with self.db.write() as conn:
                ok = store.claim(conn, run_id, self.worker_id, now, self.lease_s, status)
            if ok:
                self._execute(run_id)
                return run_id
        return None

    def _has_room(self, run_id: str) -> bool:
        with self.db.read() as conn:
            fn_id = store.function_of(conn, run_id)
            fn = self.registry.functions.get(fn_id or "")
            if fn is None or fn.concurrency is None:
                return True
            return store.count_running(conn, fn.id) < fn.concurrency

    # --- executing a run ----------------------------------------------------

    def _execute(self, run_id: str) -> None:
        with self.db.read() as conn:
            run = store.get_run(conn, run_id)
            assert run is not None
            event = store.event_by_id(conn, run.event_id) if run.event_id else None
            memo = store.load_steps(conn, run_id)
        now = self._now()
        fn = self.registry.functions.get(run.function_id)
        if fn is None:
            self._finish(run, RunStatus.FAILED, error=f"function {run.function_id!r} is not registered in this process")
            return
        if run.crash_count >= self.max_crashes:
            self._finish(
                run,
                RunStatus.DEAD,
                error=f"its worker stopped renewing the lease {run.crash_count} times; "
                "giving up instead of trying again",
            )
            return
        deadline = run.deadline_at
        if deadline is None:
            deadline = now + fn.timeout_s
            with self.db.write() as conn:
                store.set_deadline(conn, run_id, deadline)
        state = RunState(
            run_id=run_id,
            function=fn,
            attempt=run.attempt,
            trigger=run.trigger,
            triggered_by=run.triggered_by,
            event=event or EventRecord("", "", "{}", None, "", None, run.created_at, None),
            deadline=deadline,
            memo=memo,
        )
        if run.cancel_requested:
            state.cancel.set()
        with self._held_lock:
            self._held[run_id] = state
        try:
            self._run_handler(run, fn, state)
        finally:
            with self._held_lock:
                self._held.pop(run_id, None)

    def _run_handler(self, run: RunRecord, fn: Function, state: RunState) -> None:
        try:
            self._check_boundary(state)
            output = fn.handler(Context(self, state))
            encoded = to_json("<return value>", output)
        except Suspend:
            return
        except LeaseLost:
            log.warning("run %s: lease lost to another worker; stopping here", run.id)
            return
        except ShuttingDown:
            self._park(state, RunStatus.QUEUED, None)
            return
        except RunCancelled:
            by = self.get_run(run.id).cancelled_by or "a cancel request"
            self._finish(run, RunStatus.CANCELLED, error=f"cancelled by {by}", cancelled_by=by)
            return
        except RunTimedOut:
            self._finish(run, RunStatus.TIMED_OUT, error=f"timed out after {fn.timeout_s:g} s")
            return
        except StepFailure as failure:
            self._after_failure(run, fn, state, failure.error, failure.attempts, failure.step)
            return
        except Exception as exc:
            self._after_failure(run, fn, state, exc, run.attempt, None)
            return
        self._finish(run, RunStatus.COMPLETED, output=encoded)

    def _after_failure(
        self,
        run: RunRecord,
        fn: Function,
        state: RunState,
        exc: BaseException,
        attempts: int,
        step: str | None,
    ) -> None:
        where = f"step {step!r}" if step else "the handler"
        if isinstance(exc, NonRetriableError) or attempts > fn.retries:
            why = "not retriable" if isinstance(exc, NonRetriableError) else f"after {attempts} attempt(s)"
            self._finish(run, RunStatus.FAILED, error=f"{where} failed ({why}): {_error_text(exc)}")
            return
        delay: float | None = None
        if isinstance(exc, RetryAfterError):
            delay = exc.seconds
        elif isinstance(getattr(exc, "retry_after", None), int | float):
            delay = float(exc.retry_after)  # type: ignore[attr-defined]
        if delay is None:
            delay = backoff_s(fn.backoff_initial_s, fn.backoff_max_s, attempts)
        log.info("run %s: %s failed (attempt %d), retrying in %.1f s", run.id, where, attempts, delay)
        self._park(state, RunStatus.QUEUED, self._now() + delay)

    def _park(self, state: RunState, status: RunStatus, wake_at: float | None) -> None:
        with self.db.write() as conn:
            store.park(conn, state.run_id, self.worker_id, self._now(), status=status, wake_at=wake_at)
        self._wakeup.set()

    def _finish(
        self,
        run: RunRecord,
        status: RunStatus,
        *,
        output: str | None = None,
        error: str | None = None,
        cancelled_by: str | None = None,
    ) -> None:
        now = self._now()
        with self.db.write() as conn:
            if store.finish(
                conn, run.id, now, status, owner=self.worker_id,
                output=output, error=error, cancelled_by=cancelled_by,
            ):
                self._emit_finished(conn, run, status, output, error)
        self._wakeup.set()

    def _emit_finished(
        self, conn: Connection, run: RunRecord, status: RunStatus, output: str | None, error: str | None
    ) -> None:
        suffix = {RunStatus.COMPLETED: "completed", RunStatus.CANCELLED: "cancelled"}.get(status, "failed")
        data: dict[str, Any] = {
            "run_id": run.id,
            "function_id": run.function_id,
            "status": status.value,
            "trigger": run.trigger.value,
        }
        if output is not None:
            data["output"] = json.loads(output)
        if error is not None:
            data["error"] = error
        self._send_in(conn, f"{run.function_id}.{suffix}", data, None, f"run {run.id}", None, run.id)

    # --- called by Step -----------------------------------------------------

    def _check_boundary(self, state: RunState) -> None:
        if state.lost.is_set():
            raise LeaseLost
        if self._stopping.is_set():
            raise ShuttingDown
        if state.cancel.is_set():
            raise RunCancelled
        if state.deadline is not None and self._now() > state.deadline:
            raise RunTimedOut

    def _checkpoint(
        self, state: RunState, name: str, seq: int, kind: StepKind, attempts: int, started: float, encoded: str
    ) -> None:
        now = self._now()
        with self.db.write() as conn:
            if not store.holds_lease(conn, state.run_id, self.worker_id, now):
                state.lost.set()
                raise LeaseLost
            store.save_step(
                self.db,
                conn,
                {
                    "run_id": state.run_id,
                    "name": name,
                    "seq": seq,
                    "kind": kind.value,
                    "status": StepStatus.COMPLETED.value,
                    "attempts": attempts,
                    "result": encoded,
                    "error": None,
                    "started_at": started,
                    "ended_at": now,
                    "wake_at": None,
                },
            )

    def _record_step_failure(
        self,
        state: RunState,
        name: str,
        seq: int,
        attempts: int,
        started: float,
        exc: BaseException,
        previous: StepRecord | None,
    ) -> None:
        now = self._now()
        errors = (previous.errors if previous else []) + [
            {"attempt": attempts, "error": _error_text(exc), "at": now}
        ]
        with self.db.write() as conn:
            if not store.holds_lease(conn, state.run_id, self.worker_id, now):
                state.lost.set()
                raise LeaseLost
            store.save_step(
                self.db,
                conn,
                {
                    "run_id": state.run_id,
                    "name": name,
                    "seq": seq,
                    "kind": StepKind.RUN.value,
                    "status": StepStatus.FAILED.value,
                    "attempts": attempts,
                    "error": _error_text(exc),
                    "errors": json.dumps(errors),
                    "started_at": started,
                    "ended_at": now,
                },
            )

    def _send_from_step(
        self,
        state: RunState,
        name: str,
        seq: int,
        started: float,
        event: str,
        data: dict[str, Any],
        key: str | None,
    ) -> str:
        with self.db.write() as conn:
            now = self._now()
            if not store.holds_lease(conn, state.run_id, self.worker_id, now):
                state.lost.set()
                raise LeaseLost
            result = self._send_in(conn, event, data, key, f"run {state.run_id}", None, state.run_id)
            store.save_step(
                self.db,
                conn,
                {
                    "run_id": state.run_id,
                    "name": name,
                    "seq": seq,
                    "kind": StepKind.SEND.value,
                    "status": StepStatus.COMPLETED.value,
                    "attempts": 1,
                    "result": json.dumps(result.event_id),
                    "started_at": started,
                    "ended_at": now,
                },
            )
        self._after_send(result)
        return result.event_id

    def _park_waiting(
        self,
        state: RunState,
        name: str,
        seq: int,
        kind: StepKind,
        wake: float,
        wait: tuple[str, dict[str, Any]] | None,
    ) -> dict[str, Any] | None:
        now = self._now()
        wake_at = min(wake, state.deadline) if state.deadline is not None else wake
        with self.db.write() as conn:
            if not store.holds_lease(conn, state.run_id, self.worker_id, now):
                state.lost.set()
                raise LeaseLost
            store.save_step(
                self.db,
                conn,
                {
                    "run_id": state.run_id,
                    "name": name,
                    "seq": seq,
                    "kind": kind.value,
                    "status": StepStatus.WAITING.value,
                    "attempts": 1,
                    "started_at": now,
                    "wake_at": wake,
                },
            )
            spec = (name, wait[0], json.dumps(wait[1])) if wait else None
            store.park(conn, state.run_id, self.worker_id, now, status=RunStatus.WAITING, wake_at=wake_at, wait=spec)
        return None

    def _report_progress(
        self, state: RunState, name: str, current: int, total: int | None, message: str | None
    ) -> None:
        now = self._now()
        try:
            with self.db.write() as conn:
                store.save_step(
                    self.db,
                    conn,
                    {
                        "run_id": state.run_id,
                        "name": name,
                        "seq": state.memo[name].seq if name in state.memo else state.next_seq - 1,
                        "kind": StepKind.RUN.value,
                        "status": StepStatus.RUNNING.value,
                        "started_at": now,
                        "progress_current": current,
                        "progress_total": total,
                        "progress_message": message,
                    },
                )
        except StorageError as exc:
            log.warning("run %s: progress not recorded: %s", state.run_id, exc)
