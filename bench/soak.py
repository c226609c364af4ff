"""Crash soak: SIGKILL the syncing process at random points, restart it, check the end state.

A portal simulator runs in a process of its own (``python -m core
simulator``), so its data stays the same while sync processes come and go.
One ``python -m core worker`` at a time executes the syncs this script
requests; the script kills it with SIGKILL, at least ``--kills`` times, and
starts a fresh one after each kill. Kill points are drawn three ways, a third
each: a random time after the worker took the run over (most of that time is
spent fetching); a random number of checkpoints ahead (so the diff, the write
batches and the finish are hit as often as the long fetch steps); and the
narrowest window, a write batch whose rows have committed while its
checkpoint has not (the script holds the writers back for a moment to find
it). When a sync completes, the fleet upstream is changed (stations changed,
added and removed) and the next sync is requested, so later syncs write
batches too. Runs may lose their lease up to 100 times before they are
declared dead (``STATIONSYNC_MAX_CRASHES``), so one sync can take many kills.

After every kill, with the process dead and nothing else writing, the script
records every finished step (its start, end and attempts) and checks that the
stations this sync has written so far are a whole number of write batches.
At the end it checks that:

- every run ended (completed, or failed/dead with a reason); none is stuck;
- the stations table equals the simulator's valid stations exactly: none
  lost, none extra, no field different, no duplicate serial; stations removed
  upstream are marked missing, not present;
- no step that had finished before a kill ran again (its stored start, end
  and attempts are unchanged), and no batch was half written.

It prints one JSON line: ``kills``, ``runs``, ``completed``, ``failed``,
``stuck``, ``lost_rows``, ``duplicate_rows``, ``re_executed_steps``,
``stations``, ``seconds`` and a few more details. The default is the full
soak (50 kills over 10,000 stations); ``--kills 8 --stations 2000`` is the
small one the test suite runs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from core.sync import commands
from core.sync.events import SYNC_FUNCTION
from jobstore import migrate
from jobstore.db import Database
from jobstore.records import ACTIVE
from jobstore.tables import base_stations, runs, steps, sync_logs
from tests.reliability.harness import (
    Proc,
    Processes,
    SimulatorProcess,
    StepKey,
    StepStamp,
    finished_steps,
    fresh_schema,
    pid_of,
    portal_settings,
    product_env,
    sender,
    wait_for,
)
from tests.sync.harness import FIELDS, reference

_ACTIVE = [s.value for s in ACTIVE]


@dataclass(frozen=True)
class SoakConfig:
    """What to soak: how many kills, how big a fleet, which database."""

    kills: int = 50
    stations: int = 10_000
    write_batch: int = 500
    database_url: str = ""  # empty: a SQLite file in the work directory
    malformed: float = 0.02  # share of BN records the simulator breaks (they must be skipped)
    lease_s: float = 1.0
    heartbeat_s: float = 0.3
    seed: int = 1  # of the kill points and the upstream changes
    timeout_s: float = 1800.0
    work_dir: Path | None = None


@dataclass
class Observations:
    """What the soak saw while it ran."""

    kills: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    finished: dict[StepKey, StepStamp] = field(default_factory=dict)
    in_progress: set[StepKey] = field(default_factory=set)
    half_written: list[str] = field(default_factory=list)
    committed_not_checkpointed: int = 0
    span_s: float = 2.5  # how long the last run went on after a (re)start, at most
    requested: list[str] = field(default_factory=list)
    max_steps: int = 0


# --- reading the database ------------------------------------------------------


def _steps_of(db: Database, run_id: str) -> list[Any]:
    """Name and status of a run's steps, in order (not their results: polled often)."""
    q = sa.select(steps.c.name, steps.c.status).where(steps.c.run_id == run_id)
    q = q.order_by(steps.c.seq)
    with db.read() as conn:
        return list(conn.execute(q))


def _run(db: Database, run_id: str) -> Any:
    with db.read() as conn:
        return conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()


def _active_runs(db: Database) -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(sa.select(runs).where(runs.c.status.in_(_ACTIVE))))


def _phase(step_rows: list[Any]) -> str:
    """Where a run was when its process died: the step it was in, or after which it stood."""
    running = [s for s in step_rows if s.status != "completed"]
    if running:
        return f"in {_family(running[-1].name)}"
    if step_rows:
        return f"after {_family(step_rows[-1].name)}"
    return "before begin"


def _count_done(rows: list[Any], prefix: str = "") -> int:
    return sum(1 for s in rows if s.status == "completed" and s.name.startswith(prefix))


def _family(name: str) -> str:
    return name.rsplit("-", 1)[0] if name[-1].isdigit() else name


@dataclass(frozen=True)
class Writes:
    """What a run has written so far, by its checkpoints and by the table."""

    to_write: int  # stations the run's diff says to write (0 before the diff)
    batches: int  # write batches in all
    checkpointed: int  # write batches finished
    rows: int  # stations in the table carrying this run's write time


def _to_write(db: Database, run_id: str) -> int:
    """Stations the run's diff says to write (0 before its diff has finished)."""
    with db.read() as conn:
        text = conn.execute(
            sa.select(steps.c.result).where(
                steps.c.run_id == run_id, steps.c.name == "diff", steps.c.status == "completed"
            )
        ).scalar_one_or_none()
    if text is None:
        return 0
    result = json.loads(text)
    return len(result["insert"]) + len(result["update"])


def _writes(db: Database, run_id: str, write_batch: int, to_write: int | None = None) -> Writes:
    """Rows written by a run carry ``last_changed`` after its creation (earlier syncs'
    rows carry earlier times), so they can be counted against its checkpoints."""
    run = _run(db, run_id)
    if to_write is None:
        to_write = _to_write(db, run_id)
    done = _count_done(_steps_of(db, run_id), "write-batch-")
    with db.read() as conn:
        written = conn.execute(
            sa.select(sa.func.count())
            .select_from(base_stations)
            .where(base_stations.c.last_changed > run.created_at)
        ).scalar_one()
    return Writes(to_write, -(-to_write // write_batch), done, int(written))


def _check_batches(w: Writes, write_batch: int) -> tuple[str | None, bool]:
    """(what is wrong, or None; whether one batch committed but was not yet checkpointed).

    The table must hold the rows of the finished batches, or those plus the one
    whose transaction committed just before its checkpoint could: whole batches only.
    """
    whole = min(w.checkpointed * write_batch, w.to_write)
    ahead = min((w.checkpointed + 1) * write_batch, w.to_write)
    if w.rows == whole:
        return None, False
    if w.rows == ahead:
        return None, True
    return (
        f"{w.rows} rows written with {w.checkpointed} of {w.batches} batch(es) of "
        f"{write_batch} checkpointed ({w.to_write} rows to write)"
    ), False


# --- the soak ----------------------------------------------------------------


class Soak:
    """One soak: its processes, its database, the kill loop and the final checks."""

    def __init__(self, cfg: SoakConfig, work_dir: Path) -> None:
        self.cfg = cfg
        self.dir = work_dir
        self.rng = random.Random(cfg.seed)
        self.procs = Processes(work_dir / "logs")
        self.url = cfg.database_url or f"sqlite:///{work_dir / 'soak.db'}"
        self.db = Database(self.url)
        self.seen = Observations()
        self.mutations = 0

    def run(self) -> dict[str, Any]:
        began = time.monotonic()
        try:
            migrate.upgrade(self.db)
            self.sim = SimulatorProcess.start(
                self.procs, self.cfg.stations, faults=f"malformed={self.cfg.malformed:g}"
            )
            self.twin = self.sim.twin()
            self.engine = sender(self.db)
            self.env = product_env(self._settings(), self.dir)
            self._kill_loop(began + self.cfg.timeout_s)
            stuck = self._drain(time.monotonic() + 300)
            result = self._verify(stuck)
        finally:
            self.procs.stop_all()
            self.db.dispose()
        result["seconds"] = round(time.monotonic() - began, 1)
        return result

    def _settings(self) -> dict[str, str]:
        return {
            "STATIONSYNC_DATABASE_URL": self.url,
            "STATIONSYNC_WRITE_BATCH": str(self.cfg.write_batch),
            "STATIONSYNC_LEASE_S": f"{self.cfg.lease_s:g}",
            "STATIONSYNC_HEARTBEAT_S": f"{self.cfg.heartbeat_s:g}",
            "STATIONSYNC_POLL_INTERVAL_S": "0.05",
            # every kill is a lost lease; the soak kills one run far more often than 3 times
            "STATIONSYNC_MAX_CRASHES": "100",
            "STATIONSYNC_SCHEDULER": "false",
            **portal_settings(self.sim),
        }

    def _request(self) -> str:
        if self.seen.requested:
            # the previous sync finished: change the fleet so the next one has batches to write
            n = self.cfg.stations
            change = {"change": n // 4, "add": n // 50, "remove": n // 100, "seed": self.mutations}
            self.mutations += 1
            self.sim.control("POST", "/__sim/mutate", change)
            self.twin.mutate(**change)
        req = commands.request_sync(self.engine, by="soak")
        assert req.started, req.message
        self.seen.requested.append(req.run_id)
        return req.run_id

    def _kill_loop(self, deadline: float) -> None:
        worker = self.procs.worker(self.env)
        while self.seen.kills < self.cfg.kills:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.seen.kills} kills before the time limit")
            active = self.engine.active_run(SYNC_FUNCTION)
            run_id = active.id if active is not None else self._request()
            if not self._wait_claimed(worker, run_id):
                continue  # it finished first; request the next one
            claimed = time.monotonic()
            if not self._kill_at_random_point(run_id, worker):
                # it finished before the chosen point: aim earlier in the next ones
                self.seen.span_s = max(0.2, time.monotonic() - claimed)
                self.seen.max_steps = len(_steps_of(self.db, run_id))
                continue
            self._after_kill(run_id, claimed)
            worker = self.procs.worker(self.env)

    def _wait_claimed(self, worker: Proc, run_id: str) -> bool:
        def claimed() -> str | None:
            if not worker.alive():
                raise AssertionError(f"the worker exited:\n{worker.log()[-3000:]}")
            row = _run(self.db, run_id)
            if row.status not in _ACTIVE:
                return "finished"
            if row.status == "running" and pid_of(row.lease_owner) == worker.pid:
                return "claimed"
            return None

        return wait_for(claimed, 120, f"the worker to take run {run_id}", 0.01) == "claimed"

    def _kill_at_random_point(self, run_id: str, worker: Proc) -> bool:
        """Kill the worker at a random point of the run; False if the run ended first.

        A third of the points are a random time after the worker took the run, a
        third a random number of checkpoints ahead, and a third the narrowest window
        there is: a write batch whose rows have committed but whose checkpoint has not.
        """
        mode = self.rng.randrange(3)
        if mode == 2:
            killed = self._kill_in_write_window(run_id, worker)
            if killed is not None:
                return killed
            mode = 0  # nothing left to write: fall back to a random time
        if mode == 1:
            done = _count_done(_steps_of(self.db, run_id))
            total = max(self.seen.max_steps, done + 1)
            target = done + self.rng.randint(1, max(1, total - done))
            self._wait_steps(run_id, lambda rows: _count_done(rows) >= target)
            time.sleep(self.rng.uniform(0.0, 0.03))  # between two checkpoints, or in the next
        else:
            time.sleep(self.rng.uniform(0.0, self.seen.span_s))
        row = _run(self.db, run_id)
        if row.status != "running" or pid_of(row.lease_owner) != worker.pid:
            return False
        self.procs.kill(worker)
        return True

    def _kill_in_write_window(self, run_id: str, worker: Proc) -> bool | None:
        """Kill the worker after a random batch's rows committed, before its checkpoint.

        The script takes the database's write lock (SQLite) or locks the run, step
        and station tables against writers (PostgreSQL, in that order: the batch
        being written finishes, its checkpoint then waits) and looks: if one batch
        more is in the table than is checkpointed, the worker is in the window and
        dies there. None if the run has no batch left to write; False if it ended.
        """
        diff_done = self._wait_steps(
            run_id, lambda rows: any(s.name == "diff" and s.status == "completed" for s in rows)
        )
        if not diff_done:
            return None if _run(self.db, run_id).status in _ACTIVE else False
        batch = self.cfg.write_batch
        w = _writes(self.db, run_id, batch)
        if w.checkpointed >= w.batches:
            return None
        target = self.rng.randint(w.checkpointed + 1, w.batches)
        self._wait_steps(run_id, lambda rows: _count_done(rows, "write-batch-") >= target - 1)
        until = time.monotonic() + 30
        while time.monotonic() < until:
            with self.db.write() as conn:
                if not self.db.is_sqlite:
                    conn.execute(sa.text("LOCK TABLE runs, steps, base_stations IN EXCLUSIVE MODE"))
                w = _writes(self.db, run_id, batch, w.to_write)
                if w.checkpointed >= w.batches:
                    return None
                if _check_batches(w, batch)[1]:
                    self.procs.kill(worker)
                    return True
            if _run(self.db, run_id).status not in _ACTIVE:
                return False
            time.sleep(0.002)  # let the worker take the lock for its next write
        return None

    def _wait_steps(self, run_id: str, ready: Callable[[list[Any]], bool]) -> bool:
        """Poll the run's steps until ``ready``; False if the run ended or 30 s passed."""
        until = time.monotonic() + 30
        while time.monotonic() < until:
            if ready(_steps_of(self.db, run_id)):
                return True
            if _run(self.db, run_id).status not in _ACTIVE:
                return False
            time.sleep(0.003)
        return False

    def _after_kill(self, run_id: str, claimed: float) -> None:
        seen = self.seen
        seen.kills += 1
        rows = _steps_of(self.db, run_id)
        seen.in_progress.update((run_id, s.name) for s in rows if s.status != "completed")
        for key, stamp in finished_steps(self.db).items():
            seen.finished.setdefault(key, stamp)
        problem, ahead = _check_batches(_writes(self.db, run_id, self.cfg.write_batch),
                                        self.cfg.write_batch)  # fmt: skip
        if problem:
            seen.half_written.append(f"run {run_id}: {problem}")
        # a batch whose rows committed but whose checkpoint did not: the window that matters
        seen.phases["in write-batch (committed)" if ahead else _phase(rows)] += 1
        seen.committed_not_checkpointed += ahead
        seen.max_steps = max(seen.max_steps, len(rows))
        seen.span_s = max(seen.span_s, time.monotonic() - claimed)

    def _drain(self, deadline: float) -> list[str]:
        """Let the last worker finish everything; the ids of runs still active at the deadline."""
        worker = self.procs.worker(self.env, "worker-final")
        while time.monotonic() < deadline:
            if not _active_runs(self.db):
                break
            if not worker.alive():
                raise AssertionError(f"the worker exited:\n{worker.log()[-3000:]}")
            time.sleep(0.1)
        self.procs.stop(worker)
        return [r.id for r in _active_runs(self.db)]

    def _verify(self, stuck: list[str]) -> dict[str, Any]:
        with self.db.read() as conn:
            all_runs = list(conn.execute(sa.select(runs)))
            logs = list(conn.execute(sa.select(sync_logs)))
            rows = [dict(r._mapping) for r in conn.execute(sa.select(base_stations))]
        syncs = [r for r in all_runs if r.function_id == SYNC_FUNCTION]
        statuses = Counter(r.status for r in syncs)
        unexplained = [r.id for r in all_runs if r.status not in ("completed", *_ACTIVE)
                       and not (r.error or "").strip()]  # fmt: skip
        stuck_logs = [g.id for g in logs if g.status in ("running", "needs_confirmation")]

        expected = reference(self.twin.bn_records())
        present = {r["serial_number"]: r for r in rows if r["missing_since"] is None}
        serials = Counter(r["serial_number"] for r in rows)
        wrong = [s for s in expected.keys() & present.keys()
                 if {k: present[s][k] for k in FIELDS} != expected[s]]  # fmt: skip

        final = finished_steps(self.db)
        re_executed = [k for k, stamp in self.seen.finished.items() if final.get(k) != stamp]
        resumed = [k for k in self.seen.in_progress if k in final]
        return {
            "kills": self.seen.kills,
            "runs": len(syncs),
            "completed": statuses.get("completed", 0),
            "failed": sum(n for s, n in statuses.items() if s not in ("completed", *_ACTIVE)),
            "stuck": len(stuck) + len(stuck_logs),
            "lost_rows": len(expected.keys() - present.keys()),
            "duplicate_rows": sum(n - 1 for n in serials.values() if n > 1),
            "re_executed_steps": len(re_executed),
            "stations": self.cfg.stations,
            "valid_stations": len(expected),
            "extra_rows": len(present.keys() - expected.keys()),
            "wrong_rows": len(wrong),
            "half_written_batches": len(self.seen.half_written),
            "failed_without_reason": len(unexplained),
            "resumed_steps": len(resumed),
            "batches_committed_before_checkpoint": self.seen.committed_not_checkpointed,
            "finished_steps_checked": len(self.seen.finished),
            "crashes_survived": sum(r.crash_count for r in syncs),
            "kill_points": dict(sorted(self.seen.phases.items())),
            "database": "sqlite" if self.url.startswith("sqlite") else "postgresql",
            "write_batch": self.cfg.write_batch,
            "details": {
                "re_executed": [list(k) for k in re_executed[:10]],
                "half_written": self.seen.half_written[:10],
                "stuck_runs": stuck[:10],
                "stuck_logs": stuck_logs[:10],
                "failed_without_reason": unexplained[:10],
            },
        }


def run_soak(cfg: SoakConfig) -> dict[str, Any]:
    """Run the soak; the figures as a dict (what ``main`` prints)."""
    if cfg.work_dir is not None:
        cfg.work_dir.mkdir(parents=True, exist_ok=True)
        return Soak(cfg, cfg.work_dir).run()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        return Soak(cfg, Path(tmp)).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs of the syncing process")
    parser.add_argument("--stations", type=int, default=10_000, help="BNs the simulator serves")
    parser.add_argument("--write-batch", type=int, default=500, help="stations per write batch")
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    parser.add_argument(
        "--postgres", default="", help="a PostgreSQL URL: soak in a fresh schema there"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of kill points and changes")
    parser.add_argument("--work-dir", type=Path, help="keep logs and database here")
    args = parser.parse_args(argv)
    cfg = SoakConfig(
        kills=args.kills, stations=args.stations, write_batch=args.write_batch,
        database_url=args.database_url, seed=args.seed, work_dir=args.work_dir,
    )  # fmt: skip
    if args.postgres:
        with fresh_schema(args.postgres) as url:
            result = run_soak(replace(cfg, database_url=url))
    else:
        result = run_soak(cfg)
    print(json.dumps(result), flush=True)
    bad = ("stuck", "lost_rows", "duplicate_rows", "re_executed_steps", "extra_rows",
           "wrong_rows", "half_written_batches", "failed_without_reason")  # fmt: skip
    return 1 if any(result[k] for k in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
