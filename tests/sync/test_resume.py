"""A sync process killed (SIGKILL) mid-write is finished by the next process.

The first process syncs into a SQLite file; the test watches the steps table
from inside a write transaction, so that when it sees a few write batches
checkpointed the first process cannot commit anything more before the kill.
A second process takes the run over once its lease expires and finishes it.
Nothing is lost, nothing is duplicated, and no finished batch runs twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.engine import Engine, Registry, RunStatus
from jobstore import synclogs
from jobstore.db import Database
from jobstore.tables import steps
from tests.sync.conftest import MakeSim
from tests.sync.harness import FIELDS, reference, stored

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def start(cfg: dict[str, object], directory: Path) -> subprocess.Popen[str]:
    path = directory / f"sync-proc-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sync.sync_proc", str(path)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_a_killed_sync_is_resumed_without_loss_or_duplicates(
    sqlite_url: str, sqlite_db: Database, make_sim: MakeSim, tmp_path: Path
) -> None:
    sim = make_sim(900)
    cfg = {
        "db_url": sqlite_url, "base_url": sim.base_url, "username": sim.username,
        "password": sim.password, "operator_id": sim.operator_id, "write_batch": 20,
        "pages": 10, "lease_s": 1.0, "request": True,
    }  # fmt: skip
    db = sqlite_db
    first = start(cfg, tmp_path)
    batches_done = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # checked inside a write transaction: the worker cannot commit meanwhile
            with db.write() as conn:
                batches_done = conn.execute(
                    sa.select(sa.func.count()).where(
                        steps.c.name.like("write-batch-%"), steps.c.status == "completed"
                    )
                ).scalar_one()
                if batches_done >= 3:
                    os.kill(first.pid, signal.SIGKILL)
                    first.wait(10)
                    break
            assert first.poll() is None, first.communicate()
            time.sleep(0.002)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == -signal.SIGKILL and batches_done >= 3

    engine = Engine(db, Registry())  # only to read the run back
    (run,) = engine.list_runs(function_id="tarana-sync")
    run_id = run.id
    written_before = stored(db)
    assert 0 < len(written_before) < len(reference(sim.bn_records()))

    second = start({**cfg, "request": False}, tmp_path)
    _out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err

    run = engine.get_run(run_id)
    assert run.status == RunStatus.COMPLETED and run.crash_count == 1
    detail = {s.name: s for s in engine.run_detail(run_id).steps}
    assert detail["write-batch-0001"].attempts == 1  # finished before the kill: never redone
    expected = reference(sim.bn_records())
    assert len([n for n in detail if n.startswith("write-batch-")]) == -(-len(expected) // 20)
    rows = stored(db)
    assert set(rows) == set(expected)
    assert all({k: rows[s][k] for k in FIELDS} == v for s, v in expected.items())
    for serial, row in written_before.items():
        assert rows[serial]["first_seen"] == row["first_seen"]
    log = synclogs.sync_log_for_run(db, run_id)
    assert log is not None and log.inserted == len(expected) and log.status.finished
    assert log.status in ("completed", "completed_with_warnings")
