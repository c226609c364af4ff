"""Browser-test fixtures: the real app on a temporary database with its simulator, and Chromium.

Without Chromium or Playwright these tests are skipped locally and fail under
CI (``CI=true``), like the PostgreSQL tests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import CHROMIUM, ROOT, AppServer, chromium

ARTIFACTS = ROOT / "artifacts"


def _need_browser() -> None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing = "playwright is not installed"
    else:
        missing = "" if Path(CHROMIUM).exists() else f"{CHROMIUM} is missing"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI: {missing}")
        pytest.skip(missing)


@pytest.fixture(scope="session")
def browser_context() -> Iterator[Any]:
    _need_browser()
    with chromium() as context:
        yield context


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    page = browser_context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        page.close()


def start_app(tmp: Path, **settings: str) -> AppServer:
    env = {f"STATIONSYNC_{k.upper()}": v for k, v in settings.items()}
    return AppServer(tmp, env).start()


@pytest.fixture(scope="module")
def synced_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """An app whose sync lasts a few seconds (simulated portal latency); polls slowly when
    idle so that a second, stale page can still press Sync Now during a run."""
    _need_browser()
    app = start_app(
        tmp_path_factory.mktemp("synced"),
        simulator_stations="400",
        simulator_faults="latency_ms=250",
        ui_poll_idle_s="60",
        ui_poll_active_s="0.5",
    )
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def copy_log(app: AppServer, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(app.log_path, ARTIFACTS / name)
