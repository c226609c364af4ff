"""Leases, takeovers, dead runs, cancellation, timeouts and shutdown, on a fake clock.

A worker "dies" here by raising a ``BaseException`` the engine does not
handle: the run is left running with its lease, exactly as a killed process
leaves it. The real-process versions of these tests are in test_crash.py.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from core.clock import FakeClock
from core.engine import Context, Engine, On, RunStatus, StepStatus, function
from core.errors import EngineError, UnknownRunError
from tests.engine.conftest import MakeEngine, drain


class Die(BaseException):
    """Stands in for the process being killed mid-step."""


def test_a_worker_that_lost_its_lease_cannot_store_anything(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    calls: Counter[str] = Counter()
    engines: dict[str, Engine] = {}

    def step(name: str) -> Any:
        def run() -> str:
            calls[name] += 1
            if name == "two" and calls[name] == 1:
                # Worker A stalls here (no heartbeat) long enough for its lease
                # to expire, and worker B takes the run over and finishes it.
                clock.advance(31)
                assert engines["b"].run_once() is not None
            return f"{name}#{calls[name]}"

        return run

    @function("three-steps", triggers=[On("go")])
    def three_steps(ctx: Context) -> list[str]:
        return [ctx.step.run(n, step(n)) for n in ("one", "two", "three")]

    engines["a"] = make_engine(three_steps, lease_s=30, worker_id="worker-a")
    engines["b"] = make_engine(three_steps, lease_s=30, worker_id="worker-b")
    run_id = engines["a"].send("go").run_id or ""
    assert engines["a"].run_once() == run_id

    run = engines["a"].get_run(run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.output == ["one#1", "two#2", "three#1"]  # B's results, not A's
    assert run.crash_count == 1
    assert calls == {"one": 1, "two": 2, "three": 1}  # A never reached "three"
    steps = {s.name: s.result for s in engines["a"].run_detail(run_id).steps}
    assert steps == {"one": "one#1", "two": "two#2", "three": "three#1"}


def test_heartbeat_keeps_a_lease_and_notices_a_takeover(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    seen: list[bool] = []

    @function("slow", triggers=[On("go")])
    def slow(ctx: Context) -> None:
        def work() -> None:
            clock.advance(20)
            a.heartbeat()  # renewed: B finds nothing to take
            clock.advance(20)
            seen.append(b.run_once() is None)
            clock.advance(31)
            seen.append(b.run_once() is not None)  # expired: B takes it
            a.heartbeat()  # ...and A notices at its next heartbeat
            seen.append(ctx.cancelled())

        ctx.step.run("work", work)

    a = make_engine(slow, lease_s=30, worker_id="a")
    b = make_engine(function("slow", triggers=[On("go")])(lambda ctx: "b was here"), lease_s=30)
    run_id = a.send("go").run_id or ""
    a.run_once()
    assert seen == [True, True, False]
    assert a.get_run(run_id).output == "b was here"


def test_a_run_that_keeps_dying_ends_dead_and_frees_the_singleton(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    calls: Counter[str] = Counter()

    @function("doomed", triggers=[On("go")], singleton=True)
    def doomed(ctx: Context) -> None:
        ctx.step.run("fine", lambda: calls.update(["fine"]))
        calls["deadly"] += 1
        if calls["deadly"] <= 2:
            raise Die

    engine = make_engine(doomed, lease_s=5, max_crashes=2)
    run_id = engine.send("go").run_id or ""
    with pytest.raises(Die):
        engine.run_once()
    assert engine.get_run(run_id).status == RunStatus.RUNNING
    assert engine.send("go").refused == {"doomed": run_id}
    assert engine.run_once() is None  # the lease is still valid
    clock.advance(6)
    with pytest.raises(Die):
        engine.run_once()
    assert engine.get_run(run_id).crash_count == 1
    clock.advance(6)
    assert engine.run_once() == run_id
    run = engine.get_run(run_id)
    assert run.status == RunStatus.DEAD
    assert run.crash_count == 2
    assert run.error is not None
    assert "stopped renewing the lease 2 time(s)" in run.error
    assert "after step 'fine'" in run.error
    assert calls == {"fine": 1, "deadly": 2}  # the third claim buried it unexecuted
    assert [e.name for e in engine.run_detail(run_id).sent_events] == ["doomed.failed"]
    nxt = engine.send("go")
    assert len(nxt.started) == 1
    drain(engine)
    assert engine.get_run(nxt.run_id or "").status == RunStatus.COMPLETED


def test_cancel_stops_a_running_run_at_the_next_step_boundary(make_engine: MakeEngine) -> None:
    calls: Counter[str] = Counter()

    @function("cancellable", triggers=[On("go")])
    def cancellable(ctx: Context) -> None:
        def first() -> bool:
            calls["first"] += 1
            assert engine.cancel(ctx.run_id, "alice")
            return ctx.cancelled()

        ctx.step.run("first", first)
        ctx.step.run("second", lambda: calls.update(["second"]))

    engine = make_engine(cancellable)
    run_id = engine.send("go").run_id or ""
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == RunStatus.CANCELLED
    assert run.cancelled_by == "alice"
    assert run.error == "cancelled by alice"
    assert calls == {"first": 1}
    assert [(s.name, s.result) for s in engine.run_detail(run_id).steps] == [("first", True)]
    assert not engine.cancel(run_id, "alice")  # already finished


def test_a_cancel_from_another_engine_is_seen_at_the_next_checkpoint(
    make_engine: MakeEngine,
) -> None:
    calls: Counter[str] = Counter()

    @function("remote", triggers=[On("go")])
    def remote(ctx: Context) -> None:
        ctx.step.run("first", lambda: other.cancel(ctx.run_id, "ops") and None)
        ctx.step.run("second", lambda: calls.update(["second"]))

    engine = make_engine(remote)
    other = make_engine(remote)
    run_id = engine.send("go").run_id or ""
    drain(engine)
    assert engine.get_run(run_id).status == RunStatus.CANCELLED
    assert engine.get_run(run_id).cancelled_by == "ops"
    assert calls == {}


def test_cancel_of_a_queued_run_is_immediate(make_engine: MakeEngine) -> None:
    ran: list[str] = []

    @function("never", triggers=[On("go")])
    def never(ctx: Context) -> None:
        ran.append("x")

    engine = make_engine(never)
    run_id = engine.send("go").run_id or ""
    assert engine.cancel(run_id, "bob")
    assert engine.get_run(run_id).status == RunStatus.CANCELLED
    assert drain(engine) == []
    assert ran == []
    with pytest.raises(UnknownRunError):
        engine.cancel("no-such-run", "bob")


def test_runs_time_out_at_a_step_boundary_and_while_waiting(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    @function("slowpoke", triggers=[On("go")], timeout_s=100)
    def slowpoke(ctx: Context) -> None:
        ctx.step.run("long", lambda: clock.advance(101))
        ctx.step.run("never", lambda: None)

    @function("sleepy", triggers=[On("nap")], timeout_s=100)
    def sleepy(ctx: Context) -> None:
        ctx.step.sleep("forever", 10_000)

    engine = make_engine(slowpoke, sleepy)
    run_id = engine.send("go").run_id or ""
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == RunStatus.TIMED_OUT
    assert run.error == "timed out after 100 s"
    assert [s.name for s in engine.run_detail(run_id).steps] == ["long"]

    nap = engine.send("nap").run_id or ""
    drain(engine)
    parked = engine.get_run(nap)
    assert parked.deadline_at is not None
    assert parked.wake_at == parked.deadline_at  # wakes for the deadline, not after it
    clock.advance(101)
    drain(engine)
    assert engine.get_run(nap).status == RunStatus.TIMED_OUT


def test_heartbeat_times_out_a_run_stuck_in_a_step(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    @function("stuck", triggers=[On("go")], timeout_s=50)
    def stuck(ctx: Context) -> None:
        def hang() -> str:
            clock.advance(60)
            engine.heartbeat()
            return "too late"

        ctx.step.run("hang", hang)

    engine = make_engine(stuck)
    run_id = engine.send("go").run_id or ""
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == RunStatus.TIMED_OUT
    assert engine.run_detail(run_id).steps == []  # the late result was refused


def test_default_timeout_is_two_hours(make_engine: MakeEngine, clock: FakeClock) -> None:
    @function("plain", triggers=[On("go")])
    def plain(ctx: Context) -> None:
        ctx.step.sleep("nap", 3 * 3600)

    engine = make_engine(plain)
    run_id = engine.send("go").run_id or ""
    drain(engine)
    run = engine.get_run(run_id)
    assert run.deadline_at == pytest.approx(clock.now().timestamp() + 7200)
    clock.advance(7201)
    drain(engine)
    assert engine.get_run(run_id).status == RunStatus.TIMED_OUT


def test_stopping_hands_the_run_back_and_another_engine_resumes_it(
    make_engine: MakeEngine,
) -> None:
    calls: Counter[str] = Counter()

    @function("handback", triggers=[On("go")])
    def handback(ctx: Context) -> int:
        def first() -> int:
            calls["first"] += 1
            first_engine.stop()
            return 1

        a = ctx.step.run("first", first)
        b = ctx.step.run("second", lambda: calls.update(["second"]) or 2)
        return int(a) + int(b)

    first_engine = make_engine(handback)
    run_id = first_engine.send("go").run_id or ""
    first_engine.run_once()
    run = first_engine.get_run(run_id)
    assert (run.status, run.attempt, run.lease_owner) == (RunStatus.QUEUED, 0, None)
    second = make_engine(handback)
    drain(second)
    run = second.get_run(run_id)
    assert (run.status, run.output, run.attempt) == (RunStatus.COMPLETED, 3, 1)
    assert calls == {"first": 1, "second": 1}


def test_retry_resumes_after_the_completed_steps_and_rerun_starts_over(
    make_engine: MakeEngine,
) -> None:
    calls: Counter[str] = Counter()
    broken = {"yes": True}

    def fragile_step() -> str:
        calls["fragile"] += 1
        if broken["yes"]:
            raise RuntimeError("still broken")
        return "fixed"

    @function("resumable", triggers=[On("go")], retries=0, singleton=True)
    def resumable(ctx: Context) -> list[str]:
        a = ctx.step.run("prepare", lambda: calls.update(["prepare"]) or "prepared")
        b = ctx.step.run("fragile", fragile_step)
        return [a, b]

    engine = make_engine(resumable)
    failed = engine.send("go", {"n": 1}).run_id or ""
    drain(engine)
    assert engine.get_run(failed).status == RunStatus.FAILED
    broken["yes"] = False

    retried = engine.retry(failed, "alice")
    new_id = retried.run_id or ""
    with pytest.raises(EngineError):
        engine.retry(new_id, "alice")  # still queued
    assert engine.retry(failed, "bob").refused == {"resumable": new_id}  # singleton holds
    drain(engine)
    run = engine.get_run(new_id)
    assert (run.status, run.trigger.value, run.parent_run_id) == (
        RunStatus.COMPLETED,
        "retry",
        failed,
    )
    assert run.triggered_by == "alice"
    assert run.output == ["prepared", "fixed"]
    assert calls == {"prepare": 1, "fragile": 2}
    detail = engine.run_detail(new_id)
    assert detail.event is not None and detail.event.data == {"n": 1}

    rerun = engine.retry(failed, "carol", from_scratch=True).run_id or ""
    drain(engine)
    assert engine.get_run(rerun).trigger.value == "rerun"
    assert calls == {"prepare": 2, "fragile": 3}
    statuses = [s.status for s in engine.run_detail(rerun).steps]
    assert statuses == [StepStatus.COMPLETED, StepStatus.COMPLETED]
