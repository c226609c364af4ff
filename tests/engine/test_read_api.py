"""The read API (list_runs, run_detail, active_run) and the worker pool end to end."""

from __future__ import annotations

import threading
import time

import pytest

from core.clock import FakeClock, SystemClock
from core.engine import Context, On, RunStatus, Trigger, function
from core.errors import UnknownRunError
from tests.engine.conftest import MakeEngine, drain


def test_list_runs_filters_and_orders_newest_first(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    @function("ok", triggers=[On("ok")])
    def ok(ctx: Context) -> None:
        return None

    @function("bad", triggers=[On("bad")], retries=0)
    def bad(ctx: Context) -> None:
        raise RuntimeError("x")

    engine = make_engine(ok, bad)
    ids = []
    for name, trigger in [("ok", None), ("bad", None), ("ok", Trigger.MANUAL)]:
        ids.append(engine.send(name, trigger=trigger).run_id)
        clock.advance(10)
    t_mid = clock.now().timestamp() - 25  # between the first and the second run
    drain(engine)

    assert [r.id for r in engine.list_runs()] == ids[::-1]
    assert [r.id for r in engine.list_runs(function_id="ok")] == [ids[2], ids[0]]
    assert [r.id for r in engine.list_runs(statuses=["failed"])] == [ids[1]]
    assert [r.id for r in engine.list_runs(statuses=[RunStatus.COMPLETED])] == [ids[2], ids[0]]
    assert [r.id for r in engine.list_runs(triggers=["manual"])] == [ids[2]]
    assert [r.id for r in engine.list_runs(since=t_mid)] == [ids[2], ids[1]]
    assert [r.id for r in engine.list_runs(until=t_mid)] == [ids[0]]
    assert [r.id for r in engine.list_runs(limit=1, offset=1)] == [ids[1]]


def test_run_detail_has_steps_in_order_and_events(make_engine: MakeEngine) -> None:
    @function("detailed", triggers=[On("go")])
    def detailed(ctx: Context) -> str:
        ctx.step.run("b-first", lambda: 1)
        ctx.step.send_event("tell", "told", {"x": 1})
        ctx.step.run("a-second", lambda: 2)
        return "ok"

    engine = make_engine(detailed)
    run_id = engine.send("go", {"k": "v"}, sent_by="alice").run_id or ""
    drain(engine)
    detail = engine.run_detail(run_id)
    assert detail.run.id == run_id
    assert [(s.name, s.seq, s.kind.value) for s in detail.steps] == [
        ("b-first", 0, "run"),
        ("tell", 1, "send"),
        ("a-second", 2, "run"),
    ]
    assert all(s.duration_s is not None and s.duration_s >= 0 for s in detail.steps)
    assert detail.event is not None
    assert (detail.event.name, detail.event.data, detail.event.sent_by) == (
        "go",
        {"k": "v"},
        "alice",
    )
    assert [e.name for e in detail.sent_events] == ["told", "detailed.completed"]
    with pytest.raises(UnknownRunError):
        engine.run_detail("missing")


def test_active_run_is_the_newest_unfinished_one(make_engine: MakeEngine, clock: FakeClock) -> None:
    @function("napper", triggers=[On("go")])
    def napper(ctx: Context) -> None:
        ctx.step.sleep("nap", 100)

    engine = make_engine(napper)
    assert engine.active_run("napper") is None
    first = engine.send("go").run_id
    clock.advance(1)
    second = engine.send("go").run_id
    drain(engine)
    active = engine.active_run("napper")
    assert active is not None and active.id == second and active.status == RunStatus.WAITING
    clock.advance(101)
    drain(engine)
    assert engine.active_run("napper") is None
    assert {r.id for r in engine.list_runs(statuses=["completed"])} == {first, second}


def test_the_worker_pool_runs_many_runs_and_stops_cleanly(make_engine: MakeEngine) -> None:
    lock = threading.Lock()
    running = {"now": 0, "max": 0}

    @function("parallel", triggers=[On("go")], concurrency=2)
    def parallel(ctx: Context) -> int:
        def work() -> int:
            with lock:
                running["now"] += 1
                running["max"] = max(running["max"], running["now"])
            time.sleep(0.05)
            with lock:
                running["now"] -= 1
            return 1

        return int(ctx.step.run("work", work))

    engine = make_engine(parallel, clock=SystemClock(), workers=4, poll_interval_s=0.02)
    ids = [engine.send("go").run_id for _ in range(8)]
    engine.start()
    deadline = time.monotonic() + 20
    while len(engine.list_runs(statuses=["completed"])) < 8:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    engine.stop()
    assert {r.id for r in engine.list_runs()} == set(ids)
    assert 1 <= running["max"] <= 2
