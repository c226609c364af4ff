"""A full sync against the simulator over real HTTP, on SQLite and PostgreSQL.

The stored stations must equal a reference reading of the simulator's list;
a second sync with nothing changed must write no station row; a change
upstream must write exactly the changed stations.
"""

from __future__ import annotations

import json
from collections import Counter

from core.engine import RunStatus
from core.sync.events import SYNC_COMPLETED
from jobstore import stations, synclogs
from jobstore.db import Database
from jobstore.synclogs import SyncStatus
from tests.sync.conftest import MakeSim
from tests.sync.harness import FIELDS, SyncHarness, reference, stored, trace_writes


def test_full_sync_stores_exactly_the_valid_stations(db: Database, make_sim: MakeSim) -> None:
    sim = make_sim(150, "malformed=0.15")
    h = SyncHarness(db, sim)
    log = h.sync()
    expected = reference(sim.bn_records())
    rows = stored(db)
    assert set(rows) == set(expected)
    for serial, want in expected.items():
        got = {k: rows[serial][k] for k in FIELDS}
        assert got == want, serial
    for row in rows.values():
        assert row["lat"] not in (0, None) and row["lng"] not in (0, None)
        assert row["first_seen"] == row["last_seen"] == row["last_changed"]
        assert row["missing_since"] is None

    assert log.status == SyncStatus.COMPLETED_WITH_WARNINGS  # the simulator breaks some records
    assert log.stations_fetched == log.inserted == len(expected)
    assert log.updated == log.deleted == log.unchanged == 0
    assert log.trigger_type == "manual" and log.triggered_by == "tester@example.com"
    assert log.attempt == 1 and log.fetch_complete and log.seen_at is not None
    assert log.online is not None and log.online + (log.offline or 0) == len(expected)
    assert log.rns_fetched == len(sim.rn_records())
    assert log.pages >= -(-len(sim.bn_records()) // 10) + -(-len(sim.rn_records()) // 10)
    assert log.duration_s is not None and 0 < log.duration_s <= log.completed_at - log.started_at  # type: ignore[operator]
    skipped = synclogs.skipped_records(db, log.id)
    assert len(skipped) == log.skipped > 10  # every one kept, none cut
    assert log.run_id is not None
    run = h.engine.get_run(log.run_id)
    assert run.status == RunStatus.COMPLETED
    steps = [s.name for s in h.engine.run_detail(log.run_id).steps]
    assert steps[:2] == ["begin", "fetch-bn-0000"]
    assert {"fetch-bn-0001", "fetch-rn-0000", "validate", "compute", "diff", "write-batch-0001",
            "finish", "send-completed"} <= set(steps)  # fmt: skip
    sent = [e for e in h.engine.run_detail(log.run_id).sent_events if e.name == SYNC_COMPLETED]
    assert len(sent) == 1 and sent[0].data["inserted"] == len(expected)
    assert synclogs.sync_log_for_run(db, log.run_id) == log
    assert synclogs.latest_sync_log(db, finished_only=True) == log


def test_progress_is_recorded_per_step(db: Database, make_sim: MakeSim) -> None:
    h = SyncHarness(db, make_sim(200))
    log = h.sync()
    assert log.run_id
    steps = {s.name: s for s in h.engine.run_detail(log.run_id).steps}
    batches = [n for n in steps if n.startswith("write-batch-")]
    last = steps[batches[-1]]
    assert last.progress_message == f"writing batch {len(batches)}/{len(batches)}"
    assert last.progress_current == last.progress_total == len(batches)
    assert (steps["fetch-bn-0000"].progress_message or "").startswith("fetching BNs: page 5 of ~")


def test_a_resync_without_changes_writes_no_station(db: Database, make_sim: MakeSim) -> None:
    sim = make_sim(150, "malformed=0.1")
    h = SyncHarness(db, sim)
    first = h.sync()
    before = stored(db)
    with trace_writes(db) as trace:
        second = h.sync()
    assert trace.statements == 0 and trace.rows == 0
    assert second.inserted == second.updated == second.deleted == second.missing == 0
    assert second.unchanged == first.inserted == len(before)
    after = stored(db)
    assert after == before  # last_changed, last_seen, everything untouched
    # the read model still says every present station was seen by the latest sync
    frame = stations.query_stations(db)
    assert second.seen_at is not None
    assert (frame["last_seen"] == second.seen_at).all()
    assert (frame["last_changed"] < second.seen_at).all()


def test_changes_upstream_write_exactly_the_changed_stations(
    db: Database, make_sim: MakeSim
) -> None:
    sim = make_sim(120)
    h = SyncHarness(db, sim)
    h.sync()
    before = stored(db)
    touched = sim.mutate(change=6, add=3, remove=2)
    expected = reference(sim.bn_records())
    changed = [s for s in touched["changed"] if s in expected]
    added = [s for s in touched["added"] if s in expected]
    removed = [s for s in touched["removed"] if s in before]
    with trace_writes(db) as trace:
        log = h.sync()
    after = stored(db)
    assert log.updated == len(changed) and log.inserted == len(added)
    assert log.missing == len(removed) and log.deleted == 0
    assert trace.rows == len(changed) + len(added) + len(removed)
    for serial, row in after.items():
        if serial in changed:
            assert row["device_status"] != before[serial]["device_status"]
            assert row["last_changed"] > before[serial]["last_changed"]
            assert row["first_seen"] == before[serial]["first_seen"]
        elif serial in removed:
            assert row["missing_since"] is not None
            assert row["last_seen"] == before[serial]["last_seen"]
            assert {k: row[k] for k in FIELDS} == {k: before[serial][k] for k in FIELDS}
        elif serial in added:
            assert row["first_seen"] == row["last_changed"] and serial not in before
        else:
            assert row == before[serial]
    for serial, want in expected.items():
        assert {k: after[serial][k] for k in FIELDS} == want

    # the read model: a missing station keeps the time it was last seen
    frame = stations.query_stations(db).set_index("serial_number")
    for serial in removed:
        assert frame.loc[serial, "last_seen"] == before[serial]["last_seen"]
        assert frame.loc[serial, "missing_since"] == log.seen_at

    # the watch function recorded what changed since the previous sync
    feed = synclogs.station_changes(db, 1000, sync_id=log.id)
    kinds = Counter(c["change"] for c in feed)
    assert kinds["appeared"] == len(added) and kinds["disappeared"] == len(removed)
    assert kinds["went_offline"] + kinds["came_online"] == len(changed)
    for c in feed:
        if c["change"] == "went_offline":
            assert after[c["serial"]]["device_status"] == "offline"


def test_a_station_that_comes_back_is_written_once_and_present_again(
    db: Database, make_sim: MakeSim
) -> None:
    sim = make_sim(60)
    h = SyncHarness(db, sim)
    h.sync()
    listed = list(sim._fleet.bns)  # the simulator has no "restore": keep the list to put back
    gone = sim.mutate(remove=1)["removed"][0]
    assert h.sync().missing == 1
    assert stored(db)[gone]["missing_since"] is not None
    sim._fleet.bns = listed
    sim._version += 1
    with trace_writes(db) as trace:
        log = h.sync()
    assert log.updated == 1 and log.inserted == 0 and trace.rows == 1
    assert stored(db)[gone]["missing_since"] is None


def test_html_and_formulas_in_names_are_stored_as_literal_text(
    db: Database, make_sim: MakeSim
) -> None:
    sim = make_sim(200, "malformed=0.3")
    h = SyncHarness(db, sim)
    h.sync()
    rows = stored(db)
    kinds = sim.malformed_serials()
    html = [s for s, k in kinds.items() if k == "html_in_name"]
    formula = [s for s, k in kinds.items() if k == "formula_in_name"]
    assert html and formula
    texts = {json.dumps([rows[s]["site_name"], rows[s]["hostname"]]) for s in html if s in rows}
    assert any("<script>alert(1)</script>" in t for t in texts)
    assert any(
        (rows[s]["site_name"] or "").startswith("=cmd|")
        or rows[s]["hostname"] == "=cmd|' /C calc'!A0"
        for s in formula
        if s in rows
    )
