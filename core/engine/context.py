"""What a handler sees: the event, the run, and ``step`` with its durable primitives.

``step.run`` executes a function once per run and stores its JSON result; on a
retry or after a crash the stored result is returned without running it again.
``sleep`` and ``wait_for_event`` park the run in the database and unwind the
handler with ``Suspend``, so a waiting run holds no thread and survives a
restart. Every result is round-tripped through JSON on the first execution
too, so a handler sees the same values whether a step ran or was replayed.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.engine.function import Function, lookup
from core.errors import DuplicateStepError, StepResultNotJSONError
from jobstore.records import EventRecord, StepKind, StepRecord, StepStatus, Trigger

if TYPE_CHECKING:
    from core.engine.engine import Engine

log = logging.getLogger("stationsync.engine")


class Suspend(BaseException):
    """Unwinds a handler whose run was parked (sleeping or waiting)."""


class RunCancelled(BaseException):
    """Unwinds a handler whose run was cancelled, at a step boundary."""


class LeaseLost(BaseException):
    """Unwinds a handler whose lease another worker has taken over."""


class RunTimedOut(BaseException):
    """Unwinds a handler whose run passed its timeout."""


@dataclass
class StepFailure(BaseException):
    """A step failed; the engine decides between retry and failing the run."""

    step: str
    error: BaseException
    attempts: int


def to_json(step: str, value: Any) -> str:
    """Encode a step result, refusing anything that would not replay identically."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except TypeError as exc:
        bad = _first_non_json(value)
        raise StepResultNotJSONError(step, type(bad).__name__) from exc
    except ValueError as exc:
        raise StepResultNotJSONError(step, "float", "NaN and infinity are not JSON") from exc


def _first_non_json(value: Any) -> Any:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str | int | float | bool) and k is not None:
                return k
            found = _first_non_json(v)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for v in value:
            found = _first_non_json(v)
            if found is not None:
                return found
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return None
    return value


@dataclass
class RunState:
    """In-memory state of one run while a worker executes it."""

    run_id: str
    function: Function
    attempt: int
    trigger: Trigger
    triggered_by: str
    event: EventRecord
    deadline: float | None
    memo: dict[str, StepRecord]
    cancel: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    seen: set[str] = field(default_factory=set)
    next_seq: int = 0
    current_step: str | None = None
    last_progress: float = 0.0


class Step:
    """The durable primitives, bound to one run."""

    def __init__(self, engine: Engine, state: RunState) -> None:
        self._engine = engine
        self._state = state
        self._state.next_seq = max((s.seq for s in state.memo.values()), default=-1) + 1

    # --- boundaries ---------------------------------------------------------

    def _enter(self, name: str) -> StepRecord | None:
        state = self._state
        if name in state.seen:
            raise DuplicateStepError(f"step name {name!r} used twice in one run")
        state.seen.add(name)
        self._engine._check_boundary(state)
        return state.memo.get(name)

    def _seq(self, name: str) -> int:
        done = self._state.memo.get(name)
        if done is not None:
            return done.seq
        seq = self._state.next_seq
        self._state.next_seq += 1
        return seq

    # --- primitives ---------------------------------------------------------

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` once for this run and return its (stored) JSON result."""
        done = self._enter(name)
        if done is not None and done.status == StepStatus.COMPLETED:
            return done.result
        state = self._state
        attempts = (done.attempts if done else 0) + 1
        seq = self._seq(name)
        started = self._engine.clock.now().timestamp()
        state.current_step = name
        try:
            value = fn(*args, **kwargs)
            encoded = to_json(name, value)
        except (Suspend, RunCancelled, LeaseLost, RunTimedOut):
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            self._engine._record_step_failure(state, name, seq, attempts, started, exc, done)
            raise StepFailure(name, exc, attempts) from exc
        finally:
            state.current_step = None
        self._engine._checkpoint(state, name, seq, StepKind.RUN, attempts, started, encoded)
        return json.loads(encoded)

    def send_event(
        self,
        name: str,
        event: str,
        data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Send an event once for this run; returns the event id (stored on replay)."""
        done = self._enter(name)
        if done is not None and done.status == StepStatus.COMPLETED:
            return str(done.result)
        state = self._state
        seq = self._seq(name)
        started = self._engine.clock.now().timestamp()
        event_id = self._engine._send_from_step(
            state, name, seq, started, event, dict(data or {}), idempotency_key
        )
        return event_id

    def sleep(self, name: str, seconds: float) -> None:
        """Pause the run durably for ``seconds``; no thread is held meanwhile."""
        done = self._enter(name)
        if done is not None and done.status == StepStatus.COMPLETED:
            return
        now = self._engine.clock.now().timestamp()
        if done is not None and done.wake_at is not None and done.wake_at <= now:
            self._engine._checkpoint(
                self._state, name, done.seq, StepKind.SLEEP, 1, done.started_at or now, "null"
            )
            return
        wake = done.wake_at if done is not None and done.wake_at else now + max(0.0, seconds)
        self._engine._park_waiting(self._state, name, self._seq(name), StepKind.SLEEP, wake, None)
        raise Suspend

    def wait_for_event(
        self,
        name: str,
        event: str,
        *,
        match: str | None = None,
        where: Mapping[str, Any] | None = None,
        timeout_s: float,
    ) -> dict[str, Any] | None:
        """Wait durably for an event; returns it, or None after ``timeout_s``.

        ``match="data.sync_id"`` waits for an event whose ``data.sync_id``
        equals this run's triggering event's; ``where`` gives explicit values.
        """
        done = self._enter(name)
        if done is not None and done.status == StepStatus.COMPLETED:
            result = done.result
            return result if isinstance(result, dict) else None
        now = self._engine.clock.now().timestamp()
        if done is not None and done.wake_at is not None and done.wake_at <= now:
            self._engine._checkpoint(
                self._state, name, done.seq, StepKind.WAIT, 1, done.started_at or now, "null"
            )
            return None
        conditions = dict(where or {})
        if match:
            conditions[match] = lookup(self._state.event.as_dict(), match)
        wake = done.wake_at if done is not None and done.wake_at else now + max(0.0, timeout_s)
        found = self._engine._park_waiting(
            self._state, name, self._seq(name), StepKind.WAIT, wake, (event, conditions)
        )
        if found is not None:
            return found
        raise Suspend

    def progress(self, current: int, total: int | None = None, message: str | None = None) -> None:
        """Report progress of the step now running (shown live in the UI)."""
        state = self._state
        if state.current_step is None:
            return
        now = time.monotonic()
        final = total is not None and current >= total
        if not final and now - state.last_progress < self._engine.progress_interval_s:
            return
        state.last_progress = now
        self._engine._report_progress(state, state.current_step, current, total, message)


class Context:
    """The argument every handler receives."""

    def __init__(self, engine: Engine, state: RunState) -> None:
        self._state = state
        self.step = Step(engine, state)
        self.log = log

    @property
    def run_id(self) -> str:
        return self._state.run_id

    @property
    def attempt(self) -> int:
        return self._state.attempt

    @property
    def event(self) -> dict[str, Any]:
        return self._state.event.as_dict()

    @property
    def data(self) -> dict[str, Any]:
        data = self._state.event.data
        return data if isinstance(data, dict) else {}

    @property
    def trigger(self) -> Trigger:
        return self._state.trigger

    @property
    def triggered_by(self) -> str:
        return self._state.triggered_by

    @property
    def function(self) -> Function:
        return self._state.function

    def cancelled(self) -> bool:
        """True once a cancel was requested; long steps may check it and return early."""
        return self._state.cancel.is_set()

    def raise_if_cancelled(self) -> None:
        if self._state.cancel.is_set():
            raise RunCancelled


def backoff_s(initial: float, maximum: float, attempt: int) -> float:
    """Exponential backoff with full jitter for the given failed attempt (1-based)."""
    from tenacity import RetryCallState, wait_random_exponential

    strategy = wait_random_exponential(multiplier=initial, max=maximum)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    value = float(strategy(state))
    return value if math.isfinite(value) else maximum
