"""Records read from the run/step/event tables, and the statuses stored in them.

Statuses are ``StrEnum``s whose values are exactly the stored strings. The
records are frozen dataclasses built straight from result rows; JSON columns
are decoded on demand so that listing runs never parses outputs it does not show.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, TypeVar, get_type_hints


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"
    TIMED_OUT = "timed_out"

    @property
    def active(self) -> bool:
        return self in ACTIVE

    @property
    def finished(self) -> bool:
        return self not in ACTIVE


ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING})


class Trigger(StrEnum):
    CRON = "cron"
    EVENT = "event"
    MANUAL = "manual"
    RETRY = "retry"
    RERUN = "rerun"


class StepStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    WAITING = "waiting"


class StepKind(StrEnum):
    RUN = "run"
    SLEEP = "sleep"
    WAIT = "wait"
    SEND = "send"


_R = TypeVar("_R", bound="Record")


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def column(name: str, convert: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Field metadata: read this field from a column of another name, optionally converted."""
    return {"column": name, "convert": convert}


@functools.cache
def _plan(cls: Any) -> tuple[tuple[str, str, Callable[[Any], Any] | None, bool], ...]:
    """For each field: its column, how to convert the stored value, and whether
    NULL skips the conversion (it does for the enums and booleans found by type;
    a converter named in the field's metadata sees NULL too)."""
    hints = get_type_hints(cls)
    plan = []
    for f in fields(cls):
        convert = f.metadata.get("convert")
        skip_none = convert is None
        kind = hints[f.name]
        if convert is None and isinstance(kind, type) and issubclass(kind, StrEnum | bool):
            convert = kind
        plan.append((f.name, f.metadata.get("column", f.name), convert, skip_none))
    return tuple(plan)


class Timed:
    """A record with ``started_at`` and ``ended_at``: how long it took."""

    started_at: float | None
    ended_at: float | None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


class Record:
    """Builds a frozen dataclass straight from a result row, by field name."""

    @classmethod
    def from_row(cls: type[_R], row: Any) -> _R:
        m = row._mapping
        values = {}
        plan: Any = _plan  # cached per class; classes are hashable, whatever mypy infers
        for name, col, convert, skip_none in plan(cls):
            if col in m:
                value = m[col]
                if convert is not None and not (skip_none and value is None):
                    value = convert(value)
                values[name] = value
        return cls(**values)


@dataclass(frozen=True)
class RunRecord(Record, Timed):
    id: str
    function_id: str
    trigger: Trigger
    event_id: str | None
    triggered_by: str
    status: RunStatus
    attempt: int
    lease_owner: str | None
    lease_expires_at: float | None
    wake_at: float | None
    deadline_at: float | None
    crash_count: int
    cancel_requested: bool
    cancelled_by: str | None
    parent_run_id: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    output_json: str | None = field(metadata=column("output"))
    error: str | None
    cancel_keys_json: str | None = field(default=None, metadata=column("cancel_keys"))
    wait_step: str | None = None
    wait_event: str | None = None
    wait_match_json: str | None = field(default=None, metadata=column("wait_match"))
    executed_by: str | None = None

    @property
    def output(self) -> Any:
        return loads(self.output_json)

    @property
    def worker(self) -> str | None:
        """The worker holding the lease (its token without the per-claim nonce)."""
        return None if self.lease_owner is None else self.lease_owner.split("#", 1)[0]



@dataclass(frozen=True)
class StepRecord(Record, Timed):
    run_id: str
    name: str
    seq: int
    kind: StepKind
    status: StepStatus
    attempts: int
    result_json: str | None = field(metadata=column("result"))
    error: str | None
    errors_json: str | None = field(metadata=column("errors"))
    started_at: float | None
    ended_at: float | None
    wake_at: float | None
    progress_current: int | None
    progress_total: int | None
    progress_message: str | None

    @property
    def result(self) -> Any:
        return loads(self.result_json)

    @property
    def errors(self) -> list[dict[str, Any]]:
        value = loads(self.errors_json)
        return value if isinstance(value, list) else []



@dataclass(frozen=True)
class EventRecord(Record):
    id: str
    name: str
    data_json: str = field(metadata=column("data"))
    idempotency_key: str | None
    sent_by: str
    source_run_id: str | None
    created_at: float
    outcome_json: str | None = field(metadata=column("outcome"))

    @property
    def data(self) -> Any:
        return loads(self.data_json)

    @property
    def outcome(self) -> Any:
        return loads(self.outcome_json)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "data": self.data, "ts": self.created_at}

