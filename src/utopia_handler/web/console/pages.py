"""The home page (everything at a glance), callbacks no route takes (across orders), and the
audit log."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta

from flask import render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from utopia_handler import audit
from utopia_handler.store import queries
from utopia_handler.store.models import (
    Callback,
    CallbackOutcome,
    NotificationState,
    Order,
    OrderState,
)
from utopia_handler.timeutil import utcnow
from utopia_handler.web.console.common import PAGE_SIZE, bp, duration, page_number, runtime
from utopia_handler.web.metrics import snapshot


@bp.get("/")
def home() -> ResponseReturnValue:
    now = utcnow()
    with runtime().store.read() as db:
        shot = snapshot(db, now)
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
    return render_template(
        "console/home.html",
        shot=shot,
        total=sum(shot.orders.values()),
        oldest_waiting=duration(shot.oldest_waiting_age(now)) if shot.waiting else None,
        waiting=waiting,
        recent=recent,
        emails_failed=shot.emails.get(NotificationState.FAILED, 0),
        emails_pending=shot.emails.get(NotificationState.PENDING, 0),
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
