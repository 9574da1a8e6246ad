"""Plain-text accounts of orders for people: the `orders` command and the demo's report."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from utopia_handler import audit
from utopia_handler.store import queries
from utopia_handler.store.models import Notification, NotificationKind, Order, OrderState

STATE_WORDS = {
    OrderState.RECEIVED: "received, not started",
    OrderState.IN_PROGRESS: "in progress",
    OrderState.WAITING: "WAITING FOR A PERSON",
    OrderState.DONE: "done",
    OrderState.DUPLICATE: "duplicate customer (existed before this order)",
    OrderState.NOT_OURS: "not ours (UTOPIA has no record for this ISP)",
    OrderState.IGNORED: "ignored by a person",
    OrderState.RECORDED: "recorded, not provisioned",
}


def order_summary(order: Order) -> str:
    """One line: reference, state and the PowerCode ids so far."""
    parts = [f"{order.order_ref:<20} {STATE_WORDS[order.state]}"]
    if order.customer_id:
        parts.append(f"customer #{order.customer_id}")
    if order.services_added:
        parts.append(f"services {order.services_added}")
    if order.ticket_id:
        parts.append(f"ticket {order.ticket_id}")
    return "  ".join(parts)


def order_story(session: Session, order: Order) -> list[str]:
    """The order's whole history in time order: every UTOPIA message, what people (and
    reconciliation) did, every step attempt, the routed messages' actions and their attempts, and
    the e-mails."""
    callbacks, attempts, notifications = queries.order_history(session, order)
    actions, action_attempts = queries.message_actions(session, order)
    lines = [order_summary(order)]
    if order.reason:
        lines.append(f"    why: {order.reason}")
    events: list[tuple[datetime, str]] = []
    for callback in callbacks:
        events.append(
            (callback.received_at, f"callback {callback.msg!r} -> {callback.outcome.value}")
        )
    for entry in reversed(audit.entries(session, limit=200, order_ref=order.order_ref)):
        what = entry.action.replace("_", " ")
        events.append((entry.at, f"{entry.actor}: {what} - {entry.detail or ''}"))
    for attempt in attempts:
        events.append(
            (
                attempt.started_at,
                f"{attempt.step.value:<16} attempt {attempt.attempt}: {attempt.outcome.value}"
                f" - {attempt.detail or ''}",
            )
        )
    names = {action.id: f"{action.action.value} for {action.msg!r}" for action in actions}
    for action in actions:
        state = action.state.value + (f" - {action.detail}" if action.detail else "")
        events.append(
            (action.created_at, f"routed {names[action.id]} (action {action.id}): {state}")
        )
    for action_attempt in action_attempts:
        events.append(
            (
                action_attempt.started_at,
                f"{names[action_attempt.action_id]} run {action_attempt.run} attempt "
                f"{action_attempt.attempt}: {action_attempt.outcome.value}"
                f" - {action_attempt.detail or ''}",
            )
        )
    events.extend((n.created_at, notification_line(n)) for n in notifications)
    events.sort(key=lambda event: event[0])  # stable: same-moment events keep the order above
    lines.extend(f"    {at:%H:%M:%S} {text}" for at, text in events)
    return lines


def notification_line(notification: Notification) -> str:
    """One line about a staff e-mail: kind, state and attachment."""
    line = f"e-mail {notification.kind.value}: {notification.state.value}"
    if notification.attachment:
        line += f", with {notification.attachment}"
    if notification.last_error and notification.state.value != "sent":
        line += f" (last error: {notification.last_error})"
    return line


def all_orders(session: Session, state: OrderState | None = None) -> list[Order]:
    """Orders, newest first, optionally of one state."""
    query = select(Order).order_by(Order.id.desc())
    if state is not None:
        query = query.where(Order.state == state)
    return list(session.scalars(query))


def test_emails(session: Session) -> list[Notification]:
    """E-mails sent for `Test` callbacks."""
    return list(
        session.scalars(select(Notification).where(Notification.kind == NotificationKind.TEST))
    )
