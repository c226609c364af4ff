"""Hostile names stay text: the CSV cannot run formulas, the map and pages cannot run HTML.

Stations are stored with names full of HTML, script, formula prefixes and
template braces (the validator keeps them verbatim, as it should). The CSV
export the stations page offers (``pages._ui.csv_bytes``) must neutralise
every text cell that starts with ``= + - @``, tab or CR and keep the rest
exact. The map's tooltip values, fetched by the browser from the app's
``/api/map/points`` route, must be HTML-escaped, and the tables must show
text columns as text. Upstream text shown as Markdown (the focused station,
a portal's error message) must not turn into a link or an image.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from core.runtime import Runtime
from core.settings import Secret
from jobstore import stations
from jobstore.db import Database
from jobstore.stations import query_stations
from pages import _ui
from tests.hostile.driver import SyncDriver
from tests.hostile.server import HostilePortal, error_reply
from tests.security.conftest import messages, render, route_body
from tests.security.stations_data import HOSTILE_NAMES, seed_hostile, station

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
TEXT_COLUMNS = ("serial_number", "hostname", "site_name", "market", "region", "status", "band")
NUMBER_COLUMNS = ("active_connections", "lat", "lng", "height_m", "azimuth_deg")
ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")
PIXEL = "![pixel](http://127.0.0.1:9/pixel.png)"
LINK = "[Sign in again](http://127.0.0.1:9/login)"


def _original(cell: str) -> str:
    """The value before neutralising: a leading apostrophe added before a formula start."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell


def _csv_records(data: bytes) -> list[list[str]]:
    """The export as a spreadsheet reads it: every record, header first."""
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 with a BOM, for spreadsheets"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_the_csv_export_cannot_carry_a_formula(sqlite_db: Database) -> None:
    seed_hostile(sqlite_db)
    stations.upsert_stations(
        sqlite_db, [station(999, serial_number="=STATUS()", device_status="=1+2")]
    )
    frame = query_stations(sqlite_db)
    records = _csv_records(_ui.csv_bytes(frame, "Africa/Johannesburg"))
    header, body = records[0], records[1:]
    text = [header.index(c) for c in TEXT_COLUMNS]
    # a cell that a spreadsheet would start a record with, or run, must never begin a formula
    starts = [r[0] for r in body] + [r[i] for r in body if len(r) == len(header) for i in text]
    assert not [c for c in starts if c.startswith(FORMULA_START)], "a formula reaches a cell"
    assert all(len(r) == len(header) for r in body), "a text cell broke out of its record"
    assert len(body) == len(frame)

    exported = [dict(zip(header, r, strict=True)) for r in body]
    by_serial = {str(r["serial_number"]): r for r in frame.to_dict("records")}
    originals = {_original(c["serial_number"]): c for c in exported}
    assert set(originals) == set(by_serial)
    for serial, cells in originals.items():
        stored = by_serial[serial]
        for column in TEXT_COLUMNS:
            value = stored["device_status" if column == "status" else column]
            value = "" if value is None else str(value)
            want = "'" + value if value.startswith(FORMULA_START) else value
            assert cells[column] == want, (column, cells[column], value)
        for column in NUMBER_COLUMNS:
            if cells[column]:
                float(cells[column])  # a number (a leading minus is a sign, not a formula)
    assert set(HOSTILE_NAMES) <= {_original(c["site_name"]) for c in exported}


@settings(max_examples=200, deadline=None, database=None)
@given(st.text())
def test_spreadsheet_safe_neutralises_every_formula_start(value: str) -> None:
    safe = _ui.spreadsheet_safe(value)
    assert not str(safe).startswith(FORMULA_START)
    assert safe == value or safe == "'" + value


@settings(max_examples=300, deadline=None, database=None)
@given(st.text())
def test_escaped_html_is_inert_and_exact(value: str) -> None:
    escaped = _ui.escape_html(value)
    assert not set(ENTITY.sub("", escaped)) & set("<>\"'{}&")
    assert html.unescape(escaped) == value


def _inert(value: str) -> bool:
    return not set(ENTITY.sub("", value)) & set("<>\"'{}&")


def test_map_tooltips_and_labels_carry_escaped_text_only(
    app_runtime: Callable[..., Runtime],
) -> None:
    rt = app_runtime()
    seed_hostile(rt.db)
    stored = {str(r["serial_number"]): r for r in query_stations(rt.db).to_dict("records")}
    at = render("map.py")
    charts = at.get("deck_gl_json_chart")
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.json)
    tooltip = (
        json.loads(charts[0].proto.tooltip) if charts[0].proto.tooltip else spec.get("tooltip")
    )
    template = tooltip["html"]
    assert set(re.findall(r"\{(\w+)\}", template)) == {"s", "h", "n", "m", "t", "c"}

    points: list[dict[str, Any]] = []
    for layer in spec["layers"]:
        data = layer.get("data")
        if isinstance(data, str) and data.startswith("/api/"):
            points += json.loads(route_body(urlsplit(data).query))
        elif isinstance(data, list):  # drawn on the canvas as text, never as HTML
            assert all(_inert(str(row.get("mk", ""))) for row in data)
    assert len(points) == len(stored)
    for point in points:
        for field in ("s", "h", "n", "m", "t"):
            value = point[field]
            assert isinstance(value, str) and _inert(value), (field, value)
        serial = html.unescape(point["n"])
        row = stored[serial]
        assert html.unescape(point["s"]) == (row["site_name"] or "")
        assert html.unescape(point["h"]) == (row["hostname"] or "")
        assert html.unescape(point["m"]) == (row["market"] or "")
        assert isinstance(point["c"], int)


def test_the_station_table_shows_every_column_as_plain_data(
    app_runtime: Callable[..., Runtime],
) -> None:
    rt = app_runtime()
    seed_hostile(rt.db)
    at = render("stations.py")
    table = at.dataframe[0]
    config = json.loads(table.proto.columns)
    kinds = {
        c: v.get("type_config", {}).get("type") for c, v in config.items() if "type_config" in v
    }
    assert kinds and set(kinds.values()) <= {"text", "number", "datetime", "multiselect"}
    for column in ("site_name", "hostname", "serial_number", "market", "band"):
        assert kinds[column] == "text"
    assert set(HOSTILE_NAMES) <= set(table.value["site_name"])


LINK_SYNTAX = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(")  # "[text](" not escaped: a link or image


def _unsafe_markdown(texts: list[str]) -> list[str]:
    return [t for t in texts if LINK_SYNTAX.search(t)]


def test_a_station_name_shown_as_markdown_cannot_become_a_link_or_image(
    app_runtime: Callable[..., Runtime],
) -> None:
    rt = app_runtime()
    serial = "S134F2220799999"
    stations.upsert_stations(
        rt.db, [station(77, serial_number=serial, site_name=f"{PIXEL} {LINK}")]
    )
    at = render("map.py", query={"station": serial})
    focus = [m for m in messages(at) if "Focused on" in m]
    assert focus, messages(at)
    assert not _unsafe_markdown(focus), focus


def test_a_portal_message_shown_as_markdown_cannot_become_a_link_or_image(
    app_runtime: Callable[..., Runtime],
) -> None:
    rt = app_runtime()
    with HostilePortal() as portal:
        portal.state.login_reply = error_reply(401, f"Session expired. {PIXEL} {LINK}")
        log = SyncDriver(rt.db, portal, tarana_password=Secret(portal.password)).sync()
    assert log.errors and "Session expired" in log.errors[0]
    shown: list[str] = []
    for page, query in (("history.py", {"run": str(log.run_id)}), ("stations.py", {})):
        at = render(page, query=query)
        texts = [
            str(e.value) for kind in ("markdown", "error", "warning", "info") for e in at.get(kind)
        ]
        shown += [t for t in texts if "Session expired" in t]
    assert shown, "the failure is reported on the pages"
    assert not _unsafe_markdown(shown), shown
