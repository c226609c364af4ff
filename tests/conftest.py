"""Shared fixtures: a fresh database per test, on SQLite and (when configured) PostgreSQL.

``db`` is parametrized over both back ends. PostgreSQL tests take their server
from ``STATIONSYNC_TEST_POSTGRES_URL``; each test gets its own schema, dropped
afterwards. Without the variable they are skipped locally, but under CI
(``CI=true``) a missing server is an error, never a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobstore import migrate
from jobstore.db import Database

PG_ENV = "STATIONSYNC_TEST_POSTGRES_URL"


def postgres_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{PG_ENV} must be set in CI: PostgreSQL tests may not be skipped there")
        pytest.skip(f"{PG_ENV} not set")
    return url


def _with_search_path(url: str, schema: str) -> str:
    parsed = sa.make_url(url)
    query = dict(parsed.query)
    query["options"] = f"-csearch_path={schema}"
    return parsed.set(query=query).render_as_string(hide_password=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'stationsync.db'}"


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    base = postgres_url()
    assert base is not None
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _with_search_path(base, schema)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated database on each back end."""
    database = Database(db_url)
    migrate.upgrade(database)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    database = Database(sqlite_url)
    migrate.upgrade(database)
    try:
        yield database
    finally:
        database.dispose()
