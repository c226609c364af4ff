"""A dry run computes and stores the whole diff and writes no station."""

from __future__ import annotations

from collections import Counter

from jobstore import stations, synclogs
from jobstore.db import Database
from tests.sync.conftest import MakeSim
from tests.sync.harness import SyncHarness, reference, stored, trace_writes


def test_a_dry_run_on_an_empty_table_lists_every_insert(db: Database, make_sim: MakeSim) -> None:
    sim = make_sim(80)
    h = SyncHarness(db, sim)
    with trace_writes(db) as trace:
        log = h.sync(dry_run=True)
    assert trace.statements == 0 and stations.count_stations(db) == 0
    assert log.dry_run and log.inserted == log.updated == log.deleted == 0
    assert log.seen_at is None  # a dry run saw nothing on the table's behalf
    diff = synclogs.diff_rows(db, log.id)
    expected = reference(sim.bn_records())
    assert {d["serial"] for d in diff} == set(expected)
    assert all(d["action"] == "insert" and d["before"] is None for d in diff)
    one = diff[0]
    assert one["after"]["lat"] == expected[one["serial"]]["lat"]
    assert synclogs.station_changes(db, 10) == []  # the watch ignores dry runs


def test_a_dry_run_after_changes_shows_them_and_changes_nothing(
    db: Database, make_sim: MakeSim
) -> None:
    sim = make_sim(100)
    h = SyncHarness(db, sim)
    h.sync()
    before = stored(db)
    touched = sim.mutate(change=4, add=2, remove=3)
    with trace_writes(db) as trace:
        log = h.sync(dry_run=True, delete_stale=True)
    assert trace.statements == 0 and stored(db) == before
    diff = synclogs.diff_rows(db, log.id)
    actions = Counter(d["action"] for d in diff)
    expected = reference(sim.bn_records())
    assert actions["insert"] == len([s for s in touched["added"] if s in expected])
    assert actions["update"] == len([s for s in touched["changed"] if s in expected])
    assert actions["delete"] == len([s for s in touched["removed"] if s in before])
    for d in diff:
        if d["action"] == "update":
            assert d["before"]["device_status"] != d["after"]["device_status"]
            assert {k: v for k, v in d["before"].items() if k != "device_status"} == {
                k: v for k, v in d["after"].items() if k != "device_status"
            }
        if d["action"] == "delete":
            assert d["after"] is None and d["before"]["serial_number"] == d["serial"]
    # without delete_stale, the gone stations would only be marked missing
    log = h.sync(dry_run=True)
    assert (
        Counter(d["action"] for d in synclogs.diff_rows(db, log.id))["missing"] == actions["delete"]
    )
