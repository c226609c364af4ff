"""Executing one claimed run: replay the handler, checkpoint new steps, settle the end.

An ``Execution`` lives for one claim of one run on one worker thread. It holds
the run's lease token and a ``RunSession`` (one database connection) so each
step costs a single short write transaction: the lease guard and the step row
together. Every write proves the lease first, so a worker that lost its run
can never overwrite the worker that took it over; it learns of the loss at
that write and unwinds. How the handler ends decides what happens to the run:
completed, parked for a retry with backoff, parked sleeping or waiting,
handed back at shutdown, cancelled, timed out, or failed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy.engine import Connection

from core.engine.context import (
    Context,
    LeaseLost,
    RunCancelled,
    RunState,
    RunTimedOut,
    ShuttingDown,
    StepFailure,
    Suspend,
    backoff_s,
    to_json,
)
from core.engine.function import Function
from core.errors import NonRetriableError, RetryAfterError, StorageError
from jobstore import runs as store
from jobstore.records import EventRecord, RunRecord, RunStatus, StepKind, StepRecord, StepStatus

if TYPE_CHECKING:
    from core.engine.engine import Engine

log = logging.getLogger("stationsync.engine")

_RUN, _COMPLETED, _FAILED = StepKind.RUN.value, StepStatus.COMPLETED.value, StepStatus.FAILED.value
_RUNNING = StepStatus.RUNNING.value


def error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Execution:
    """One claim of one run, executed on the calling thread."""

    def __init__(
        self,
        engine: Engine,
        fn: Function,
        run: RunRecord,
        event: EventRecord | None,
        memo: dict[str, StepRecord],
    ) -> None:
        assert run.lease_owner is not None
        self.engine = engine
        self.fn = fn
        self.run = run
        self.token = run.lease_owner
        self.now = engine.now
        self.progress_interval_s = engine.progress_interval_s
        self._stopping = engine.stopping
        self.state = RunState(
            run_id=run.id,
            function=fn,
            attempt=run.attempt,
            trigger=run.trigger,
            triggered_by=run.triggered_by,
            event=event or EventRecord("", "", "{}", None, "", None, run.created_at, None),
            deadline=run.deadline_at,
            memo=memo,
        )
        if run.cancel_requested:
            self.state.cancel.set()
        self.session = store.RunSession(engine.db, run.id, self.token)

    def execute(self) -> None:
        self.engine.hold(self)
        try:
            self._run_handler()
        finally:
            self.engine.release(self)
            self.session.close()

    def _run_handler(self) -> None:
        run, fn, state = self.run, self.fn, self.state
        try:
            self.boundary()
            text = to_json("<return value>", fn.handler(Context(self)))
        except Suspend:
            return
        except LeaseLost:
            if state.timed_out:
                log.warning(
                    "run %s: timed out while a step was running; its result is dropped", run.id
                )
            else:
                log.warning("run %s: lease lost to another worker; stopping here", run.id)
            return
        except ShuttingDown:
            self._park(RunStatus.QUEUED, None, same_attempt=True)
            return
        except RunCancelled:
            with self.engine.db.read() as conn:
                current = store.get_run(conn, run.id)
            by = (current.cancelled_by if current else None) or "a cancel request"
            self._finish(RunStatus.CANCELLED, error=f"cancelled by {by}", cancelled_by=by)
            return
        except RunTimedOut:
            self._finish(RunStatus.TIMED_OUT, error=f"timed out after {fn.timeout_s:g} s")
            return
        except StepFailure as failure:
            self._after_failure(failure.error, failure.attempts, failure.step)
            return
        except StorageError as exc:
            # The database failed under a checkpoint, not the handler: hand the
            # run back without spending its retries. If even that fails, the
            # lease expires and the next claim resumes from the last checkpoint.
            log.warning("run %s: database failed at a checkpoint (%s); handing it back", run.id, exc)
            try:
                self._park(RunStatus.QUEUED, self.engine.now() + 1.0, same_attempt=True)
            except StorageError:
                pass
            return
        except Exception as exc:  # noqa: BLE001 - a handler failing outside its steps
            self._after_failure(exc, run.attempt, None)
            return
        self._finish(RunStatus.COMPLETED, output=text)

    def _after_failure(self, exc: BaseException, attempts: int, step: str | None) -> None:
        fn = self.fn
        where = f"step {step!r}" if step else "the handler"
        if isinstance(exc, NonRetriableError) or attempts > fn.retries:
            why = (
                "not retriable"
                if isinstance(exc, NonRetriableError)
                else f"after {attempts} attempt(s)"
            )
            self._finish(RunStatus.FAILED, error=f"{where} failed ({why}): {error_text(exc)}")
            return
        delay: float | None = None
        if isinstance(exc, RetryAfterError):
            delay = exc.seconds
        else:
            hinted = getattr(exc, "retry_after", None)
            if isinstance(hinted, int | float) and not isinstance(hinted, bool):
                delay = max(0.0, float(hinted))
        if delay is None:
            delay = backoff_s(fn.backoff_initial_s, fn.backoff_max_s, attempts)
        log.info(
            "run %s: %s failed (attempt %d), retrying in %.1f s",
            self.run.id,
            where,
            attempts,
            delay,
        )
        self._park(
            RunStatus.QUEUED,
            self.now() + delay,
            error=f"{where} failed (attempt {attempts}), will retry: {error_text(exc)}",
        )

    def _park(
        self,
        status: RunStatus,
        wake_at: float | None,
        *,
        same_attempt: bool = False,
        error: str | None = None,
    ) -> None:
        deadline = self.state.deadline
        if wake_at is not None and deadline is not None:
            # Wake no later than the deadline, so a timeout is noticed on time.
            wake_at = min(wake_at, deadline)
        with self.engine.db.write() as conn:
            store.park(
                conn,
                self.run.id,
                self.token,
                self.now(),
                status=status,
                wake_at=wake_at,
                same_attempt=same_attempt,
                error=error,
            )
        self.engine.wake_workers()

    def _finish(
        self,
        status: RunStatus,
        *,
        output: str | None = None,
        error: str | None = None,
        cancelled_by: str | None = None,
    ) -> None:
        with self.engine.db.write() as conn:
            ended = store.finish(
                conn,
                self.run.id,
                self.now(),
                status,
                token=self.token,
                output=output,
                error=error,
                cancelled_by=cancelled_by,
            )
            if ended is not None:
                self.engine.dispatcher.emit_finished(conn, ended)
        self.engine.wake_workers()

    # --- called by Step -----------------------------------------------------

    def boundary(self) -> float:
        """Check between steps whether the run must stop; return the time now."""
        state = self.state
        if state.lost.is_set():
            raise LeaseLost
        if self._stopping.is_set():
            raise ShuttingDown
        if state.cancel.is_set():
            raise RunCancelled
        now = self.now()
        if state.deadline is not None and now > state.deadline:
            raise RunTimedOut
        return now

    def _saved(self, held: bool | None) -> None:
        if held is None:
            self.state.lost.set()
            raise LeaseLost
        if held:
            self.state.cancel.set()

    def step_done(
        self,
        name: str,
        seq: int,
        kind: StepKind,
        attempts: int,
        started: float,
        text: str,
        errors: str | None = None,
    ) -> None:
        self._saved(
            self.session.save_step(
                (
                    self.run.id,
                    name,
                    seq,
                    kind.value,
                    _COMPLETED,
                    attempts,
                    text,
                    None,
                    errors,
                    started,
                    self.now(),
                    None,
                    None,
                    None,
                    None,
                )
            )
        )

    def step_failed(
        self,
        name: str,
        seq: int,
        attempts: int,
        started: float,
        exc: Exception,
        previous: StepRecord | None,
    ) -> NoReturn:
        now = self.now()
        errors = (previous.errors if previous else []) + [
            {"attempt": attempts, "error": error_text(exc), "at": now}
        ]
        self._saved(
            self.session.save_step(
                (
                    self.run.id,
                    name,
                    seq,
                    _RUN,
                    _FAILED,
                    attempts,
                    None,
                    error_text(exc),
                    json.dumps(errors),
                    started,
                    now,
                    None,
                    None,
                    None,
                    None,
                )
            )
        )
        raise StepFailure(name, exc, attempts) from exc

    def step_transaction(
        self,
        name: str,
        seq: int,
        attempts: int,
        started: float,
        errors: str | None,
        body: Callable[[Connection], tuple[str, Any]],
    ) -> Any:
        engine = self.engine
        with engine.db.write() as conn:
            if not store.holds_lease(conn, self.run.id, self.token, started):
                self.state.lost.set()
                raise LeaseLost
            text, value = body(conn)
            store.save_step(
                engine.db,
                conn,
                {
                    "run_id": self.run.id,
                    "name": name,
                    "seq": seq,
                    "kind": _RUN,
                    "status": _COMPLETED,
                    "attempts": attempts,
                    "result": text,
                    "error": None,
                    "errors": errors,
                    "started_at": started,
                    "ended_at": self.now(),
                },
            )
        return value

    def send_from_step(
        self, name: str, seq: int, started: float, event: str, data: dict[str, Any], key: str | None
    ) -> str:
        engine = self.engine
        with engine.db.write() as conn:
            now = self.now()
            if not store.holds_lease(conn, self.run.id, self.token, now):
                self.state.lost.set()
                raise LeaseLost
            result = engine.dispatcher.send_in(
                conn, event, data, key, f"run {self.run.id}", None, self.run.id
            )
            store.save_step(
                engine.db,
                conn,
                {
                    "run_id": self.run.id,
                    "name": name,
                    "seq": seq,
                    "kind": StepKind.SEND.value,
                    "status": _COMPLETED,
                    "attempts": 1,
                    "result": json.dumps(result.event_id),
                    "started_at": started,
                    "ended_at": now,
                },
            )
        engine.after_send(result)
        return result.event_id

    def park_waiting(
        self,
        name: str,
        seq: int,
        kind: StepKind,
        now: float,
        wake: float,
        wait: tuple[str, dict[str, Any]] | None,
    ) -> NoReturn:
        deadline = self.state.deadline
        wake_at = min(wake, deadline) if deadline is not None else wake
        with self.engine.db.write() as conn:
            if not store.holds_lease(conn, self.run.id, self.token, now):
                self.state.lost.set()
                raise LeaseLost
            store.save_step(
                self.engine.db,
                conn,
                {
                    "run_id": self.run.id,
                    "name": name,
                    "seq": seq,
                    "kind": kind.value,
                    "status": StepStatus.WAITING.value,
                    "attempts": 1,
                    "started_at": now,
                    "wake_at": wake,
                },
            )
            spec = (name, wait[0], json.dumps(wait[1], default=str)) if wait else None
            store.park(
                conn,
                self.run.id,
                self.token,
                now,
                status=RunStatus.WAITING,
                wake_at=wake_at,
                wait=spec,
                same_attempt=True,
            )
        raise Suspend

    def report_progress(self, current: int, total: int | None, message: str | None) -> None:
        if self.state.current is None:
            return
        name, seq, started = self.state.current
        try:
            held = self.session.save_progress(
                (
                    self.run.id,
                    name,
                    seq,
                    _RUN,
                    _RUNNING,
                    0,
                    None,
                    None,
                    None,
                    started,
                    None,
                    None,
                    current,
                    total,
                    message,
                )
            )
        except StorageError as exc:
            # Progress is a courtesy to the viewer; losing one report is harmless.
            log.warning("run %s: progress not recorded: %s", self.run.id, exc)
            return
        self._saved(held)
