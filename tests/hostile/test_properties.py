"""Properties of the record validator and of the diff, over generated input.

The validator (``check_bn``) must never raise anything but ``Invalid``,
whatever JSON-like value it is given; what it accepts always has a serial and
finite, in-range, non-zero coordinates, keeps names verbatim as text, and is
JSON for a step checkpoint. The diff (``plan``) applied to the old table, the
way the sync applies it (upserts of inserts and updates, then deleting or
marking the stale), gives exactly the new one: as a pure function, and over a
fresh SQLite database per example through the product's own writes.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.sync.diff import plan
from core.sync.validate import BN_FIELDS, Invalid, check_bn, rn_link, sector_of, serial_of
from jobstore import migrate, stations
from jobstore.db import Database
from jobstore.stations import DATA_COLUMNS, Row

# --- JSON-like values, hostile ones included ------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # NUL, controls and lone surrogates too
HOSTILE_TEXT = st.sampled_from([
    "", " ", "<script>alert(1)</script>", "=cmd|' /C calc'!A0", "+1", "-1", "@A1", "\t=1", "\r=1",
    "'; DROP TABLE base_stations; --", "%", "_", ".*", "[", "\\", "{s}", "\x00", "\ud800", "NaN",
    "Infinity", "-0", "1e999", " -26.1 ", "0x1A", "٣", "\u202e", "📡",
])  # fmt: skip
TEXT = st.one_of(st.text(ANY_CHAR, max_size=12), HOSTILE_TEXT)
NUMBERS = st.one_of(
    st.floats(),  # NaN and both infinities included
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),  # JSON allows them; floats do not
    st.floats(min_value=-200, max_value=200),
    st.sampled_from([0, -0.0, 90, -90, 180, -180, 90.0000001, 1e308, 5e-324]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON_LIKE = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)
COORD = st.one_of(NUMBERS, TEXT, JSON_LIKE)
NAME = st.one_of(st.none(), TEXT, st.integers(), st.floats(), st.booleans(), JSON_LIKE)
NODE = st.one_of(JSON_LIKE, st.fixed_dictionaries({}, optional={"id": NAME, "name": NAME}))
ANCESTRY_KEYS = ("region", "market", "site", "cell", "sector", "cellDetails", "sectorDetails")
PLAIN_SERIAL = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64)
PARAMS = st.fixed_dictionaries(
    {"latitude": COORD, "longitude": COORD},
    optional={k: COORD for k in ("heightAgl", "height", "antennaAzimuth")},
)
# Mostly plausible shapes, so generated records get past the first checks to the deep ones.
BN_LIKE = st.fixed_dictionaries(
    {
        "serialNumber": st.one_of(
            PLAIN_SERIAL, PLAIN_SERIAL, st.text(ANY_CHAR, max_size=70), JSON_LIKE
        ),
        "installParams": st.one_of(PARAMS, PARAMS, PARAMS, JSON_LIKE),
    },
    optional={
        "hostName": NAME,
        "type": st.one_of(st.sampled_from(["BN", "RN", None]), JSON_LIKE),
        "connected": JSON_LIKE,
        "band": NAME,
        "masterSerial": NAME,
        "ancestry": st.one_of(
            JSON_LIKE, st.fixed_dictionaries({}, optional={k: NODE for k in ANCESTRY_KEYS})
        ),
    },
)
# Records whose coordinates are valid, so the names decide: accepted verbatim or refused.
LAT = st.floats(min_value=-90, max_value=90).filter(lambda v: v != 0)
LNG = st.floats(min_value=-180, max_value=180).filter(lambda v: v != 0)
PLAIN_NAME = st.one_of(st.none(), st.text(max_size=30), HOSTILE_TEXT, st.integers(-(10**6), 10**6))
VALID_BN = st.builds(
    lambda serial, lat, lng, host, site, market, band: {
        "serialNumber": serial,
        "type": "BN",
        "hostName": host,
        "band": band,
        "connected": True,
        "installParams": {"latitude": lat, "longitude": lng},
        "ancestry": {"site": {"id": 1, "name": site}, "market": {"id": 2, "name": market}},
    },
    PLAIN_SERIAL,
    LAT,
    LNG,
    PLAIN_NAME,
    PLAIN_NAME,
    PLAIN_NAME,
    PLAIN_NAME,
)

FAST = settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _as_text(value: Any) -> str | None:
    """What a name must be stored as: itself if text, an integer's digits, else refused."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check(item: Any) -> list[Any] | None:
    """The accepted row, or None if refused; any other exception fails the property."""
    try:
        return check_bn(item)
    except Invalid as exc:
        reason = str(exc)
        assert reason and len(reason) <= 300, reason[:100]
        return None


@FAST
@given(st.one_of(JSON_LIKE, BN_LIKE))
@example({"serialNumber": "S1", "installParams": {"latitude": 10**400, "longitude": 28.0}})
@example(
    {
        "serialNumber": "S1",
        "installParams": {"latitude": -26.0, "longitude": 28.0, "height": -(10**400)},
    }
)
@example({"serialNumber": "S\ud800", "installParams": {"latitude": -26.0, "longitude": 28.0}})
def test_the_validator_never_raises_anything_but_invalid(item: Any) -> None:
    before = repr(item)
    row = _check(item)
    assert repr(item) == before, "the validator changed its input"
    if isinstance(item, Mapping):  # the fetch step reads these of every item, valid or not
        serial_of(item)
        sector_of(item)
        rn_link(item)
    if row is not None:
        assert len(row) == len(BN_FIELDS)


def _assert_sane(item: Mapping[str, Any], row: list[Any]) -> None:
    fields = dict(zip(BN_FIELDS, row, strict=True))
    serial = fields["serial_number"]
    assert isinstance(serial, str) and serial.strip() and len(serial) <= 64
    assert serial == item["serialNumber"].strip()
    for name in ("lat", "lng"):
        value = fields[name]
        assert isinstance(value, float) and math.isfinite(value) and value != 0
    assert -90 <= fields["lat"] <= 90 and -180 <= fields["lng"] <= 180
    for name in ("height_m", "azimuth_deg"):
        assert fields[name] is None or math.isfinite(fields[name])
    assert fields["connected"] is (item.get("connected") is True)
    for value in row:
        if isinstance(value, str):
            assert _storable(value)
    json.dumps(row, allow_nan=False)  # a fetch step checkpoints it


@FAST
@given(BN_LIKE)
def test_what_the_validator_accepts_is_always_sane(item: dict[str, Any]) -> None:
    row = _check(item)
    if row is not None:
        _assert_sane(item, row)


@FAST
@given(VALID_BN)
def test_names_are_kept_verbatim_as_text(item: dict[str, Any]) -> None:
    names = {
        "hostname": item["hostName"],
        "site_name": item["ancestry"]["site"]["name"],
        "market": item["ancestry"]["market"]["name"],
        "band": item["band"],
    }
    expected = {k: _as_text(v) for k, v in names.items()}
    row = _check(copy.deepcopy(item))
    if any(isinstance(v, str) and not _storable(v) for v in expected.values()):
        assert row is None, "text a database cannot hold was accepted"
        return
    assert row is not None, f"a valid record with names {names!r} was refused"
    _assert_sane(item, row)
    fields = dict(zip(BN_FIELDS, row, strict=True))
    assert {k: fields[k] for k in expected} == expected


# --- the diff ---------------------------------------------------------------

SERIALS = st.sampled_from([f"S134F{n}" for n in range(6)] + ["S1'; --", "S%_"])
SMALL_TEXT = st.one_of(st.none(), st.sampled_from(["a", "b", "<b>", "=1", "%", "Ä"]))
SMALL_FLOAT = st.sampled_from([-26.1, -26.2, 28.05, 1e-9, 12.5])


def _row(serial: str) -> st.SearchStrategy[Row]:
    values: dict[str, st.SearchStrategy[Any]] = {
        "active_connections": st.integers(0, 2),
        "lat": SMALL_FLOAT,
        "lng": SMALL_FLOAT,
        "height_m": st.one_of(st.none(), SMALL_FLOAT),
        "azimuth_deg": st.one_of(st.none(), st.sampled_from([0.0, 45.0, 315.0])),
        "device_status": st.sampled_from(["online", "offline"]),
    }
    return st.tuples(st.just(serial), *(values.get(c, SMALL_TEXT) for c in DATA_COLUMNS[1:]))


def _table(with_missing: bool) -> st.SearchStrategy[dict[str, Any]]:
    def one(serial: str) -> st.SearchStrategy[Any]:
        if not with_missing:
            return _row(serial)
        return st.tuples(_row(serial), st.one_of(st.none(), st.just(5.0)))

    return st.lists(SERIALS, unique=True, max_size=6).flatmap(
        lambda keys: st.fixed_dictionaries({k: one(k) for k in keys})
    )


@settings(max_examples=300, deadline=None, database=None)
@given(old=_table(with_missing=True), new=_table(with_missing=False))
def test_applying_the_diff_to_the_old_table_gives_the_new_one(
    old: dict[str, tuple[Row, float | None]], new: dict[str, Row]
) -> None:
    p = plan(new, iter(old.values()))
    assert p.table_rows == len(old)
    assert set(p.insert) == set(new) - set(old) and len(p.insert) == len(set(p.insert))
    changed = {s for s in new if s in old and (old[s][0] != new[s] or old[s][1] is not None)}
    assert set(p.update) == changed and len(p.update) == len(changed)
    assert p.unchanged == len(set(new) & set(old)) - len(changed)
    assert set(p.stale) == set(old) - set(new)
    assert set(p.newly_missing) == {s for s in p.stale if old[s][1] is None}

    # delete-stale: the stored table becomes exactly the fetched one
    table = {s: row for s, (row, _missing) in old.items()}
    for s in p.insert + p.update:
        table[s] = new[s]
    for s in p.stale:
        del table[s]
    assert table == new
    # mark-missing: present rows are the fetched ones, the stale ones only marked
    kept = {s: (row, missing) for s, (row, missing) in old.items()}
    for s in p.insert + p.update:
        kept[s] = (new[s], None)
    for s in p.newly_missing:
        kept[s] = (kept[s][0], 9.0)
    assert {s: r for s, (r, m) in kept.items() if m is None} == new
    assert {s for s, (_r, m) in kept.items() if m is not None} == set(old) - set(new)
    # a second diff against the result finds nothing to do
    again = plan(new, ((row, None) for row in table.values()))
    assert not again.insert and not again.update and not again.stale
    assert again.unchanged == len(new)


@settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(old=_table(with_missing=True), new=_table(with_missing=False), delete=st.booleans())
def test_the_diff_written_through_the_database_gives_the_new_table(
    old: dict[str, tuple[Row, float | None]], new: dict[str, Row], delete: bool
) -> None:
    with tempfile.TemporaryDirectory(prefix="stationsync-prop-") as folder:
        db = Database(f"sqlite:///{folder}/prop.db")
        try:
            migrate.upgrade(db)
            stations.upsert_stations(db, [(*row, 1.0, 1.0, 1.0, m) for row, m in old.values()])
            p = plan(new, stations.iter_current(db))
            # as the sync writes: changed rows upserted (missing_since cleared), then the stale
            stations.upsert_stations(
                db, [(*new[s], 2.0, 2.0, 2.0, None) for s in p.insert + p.update]
            )
            if delete:
                assert stations.delete_stations(db, p.stale) == len(p.stale)
            else:
                stations.mark_missing(db, p.newly_missing, 2.0, None)
            stored = {row[0]: (row, missing) for row, missing in stations.iter_current(db)}
        finally:
            db.dispose()
    assert {s: row for s, (row, m) in stored.items() if m is None} == new
    gone = {s for s, (_row, m) in stored.items() if m is not None}
    assert gone == (set() if delete else set(old) - set(new))
