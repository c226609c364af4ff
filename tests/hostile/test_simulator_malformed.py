"""The simulator's deliberately broken records, through full syncs over real HTTP on 127.0.0.1.

The simulator's ``malformed`` fault damages a share of the BN list items
(missing, zero, out-of-range or non-numeric coordinates, a missing serial,
a repeated serial, HTML or a formula in a name) and says which. A sync must
skip the broken ones with a reason, keep what it stored before, never store
a broken record's data, and keep hostile names verbatim.
"""

from __future__ import annotations

from typing import Any

from core.engine import RunStatus
from core.sync.function import DUPLICATE
from core.tarana.faults import Faults
from core.tarana.simulator import Simulator
from jobstore import synclogs
from jobstore.db import Database
from jobstore.synclogs import SyncStatus
from tests.hostile.driver import SyncDriver, snapshot

REJECTED = {
    "missing_coordinates": "missing",
    "zero_coordinates": "zero",
    "out_of_range_coordinates": "range",
    "non_numeric": "not a number",
}
VERBATIM = {"html_in_name", "formula_in_name"}
TIMES = ("first_seen", "last_seen", "last_changed", "missing_since")


def _names(record: dict[str, Any]) -> dict[str, Any]:
    site = (record.get("ancestry") or {}).get("site") or {}
    return {"hostname": record.get("hostName"), "site_name": site.get("name")}


def _without_times(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in TIMES}


def test_broken_records_are_skipped_and_what_was_stored_stays(db: Database) -> None:
    with Simulator(stations=150, seed=5) as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        driver = SyncDriver(db, sim)
        first = driver.sync()
        assert first.status in (SyncStatus.COMPLETED, SyncStatus.COMPLETED_WITH_WARNINGS)
        before = snapshot(db)
        sim.set_faults(Faults(malformed=0.4))
        broken = sim.malformed_serials()
        records = {r["serialNumber"]: r for r in sim.bn_records() if "serialNumber" in r}
        log = driver.sync()
    after = snapshot(db)
    kinds = set(broken.values())
    assert set(REJECTED) | VERBATIM | {"duplicate_serial", "missing_serial"} <= kinds, kinds

    run = driver.engine.get_run(str(log.run_id))
    assert run.status == RunStatus.COMPLETED and log.status == SyncStatus.COMPLETED_WITH_WARNINGS
    assert set(before) <= set(after), "a stored station was lost"
    skipped = synclogs.skipped_records(db, log.id)
    reasons: dict[str | None, list[str]] = {}
    for serial, reason in skipped:
        reasons.setdefault(serial, []).append(reason)
    for serial, kind in broken.items():
        if kind in REJECTED:
            # stored before: untouched; never stored (the clean fleet has some without
            # coordinates too): still absent
            assert after.get(serial) == before.get(serial), f"{kind} changed {serial}"
            assert any(REJECTED[kind] in r for r in reasons.get(serial, [])), (
                kind,
                reasons.get(serial),
            )
        elif kind == "duplicate_serial":
            assert DUPLICATE in reasons.get(serial, []), serial
            assert after[serial] == before[serial]
        elif kind == "missing_serial":
            # the station can no longer be told apart: kept (marked missing), never deleted
            assert _without_times(after[serial]) == _without_times(before[serial])
        elif serial in before:  # (some of the clean fleet lack coordinates: never stored)
            assert kind in VERBATIM
            for column, value in _names(records[serial]).items():
                assert after[serial][column] == value, (kind, column)
    missing_serial = sum(1 for k in broken.values() if k == "missing_serial")
    assert len(reasons.get(None, [])) == missing_serial
    assert all("serial" in r for r in reasons.get(None, []))


def test_a_first_sync_never_stores_a_broken_record(db: Database) -> None:
    with Simulator(stations=150, seed=9, faults=Faults(malformed=0.4)) as sim:
        broken = sim.malformed_serials()
        records = {r["serialNumber"]: r for r in sim.bn_records() if "serialNumber" in r}
        log = SyncDriver(db, sim).sync()
    rows = snapshot(db)
    assert log.status == SyncStatus.COMPLETED_WITH_WARNINGS
    rejected = {s for s, kind in broken.items() if kind in REJECTED}
    assert rejected and not rejected & set(rows)
    verbatim = [s for s, kind in broken.items() if kind in VERBATIM and s in rows]
    assert verbatim
    for serial in verbatim:
        for column, value in _names(records[serial]).items():
            assert rows[serial][column] == value
    html = [r["site_name"] for s, r in rows.items() if broken.get(s) == "html_in_name"]
    assert "<script>alert(1)</script>" in html or any(
        r["hostname"] == "<script>alert(1)</script>" for r in rows.values()
    )
    # every row holds finite, in-range, non-zero coordinates and a serial
    for serial, row in rows.items():
        assert serial and 0 < abs(row["lat"]) <= 90 and 0 < abs(row["lng"]) <= 180
