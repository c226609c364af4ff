"""Start the real dashboard (``streamlit run app.py``) on a free port, and a headless Chromium.

Used by the browser tests and by ``bench/dashboard_render.py``. The app runs
with stdin closed, no file watcher and its own temporary data folder, and is
stopped through its own process handle (terminate, wait, kill).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STATIONSYNC_") or k.startswith("STATIONSYNC_TEST_")
    }
    env.update(
        {
            "STREAMLIT_SERVER_HEADLESS": "true",
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
            "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",
            "STATIONSYNC_DATA_DIR": str(data_dir),
            "STATIONSYNC_UI_POLL_ACTIVE_S": "0.5",
            "STATIONSYNC_UI_POLL_IDLE_S": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


class AppServer:
    """One dashboard process; ``url`` is where it answers."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "app.log"
        self.env = app_env(data_dir, env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> AppServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py",
             "--server.port", str(self.port), "--server.address", "127.0.0.1"],
            cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the app did not answer within {timeout_s:g} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        code = self.proc.returncode
        self.proc = None
        return code


@contextmanager
def running_app(data_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[AppServer]:
    server = AppServer(data_dir, env).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def chromium(**context_options: Any) -> Iterator[Any]:
    """A browser context (downloads accepted) in headless Debian Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            options = {"viewport": {"width": 1500, "height": 1000}, "accept_downloads": True}
            options.update(context_options)
            context = browser.new_context(**options)
            try:
                yield context
            finally:
                context.close()
        finally:
            browser.close()


def seed_stations(
    data_dir: Path, stations: int, env: Mapping[str, str] | None = None, timeout_s: float = 600
) -> None:
    """Fill the database with a real sync against the built-in simulator (the sync CLI)."""
    extra = {"STATIONSYNC_SIMULATOR_STATIONS": str(stations), "STATIONSYNC_SCHEDULER": "false"}
    extra.update(env or {})
    subprocess.run(
        [sys.executable, "-m", "core", "sync"],
        cwd=ROOT, env=app_env(data_dir, extra), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True, timeout=timeout_s,
    )  # fmt: skip


def deck_pixels(page: Any, path: Path | None = None) -> int:
    """Non-background pixels in a screenshot of the pydeck chart."""
    from io import BytesIO

    import numpy as np
    from PIL import Image

    shot = page.locator('[data-testid="stDeckGlJsonChart"]').first.screenshot(
        path=str(path) if path else None
    )
    img = np.asarray(Image.open(BytesIO(shot)).convert("RGB"), dtype=np.int16)
    background = img[2, 2]
    return int((np.abs(img - background).sum(axis=2) > 60).sum())
