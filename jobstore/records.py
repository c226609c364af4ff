"""Records read from the run/step/event tables, and the statuses stored in them.

Statuses are ``StrEnum``s whose values are exactly the stored strings. The
records are frozen dataclasses built straight from result rows; JSON columns
are decoded on demand so that listing runs never parses outputs it does not show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclass(frozen=True)
class RunRecord:
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
    output_json: str | None
    error: str | None
    cancel_keys_json: str | None = None
    wait_step: str | None = None
    wait_event: str | None = None
    wait_match_json: str | None = None

    @property
    def output(self) -> Any:
        return loads(self.output_json)

    @property
    def worker(self) -> str | None:
        """The worker holding the lease (its token without the per-claim nonce)."""
        return None if self.lease_owner is None else self.lease_owner.split("#", 1)[0]

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @classmethod
    def from_row(cls, row: Any) -> RunRecord:
        m = row._mapping
        return cls(
            id=m["id"],
            function_id=m["function_id"],
            trigger=Trigger(m["trigger"]),
            event_id=m["event_id"],
            triggered_by=m["triggered_by"],
            status=RunStatus(m["status"]),
            attempt=m["attempt"],
            lease_owner=m["lease_owner"],
            lease_expires_at=m["lease_expires_at"],
            wake_at=m["wake_at"],
            deadline_at=m["deadline_at"],
            crash_count=m["crash_count"],
            cancel_requested=bool(m["cancel_requested"]),
            cancelled_by=m["cancelled_by"],
            parent_run_id=m["parent_run_id"],
            created_at=m["created_at"],
            started_at=m["started_at"],
            ended_at=m["ended_at"],
            output_json=m["output"],
            error=m["error"],
            cancel_keys_json=m["cancel_keys"],
            wait_step=m["wait_step"],
            wait_event=m["wait_event"],
            wait_match_json=m["wait_match"],
        )


@dataclass(frozen=True)
class StepRecord:
    run_id: str
    name: str
    seq: int
    kind: StepKind
    status: StepStatus
    attempts: int
    result_json: str | None
    error: str | None
    errors_json: str | None
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

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @classmethod
    def from_row(cls, row: Any) -> StepRecord:
        m = row._mapping
        return cls(
            run_id=m["run_id"],
            name=m["name"],
            seq=m["seq"],
            kind=StepKind(m["kind"]),
            status=StepStatus(m["status"]),
            attempts=m["attempts"],
            result_json=m["result"],
            error=m["error"],
            errors_json=m["errors"],
            started_at=m["started_at"],
            ended_at=m["ended_at"],
            wake_at=m["wake_at"],
            progress_current=m["progress_current"],
            progress_total=m["progress_total"],
            progress_message=m["progress_message"],
        )


@dataclass(frozen=True)
class EventRecord:
    id: str
    name: str
    data_json: str
    idempotency_key: str | None
    sent_by: str
    source_run_id: str | None
    created_at: float
    outcome_json: str | None

    @property
    def data(self) -> Any:
        return loads(self.data_json)

    @property
    def outcome(self) -> Any:
        return loads(self.outcome_json)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "data": self.data, "ts": self.created_at}

    @classmethod
    def from_row(cls, row: Any) -> EventRecord:
        m = row._mapping
        return cls(
            id=m["id"],
            name=m["name"],
            data_json=m["data"],
            idempotency_key=m["idempotency_key"],
            sent_by=m["sent_by"],
            source_run_id=m["source_run_id"],
            created_at=m["created_at"],
            outcome_json=m["outcome"],
        )
