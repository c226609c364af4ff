"""Stationsync's dashboard: the ASGI app that owns the runtime, and the page navigation.

This file is read twice, in two roles. Imported as a module (``streamlit run
app.py`` finds ``app = st.App(...)`` and serves it with uvicorn), it builds the
ASGI app whose lifespan starts the process's runtime once, at process start,
so the nightly schedule fires even if nobody opens a page, and stops it on
shutdown (SIGTERM included). Run as Streamlit's main script for each session,
it only sets up the page and the navigation; pages reach the runtime through
``pages._ui.runtime()``, which returns the same process-wide instance. The
ASGI app also serves the map's points as JSON (``pages._mapdata``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import streamlit as st

log = logging.getLogger("stationsync.app")


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """Start the runtime before serving; stop it when the server stops."""
    from core.errors import StationsyncError
    from core.runtime import get_runtime, shutdown_runtime

    try:
        rt = await asyncio.to_thread(get_runtime)
    except StationsyncError as exc:
        # Serve anyway: every page retries and explains the problem to the operator.
        log.error("Stationsync could not start yet: %s", exc)
    else:
        threading.Thread(target=_warm, args=(rt,), name="stationsync-warm", daemon=True).start()
    try:
        yield None
    finally:
        await asyncio.to_thread(shutdown_runtime)


def _warm(rt: Any) -> None:
    """Read the station table before the first visitor asks for it (100,000 rows take seconds)."""
    from pages import _stationdata

    try:
        _stationdata.warm(rt)
    except Exception as exc:  # noqa: BLE001 - a page reports it properly when someone looks
        log.warning("could not pre-load the station table: %s", exc)


def dashboard() -> None:
    """The per-session script: page setup and navigation."""
    st.set_page_config(
        layout="wide",
        page_title="Stationsync",
        page_icon=":material/cell_tower:",
        initial_sidebar_state="expanded",
    )
    pages = [
        st.Page(
            "pages/stations.py", title="Base stations", icon=":material/cell_tower:", default=True
        ),
        st.Page("pages/map.py", title="Map", icon=":material/map:", url_path="map"),
        st.Page(
            "pages/history.py", title="Sync history", icon=":material/history:", url_path="history"
        ),
        st.Page(
            "pages/schedules.py",
            title="Schedules",
            icon=":material/schedule:",
            url_path="schedules",
        ),
    ]
    with st.sidebar:
        st.markdown("### :material/cell_tower: Stationsync")
        st.caption("Tarana base stations, kept in sync with the vendor portal.")
    st.navigation(pages).run()


if __name__ == "__main__":
    dashboard()
else:
    from starlette.routing import Route
    from streamlit.runtime.pages_manager import PagesManager

    from pages import _mapdata

    # A folder named pages/ next to the main script makes Streamlit run its old
    # directory-based navigation until some session has called st.navigation, so
    # the first visitor arriving on a deep link (/history) would get a bare page
    # listing every file. This app always navigates with st.navigation.
    PagesManager.uses_pages_directory = False

    app = st.App(
        "app.py",
        lifespan=lifespan,
        routes=[Route(_mapdata.ROUTE, _mapdata.endpoint, methods=["GET"])],
    )
