"""Running the real sync (engine, functions, client) against a portal on 127.0.0.1.

``SyncDriver`` wires the product's pieces on a test database: the durable
engine on a fake clock (so retry backoff passes at once), the sync's
functions, and a ``TaranaClient`` for whichever portal the test started.
``finish`` runs every due run on the calling thread, moving the clock past
backoffs, until the sync's log says it ended. ``snapshot`` is the stored
table, every column of every row, so a test can prove it untouched.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core.clock import FakeClock
from core.engine import Engine, Registry
from core.settings import Secret, Settings
from core.sync import commands
from core.sync.function import sync_functions
from core.tarana.client import TaranaClient
from jobstore import synclogs
from jobstore.db import Database
from jobstore.synclogs import SyncLog
from jobstore.tables import base_stations


class SyncDriver:
    """The sync against one portal (anything with base_url, username, password, operator_id)."""

    def __init__(self, db: Database, portal: Any, *, retries: int = 1, **settings: Any) -> None:
        self.db = db
        self.portal = portal
        self.clock = FakeClock()
        settings.setdefault("write_batch", 50)
        self.settings = Settings(**settings)
        self.retries = retries
        self.registry = Registry()
        for fn in sync_functions(db, self.settings, self.client, self.clock, pages_per_step=3):
            self.registry.add(fn)
        self.engine = Engine(db, self.registry, clock=self.clock, progress_interval_s=0.0)

    def client(self) -> TaranaClient:
        return TaranaClient(
            self.portal.base_url,
            self.portal.username,
            Secret(self.portal.password),
            operator_id=self.portal.operator_id,
            concurrency=2,
            retries=self.retries,
            backoff_max_s=0.01,
            timeout_s=20,
        )

    def drain(self, limit: int = 200) -> None:
        for _ in range(limit):
            if self.engine.run_once() is None:
                return
        raise AssertionError(f"still finding work after {limit} claims")

    def sync(self, rounds: int = 12, **options: Any) -> SyncLog:
        """Request a sync and run it (and its companions) until its log says it ended."""
        options.setdefault("by", "hostile-tests@example.com")
        req = commands.request_sync(self.engine, **options)
        assert req.started, req.message
        for _ in range(rounds):
            self.drain()
            log = synclogs.get_sync_log(self.db, req.sync_id)
            if log is not None and log.finished:
                self.drain()
                return log
            self.clock.advance(3600)
        raise AssertionError("the sync did not end")


def snapshot(db: Database) -> dict[str, dict[str, Any]]:
    """Every stored station, every column, by serial number."""
    with db.read() as conn:
        rows = conn.execute(sa.select(base_stations).order_by(base_stations.c.serial_number))
        return {r.serial_number: dict(r._mapping) for r in rows}
