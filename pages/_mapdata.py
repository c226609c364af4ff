"""The map's points, served as JSON from the dashboard's own ``/api/map/points`` route.

At 100,000 stations, points inlined in the pydeck spec cost seconds in the
browser (the spec is parsed as JSON5 and walked by deck.gl's JSON converter),
so the spec names a URL per status layer instead and the browser fetches and
parses plain JSON. The URL carries the filter, so the route can rebuild the
points after a restart; encoded bodies (plain and gzip) are cached per data
version and filter, shared by every session. Text is HTML-escaped here,
before it can reach the tooltip template.
"""

from __future__ import annotations

import gzip
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pandas as pd

ROUTE = "/api/map/points"
STATUSES = ("online", "offline", "unknown")
POINT_COLUMNS = ["lat", "lng", "s", "h", "n", "m", "c", "t"]
_SPECIALS = r"[&<>\"'{}]"


@dataclass(frozen=True)
class Points:
    """What the map draws for one filter and data version."""

    summary: pd.DataFrame  # lat, lng, m (market), status: for the legend, labels and view
    bodies: dict[str, tuple[bytes, bytes]]  # status -> (JSON records, the same gzipped)
    version_tag: str

    def url(self, status: str, key: tuple[Any, ...]) -> str:
        search, markets, statuses, min_connections = key
        query: list[tuple[str, str]] = [("status", status), ("v", self.version_tag)]
        if search:
            query.append(("search", search))
        query += [("market", m) for m in markets]
        query += [("state", s) for s in statuses]
        if min_connections:
            query.append(("min", str(int(min_connections))))
        return f"{ROUTE}?{urlencode(query)}"


def escaped(col: pd.Series) -> pd.Series:
    """HTML-escape a text column; only the rare cells that need it pay for it."""
    from pages._ui import escape_html

    text = col.astype(object).where(col.notna(), "").astype(str)
    needs = text.str.contains(_SPECIALS, regex=True)
    if bool(needs.any()):
        text = text.where(~needs, text[needs].map(escape_html))
    return text


def build(frame: pd.DataFrame, version_tag: str) -> Points:
    from pages._ui import station_label

    frame = frame[frame["lat"].notna() & frame["lng"].notna()]
    status = frame["device_status"].fillna("unknown").astype(str).str.lower()
    status = status.where(status.isin(["online", "offline"]), "unknown")
    out = pd.DataFrame(
        {
            "lat": frame["lat"].round(5).astype("float64"),
            "lng": frame["lng"].round(5).astype("float64"),
            "s": escaped(frame["site_name"]),
            "h": escaped(frame["hostname"]),
            "n": escaped(frame["serial_number"]),
            "m": escaped(frame["market"]),
            "c": frame["active_connections"].astype("int64"),
            "t": status.map(station_label),
            "status": status,
        }
    ).reset_index(drop=True)
    bodies: dict[str, tuple[bytes, bytes]] = {}
    for key in STATUSES:
        part = out.loc[out["status"] == key, POINT_COLUMNS]
        if part.empty:
            continue
        raw = part.to_json(orient="records").encode("utf-8")
        bodies[key] = (raw, gzip.compress(raw, compresslevel=5))
    return Points(out[["lat", "lng", "m", "status"]], bodies, version_tag)


_lock = threading.Lock()
_cache: OrderedDict[tuple[Any, ...], Points] = OrderedDict()
_MAX = 8


def points(rt: Any, flt: Any) -> Points:
    """The points for a StationFilter at the current data version (cached)."""
    from pages import _stationdata

    version = _stationdata.data_version(rt)
    key = (_stationdata.db_key(rt), version, _stationdata.filter_key(flt))
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    built = build(_stationdata.stations(rt, flt, version), f"{abs(hash(version)):x}")
    with _lock:
        _cache[key] = built
        while len(_cache) > _MAX:
            _cache.popitem(last=False)
    return built


def endpoint(request: Any) -> Any:
    """GET /api/map/points?status=online&search=..&market=..&state=..&min=..: JSON records."""
    from starlette.responses import JSONResponse, Response

    from core.errors import StationsyncError
    from core.runtime import get_runtime
    from jobstore.stations import StationFilter

    q = request.query_params
    status = q.get("status", "online")
    try:
        min_connections = max(0, int(q.get("min", "0") or 0))
    except ValueError:
        return JSONResponse({"error": "min must be a whole number"}, status_code=400)
    flt = StationFilter(
        search=(q.get("search") or "").strip(),
        markets=tuple(q.getlist("market")),
        statuses=tuple(q.getlist("state")),
        min_connections=min_connections,
    )
    try:
        pts = points(get_runtime(), flt)
    except StationsyncError as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)
    raw, packed = pts.bodies.get(status, (b"[]", gzip.compress(b"[]")))
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(packed, media_type="application/json", headers=headers)
    return Response(raw, media_type="application/json", headers=headers)
