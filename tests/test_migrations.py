"""Migrations and metadata agree: upgrading an empty database gives exactly tables.py."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.engine import Engine, Function, On, Registry
from jobstore import migrate
from jobstore.db import Database
from jobstore.tables import metadata


def test_upgrade_gives_the_declared_schema(db: Database) -> None:
    assert migrate.current_revision(db) == migrate.head_revision()
    with db.read() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, metadata)
    assert diffs == []


def test_upgrade_twice_is_a_no_op(db: Database) -> None:
    migrate.upgrade(db)
    assert migrate.current_revision(db) == migrate.head_revision()


def test_a_finished_run_remembers_which_worker_ran_it(db: Database) -> None:
    reg = Registry()
    reg.add(Function("f", lambda ctx: ctx.step.run("a", lambda: 1), triggers=(On("go"),)))
    engine = Engine(db, reg, worker_id="replica-a")
    run_id = engine.send("go").started[0]
    assert engine.run_once() == run_id
    run = engine.get_run(run_id)
    assert run.status.value == "completed" and run.lease_owner is None
    assert run.executed_by == "replica-a"
