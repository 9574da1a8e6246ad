"""The audit log: who did what, when, to which order. Written in the same transaction as the action,
so an action and its record are never separated."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
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


def entries(
    session: Session, *, limit: int = 50, offset: int = 0, order_ref: str | None = None
) -> list[AuditEntry]:
    """Audit entries, newest first, optionally of one order."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    if order_ref is not None:
        query = query.where(AuditEntry.order_ref == order_ref)
    return list(session.scalars(query))


def count(session: Session) -> int:
    """How many audit entries there are."""
    return int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)
