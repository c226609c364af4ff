"""Fixtures for the reliability tests: product processes that never outlive a test,
and portal simulators on 127.0.0.1 that stop with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.tarana.faults import Faults
from core.tarana.simulator import Simulator
from tests.reliability.harness import Processes

MakeSim = Callable[..., Simulator]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """Starts processes; every one is stopped (terminate, wait, kill) however the test ends."""
    p = Processes(tmp_path / "procs")
    try:
        yield p
    finally:
        p.stop_all()


@pytest.fixture
def make_sim() -> Iterator[MakeSim]:
    started: list[Simulator] = []

    def make(stations: int = 500, faults: str = "", **options: Any) -> Simulator:
        options.setdefault("seed", 11)
        sim = Simulator(stations=stations, faults=Faults.parse(faults), **options)
        sim.start()
        started.append(sim)
        return sim

    try:
        yield make
    finally:
        for sim in started:
            sim.stop()
