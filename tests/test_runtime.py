"""One runtime per process: concurrent first calls build one, and one scheduler runs."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

import pytest

from core import runtime as runtime_module
from core.runtime import Runtime, get_runtime, shutdown_runtime
from core.settings import load_settings
from jobstore import leases


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in [k for k in __import__("os").environ if k.startswith("STATIONSYNC_") and "TEST_" not in k]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("STATIONSYNC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STATIONSYNC_LEASE_S", "2")
    monkeypatch.setenv("STATIONSYNC_HEARTBEAT_S", "0.2")
    return tmp_path


def test_concurrent_first_calls_build_one_runtime(env: Path) -> None:
    built: list[Runtime] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        built.append(get_runtime())

    threads = [threading.Thread(target=call) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(built) == 8 and len({id(rt) for rt in built}) == 1
        rt = built[0]
        assert rt.scheduler.is_leader
        lease = leases.get(rt.db, "scheduler")
        assert lease is not None and lease.holder == rt.holder
        assert rt.simulator is not None and rt.simulator.base_url.startswith("http://127.0.0.1:")
        assert [s.job_id for s in rt.scheduler.schedules()] == ["tarana-sync:cron:0"]
        # A reload of the module (an edit under a running server) keeps it.
        importlib.reload(runtime_module)
        assert runtime_module.get_runtime() is rt
    finally:
        shutdown_runtime()
    assert runtime_module.current_runtime() is None


def test_a_second_runtime_on_the_same_database_only_works(env: Path) -> None:
    first = Runtime(load_settings()).start()
    second = Runtime(load_settings()).start()
    try:
        assert first.scheduler.is_leader
        assert not second.scheduler.is_leader
        first.stop()  # gives the lease up on a clean stop
        second.scheduler.tick()
        assert second.scheduler.is_leader
    finally:
        first.stop()
        second.stop()


def test_a_bad_setting_stops_start_up(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import SettingsError

    monkeypatch.setenv("STATIONSYNC_WORKERS", "0")
    with pytest.raises(SettingsError, match="STATIONSYNC_WORKERS"):
        get_runtime()
    assert runtime_module.current_runtime() is None
