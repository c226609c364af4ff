"""A separate process for the engine tests that need real processes.

``python -m tests.engine.worker_proc steps DB_URL DIR [--block-at N] [--slow-at N]``
runs an engine (real clock, short lease) whose function ``counter`` has
numbered steps that append their name to ``DIR/counter.txt``. ``--block-at``
makes that step hang forever in this process (so the test can kill it there);
``--slow-at`` makes it take ``--slow-s`` seconds (so the test can freeze the
process while it holds the lease). ``DIR/blocked-<pid>`` appears when a step
starts hanging or sleeping. The process stops when no run is active.

``python -m tests.engine.worker_proc singleton DB_URL DIR --threads N --go FILE``
sends the singleton trigger from N threads at once, after FILE appears, and
prints one JSON line with what each send was told.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from core.engine import Context, Engine, Function, On, Registry, RunStatus, function
from jobstore.db import Database

STEPS = 6


def counter_function(
    directory: Path, *, block_at: int | None = None, slow_at: int | None = None, slow_s: float = 0.0
) -> Function:
    counter = directory / "counter.txt"
    tag = f"pid-{os.getpid()}"

    def make_step(i: int) -> Any:
        def step() -> str:
            if i in (block_at, slow_at):
                (directory / f"blocked-{os.getpid()}").write_text(str(i))
                time.sleep(3600 if i == block_at else slow_s)
            with counter.open("a") as f:
                f.write(f"step-{i} {tag}\n")
            return f"step-{i} by {tag}"

        return step

    @function("counter", triggers=[On("count")], singleton=True, retries=0)
    def handler(ctx: Context) -> int:
        for i in range(1, STEPS + 1):
            ctx.step.run(f"step-{i}", make_step(i))
        return STEPS

    return handler


def singleton_function() -> Function:
    @function("solo", triggers=[On("solo/go")], singleton=True)
    def solo(ctx: Context) -> None:
        return None

    return solo


def run_steps(args: argparse.Namespace) -> int:
    db = Database(args.db_url)
    registry = Registry()
    directory = Path(args.dir)
    registry.add(
        counter_function(
            directory, block_at=args.block_at, slow_at=args.slow_at, slow_s=args.slow_s
        )
    )
    engine = Engine(
        db,
        registry,
        workers=1,
        poll_interval_s=0.05,
        lease_s=args.lease_s,
        heartbeat_s=args.heartbeat_s or args.lease_s / 5,
        max_crashes=args.max_crashes,
    )
    engine.start()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            time.sleep(0.05)
            active = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING]
            if not engine.list_runs(statuses=active):
                break
    finally:
        engine.stop(timeout=5)
        db.dispose()
    return 0


def run_singleton(args: argparse.Namespace) -> int:
    db = Database(args.db_url)
    registry = Registry()
    registry.add(singleton_function())
    engine = Engine(db, registry)
    go = Path(args.go)
    (Path(args.dir) / f"ready-{os.getpid()}").write_text("ready")
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def send() -> None:
        while not go.exists():
            time.sleep(0.001)
        try:
            result = engine.send("solo/go", sent_by=f"pid-{os.getpid()}")
            with lock:
                results.append({"started": result.started, "refused": result.refused})
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            with lock:
                errors.append(repr(exc))

    threads = [threading.Thread(target=send) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"results": results, "errors": errors}))
    db.dispose()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["steps", "singleton"])
    parser.add_argument("db_url")
    parser.add_argument("dir")
    parser.add_argument("--block-at", type=int)
    parser.add_argument("--slow-at", type=int)
    parser.add_argument("--slow-s", type=float, default=0.0)
    parser.add_argument("--lease-s", type=float, default=1.0)
    parser.add_argument("--heartbeat-s", type=float, default=0.0)
    parser.add_argument("--max-crashes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--go", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return run_steps(args) if args.mode == "steps" else run_singleton(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
