"""Every page at 100,000 stations: screenshots saved under ./artifacts/ and render times recorded.

The database is filled by a real sync against the simulator (the sync CLI),
then each page is opened in a fresh tab. The time limits here are loose
guards against a regression of the wrong order; the figures themselves come
from ``bench/dashboard_render.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS, copy_log, start_app
from tests.e2e.harness import deck_pixels, seed_stations

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STATIONS = 100_000


def test_pages_at_100k_stations(tmp_path: Path, browser_context: Any) -> None:
    started = time.perf_counter()
    seed_stations(tmp_path, STATIONS, timeout_s=900)
    seed_s = time.perf_counter() - started
    app = start_app(tmp_path, simulator_stations=str(STATIONS), scheduler="false")
    ARTIFACTS.mkdir(exist_ok=True)
    timings: dict[str, Any] = {"stations": STATIONS, "seed_s": round(seed_s, 1)}
    try:

        def new_page() -> Any:
            # The session's browser: two Playwright instances cannot run in one thread.
            p = browser_context.new_page()
            p.set_viewport_size({"width": 1500, "height": 1400})
            p.set_default_timeout(60_000)
            return p

        page = new_page()
        t0 = time.perf_counter()
        page.goto(app.url + "/")
        page.locator('[data-testid="stDataFrame"]').first.wait_for()
        page.get_by_text("base stations", exact=False).first.wait_for()
        timings["table_s"] = round(time.perf_counter() - t0, 2)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "stations-100k.png"))
        page.close()

        page = new_page()
        t0 = time.perf_counter()
        page.goto(app.url + "/map")
        page.locator('[data-testid="stDeckGlJsonChart"]').first.wait_for()
        while deck_pixels(page) < 1000:
            assert time.perf_counter() - t0 < 60, "the map never drew"
        timings["map_s"] = round(time.perf_counter() - t0, 2)
        page.screenshot(path=str(ARTIFACTS / "map-100k.png"))
        page.close()

        for name, path, ready in (
            ("history", "/history", '[data-testid="stVegaLiteChart"]'),
            ("schedules", "/schedules", '[data-testid="stDataFrame"]'),
        ):
            page = new_page()
            page.goto(app.url + path)
            page.locator(ready).first.wait_for()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ARTIFACTS / f"{name}-100k.png"))
            page.close()
        (ARTIFACTS / "render-100k.json").write_text(json.dumps(timings) + "\n")
        assert timings["table_s"] < 15, timings
        assert timings["map_s"] < 30, timings
    finally:
        app.stop()
        copy_log(app, "e2e-100k-app.log")
