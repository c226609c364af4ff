"""Checking one BN item, linking RNs, and comparing rows: the sync's pure parts."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from core.sync.diff import plan, station_row
from core.sync.validate import BN_FIELDS, Invalid, check_bn, rn_link
from jobstore.stations import DATA_COLUMNS

GOOD: dict[str, Any] = {
    "serialNumber": "S134F2220600926",
    "hostName": "X0348-BN-45",
    "type": "BN",
    "connected": True,
    "band": "5ghz",
    "installParams": {
        "latitude": -26.1,
        "longitude": 28.05,
        "heightAgl": 21.5,
        "antennaAzimuth": 45,
    },
    "ancestry": {
        "region": {"id": 101, "name": "South Africa"},
        "market": {"id": 1001, "name": "JHB Gauteng"},
        "site": {"id": 10001, "name": "Alex Shopping Centre", "latitude": 0, "longitude": 0},
        "cell": {"id": 500348, "name": "348"},
        "sector": {"id": 1000001, "name": "1"},
        "cellDetails": {"id": 500348, "name": "X0348"},
        "sectorDetails": {"id": 1000001, "name": "X0348-BN-45"},
    },
}


def item(**params: Any) -> dict[str, Any]:
    out = copy.deepcopy(GOOD)
    out["installParams"].update(params)
    return out


def test_a_good_item_maps_every_field() -> None:
    row = dict(zip(BN_FIELDS, check_bn(GOOD), strict=True))
    assert row == {
        "serial_number": "S134F2220600926", "hostname": "X0348-BN-45",
        "site_name": "Alex Shopping Centre", "market": "JHB Gauteng", "region": "South Africa",
        "lat": -26.1, "lng": 28.05, "height_m": 21.5, "azimuth_deg": 45.0, "band": "5ghz",
        "connected": True, "region_id": "101", "market_id": "1001", "site_id": "10001",
        "cell_id": "500348", "sector_id": "1000001", "cell_name": "X0348",
        "sector_name": "X0348-BN-45",
    }  # fmt: skip
    station = dict(zip(DATA_COLUMNS, station_row(check_bn(GOOD), 7), strict=True))
    assert station["device_status"] == "online" and station["active_connections"] == 7
    assert station["lat"] == -26.1  # never the site's 0/0


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"latitude": None}, "missing latitude"),
        ({"latitude": 0, "longitude": 0}, "zero coordinates (0, 0)"),
        ({"latitude": 0}, "zero latitude"),
        ({"longitude": 0.0}, "zero longitude"),
        ({"latitude": 91}, "out of range"),
        ({"longitude": -180.5}, "out of range"),
        ({"latitude": math.nan}, "not a finite number"),
        ({"longitude": math.inf}, "not a finite number"),
        ({"latitude": "n/a"}, "is not a number"),
        ({"latitude": True}, "is not a number"),
        ({"latitude": [1]}, "is not a number"),
        ({"heightAgl": "tall"}, "height"),
        ({"antennaAzimuth": "unknown"}, "antenna azimuth"),
        ({"antennaAzimuth": math.nan}, "antenna azimuth"),
    ],
)
def test_bad_numbers_are_skipped_with_the_reason(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(Invalid, match=None) as info:
        check_bn(item(**changes))
    assert reason in str(info.value)


def test_missing_install_params_and_serials_are_skipped() -> None:
    bare = copy.deepcopy(GOOD)
    del bare["installParams"]
    with pytest.raises(Invalid, match="missing coordinates"):
        check_bn(bare)
    bare["installParams"] = None
    with pytest.raises(Invalid, match="missing coordinates"):
        check_bn(bare)
    nameless = copy.deepcopy(GOOD)
    del nameless["serialNumber"]
    with pytest.raises(Invalid, match="no serial number \\(hostName 'X0348-BN-45'\\)"):
        check_bn(nameless)
    for bad in ("", "   ", 12345, "S" * 65):
        with pytest.raises(Invalid):
            check_bn({**GOOD, "serialNumber": bad})
    with pytest.raises(Invalid, match="type"):
        check_bn({**GOOD, "type": "RN"})
    with pytest.raises(Invalid, match="NUL"):
        check_bn({**GOOD, "hostName": "a\x00b"})


def test_numeric_strings_are_numbers_and_names_stay_text() -> None:
    row = dict(
        zip(BN_FIELDS, check_bn(item(latitude="-26.5", heightAgl=None, height=12)), strict=True)
    )
    assert row["lat"] == -26.5 and row["height_m"] == 12.0
    html = copy.deepcopy(GOOD)
    html["ancestry"]["site"]["name"] = "<b>Tower</b> & 'quotes' %_\\"
    assert check_bn(html)[2] == "<b>Tower</b> & 'quotes' %_\\"
    no_anc = copy.deepcopy(GOOD)
    del no_anc["ancestry"]
    row = dict(zip(BN_FIELDS, check_bn(no_anc), strict=True))
    assert row["site_name"] is None and row["sector_id"] is None and row["lat"] == -26.1
    assert check_bn({**GOOD, "connected": "true"})[BN_FIELDS.index("connected")] is False


def test_rns_link_by_master_serial_else_by_sector() -> None:
    assert rn_link({"masterSerial": "S134F1", "ancestry": GOOD["ancestry"]}) == ("master", "S134F1")
    assert rn_link({"ancestry": GOOD["ancestry"]}) == ("sector", "1000001")
    assert rn_link({"ancestry": {"sectorDetails": {"id": 7}}}) == ("sector", "7")
    assert rn_link({"serialNumber": "S150F1"}) is None


def test_plan_compares_field_by_field() -> None:
    a = station_row(check_bn(GOOD), 1)
    b = station_row(check_bn({**GOOD, "serialNumber": "S2"}), 0)
    b_changed = station_row(check_bn({**GOOD, "serialNumber": "S2", "connected": False}), 0)
    c = station_row(check_bn({**GOOD, "serialNumber": "S3"}), 0)
    current = [(a, None), (b, None), (c, None)]
    p = plan({"S134F2220600926": a, "S2": b_changed, "S4": a}, current, keep_before=True)
    assert p.insert == ["S4"] and p.update == ["S2"] and p.unchanged == 1
    assert p.stale == ["S3"] == p.newly_missing and p.table_rows == 3
    assert p.changed_fields == {"device_status": 1}
    assert p.before["S2"] == b and p.before["S3"] == c
    # a missing station fetched again is an update even when nothing else changed
    p = plan({"S3": c}, [(c, 1234.0)])
    assert p.update == ["S3"] and p.changed_fields == {"missing_since": 1}
    assert plan({}, [(c, 1234.0)]).newly_missing == []
