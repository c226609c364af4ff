"""Real processes: killed mid-run, resumed by the next one; frozen, and overtaken.

Each test drives ``tests/engine/worker_proc.py`` in child processes on the test
database. Its steps append to a counter file, so the test can tell which
process ran which step and that no finished step ran twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.clock import SystemClock
from core.engine import Engine, Registry, RunStatus
from jobstore.db import Database
from tests.engine.worker_proc import STEPS, counter_function

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Procs:
    """Starts worker processes and makes sure none outlives the test."""

    def __init__(self, db_url: str, directory: Path) -> None:
        self.db_url = db_url
        self.dir = directory
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *options: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.engine.worker_proc",
                "steps",
                self.db_url,
                str(self.dir),
                *options,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        return proc

    def wait_blocked(self, proc: subprocess.Popen[str], timeout: float = 30) -> None:
        marker = self.dir / f"blocked-{proc.pid}"
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"worker exited early: {proc.communicate()}")
            assert time.monotonic() < deadline, "worker never reached the blocking step"
            time.sleep(0.02)

    def finish(self, proc: subprocess.Popen[str], timeout: float = 60) -> str:
        _, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err
        return err

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def procs(db_url: str, db: Database, tmp_path: Path) -> Iterator[Procs]:
    p = Procs(db_url, tmp_path)
    try:
        yield p
    finally:
        p.cleanup()


def counter_lines(directory: Path) -> list[tuple[str, str]]:
    text = (directory / "counter.txt").read_text()
    return [(line.split()[0], line.split()[1]) for line in text.splitlines()]


def start_run(db: Database, directory: Path) -> tuple[Engine, str]:
    registry = Registry()
    registry.add(counter_function(directory))
    engine = Engine(db, registry, clock=SystemClock(), lease_s=1.0)
    run_id = engine.send("count").run_id
    assert run_id is not None
    return engine, run_id


def test_a_killed_worker_is_taken_over_and_resumes_after_its_last_step(
    db: Database, procs: Procs, tmp_path: Path
) -> None:
    engine, run_id = start_run(db, tmp_path)
    first = procs.start("--block-at", "4")
    procs.wait_blocked(first)
    done = [s.name for s in engine.run_detail(run_id).steps if s.status.value == "completed"]
    assert done == ["step-1", "step-2", "step-3"]
    assert engine.get_run(run_id).status == RunStatus.RUNNING
    os.kill(first.pid, signal.SIGKILL)
    first.wait()

    second = procs.start()
    procs.finish(second)
    run = engine.get_run(run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.crash_count == 1
    lines = counter_lines(tmp_path)
    assert Counter(step for step, _ in lines) == {f"step-{i}": 1 for i in range(1, STEPS + 1)}
    assert [who for _, who in lines] == [f"pid-{first.pid}"] * 3 + [f"pid-{second.pid}"] * 3


def test_a_run_whose_workers_keep_dying_ends_dead_and_the_next_run_starts(
    db: Database, procs: Procs, tmp_path: Path
) -> None:
    engine, run_id = start_run(db, tmp_path)
    for _ in range(2):
        proc = procs.start("--block-at", "2", "--max-crashes", "2")
        procs.wait_blocked(proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    last = procs.start("--block-at", "2", "--max-crashes", "2")
    procs.finish(last)
    run = engine.get_run(run_id)
    assert run.status == RunStatus.DEAD
    assert run.error is not None and "stopped renewing the lease 2 time(s)" in run.error
    assert "after step 'step-1'" in run.error
    assert Counter(step for step, _ in counter_lines(tmp_path)) == {"step-1": 1}
    nxt = engine.send("count")
    assert len(nxt.started) == 1 and nxt.run_id != run_id


def test_a_frozen_worker_loses_its_lease_and_its_late_checkpoint_is_refused(
    db: Database, procs: Procs, tmp_path: Path
) -> None:
    engine, run_id = start_run(db, tmp_path)
    # No heartbeat in the frozen worker: its lease runs out one second after
    # the claim, while its step 3 still sleeps.
    frozen = procs.start("--slow-at", "3", "--slow-s", "2.5", "--heartbeat-s", "3600")
    procs.wait_blocked(frozen)
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        while engine.run_once() is None:
            assert time.monotonic() < deadline, "the expired lease was never taken over"
            time.sleep(0.05)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    err = procs.finish(frozen)
    assert "lease lost" in err

    run = engine.get_run(run_id)
    assert (run.status, run.crash_count) == (RunStatus.COMPLETED, 1)
    me = f"pid-{os.getpid()}"
    results = {s.name: s.result for s in engine.run_detail(run_id).steps}
    assert results["step-3"] == f"step-3 by {me}"
    assert all(results[f"step-{i}"] == f"step-{i} by {me}" for i in range(3, STEPS + 1))
    lines = counter_lines(tmp_path)
    # The frozen worker did finish step 3's body (a side effect no lease can
    # stop), but it stored nothing and went no further.
    assert [who for step, who in lines if who != me] == [f"pid-{frozen.pid}"] * 3
    assert [step for step, who in lines if who != me] == ["step-1", "step-2", "step-3"]
    assert [step for step, who in lines if who == me] == [f"step-{i}" for i in range(3, STEPS + 1)]
