"""The real dashboard in Chromium: Sync Now with live progress, refusal, CSV, map, history, failure.

The tests of the ``synced_app`` module fixture run in file order: the first one
fills the database through the page, the later ones read what it left.
"""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path
from typing import Any

import pytest

from jobstore.db import Database
from jobstore.stations import StationFilter, query_stations
from tests.e2e.conftest import copy_log, start_app
from tests.e2e.harness import AppServer, deck_pixels

pytestmark = [pytest.mark.browser]

COUNT = re.compile(r"([\d,]+) of ([\d,]+) base stations")


def db_of(app: AppServer) -> Database:
    return Database(f"sqlite:///{app.data_dir / 'stationsync.db'}")


def shown_count(page: Any) -> tuple[int, int]:
    text = page.get_by_text(COUNT).first.inner_text()
    m = COUNT.search(text)
    assert m, text
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def wait_pixels(page: Any, minimum: int = 1000, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        seen = deck_pixels(page)
        if seen >= minimum:
            return seen
        page.wait_for_timeout(200)
    raise AssertionError(f"the map drew only {seen} non-background pixels")


@pytest.mark.slow
def test_sync_now_shows_each_step_and_fills_the_table(
    synced_app: AppServer, browser_context: Any
) -> None:
    stale = browser_context.new_page()  # opened before the run: its button still looks enabled
    page = browser_context.new_page()
    try:
        stale.goto(synced_app.url + "/")
        stale.get_by_role("button", name="Sync Now").wait_for()
        page.goto(synced_app.url + "/")
        page.get_by_text("No base stations yet").wait_for()
        page.get_by_role("button", name="Sync Now").click()

        running = page.get_by_role("button", name="Sync running…")
        running.wait_for()
        assert running.is_disabled()

        # A second press, from the page that has not noticed the run yet, is refused.
        stale.get_by_role("button", name="Sync Now").click()
        stale.get_by_text("so no second one was started").wait_for()

        steps: set[str] = set()
        progress: list[str] = []
        deadline = time.monotonic() + 120
        live = page.locator(".st-key-sync_live")
        while time.monotonic() < deadline:
            if page.get_by_text("Sync completed").count():
                break
            text = live.inner_text() if live.count() else ""
            steps |= set(
                re.findall(
                    r"\b(begin|fetch-[a-z]+-\d{4}|validate|compute|diff|write-batch-\d{4}|finish)\b",
                    text,
                )
            )
            progress += re.findall(
                r"(fetching [A-Za-z]+: page \d+[^\n]*|writing batch \d+/\d+)", text
            )
            page.wait_for_timeout(150)
        page.get_by_text("Sync completed").wait_for()
        assert any(s.startswith("fetch-") for s in steps), steps
        assert len(steps) >= 2, steps
        assert progress, "no step reported its progress"

        shown, total = shown_count(page)
        stored = len(query_stations(db_of(synced_app)))
        assert shown == total == stored > 0
        assert page.get_by_role("button", name="Sync Now").is_enabled()
        page.get_by_role("button", name="Dismiss").click()
        page.get_by_text(re.compile(r"Last sync: (just now|1 minute ago)")).wait_for()
    finally:
        stale.close()
        page.close()
        copy_log(synced_app, "e2e-synced-app.log")


def test_csv_download_equals_the_filtered_rows(
    synced_app: AppServer, page: Any, tmp_path: Path
) -> None:
    page.goto(synced_app.url + "/")
    search = page.get_by_placeholder("Site, hostname or serial")
    search.fill("main road")
    search.press("Enter")
    page.wait_for_function(
        "() => /of [\\d,]+ base stations match/.test(document.body.innerText)", timeout=15_000
    )
    shown, _ = shown_count(page)
    with page.expect_download() as got:
        page.get_by_role("button", name="Export CSV").click()
    path = tmp_path / "export.csv"
    got.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    expected = query_stations(db_of(synced_app), StationFilter(search="main road"))
    assert len(rows) == shown == len(expected) > 0
    assert sorted(r["serial_number"] for r in rows) == sorted(expected["serial_number"])
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), row
            if value.startswith("-"):
                float(value)  # only numbers may start with a minus


def test_map_draws_points_and_focuses_a_station(synced_app: AppServer, page: Any) -> None:
    page.goto(synced_app.url + "/map")
    page.locator('[data-testid="stDeckGlJsonChart"]').first.wait_for()
    assert wait_pixels(page) > 1000
    page.get_by_text("Online").first.wait_for()

    # From the table: select a row, follow its link, land on the map focused on that station.
    page.goto(synced_app.url + "/")
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.wait_for()
    page.wait_for_timeout(500)
    box = grid.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection box
    link = page.get_by_role("link", name=re.compile(r"^Show .+ on the map$"))
    link.wait_for()
    serial = re.search(r"\((\w+)\) on the map", link.inner_text()).group(1)  # type: ignore[union-attr]
    link.click()
    page.get_by_text(f"serial {serial}").first.wait_for()
    assert "station=" + serial in page.url
    assert wait_pixels(page, minimum=50) >= 50


def test_history_shows_the_run_and_its_steps(synced_app: AppServer, page: Any) -> None:
    from core.engine import Engine, Registry

    runs = Engine(db_of(synced_app), Registry()).list_runs(function_id="tarana-sync")
    assert len(runs) == 1  # the refused second press started nothing
    run = runs[0]
    page.goto(synced_app.url + "/history")
    page.get_by_text(f"Run {run.id[:8]}").first.wait_for()
    page.get_by_role("tab", name="Steps").wait_for()
    page.get_by_text("Sync duration").wait_for()
    page.locator('[data-testid="stVegaLiteChart"]').nth(2).wait_for()  # durations, counts, timeline
    page.get_by_role("tab", name=re.compile("Skipped records")).click()
    page.locator('[role="tabpanel"]:not([hidden]) [data-testid="stDataFrame"]').first.wait_for()


@pytest.mark.slow
def test_a_failing_portal_shows_the_error(tmp_path: Path, page: Any) -> None:
    app = start_app(
        tmp_path, simulator_faults="error_rate=1.0", tarana_retries="0", simulator_stations="100"
    )
    try:
        page.goto(app.url + "/")
        page.get_by_role("button", name="Sync Now").click()
        failed = page.get_by_text(re.compile(r"Sync failed after"))
        failed.wait_for(timeout=90_000)
        message = failed.first.inner_text()
        assert re.search(r"Tarana|portal|50[023]|error", message, re.IGNORECASE), message
        page.goto(app.url + "/history")
        page.get_by_text(re.compile("Failed")).first.wait_for()
    finally:
        app.stop()
        copy_log(app, "e2e-failing-app.log")
