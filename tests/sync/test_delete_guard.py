"""Deleting stale stations: guarded against empty and partial fetches and large shares.

An outage (the portal lists nothing) must never wipe the table by itself: the
sync stops before deleting, says so in its log, and waits for an operator.
Time here is a fake clock, so the confirmation timeout passes without waiting.
"""

from __future__ import annotations

import pandas as pd

from core.clock import FakeClock
from core.engine import RunStatus
from core.settings import Settings
from core.sync import commands
from core.tarana.faults import Faults
from jobstore import stations, synclogs
from jobstore.db import Database
from jobstore.synclogs import SyncStatus
from tests.sync.conftest import MakeSim
from tests.sync.harness import SyncHarness

SETTINGS = Settings(write_batch=40, delete_guard_share=0.10, confirm_timeout_s=600)


def outage_waiting(
    db: Database, make_sim: MakeSim
) -> tuple[SyncHarness, commands.SyncRequest, int]:
    """A synced table, then a delete-stale sync during an outage, left waiting."""
    sim = make_sim(80)
    h = SyncHarness(db, sim, SETTINGS, clock=FakeClock())
    h.sync()
    count = stations.count_stations(db)
    sim.set_faults(Faults(outage=True))
    req = h.request(delete_stale=True)
    h.drain()
    return h, req, count


def test_an_outage_deletes_nothing_and_waits_for_confirmation(
    db: Database, make_sim: MakeSim
) -> None:
    h, req, count = outage_waiting(db, make_sim)
    assert stations.count_stations(db) == count
    assert h.engine.get_run(req.run_id).status == RunStatus.WAITING
    log = synclogs.get_sync_log(db, req.sync_id)
    assert log is not None
    assert log.status == SyncStatus.NEEDS_CONFIRMATION and log.needs_confirmation
    assert log.delete_candidates == count and log.deleted == 0
    # asking again while it waits names the waiting run
    again = h.request()
    assert not again.started and again.run_id == req.run_id and req.run_id in again.message


def test_a_confirmed_delete_deletes(db: Database, make_sim: MakeSim) -> None:
    h, req, count = outage_waiting(db, make_sim)
    assert not commands.confirm_delete(h.engine, "some-other-sync", "ops@example.com")
    assert commands.confirm_delete(h.engine, req.sync_id, "ops@example.com")
    h.drain()
    log = synclogs.get_sync_log(db, req.sync_id)
    assert log is not None and log.status == SyncStatus.COMPLETED
    assert log.deleted == count and not log.needs_confirmation
    assert stations.count_stations(db) == 0


def test_no_answer_within_the_timeout_deletes_nothing(db: Database, make_sim: MakeSim) -> None:
    h, req, count = outage_waiting(db, make_sim)
    assert isinstance(h.clock, FakeClock)
    h.clock.advance(SETTINGS.confirm_timeout_s + 1)
    h.drain()
    log = synclogs.get_sync_log(db, req.sync_id)
    assert log is not None and log.status == SyncStatus.COMPLETED_WITH_WARNINGS
    assert log.deleted == 0 and not log.needs_confirmation
    assert any("nothing was deleted" in e and "no confirmation" in e for e in log.errors)
    assert stations.count_stations(db) == count
    assert stations.station_summary(db)["missing"] == 0


def test_a_declined_delete_deletes_nothing(db: Database, make_sim: MakeSim) -> None:
    h, req, count = outage_waiting(db, make_sim)
    assert commands.confirm_delete(h.engine, req.sync_id, "ops@example.com", confirm=False)
    h.drain()
    log = synclogs.get_sync_log(db, req.sync_id)
    assert log is not None and log.deleted == 0
    assert any("declined by ops@example.com" in e for e in log.errors)
    assert stations.count_stations(db) == count


def test_a_large_share_waits_and_a_small_one_deletes_at_once(
    db: Database, make_sim: MakeSim
) -> None:
    sim = make_sim(100)
    h = SyncHarness(db, sim, SETTINGS, clock=FakeClock())
    h.sync()
    total = stations.count_stations(db)
    before = set(stations.query_stations(db)["serial_number"])
    gone = [s for s in sim.mutate(remove=2)["removed"] if s in before]
    log = h.sync(delete_stale=True)
    assert log.deleted == len(gone) == log.delete_candidates and not log.needs_confirmation
    assert set(stations.query_stations(db)["serial_number"]) == before - set(gone)
    total = stations.count_stations(db)

    sim.mutate(remove=int(0.3 * total))
    req = h.request(delete_stale=True)
    h.drain()
    waiting = synclogs.get_sync_log(db, req.sync_id)
    assert waiting is not None and waiting.status == SyncStatus.NEEDS_CONFIRMATION
    assert waiting.delete_candidates > 0.1 * stations.count_stations(db)


def test_without_delete_stale_gone_stations_are_marked_missing(
    db: Database, make_sim: MakeSim
) -> None:
    sim = make_sim(100)
    h = SyncHarness(db, sim, SETTINGS)
    h.sync()
    total = stations.count_stations(db)
    sim.mutate(remove=40)
    log = h.sync()
    assert log.deleted == 0 and log.missing > 0
    assert stations.count_stations(db) == total
    assert stations.station_summary(db)["missing"] == log.missing


def test_a_list_that_changes_while_paged_never_deletes(db: Database, make_sim: MakeSim) -> None:
    sim = make_sim(100)
    h = SyncHarness(db, sim, SETTINGS)
    h.sync()
    total = stations.count_stations(db)
    sim.set_faults(Faults(churn=0.5))
    log = h.sync(delete_stale=True)
    assert not log.fetch_complete and log.deleted == 0 and log.missing == 0
    assert any("changed or ended early" in e for e in log.errors)
    assert stations.count_stations(db) >= total


def test_a_request_without_a_sync_id_can_still_be_confirmed(
    db: Database, make_sim: MakeSim
) -> None:
    """Events from elsewhere may carry no sync_id: the sync then goes by its run id."""
    from core.sync.events import SYNC_REQUESTED

    sim = make_sim(40)
    h = SyncHarness(db, sim, SETTINGS, clock=FakeClock())
    h.sync()
    sim.set_faults(Faults(outage=True))
    (run_id,) = h.engine.send(SYNC_REQUESTED, {"delete_stale": True}, sent_by="api").started
    h.drain()
    log = synclogs.sync_log_for_run(db, run_id)
    assert log is not None and log.id == run_id and log.needs_confirmation
    assert commands.confirm_delete(h.engine, run_id, "ops@example.com")
    h.drain()
    assert stations.count_stations(db) == 0


def test_an_outage_without_delete_stale_marks_nothing_missing_and_says_so(
    db: Database, make_sim: MakeSim
) -> None:
    sim = make_sim(40)
    h = SyncHarness(db, sim, SETTINGS)
    h.sync()
    sim.set_faults(Faults(outage=True))
    log = h.sync()
    assert log.status == SyncStatus.COMPLETED_WITH_WARNINGS and log.missing == 0
    assert any("listed no valid base station" in e for e in log.errors)
    assert stations.station_summary(db)["missing"] == 0 and log.seen_at is None


def test_stations_the_list_skipped_but_the_portal_knows_are_left_alone(
    db: Database, make_sim: MakeSim
) -> None:
    """A list that changed while it was read can skip stations with the same length;
    the portal's single-device answers tell them from stations really gone."""
    sim = make_sim(60)
    h = SyncHarness(db, sim, SETTINGS)
    h.sync()
    stored_before = set(stations.query_stations(db)["serial_number"])
    hidden = sorted(stored_before)[:3]
    gone = sim.mutate(remove=2)["removed"]
    # the list no longer shows three stations the portal still has
    shown = [d for d in sim._fleet.bns if d.serial not in hidden]
    listed, sim._fleet.bns = sim._fleet.bns, shown
    sim._version += 1
    try:
        # ... which a lookup by serial still finds (the simulator serves those from its index)
        sim._index = (sim._version, {d.serial: d for d in listed + sim._fleet.rns})
        log = h.sync()
    finally:
        sim._fleet.bns = listed
        sim._version += 1
    rows = stations.query_stations(db).set_index("serial_number")
    really_gone = [s for s in gone if s in stored_before and s not in hidden]
    assert log.missing == len(really_gone)
    for serial in hidden:
        assert pd.isna(rows.loc[serial, "missing_since"]), serial
    for serial in really_gone:
        assert not pd.isna(rows.loc[serial, "missing_since"]), serial
    assert any("still known to the portal" in e for e in log.errors)
