"""``streamlit run app.py`` starts the runtime with the process, once, and SIGTERM stops it cleanly."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from jobstore import leases
from jobstore.db import Database
from tests.e2e.conftest import copy_log, start_app

pytestmark = [pytest.mark.browser]


def wait_log(app: Any, pattern: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = app.log_path.read_text(errors="replace")
        if re.search(pattern, text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} never appeared in the log:\n{app.log()}")


def test_runtime_lives_with_the_process(tmp_path: Path, browser_context: Any) -> None:
    app = start_app(tmp_path, simulator_stations="50", scheduler="true")
    try:
        # Started before anyone opened a page: the schedule fires even if nobody looks.
        log = wait_log(app, r"runtime \S+ started")
        holder = re.search(r"runtime (\S+) started", log).group(1)  # type: ignore[union-attr]
        wait_log(app, r"now runs the scheduler")
        db = Database(f"sqlite:///{tmp_path / 'stationsync.db'}")
        lease = leases.get(db, "scheduler")
        assert lease is not None and lease.holder == holder

        # Concurrent sessions and reloads share that one runtime and its one scheduler.
        pages = [browser_context.new_page() for _ in range(3)]
        for p in pages:
            p.goto(app.url + "/schedules")
        for p in pages:
            p.get_by_text("this dashboard's process").first.wait_for()
            p.reload()
            p.get_by_text("this dashboard's process").first.wait_for()
        for p in pages:
            p.close()
        text = app.log_path.read_text(errors="replace")
        assert len(re.findall(r"runtime \S+ started", text)) == 1
        assert len(re.findall(r"now runs the scheduler", text)) == 1

        assert app.proc is not None
        app.proc.send_signal(signal.SIGTERM)
        code = app.proc.wait(30)
        text = app.log_path.read_text(errors="replace")
        assert f"runtime {holder} stopped" in text
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert code in (0, -signal.SIGTERM), text[-2000:]
        released = leases.get(db, "scheduler")
        assert released is not None and released.expires_at <= time.time()  # handed over at once
        db.dispose()
    finally:
        app.stop()
        copy_log(app, "e2e-lifecycle-app.log")
