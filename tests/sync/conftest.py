"""Fixtures for the sync tests: simulators on 127.0.0.1 that stop with the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.tarana.faults import Faults
from core.tarana.simulator import Simulator

MakeSim = Callable[..., Simulator]


@pytest.fixture
def make_sim() -> Iterator[MakeSim]:
    started: list[Simulator] = []

    def make(stations: int = 120, faults: str = "", **options: Any) -> Simulator:
        options.setdefault("seed", 11)
        sim = Simulator(stations=stations, faults=Faults.parse(faults), **options)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()
