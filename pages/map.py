"""Map page: every base station (not a sample), coloured by status and sized by connections.

No basemap is needed: the points, market labels and legend draw offline; a
street basemap can be switched on where the internet is reachable. A station
can be focused from the table (``?station=<serial>``). Tooltip values are
HTML-escaped before they reach the template, so names always show as text.
The points travel as JSON from the app's own route (see ``pages._mapdata``).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pydeck as pdk
import streamlit as st

from core.runtime import Runtime
from jobstore.stations import StationFilter, market_names, query_stations
from pages import _mapdata, _stationdata, _ui
from pages._mapdata import Points

TOOLTIP_HTML = (
    "<div style='font-size:13px;line-height:1.45'>"
    "<b>{s}</b><br/>{h}<br/>Serial <b>{n}</b><br/>{m}<br/>"
    "{t} · <b>{c}</b> active connections</div>"
)


def view_for(points: pd.DataFrame) -> pdk.ViewState:
    if points.empty:
        return pdk.ViewState(latitude=-28.5, longitude=25.0, zoom=4.5)
    lat_lo, lat_hi = points["lat"].quantile([0.01, 0.99])
    lng_lo, lng_hi = points["lng"].quantile([0.01, 0.99])
    # Fit the middle 98% of points into about 900 x 560 px (deck.gl: 512 px per world at zoom 0).
    lng_span = max(float(lng_hi - lng_lo), 0.01)
    lat_span = max(float(lat_hi - lat_lo), 0.01) * 1.25
    zoom = min(math.log2(900 * 360 / (512 * lng_span)), math.log2(560 * 360 / (512 * lat_span)))
    zoom = max(3.0, min(13.0, zoom))
    return pdk.ViewState(
        latitude=float((lat_lo + lat_hi) / 2), longitude=float((lng_lo + lng_hi) / 2), zoom=zoom
    )


# Offline stations are drawn last and a little smaller: on top, so none hides under a
# crowd of online ones, yet not so large that a few cover a whole city at country scale.
_DOT = {"online": (1.6, 190), "offline": (0.7, 235), "unknown": (0.7, 200)}


def market_labels(summary: pd.DataFrame) -> pd.DataFrame:
    """One label per market at its median position; tiny markets (test regions) unlabelled,
    and a label goes below its dot when another market sits just north of it."""
    labels = (
        summary.assign(mk=summary["m"])
        .groupby("mk", as_index=False)
        .agg(lat=("lat", "median"), lng=("lng", "median"), count=("status", "size"))
    )
    big = labels["count"] >= max(1, 0.005 * len(summary))
    labels = labels[big & (labels["mk"].str.len() > 0)].reset_index(drop=True)
    offsets = []
    for _, row in labels.iterrows():
        near_north = (
            (labels["lat"] > row["lat"])
            & ((labels["lat"] - row["lat"]).abs() < 1.5)
            & ((labels["lng"] - row["lng"]).abs() < 2.5)
        )
        offsets.append([0, 16] if bool(near_north.any()) else [0, -16])
    return labels.assign(offset=offsets)


def layers(points: Points, key: tuple[Any, ...], focus: pd.Series | None) -> list[pdk.Layer]:
    out = []
    for status, color in _ui.STATION_COLORS.items():
        if status not in points.bodies:
            continue
        min_px, alpha = _DOT[status]
        out.append(
            pdk.Layer(
                "ScatterplotLayer",
                data=points.url(status, key),  # fetched by the browser from our own route
                id=f"stations-{status}",
                get_position="[lng, lat]",
                get_fill_color=_ui.rgb(color, alpha),
                # Metres: specks at country scale (where thousands overlap), real sizes
                # by connections once zoomed in to a city.
                get_radius="60 + c * 30",
                radius_min_pixels=min_px,
                radius_max_pixels=16,
                pickable=True,
                auto_highlight=True,
            )
        )
    labels = market_labels(points.summary)
    if 0 < len(labels) <= 40:
        out.append(
            pdk.Layer(
                "TextLayer",
                data=labels,
                id="market-labels",
                get_position="[lng, lat]",
                get_text="mk",
                get_size=13,
                get_color=[27, 36, 48, 230],
                get_pixel_offset="offset",
                font_family=pdk.types.String(
                    "Arial, Helvetica, sans-serif"
                ),  # text, not an expression
                font_weight=600,
                outline_width=3,
                outline_color=[255, 255, 255, 255],
                font_settings={"sdf": True},
                pickable=False,
            )
        )
    if focus is not None:
        out.append(
            pdk.Layer(
                "ScatterplotLayer",
                data=pd.DataFrame([{"lat": focus["lat"], "lng": focus["lng"]}]),
                id="focus",
                get_position="[lng, lat]",
                get_radius=40,
                radius_min_pixels=14,
                stroked=True,
                filled=False,
                get_line_color=[31, 95, 191, 255],
                line_width_min_pixels=3,
            )
        )
    return out


def legend(points: pd.DataFrame) -> None:  # lat, lng, m, status
    online = int((points["status"] == "online").sum())
    offline = int((points["status"] == "offline").sum())
    other = len(points) - online - offline
    parts = [
        f":green[●] **Online** {online:,}",
        f":red[●] **Offline** {offline:,}",
    ]
    if other:
        parts.append(f":gray[●] **Unknown** {other:,}")
    parts.append("Dot size grows with active connections · hover a dot for details")
    st.markdown(" &nbsp;&nbsp; ".join(parts))


def focused_station(rt: Runtime, serial: str) -> pd.Series | None:
    found = _ui.attempt(
        "find the station", lambda: query_stations(rt.db, StationFilter(search=serial))
    )
    if found is None or found.empty:
        st.warning(
            f"No base station with serial **{_ui.md_text(serial)}** is in the database.",
            icon=":material/location_off:",
        )
        return None
    exact = found[found["serial_number"] == serial]
    row = (exact if not exact.empty else found).iloc[0]
    if pd.isna(row["lat"]) or pd.isna(row["lng"]):
        st.warning(f"Station **{serial}** has no coordinates, so it cannot be shown on the map.")
        return None
    return row


def main() -> None:
    rt = _ui.runtime()
    _ui.access_panel(rt)
    _ui.page_header("Map", "Every base station, coloured by status. Same filters as the table.")
    markets = _ui.attempt("read the markets", lambda: market_names(rt.db)) or []
    flt = _stationdata.station_filters(markets, "map")
    version = _ui.attempt("read the station data", lambda: _stationdata.data_version(rt))
    if version is None:
        return
    serial = st.query_params.get("station")
    focus = focused_station(rt, serial) if serial else None
    if focus is not None:
        a, b = st.columns([5, 1], vertical_alignment="center")
        a.info(
            f"Focused on **{_ui.md_text(focus['site_name'])}** · {_ui.md_text(focus['hostname'])} · "
            f"serial **{_ui.md_text(focus['serial_number'])}** · "
            f"{_ui.md_text(focus['market'])} · {_ui.station_badge(focus['device_status'])} · "
            f"{int(focus['active_connections'])} active connections",
            icon=":material/my_location:",
        )
        if b.button("Clear focus", icon=":material/close:", width="stretch"):
            del st.query_params["station"]
            st.rerun()
    key = _stationdata.filter_key(flt)
    points = _ui.attempt("read the base stations", lambda: _mapdata.points(rt, flt))
    if points is None:
        return
    if points.summary.empty and focus is None:
        if version[0] == 0:
            st.info(
                "**No base stations yet.** Run a sync from the Base stations page.",
                icon=":material/inbox:",
            )
        else:
            st.info(
                "No base station with coordinates matches these filters.",
                icon=":material/filter_alt_off:",
            )
        return
    legend(points.summary)
    basemap = st.toggle(
        "Street basemap", value=False, help="Needs internet access; the points draw without it."
    )
    view = view_for(points.summary)
    if focus is not None:
        view = pdk.ViewState(latitude=float(focus["lat"]), longitude=float(focus["lng"]), zoom=13)
    # Without a basemap, map_style must not be passed at all: pydeck then marks the style
    # as unset and the chart draws on a blank background instead of fetching map tiles.
    base: dict[str, Any] = (
        {"map_provider": "carto", "map_style": "light"} if basemap else {"map_provider": None}
    )
    deck = pdk.Deck(
        layers=layers(points, key, focus),
        initial_view_state=view,
        tooltip={"html": TOOLTIP_HTML, "style": {"backgroundColor": "#1b2430", "color": "#ffffff"}},
        **base,
    )
    st.pydeck_chart(
        deck, height=640, alt=f"Map of {len(points.summary):,} base stations coloured by status"
    )


main()
