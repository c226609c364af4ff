"""The durable step engine: functions of checkpointed steps, run by worker threads.

It knows nothing of Tarana or stations; any function can run on it. This
package re-exports what callers use: declaring functions, the engine, and the
records its read API returns.
"""

from __future__ import annotations

from core.engine.context import Context, Step
from core.engine.engine import Engine, RunDetail
from core.engine.events import SendResult
from core.engine.function import CancelOn, Cron, Function, On, Registry, function
from jobstore.records import RunRecord, RunStatus, StepRecord, StepStatus, Trigger

__all__ = [
    "CancelOn",
    "Context",
    "Cron",
    "Engine",
    "Function",
    "On",
    "Registry",
    "RunDetail",
    "RunRecord",
    "RunStatus",
    "SendResult",
    "Step",
    "StepRecord",
    "StepStatus",
    "Trigger",
    "function",
]
