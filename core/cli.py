"""The command line: ``python -m core <command>`` (also installed as ``stationsync``).

Commands talk to the same database as the dashboard. ``worker`` runs the
scheduler and workers headless for extra replicas; ``sync`` starts a sync and
follows it, executing it in this process unless another replica's worker gets
there first. A bad setting or an unreachable database ends with one clear
line and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from core.errors import SettingsError, StationsyncError
from core.settings import load_settings, settings_table

LOCAL_OPERATOR = "local operator (cli)"


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _runtime(*, workers: bool, scheduler: bool | None = False) -> Any:
    from core.runtime import Runtime

    return Runtime(load_settings(), workers=workers, scheduler=scheduler).start()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from jobstore import migrate
    from jobstore.db import Database

    db = Database(load_settings().db_url)
    migrate.upgrade(db)
    print(f"schema at revision {migrate.current_revision(db)} on {db.safe_url}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    rt = _runtime(workers=True, scheduler=None)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"worker {rt.holder} running on {rt.db.safe_url}; Ctrl-C to stop", flush=True)
    while not stop.wait(1.0):
        pass
    rt.stop()
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data) if args.data else {}
    except json.JSONDecodeError as exc:
        print(f"--data is not valid JSON: {exc}", file=sys.stderr)
        return 2
    rt = _runtime(workers=False)
    try:
        result = rt.engine.send(args.event, data, idempotency_key=args.key, sent_by=LOCAL_OPERATOR)
    finally:
        rt.stop()
    print(json.dumps(result.__dict__, indent=2))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    rt = _runtime(workers=False)
    try:
        runs = rt.engine.list_runs(
            function_id=args.function, statuses=args.status or None, limit=args.limit
        )
    finally:
        rt.stop()
    print(f"{'run':<34}{'function':<22}{'status':<11}{'trigger':<8}{'att':>4}  started")
    for r in runs:
        print(
            f"{r.id:<34}{r.function_id:<22}{r.status.value:<11}{r.trigger.value:<8}"
            f"{r.attempt:>4}  {_when(r.started_at or r.created_at)}"
        )
    return 0


def print_run(detail: Any) -> None:
    r = detail.run
    print(f"run {r.id}  {r.function_id}  {r.status.value}")
    print(f"  trigger {r.trigger.value} by {r.triggered_by or '-'}; attempt {r.attempt}")
    print(f"  created {_when(r.created_at)}  started {_when(r.started_at)}  ended {_when(r.ended_at)}")
    if r.error:
        print(f"  error: {r.error}")
    for s in detail.steps:
        progress = ""
        if s.progress_total:
            progress = f" {s.progress_current}/{s.progress_total}"
        if s.progress_message:
            progress += f" {s.progress_message}"
        took = f"{s.duration_s:.2f}s" if s.duration_s is not None else ""
        print(f"  - {s.name:<28}{s.status.value:<10} attempts {s.attempts} {took}{progress}")
        for e in s.errors:
            print(f"      attempt {e.get('attempt')}: {e.get('error')}")


def cmd_run(args: argparse.Namespace) -> int:
    rt = _runtime(workers=False)
    try:
        print_run(rt.engine.run_detail(args.id))
    finally:
        rt.stop()
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    rt = _runtime(workers=False)
    try:
        done = rt.engine.cancel(args.id, LOCAL_OPERATOR)
    finally:
        rt.stop()
    print("cancel requested" if done else "run already finished; nothing to cancel")
    return 0 if done else 1


def cmd_retry(args: argparse.Namespace) -> int:
    rt = _runtime(workers=False)
    try:
        result = rt.engine.retry(args.id, LOCAL_OPERATOR, from_scratch=args.from_scratch)
    finally:
        rt.stop()
    if result.started:
        print(f"started run {result.started[0]}")
        return 0
    print(f"refused: run {result.run_id} of this function is still active")
    return 1


def cmd_schedules(args: argparse.Namespace) -> int:
    rt = _runtime(workers=False)
    try:
        sched = rt.scheduler
        if args.action == "pause":
            sched.pause(args.job, LOCAL_OPERATOR)
        elif args.action == "resume":
            sched.resume(args.job, LOCAL_OPERATOR)
        elif args.action == "set":
            sched.set_cron(args.job, args.cron, LOCAL_OPERATOR)
        elif args.action == "run":
            print(json.dumps(sched.run_now(args.job, LOCAL_OPERATOR).__dict__))
        for info in sched.schedules():
            state = "paused" if info.paused else "active"
            nxt = ", ".join(f.isoformat() for f in info.next_fires[:3]) or "-"
            print(f"{info.job_id:<28}{info.cron:<16}{info.timezone:<22}{state:<8} next: {nxt}")
        lease = sched.lease()
        if lease:
            print(f"scheduler lease: {lease.holder} since {_when(lease.acquired_at)}")
    finally:
        rt.stop()
    return 0


def follow(rt: Any, run_id: str, *, on_progress: Callable[[str], None], poll_s: float = 0.5) -> Any:
    """Poll one run until it finishes, reporting each new progress line."""
    last = ""
    while True:
        detail = rt.engine.run_detail(run_id)
        current = next((s for s in reversed(detail.steps) if s.status.value != "completed"), None)
        line = detail.run.status.value
        if current is not None:
            line += f": {current.name}"
            if current.progress_message:
                line += f" ({current.progress_message})"
        if line != last:
            on_progress(line)
            last = line
        if detail.run.status.finished:
            return detail
        if detail.run.status.value == "waiting" and current and current.kind.value == "wait":
            return detail
        time.sleep(poll_s)


def _pending_confirmation(rt: Any) -> str | None:
    """The sync id of a sync waiting for its deletion to be confirmed, if any."""
    from jobstore import synclogs

    run = rt.engine.active_run("tarana-sync")
    if run is None or run.status.value != "waiting":
        return None
    log = synclogs.sync_log_for_run(rt.db, run.id)
    return log.id if log is not None and log.needs_confirmation else None


def cmd_sync(args: argparse.Namespace) -> int:
    from core.sync import commands

    rt = _runtime(workers=True)
    try:
        if args.confirm_delete and not args.dry_run:
            waiting = _pending_confirmation(rt)
            if waiting is not None:
                commands.confirm_delete(rt.engine, waiting, LOCAL_OPERATOR)
                print(f"confirmed the guarded deletion of sync {waiting}")
        request = commands.request_sync(
            rt.engine,
            dry_run=args.dry_run,
            delete_stale=args.delete_stale or args.confirm_delete,
            by=LOCAL_OPERATOR,
        )
        print(request.message, flush=True)
        detail = follow(rt, request.run_id, on_progress=lambda line: print(f"  {line}", flush=True))
        if detail.run.status.value == "waiting" and args.confirm_delete:
            commands.confirm_delete(rt.engine, request.sync_id, LOCAL_OPERATOR)
            print("guarded deletion confirmed", flush=True)
            detail = follow(rt, request.run_id, on_progress=lambda line: print(f"  {line}", flush=True))
        print_run(detail)
        return 0 if detail.run.status.value == "completed" else 1
    finally:
        rt.stop()


def cmd_sync_status(args: argparse.Namespace) -> int:
    from jobstore import synclogs

    rt = _runtime(workers=False)
    try:
        logs = [synclogs.get_sync_log(rt.db, args.id)] if args.id else synclogs.list_sync_logs(rt.db, 10)
        for log in logs:
            if log is None:
                print(f"no sync with id {args.id}")
                return 1
            print(json.dumps({k: v for k, v in log.__dict__.items()}, default=str))
    finally:
        rt.stop()
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    print(settings_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stationsync", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])
    db.set_defaults(func=cmd_db_upgrade)

    sub.add_parser("worker", help="run scheduler + workers headless").set_defaults(func=cmd_worker)

    send = sub.add_parser("send", help="send an event")
    send.add_argument("event")
    send.add_argument("--data", help="event data as JSON")
    send.add_argument("--key", help="idempotency key")
    send.set_defaults(func=cmd_send)

    runs = sub.add_parser("runs", help="list runs")
    runs.add_argument("--status", action="append", help="repeat for several")
    runs.add_argument("--function")
    runs.add_argument("--limit", type=int, default=30)
    runs.set_defaults(func=cmd_runs)

    run = sub.add_parser("run", help="one run with its steps and errors")
    run.add_argument("id")
    run.set_defaults(func=cmd_run)

    cancel = sub.add_parser("cancel", help="cancel a run")
    cancel.add_argument("id")
    cancel.set_defaults(func=cmd_cancel)

    retry = sub.add_parser("retry", help="retry a finished run from where it failed")
    retry.add_argument("id")
    retry.add_argument("--from-scratch", action="store_true")
    retry.set_defaults(func=cmd_retry)

    sch = sub.add_parser("schedules", help="list or change schedules")
    sch.add_argument("action", nargs="?", choices=["list", "pause", "resume", "set", "run"], default="list")
    sch.add_argument("job", nargs="?")
    sch.add_argument("cron", nargs="?")
    sch.set_defaults(func=cmd_schedules)

    sync = sub.add_parser("sync", help="sync base stations now and follow the run")
    sync.add_argument("--dry-run", action="store_true")
    sync.add_argument("--delete-stale", action="store_true")
    sync.add_argument("--confirm-delete", action="store_true", help="confirm a guarded deletion")
    sync.set_defaults(func=cmd_sync)

    status = sub.add_parser("sync-status", help="recent sync logs, or one")
    status.add_argument("id", nargs="?")
    status.set_defaults(func=cmd_sync_status)

    sub.add_parser("simulator", help="serve the portal simulator (--help for its options)")

    sub.add_parser("settings", help="every setting with its default").set_defaults(func=cmd_settings)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["simulator"]:
        # The simulator owns its options; argparse would not pass them through.
        from core.tarana import simulator

        return simulator.main(raw[1:])
    args = build_parser().parse_args(raw)
    if args.command == "schedules" and args.action in {"pause", "resume", "set", "run"} and not args.job:
        print("schedules pause|resume|set|run needs a schedule id", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"stationsync: {exc}", file=sys.stderr)
        return 2
    except StationsyncError as exc:
        print(f"stationsync: {exc}", file=sys.stderr)
        return 2
