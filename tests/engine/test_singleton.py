"""Singleton functions: one active run, enforced by the database, named on refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.clock import FakeClock
from core.engine import Context, On, RunStatus, SendResult, function
from jobstore.db import Database
from jobstore.tables import runs
from tests.engine.conftest import MakeEngine, drain
from tests.engine.worker_proc import singleton_function

ROOT = Path(__file__).resolve().parents[2]


def test_a_singleton_is_refused_while_queued_running_or_waiting(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    refusals: list[SendResult] = []

    @function("solo", triggers=[On("go")], singleton=True)
    def solo(ctx: Context) -> None:
        # While this run executes, a trigger must be refused and told about it.
        ctx.step.run("inside", lambda: refusals.append(engine.send("go")) or None)
        ctx.step.sleep("nap", 10)

    engine = make_engine(solo)
    first = engine.send("go")
    assert len(first.started) == 1
    run_id = first.run_id

    queued = engine.send("go")
    assert queued.started == [] and queued.refused == {"solo": run_id}
    assert queued.run_id == run_id

    drain(engine)
    assert refusals[0].refused == {"solo": run_id}
    assert engine.get_run(run_id or "").status == RunStatus.WAITING
    assert engine.send("go").refused == {"solo": run_id}
    assert engine.active_run("solo") is not None

    clock.advance(11)
    drain(engine)
    assert engine.get_run(run_id or "").status == RunStatus.COMPLETED
    assert engine.active_run("solo") is None
    again = engine.send("go")
    assert len(again.started) == 1 and again.run_id != run_id


def test_twenty_simultaneous_triggers_from_threads_start_one_run(db: Database) -> None:
    from core.engine import Engine, Registry

    registry = Registry()
    registry.add(singleton_function())
    engines = [Engine(db, registry) for _ in range(4)]
    barrier = threading.Barrier(20)
    results: list[SendResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        barrier.wait()
        try:
            result = engines[i % 4].send("solo/go", sent_by=f"thread-{i}")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    started = [r.started[0] for r in results if r.started]
    assert len(started) == 1
    refused = [r.refused["solo"] for r in results if not r.started]
    assert refused == [started[0]] * 19
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one() == 1


@pytest.mark.slow
def test_twenty_simultaneous_triggers_from_two_processes_start_one_run(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.engine.worker_proc",
                "singleton",
                db_url,
                str(tmp_path),
                "--threads",
                "10",
                "--go",
                str(go),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("ready-*"))) < 2:
            assert time.monotonic() < deadline, "worker processes did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.02)
        go.write_text("go")
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    reports = []
    for (out, err), p in zip(outputs, procs, strict=True):
        assert p.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["errors"] for r in reports] == [[], []]
    results = [x for r in reports for x in r["results"]]
    assert len(results) == 20
    started = [x["started"][0] for x in results if x["started"]]
    assert len(started) == 1
    assert [x["refused"]["solo"] for x in results if not x["started"]] == [started[0]] * 19
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one() == 1


def test_the_unique_index_refuses_a_second_active_row_even_without_the_engine(
    db: Database, make_engine: MakeEngine
) -> None:
    engine = make_engine(singleton_function())
    run_id = engine.send("solo/go").run_id
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
        conn.execute(
            runs.insert().values(
                id="x" * 32,
                function_id="solo",
                trigger="event",
                status="queued",
                singleton_key="solo",
                created_at=0.0,
            )
        )
    assert engine.active_run("solo") is not None
    assert engine.active_run("solo").id == run_id  # type: ignore[union-attr]
