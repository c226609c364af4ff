"""Events: what they start, cancel and wake; durable sleep and wait across engines."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from core.clock import FakeClock
from core.engine import CancelOn, Context, Cron, On, RunStatus, StepStatus, Trigger, function
from core.engine.function import cron_event
from jobstore.db import Database
from tests.engine.conftest import MakeEngine, drain


def test_an_event_starts_every_function_that_triggers_on_it(make_engine: MakeEngine) -> None:
    @function("a", triggers=[On("shared")])
    def a(ctx: Context) -> str:
        return "a"

    @function("b", triggers=[On("shared"), On("other")])
    def b(ctx: Context) -> str:
        return "b"

    @function("c", triggers=[On("unrelated")])
    def c(ctx: Context) -> str:
        return "c"

    engine = make_engine(a, b, c)
    result = engine.send("shared", {"x": 1})
    assert len(result.started) == 2
    drain(engine)
    runs = {r.function_id: r for r in engine.list_runs()}
    assert set(runs) == {"a", "b"}
    assert all(r.status == RunStatus.COMPLETED for r in runs.values())


def test_cron_events_start_a_cron_run(make_engine: MakeEngine) -> None:
    @function("nightly", triggers=[Cron("0 0 * * *", "Europe/Paris"), On("manual")])
    def nightly(ctx: Context) -> str:
        return str(ctx.trigger)

    engine = make_engine(nightly)
    cron = engine.send(cron_event("nightly"), idempotency_key="nightly@2026-01-01T00:00")
    manual = engine.send("manual", trigger=Trigger.MANUAL)
    drain(engine)
    assert engine.get_run(cron.run_id or "").output == "cron"
    assert engine.get_run(manual.run_id or "").output == "manual"


def test_the_same_idempotency_key_twice_starts_nothing_new(make_engine: MakeEngine) -> None:
    @function("once", triggers=[On("go")])
    def once(ctx: Context) -> None:
        return None

    engine = make_engine(once)
    first = engine.send("go", idempotency_key="k1")
    drain(engine)
    second = engine.send("go", idempotency_key="k1")
    assert not first.duplicate and second.duplicate
    assert second.event_id == first.event_id
    assert second.started == first.started
    assert len(engine.list_runs()) == 1
    assert len(engine.list_events(name="go")) == 1


def test_cancel_on_cancels_only_the_matching_run(make_engine: MakeEngine, clock: FakeClock) -> None:
    @function(
        "sync",
        triggers=[On("sync/requested")],
        cancel_on=[CancelOn("sync/cancel", match="data.sync_id")],
    )
    def sync(ctx: Context) -> None:
        ctx.step.sleep("pause", 60)

    engine = make_engine(sync)
    one = engine.send("sync/requested", {"sync_id": "one"}).run_id
    two = engine.send("sync/requested", {"sync_id": "two"}).run_id
    drain(engine)
    result = engine.send("sync/cancel", {"sync_id": "two"}, sent_by="bob")
    assert result.cancelled == [two]
    assert engine.send("sync/cancel", {"sync_id": "nope"}).cancelled == []
    clock.advance(61)
    drain(engine)
    assert engine.get_run(one or "").status == RunStatus.COMPLETED
    cancelled = engine.get_run(two or "")
    assert cancelled.status == RunStatus.CANCELLED
    assert cancelled.cancelled_by == "event sync/cancel from bob"


def test_cancel_on_without_match_cancels_every_active_run(make_engine: MakeEngine) -> None:
    @function("w", triggers=[On("start")], cancel_on=[CancelOn("stop-all")])
    def w(ctx: Context) -> None:
        ctx.step.sleep("pause", 60)

    engine = make_engine(w)
    ids = {engine.send("start").run_id for _ in range(3)}
    drain(engine)
    assert set(engine.send("stop-all").cancelled) == ids


def test_sleep_parks_the_run_until_its_time(make_engine: MakeEngine, clock: FakeClock) -> None:
    calls = Counter[str]()

    @function("napper", triggers=[On("go")])
    def napper(ctx: Context) -> str:
        ctx.step.run("before", lambda: calls.update(["before"]))
        ctx.step.sleep("nap", 300)
        ctx.step.run("after", lambda: calls.update(["after"]))
        return "done"

    engine = make_engine(napper)
    run_id = engine.send("go").run_id or ""
    assert drain(engine) == [run_id]
    run = engine.get_run(run_id)
    assert run.status == RunStatus.WAITING
    assert run.lease_owner is None  # a parked run holds nothing
    clock.advance(299)
    assert drain(engine) == []
    clock.advance(2)
    assert drain(engine) == [run_id]
    run = engine.get_run(run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.attempt == 1  # resuming after a sleep is the same attempt
    assert calls == {"before": 1, "after": 1}
    kinds = [(s.name, s.kind.value, s.status.value) for s in engine.run_detail(run_id).steps]
    assert kinds == [
        ("before", "run", "completed"),
        ("nap", "sleep", "completed"),
        ("after", "run", "completed"),
    ]


def test_wait_for_event_survives_a_restart_and_gets_the_matching_event(
    db: Database, make_engine: MakeEngine, clock: FakeClock
) -> None:
    got: list[Any] = []

    def handler(ctx: Context) -> Any:
        approval = ctx.step.wait_for_event(
            "approval", "sync/approved", match="data.sync_id", timeout_s=3600
        )
        got.append(approval)
        return approval["data"]["by"] if approval else None

    def build() -> Any:
        return function("needs-approval", triggers=[On("sync/requested")])(handler)

    first = make_engine(build())
    run_id = first.send("sync/requested", {"sync_id": "s1"}).run_id or ""
    drain(first)
    assert first.get_run(run_id).status == RunStatus.WAITING
    first.stop()
    # A new engine, as after a restart of the process, on the same database.
    second = make_engine(build())
    assert second.send("sync/approved", {"sync_id": "other", "by": "eve"}).woken == []
    woken = second.send("sync/approved", {"sync_id": "s1", "by": "carol"}).woken
    assert woken == [run_id]
    drain(second)
    run = second.get_run(run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.output == "carol"
    assert len(got) == 1 and got[0]["name"] == "sync/approved"


def test_wait_for_event_times_out_with_none(make_engine: MakeEngine, clock: FakeClock) -> None:
    @function("waits", triggers=[On("go")])
    def waits(ctx: Context) -> Any:
        return ctx.step.wait_for_event("reply", "never", timeout_s=60) is None

    engine = make_engine(waits)
    run_id = engine.send("go").run_id or ""
    drain(engine)
    clock.advance(59)
    assert drain(engine) == []
    clock.advance(2)
    drain(engine)
    run = engine.get_run(run_id)
    assert (run.status, run.output) == (RunStatus.COMPLETED, True)
    # The late event finds nothing waiting any more.
    assert engine.send("never").woken == []
    step = engine.run_detail(run_id).steps[0]
    assert (step.status, step.result) == (StepStatus.COMPLETED, None)


def test_a_waiting_run_holds_no_worker_thread(db: Database, make_engine: MakeEngine) -> None:
    done = threading.Event()

    @function("waiter", triggers=[On("wait")])
    def waiter(ctx: Context) -> None:
        ctx.step.wait_for_event("ping", "ping", timeout_s=3600)

    @function("quick", triggers=[On("quick")])
    def quick(ctx: Context) -> None:
        ctx.step.run("mark", lambda: done.set())

    from core.clock import SystemClock

    engine = make_engine(waiter, quick, clock=SystemClock(), workers=1, poll_interval_s=0.02)
    waiting = engine.send("wait").run_id or ""
    engine.start()
    deadline = time.monotonic() + 10
    while engine.get_run(waiting).status != RunStatus.WAITING:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    engine.send("quick")
    assert done.wait(10), "the only worker is stuck with the waiting run"
    engine.send("ping")
    while engine.get_run(waiting).status != RunStatus.COMPLETED:
        assert time.monotonic() < deadline
        time.sleep(0.01)
