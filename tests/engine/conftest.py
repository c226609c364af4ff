"""Fixtures for the engine tests: a fake clock and engines that run on demand.

Engines here have no background threads unless a test starts them: a test
calls ``drain`` (``run_once`` until nothing is due) and moves the fake clock
itself, so no test waits for wall time unless a real process is involved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.clock import FakeClock
from core.engine import Engine, Function, Registry
from jobstore.db import Database

MakeEngine = Callable[..., Engine]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_engine(db: Database, clock: FakeClock) -> Iterator[MakeEngine]:
    """Build engines on the test database; any started ones are stopped afterwards."""
    made: list[Engine] = []

    def make(*functions: Function, **options: Any) -> Engine:
        registry = Registry()
        for fn in functions:
            registry.add(fn)
        options.setdefault("clock", clock)
        engine = Engine(db, registry, **options)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.stop(timeout=5)


def drain(engine: Engine, limit: int = 100) -> list[str]:
    """Run everything due now on this thread; the ids of the runs executed."""
    ran = []
    for _ in range(limit):
        run_id = engine.run_once()
        if run_id is None:
            return ran
        ran.append(run_id)
    raise AssertionError(f"still finding work after {limit} claims")
