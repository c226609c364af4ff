"""What a handler sees: the event, the run, and ``step`` with its durable primitives.

``step.run`` executes a function once per run and stores its JSON result; on a
retry or after a crash the stored result is returned without running it again.
``sleep`` and ``wait_for_event`` park the run in the database and unwind the
handler with ``Suspend``, so a waiting run holds no thread and survives a
restart. Every result is round-tripped through JSON on the first execution
too, so a handler sees the same values whether a step ran or was replayed.
The control-flow signals here derive from ``BaseException`` so that a
handler's ``except Exception`` cannot swallow them.
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
    from core.engine.executor import Execution

log = logging.getLogger("stationsync.engine")

_COMPLETED = StepStatus.COMPLETED


class Suspend(BaseException):
    """Unwinds a handler whose run was parked (sleeping or waiting)."""


class RunCancelled(BaseException):
    """Unwinds a handler whose run was cancelled, at a step boundary."""


class LeaseLost(BaseException):
    """Unwinds a handler whose lease another worker has taken over."""


class RunTimedOut(BaseException):
    """Unwinds a handler whose run passed its timeout."""


class ShuttingDown(BaseException):
    """Unwinds a handler when its engine stops: the run is handed back at once."""


class StepFailure(BaseException):
    """A step failed; the engine decides between retry and failing the run."""

    def __init__(self, step: str, error: Exception, attempts: int) -> None:
        super().__init__(step, error, attempts)
        self.step = step
        self.error = error
        self.attempts = attempts


# One encoder, built once: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
_SCALARS = (str, int, bool, type(None))


def to_json(step: str, value: Any) -> str:
    """Encode a step result, refusing anything that would not replay identically."""
    try:
        return _ENCODER.encode(value)
    except TypeError as exc:
        bad = _first_non_json(value)
        raise StepResultNotJSONError(step, type(bad).__name__) from exc
    except ValueError as exc:
        if isinstance(exc.__cause__, RecursionError) or "ircular" in str(exc):
            raise StepResultNotJSONError(step, type(value).__name__, "it refers to itself") from exc
        raise StepResultNotJSONError(step, "float", "NaN and infinity are not JSON") from exc


def encode(step: str, value: Any) -> tuple[str, Any]:
    """The stored text of a result and the value the handler gets back.

    Scalars come back unchanged; containers come back decoded, so that a tuple
    is a list and an int key a string on the first run exactly as on replay.
    """
    text = to_json(step, value)
    if type(value) in _SCALARS or type(value) is float:
        return text, value
    return text, json.loads(text)


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
    timed_out: bool = False
    seen: set[str] = field(default_factory=set)
    next_seq: int = 0
    # (name, seq, started) of the step whose function is running now.
    current: tuple[str, int, float] | None = None
    last_progress: float = -math.inf
    event_dict: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.next_seq = max((s.seq for s in self.memo.values()), default=-1) + 1
        self.event_dict = self.event.as_dict()


class Step:
    """The durable primitives, bound to one run."""

    def __init__(self, execution: Execution) -> None:
        self._ex = execution
        self._state = execution.state

    def _enter(self, name: str) -> StepRecord | None:
        state = self._state
        if name in state.seen:
            raise DuplicateStepError(f"step name {name!r} used twice in one run")
        state.seen.add(name)
        return state.memo.get(name)

    def _seq(self, done: StepRecord | None) -> int:
        if done is not None:
            return done.seq
        seq = self._state.next_seq
        self._state.next_seq = seq + 1
        return seq

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` once for this run and return its (stored) JSON result."""
        done = self._enter(name)
        if done is not None and done.status == _COMPLETED:
            return done.result
        ex = self._ex
        started = ex.boundary()
        seq = self._seq(done)
        attempts = (done.attempts if done is not None else 0) + 1
        state = self._state
        state.current = (name, seq, started)
        try:
            text, value = encode(name, fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - any failure of user code is the step's failure
            state.current = None
            ex.step_failed(name, seq, attempts, started, exc, done)
        state.current = None
        ex.step_done(
            name, seq, StepKind.RUN, attempts, started, text, done.errors_json if done else None
        )
        return value

    def transaction(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(conn, *args, **kwargs)`` once for this run, inside the
        database transaction that stores its checkpoint.

        Its database writes and the step's result commit together or not at
        all, so they happen exactly once even if the worker dies right after
        (DBOS's transaction step). ``conn`` is a SQLAlchemy connection to the
        engine's database; do no other I/O inside ``fn``.
        """
        done = self._enter(name)
        if done is not None and done.status == _COMPLETED:
            return done.result
        ex = self._ex
        started = ex.boundary()
        seq = self._seq(done)
        attempts = (done.attempts if done is not None else 0) + 1
        try:
            return ex.step_transaction(
                name,
                seq,
                attempts,
                started,
                done.errors_json if done else None,
                lambda conn: encode(name, fn(conn, *args, **kwargs)),
            )
        except Exception as exc:  # noqa: BLE001 - any failure of user code is the step's failure
            ex.step_failed(name, seq, attempts, started, exc, done)

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
        if done is not None and done.status == _COMPLETED:
            return str(done.result)
        started = self._ex.boundary()
        return self._ex.send_from_step(
            name, self._seq(done), started, event, dict(data or {}), idempotency_key
        )

    def sleep(self, name: str, seconds: float) -> None:
        """Pause the run durably for ``seconds``; no thread is held meanwhile."""
        done = self._enter(name)
        if done is not None and done.status == _COMPLETED:
            return
        now = self._ex.boundary()
        if done is not None and done.wake_at is not None:
            if done.wake_at <= now:
                self._ex.step_done(
                    name, done.seq, StepKind.SLEEP, 1, done.started_at or now, "null"
                )
                return
            wake = done.wake_at
        else:
            wake = now + max(0.0, seconds)
        self._ex.park_waiting(name, self._seq(done), StepKind.SLEEP, now, wake, None)

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
        Only events sent after the wait began can end it.
        """
        done = self._enter(name)
        if done is not None and done.status == _COMPLETED:
            result = done.result
            return result if isinstance(result, dict) else None
        now = self._ex.boundary()
        if done is not None and done.wake_at is not None:
            if done.wake_at <= now:
                self._ex.step_done(name, done.seq, StepKind.WAIT, 1, done.started_at or now, "null")
                return None
            wake = done.wake_at
        else:
            wake = now + max(0.0, timeout_s)
        conditions = dict(where or {})
        if match:
            conditions[match] = lookup(self._state.event_dict, match)
        self._ex.park_waiting(name, self._seq(done), StepKind.WAIT, now, wake, (event, conditions))
        return None  # not reached: parking unwinds the handler

    def progress(self, current: int, total: int | None = None, message: str | None = None) -> None:
        """Report progress of the step now running (shown live in the UI).

        Reports closer together than the engine's progress interval are
        dropped, except the final one (``current >= total``).
        """
        state = self._state
        if state.current is None:
            return
        now = time.monotonic()
        final = total is not None and current >= total
        if not final and now - state.last_progress < self._ex.progress_interval_s:
            return
        state.last_progress = now
        self._ex.report_progress(current, total, message)


class Context:
    """The argument every handler receives."""

    def __init__(self, execution: Execution) -> None:
        self._state = execution.state
        self.step = Step(execution)
        self.log = log

    @property
    def run_id(self) -> str:
        return self._state.run_id

    @property
    def attempt(self) -> int:
        """1 on the first execution, 2 on the first retry, and so on. Resuming
        after a sleep, a wait or a restart of the engine is the same attempt."""
        return self._state.attempt

    @property
    def event(self) -> dict[str, Any]:
        """The triggering event: ``{"id", "name", "data", "ts"}``."""
        return self._state.event_dict

    @property
    def data(self) -> dict[str, Any]:
        data = self._state.event_dict.get("data")
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
