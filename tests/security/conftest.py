"""Fixtures for the security tests: a clean environment, the app's runtime, pages under AppTest.

``app_env`` empties every ``STATIONSYNC_*`` variable and points the data folder
at a temporary one, with the scheduler off. ``app_runtime`` starts the app's
own ``Runtime`` from those settings (workers off, so runs stay where a test
puts them) and installs it as the process's runtime, which is what every page
reaches through ``pages._ui``. ``render`` runs one page under Streamlit's
AppTest as a given user; ``page_text`` is everything a rendered page holds;
``route_body`` is what the browser gets from the map's data route.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from streamlit.testing.v1 import AppTest

import core.runtime
from core.runtime import Runtime
from core.settings import PREFIX, load_settings
from pages import _mapdata

ROOT = Path(__file__).resolve().parents[2]
ANONYMOUS: dict[str, Any] = {"is_logged_in": False}


def clean_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any Stationsync setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(PREFIX) or k.startswith(PREFIX + "TEST_")
    }
    env.update(extra or {})
    return env


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """Undo what the runtime's logging set-up does to the root logger."""
    root = logging.getLogger()
    level = root.level
    handlers = list(root.handlers)
    filters = {h: list(h.filters) for h in handlers}
    named = {
        n: logging.getLogger(n).level for n in ("httpx", "httpcore", "alembic.runtime.plugins")
    }
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler, kept in filters.items():
        handler.filters[:] = kept
    root.setLevel(level)
    for name, lvl in named.items():
        logging.getLogger(name).setLevel(lvl)


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., None]:
    """Settings for the app in this process: none inherited, a private data folder."""
    for key in list(os.environ):
        if key.startswith(PREFIX) and not key.startswith(PREFIX + "TEST_"):
            monkeypatch.delenv(key)
    base = {
        "DATA_DIR": str(tmp_path / "data"),
        "SCHEDULER": "false",
        "SIMULATOR_STATIONS": "3",
        "UI_POLL_IDLE_S": "3600",
    }

    def set_env(**values: str) -> None:
        for name, value in {**base, **values}.items():
            monkeypatch.setenv(PREFIX + name, value)

    set_env()
    return set_env


@pytest.fixture
def app_runtime(
    app_env: Callable[..., None], monkeypatch: pytest.MonkeyPatch, keep_logging: None
) -> Iterator[Callable[..., Runtime]]:
    """Start the app's runtime from the environment and make it the process's runtime."""
    started: list[Runtime] = []

    def start(**env: str) -> Runtime:
        app_env(**env)
        rt = Runtime(load_settings(), workers=False, scheduler=False).start()
        started.append(rt)
        core.runtime.install_runtime(rt)
        return rt

    yield start
    core.runtime.install_runtime(None)
    for rt in started:
        rt.stop()


def render(
    page: str,
    user: dict[str, Any] | None = None,
    query: dict[str, str] | None = None,
) -> AppTest:
    """Run the app on one page (``pages/<page>``) as ``user``; fails on any uncaught exception.

    The app's own entry script runs, so the navigation (and page links) are real.
    """
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.user = dict(ANONYMOUS if user is None else user)
    at.switch_page(f"pages/{page}")
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_text(at: AppTest) -> str:
    """Every element of a rendered page as text, table contents included."""
    parts: list[str] = []
    for node in at._tree:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        if getattr(node, "type", "") == "dataframe":
            try:
                parts.append(node.value.to_csv())
            except Exception as exc:  # noqa: BLE001 - the proto text is kept either way
                parts.append(f"<unreadable table: {exc}>")
    parts.append(repr(at.session_state.to_dict()))
    return "\n".join(parts)


def messages(at: AppTest) -> list[str]:
    """The text of every alert box on the page (error, warning, info, success)."""
    return [str(e.value) for kind in ("error", "warning", "info", "success") for e in at.get(kind)]


def route_body(query: str) -> str:
    """What the browser gets from the map's data route for a query string."""
    scope = {
        "type": "http", "method": "GET", "path": _mapdata.ROUTE, "query_string": query.encode(),
        "headers": [], "scheme": "http", "server": ("127.0.0.1", 8501),
    }  # fmt: skip
    response = _mapdata.endpoint(Request(scope))
    return bytes(response.body).decode("utf-8", "replace")
