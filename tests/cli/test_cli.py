"""The command line, run as operators run it: a real process per command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(data_dir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONSYNC_")}
    full_env.update({"STATIONSYNC_DATA_DIR": str(data_dir), "STATIONSYNC_SCHEDULER": "false"})
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def test_settings_lists_every_variable(tmp_path: Path) -> None:
    out = cli(tmp_path, "settings")
    assert out.returncode == 0
    assert "`STATIONSYNC_WORKERS`" in out.stdout and "`STATIONSYNC_TIMEZONE`" in out.stdout


def test_a_bad_setting_stops_with_one_clear_line(tmp_path: Path) -> None:
    out = cli(tmp_path, "db", "upgrade", env={"STATIONSYNC_TIMEZONE": "Mars/Base"})
    assert out.returncode == 2
    assert "STATIONSYNC_TIMEZONE" in out.stderr and "IANA" in out.stderr
    assert "Traceback" not in out.stderr


def test_unreachable_database_is_a_clear_error_without_its_password(tmp_path: Path) -> None:
    url = "postgresql://ops:topsecret99@127.0.0.1:9/stations"
    out = cli(tmp_path, "db", "upgrade", env={"STATIONSYNC_DATABASE_URL": url})
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "topsecret99" not in out.stderr + out.stdout
    assert "127.0.0.1:9" in out.stderr


@pytest.mark.slow
def test_sync_then_inspect_runs_and_events(tmp_path: Path) -> None:
    out = cli(tmp_path, "db", "upgrade")
    assert out.returncode == 0 and "schema at revision" in out.stdout

    out = cli(tmp_path, "sync", "--dry-run")
    assert out.returncode == 0, out.stderr
    for step in ("fetch-bn-0000", "validate", "diff", "finish"):
        assert step in out.stdout
    assert "completed" in out.stdout

    out = cli(tmp_path, "sync")
    assert out.returncode == 0, out.stderr
    assert "write-batch-0001" in out.stdout

    out = cli(tmp_path, "runs", "--function", "tarana-sync")
    assert out.returncode == 0
    lines = [ln for ln in out.stdout.splitlines()[1:] if "tarana-sync" in ln]
    assert len(lines) == 2 and all("completed" in ln and "manual" in ln for ln in lines)
    run_id = lines[0].split()[0]

    out = cli(tmp_path, "run", run_id)
    assert out.returncode == 0 and "write-batch-0001" in out.stdout

    out = cli(tmp_path, "sync-status")
    assert out.returncode == 0
    logs = [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert logs and logs[0]["status"] in {"completed", "completed_with_warnings"}

    out = cli(tmp_path, "send", "demo/ping", "--data", '{"x": 1}', "--key", "k-1")
    assert out.returncode == 0 and json.loads(out.stdout)["duplicate"] is False
    out = cli(tmp_path, "send", "demo/ping", "--key", "k-1")
    assert json.loads(out.stdout)["duplicate"] is True

    out = cli(tmp_path, "send", "demo/ping", "--data", "{not json")
    assert out.returncode == 2 and "not valid JSON" in out.stderr

    out = cli(tmp_path, "cancel", run_id)
    assert out.returncode == 1 and "already finished" in out.stdout

    out = cli(tmp_path, "schedules", "set", "tarana-sync:cron:0", "0 1 * * 1")
    assert out.returncode == 0 and "0 1 * * 1" in out.stdout
    out = cli(tmp_path, "schedules", "set", "tarana-sync:cron:0", "0 25 * * *")
    assert out.returncode == 2 and "not valid" in out.stderr


def test_simulator_command_takes_its_own_options(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "simulator", "--stations", "5", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "5 BNs" in first
        url = proc.stdout.readline()
        assert "http://127.0.0.1:" in url
    finally:
        proc.terminate()
        proc.wait(10)
