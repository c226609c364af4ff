"""The simulator as a separate process, driven only over HTTP, stopped by SIGTERM."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from core.settings import Secret
from core.tarana.client import TaranaClient

ROOT = Path(__file__).resolve().parents[2]


def start(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.tarana.simulator", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in out], daemon=True).start()
    info: dict[str, str] = {}
    while "operator_id" not in info:
        key, _, value = lines.get(timeout=30).partition(": ")
        info[key] = value.strip()
    return proc, info


def test_subprocess_serves_takes_faults_over_http_and_stops_on_sigterm() -> None:
    proc, info = start("--stations", "50", "--seed", "3", "--rns-per-bn", "1", "--port", "0")
    try:
        url = info["base_url"]
        assert url.startswith("http://127.0.0.1:") and info["username"]
        health = httpx.get(url + "/__sim/health").json()["data"]
        assert health["operatorId"] == info["operator_id"]
        password = Secret(info["password"])
        with TaranaClient(url, info["username"], password, operator_id=info["operator_id"],
                          sleep=lambda s: None, retries=20) as client:  # fmt: skip
            assert len(client.fetch_devices("BN").items) == 50
            assert len(client.fetch_devices("RN").items) == 50
            answer = httpx.post(url + "/__sim/faults", json={"error_rate": 0.5})
            assert answer.status_code == 200
            report = client.fetch_devices("BN")
            assert len(report.items) == 50 and report.retries > 0
            added = httpx.post(url + "/__sim/mutate", json={"add": 3}).json()["data"]["added"]
            httpx.post(url + "/__sim/faults", json={})
            got = {r["serialNumber"] for r in client.fetch_devices("BN").items}
            assert set(added) <= got and len(got) == 53
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_bad_fault_text_is_a_usage_error_naming_the_knob() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "core.tarana.simulator", "--faults", "eror_rate=0.1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "eror_rate" in done.stderr
