"""Steps: memoized results, JSON-only results, progress, context, failure types."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.clock import FakeClock
from core.engine import Context, On, RunStatus, StepStatus, function
from core.engine.context import encode
from core.errors import NonRetriableError, RetryAfterError, StepResultNotJSONError
from tests.engine.conftest import MakeEngine, drain


def test_a_completed_step_is_not_run_again_on_retry(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    calls: Counter[str] = Counter()

    @function("flaky", triggers=[On("go")], backoff_initial_s=1, backoff_max_s=1)
    def flaky(ctx: Context) -> Any:
        def first() -> int:
            calls["first"] += 1
            return 41

        def second(x: int) -> int:
            calls["second"] += 1
            if calls["second"] < 3:
                raise RuntimeError("upstream hiccup")
            return x + 1

        a = ctx.step.run("first", first)
        return ctx.step.run("second", second, a)

    engine = make_engine(flaky)
    run_id = engine.send("go").run_id
    assert run_id is not None
    for _ in range(3):
        drain(engine)
        clock.advance(2)
    run = engine.get_run(run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.output == 42
    assert calls == {"first": 1, "second": 3}
    steps = {s.name: s for s in engine.run_detail(run_id).steps}
    assert steps["first"].attempts == 1
    assert steps["second"].attempts == 3
    assert [e["error"] for e in steps["second"].errors] == ["RuntimeError: upstream hiccup"] * 2


def test_results_come_back_as_json_on_the_first_run_too(make_engine: MakeEngine) -> None:
    seen: list[Any] = []

    @function("shapes", triggers=[On("go")])
    def shapes(ctx: Context) -> Any:
        seen.append(ctx.step.run("tuple", lambda: (1, 2)))
        seen.append(ctx.step.run("int-keys", lambda: {1: "a"}))
        seen.append(ctx.step.run("none", lambda: None))
        seen.append(ctx.step.run("text", lambda: "x"))
        return seen

    engine = make_engine(shapes)
    run_id = engine.send("go").run_id
    assert run_id is not None
    drain(engine)
    assert seen == [[1, 2], {"1": "a"}, None, "x"]
    assert engine.get_run(run_id).output == [[1, 2], {"1": "a"}, None, "x"]


class _Thing:
    pass


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (datetime(2026, 1, 1, tzinfo=UTC), "datetime"),
        (_Thing(), "_Thing"),
        ({"nested": [1, {"deep": {3}}]}, "set"),
        (math.nan, "float"),
        ([math.inf], "float"),
    ],
)
def test_a_result_that_is_not_json_fails_the_run_at_that_step_on_first_execution(
    make_engine: MakeEngine, value: Any, type_name: str
) -> None:
    after: list[str] = []

    @function("bad", triggers=[On("go")])
    def bad(ctx: Context) -> None:
        ctx.step.run("fine", lambda: 1)
        ctx.step.run("returns-junk", lambda: value)
        after.append("reached")

    engine = make_engine(bad)
    run_id = engine.send("go").run_id
    assert run_id is not None
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == RunStatus.FAILED
    assert run.error is not None
    assert "'returns-junk'" in run.error and f"returned a {type_name}" in run.error
    assert "not retriable" in run.error
    assert run.attempt == 1
    assert after == []
    steps = {s.name: s for s in engine.run_detail(run_id).steps}
    assert steps["fine"].status == StepStatus.COMPLETED
    assert steps["returns-junk"].status == StepStatus.FAILED


def test_the_handler_return_value_must_be_json_too(make_engine: MakeEngine) -> None:
    @function("bad-return", triggers=[On("go")])
    def bad_return(ctx: Context) -> Any:
        return {"when": datetime(2026, 1, 1, tzinfo=UTC)}

    engine = make_engine(bad_return)
    run_id = engine.send("go").run_id
    assert run_id is not None
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == RunStatus.FAILED
    assert run.error is not None and "datetime" in run.error


def test_non_retriable_error_fails_at_once(make_engine: MakeEngine) -> None:
    calls = Counter[str]()

    @function("refuses", triggers=[On("go")])
    def refuses(ctx: Context) -> None:
        def step() -> None:
            calls["step"] += 1
            raise NonRetriableError("bad credentials")

        ctx.step.run("login", step)

    engine = make_engine(refuses)
    run_id = engine.send("go").run_id
    assert run_id is not None
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == RunStatus.FAILED
    assert run.error is not None and "bad credentials" in run.error and "'login'" in run.error
    assert calls["step"] == 1


def test_retry_after_is_respected(make_engine: MakeEngine, clock: FakeClock) -> None:
    calls = Counter[str]()

    @function("limited", triggers=[On("go")])
    def limited(ctx: Context) -> str:
        def step() -> str:
            calls["step"] += 1
            if calls["step"] == 1:
                raise RetryAfterError(120)
            return "ok"

        return str(ctx.step.run("fetch", step))

    engine = make_engine(limited)
    run_id = engine.send("go").run_id
    assert run_id is not None
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == RunStatus.QUEUED
    assert run.wake_at == pytest.approx(clock.now().timestamp() + 120)
    assert run.error is not None and "will retry" in run.error
    clock.advance(119)
    assert drain(engine) == []
    clock.advance(2)
    assert drain(engine) == [run_id]
    assert engine.get_run(run_id).status == RunStatus.COMPLETED


def test_retry_after_attribute_on_foreign_errors_is_respected(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    class RateLimited(Exception):
        retry_after = 30.0

    @function("foreign", triggers=[On("go")])
    def foreign(ctx: Context) -> None:
        if ctx.attempt == 1:
            ctx.step.run("call", lambda: (_ for _ in ()).throw(RateLimited("429")))

    engine = make_engine(foreign)
    run_id = engine.send("go").run_id
    assert run_id is not None
    drain(engine)
    assert engine.get_run(run_id).wake_at == pytest.approx(clock.now().timestamp() + 30)


def test_context_exposes_event_run_and_attempt(make_engine: MakeEngine, clock: FakeClock) -> None:
    seen: list[dict[str, Any]] = []

    @function("introspect", triggers=[On("hello")], backoff_initial_s=1, backoff_max_s=1)
    def introspect(ctx: Context) -> None:
        seen.append(
            {
                "run_id": ctx.run_id,
                "attempt": ctx.attempt,
                "event": ctx.event["name"],
                "who": ctx.data.get("who"),
                "trigger": ctx.trigger,
                "by": ctx.triggered_by,
            }
        )
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails outside any step")

    engine = make_engine(introspect)
    sent = engine.send("hello", {"who": "ops"}, sent_by="alice")
    drain(engine)
    clock.advance(5)
    drain(engine)
    assert [s["attempt"] for s in seen] == [1, 2]
    assert all(s["run_id"] == sent.run_id for s in seen)
    assert seen[0] == {
        "run_id": sent.run_id,
        "attempt": 1,
        "event": "hello",
        "who": "ops",
        "trigger": "event",
        "by": "alice",
    }
    assert engine.get_run(sent.run_id or "").status == RunStatus.COMPLETED


def test_progress_is_stored_while_the_step_runs(make_engine: MakeEngine, db: Any) -> None:
    observed: list[tuple[int | None, int | None, str | None]] = []

    @function("counts", triggers=[On("go")])
    def counts(ctx: Context) -> None:
        def work() -> int:
            for i in range(1, 4):
                ctx.step.progress(i, 3, f"page {i}")
                step = {s.name: s for s in engine.run_detail(ctx.run_id).steps}["work"]
                observed.append((step.progress_current, step.progress_total, step.progress_message))
            return 3

        ctx.step.run("work", work)

    engine = make_engine(counts, progress_interval_s=0)
    run_id = engine.send("go").run_id
    assert run_id is not None
    drain(engine)
    assert observed == [(1, 3, "page 1"), (2, 3, "page 2"), (3, 3, "page 3")]
    step = engine.run_detail(run_id).steps[0]
    assert step.status == StepStatus.COMPLETED
    assert (step.progress_current, step.progress_total) == (3, 3)


def test_progress_outside_a_step_is_ignored(make_engine: MakeEngine) -> None:
    @function("loose", triggers=[On("go")])
    def loose(ctx: Context) -> None:
        ctx.step.progress(1, 2)

    engine = make_engine(loose)
    run_id = engine.send("go").run_id
    drain(engine)
    assert engine.get_run(run_id or "").status == RunStatus.COMPLETED


def test_a_step_name_used_twice_fails_the_run(make_engine: MakeEngine) -> None:
    @function("twice", triggers=[On("go")], retries=0)
    def twice(ctx: Context) -> None:
        ctx.step.run("same", lambda: 1)
        ctx.step.run("same", lambda: 2)

    engine = make_engine(twice)
    run_id = engine.send("go").run_id
    drain(engine)
    run = engine.get_run(run_id or "")
    assert run.status == RunStatus.FAILED
    assert run.error is not None and "used twice" in run.error


def test_send_event_step_is_memoized(make_engine: MakeEngine, clock: FakeClock) -> None:
    received: list[str] = []
    tries = Counter[str]()

    @function("sender", triggers=[On("go")], backoff_initial_s=1, backoff_max_s=1)
    def sender(ctx: Context) -> str:
        event_id = ctx.step.send_event("notify", "report/ready", {"n": 1})
        tries["after-send"] += 1
        if tries["after-send"] == 1:
            raise RuntimeError("fail after sending")
        return event_id

    @function("receiver", triggers=[On("report/ready")])
    def receiver(ctx: Context) -> None:
        received.append(ctx.event["id"])

    engine = make_engine(sender, receiver)
    run_id = engine.send("go").run_id
    drain(engine)
    clock.advance(5)
    drain(engine)
    run = engine.get_run(run_id or "")
    assert run.status == RunStatus.COMPLETED
    assert len(received) == 1
    assert run.output == received[0]
    assert [e.name for e in engine.run_detail(run_id or "").sent_events] == [
        "report/ready",
        "sender.completed",
    ]


def test_a_transaction_step_commits_its_writes_with_its_checkpoint(
    make_engine: MakeEngine, db: Any, clock: FakeClock
) -> None:
    import sqlalchemy as sa

    probe = sa.Table(
        "tx_probe",
        sa.MetaData(),
        sa.Column("k", sa.String(20), primary_key=True),
        sa.Column("v", sa.Integer),
    )
    probe.create(db.engine)
    calls = Counter[str]()

    @function("writer", triggers=[On("go")], backoff_initial_s=1, backoff_max_s=1)
    def writer(ctx: Context) -> Any:
        def write(conn: Any, value: int) -> int:
            calls["write"] += 1
            conn.execute(probe.insert().values(k=f"row-{calls['write']}", v=value))
            if calls["write"] == 1:
                raise RuntimeError("fails after writing: the write must roll back")
            return value

        stored = ctx.step.transaction("write", write, 7)
        if calls["after"] == 0:
            calls["after"] += 1
            raise RuntimeError("fails after the step: the step must not run again")
        return stored

    engine = make_engine(writer)
    run_id = engine.send("go").run_id or ""
    for _ in range(3):
        drain(engine)
        clock.advance(2)
    run = engine.get_run(run_id)
    assert (run.status, run.output) == (RunStatus.COMPLETED, 7)
    assert calls["write"] == 2
    with db.read() as conn:
        assert conn.execute(sa.select(probe.c.k, probe.c.v)).all() == [("row-2", 7)]
    step = engine.run_detail(run_id).steps[0]
    assert (step.status, step.attempts, len(step.errors)) == (StepStatus.COMPLETED, 2, 1)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_json_values)
def test_json_values_come_back_equal_to_what_replay_returns(value: Any) -> None:
    text, back = encode("s", value)
    assert back == value == json.loads(text)


@given(st.sets(st.integers(), min_size=1) | st.frozensets(st.text(), min_size=1))
def test_sets_are_refused_wherever_they_sit(value: Any) -> None:
    with pytest.raises(StepResultNotJSONError) as err:
        encode("s", {"a": [1, value]})
    assert err.value.step == "s" and err.value.type_name in ("set", "frozenset")
