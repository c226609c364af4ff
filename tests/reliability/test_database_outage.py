"""The database goes away in the middle of a sync, then comes back: nothing is lost.

PostgreSQL is taken away with a TCP proxy between the worker and the server
(cut: open connections break and new ones are refused; restore: it listens
again); the server itself is never touched. SQLite is locked by another
connection holding ``BEGIN EXCLUSIVE``. Either way the worker process must
survive, say clearly what went wrong, and finish the run once the database is
back, with the stations equal to the portal's and no finished step run twice.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.engine import Engine
from core.sync import commands
from core.tarana.simulator import Simulator
from jobstore import migrate, synclogs
from jobstore.db import Database
from jobstore.records import RunRecord
from jobstore.tables import steps
from tests.reliability.conftest import MakeSim
from tests.reliability.harness import (
    Proc,
    Processes,
    finished_steps,
    portal_settings,
    product_env,
    sender,
    wait_for,
    with_port,
)
from tests.reliability.tcp_proxy import TcpProxy
from tests.sync.harness import FIELDS, reference, stored

pytestmark = pytest.mark.slow

STATIONS = 3000
BATCH = 50


@pytest.fixture
def proxy(postgres_schema_url: str) -> Iterator[TcpProxy]:
    """A proxy in front of the test's PostgreSQL server."""
    url = sa.make_url(postgres_schema_url)
    p = TcpProxy((url.host or "127.0.0.1", url.port or 5432)).start()
    try:
        yield p
    finally:
        p.stop()


def completed_steps(db: Database, run_id: str, prefix: str) -> int:
    with db.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    steps.c.run_id == run_id,
                    steps.c.name.like(f"{prefix}%"),
                    steps.c.status == "completed",
                )
            ).scalar_one()
        )


def start_worker(
    procs: Processes, url: str, sim: Simulator, directory: Path, lease_s: float = 1.0
) -> Proc:
    env = product_env(
        {
            "STATIONSYNC_DATABASE_URL": url,
            "STATIONSYNC_WRITE_BATCH": str(BATCH),
            "STATIONSYNC_LEASE_S": f"{lease_s:g}",
            "STATIONSYNC_HEARTBEAT_S": f"{lease_s * 0.3:g}",
            "STATIONSYNC_POLL_INTERVAL_S": "0.05",
            **portal_settings(sim),
        },
        directory,
    )
    worker = procs.worker(env)
    procs.wait_started(worker, "running on")
    return worker


def assert_synced(db: Database, engine: Engine, sim: Simulator, run_id: str) -> RunRecord:
    run = engine.get_run(run_id)
    assert run.status == "completed", run.error
    expected = reference(sim.bn_records())
    rows = stored(db)
    assert set(rows) == set(expected)
    assert all({k: rows[s][k] for k in FIELDS} == v for s, v in expected.items())
    log = synclogs.sync_log_for_run(db, run_id)
    assert log is not None and log.status in ("completed", "completed_with_warnings")
    assert log.inserted == len(expected)
    return run


@pytest.mark.postgres
@pytest.mark.parametrize("phase", ["fetch-rn-", "write-batch-"])
def test_postgres_unreachable_mid_sync_then_back(
    postgres_schema_url: str,
    proxy: TcpProxy,
    procs: Processes,
    make_sim: MakeSim,
    tmp_path: Path,
    phase: str,
) -> None:
    sim = make_sim(STATIONS, "latency_ms=1")
    db = Database(postgres_schema_url)  # the test's own view, not through the proxy
    try:
        migrate.upgrade(db)
        engine = sender(db)
        worker = start_worker(procs, with_port(postgres_schema_url, proxy.port), sim, tmp_path)
        req = commands.request_sync(engine, by="outage test")
        assert req.started

        wait_for(lambda: completed_steps(db, req.run_id, phase) >= 1, 60, f"a {phase} step")
        proxy.cut()
        cut_at = time.monotonic()
        assert engine.get_run(req.run_id).status.active, "the sync ended before the cut"
        before = finished_steps(db)  # the worker cannot write anything now
        # the worker notices and says why, in words an operator can act on
        wait_for(lambda: "Connection refused" in worker.log(), 30, "the worker to report")
        wait_for(lambda: time.monotonic() - cut_at > 3, 10, "three seconds of outage")
        assert worker.alive(), worker.log()[-3000:]
        proxy.restore()

        wait_for(lambda: engine.get_run(req.run_id).status.finished, 120, "the sync to end")
        assert worker.alive(), worker.log()[-3000:]
        assert_synced(db, engine, sim, req.run_id)
        after = finished_steps(db)
        assert {k: after.get(k) for k in before} == before  # no finished step ran again
        # The outage is reported with its reason, once and then at doubling
        # intervals, and its end is reported too.
        text = worker.log()
        assert re.search(r"could not claim or settle a run \(1 in a row\): database error on postgresql://", text)
        assert "database reachable again" in text
    finally:
        db.dispose()


@pytest.mark.parametrize("lease_s", [10.0, 1.0], ids=["lease-10s", "lease-1s"])
def test_locked_sqlite_file_makes_the_run_wait_then_finish(
    sqlite_url: str, procs: Processes, make_sim: MakeSim, tmp_path: Path, lease_s: float
) -> None:
    """A lock shorter than the lease: the run just waits. Longer (1 s lease): the lease
    cannot be renewed, so the worker's other threads take the run over as crashed when
    the lock goes, and the stalled execution, fenced off, stops at its next checkpoint."""
    sim = make_sim(STATIONS)
    db = Database(sqlite_url)
    try:
        migrate.upgrade(db)
        engine = sender(db)
        worker = start_worker(procs, sqlite_url, sim, tmp_path, lease_s)
        req = commands.request_sync(engine, by="lock test")
        assert req.started

        path = sa.make_url(sqlite_url).database
        assert path
        locker = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            # Take the lock between two checks, so the run is surely mid-write when it is held.
            deadline = time.monotonic() + 60
            while True:
                locker.execute("BEGIN EXCLUSIVE")
                done = completed_steps(db, req.run_id, "write-batch-")
                if done >= 3:
                    break
                locker.execute("COMMIT")
                assert time.monotonic() < deadline, "the sync never reached its write batches"
                time.sleep(0.002)
            locked_at = time.monotonic()
            before = finished_steps(db)  # reads go on in WAL mode; writers wait
            time.sleep(5)  # the lock is held this long: the scenario, not a wait for a result
            frozen = finished_steps(db)
            assert frozen == before  # nothing was checkpointed while the file was locked
            assert engine.get_run(req.run_id).status.active
        finally:
            locker.execute("COMMIT") if locker.in_transaction else None
            locker.close()

        wait_for(lambda: engine.get_run(req.run_id).status.finished, 120, "the sync to end")
        assert time.monotonic() - locked_at >= 5
        assert worker.alive(), worker.log()[-3000:]
        run = assert_synced(db, engine, sim, req.run_id)
        if lease_s > 5:
            assert (run.attempt, run.crash_count) == (1, 0)  # it waited, nothing more
        after = finished_steps(db)
        assert {k: after.get(k) for k in before} == before
        assert completed_steps(db, req.run_id, "write-batch-") == -(-len(stored(db)) // BATCH)
    finally:
        db.dispose()
