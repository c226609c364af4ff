"""Search and filter text is literal: SQL, LIKE and regex characters match only themselves.

The stations read model (``query_stations``, on SQLite and PostgreSQL) and the
filter the pages apply to the cached table (``pages._ui.filter_frame``) must
both treat whatever was typed as a plain substring: ``%`` matches only names
with a percent sign, ``'; DROP TABLE base_stations; --`` is text, not a
statement, and the table is still there afterwards. The stations page is
also driven with these searches under AppTest.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
import sqlalchemy as sa

from core.runtime import Runtime
from jobstore.db import Database
from jobstore.stations import StationFilter, count_stations, market_names, query_stations
from pages import _ui
from tests.security.conftest import render
from tests.security.stations_data import seed_hostile

NEEDLES = (
    "%", "_", "%%", "\\%", "'; DROP TABLE base_stations; --", "'", '"', ".*", "[", "]", "\\",
    "\\\\", "*", "?", "^", "$", "|", "+", "(", "--", "/*", "{s}", "<script>", "=cmd", "NULL",
    "' OR '1'='1", "%' OR 1=1 --", "a%b", "_score",
)  # fmt: skip
SEARCHED = ("site_name", "hostname", "serial_number")


def expected(frame: pd.DataFrame, needle: str) -> set[str]:
    """Serials whose site, hostname or serial contains ``needle``, case-insensitively."""
    low = needle.lower()
    return {
        str(r["serial_number"])
        for _, r in frame.iterrows()
        if any(low in str(r[c] or "").lower() for c in SEARCHED)
    }


@pytest.fixture
def seeded(db: Database) -> Database:
    seed_hostile(db)
    return db


def _tables(db: Database) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def test_search_is_a_literal_substring_in_sql(seeded: Database) -> None:
    everything = query_stations(seeded)
    tables = _tables(seeded)
    wrong = {}
    for needle in NEEDLES:
        found = set(query_stations(seeded, StationFilter(search=needle))["serial_number"])
        if found != expected(everything, needle):
            wrong[needle] = sorted(found ^ expected(everything, needle))
    assert not wrong
    assert _tables(seeded) == tables and count_stations(seeded) == len(everything)


def test_percent_matches_only_names_with_a_percent_sign(seeded: Database) -> None:
    found = query_stations(seeded, StationFilter(search="%"))
    names = set(found["site_name"]) | set(found["hostname"]) | set(found["serial_number"])
    assert len(found) == 3
    assert all(
        any("%" in str(v) for v in (r.site_name, r.hostname, r.serial_number))
        for r in found.itertuples()
    ), names


def test_the_pages_filter_is_literal_too(sqlite_db: Database) -> None:
    seed_hostile(sqlite_db)
    everything = query_stations(sqlite_db)
    wrong = {}
    for needle in NEEDLES:
        shown = set(_ui.filter_frame(everything, StationFilter(search=needle))["serial_number"])
        if shown != expected(everything, needle):
            wrong[needle] = sorted(shown ^ expected(everything, needle))
    assert not wrong


MARKETS = (
    ("'; DROP TABLE base_stations; --",), ("%",), ("@market", "%"), ("<b>JHB</b> & <i>co</i>",),
)  # fmt: skip


def test_market_and_status_filters_are_bound_values(seeded: Database) -> None:
    everything = query_stations(seeded)
    for markets in MARKETS:
        flt = StationFilter(markets=markets, statuses=("online", "' OR 1=1 --"))
        found = query_stations(seeded, flt)
        want = everything[
            everything["market"].isin(markets) & (everything["device_status"] == "online")
        ]
        assert set(found["serial_number"]) == set(want["serial_number"]), markets
        assert set(_ui.filter_frame(everything, flt)["serial_number"]) == set(want["serial_number"])
    assert "base_stations" in _tables(seeded) and count_stations(seeded) == len(everything)


def test_the_stations_page_searches_literally(app_runtime: Callable[..., Runtime]) -> None:
    rt = app_runtime()
    seed_hostile(rt.db)
    everything = query_stations(rt.db)
    assert "@market" in market_names(rt.db)
    at = render("stations.py")
    for needle in ("%", "_", "'; DROP TABLE base_stations; --", ".*", "[", "\\"):
        at.text_input(key="stations_search").set_value(needle).run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        want = expected(everything, needle)
        if want:
            table = at.dataframe[0].value
            assert set(table["serial_number"]) == want, needle
        else:
            assert any("No base station matches" in str(i.value) for i in at.info)
    assert count_stations(rt.db) == len(everything)
