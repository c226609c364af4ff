"""The crash soak, small: SIGKILL the syncing process 8 times over a 2,000-station fleet.

``bench/soak.py`` does the work (its docstring says how kill points are drawn
and what is checked after each kill and at the end); the full size (50 kills
over 10,000 stations) is run as a benchmark. Here every figure that must be
zero is zero, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bench.soak import SoakConfig, run_soak

pytestmark = pytest.mark.slow

MUST_BE_ZERO = (
    "stuck", "lost_rows", "duplicate_rows", "re_executed_steps", "extra_rows", "wrong_rows",
    "half_written_batches", "failed_without_reason", "failed",
)  # fmt: skip


@pytest.mark.parametrize(
    "kills", [pytest.param(8, id="sqlite-8-kills"), pytest.param(5, id="postgres-5-kills")]
)
def test_killed_syncs_lose_nothing_and_redo_no_finished_step(
    kills: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = ""
    if "postgres" in request.node.callspec.id:
        request.applymarker(pytest.mark.postgres)
        url = str(request.getfixturevalue("postgres_schema_url"))
    cfg = SoakConfig(kills=kills, stations=2000, write_batch=100, database_url=url)
    result = run_soak(replace(cfg, work_dir=tmp_path))
    assert result["kills"] == kills
    assert {k: result[k] for k in MUST_BE_ZERO} == dict.fromkeys(MUST_BE_ZERO, 0), result
    assert result["completed"] == result["runs"] >= 1
    assert result["valid_stations"] > 1800 and result["finished_steps_checked"] > 20
