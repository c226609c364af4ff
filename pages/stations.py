"""Base stations page: headline numbers, the last sync, Sync Now with live progress, the table.

The page reads the station read model and the sync's records, and sends one
command (start a sync). While a run is active, a fragment re-reads that run
by its id every ``ui_poll_active_s`` and shows each step's progress; when the
run ends it reruns the whole page so the numbers and the table refresh.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import streamlit as st

from core.runtime import Runtime
from jobstore import synclogs
from jobstore.stations import market_names, station_summary
from pages import _stationdata, _sync, _ui

TABLE_COLUMNS = [
    "site_name", "hostname", "serial_number", "market", "status", "active_connections",
    "band", "last_seen", "missing_since", "lat", "lng",
]  # fmt: skip


def kpis(rt: Runtime) -> dict[str, Any] | None:
    summary = _ui.attempt("read the station numbers", lambda: station_summary(rt.db))
    if summary is None:
        return None
    total = summary["total"]

    def pct(n: int) -> str:
        return f"{(100.0 * n / total):.1f}%" if total else "—"

    c = st.columns(5)
    c[0].metric(
        "Base stations",
        f"{total:,}",
        border=True,
        height="stretch",
        help="Every base station in the database, including ones the portal no longer lists.",
    )
    c[1].metric(
        "Online",
        f"{summary['online']:,}",
        pct(summary["online"]),
        delta_color="off",
        border=True,
        height="stretch",
        delta_arrow="off",
    )
    c[2].metric(
        "Offline",
        f"{summary['offline']:,}",
        pct(summary["offline"]),
        delta_color="inverse" if summary["offline"] else "off",
        border=True,
        height="stretch",
        delta_arrow="off",
    )
    c[3].metric(
        "Active connections",
        f"{summary['total_connections']:,}",
        f"{summary['average_connections']:.1f} per station",
        delta_color="off",
        border=True,
        height="stretch",
        delta_arrow="off",
    )
    c[4].metric("Markets", f"{summary['markets']:,}", border=True, height="stretch")
    return summary


def last_sync_line(rt: Runtime, skip_run: str | None = None) -> None:
    """ "Last sync: 5 minutes ago (3 new, 120 updated)", unless the banner above already
    tells how that very run ended (``skip_run``)."""
    logs = _ui.attempt("read the last sync", lambda: synclogs.list_sync_logs(rt.db, limit=30))
    if logs is None:
        return
    tz = _ui.zone(rt)
    done = [g for g in logs if g.finished]
    if not done:
        st.caption(
            ":material/sync: No sync has finished yet. Press **Sync Now** to fetch the stations."
        )
        return
    last = done[0]
    if skip_run is not None and last.run_id == skip_run:
        return
    when = last.completed_at or last.started_at
    counts = f"{last.inserted:,} new, {last.updated:,} updated"
    if last.deleted:
        counts += f", {last.deleted:,} deleted"
    if last.skipped:
        counts += f", {last.skipped:,} skipped"
    dry = " — dry run, nothing written" if last.dry_run else ""
    hover = f"{_ui.exact(when, tz)} · {_ui.TRIGGER_LABELS.get(last.trigger_type, last.trigger_type)} by {_ui.md_text(last.triggered_by) or '—'}"
    status = str(last.status)
    if status in ("completed", "completed_with_warnings"):
        icon = ":material/check_circle:" if status == "completed" else ":material/warning:"
        st.markdown(f"{icon} **Last sync: {_ui.ago(when)}** ({counts}){dry}", help=hover)
    else:
        error = _ui.md_text(last.errors[-1]) if last.errors else status.replace("_", " ")
        st.markdown(
            f":material/error: **Last sync {status.replace('_', ' ')} {_ui.ago(when)}**: {error}",
            help=hover,
        )
        if last.run_id:
            st.page_link(
                "pages/history.py",
                label="See what went wrong",
                icon=":material/history:",
                query_params={"run": last.run_id},
            )


def station_table(rt: Runtime, frame: pd.DataFrame, total: int) -> None:
    tz_name = rt.settings.timezone
    view = frame.copy()
    view["status"] = view["device_status"].fillna("unknown").map(lambda s: [str(s).lower()])
    for col in ("last_seen", "missing_since"):
        view[col] = pd.to_datetime(view[col], unit="s", utc=True)
    view = view[TABLE_COLUMNS]
    shown = len(view)
    head, dl = st.columns([4, 1], vertical_alignment="bottom")
    head.markdown(
        f"**{shown:,}** of {total:,} base stations"
        + (" match the filters" if shown != total else "")
    )
    dl.download_button(
        "Export CSV",
        data=lambda: _ui.csv_bytes(frame, tz_name),
        file_name=f"base-stations-{time.strftime('%Y%m%d-%H%M')}.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        width="stretch",
        disabled=shown == 0,
        help="Exactly the rows shown, as CSV. Text cells that a spreadsheet would run as a formula are "
        "prefixed with an apostrophe.",
    )
    if shown == 0:
        st.info("No base station matches these filters.", icon=":material/filter_alt_off:")
        return
    selection = st.dataframe(
        view,
        hide_index=True,
        height=560,
        on_select="rerun",
        selection_mode="single-row",
        key="stations_table",
        column_config={
            "site_name": st.column_config.TextColumn("Site", width="medium", pinned=True),
            "hostname": st.column_config.TextColumn("Hostname", width=140),
            "serial_number": st.column_config.TextColumn("Serial", width=150),
            "market": st.column_config.TextColumn("Market", width=110),
            "status": _ui.status_pill_column("Status", _ui.STATION_COLORS, width="small",
                                              format_func=_ui.station_label),
            "active_connections": st.column_config.NumberColumn(
                "Connections", format="%d", help="Active connections (remote nodes) right now"
            ),
            "band": st.column_config.TextColumn("Band", width="small"),
            "lat": st.column_config.NumberColumn("Latitude", format="%.5f"),
            "lng": st.column_config.NumberColumn("Longitude", format="%.5f"),
            "last_seen": st.column_config.DatetimeColumn(
                "Last seen", format="distance", timezone=tz_name,
                help="When a sync last saw this station in the portal",
            ),
            "missing_since": st.column_config.DatetimeColumn(
                "Missing since", format="YYYY-MM-DD HH:mm z", timezone=tz_name,
                help="Set when the portal stopped listing the station",
            ),
        },
    )  # fmt: skip
    rows = selection.selection.rows if selection else []
    if rows:
        picked = view.iloc[rows[0]]
        st.page_link(
            "pages/map.py",
            label=f"Show {picked['site_name'] or picked['serial_number']} ({picked['serial_number']}) on the map",
            icon=":material/location_on:",
            query_params={"station": str(picked["serial_number"])},
        )
    else:
        st.caption(":material/touch_app: Select a row to show that station on the map.")


def main() -> None:
    rt = _ui.runtime()
    _ui.access_panel(rt)
    title, button = st.columns([3, 2], vertical_alignment="bottom")
    with title:
        _ui.page_header("Base stations")
    _ui.show_flash()
    shown = _sync.sync_control(rt, button_area=button)
    last_sync_line(rt, skip_run=shown)
    summary = kpis(rt)
    if summary is None:
        return
    markets = _ui.attempt("read the markets", lambda: market_names(rt.db)) or []
    flt = _stationdata.station_filters(markets, "stations")
    version = _ui.attempt("read the station data", lambda: _stationdata.data_version(rt))
    if version is None:
        return
    if summary["total"] == 0:
        st.info(
            "**No base stations yet.** Press **Sync Now** to fetch them from the vendor portal, "
            "or wait for the scheduled sync.",
            icon=":material/inbox:",
        )
        return
    frame = _ui.attempt("read the base stations", lambda: _stationdata.stations(rt, flt, version))
    if frame is None:
        return
    station_table(rt, frame, summary["total"])


main()
