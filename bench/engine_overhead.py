"""Per-step cost of the durable engine, against raw SQLite and DBOS Transact.

One run of K trivial steps on a SQLite file, timed around ``Engine.run_once``
(claim, replay, K checkpoints, finish). Baselines measured in the same
invocation: (a) plain ``sqlite3``: one step row inserted and committed per
step into the same migrated schema, with the engine's pragmas (WAL,
synchronous=NORMAL, busy_timeout) and IMMEDIATE transactions; (b) DBOS
Transact running the same K-step workflow on a SQLite system database given
the same pragmas, in a child process so that its global state and threads do
not touch our measurement. Engine and raw are the median of ``--repeat``
rounds, DBOS of ``--dbos-repeat``. Prints one JSON line; if DBOS cannot run,
its fields are null and ``dbos_error`` says why.

    python -m bench.engine_overhead [--steps 2000]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BUSY_TIMEOUT_MS = 30_000


def _trivial(i: int) -> int:
    return i


def bench_engine(steps: int, directory: Path) -> float:
    from core.engine import Context, Engine, On, Registry, RunStatus, function
    from jobstore import migrate
    from jobstore.db import Database

    db = Database(f"sqlite:///{directory / 'engine.db'}", busy_timeout_ms=BUSY_TIMEOUT_MS)
    migrate.upgrade(db)

    @function("bench", triggers=[On("bench/go")])
    def bench(ctx: Context) -> int:
        n = int(ctx.data["steps"])
        for i in range(n):
            ctx.step.run(f"step-{i}", _trivial, i)
        return n

    registry = Registry()
    registry.add(bench)
    engine = Engine(db, registry)
    engine.send("bench/go", {"steps": 50})
    engine.run_once()  # warm caches and the connection pool
    run_id = engine.send("bench/go", {"steps": steps}).run_id
    started = time.perf_counter()
    assert engine.run_once() == run_id
    elapsed = time.perf_counter() - started
    assert run_id is not None and engine.get_run(run_id).status == RunStatus.COMPLETED
    db.dispose()
    return elapsed / steps * 1e6


def bench_raw(steps: int, directory: Path) -> float:
    from jobstore import migrate
    from jobstore.db import Database

    path = directory / "raw.db"
    migrate.upgrade(Database(f"sqlite:///{path}"))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous=NORMAL")
    sql = (
        "INSERT INTO steps (run_id, name, seq, kind, status, attempts, result, error, errors, "
        "started_at, ended_at, wake_at, progress_current, progress_total, progress_message) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    run_id = "r" * 32
    started = time.perf_counter()
    for i in range(steps):
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            sql,
            (
                run_id,
                f"step-{i}",
                i,
                "run",
                "completed",
                1,
                str(i),
                None,
                None,
                now,
                now,
                None,
                None,
                None,
                None,
            ),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed / steps * 1e6


def dbos_child(steps: int, directory: Path) -> None:
    """Runs in a child process: the same workflow on DBOS; prints microseconds per step."""
    import sqlalchemy as sa
    from dbos import DBOS

    url = f"sqlite:///{directory / 'dbos.sqlite'}"
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # What DBOS sets on its own SQLite engine, plus the engine's WAL and
        # synchronous=NORMAL, so both keep the same durability.
        dbapi_conn.isolation_level = "IMMEDIATE"
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        dbapi_conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    DBOS(
        config={
            "name": "engine-overhead",
            "system_database_url": url,
            "system_database_engine": engine,
            "log_level": "ERROR",
        }
    )

    @DBOS.step()
    def trivial(i: int) -> int:
        return i

    @DBOS.workflow()
    def workflow(n: int) -> int:
        for i in range(n):
            trivial(i)
        return n

    DBOS.launch()
    workflow(50)
    started = time.perf_counter()
    workflow(steps)
    elapsed = time.perf_counter() - started
    DBOS.destroy()
    print(json.dumps({"us_per_step": elapsed / steps * 1e6}))


def bench_dbos(steps: int, directory: Path) -> tuple[float | None, str | None]:
    try:
        import dbos  # noqa: F401 - only checking that it is installed
    except ImportError as exc:
        return None, f"DBOS Transact is not installed ({exc}); install the 'bench' extra"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.engine_overhead",
            "--dbos-child",
            "--steps",
            str(steps),
            "--dir",
            str(directory),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return float(json.loads(line)["us_per_step"]), None
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return None, f"DBOS run failed (exit {proc.returncode}): {tail}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dbos-repeat", type=int, default=1)
    parser.add_argument("--dbos-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dbos_child:
        dbos_child(args.steps, Path(args.dir))
        return 0

    engine_us: list[float] = []
    raw_us: list[float] = []
    dbos_us: list[float] = []
    dbos_error: str | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            # Interleaved, so that a noisy moment on the machine hits both.
            round_dir = Path(tmp) / f"round-{i}"
            round_dir.mkdir()
            engine_us.append(bench_engine(args.steps, round_dir))
            raw_us.append(bench_raw(args.steps, round_dir))
        for i in range(args.dbos_repeat):
            dbos_dir = Path(tmp) / f"dbos-{i}"
            dbos_dir.mkdir()
            value, dbos_error = bench_dbos(args.steps, dbos_dir)
            if value is None:
                break
            dbos_us.append(value)

    engine = statistics.median(engine_us)
    raw = statistics.median(raw_us)
    dbos_value = statistics.median(dbos_us) if dbos_us and dbos_error is None else None
    result: dict[str, Any] = {
        "steps": args.steps,
        "engine_us_per_step": round(engine, 1),
        "raw_us_per_step": round(raw, 1),
        "dbos_us_per_step": None if dbos_value is None else round(dbos_value, 1),
        "ratio_vs_raw": round(engine / raw, 3),
        "ratio_vs_dbos": None if dbos_value is None else round(engine / dbos_value, 4),
    }
    if dbos_error is not None:
        result["dbos_error"] = dbos_error
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
