"""Broken records and RN counts, against the simulator's deliberately broken list.

Every record the simulator broke on purpose is either skipped with a reason
that says what is wrong, or (names with HTML or formulas) stored as literal
text. Active connections are counted per BN from each RN's master serial,
checked against what the portal's single-device endpoint says.
"""

from __future__ import annotations

from collections import Counter

from core.tarana.client import TaranaClient
from jobstore import stations, synclogs
from jobstore.db import Database
from tests.sync.conftest import MakeSim
from tests.sync.harness import SyncHarness, reference, stored

REASONS = {
    "missing_coordinates": "missing latitude",
    "zero_coordinates": "zero coordinates",
    "out_of_range_coordinates": "out of range",
    "non_numeric": "is not a number",
    "duplicate_serial": "duplicate serial",
}


def test_broken_records_are_skipped_with_their_reasons(db: Database, make_sim: MakeSim) -> None:
    sim = make_sim(250, "malformed=0.4")
    h = SyncHarness(db, sim)
    log = h.sync()
    skipped = synclogs.skipped_records(db, log.id)
    reasons: dict[str | None, list[str]] = {}
    for serial, reason in skipped:
        reasons.setdefault(serial, []).append(reason)
    kinds = sim.malformed_serials()
    rows = stored(db)
    expected = reference(sim.bn_records())
    seen_kinds = Counter(kinds.values())
    assert all(seen_kinds[k] > 0 for k in REASONS), seen_kinds
    for serial, kind in kinds.items():
        if kind in ("html_in_name", "formula_in_name"):
            # a name is never a reason to skip (a few such BNs lack coordinates anyway)
            assert (serial in rows) == (serial in expected)
            assert all("name" not in r for r in reasons.get(serial, []))
        elif kind == "missing_serial":
            assert serial not in rows
        elif kind == "duplicate_serial":
            assert serial in rows and any(REASONS[kind] in r for r in reasons[serial])
        else:
            assert serial not in rows
            assert any(REASONS[kind] in r for r in reasons[serial]), (kind, reasons[serial])
    nameless = reasons.get(None, [])
    assert len(nameless) == seen_kinds["missing_serial"]
    assert all(r.startswith("no serial number (hostName ") for r in nameless)
    # the fleet's own BNs without install parameters are skipped, never put at (0, 0)
    assert any("no installParams" in r for rs in reasons.values() for r in rs)
    assert len(skipped) == log.skipped and log.duplicates == seen_kinds["duplicate_serial"]
    assert set(rows) == set(expected)
    assert not any(r["lat"] == 0 or r["lng"] == 0 or r["lat"] is None for r in rows.values())


def test_active_connections_come_from_each_rns_master_serial(
    db: Database, make_sim: MakeSim
) -> None:
    sim = make_sim(90, rns_per_bn=3.0)
    h = SyncHarness(db, sim)
    log = h.sync()
    # the truth, from the portal's per-device answers (the list items carry no masterSerial)
    client: TaranaClient = h.client()
    try:
        truth = Counter(
            client.device(rn["serialNumber"])["masterSerial"]
            for rn in sim.rn_records()
            if rn.get("connected") is True
        )
    finally:
        client.close()
    frame = stations.query_stations(db)
    assert len(frame) == log.stations_fetched > 0
    for serial, count in zip(frame["serial_number"], frame["active_connections"], strict=True):
        assert count == truth[serial], serial
    assert frame["active_connections"].sum() > 0
    # same-named sites in different markets are different sites with their own counts
    shared = frame[frame["site_name"] == "Main Road Water Tower"]
    assert shared["market"].nunique() >= 2
    for _, row in shared.iterrows():
        assert row["active_connections"] == truth[row["serial_number"]]
