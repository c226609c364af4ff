"""The station read model as pages use it: the shared filter row and one cached table.

The whole station table is read once per data version and shared, read-only,
by every session of the process (100,000 rows take seconds to read, and a
filter is then a fraction of a second in memory); it is read ahead at process
start. Filters mean what ``jobstore.stations.query_stations`` means by them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from jobstore.stations import StationFilter, count_stations, query_stations
from jobstore.synclogs import latest_sync_log
from pages._ui import filter_frame, station_label

if TYPE_CHECKING:
    from core.runtime import Runtime

_FILTER_DEFAULTS: dict[str, Any] = {
    "search": "",
    "markets": [],
    "statuses": [],
    "min_connections": 0,
}
STATUS_OPTIONS = ["online", "offline"]


def _keep(page: str, name: str) -> Callable[[], None]:
    def copy() -> None:
        st.session_state[f"flt_{name}"] = st.session_state[f"{page}_{name}"]

    return copy


def station_filters(markets: list[str], page: str) -> StationFilter:
    """The filter row shared by the stations table and the map; the choice follows you
    between pages."""

    for name, default in _FILTER_DEFAULTS.items():
        st.session_state.setdefault(f"flt_{name}", default)
        # Seed this page's widget from the shared choice (widget state is per page).
        st.session_state[f"{page}_{name}"] = st.session_state[f"flt_{name}"]
    st.session_state[f"{page}_markets"] = [
        m for m in st.session_state[f"{page}_markets"] if m in markets
    ]
    c1, c2, c3, c4 = st.columns([3, 3, 2, 2])
    c1.text_input(
        "Search",
        key=f"{page}_search",
        placeholder="Site, hostname or serial",
        on_change=_keep(page, "search"),
        icon=":material/search:",
    )
    c2.multiselect(
        "Market",
        markets,
        key=f"{page}_markets",
        on_change=_keep(page, "markets"),
        placeholder="All markets",
    )
    c3.multiselect(
        "Status",
        STATUS_OPTIONS,
        key=f"{page}_statuses",
        on_change=_keep(page, "statuses"),
        format_func=station_label,
        placeholder="Any status",
    )
    c4.number_input(
        "Min. connections", min_value=0, step=1, key=f"{page}_min_connections",
        on_change=_keep(page, "min_connections"),
    )  # fmt: skip
    return StationFilter(
        search=str(st.session_state[f"{page}_search"] or "").strip(),
        markets=tuple(st.session_state[f"{page}_markets"]),
        statuses=tuple(st.session_state[f"{page}_statuses"]),
        min_connections=int(st.session_state[f"{page}_min_connections"] or 0),
    )


def data_version(rt: Runtime) -> tuple[Any, ...]:
    """Changes whenever a sync finishes or the station count moves: the cache key."""
    log = latest_sync_log(rt.db)
    return (count_stations(rt.db), log.id if log else None, str(log.status) if log else None,
            log.completed_at if log else None)  # fmt: skip


def filter_key(flt: Any) -> tuple[Any, ...]:
    """A StationFilter as a plain hashable tuple (the cache key)."""
    return (flt.search, tuple(flt.markets), tuple(flt.statuses), int(flt.min_connections))


def db_key(rt: Runtime) -> str:
    return f"{rt.db.safe_url}|{rt.holder}"


# The whole station table, read once per data version and shared by every session
# of this process (read-only: filtering makes new frames). One loader at a time,
# so ten people opening the page after a sync cause one read, not ten.
_frames_lock = threading.Lock()
_frames: dict[str, tuple[tuple[Any, ...], pd.DataFrame]] = {}


def all_stations(rt: Runtime, version: tuple[Any, ...]) -> pd.DataFrame:
    key = db_key(rt)
    with _frames_lock:
        hit = _frames.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        frame = query_stations(rt.db, StationFilter())
        _frames.clear()  # one database per process: keep only the newest table
        _frames[key] = (version, frame)
        return frame


def warm(rt: Runtime) -> None:
    """Read the station table ahead of the first page view (called at process start)."""
    all_stations(rt, data_version(rt))


def stations(rt: Runtime, flt: Any, version: tuple[Any, ...]) -> pd.DataFrame:
    """The filtered stations as a DataFrame (read-only; shared until the data changes)."""
    return filter_frame(all_stations(rt, version), flt)
