"""The database going away while the dashboard runs: every page says so plainly, no traceback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import postgres_url
from tests.ui.conftest import Dash, sync_and_wait

pytestmark = pytest.mark.postgres


@pytest.fixture
def doomed_database() -> Iterator[tuple[str, Any]]:
    """A fresh PostgreSQL database, and a function that drops it (killing its connections)."""
    base = postgres_url()
    assert base is not None
    name = f"ss_outage_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    url = sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url, drop
    finally:
        drop()
        admin.dispose()


def test_every_page_reports_a_lost_database(dash: Any, doomed_database: tuple[str, Any]) -> None:
    url, drop = doomed_database
    d: Dash = dash(DATABASE_URL=url)
    d.open("stations")
    sync_and_wait(d)
    d.at.run()
    assert d.at.dataframe, "the table should show before the outage"
    drop()
    for page in ("stations", "map", "history", "schedules"):
        d.at.switch_page(f"pages/{page}.py" if page != "stations" else "pages/stations.py").run()
        assert not d.at.exception, [e.value for e in d.at.exception]
        message = "\n".join(e.value for e in d.at.error)
        assert "Could not" in message, (page, d.texts())
        assert "database" in message.lower()
        assert "Traceback" not in message
