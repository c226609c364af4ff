"""The CSV export: exactly the rows given, text that cannot run as a spreadsheet formula."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from jobstore.stations import StationFilter
from pages._ui import csv_bytes, filter_frame, spreadsheet_safe


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("Main Road", "Main Road"),
        ("", ""),
        (-26.5, -26.5),
        (None, None),
    ],
)
def test_spreadsheet_safe(value: object, expected: object) -> None:
    assert spreadsheet_safe(value) == expected


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "serial_number": ["S1", "S2", "S3"],
            "hostname": ["=cmd|' /C calc'!A0", "bn-2", "bn-3"],
            "site_name": ["Main Road Tower", "@evil", None],
            "market": ["JHB", "CAPE", "JHB"],
            "region": ["ZA", "ZA", "ZA"],
            "device_status": ["online", "offline", "online"],
            "active_connections": [3, 0, 7],
            "lat": [-26.1, -33.9, -26.2],
            "lng": [28.0, 18.4, 28.1],
            "band": ["5ghz", "5ghz", "5ghz"],
            "height_m": [30.0, 20.0, 25.0],
            "azimuth_deg": [0.0, 120.0, 240.0],
            "last_seen": [1795431782.5, 1795431782.5, 1795431782.5],
            "missing_since": [None, 1795431782.5, None],
        }
    )


def test_csv_has_exactly_the_rows_and_safe_cells() -> None:
    rows = list(
        csv.DictReader(io.StringIO(csv_bytes(frame(), "Africa/Johannesburg").decode("utf-8-sig")))
    )
    assert [r["serial_number"] for r in rows] == ["S1", "S2", "S3"]
    assert rows[0]["hostname"] == "'=cmd|' /C calc'!A0"
    assert rows[1]["site_name"] == "'@evil"
    assert rows[0]["lat"] == "-26.1"  # numbers stay numbers
    assert rows[0]["last_seen"].startswith("2026-11-") and rows[0]["last_seen"].endswith("+0200")
    assert rows[0]["missing_since"] == "" and rows[1]["missing_since"] != ""
    assert rows[1]["status"] == "offline"


def test_filter_frame_matches_the_read_model_semantics() -> None:
    f = frame()
    assert list(filter_frame(f, StationFilter(search="MAIN road"))["serial_number"]) == ["S1"]
    assert list(filter_frame(f, StationFilter(search="s2"))["serial_number"]) == ["S2"]
    assert list(filter_frame(f, StationFilter(markets=("JHB",)))["serial_number"]) == ["S1", "S3"]
    assert list(filter_frame(f, StationFilter(statuses=("offline",)))["serial_number"]) == ["S2"]
    assert list(filter_frame(f, StationFilter(min_connections=3))["serial_number"]) == ["S1", "S3"]
    assert filter_frame(f, StationFilter(search="%")).empty  # literal, not a pattern


def test_filter_frame_agrees_with_query_stations(dash: object) -> None:
    from jobstore.stations import query_stations
    from pages import _ui
    from tests.ui.conftest import Dash, sync_and_wait

    d: Dash = dash()  # type: ignore[operator]
    d.open("stations")
    sync_and_wait(d)
    everything = query_stations(d.rt.db)
    some = everything.iloc[3]
    for flt in (
        StationFilter(search=str(some["site_name"])[:6].upper()),
        StationFilter(markets=(str(some["market"]),), statuses=("online",)),
        StationFilter(min_connections=2),
        StationFilter(search=str(some["serial_number"]).lower(), min_connections=0),
    ):
        mine = _ui.filter_frame(everything, flt)
        theirs = query_stations(d.rt.db, flt)
        assert sorted(mine["serial_number"]) == sorted(theirs["serial_number"]), flt
