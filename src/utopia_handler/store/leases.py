"""The processes behind leases: each worker's row in `workers`, and taking over a dead one's work.

A lease's `lease_owner` names a worker; its row says which process that is (host, pid, start
time). A worker that finds a process of its own machine gone takes its leases over at once
instead of waiting for them to expire; leases of other machines' processes still run out.
Every function takes the caller's session; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from utopia_handler.process_identity import ProcessIdentity
from utopia_handler.store.jobs import release_jobs_of
from utopia_handler.store.models import (
    AttemptOutcome,
    MessageAction,
    Notification,
    Order,
    Step,
    StepAttempt,
    SubscriberAction,
    WorkerProcess,
)

# Steps that write to PowerCode. One the dead process had under way may still be applied there
# after it died; the order waits until that call would have timed out, so that the next attempt's
# look-up ("was it created?") sees what it did.
_OUTSIDE_WRITES = (Step.CREATE_CUSTOMER, Step.ADD_SERVICES, Step.CREATE_TICKET, Step.ADD_TAGS)


@dataclass(frozen=True)
class TakenOver:
    """What a dead worker held and was given to whoever claims it next."""

    worker: str
    orders: int
    orders_in_flight: int  # of those, orders whose PowerCode call may still be answered
    notifications: int
    message_actions: int = 0


def record_alive(session: Session, name: str, process: ProcessIdentity, now: datetime) -> None:
    """Register the worker `name` as run by `process`, or note that it is still running."""
    row = session.get(WorkerProcess, name)
    if row is None:
        session.add(
            WorkerProcess(
                name=name,
                host=process.host,
                pid=process.pid,
                process_started=process.started,
                pid_space=process.pid_space,
                started_at=now,
                heartbeat_at=now,
            )
        )
    else:
        row.heartbeat_at = now


def gone_workers(
    session: Session, host: str, is_gone: Callable[[ProcessIdentity], bool]
) -> list[str]:
    """Names of the workers registered on `host` whose process `is_gone` says no longer runs."""
    rows = session.scalars(select(WorkerProcess).where(WorkerProcess.host == host))
    return [
        row.name
        for row in rows
        if is_gone(ProcessIdentity(row.host, row.pid, row.process_started, row.pid_space))
    ]


def take_over(session: Session, worker: str, now: datetime, call_window: timedelta) -> TakenOver:
    """Free the leases of a worker whose process is gone, and forget the worker.

    Its orders, e-mails and routed messages' actions are due at once, except an order whose PowerCode write was under way:
    its lease is cut to `call_window` from now, the longest that call could still be answered.
    """
    held = list(session.scalars(select(Order.id).where(Order.lease_owner == worker)))
    in_flight: set[int] = set()
    if held:
        in_flight = set(
            session.scalars(
                select(StepAttempt.order_id).where(
                    StepAttempt.order_id.in_(held),
                    StepAttempt.worker == worker,
                    StepAttempt.outcome == AttemptOutcome.STARTED,
                    StepAttempt.step.in_(_OUTSIDE_WRITES),
                )
            )
        )
    free = [order_id for order_id in held if order_id not in in_flight]
    if free:
        session.execute(
            update(Order)
            .where(Order.id.in_(free), Order.lease_owner == worker)
            .values(lease_owner=None, lease_expires_at=None)
        )
    if in_flight:
        until = now + call_window
        session.execute(
            update(Order)
            .where(
                Order.id.in_(in_flight),
                Order.lease_owner == worker,
                or_(Order.lease_expires_at.is_(None), Order.lease_expires_at > until),
            )
            .values(lease_expires_at=until)
        )
    mail = session.scalars(
        update(Notification)
        .where(Notification.lease_owner == worker)
        .values(lease_owner=None, lease_expires_at=None)
        .returning(Notification.id)
    ).all()
    # Free at once even with a PowerCode call under way: a ticket attempt left `started` makes
    # the next one wait for a person, and a note is read before it is written.
    routed = session.scalars(
        update(MessageAction)
        .where(MessageAction.lease_owner == worker)
        .values(lease_owner=None, lease_expires_at=None)
        .returning(MessageAction.id)
    ).all()
    # A subscriber action likewise: a step left `started` reads back (or waits) before a repeat.
    session.execute(
        update(SubscriberAction)
        .where(SubscriberAction.lease_owner == worker)
        .values(lease_owner=None, lease_expires_at=None)
    )
    release_jobs_of(session, worker)
    forget(session, worker)
    return TakenOver(worker, len(held), len(in_flight), len(mail), len(routed))


def forget(session: Session, worker: str) -> None:
    """Remove a worker's row (it stopped, or its leases were taken over)."""
    session.execute(delete(WorkerProcess).where(WorkerProcess.name == worker))


def forget_silent(session: Session, before: datetime) -> None:
    """Remove rows of workers not heard from since `before` (on other hosts; their leases ran out)."""
    session.execute(delete(WorkerProcess).where(WorkerProcess.heartbeat_at < before))
