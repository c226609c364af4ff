"""How long the dashboard takes to show the station table and to draw the map, in Chromium.

Seeds a fresh database with a real sync against the built-in simulator
(``STATIONSYNC_SIMULATOR_STATIONS=N``, through the sync CLI), starts the app
with ``streamlit run app.py``, and times, in a fresh browser page each, from
navigation to the table being visible and from navigation to the map having
drawn its points (non-background pixels in the deck canvas). Prints one JSON
line: ``{"stations": N, "table_s": ..., "map_s": ...}`` (the best of
``--repeat`` views, after one warm-up view of each page; the cold first views
are reported too), plus the same at ``--baseline`` stations in the same run and
the ratios to it, so machines of different speed can be compared. ``--url``
measures an app that is already running instead.

    python bench/dashboard_render.py --stations 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import chromium, deck_pixels, running_app, seed_stations

TABLE = '[data-testid="stDataFrame"]'
DECK = '[data-testid="stDeckGlJsonChart"]'


def time_table(context: Any, url: str, timeout_s: float = 120) -> float:
    page = context.new_page()
    try:
        start = time.perf_counter()
        page.goto(url + "/", wait_until="commit")
        page.locator(TABLE).first.wait_for(state="visible", timeout=timeout_s * 1000)
        page.get_by_text("base stations", exact=False).first.wait_for(timeout=timeout_s * 1000)
        return time.perf_counter() - start
    finally:
        page.close()


def time_map(context: Any, url: str, timeout_s: float = 120, min_pixels: int = 500) -> float:
    page = context.new_page()
    try:
        start = time.perf_counter()
        page.goto(url + "/map", wait_until="commit")
        page.locator(DECK).first.wait_for(state="visible", timeout=timeout_s * 1000)
        deadline = start + timeout_s
        while time.perf_counter() < deadline:
            if deck_pixels(page) >= min_pixels:
                return time.perf_counter() - start
            page.wait_for_timeout(50)
        raise TimeoutError("the map drew no points")
    finally:
        page.close()


def measure(url: str, repeat: int) -> dict[str, float]:
    with chromium() as context:
        cold_table = time_table(context, url)
        cold_map = time_map(context, url)
        tables = [time_table(context, url) for _ in range(repeat)]
        maps = [time_map(context, url) for _ in range(repeat)]
    return {
        "table_s": round(min(tables), 3),
        "map_s": round(min(maps), 3),
        "table_cold_s": round(cold_table, 3),
        "map_cold_s": round(cold_map, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=int, default=1_000, help="baseline stations (0: none)")
    parser.add_argument("--url", help="measure this running app instead of starting one")
    args = parser.parse_args(argv)
    if args.url:
        result = measure(args.url.rstrip("/"), args.repeat)
        print(json.dumps({"stations": args.stations, **result}))
        return 0
    result, seed_s = run_at(args.stations, args.repeat)
    line: dict[str, Any] = {"stations": args.stations, **result, "seed_s": round(seed_s, 1)}
    if args.baseline:
        base, _ = run_at(args.baseline, args.repeat)
        line["baseline"] = {
            "stations": args.baseline,
            "table_s": base["table_s"],
            "map_s": base["map_s"],
        }
        line["table_ratio"] = round(result["table_s"] / base["table_s"], 2)
        line["map_ratio"] = round(result["map_s"] / base["map_s"], 2)
    print(json.dumps(line))
    return 0


def run_at(stations: int, repeat: int) -> tuple[dict[str, float], float]:
    """Seed a fresh database with ``stations``, start the app on it, measure."""
    with tempfile.TemporaryDirectory(prefix="stationsync-bench-") as tmp:
        data = Path(tmp)
        started = time.perf_counter()
        seed_stations(data, stations)
        seed_s = time.perf_counter() - started
        env = {
            "STATIONSYNC_SIMULATOR_STATIONS": str(stations),
            "STATIONSYNC_SCHEDULER": "false",
        }
        with running_app(data, env) as app:
            return measure(app.url, repeat), seed_s


if __name__ == "__main__":
    raise SystemExit(main())
