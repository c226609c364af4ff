"""Cron schedules: APScheduler jobs in the database, fired by one process at a time.

Every process runs ``SchedulerService``; only the one holding the
``scheduler`` lease runs an APScheduler ``BackgroundScheduler`` (APScheduler 3
must never share a job store between two live schedulers). The others only
work, and take the lease over within one lease period if its holder dies.
A fire sends ``cron/<function>`` with the idempotency key
``cron:<job>:<scheduled time>``, so even two schedulers, a restart or a
catch-up can start the scheduled run only once.

Missed fires: APScheduler keeps each job's next fire time in the database.
When a process takes the lease it keeps those stored jobs (``add_job`` with
``replace_existing`` would recompute them and lose the missed fire) and lets
APScheduler coalesce every missed fire of a job into ONE catch-up run, if the
latest missed time is within ``misfire_grace_s``; older misses are dropped.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from core.clock import Clock, SystemClock
from core.cron import cron_trigger
from core.engine import Engine, Registry, SendResult, Trigger
from core.engine.function import cron_event, validate_cron
from core.errors import EngineError, StorageError
from jobstore import leases
from jobstore import schedules as store
from jobstore.db import Database
from jobstore.schedules import APSCHEDULER_TABLE, ScheduleRow

log = logging.getLogger("stationsync.scheduler")

LEASE_NAME = "scheduler"
JOB_TARGET = "core.scheduler:fire_cron"

# The service whose APScheduler is running in this process; job targets reach
# it through here because APScheduler stores them as text, not objects.
_leader: SchedulerService | None = None
_leader_lock = threading.Lock()


def fire_cron(job_id: str) -> None:
    """APScheduler job target: send the cron event of one schedule."""
    with _leader_lock:
        service = _leader
    if service is None:
        log.warning("cron job %s fired but no scheduler is active in this process", job_id)
        return
    service.fire(job_id)


def job_id_for(function_id: str, index: int) -> str:
    return f"{function_id}:cron:{index}"


def trigger_for(cron: str, timezone: str) -> CronTrigger:
    return cron_trigger(cron, timezone)


def next_fire_times(cron: str, timezone: str, n: int = 5, after: datetime | None = None) -> list[datetime]:
    """The next ``n`` fire times (aware, in the schedule's zone); raises InvalidCronError."""
    validate_cron(cron, timezone)
    trigger = trigger_for(cron, timezone)
    out: list[datetime] = []
    cursor = after or datetime.now(UTC)
    while len(out) < n:
        nxt = trigger.get_next_fire_time(None, cursor)
        if nxt is None:
            break
        # When clocks fall back, a wall time happens twice; cron fires it once.
        if not out or wall_time(nxt) != wall_time(out[-1]):
            out.append(nxt)
        cursor = nxt.astimezone(UTC) + timedelta(minutes=1)  # wall-clock arithmetic loses the fold
    return out


def wall_time(moment: datetime) -> str:
    """The local date and time a fire stands for, without its UTC offset."""
    return moment.replace(tzinfo=None).isoformat(timespec="minutes")


def latest_fire_at_or_before(cron: str, timezone: str, now: datetime, lookback_s: float) -> datetime:
    """The scheduled time a fire at ``now`` stands for (the latest one not after it)."""
    trigger = trigger_for(cron, timezone)
    cursor = (now - timedelta(seconds=lookback_s + 60)).astimezone(UTC)
    latest: datetime | None = None
    while True:
        nxt = trigger.get_next_fire_time(None, cursor)
        if nxt is None or nxt > now:
            break
        latest = nxt
        cursor = nxt.astimezone(UTC) + timedelta(minutes=1)
    return latest or now.replace(second=0, microsecond=0)


@dataclass(frozen=True)
class ScheduleInfo:
    job_id: str
    function_id: str
    function_name: str
    cron: str
    timezone: str
    paused: bool
    next_fires: list[datetime]
    updated_by: str
    updated_at: float


class SchedulerService:
    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        *,
        holder: str,
        clock: Clock | None = None,
        lease_s: float = 30.0,
        heartbeat_s: float = 10.0,
        misfire_grace_s: int = 3600,
        enabled: bool = True,
    ) -> None:
        self.engine = engine
        self.db = engine.db
        self.registry = registry
        self.holder = holder
        self.clock = clock or SystemClock()
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.misfire_grace_s = misfire_grace_s
        self.enabled = enabled
        self._aps: BackgroundScheduler | None = None
        self._aps_db: Database | None = None
        self._seen_version: tuple[int, float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()

    # --- lifecycle ----------------------------------------------------------

    def ensure_schedules(self) -> None:
        """Store the code's cron triggers as schedules unless already stored."""
        now = self.clock.now().timestamp()
        rows = [
            ScheduleRow(job_id_for(fn.id, i), fn.id, c.expression, c.timezone, False, "default", now)
            for fn in self.registry
            for i, c in enumerate(fn.crons)
        ]
        store.ensure(self.db, rows)

    def start(self) -> None:
        self.ensure_schedules()
        if not self.enabled or self._thread is not None:
            return
        self._stop.clear()
        self.tick()
        self._thread = threading.Thread(target=self._loop, name="stationsync-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._lock:
            if self._aps is not None:
                self._stop_aps()
                leases.release(self.db, LEASE_NAME, self.holder)

    def _loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.tick()
            except StorageError as exc:
                log.warning("scheduler lease check failed (%s); will try again", exc)
            except Exception:  # the loop must outlive anything one tick meets
                log.exception("scheduler lease check failed; will try again")

    def tick(self) -> None:
        """Take or renew the lease; start, reconcile or stop APScheduler to match."""
        now = self.clock.now().timestamp()
        with self._lock:
            if leases.acquire(self.db, LEASE_NAME, self.holder, now, self.lease_s):
                if self._aps is None:
                    self._start_aps()
                elif store.version(self.db) != self._seen_version:
                    self._reconcile()
            elif self._aps is not None:
                log.warning("scheduler lease moved to another process; stopping this scheduler")
                self._stop_aps()

    @property
    def is_leader(self) -> bool:
        return self._aps is not None

    def _start_aps(self) -> None:
        global _leader
        # The job store gets an engine of its own: APScheduler disposes it on shutdown.
        self._aps_db = Database(self.db.url)
        aps = BackgroundScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(
                    engine=self._aps_db.write_engine, tablename=APSCHEDULER_TABLE
                )
            },
            job_defaults={
                "coalesce": True,
                "misfire_grace_time": self.misfire_grace_s,
                "max_instances": 1,
            },
            timezone="UTC",
        )
        aps.start(paused=True)
        self._aps = aps
        with _leader_lock:
            _leader = self
        self._reconcile()
        aps.resume()
        log.info("this process (%s) now runs the scheduler", self.holder)

    def _stop_aps(self) -> None:
        global _leader
        aps, self._aps = self._aps, None
        if aps is not None:
            # APScheduler makes one more pass over due jobs after shutdown() and
            # would advance a missed job it can no longer run; detach the store first.
            aps.remove_jobstore("default")
            aps.shutdown(wait=False)
        with _leader_lock:
            if _leader is self:
                _leader = None

    def _reconcile(self) -> None:
        """Make APScheduler's jobs match the schedules table, keeping missed fires."""
        aps = self._aps
        if aps is None:
            return
        self._seen_version = store.version(self.db)
        wanted = {r.job_id: r for r in store.all_rows(self.db) if r.function_id in self.registry.functions}
        for job in aps.get_jobs():
            if job.id not in wanted:
                aps.remove_job(job.id)
        for row in wanted.values():
            trigger = trigger_for(row.cron, row.timezone)
            job = aps.get_job(row.job_id)
            if job is None:
                aps.add_job(
                    JOB_TARGET, trigger=trigger, args=[row.job_id], id=row.job_id,
                    name=row.function_id, replace_existing=True,
                )
                job = aps.get_job(row.job_id)
            elif repr(job.trigger) != repr(trigger):
                aps.reschedule_job(row.job_id, trigger=trigger)
                job = aps.get_job(row.job_id)
            if job is None:
                continue
            if row.paused and job.next_run_time is not None:
                aps.pause_job(row.job_id)
            elif not row.paused and job.next_run_time is None:
                aps.resume_job(row.job_id)

    # --- firing -------------------------------------------------------------

    def fire(self, job_id: str, at: datetime | None = None) -> SendResult | None:
        row = store.get_row(self.db, job_id)
        if row is None:
            log.warning("cron job %s has no schedule row; ignoring the fire", job_id)
            return None
        now = at or self.clock.now()
        scheduled = latest_fire_at_or_before(row.cron, row.timezone, now, self.misfire_grace_s)
        stamp = scheduled.astimezone(UTC).isoformat()
        # Keyed on the local wall time, so the repeated hour when clocks fall
        # back cannot start the same scheduled run a second time.
        key = f"cron:{job_id}:{wall_time(scheduled)}"
        result = self.engine.send(
            cron_event(row.function_id),
            {"job_id": job_id, "scheduled_for": stamp, "cron": row.cron, "timezone": row.timezone},
            idempotency_key=key,
            sent_by=f"scheduler ({self.holder})",
            trigger=Trigger.CRON,
        )
        if result.duplicate:
            log.info("cron %s for %s already fired; not starting it twice", job_id, stamp)
        return result

    # --- operator commands --------------------------------------------------

    def schedules(self, n: int = 5) -> list[ScheduleInfo]:
        out = []
        for row in store.all_rows(self.db):
            fn = self.registry.functions.get(row.function_id)
            fires = [] if row.paused else next_fire_times(row.cron, row.timezone, n, self.clock.now())
            out.append(
                ScheduleInfo(
                    row.job_id, row.function_id, fn.title if fn else row.function_id, row.cron,
                    row.timezone, row.paused, fires, row.updated_by, row.updated_at,
                )
            )
        return out

    def _edit(self, job_id: str, by: str, **values: Any) -> None:
        if not store.update(self.db, job_id, by, self.clock.now().timestamp(), **values):
            raise EngineError(f"no schedule with id {job_id!r}")
        with self._lock:
            if self._aps is not None:
                self._reconcile()

    def pause(self, job_id: str, by: str) -> None:
        self._edit(job_id, by, paused=True)

    def resume(self, job_id: str, by: str) -> None:
        self._edit(job_id, by, paused=False)

    def set_cron(self, job_id: str, cron: str, by: str, timezone: str | None = None) -> list[datetime]:
        """Change a schedule's expression (validated); returns the next fire times."""
        row = store.get_row(self.db, job_id)
        if row is None:
            raise EngineError(f"no schedule with id {job_id!r}")
        zone = timezone or row.timezone
        fires = next_fire_times(cron.strip(), zone, 5, self.clock.now())
        self._edit(job_id, by, cron=" ".join(cron.split()), timezone=zone)
        return fires

    def run_now(self, job_id: str, by: str) -> SendResult:
        """Start the schedule's function now, as a manual run by ``by``."""
        row = store.get_row(self.db, job_id)
        if row is None:
            raise EngineError(f"no schedule with id {job_id!r}")
        fn = self.registry.get(row.function_id)
        events = [e for e in fn.events if e != cron_event(fn.id)]
        name = events[0] if events else cron_event(fn.id)
        return self.engine.send(name, {"job_id": job_id}, sent_by=by, trigger=Trigger.MANUAL)

    def lease(self) -> leases.LeaseInfo | None:
        return leases.get(self.db, LEASE_NAME)
