"""One database handle: engines for SQLite or PostgreSQL, chosen only by the URL.

SQLite runs in WAL mode with a busy timeout, and every write transaction opens
with ``BEGIN IMMEDIATE`` so that two writers queue for the lock instead of
failing half-way (a deferred read-then-write transaction upgrades too late).
Reads stay deferred so they never wait for a writer. PostgreSQL needs none of
that. SQLAlchemy's errors are translated to ``StorageError`` here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from jobstore.errors import StorageError

_WRITE = "stationsync_write"


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<unparseable database URL>"


class Database:
    """Engines and transaction helpers over one database."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000, pool_size: int = 10) -> None:
        self.url = url
        self.safe_url = redact_url(url)
        try:
            parsed = sa.make_url(url)
        except Exception as exc:
            raise StorageError(f"database URL is not valid: {self.safe_url}") from exc
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"future": True}
        if self.is_sqlite:
            path = parsed.database or ""
            if path and path != ":memory:":
                try:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StorageError(
                        f"cannot create the folder of {self.safe_url}: {exc.strerror}"
                    ) from exc
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = 20
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = 20
            kwargs["pool_pre_ping"] = True
            # Fail fast on an unreachable server and notice a dead peer within
            # a minute, instead of hanging until TCP gives up.
            kwargs["connect_args"] = {
                "connect_timeout": 10,
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            }
            if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            self.engine: Engine = sa.create_engine(parsed, **kwargs)
        except Exception as exc:
            raise StorageError(f"cannot open database {self.safe_url}: {exc}") from exc
        if self.is_sqlite:
            self._install_sqlite_hooks(busy_timeout_ms)
        self._writer = self.engine.execution_options(**{_WRITE: True})
        self._local = threading.local()

    def _install_sqlite_hooks(self, busy_timeout_ms: int) -> None:
        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from the driver so we can say IMMEDIATE.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            # NORMAL in WAL mode: a commit survives a killed process (not a power cut).
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get(_WRITE):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

    @property
    def write_engine(self) -> Engine:
        """An engine whose transactions are write transactions (IMMEDIATE on SQLite)."""
        return self._writer

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (IMMEDIATE on SQLite), committed on success."""
        try:
            with self._writer.begin() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            raise StorageError(_describe(exc, self.safe_url)) from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction that never waits for a writer on SQLite."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            raise StorageError(_describe(exc, self.safe_url)) from exc

    def insert_ignore(self, table: sa.Table) -> Any:
        """An INSERT that silently skips rows hitting any unique constraint.

        Its result's ``rowcount`` says whether the row went in (PostgreSQL
        drivers report -1 for INSERT unless asked to keep the count).
        """
        ins: Any = sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)
        return ins.on_conflict_do_nothing().execution_options(preserve_rowcount=True)

    def upsert(self, table: sa.Table, key: list[str], update: list[str]) -> Any:
        """An INSERT ... ON CONFLICT (key) DO UPDATE of the given columns."""
        ins: Any = sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)
        return ins.on_conflict_do_update(
            index_elements=key, set_={c: ins.excluded[c] for c in update}
        )

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def _describe(exc: sa.exc.DBAPIError, safe_url: str) -> str:
    orig = getattr(exc, "orig", None)
    reason = str(orig if orig is not None else exc).splitlines()[0]
    return f"database error on {safe_url}: {reason}"
