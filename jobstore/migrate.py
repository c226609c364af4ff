"""Schema upgrades: apply the Alembic migrations to a database, from code.

The app and the CLI call ``upgrade`` at start. Concurrent starters are safe:
on SQLite the upgrade runs inside an IMMEDIATE transaction, on PostgreSQL
under an advisory lock, so a second process waits and then finds nothing to do.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from jobstore.db import Database
from jobstore.errors import MigrationError

_HERE = Path(__file__).resolve().parent / "migrations"
_PG_LOCK = 7_315_000_001


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(db: Database) -> str | None:
    with db.read() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; raise MigrationError with the reason."""
    cfg = _config()
    try:
        with db.write() as conn:
            if not db.is_sqlite:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except MigrationError:
        raise
    except Exception as exc:
        raise MigrationError(f"could not upgrade the schema of {db.safe_url}: {exc}") from exc


def revision(db: Database, message: str) -> None:
    """Autogenerate a new migration against the given (upgraded) database."""
    cfg = _config()
    with db.write() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)
