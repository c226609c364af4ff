"""Retries with backoff and jitter, the end of the retry budget, and failure handlers."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from core.clock import FakeClock
from core.engine import Context, On, RunStatus, function
from core.engine.context import backoff_s
from tests.engine.conftest import MakeEngine, drain


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    for attempt in range(1, 8):
        ceiling = min(2.0 * 2 ** (attempt - 1), 50.0)
        draws = [backoff_s(2.0, 50.0, attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert len(set(draws)) > 150  # jittered, not a fixed delay
    assert max(backoff_s(2.0, 50.0, 30) for _ in range(50)) <= 50.0


def test_a_failing_run_is_not_claimable_before_its_wake_time(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    calls = Counter[str]()

    @function("always-fails", triggers=[On("go")], retries=3, backoff_initial_s=10)
    def always_fails(ctx: Context) -> None:
        def boom() -> None:
            calls["boom"] += 1
            raise RuntimeError(f"boom {calls['boom']}")

        ctx.step.run("boom", boom)

    engine = make_engine(always_fails)
    run_id = engine.send("go").run_id
    assert run_id is not None
    assert drain(engine) == [run_id]
    for attempt in range(1, 4):
        run = engine.get_run(run_id)
        assert run.status == RunStatus.QUEUED
        assert run.wake_at is not None
        wait = run.wake_at - clock.now().timestamp()
        assert 0 <= wait <= 10 * 2 ** (attempt - 1) + 1e-6
        if wait > 0.002:
            clock.advance(wait - 0.001)
            assert engine.run_once() is None, "claimable before its wake time"
        clock.advance(0.002)
        assert engine.run_once() == run_id
    run = engine.get_run(run_id)
    assert run.status == RunStatus.FAILED
    assert calls["boom"] == 4  # the first try and three retries
    assert run.error is not None
    assert "step 'boom' failed (after 4 attempt(s)): RuntimeError: boom 4" == run.error
    assert engine.run_detail(run_id).steps[0].attempts == 4


def test_retries_zero_fails_on_the_first_error(make_engine: MakeEngine) -> None:
    @function("once", triggers=[On("go")], retries=0)
    def once(ctx: Context) -> None:
        ctx.step.run("x", lambda: 1 / 0)

    engine = make_engine(once)
    run_id = engine.send("go").run_id
    drain(engine)
    assert engine.get_run(run_id or "").status == RunStatus.FAILED


def test_finished_runs_emit_events_other_functions_trigger_on(
    make_engine: MakeEngine,
) -> None:
    heard: list[tuple[str, dict[str, Any]]] = []

    @function("ok", triggers=[On("go-ok")])
    def ok(ctx: Context) -> dict[str, int]:
        return {"n": 3}

    @function("bad", triggers=[On("go-bad")], retries=0)
    def bad(ctx: Context) -> None:
        raise ValueError("nope")

    @function("long", triggers=[On("go-long")])
    def long(ctx: Context) -> None:
        ctx.step.sleep("nap", 3600)

    @function("listener", triggers=[On("ok.completed"), On("bad.failed"), On("long.cancelled")])
    def listener(ctx: Context) -> None:
        heard.append((ctx.event["name"], ctx.event["data"]))

    engine = make_engine(ok, bad, long, listener)
    ok_run = engine.send("go-ok").run_id
    bad_run = engine.send("go-bad").run_id
    long_run = engine.send("go-long").run_id
    drain(engine)
    assert engine.cancel(long_run or "", "alice")
    drain(engine)
    by_name = dict(heard)
    assert by_name["ok.completed"]["output"] == {"n": 3}
    assert by_name["ok.completed"]["run_id"] == ok_run
    assert by_name["bad.failed"]["status"] == "failed"
    assert "nope" in by_name["bad.failed"]["error"]
    assert by_name["bad.failed"]["run_id"] == bad_run
    assert by_name["long.cancelled"]["run_id"] == long_run
    assert "alice" in by_name["long.cancelled"]["error"]


def test_on_failure_handler_runs_with_the_failed_run(make_engine: MakeEngine) -> None:
    told: list[dict[str, Any]] = []

    def alert(ctx: Context) -> None:
        ctx.step.run("alert", lambda: told.append(ctx.data) or None)

    @function("fragile", triggers=[On("go")], retries=0, on_failure=alert)
    def fragile(ctx: Context) -> None:
        ctx.step.run("explode", lambda: 1 / 0)

    engine = make_engine(fragile)
    assert "fragile.on-failure" in engine.registry.functions
    run_id = engine.send("go").run_id
    drain(engine)
    assert len(told) == 1
    assert told[0]["run_id"] == run_id
    assert "ZeroDivisionError" in told[0]["error"]
    handler_runs = engine.list_runs(function_id="fragile.on-failure")
    assert [r.status for r in handler_runs] == [RunStatus.COMPLETED]


@pytest.mark.parametrize("fails", [False, True])
def test_on_failure_does_not_run_when_the_run_succeeds(
    make_engine: MakeEngine, fails: bool
) -> None:
    told: list[str] = []

    @function("maybe", triggers=[On("go")], retries=0, on_failure=lambda ctx: told.append("x"))
    def maybe(ctx: Context) -> None:
        if fails:
            raise RuntimeError("failed")

    engine = make_engine(maybe)
    engine.send("go")
    drain(engine)
    assert told == (["x"] if fails else [])
