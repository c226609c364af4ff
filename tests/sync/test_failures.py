"""A flaky portal, a refusing portal, and a sync retried after it failed.

Faults are injected into the simulator itself (5xx, 429 bursts, wrong
credentials), so the client, the engine and the sync handle them for real.
The engine runs on a fake clock, so its retry backoff passes at once.
"""

from __future__ import annotations

from core.clock import FakeClock
from core.engine import RunStatus
from core.sync import commands
from core.sync.events import SYNC_FAILED
from core.tarana.faults import Faults
from jobstore import synclogs
from jobstore.db import Database
from jobstore.synclogs import SyncLog, SyncStatus
from tests.sync.conftest import MakeSim
from tests.sync.harness import FIELDS, SyncHarness, reference, stored


def finish(h: SyncHarness, sync_id: str, rounds: int = 20) -> SyncLog:
    """Run until the sync's log says it ended, moving the fake clock past any backoff."""
    assert isinstance(h.clock, FakeClock)
    for _ in range(rounds):
        h.drain()
        log = synclogs.get_sync_log(h.db, sync_id)
        if log is not None and log.finished:
            h.drain()
            return log
        h.clock.advance(700)
    raise AssertionError("the sync did not finish")


def test_a_flaky_portal_still_gives_the_right_data(db: Database, make_sim: MakeSim) -> None:
    sim = make_sim(120, "error_rate=0.3,rate_limit_every=15,rate_limit_burst=2,retry_after_s=0")
    h = SyncHarness(db, sim, clock=FakeClock())
    req = h.request()
    log = finish(h, req.sync_id)
    assert log.status in (SyncStatus.COMPLETED, SyncStatus.COMPLETED_WITH_WARNINGS)
    expected = reference(sim.bn_records())
    rows = stored(db)
    assert set(rows) == set(expected)
    assert all({k: rows[s][k] for k in FIELDS} == v for s, v in expected.items())
    stats = sim.stats
    failures = stats.get("server_errors", 0) + stats.get("rate_limited", 0)
    assert failures > 10
    # every failed answer was retried by the client, except where it gave up (one error each)
    gave_up = len([e for e in log.errors if "gave up" in e])
    assert log.retries == failures - gave_up


def test_refused_credentials_fail_fast_without_leaking_them(
    db: Database, make_sim: MakeSim
) -> None:
    sim = make_sim(40)
    h = SyncHarness(db, sim, clock=FakeClock(), password="not-the-password-x9")
    req = h.request()
    h.drain()
    run = h.engine.get_run(req.run_id)
    assert run.status == RunStatus.FAILED and run.attempt == 1
    assert run.error is not None and "refused" in run.error and "not retriable" in run.error
    log = synclogs.get_sync_log(db, req.sync_id)
    assert log is not None and log.status == SyncStatus.FAILED and log.completed_at is not None
    assert any("refused the login" in e for e in log.errors)
    everything = " ".join([run.error, *log.errors, *(e.data_json for e in h.engine.list_events())])
    assert "not-the-password-x9" not in everything
    failed = h.engine.list_events(SYNC_FAILED)
    assert len(failed) == 1 and failed[0].data["sync_id"] == req.sync_id

    # fixed credentials, then a retry resumes the same sync (and its log) in a new run
    h.password = sim.password
    again = commands.retry_sync(h.engine, req.run_id, "ops@example.com")
    assert again.started and again.sync_id == req.sync_id and again.run_id != req.run_id
    h.drain()
    log = synclogs.get_sync_log(db, req.sync_id)
    assert log is not None and log.status != SyncStatus.FAILED and log.run_id == again.run_id
    assert log.trigger_type == "retry" and log.triggered_by == "ops@example.com"
    assert log.inserted == len(reference(sim.bn_records()))
    assert len(log.errors) == 2  # the refusal and the failure summary, both kept


def test_a_step_that_keeps_failing_is_retried_and_every_error_kept(
    db: Database, make_sim: MakeSim
) -> None:
    sim = make_sim(60, "error_rate=1.0")
    h = SyncHarness(db, sim, clock=FakeClock())
    req = h.request()
    h.drain()  # the first attempt fails after the client's own retries
    run = h.engine.get_run(req.run_id)
    assert run.status == RunStatus.QUEUED and run.error and "will retry" in run.error
    log = synclogs.get_sync_log(db, req.sync_id)
    assert log is not None and log.status == SyncStatus.RUNNING and len(log.errors) == 1
    assert log.retries >= 6
    sim.set_faults(Faults())
    log = finish(h, req.sync_id)
    assert log.status == SyncStatus.COMPLETED_WITH_WARNINGS and log.attempt == 2
    assert log.inserted == len(reference(sim.bn_records()))
    assert "fetch-bn-0000 (attempt 1)" in log.errors[0]
