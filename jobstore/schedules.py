"""Schedules as operators set them: cron expression, time zone and paused flag per job.

APScheduler keeps its own job rows (``apscheduler_jobs``, pickled, next fire
time); this table is the editable source they are reconciled from, so an edit
made on any replica reaches whichever process holds the scheduler lease, and
an edit survives a restart instead of being overwritten by the code's default.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from jobstore.db import Database
from jobstore.tables import schedules

APSCHEDULER_TABLE = "apscheduler_jobs"


@dataclass(frozen=True)
class ScheduleRow:
    job_id: str
    function_id: str
    cron: str
    timezone: str
    paused: bool
    updated_by: str
    updated_at: float


def ensure(db: Database, rows: list[ScheduleRow]) -> None:
    """Insert the code's default schedules that are not stored yet."""
    if not rows:
        return
    with db.write() as conn:
        for r in rows:
            conn.execute(
                db.insert_ignore(schedules).values(
                    job_id=r.job_id,
                    function_id=r.function_id,
                    cron=r.cron,
                    timezone=r.timezone,
                    paused=r.paused,
                    updated_by=r.updated_by,
                    updated_at=r.updated_at,
                )
            )


def all_rows(db: Database) -> list[ScheduleRow]:
    with db.read() as conn:
        rows = conn.execute(sa.select(schedules).order_by(schedules.c.job_id)).all()
    return [
        ScheduleRow(
            r.job_id, r.function_id, r.cron, r.timezone, bool(r.paused), r.updated_by, r.updated_at
        )
        for r in rows
    ]


def get_row(db: Database, job_id: str) -> ScheduleRow | None:
    return next((r for r in all_rows(db) if r.job_id == job_id), None)


def update(db: Database, job_id: str, by: str, now: float, **values: object) -> bool:
    with db.write() as conn:
        return bool(
            conn.execute(
                sa.update(schedules)
                .where(schedules.c.job_id == job_id)
                .values(updated_by=by, updated_at=now, **values)
            ).rowcount
        )


def version(db: Database) -> tuple[int, float]:
    """Changes whenever any schedule is added or edited: (count, latest edit)."""
    with db.read() as conn:
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.max(schedules.c.updated_at))
        ).one()
    return int(row[0]), float(row[1] or 0.0)
