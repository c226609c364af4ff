"""The durable engine's front: send events, cancel and retry runs, read state, run workers.

Sending goes through the ``Dispatcher`` in one transaction. Worker threads
claim due runs with a compare-and-set update that writes a fresh lease token,
and execute them (``Execution``); a heartbeat renews the leases of the runs
this engine holds, notices cancel requests from other processes, and ends
runs past their deadline. A run whose worker died is claimed again once its
lease expires and resumes after its last checkpoint; each such takeover
counts a crash, and a run that keeps dying is ended as ``dead`` instead of
being tried forever. ``run_once`` does one claim on the calling thread, so
tests drive the engine with a fake clock and no background threads.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from core.clock import Clock, SystemClock
from core.engine.events import Dispatcher, SendResult
from core.engine.executor import Execution
from core.engine.function import Registry
from core.errors import EngineError, StorageError, UnknownRunError
from jobstore import runs as store
from jobstore.db import Database
from jobstore.records import EventRecord, RunRecord, RunStatus, StepRecord, Trigger

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("stationsync.engine")

__all__ = ["Engine", "RunDetail", "SendResult"]


@dataclass(frozen=True)
class RunDetail:
    run: RunRecord
    steps: list[StepRecord]
    event: EventRecord | None
    sent_events: list[EventRecord]


class Engine:
    """Commands (``send``, ``cancel``, ``retry``), reads (``list_runs``,
    ``get_run``, ``run_detail``, ``active_run``, ``list_events``) and workers
    (``start``/``stop``, or ``run_once`` on the caller's thread)."""

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
        self.clock: Clock = clock or SystemClock()
        self.workers = workers
        self.poll_interval_s = poll_interval_s
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.max_crashes = max_crashes
        self.progress_interval_s = progress_interval_s
        default_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # The lease column holds "<worker id>#<nonce>": keep room for the nonce.
        self.worker_id = (worker_id or default_id)[:80]
        # The real clock is read on every step: skip building a datetime then.
        self.now: Callable[[], float] = (
            time.time if isinstance(self.clock, SystemClock) else self._clock_now
        )
        self.dispatcher = Dispatcher(db, registry, self.now)
        self.stopping = threading.Event()
        self._held: dict[str, Execution] = {}
        self._held_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._threads: list[threading.Thread] = []

    def _clock_now(self) -> float:
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
        """Record an event and start, cancel or wake every run it concerns.

        A singleton function whose run is active is not started again:
        ``result.refused[function_id]`` (and ``result.run_id``) name that run.
        An event whose ``idempotency_key`` was sent before starts nothing and
        comes back with ``duplicate=True`` and the first event's outcome.
        """
        with self.db.write() as conn:
            result = self.dispatcher.send_in(
                conn, name, dict(data or {}), idempotency_key, sent_by, trigger
            )
        self.after_send(result)
        return result

    def after_send(self, result: SendResult) -> None:
        with self._held_lock:
            for run_id in result.cancelled:
                if run_id in self._held:
                    self._held[run_id].state.cancel.set()
        if result.started or result.woken:
            self._wakeup.set()

    # --- commands -----------------------------------------------------------

    def cancel(self, run_id: str, by: str) -> bool:
        """Cancel a run: at once if nobody executes it, else at its next step boundary.

        False when the run had already finished.
        """
        with self.db.write() as conn:
            run = store.get_run(conn, run_id)
            if run is None:
                raise UnknownRunError(f"no run with id {run_id!r}")
            if run.status.finished:
                return False
            self.dispatcher.cancel_in(conn, run, by, self.now())
        with self._held_lock:
            if run_id in self._held:
                self._held[run_id].state.cancel.set()
        self._wakeup.set()
        return True

    def retry(self, run_id: str, by: str, *, from_scratch: bool = False) -> SendResult:
        """Start a new run of a finished one with the same event: resuming after
        its completed steps (trigger ``retry``, the steps are copied), or from
        scratch (``rerun``). A singleton's active run still refuses it."""
        with self.db.write() as conn:
            old = store.get_run(conn, run_id)
            if old is None:
                raise UnknownRunError(f"no run with id {run_id!r}")
            if old.status.active:
                raise EngineError(f"run {run_id} is still {old.status}; cancel it before retrying")
            fn = self.registry.get(old.function_id)
            ev = store.event_by_id(conn, old.event_id) if old.event_id else None
            event: dict[str, Any] = ev.as_dict() if ev else {"id": None, "name": "", "data": {}}
            kind = Trigger.RERUN if from_scratch else Trigger.RETRY
            new_id, holder = self.dispatcher.start_run(
                conn, fn, event, kind, by, self.now(), parent_run_id=old.id
            )
            if new_id is None:
                return SendResult(event_id=event["id"] or "", refused={fn.id: holder or ""})
            if not from_scratch:
                store.copy_completed_steps(conn, old.id, new_id)
        self._wakeup.set()
        return SendResult(event_id=event["id"] or "", started=[new_id])

    # --- reading ------------------------------------------------------------

    def list_runs(
        self,
        *,
        function_id: str | None = None,
        statuses: Sequence[str] | None = None,
        triggers: Sequence[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[RunRecord]:
        """Runs, newest first; times are epoch seconds of creation."""
        with self.db.read() as conn:
            return store.list_runs(
                conn,
                function_id=function_id,
                statuses=statuses,
                triggers=triggers,
                since=since,
                until=until,
                limit=limit,
                offset=offset,
            )

    def get_run(self, run_id: str) -> RunRecord:
        with self.db.read() as conn:
            run = store.get_run(conn, run_id)
        if run is None:
            raise UnknownRunError(f"no run with id {run_id!r}")
        return run

    def run_detail(self, run_id: str) -> RunDetail:
        """The run, its steps in order, its triggering event and the events it sent."""
        with self.db.read() as conn:
            run = store.get_run(conn, run_id)
            if run is None:
                raise UnknownRunError(f"no run with id {run_id!r}")
            event = store.event_by_id(conn, run.event_id) if run.event_id else None
            return RunDetail(
                run, store.steps_of(conn, run_id), event, store.events_sent_by_run(conn, run_id)
            )

    def active_run(self, function_id: str) -> RunRecord | None:
        """The newest queued, running or waiting run of a function, if any."""
        with self.db.read() as conn:
            active = store.active_runs_of(conn, [function_id])
        return active[-1] if active else None

    def list_events(self, name: str | None = None, limit: int = 100) -> list[EventRecord]:
        with self.db.read() as conn:
            return store.list_events(conn, name=name, limit=limit)

    # --- workers ------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads and the heartbeat; idempotent."""
        if self._threads:
            return
        self.stopping.clear()
        for i in range(self.workers):
            t = threading.Thread(
                target=self._work_loop, name=f"stationsync-worker-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)
        hb = threading.Thread(
            target=self._heartbeat_loop, name="stationsync-heartbeat", daemon=True
        )
        hb.start()
        self._threads.append(hb)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; runs in flight hand themselves back at their next step."""
        self.stopping.set()
        self._wakeup.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def wake_workers(self) -> None:
        self._wakeup.set()

    def _work_loop(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                ran = self.run_once()
            except StorageError as exc:
                failures += 1
                # Say it once, then at doubling intervals: an outage is one story.
                if failures & (failures - 1) == 0:
                    log.warning(
                        "worker could not claim or settle a run (%d in a row): %s", failures, exc
                    )
                ran = None
            except Exception:
                # A worker thread must outlive any one bad run.
                log.exception("worker failed unexpectedly; continuing")
                ran = None
            else:
                if failures:
                    log.warning("database reachable again after %d failed attempts", failures)
                failures = 0
            if ran is None:
                # Back off while the database is failing, up to 5 s between tries.
                wait = min(self.poll_interval_s * 2 ** min(failures, 10), max(5.0, self.poll_interval_s))
                self._wakeup.wait(wait if failures else self.poll_interval_s)
                self._wakeup.clear()

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.heartbeat_s):
            try:
                self.heartbeat()
            except StorageError as exc:
                log.warning("heartbeat failed, will retry: %s", exc)

    def hold(self, execution: Execution) -> None:
        with self._held_lock:
            self._held[execution.run.id] = execution

    def release(self, execution: Execution) -> None:
        with self._held_lock:
            if self._held.get(execution.run.id) is execution:
                del self._held[execution.run.id]

    def heartbeat(self) -> None:
        """Renew the leases of runs this engine executes, pass on cancel requests,
        and end runs past their deadline (their thread's later writes are refused)."""
        with self._held_lock:
            held = list(self._held.values())
        if not held:
            return
        now = self.now()
        with self.db.write() as conn:
            for ex in held:
                state = ex.state
                if state.deadline is not None and now > state.deadline:
                    ended = store.finish(
                        conn,
                        ex.run.id,
                        now,
                        RunStatus.TIMED_OUT,
                        token=ex.token,
                        error=f"timed out after {ex.fn.timeout_s:g} s (a step was still running)",
                    )
                    if ended is not None:
                        self.dispatcher.emit_finished(conn, ended)
                    state.timed_out = True
                    state.lost.set()
                    continue
                renewed = store.renew_lease(conn, ex.run.id, ex.token, now, self.lease_s)
                if renewed is None:
                    state.lost.set()
                elif renewed:
                    state.cancel.set()

    def run_once(self) -> str | None:
        """Claim one due run and execute it on this thread; its id, or None.

        A stopped engine claims nothing: it would only hand the run back.
        """
        if self.stopping.is_set():
            return None
        now = self.now()
        functions = self.registry.functions
        with self.db.read() as conn:
            candidates = store.claim_candidates(conn, now, 20, list(functions))
        for run_id, status, function_id, previous_owner in candidates:
            fn = functions[function_id]
            token = f"{self.worker_id}#{uuid.uuid4().hex[:12]}"
            with self.db.write() as conn:
                if fn.concurrency is not None and status != RunStatus.RUNNING.value:
                    store.lock_function(self.db, conn, fn.id)
                    if store.count_running(conn, fn.id) >= fn.concurrency:
                        continue
                run = store.claim(conn, run_id, token, now, self.lease_s, status, fn.timeout_s)
                if run is None:
                    continue
                memo = store.load_steps(conn, run_id)
                if run.crash_count >= self.max_crashes:
                    self._bury(conn, run, memo, previous_owner, now)
                    return run_id
                event = store.event_by_id(conn, run.event_id) if run.event_id else None
            Execution(self, fn, run, event, memo).execute()
            return run_id
        return None

    def _bury(
        self,
        conn: Connection,
        run: RunRecord,
        memo: dict[str, StepRecord],
        previous_owner: str | None,
        now: float,
    ) -> None:
        """End a run whose workers keep dying, saying where it was and who held it."""
        done = [s for s in memo.values() if s.status.value == "completed"]
        where = f"after step {done[-1].name!r}" if done else "before its first step finished"
        holder = previous_owner.split("#", 1)[0] if previous_owner else "unknown"
        error = (
            f"dead: its worker stopped renewing the lease {run.crash_count} time(s), "
            f"{where} (last holder {holder}); not tried again"
        )
        ended = store.finish(conn, run.id, now, RunStatus.DEAD, token=run.lease_owner, error=error)
        if ended is not None:
            self.dispatcher.emit_finished(conn, ended)
        self._wakeup.set()
        log.error("run %s: %s", run.id, error)
