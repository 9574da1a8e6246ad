"""The audit log: who did what, when, to which order. Written in the same transaction as the action,
so an action and its record are never separated."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from utopia_handler.store.console_models import AuditEntry


def record(
    session: Session,
    actor: str,
    action: str,
    now: datetime,
    *,
    order_ref: str | None = None,
    detail: str | None = None,
) -> None:
    """Add one audit entry to the caller's transaction."""
    session.add(
        AuditEntry(
            at=now,
            actor=actor[:64],
            action=action[:64],
            order_ref=order_ref,
            detail=detail[:4000] if detail else None,
        )
    )


# Routine rows the audit page hides unless asked: most rows are people logging in and out.
ROUTINE_ACTIONS = ("login", "logout")


@dataclass(frozen=True)
class AuditFilter:
    """Which audit entries to show; any action name works (new kinds need no change here)."""

    actor: str | None = None
    action: str | None = None
    order_ref: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    hide_routine: bool = False  # leave out log-ins and log-outs unless one is asked for

    def where(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.actor:
            conditions.append(AuditEntry.actor == self.actor)
        if self.action:
            conditions.append(AuditEntry.action == self.action)
        elif self.hide_routine:
            conditions.append(AuditEntry.action.not_in(ROUTINE_ACTIONS))
        if self.order_ref:
            conditions.append(AuditEntry.order_ref == self.order_ref)
        if self.since is not None:
            conditions.append(AuditEntry.at >= self.since)
        if self.until is not None:
            conditions.append(AuditEntry.at < self.until)
        return conditions


def entries(
    session: Session,
    *,
    limit: int = 50,
    offset: int = 0,
    order_ref: str | None = None,
    where: AuditFilter | None = None,
) -> list[AuditEntry]:
    """Audit entries, newest first, optionally of one order or matching a filter."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    if order_ref is not None:
        query = query.where(AuditEntry.order_ref == order_ref)
    if where is not None:
        query = query.where(*where.where())
    return list(session.scalars(query))


def count(session: Session, where: AuditFilter | None = None) -> int:
    """How many audit entries there are (matching a filter, if given)."""
    query = select(func.count()).select_from(AuditEntry)
    if where is not None:
        query = query.where(*where.where())
    return int(session.scalar(query) or 0)


def actions_and_actors(session: Session) -> tuple[list[str], list[str]]:
    """Every action name and every actor in the log, sorted: what a filter can choose from."""
    actions = session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action))
    actors = session.scalars(select(AuditEntry.actor).distinct().order_by(AuditEntry.actor))
    return list(actions), list(actors)
