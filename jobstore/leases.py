"""Named leases in the database: who holds a role (the scheduler), until when.

Acquiring and renewing are one compare-and-set statement each, so two
processes can never both believe they hold a lease: the row names one holder,
and it moves only when its expiry has passed or the holder gives it up.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from jobstore.db import Database
from jobstore.tables import leases


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    holder: str
    acquired_at: float
    renewed_at: float
    expires_at: float


def acquire(db: Database, name: str, holder: str, now: float, ttl_s: float) -> bool:
    """Take or renew the lease; True if ``holder`` holds it afterwards."""
    with db.write() as conn:
        inserted = conn.execute(
            db.insert_ignore(leases).values(
                name=name, holder=holder, acquired_at=now, renewed_at=now, expires_at=now + ttl_s
            )
        ).rowcount
        if inserted:
            return True
        moved = conn.execute(
            sa.update(leases)
            .where(leases.c.name == name, sa.or_(leases.c.holder == holder, leases.c.expires_at < now))
            .values(
                acquired_at=sa.case((leases.c.holder == holder, leases.c.acquired_at), else_=now),
                holder=holder,
                renewed_at=now,
                expires_at=now + ttl_s,
            )
        ).rowcount
        return bool(moved)


def release(db: Database, name: str, holder: str) -> None:
    """Give the lease up now so another process can take it without waiting."""
    with db.write() as conn:
        conn.execute(
            sa.update(leases)
            .where(leases.c.name == name, leases.c.holder == holder)
            .values(expires_at=0.0)
        )


def get(db: Database, name: str) -> LeaseInfo | None:
    with db.read() as conn:
        row = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
    if row is None:
        return None
    m = row._mapping
    return LeaseInfo(m["name"], m["holder"], m["acquired_at"], m["renewed_at"], m["expires_at"])
