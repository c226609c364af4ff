"""The scheduler for real: APScheduler on the SQLAlchemy job store, leases, catch-up, DST."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.engine import Cron, Engine, Function, On, Registry, RunStatus, Trigger
from core.errors import InvalidCronError
from core.scheduler import (
    SchedulerService,
    latest_fire_at_or_before,
    next_fire_times,
)
from jobstore import leases
from jobstore.db import Database

JOB = "nightly:cron:0"


def make(db: Database, cron: str = "0 0 * * *", tz: str = "Africa/Johannesburg") -> tuple[Engine, Registry]:
    reg = Registry()
    reg.add(Function("nightly", lambda ctx: "ok", triggers=(Cron(cron, tz), On("nightly/run"))))
    return Engine(db, reg), reg


def service(engine: Engine, reg: Registry, holder: str, **kw: object) -> SchedulerService:
    opts: dict[str, object] = {"lease_s": 1.0, "heartbeat_s": 0.1, "misfire_grace_s": 3600}
    opts.update(kw)
    return SchedulerService(engine, reg, holder=holder, **opts)  # type: ignore[arg-type]


def store_missed_fire(service: SchedulerService, when: datetime) -> None:
    """Leave the job in the store with a fire time in the past, as a stopped process would."""
    service.ensure_schedules()
    service._start_aps()
    assert service._aps is not None
    service._aps.pause()  # so that moving the fire time into the past does not fire it now
    service._aps.modify_job(JOB, next_run_time=when)
    service._stop_aps()


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_only_one_process_holds_the_scheduler_and_it_moves_when_the_holder_dies(db: Database) -> None:
    engine, reg = make(db)
    a, b = service(engine, reg, "A"), service(engine, reg, "B")
    a.start()
    b.start()
    try:
        assert a.is_leader and not b.is_leader
        lease = leases.get(db, "scheduler")
        assert lease is not None and lease.holder == "A"
        # A dies without a word: its loop stops and it never renews or releases.
        a._stop.set()
        assert a._thread is not None
        a._thread.join()
        started = time.monotonic()
        assert wait_for(lambda: b.is_leader, timeout=5)
        assert time.monotonic() - started < 1.0 + 0.5  # within one lease period (+ a tick)
        lease = leases.get(db, "scheduler")
        assert lease is not None and lease.holder == "B"
        a.tick()  # A comes back: it must notice and stay a follower
        assert not a.is_leader
    finally:
        a.stop()
        b.stop()


def test_two_schedulers_on_one_store_fire_a_missed_cron_exactly_once(db: Database) -> None:
    engine, reg = make(db, cron="*/5 * * * *", tz="UTC")
    a, b = service(engine, reg, "A"), service(engine, reg, "B")
    store_missed_fire(a, datetime.now(UTC) - timedelta(seconds=30))
    # Both start APScheduler on the same job store (what the lease normally
    # prevents): each sees the due job and fires it.
    a._start_aps()
    b._start_aps()
    try:
        assert wait_for(lambda: len(engine.list_runs(function_id="nightly")) >= 1, timeout=30)
        # Both schedulers process the due job. A second fire would add an event
        # (and a run) unless refused as a duplicate: give it time to show up.
        assert not wait_for(lambda: len(engine.list_events(name="cron/nightly")) > 1, timeout=3)
        runs = engine.list_runs(function_id="nightly")
        assert len(runs) == 1
        assert runs[0].trigger == Trigger.CRON
        fires = engine.list_events(name="cron/nightly")
        assert len(fires) == 1
        scheduled = datetime.fromisoformat(fires[0].data["scheduled_for"])
        fired_at = datetime.fromtimestamp(fires[0].created_at, UTC)
        assert scheduled.minute % 5 == 0 and scheduled.second == 0
        assert fired_at - timedelta(minutes=5) < scheduled <= fired_at
    finally:
        a._stop_aps()
        b._stop_aps()


def test_fires_while_down_coalesce_into_one_catch_up_within_the_grace(db: Database) -> None:
    engine, reg = make(db, cron="* * * * *", tz="UTC")
    a = service(engine, reg, "A", misfire_grace_s=600)
    store_missed_fire(a, datetime.now(UTC) - timedelta(minutes=4))
    a.start()  # a restart: takes the lease, keeps the stored next fire time
    try:
        assert wait_for(lambda: len(engine.list_runs(function_id="nightly")) == 1, timeout=30)
        time.sleep(0.5)
        assert len(engine.list_runs(function_id="nightly")) == 1  # four misses, one run
    finally:
        a.stop()


def test_a_miss_older_than_the_grace_is_dropped(db: Database) -> None:
    engine, reg = make(db, cron="0 0 * * *", tz="UTC")
    a = service(engine, reg, "A", misfire_grace_s=60)
    store_missed_fire(a, datetime.now(UTC) - timedelta(hours=2))
    a.start()
    try:
        time.sleep(1.0)
        assert engine.list_runs(function_id="nightly") == []
        assert a._aps is not None
        job = a._aps.get_job(JOB)
        assert job is not None and job.next_run_time > datetime.now(UTC)
    finally:
        a.stop()


def test_fire_is_idempotent_per_scheduled_time(db: Database) -> None:
    engine, reg = make(db)
    a = service(engine, reg, "A")
    a.ensure_schedules()
    at = datetime(2026, 11, 23, 22, 0, 3, tzinfo=UTC)  # 00:00:03 in Johannesburg
    first = a.fire(JOB, at=at)
    again = a.fire(JOB, at=at + timedelta(seconds=20))
    assert first is not None and again is not None
    assert len(first.started) == 1 and again.duplicate and again.started == first.started
    run = engine.get_run(first.started[0])
    assert run.trigger == Trigger.CRON and run.triggered_by.startswith("scheduler")
    ev = engine.list_events(name="cron/nightly")[0]
    assert ev.data["scheduled_for"] == "2026-11-23T22:00:00+00:00"
    nxt = a.fire(JOB, at=at + timedelta(days=1))
    assert nxt is not None and nxt.started and nxt.started != first.started


def test_pause_resume_edit_and_run_now(db: Database) -> None:
    engine, reg = make(db)
    a = service(engine, reg, "A")
    a.start()
    try:
        assert a._aps is not None
        a.pause(JOB, "ops@example.com")
        assert a._aps.get_job(JOB).next_run_time is None
        info = a.schedules()[0]
        assert info.paused and info.next_fires == [] and info.updated_by == "ops@example.com"
        a.resume(JOB, "ops@example.com")
        assert a._aps.get_job(JOB).next_run_time is not None
        fires = a.set_cron(JOB, "30 2 * * 1", "ops@example.com")
        assert all(f.hour == 2 and f.minute == 30 and f.weekday() == 0 for f in fires)
        assert a._aps.get_job(JOB).next_run_time == fires[0]
        with pytest.raises(InvalidCronError, match="five fields"):
            a.set_cron(JOB, "every night", "ops@example.com")
        with pytest.raises(InvalidCronError, match="not valid"):
            a.set_cron(JOB, "61 * * * *", "ops@example.com")
        assert a.schedules()[0].cron == "30 2 * * 1"  # a refused edit changes nothing
        result = a.run_now(JOB, "ops@example.com")
        run = engine.get_run(result.started[0])
        assert run.trigger == Trigger.MANUAL and run.triggered_by == "ops@example.com"
        assert run.status == RunStatus.QUEUED
    finally:
        a.stop()


def test_an_edit_survives_a_restart(db: Database) -> None:
    engine, reg = make(db)
    a = service(engine, reg, "A")
    a.start()
    a.set_cron(JOB, "15 3 * * *", "ops")
    a.stop()
    b = service(engine, reg, "B")
    b.start()
    try:
        assert b.schedules()[0].cron == "15 3 * * *"
        assert b._aps is not None
        nxt = b._aps.get_job(JOB).next_run_time.astimezone(ZoneInfo("Africa/Johannesburg"))
        assert (nxt.hour, nxt.minute) == (3, 15)
    finally:
        b.stop()


def test_midnight_in_johannesburg_is_22_utc() -> None:
    fires = next_fire_times("0 0 * * *", "Africa/Johannesburg", 3, datetime(2026, 11, 23, 12, tzinfo=UTC))
    assert [f.astimezone(UTC).isoformat() for f in fires] == [
        "2026-11-23T22:00:00+00:00",
        "2026-11-24T22:00:00+00:00",
        "2026-11-25T22:00:00+00:00",
    ]


def test_london_spring_forward_and_fall_back() -> None:
    # 2026-03-29: 01:00 GMT jumps to 02:00 BST; 01:30 does not exist that day.
    spring = next_fire_times("30 1 * * *", "Europe/London", 3, datetime(2026, 3, 28, 12, tzinfo=UTC))
    utc = [f.astimezone(UTC) for f in spring]
    assert utc[0] == datetime(2026, 3, 29, 1, 30, tzinfo=UTC) - timedelta(hours=1) or utc[0].date() >= datetime(2026, 3, 29).date()
    assert utc == sorted(set(utc)), "fire times must be strictly increasing"
    assert utc[-1] == datetime(2026, 3, 31, 0, 30, tzinfo=UTC)  # 01:30 BST
    # 2026-10-25: 02:00 BST falls back to 01:00 GMT; 01:30 happens twice but fires once.
    autumn = next_fire_times("30 1 * * *", "Europe/London", 3, datetime(2026, 10, 24, 12, tzinfo=UTC))
    days = [f.astimezone(ZoneInfo("Europe/London")).date() for f in autumn]
    assert len(days) == len(set(days)) == 3
    assert autumn[0].astimezone(UTC) in {
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
    }
    assert autumn[1].astimezone(UTC) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # 01:30 GMT


def test_the_fire_time_a_late_fire_stands_for() -> None:
    now = datetime(2026, 11, 23, 22, 7, 0, tzinfo=UTC)  # 00:07 SAST, seven minutes late
    assert latest_fire_at_or_before("0 0 * * *", "Africa/Johannesburg", now, 3600) == datetime(
        2026, 11, 24, 0, 0, tzinfo=ZoneInfo("Africa/Johannesburg")
    )


def test_unknown_timezone_is_refused() -> None:
    with pytest.raises(InvalidCronError, match="unknown time zone"):
        next_fire_times("0 0 * * *", "Mars/Olympus_Mons")


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("1", {"mon"}),
        ("0", {"sun"}),
        ("7", {"sun"}),
        ("1-5", {"mon", "tue", "wed", "thu", "fri"}),
        ("5-7", {"fri", "sat", "sun"}),
        ("*/2", {"sun", "tue", "thu", "sat"}),
        ("sat,sun", {"sat", "sun"}),
        ("MON-wed", {"mon", "tue", "wed"}),
    ],
)
def test_weekdays_mean_what_cron_means(field: str, days: set[str]) -> None:
    start = datetime(2026, 11, 22, 12, tzinfo=UTC)  # a Sunday
    fires = next_fire_times(f"0 9 * * {field}", "UTC", 14, start)
    names = {f.strftime("%a").lower() for f in fires}
    assert names == days


def test_backwards_weekday_range_is_refused() -> None:
    with pytest.raises(InvalidCronError):
        next_fire_times("0 0 * * 5-1", "UTC")
