"""Starting and stopping syncs: one run however many ask at once, and cancellation.

Cancelling uses the engine for real: worker threads run the sync while the
simulator answers slowly, and the cancel event stops it at its next step.
"""

from __future__ import annotations

import threading
import time

from core.engine import RunStatus
from core.sync import commands
from core.sync.events import SYNC_CANCELLED
from jobstore import synclogs
from jobstore.db import Database
from jobstore.synclogs import SyncStatus
from tests.sync.conftest import MakeSim
from tests.sync.harness import SyncHarness


def wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_two_requests_at_once_give_one_run(db: Database, make_sim: MakeSim) -> None:
    h = SyncHarness(db, make_sim(40))
    barrier = threading.Barrier(4)
    answers: list[commands.SyncRequest] = []

    def ask(i: int) -> None:
        barrier.wait()
        answers.append(h.request(by=f"user{i}@example.com"))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [a for a in answers if a.started]
    refused = [a for a in answers if not a.started]
    assert len(started) == 1 and len(refused) == 3
    winner = started[0]
    for a in refused:
        assert a.run_id == winner.run_id and winner.run_id in a.message
        assert "already running" in a.message
    assert [r.id for r in h.engine.list_runs(function_id="tarana-sync")] == [winner.run_id]
    h.drain()
    log = synclogs.get_sync_log(db, winner.sync_id)
    assert log is not None and log.status.finished


def test_a_cancel_event_stops_a_running_sync(db: Database, make_sim: MakeSim) -> None:
    sim = make_sim(200, "latency_ms=20")
    h = SyncHarness(db, sim, pages_per_step=1, workers=2, poll_interval_s=0.05)
    h.engine.start()
    try:
        req = h.request()
        assert wait_for(lambda: any(
            s.name == "fetch-bn-0002" for s in h.engine.run_detail(req.run_id).steps
        ))  # fmt: skip
        sent = h.engine.send(SYNC_CANCELLED, {"sync_id": req.sync_id}, sent_by="ops@example.com")
        assert sent.cancelled == [req.run_id]
        assert wait_for(lambda: h.engine.get_run(req.run_id).status == RunStatus.CANCELLED)
        assert wait_for(
            lambda: (synclogs.get_sync_log(db, req.sync_id) or req).status == "cancelled"
        )  # type: ignore[union-attr]
    finally:
        h.engine.stop()
    log = synclogs.get_sync_log(db, req.sync_id)
    assert log is not None and log.status == SyncStatus.CANCELLED and log.completed_at
    assert any("cancelled by" in e for e in log.errors)
    names = [s.name for s in h.engine.run_detail(req.run_id).steps]
    assert "finish" not in names and "write-batch-0001" not in names


def test_cancel_sync_before_it_starts_still_leaves_a_log(db: Database, make_sim: MakeSim) -> None:
    h = SyncHarness(db, make_sim(20))
    req = h.request(dry_run=True)
    assert commands.cancel_sync(h.engine, req.run_id, "ops@example.com")
    assert not commands.cancel_sync(h.engine, req.run_id, "ops@example.com")
    h.drain()
    log = synclogs.get_sync_log(db, req.sync_id)
    assert log is not None and log.status == SyncStatus.CANCELLED and log.dry_run
    assert log.triggered_by == "tester@example.com"
    # and the next request starts at once
    assert h.request().started


def test_a_scheduled_sync_is_labelled_cron_and_keys_its_log_by_run(
    db: Database, make_sim: MakeSim
) -> None:
    from core.engine.function import cron_event

    h = SyncHarness(db, make_sim(30))
    sent = h.engine.send(
        cron_event("tarana-sync"), {"job_id": "tarana-sync:cron:0"}, sent_by="scheduler"
    )
    (run_id,) = sent.started
    h.drain()
    log = synclogs.sync_log_for_run(db, run_id)
    assert log is not None and log.id == run_id and log.run_id == run_id
    assert log.trigger_type == "cron" and log.triggered_by == "scheduler"
    assert not log.dry_run and not log.delete_stale and log.status.finished
