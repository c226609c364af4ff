"""Alembic environment: runs migrations on the connection ``jobstore.migrate`` hands over."""

from __future__ import annotations

from alembic import context

from jobstore.tables import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    raise RuntimeError("run migrations through `python -m core db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=lambda name, type_, _parent: (
        not (type_ == "table" and name is not None and name.startswith("apscheduler"))
    ),
)
with context.begin_transaction():
    context.run_migrations()
