"""Periodic jobs that one process at a time runs (reconciliation): a lease row per job.

Several workers may run; each asks for the job's lease when the job is due. Taking it is one
conditional UPDATE (the job's row is free, or its lease ran out, and a period has passed since it
last began), so of workers asking at once exactly one gets it: PostgreSQL makes the second
UPDATE wait for the first and re-check the row; SQLite serialises writers. The holder writes its
results only after checking it still holds the lease (`owned_job`), as order work does.
Every function takes the caller's session; the caller owns the transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from utopia_handler.store.models import JobLease


class JobLost(Exception):
    """This process no longer holds the job's lease; another one runs the job now."""


def _ensure_row(session: Session, name: str) -> None:
    dialect = session.get_bind().dialect.name
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(JobLease)
    session.execute(insert.values(name=name).on_conflict_do_nothing(index_elements=["name"]))


def take_job(
    session: Session,
    name: str,
    owner: str,
    now: datetime,
    lease: timedelta,
    *,
    every: timedelta | None = None,
) -> bool:
    """Take the job's lease if no live lease holds it (and, with `every`, if it is due).

    True when `owner` holds it now; the job's period then counts from `now`.
    """
    _ensure_row(session, name)
    conditions = [
        JobLease.name == name,
        or_(JobLease.owner.is_(None), JobLease.expires_at.is_(None), JobLease.expires_at < now),
    ]
    if every is not None:
        conditions.append(
            or_(JobLease.last_started_at.is_(None), JobLease.last_started_at <= now - every)
        )
    result = session.execute(
        update(JobLease)
        .where(*conditions)
        .values(owner=owner, expires_at=now + lease, last_started_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


def owned_job(session: Session, name: str, owner: str) -> JobLease:
    """The job's row, locked for this transaction, provided `owner` still holds its lease."""
    row = session.scalar(select(JobLease).where(JobLease.name == name).with_for_update())
    if row is None or row.owner != owner:
        raise JobLost(name)
    return row


def release_job(session: Session, name: str, owner: str) -> None:
    """Give the job's lease back, if `owner` holds it."""
    session.execute(
        update(JobLease)
        .where(JobLease.name == name, JobLease.owner == owner)
        .values(owner=None, expires_at=None)
    )


def release_jobs_of(session: Session, owner: str) -> None:
    """Give back every job lease `owner` holds (it stopped, or its process is gone)."""
    session.execute(
        update(JobLease).where(JobLease.owner == owner).values(owner=None, expires_at=None)
    )


def job(session: Session, name: str) -> JobLease | None:
    """The job's row, if the job ever ran."""
    return session.get(JobLease, name)


def seconds_until_due(session: Session, name: str, every: timedelta, now: datetime) -> float:
    """Seconds until the job is next due (0 when due now or never run)."""
    started = session.scalar(select(JobLease.last_started_at).where(JobLease.name == name))
    if started is None:
        return 0.0
    return max(0.0, (started + every - now).total_seconds())
