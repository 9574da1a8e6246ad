"""The home page (everything at a glance), callbacks no route takes (across orders), and the
audit log."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any

from flask import render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from utopia_handler import audit
from utopia_handler.store import queries
from utopia_handler.store.models import (
    ACTIVE_STATES,
    Callback,
    CallbackOutcome,
    Notification,
    NotificationState,
    Order,
    OrderState,
)
from utopia_handler.timeutil import utcnow
from utopia_handler.web.console.common import PAGE_SIZE, bp, duration, page_number, runtime


@dataclass(frozen=True)
class AtAGlance:
    """What Home counts, each read through an index: orders per state (bounded, see
    queries.count_orders_bounded) and the queues, which hold only work not yet done."""

    orders: queries.StateCounts
    orders_due: int
    orders_scheduled: int
    oldest_waiting_since: datetime | None
    emails: dict[NotificationState, int]

    @property
    def waiting(self) -> int:
        return self.orders.counts[OrderState.WAITING]


def at_a_glance(db: Session, now: datetime) -> AtAGlance:
    """Home's numbers; none reads the whole orders, callbacks or e-mails table."""
    active = Order.state.in_(ACTIVE_STATES)

    def count(model: Any, *where: ColumnElement[bool]) -> int:
        return int(db.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    unsent = (NotificationState.PENDING, NotificationState.FAILED)
    return AtAGlance(
        orders=queries.count_orders_bounded(db),
        orders_due=count(Order, active, Order.next_attempt_at <= now),
        orders_scheduled=count(Order, active, Order.next_attempt_at > now),
        oldest_waiting_since=db.scalar(
            select(func.min(Order.created_at)).where(Order.state == OrderState.WAITING)
        ),
        emails={s: count(Notification, Notification.state == s) for s in unsent},
    )


@bp.get("/")
def home() -> ResponseReturnValue:
    now = utcnow()
    with runtime().store.read() as db:
        glance = at_a_glance(db, now)
        waiting = list(
            db.scalars(
                select(Order)
                .where(Order.state == OrderState.WAITING)
                .order_by(Order.created_at)
                .limit(10)
            )
        )
        recent = list(db.scalars(select(Order).order_by(Order.id.desc()).limit(10)))
        not_handled_week = db.scalar(
            select(func.count())
            .select_from(Callback)
            .where(
                Callback.outcome == CallbackOutcome.NOT_HANDLED,
                Callback.received_at >= now - timedelta(days=7),
            )
        )
        activity = audit.entries(db, limit=8)
    oldest = glance.oldest_waiting_since
    return render_template(
        "console/home.html",
        shot=glance,
        oldest_waiting=duration(max(0.0, (now - oldest).total_seconds())) if oldest else None,
        waiting=waiting,
        recent=recent,
        emails_failed=glance.emails[NotificationState.FAILED],
        emails_pending=glance.emails[NotificationState.PENDING],
        not_handled_week=not_handled_week or 0,
        activity=activity,
    )


@bp.get("/callbacks/not-handled")
def not_handled() -> ResponseReturnValue:
    page = page_number()
    with runtime().store.read() as db:
        where = Callback.outcome == CallbackOutcome.NOT_HANDLED
        total = db.scalar(select(func.count()).select_from(Callback).where(where)) or 0
        callbacks = list(
            db.scalars(
                select(Callback)
                .where(where)
                .order_by(Callback.id.desc())
                .limit(PAGE_SIZE)
                .offset((page - 1) * PAGE_SIZE)
            )
        )
        by_msg = queries.not_handled_messages(db, limit=20)
    return render_template(
        "console/not_handled.html",
        callbacks=callbacks,
        by_msg=by_msg,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
    )


def _day(name: str) -> date | None:
    raw = request.args.get(name, "")
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


@bp.get("/audit")
def audit_log() -> ResponseReturnValue:
    page = page_number()
    since, until = _day("from"), _day("to")
    shown = {
        "user": request.args.get("user", "")[:64],
        "action": request.args.get("action", "")[:64],
        "order": request.args.get("order", "").strip().upper()[:64],
        "from": since.isoformat() if since else "",
        "to": until.isoformat() if until else "",
        "logins": "1" if request.args.get("logins") == "1" else "",
    }
    where = audit.AuditFilter(
        actor=shown["user"] or None,
        action=shown["action"] or None,
        order_ref=shown["order"] or None,
        since=datetime.combine(since, time()) if since else None,
        until=datetime.combine(until + timedelta(days=1), time()) if until else None,
        hide_routine=not shown["logins"],
    )
    with runtime().store.read() as db:
        total = audit.count(db, where)
        hidden = (
            0
            if shown["logins"] or shown["action"]
            else audit.count(db, replace(where, hide_routine=False)) - total
        )
        entries = audit.entries(db, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, where=where)
        actions, actors = audit.actions_and_actors(db)
        refs = {e.order_ref for e in entries if e.order_ref}
        rows = db.execute(select(Order.order_ref, Order.id).where(Order.order_ref.in_(refs)))
        order_ids = {ref: order_id for ref, order_id in rows}
    return render_template(
        "console/audit.html",
        entries=entries,
        order_ids=order_ids,
        total=total,
        hidden=hidden,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        shown=shown,
        filters={k: v for k, v in shown.items() if v},
        actions=actions,
        actors=actors,
        filtered=any(v for k, v in shown.items() if k != "logins"),
    )
