"""Benchmark of the station sync: full sync, unchanged resync, writes against a baseline.

``python bench/sync_throughput.py --stations 100000`` starts the simulator in a
child process (so its CPU and memory are not the sync's), runs the real sync
on the real engine into a fresh SQLite file, and prints one JSON line:

- ``full_sync_s``: request to finished sync run, first sync into an empty table;
- ``write_rows_per_s``: rows written / time of the ``write-batch-*`` steps;
- ``baseline_write_rows_per_s``: the first integration's way of writing the
  same rows on the same database in the same run (existing serials loaded,
  then one UPDATE or INSERT per station, each committed on its own);
- ``resync_unchanged_s`` and ``resync_rows_written`` (counted from the SQL the
  driver receives, so it must be 0);
- ``fetch_pages_per_s``: list pages / time of the ``fetch-*`` steps;
- ``peak_rss_mb``: this process's peak resident memory after both syncs;
- ``latency_fetch_speedup``: 200 pages from a simulator answering after 50 ms,
  the client's default concurrency against one request at a time.

Progress goes to stderr. RNs default to 0.2 per BN: the portal shows a
retailer only the RNs of its own customers (see the portal notes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a script from a checkout

import sqlalchemy as sa
from sqlalchemy import event

from core.clock import SystemClock
from core.engine import Engine, Registry
from core.settings import Secret, Settings
from core.sync import commands
from core.sync.function import sync_functions
from core.tarana.client import TaranaClient
from jobstore import migrate, synclogs
from jobstore.db import Database
from jobstore.stations import WRITE_COLUMNS
from jobstore.synclogs import SyncLog
from jobstore.tables import base_stations


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def simulator(stations: int, rns_per_bn: float, faults: str = "") -> Iterator[dict[str, str]]:
    """A simulator in a child process; yields its base_url, username, password, operator_id."""
    cmd = [
        sys.executable, "-m", "core.tarana.simulator", "--stations", str(stations),
        "--rns-per-bn", str(rns_per_bn), "--faults", faults,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        info: dict[str, str] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            key, sep, value = line.partition(":")
            if sep and key.strip() in {"base_url", "username", "password", "operator_id"}:
                info[key.strip()] = value.strip()
            if len(info) == 4:
                break
        if len(info) != 4:
            raise RuntimeError("the simulator did not start")
        yield info
    finally:
        proc.terminate()
        proc.wait(10)


def make_client(info: dict[str, str], **options: Any) -> TaranaClient:
    return TaranaClient(
        info["base_url"], info["username"], Secret(info["password"]),
        operator_id=info["operator_id"], **options,
    )  # fmt: skip


class RowCounter:
    """Rows the driver is asked to write to base_stations."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(
        self, _c: Any, _cur: Any, statement: str, params: Any, _x: Any, many: bool
    ) -> None:
        head = statement.lstrip().upper()
        if head.startswith(("INSERT", "UPDATE", "DELETE")) and "BASE_STATIONS" in head[:80]:
            self.rows += len(params) if many else 1


def step_seconds(engine: Engine, run_id: str, prefix: str) -> float:
    return sum(
        (s.duration_s or 0.0)
        for s in engine.run_detail(run_id).steps
        if s.name.startswith(prefix) and s.status == "completed"
    )


def run_sync(engine: Engine, db: Database) -> tuple[SyncLog, float]:
    """Request a sync and run it on this thread; its log and wall time."""
    started = time.perf_counter()
    req = commands.request_sync(engine, by="bench")
    assert req.started, req.message
    while engine.run_once() is not None and not engine.get_run(req.run_id).status.finished:
        pass
    wall = time.perf_counter() - started
    while engine.run_once():  # the watch, after the clock stopped
        pass
    log = synclogs.get_sync_log(db, req.sync_id)
    assert log is not None and log.status.finished, log
    if log.status not in ("completed", "completed_with_warnings"):
        raise RuntimeError(f"sync ended {log.status}: {log.errors[-3:]}")
    return log, wall


def baseline_writes(db: Database, rows: list[tuple[Any, ...]]) -> float:
    """The first integration's writer, on a copy of the table; rows per second."""
    copy = sa.Table(
        "bench_baseline_stations", sa.MetaData(),
        *[sa.Column(c.name, c.type, primary_key=c.primary_key) for c in base_stations.columns],
    )  # fmt: skip
    copy.drop(db.engine, checkfirst=True)
    copy.create(db.engine)
    names = list(WRITE_COLUMNS)
    started = time.perf_counter()
    with db.read() as conn:
        existing = {r[0] for r in conn.execute(sa.select(copy.c.serial_number))}
    for values in rows:
        record = dict(zip(names, values, strict=True))
        with db.write() as conn:  # one commit per station
            if record["serial_number"] in existing:
                conn.execute(
                    copy.update()
                    .where(copy.c.serial_number == record["serial_number"])
                    .values(record)
                )
            else:
                conn.execute(copy.insert().values(record))
    elapsed = time.perf_counter() - started
    copy.drop(db.engine)
    return len(rows) / elapsed


def latency_speedup(pages: int = 200) -> float:
    with simulator(pages * 10, 0.0, "latency_ms=50") as info:
        times = {}
        for label, options in (("default", {}), ("serial", {"concurrency": 1})):
            client = make_client(info, **options)
            try:
                client.login()
                started = time.perf_counter()
                report = client.fetch_devices("BN", max_pages=pages)
                times[label] = time.perf_counter() - started
                assert report.pages == pages
            finally:
                client.close()
    return times["serial"] / times["default"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=100_000)
    parser.add_argument("--rns-per-bn", type=float, default=0.2)
    parser.add_argument("--write-batch", type=int, default=Settings().write_batch)
    parser.add_argument("--baseline-rows", type=int, default=0, help="0 means all stations")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="stationsync-bench-"))
    db = Database(f"sqlite:///{workdir / 'bench.db'}")
    migrate.upgrade(db)
    settings = Settings(write_batch=args.write_batch)
    out: dict[str, Any] = {"stations": args.stations}
    with simulator(args.stations, args.rns_per_bn) as info:
        registry = Registry()
        for fn in sync_functions(db, settings, lambda: make_client(info), SystemClock()):
            registry.add(fn)
        engine = Engine(db, registry)
        say(f"full sync of {args.stations:,} stations ...")
        first, full_s = run_sync(engine, db)
        assert first.run_id is not None
        written = first.inserted + first.updated
        out["full_sync_s"] = round(full_s, 2)
        out["write_rows_per_s"] = round(
            written / step_seconds(engine, first.run_id, "write-batch-")
        )
        say(f"  {full_s:.1f} s, {written:,} rows written, {first.skipped:,} skipped")

        say("resync with nothing changed ...")
        counter = RowCounter()
        event.listen(db.engine, "before_cursor_execute", counter)
        try:
            second, resync_s = run_sync(engine, db)
        finally:
            event.remove(db.engine, "before_cursor_execute", counter)
        assert second.run_id is not None
        out["resync_unchanged_s"] = round(resync_s, 2)
        out["resync_rows_written"] = counter.rows
        pages = first.pages + second.pages
        fetch_s = step_seconds(engine, first.run_id, "fetch-") + step_seconds(
            engine, second.run_id, "fetch-"
        )
        out["fetch_pages_per_s"] = round(pages / fetch_s)
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        say(f"  {resync_s:.1f} s, {counter.rows} rows written, peak RSS {out['peak_rss_mb']} MB")

    say("baseline writer ...")
    with db.read() as conn:
        rows = [
            tuple(r) for r in conn.execute(sa.select(*[base_stations.c[c] for c in WRITE_COLUMNS]))
        ]
    if args.baseline_rows:
        rows = rows[: args.baseline_rows]
    baseline = baseline_writes(db, rows)
    out["baseline_write_rows_per_s"] = round(baseline)
    out["write_speedup"] = round(out["write_rows_per_s"] / baseline, 1)
    say(f"  {baseline:,.0f} rows/s over {len(rows):,} rows")

    say("fetch with 50 ms latency, default concurrency against one at a time ...")
    out["latency_fetch_speedup"] = round(latency_speedup(), 1)
    out["rns_per_bn"] = args.rns_per_bn
    out["baseline_rows"] = len(rows)
    order = [
        "stations", "full_sync_s", "write_rows_per_s", "baseline_write_rows_per_s",
        "write_speedup", "resync_unchanged_s", "resync_rows_written", "fetch_pages_per_s",
        "peak_rss_mb", "latency_fetch_speedup", "rns_per_bn", "baseline_rows",
    ]  # fmt: skip
    print(json.dumps({k: out[k] for k in order}))
    db.dispose()
    for path in workdir.iterdir():
        path.unlink()
    workdir.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
