"""Helpers for the sync tests: a simulator, an engine running the sync, and a reference.

``SyncHarness`` wires the real pieces together (the simulator over HTTP on
127.0.0.1, a ``TaranaClient``, the engine on the test database, the sync's
functions) and runs them on the calling thread. ``reference`` is a second,
deliberately simple reading of the simulator's BN list, written from the
portal notes rather than from ``core.sync``, that the stored stations are
compared with.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from core.clock import Clock, SystemClock
from core.engine import Engine, Registry
from core.settings import Secret, Settings
from core.sync import commands
from core.sync.function import sync_functions
from core.tarana.client import TaranaClient
from core.tarana.simulator import Simulator
from jobstore import synclogs
from jobstore.db import Database
from jobstore.synclogs import SyncLog
from jobstore.tables import base_stations

FIELDS = (
    "hostname", "site_name", "market", "region", "lat", "lng", "height_m", "azimuth_deg",
    "band", "device_status", "region_id", "market_id", "site_id", "cell_id", "sector_id",
    "cell_name", "sector_name",
)  # fmt: skip


def _num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


def reference(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The stations a correct sync stores from these BN list items, by serial."""
    out: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for r in records:
        serial = r.get("serialNumber")
        if not isinstance(serial, str) or not serial:
            continue
        if serial in seen:
            continue
        seen.add(serial)
        p = r.get("installParams") or {}
        lat, lng = p.get("latitude"), p.get("longitude")
        if not (_num(lat) and _num(lng)) or lat == 0 or lng == 0:
            continue
        if abs(lat) > 90 or abs(lng) > 180:
            continue
        height = p.get("heightAgl", p.get("height"))
        azimuth = p.get("antennaAzimuth")
        if (height is not None and not _num(height)) or (azimuth is not None and not _num(azimuth)):
            continue
        anc = r.get("ancestry") or {}

        def get(k: str, anc: dict[str, Any] = anc) -> dict[str, Any]:
            return anc.get(k) or {}

        out[serial] = {
            "hostname": r.get("hostName"),
            "site_name": get("site").get("name"),
            "market": get("market").get("name"),
            "region": get("region").get("name"),
            "lat": float(lat),
            "lng": float(lng),
            "height_m": None if height is None else float(height),
            "azimuth_deg": None if azimuth is None else float(azimuth),
            "band": r.get("band"),
            "device_status": "online" if r.get("connected") is True else "offline",
            "region_id": _id(get("region").get("id")),
            "market_id": _id(get("market").get("id")),
            "site_id": _id(get("site").get("id")),
            "cell_id": _id(get("cell").get("id")),
            "sector_id": _id(get("sector").get("id")),
            "cell_name": get("cellDetails").get("name"),
            "sector_name": get("sectorDetails").get("name"),
        }
    return out


def stored(db: Database) -> dict[str, dict[str, Any]]:
    """Every stored station as a dict of all columns, by serial."""
    with db.read() as conn:
        return {r.serial_number: dict(r._mapping) for r in conn.execute(sa.select(base_stations))}


class WriteTrace:
    """Counts statements (and rows) that write to base_stations, from the driver's view."""

    def __init__(self) -> None:
        self.statements = 0
        self.rows = 0

    def __call__(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        head = statement.lstrip().upper()
        if head.startswith(("INSERT", "UPDATE", "DELETE")) and "BASE_STATIONS" in head[:80]:
            self.statements += 1
            self.rows += len(params) if many else 1


@contextmanager
def trace_writes(db: Database) -> Iterator[WriteTrace]:
    trace = WriteTrace()
    event.listen(db.engine, "before_cursor_execute", trace)
    try:
        yield trace
    finally:
        event.remove(db.engine, "before_cursor_execute", trace)


class SyncHarness:
    """The sync on a real simulator and engine, driven on the calling thread."""

    def __init__(
        self,
        db: Database,
        sim: Simulator,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        pages_per_step: int = 5,
        password: str | None = None,
        **engine_options: Any,
    ) -> None:
        self.db = db
        self.sim = sim
        self.settings = settings or Settings(write_batch=40, delete_guard_share=0.10)
        self.clock = clock or SystemClock()
        self.password = password or sim.password
        self.registry = Registry()
        for fn in sync_functions(
            db, self.settings, self.client, self.clock, pages_per_step=pages_per_step
        ):
            self.registry.add(fn)
        engine_options.setdefault("progress_interval_s", 0.0)
        self.engine = Engine(db, self.registry, clock=self.clock, **engine_options)

    def client(self) -> TaranaClient:
        # short backoff: the tests inject many faults and must not sleep long
        return TaranaClient(
            self.sim.base_url, self.sim.username, Secret(self.password),
            operator_id=self.sim.operator_id, concurrency=4, backoff_max_s=0.05, timeout_s=10,
        )  # fmt: skip

    def drain(self, limit: int = 200) -> list[str]:
        ran = []
        for _ in range(limit):
            run_id = self.engine.run_once()
            if run_id is None:
                return ran
            ran.append(run_id)
        raise AssertionError(f"still finding work after {limit} claims")

    def request(self, **options: Any) -> commands.SyncRequest:
        options.setdefault("by", "tester@example.com")
        return commands.request_sync(self.engine, **options)

    def sync(self, **options: Any) -> SyncLog:
        """Request a sync, run everything due, and return its log."""
        req = self.request(**options)
        assert req.started, req.message
        self.drain()
        log = synclogs.get_sync_log(self.db, req.sync_id)
        assert log is not None
        return log
