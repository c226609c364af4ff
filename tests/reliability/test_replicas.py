"""Scale-out on PostgreSQL: two dashboards and a headless worker share one database.

Three replicas run as operators run them (``streamlit run app.py`` twice and
``python -m core worker``), all scheduling and all working, against one fresh
PostgreSQL schema and one portal simulator, with a cron of every minute and a
short lease. The tests run in order on the same cluster:

1. exactly one replica holds the scheduler lease;
2. "Sync now" from two replicas at once (two ``python -m core sync``) gives one run;
3. syncs requested one after another are executed by more than one replica
   (the sync is a singleton, so spreading shows over successive syncs; a run's
   executor is its lease holder, watched while it runs, since a finished run
   keeps no record of it);
4. SIGKILL of the scheduler's holder moves the lease to another replica within
   a lease period (plus the heartbeat at which the others look), and the next
   minute's fire starts exactly one run; no fire of any minute ran twice.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from core.engine import Engine
from core.sync.events import SYNC_FUNCTION
from core.tarana.faults import Faults
from core.tarana.simulator import Simulator
from jobstore import leases, migrate
from jobstore.db import Database
from jobstore.tables import events, runs
from tests.conftest import postgres_url
from tests.reliability.harness import (
    Proc,
    Processes,
    fresh_schema,
    pid_of,
    portal_settings,
    product_env,
    sender,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LEASE_S = 2.0
HEARTBEAT_S = 0.5
CRON_EVENT = f"cron/{SYNC_FUNCTION}"


@dataclass
class Cluster:
    db: Database
    engine: Engine
    sim: Simulator
    procs: Processes
    env: dict[str, str]
    replicas: list[Proc] = field(default_factory=list)

    def start(self, kind: str) -> Proc:
        if kind == "dashboard":
            proc = self.procs.dashboard(self.env, "dashboard")
            self.procs.wait_healthy(proc)
        else:
            proc = self.procs.worker(self.env, "worker")
            self.procs.wait_started(proc, "running on")
        self.replicas.append(proc)
        return proc

    def alive(self) -> list[Proc]:
        return [p for p in self.replicas if p.alive()]

    def holder(self) -> leases.LeaseInfo | None:
        return leases.get(self.db, "scheduler")

    def logs(self) -> str:
        return "\n".join(p.log() for p in self.replicas)

    def run(self, run_id: str) -> Any:
        with self.db.read() as conn:
            return conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()

    def idle(self) -> bool:
        return self.engine.active_run(SYNC_FUNCTION) is None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = postgres_url()
    assert base is not None
    directory = tmp_path_factory.mktemp("replicas")
    sim = Simulator(stations=300, seed=5)
    sim.start()
    procs = Processes(directory / "procs")
    try:
        with fresh_schema(base) as url:
            db = Database(url)
            migrate.upgrade(db)
            settings = {
                "STATIONSYNC_DATABASE_URL": url,
                "STATIONSYNC_SYNC_CRON": "* * * * *",
                "STATIONSYNC_LEASE_S": f"{LEASE_S:g}",
                "STATIONSYNC_HEARTBEAT_S": f"{HEARTBEAT_S:g}",
                "STATIONSYNC_POLL_INTERVAL_S": "0.1",
                "STATIONSYNC_WRITE_BATCH": "100",
                **portal_settings(sim),
            }
            c = Cluster(db, sender(db), sim, procs, product_env(settings, directory))
            try:
                for kind in ("dashboard", "dashboard", "worker"):
                    c.start(kind)
                yield c
            finally:
                procs.stop_all()
                db.dispose()
    finally:
        procs.stop_all()
        sim.stop()


def test_exactly_one_replica_holds_the_scheduler(cluster: Cluster) -> None:
    lease = wait_for(cluster.holder, 30, "a scheduler lease")
    pids = {p.pid for p in cluster.alive()}
    assert pid_of(lease.holder) in pids
    assert lease.expires_at > time.time()
    # the others know they are not leading: only one "now runs the scheduler" line
    leaders = [p for p in cluster.alive() if "now runs the scheduler" in p.log()]
    assert [p.pid for p in leaders] == [pid_of(lease.holder)]


def test_sync_now_from_two_replicas_at_once_gives_one_run(cluster: Cluster) -> None:
    wait_for(cluster.idle, 60, "no sync to be running")
    cluster.sim.set_faults(Faults(latency_ms=500))  # a sync of several seconds
    try:
        before = {r.id for r in cluster.engine.list_runs(function_id=SYNC_FUNCTION)}
        env = {**cluster.env, "STATIONSYNC_SCHEDULER": "false"}
        clis = [cluster.procs.start(f"sync-{i}", ["-m", "core", "sync"], env) for i in (1, 2)]
        codes = [cluster.procs.wait_exit(p, 120) for p in clis]
    finally:
        cluster.sim.set_faults(Faults())
    outputs = [p.log() for p in clis]
    assert codes == [0, 0], outputs
    new = [r for r in cluster.engine.list_runs(function_id=SYNC_FUNCTION) if r.id not in before]
    assert len(new) == 1, [r.id for r in new]
    run = new[0]
    assert run.status == "completed" and run.trigger == "manual"
    started = [o for o in outputs if f"Sync started: run {run.id}." in o]
    refused = [o for o in outputs if f"A sync is already running: run {run.id}" in o]
    assert len(started) == 1 and len(refused) == 1, outputs
    # both followed the one run to its end
    assert all(f"run {run.id}  tarana-sync  completed" in o for o in outputs)


def test_successive_syncs_are_executed_by_more_than_one_replica(cluster: Cluster) -> None:
    pids = {p.pid for p in cluster.alive()}
    executors: list[int | None] = []
    for _ in range(10):
        wait_for(cluster.idle, 60, "no sync to be running")
        req = cluster.engine.send("tarana/sync.requested", {}, sent_by="replica test")
        assert req.started, req.refused
        seen: set[int | None] = set()

        def ended(run_id: str = req.started[0], seen: set[int | None] = seen) -> bool:
            row = cluster.run(run_id)
            if row.lease_owner:
                seen.add(pid_of(row.lease_owner))
            return row.status in ("completed", "failed", "dead", "cancelled", "timed_out")

        wait_for(ended, 60, "the sync to end", 0.01)
        assert cluster.run(req.started[0]).status == "completed"
        assert seen and seen <= pids, seen
        executors.extend(seen)
        if len(set(executors)) >= 2:
            break
    assert len(set(executors)) >= 2, f"every sync ran on one replica: {Counter(executors)}"


def test_killing_the_scheduler_moves_the_lease_and_each_fire_runs_once(cluster: Cluster) -> None:
    lease = wait_for(cluster.holder, 30, "a scheduler lease")
    victim = cluster.procs.by_pid(pid_of(lease.holder))
    assert victim is not None and victim.alive()
    kind = "dashboard" if victim.port else "worker"
    wait_for(cluster.idle, 60, "no sync to be running")
    cluster.procs.kill(victim)
    killed_at = time.time()

    def moved() -> leases.LeaseInfo | None:
        now = cluster.holder()
        return now if now is not None and now.holder != lease.holder else None

    new = wait_for(moved, 4 * LEASE_S, "the scheduler lease to move", 0.02)
    took = new.acquired_at - killed_at
    # expired at most a lease after the kill; a standby looks every heartbeat
    assert took <= LEASE_S + HEARTBEAT_S + 1.0, f"the lease moved after {took:.2f} s"
    assert pid_of(new.holder) in {p.pid for p in cluster.alive()}
    cluster.start(kind)  # back to three replicas, all of them scheduling

    # the next minute's fire, with nothing running, starts exactly one run
    now = datetime.now().astimezone()
    boundary = now.replace(second=0, microsecond=0).timestamp() + 60
    if boundary - time.time() < 5:
        boundary += 60
    wait_for(cluster.idle, boundary - time.time() - 2, "no sync to be running at the fire")

    def fired() -> Any:
        with cluster.db.read() as conn:
            return conn.execute(
                sa.select(events).where(
                    events.c.name == CRON_EVENT, events.c.created_at >= boundary
                )
            ).first()

    event = wait_for(fired, boundary - time.time() + 30, "the next cron fire", 0.2)
    assert event.sent_by == f"scheduler ({new.holder})"
    with cluster.db.read() as conn:
        fire_runs = conn.execute(sa.select(runs).where(runs.c.event_id == event.id)).all()
    assert len(fire_runs) == 1 and fire_runs[0].trigger == "cron"
    wait_for(lambda: cluster.run(fire_runs[0].id).status == "completed", 60, "the cron run")

    # over the whole test: one event per fire time, at most one run per fire, and a fire
    # that started none was refused because a sync was already running
    with cluster.db.read() as conn:
        fires = conn.execute(sa.select(events).where(events.c.name == CRON_EVENT)).all()
        cron_runs = conn.execute(sa.select(runs).where(runs.c.trigger == "cron")).all()
    keys = Counter(e.idempotency_key for e in fires)
    assert fires and all(n == 1 for n in keys.values()), keys
    per_event = Counter(r.event_id for r in cron_runs)
    assert all(per_event[e.id] == 1 or '"refused": {"tarana-sync"' in e.outcome for e in fires)
    assert max(per_event.values()) == 1
    # and no replica's scheduler ever tried a fire that another had already made
    assert "already fired" not in cluster.logs()
