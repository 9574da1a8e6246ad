"""Retention: a finished order keeps its outcome for good, its raw payloads for RETENTION_DAYS.

Raw payloads carry personal data: callback bodies, the UTOPIA contract (name, address, phone,
e-mail), the customer's name, the name of a former customer at the site, and the data the staff
e-mails were rendered from. The outcome stays: the order ref, site id, state, every step
attempt, the PowerCode ids and the e-mails' kinds and states, so a person can still see what
happened to an order years later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Executable, exists, null, select, text, update
from sqlalchemy.orm import Session

from utopia_handler.logs import log_event
from utopia_handler.store.db import Store
from utopia_handler.store.models import (
    Callback,
    Notification,
    NotificationState,
    Order,
    OrderState,
)

log = logging.getLogger("utopia_handler.store.retention")

# WAITING is not finished: a person still needs the contract to decide.
FINISHED_STATES = (OrderState.DONE, OrderState.DUPLICATE, OrderState.NOT_OURS, OrderState.IGNORED)
# Small batches keep each transaction (and, on SQLite, the write lock) short.
BATCH = 200


@dataclass(frozen=True)
class PurgeReport:
    """How many rows lost their raw payloads."""

    orders: int = 0
    callbacks: int = 0
    notifications: int = 0


def purge_expired(store: Store, now: datetime, retention_days: int) -> PurgeReport:
    """Remove raw payloads of orders finished more than `retention_days` ago; keep outcomes."""
    cutoff = now - timedelta(days=retention_days)
    orders = callbacks = notifications = 0
    while True:
        with store.write() as session:
            _erase_for_good(store, session)
            pending_mail = exists().where(
                Notification.order_id == Order.id,
                Notification.state == NotificationState.PENDING,
            )
            rows = session.execute(
                select(Order.id, Order.order_ref)
                .where(
                    Order.state.in_(FINISHED_STATES),
                    Order.updated_at < cutoff,
                    Order.purged_at.is_(None),
                    ~pending_mail,  # an e-mail still to be sent needs its data
                )
                .order_by(Order.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).all()
            ids = [row.id for row in rows]
            refs = [row.order_ref for row in rows]
            if ids:
                session.execute(
                    update(Order)
                    .where(Order.id.in_(ids))
                    # null(): a plain None would be stored as the JSON value `null`.
                    .values(
                        contract=null(),
                        customer_name=None,
                        customer_name_folded=None,
                        former_customer_name=None,
                        purged_at=now,
                    )
                )
                callbacks += _changed(
                    session,
                    update(Callback)
                    .where(Callback.order_ref.in_(refs), Callback.body.is_not(None))
                    .values(body=None),
                )
                notifications += _changed(
                    session,
                    update(Notification).where(Notification.order_id.in_(ids)).values(context={}),
                )
            orders += len(ids)
        if len(ids) < BATCH:
            break
    with store.write() as session:
        _erase_for_good(store, session)
        # Deliveries that never made an order (tests, messages we do not handle, unknown refs).
        has_order = exists().where(Order.order_ref == Callback.order_ref)
        callbacks += _changed(
            session,
            update(Callback)
            .where(Callback.received_at < cutoff, Callback.body.is_not(None), ~has_order)
            .values(body=None),
        )
    report = PurgeReport(orders=orders, callbacks=callbacks, notifications=notifications)
    if (orders or callbacks) and store.is_sqlite:
        _truncate_wal(store)
    if orders or callbacks:
        log_event(
            log,
            "retention.purged",
            orders=orders,
            callbacks=callbacks,
            notifications=notifications,
            days=retention_days,
        )
    return report


def _changed(session: Session, statement: Executable) -> int:
    """Run an UPDATE and say how many rows it changed."""
    return session.connection().execute(statement).rowcount


def _erase_for_good(store: Store, session: Session) -> None:
    # SQLite would otherwise leave the old values in free space inside the file.
    if store.is_sqlite:
        session.execute(text("PRAGMA secure_delete=ON"))


def _truncate_wal(store: Store) -> None:
    """Checkpoint and empty SQLite's write-ahead log, which still holds the old pages."""
    connection = store.engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.close()
    finally:
        connection.close()
