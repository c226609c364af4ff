"""The sync's names and options: function ids, event names, and what a request may ask for.

Everything that sends or reacts to a sync event takes its names from here, so
the UI, the commands and the functions cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SYNC_FUNCTION = "tarana-sync"
WATCH_FUNCTION = "tarana-sync-watch"
CANCELLED_FUNCTION = "tarana-sync-cancelled"

SYNC_REQUESTED = "tarana/sync.requested"
SYNC_CANCELLED = "tarana/sync.cancelled"
SYNC_COMPLETED = "tarana/sync.completed"
SYNC_FAILED = "tarana/sync.failed"
DELETE_CONFIRMED = "tarana/sync.delete-confirmed"

# What the engine sends when a run of the sync ends badly.
RUN_FAILED = f"{SYNC_FUNCTION}.failed"
RUN_CANCELLED = f"{SYNC_FUNCTION}.cancelled"

MAX_SYNC_ID = 32  # the log's primary key is VARCHAR(32)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SyncOptions:
    """The options a sync request carries in its event data."""

    dry_run: bool = False
    delete_stale: bool = False
    sync_id: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> SyncOptions:
        sync_id = data.get("sync_id")
        valid = isinstance(sync_id, str) and 0 < len(sync_id) <= MAX_SYNC_ID
        return cls(
            dry_run=_flag(data.get("dry_run", False)),
            delete_stale=_flag(data.get("delete_stale", False)),
            sync_id=sync_id if valid else None,
        )

    def as_data(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "delete_stale": self.delete_stale, "sync_id": self.sync_id}
