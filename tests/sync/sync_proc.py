"""A separate process that runs the sync, for the test that kills one mid-sync.

``python -m tests.sync.sync_proc CONFIG`` reads one JSON object from the file
CONFIG (database URL, portal address and credentials, batch sizes, lease, and
whether to request a sync first), runs an engine with the sync's functions on
worker threads, and exits once no sync run is active and the watch has run.
It prints one JSON line: the run ids it saw.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from core.clock import SystemClock
from core.engine import Engine, Registry
from core.settings import Secret, Settings
from core.sync import commands
from core.sync.events import SYNC_FUNCTION, WATCH_FUNCTION
from core.sync.function import sync_functions
from core.tarana.client import TaranaClient
from jobstore.db import Database


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    db = Database(cfg["db_url"])
    settings = Settings(write_batch=cfg["write_batch"])

    def client() -> TaranaClient:
        return TaranaClient(
            cfg["base_url"], cfg["username"], Secret(cfg["password"]),
            operator_id=cfg["operator_id"], concurrency=4,
        )  # fmt: skip

    registry = Registry()
    for fn in sync_functions(db, settings, client, SystemClock(), pages_per_step=cfg["pages"]):
        registry.add(fn)
    engine = Engine(
        db, registry, workers=1, poll_interval_s=0.05, lease_s=cfg["lease_s"],
        heartbeat_s=cfg["lease_s"] / 4,
    )  # fmt: skip
    seen: list[str] = []
    if cfg.get("request"):
        req = commands.request_sync(engine, by="process-a")
        seen.append(req.run_id)
    engine.start()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            syncs = engine.list_runs(function_id=SYNC_FUNCTION, limit=10)
            watches = engine.list_runs(function_id=WATCH_FUNCTION, limit=10)
            done = syncs and all(r.status.finished for r in syncs)
            if done and watches and all(r.status.finished for r in watches):
                break
            time.sleep(0.05)
    finally:
        engine.stop()
    print(json.dumps({"runs": [r.id for r in engine.list_runs(limit=50)], "seen": seen}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
