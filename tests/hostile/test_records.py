"""Bad device-list records: the validator rejects each with a reason, and a full sync skips it.

Every record of the corpus goes through the real validator, then, grouped,
through a full sync against a portal double on 127.0.0.1 that first served a
clean fleet (stored by a first sync). A rejected record must be skipped with
a reason recorded in the sync's skipped list, the stations stored before must
come out untouched, and no row of a rejected record may reach the table.
Records that are valid but hostile (HTML, script, formulas, SQL in names)
are stored verbatim: they are made harmless where they are shown.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.engine import RunStatus
from core.sync.diff import as_dict, station_row
from core.sync.validate import Invalid, check_bn
from jobstore import synclogs
from jobstore.db import Database
from jobstore.synclogs import SyncStatus
from tests.hostile.corpus import (
    ACCEPT,
    BODIES,
    GROUPS,
    LOGIN_BODIES,
    PAGE_LEVEL,
    RECORDS,
    REJECT,
    RecordCase,
    good_fleet,
    good_rns,
    record_json,
)
from tests.hostile.driver import SyncDriver, snapshot
from tests.hostile.server import HostilePortal

MAX_REASON = 300  # a skip reason is a sentence for operators, never an echo of the record
MAX_SKIPPED_SERIAL = 1000  # what a skipped entry may keep of a hostile serial


def _validate(item: Any) -> tuple[str, Any]:
    """("row", row), ("invalid", reason) or ("crash", exception) for one item."""
    try:
        return "row", check_bn(item)
    except Invalid as exc:
        return "invalid", str(exc)
    except Exception as exc:  # noqa: BLE001 - exactly what this test is looking for
        return "crash", exc


def _clean_serial(item: Any) -> str | None:
    """The item's serial when it is plain, storable text (else a skip entry cannot name it)."""
    serial = item.get("serialNumber") if isinstance(item, dict) else None
    if not isinstance(serial, str) or not serial.strip():
        return None
    serial = serial.strip()
    ok = len(serial) <= 64 and serial.isprintable()
    try:
        serial.encode("utf-8")
    except UnicodeEncodeError:
        ok = False
    return serial if ok else None


def test_the_corpus_is_large_and_every_marker_is_unique() -> None:
    assert len(RECORDS) + len(BODIES) + len(LOGIN_BODIES) >= 130
    assert {c.expect for c in RECORDS} == {REJECT, ACCEPT}
    markers = [c.marker for c in RECORDS if c.marker]
    assert len(markers) == len(set(markers))
    assert len({c.name for c in RECORDS}) == len(RECORDS)


@pytest.mark.parametrize("case", RECORDS, ids=[c.name for c in RECORDS])
def test_the_validator_rejects_each_bad_record_with_a_reason(case: RecordCase) -> None:
    kind, value = _validate(record_json(case))
    assert kind != "crash", (
        f"check_bn raised {type(value).__name__} ({value}) instead of Invalid: "
        "one such record would fail every sync that lists it"
    )
    if case.expect == REJECT:
        assert kind == "invalid", f"accepted a bad record: {value!r}"[:300]
        assert case.reason.lower() in value.lower(), value
        assert 0 < len(value) <= MAX_REASON and value.isprintable(), value[:300]
        return
    assert kind == "row", f"rejected a record that is valid, only hostile: {value}"
    json.dumps(value, allow_nan=False)  # a fetch step checkpoints it as JSON
    stored = as_dict(station_row(value, 0))
    for column, expected in case.stored.items():
        assert stored[column] == expected, column


def _match_skipped(
    cases: list[RecordCase], skipped: list[tuple[str | None, str]]
) -> list[RecordCase]:
    """The rejected cases with no skip entry of their own (serial first, then reason)."""
    left = list(skipped)
    unmatched: list[RecordCase] = []
    by_reason: list[RecordCase] = []
    for case in cases:
        serial = _clean_serial(case.item)
        if serial is None:
            by_reason.append(case)
            continue
        hit = next(
            (e for e in left if e[0] == serial and case.reason.lower() in e[1].lower()), None
        )
        if hit is None:
            unmatched.append(case)
        else:
            left.remove(hit)
    for case in by_reason:
        hit = next((e for e in left if case.reason.lower() in e[1].lower()), None)
        if hit is None:
            unmatched.append(case)
        else:
            left.remove(hit)
    return unmatched


@pytest.mark.parametrize("group", GROUPS)
def test_a_full_sync_skips_bad_records_and_keeps_the_table(db: Database, group: str) -> None:
    fleet = good_fleet(12)
    cases = [c for c in RECORDS if c.group == group]
    rejected = [c for c in cases if c.expect == REJECT]
    accepted = {c.marker: c for c in cases if c.expect == ACCEPT}
    with HostilePortal(fleet, good_rns(fleet)) as portal:
        driver = SyncDriver(db, portal)
        first = driver.sync()
        assert first.status == SyncStatus.COMPLETED and first.inserted == len(fleet)
        before = snapshot(db)
        portal.state.bns = fleet + [record_json(c) for c in cases]
        log = driver.sync()
    after = snapshot(db)

    # nothing lost, nothing touched: every stored station is exactly as it was
    assert {s: after.get(s) for s in before} == before
    # no row from a rejected record, and every accepted one stored verbatim
    assert set(after) - set(before) <= set(accepted), sorted(
        s[:40] for s in set(after) - set(before) - set(accepted)
    )
    hostnames = {row["hostname"] for row in after.values()}
    for case in rejected:
        assert case.marker not in after and case.marker not in hostnames, case.name

    run = driver.engine.get_run(str(log.run_id))
    skipped = synclogs.skipped_records(db, log.id)
    if group == PAGE_LEVEL:
        # the page may be refused as a whole: then the run fails with that reason
        assert log.finished
        recorded = " ".join([*log.errors, *(reason for _, reason in skipped)])
        assert "not an object" in recorded or "no list of items" in recorded, recorded[:500]
        return

    assert run.status == RunStatus.COMPLETED, run.error
    assert log.status == (SyncStatus.COMPLETED_WITH_WARNINGS if rejected else SyncStatus.COMPLETED)
    assert set(after) == set(before) | set(accepted)
    for marker, case in accepted.items():
        for column, expected in case.stored.items():
            assert after[marker][column] == expected, (case.name, column)
    assert len(skipped) == len(rejected) == log.skipped
    assert not [c.name for c in _match_skipped(rejected, skipped)]
    # a hostile record cannot bloat the sync's own records either
    for serial, reason in skipped:
        assert len(reason) <= MAX_REASON, reason[:100]
        assert serial is None or len(serial) <= MAX_SKIPPED_SERIAL, f"{len(serial)} chars"
