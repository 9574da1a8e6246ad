"""What a person can do to an order. The CLI and the console call these; the worker does the work."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from utopia_handler.store import queries
from utopia_handler.store.models import Order, OrderState, Step


class ActionRefused(Exception):
    """The action does not apply to this order; the message says why."""


def retry_order(
    session: Session, order_ref: str, now: datetime, from_step: Step | None = None
) -> Order:
    """Queue the order again, at its current step or at `from_step`, as a new run."""
    order = queries.find_order(session, order_ref)
    if order is None:
        raise ActionRefused(f"no order {order_ref}")
    step = from_step or order.step
    if step == Step.FINISHED:
        raise ActionRefused(f"order {order_ref} has finished; name a step to run again")
    if order.lease_owner is not None and order.lease_expires_at and order.lease_expires_at > now:
        raise ActionRefused(f"order {order_ref} is being worked on right now; try again shortly")
    # A new run: uncertainty about earlier attempts is now the person's call, not the worker's.
    order.run += 1
    order.state = OrderState.IN_PROGRESS
    order.step = step
    order.step_attempts = 0
    order.retrying_since = None
    order.reason = None
    order.next_attempt_at = now
    order.updated_at = now
    return order
