"""AppTest harness: each test gets its own data folder, settings and runtime (scheduler off).

``dash(env)`` sets ``STATIONSYNC_*`` for the test, and returns a ``Dash`` that
runs ``app.py`` through Streamlit's AppTest and can open any page. The
process-wide runtime is shut down before and after every test so that no
test sees another's database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from core.runtime import Runtime, get_runtime, shutdown_runtime

ROOT = Path(__file__).resolve().parents[2]
PAGES = {
    "stations": "pages/stations.py",
    "map": "pages/map.py",
    "history": "pages/history.py",
    "schedules": "pages/schedules.py",
}


class Dash:
    """One simulated browser session of the dashboard."""

    def __init__(self) -> None:
        self.at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)

    def open(self, page: str = "stations", **query: str) -> AppTest:
        for key, value in query.items():
            self.at.query_params[key] = value
        self.at.run()
        if page != "stations":
            self.at.switch_page(PAGES[page])
            self.at.run()
        assert not self.at.exception, [e.value for e in self.at.exception]
        return self.at

    @property
    def rt(self) -> Runtime:
        return get_runtime()

    def texts(self) -> str:
        """Every piece of text on the page, for loose assertions."""
        at = self.at
        parts: list[str] = []
        for kind in (
            "markdown",
            "caption",
            "info",
            "success",
            "warning",
            "error",
            "subheader",
            "title",
        ):
            parts += [str(e.value) for e in getattr(at, kind)]
        parts += [f"{m.label}: {m.value}" for m in at.metric]
        return "\n".join(parts)

    def wait_run(
        self, run_id: str, timeout_s: float = 60, until: Callable[[Any], bool] | None = None
    ) -> Any:
        """Wait for a run to finish (or reach ``until``), re-reading the database."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.rt.engine.get_run(run_id)
            if until(run) if until else run.status.finished:
                return run
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not get there in {timeout_s} s")


@pytest.fixture
def dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Dash]]:
    """``dash(**settings)``: a session on a fresh database with these STATIONSYNC_ settings."""
    shutdown_runtime()

    def make(**settings: str) -> Dash:
        base = {
            "DATA_DIR": str(tmp_path / "data"),
            "SCHEDULER": "false",
            "WORKERS": "2",
            "POLL_INTERVAL_S": "0.05",
            "UI_POLL_ACTIVE_S": "0.2",
            "UI_POLL_IDLE_S": "1",
            "SIMULATOR_STATIONS": "300",
            "TARANA_BACKOFF_MAX_S": "0.01",
        }
        base.update(settings)
        for name, value in base.items():
            monkeypatch.setenv(f"STATIONSYNC_{name.upper()}", value)
        return Dash()

    yield make
    shutdown_runtime()


def sync_and_wait(d: Dash, **options: Any) -> Any:
    """Start a sync as another user would (the command, not the page) and wait for it."""
    from core.sync import commands

    req = commands.request_sync(d.rt.engine, by="someone else", **options)
    assert req.started, req.message
    return d.wait_run(req.run_id)
