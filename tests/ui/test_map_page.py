"""The map page: every station in the layers, escaped tooltips, focus from the table, offline."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pandas as pd

from jobstore.stations import StationFilter, query_stations, station_summary
from pages import _mapdata
from tests.ui.conftest import Dash, sync_and_wait


def deck_spec(d: Dash) -> dict[str, Any]:
    charts = d.at.get("deck_gl_json_chart")
    assert charts, "no map on the page"
    return json.loads(charts[0].proto.json)


def test_empty_map_says_so(dash: Any) -> None:
    d: Dash = dash()
    d.open("map")
    assert "No base stations yet" in d.texts()


def test_map_draws_every_station_without_a_basemap(dash: Any) -> None:
    d: Dash = dash()
    d.open("map")
    sync_and_wait(d)
    d.at.run()
    spec = deck_spec(d)
    assert spec.get("mapStyle") == "__MAP_STYLE__"  # no basemap: nothing to fetch offline
    layers = {layer["id"]: layer for layer in spec["layers"]}
    assert {"stations-online", "stations-offline"} <= set(layers)
    assert layers["stations-online"]["data"].startswith("/api/map/points?status=online")

    pts = _mapdata.points(d.rt, StationFilter())
    drawn = sum(len(json.loads(raw)) for raw, _ in pts.bodies.values())
    summary = station_summary(d.rt.db)
    assert drawn == summary["total"]  # every station, not a sample
    legend = d.texts()
    assert f"**Online** {summary['online']:,}" in legend
    assert f"**Offline** {summary['offline']:,}" in legend


def test_tooltip_values_are_escaped_text() -> None:
    frame = pd.DataFrame(
        {
            "lat": [-26.1],
            "lng": [28.0],
            "site_name": ["<img src=x onerror=alert(1)> & {n}"],
            "hostname": ['"quoted"'],
            "serial_number": ["S1"],
            "market": ["JHB"],
            "active_connections": [3],
            "device_status": ["online"],
        }
    )
    pts = _mapdata.build(frame, "v1")
    record = json.loads(pts.bodies["online"][0])[0]
    assert record["s"] == "&lt;img src=x onerror=alert(1)&gt; &amp; &#123;n&#125;"
    assert record["h"] == "&quot;quoted&quot;"
    assert "<" not in record["s"] and "{" not in record["s"]


def test_focus_from_the_table(dash: Any) -> None:
    d: Dash = dash()
    d.open("stations")
    sync_and_wait(d)
    frame = query_stations(d.rt.db)
    row = frame.dropna(subset=["lat", "lng"]).iloc[0]
    d.open("map", station=str(row["serial_number"]))
    assert f"serial **{row['serial_number']}**" in d.texts()
    spec = deck_spec(d)
    assert spec["initialViewState"]["zoom"] == 13
    assert abs(spec["initialViewState"]["latitude"] - row["lat"]) < 1e-6
    assert any(layer["id"] == "focus" for layer in spec["layers"])


def test_unknown_station_in_the_link(dash: Any) -> None:
    d: Dash = dash()
    d.open("map", station="NOPE<script>")
    assert "No base station with serial" in "\n".join(w.value for w in d.at.warning)


def call_route(query: dict[str, str], gzip_ok: bool = False) -> Any:
    """The points endpoint called with a real Starlette request (no server needed)."""
    from urllib.parse import urlencode

    from starlette.requests import Request

    headers = [(b"accept-encoding", b"gzip")] if gzip_ok else []
    scope = {"type": "http", "method": "GET", "path": _mapdata.ROUTE,
             "query_string": urlencode(query).encode(), "headers": headers}  # fmt: skip
    return _mapdata.endpoint(Request(scope))


def test_points_route_serves_the_filtered_points(dash: Any) -> None:
    d: Dash = dash()
    d.open("map")
    sync_and_wait(d)
    everything = call_route({"status": "online"})
    assert everything.status_code == 200
    online = json.loads(everything.body)
    first = online[0]
    assert set(first) == {"lat", "lng", "s", "h", "n", "m", "c", "t"}
    one = json.loads(call_route({"status": "online", "search": first["n"]}).body)
    assert [p["n"] for p in one] == [first["n"]]
    packed = call_route({"status": "online"}, gzip_ok=True)
    assert packed.headers["content-encoding"] == "gzip"
    assert gzip.decompress(packed.body) == everything.body
    assert call_route({"min": "lots"}).status_code == 400
