"""Reads and writes of orders, callbacks, attempts, routed messages' actions and notifications.

Every function takes the caller's session; the caller owns the transaction. Work is claimed with
leases: a worker owns a row until its lease expires, and every write it makes checks it still
owns the row, so a worker that lost its lease (paused, partitioned) can never overwrite the
newer owner's work.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Integer,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from utopia_handler.addresses import normalise_name
from utopia_handler.settings.routes import (
    ROUTE_ACTIONS,
    Router,
    compile_routes,
    route_from_mapping,
)
from utopia_handler.settings.schema import MessageRoute
from utopia_handler.store.console_models import ConfigKind, ConfigVersion
from utopia_handler.store.models import (
    ACTIVE_STATES,
    AttemptOutcome,
    Callback,
    CallbackOutcome,
    MessageAction,
    MessageActionAttempt,
    MessageActionKind,
    MessageActionState,
    Notification,
    NotificationKind,
    NotificationState,
    Order,
    OrderState,
    ShadowWrite,
    Step,
    StepAttempt,
    SubscriberAction,
    SubscriberActionAttempt,
)
from utopia_handler.store.prepared import Prepared

NEW_ORDER_MSG = "project new order"
TEST_MSG = "test"
# Test callbacks carry no order; the same one within this window counts as a repeat delivery.
TEST_REPEAT_WINDOW = timedelta(minutes=10)


class LeaseLost(Exception):
    """This worker no longer owns the row it was working on; another worker has it now."""


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


# The callback's path runs on a bare connection (Store.write_connection); tests and tools pass a
# session. Both execute the same statements.
Executor = Session | Connection


def _prepared_insert(model: Any, names: tuple[str, ...], tail: str = "") -> Prepared:
    """INSERT of these columns into the model's table as plain SQL, compiled once per shape: a
    Core insert's values() costs more each time, and this runs for every callback."""
    cache_key = (model, names, tail)
    statement = _PREPARED_INSERTS.get(cache_key)
    if statement is None:
        columns = model.__table__.c
        # Table and column names are ours, never input; the values are bound parameters.
        sql = (
            f"INSERT INTO {model.__tablename__} ({', '.join(names)}) "  # noqa: S608
            f"VALUES ({', '.join(':' + n for n in names)}){tail}"
        )
        statement = Prepared(
            text(sql).bindparams(*(bindparam(n, type_=columns[n].type) for n in names))
        )
        _PREPARED_INSERTS[cache_key] = statement
    return statement


_PREPARED_INSERTS: dict[tuple[Any, tuple[str, ...], str], Prepared] = {}


def _insert_new(session: Executor, model: Any, unique: str, row: dict[str, Any]) -> int | None:
    """Insert a row unless the `unique` column already holds its value; the new id, or None.

    Written as SQL that SQLite (3.35+) and PostgreSQL both speak: SQLAlchemy cannot cache the
    compiled form of its dialect-specific ON CONFLICT construct, and this runs for every callback.
    """
    statement = _prepared_insert(
        model, tuple(row), f" ON CONFLICT ({unique}) DO NOTHING RETURNING id"
    )
    if isinstance(session, Connection):  # the callback's path: straight to the driver
        cursor = statement.run(session, row)
        found = cursor.fetchone()
        cursor.close()
        return None if found is None else int(found[0])
    inserted: int | None = session.execute(statement.statement, row).scalar_one_or_none()
    return inserted


def _insert_row(session: Executor, model: Any, row: dict[str, Any]) -> None:
    """Insert one row (no conflict handling), compiled once like `_insert_new`."""
    statement = _prepared_insert(model, tuple(row))
    if isinstance(session, Connection):
        statement.run(session, row).close()
    else:
        session.execute(statement.statement, row)


# Callbacks ---------------------------------------------------------------------------------------


def record_callback(
    session: Executor,
    *,
    order_ref: str,
    msg: str,
    event: str | None,
    body: str,
    remote_addr: str | None,
    now: datetime,
    shadow: bool = False,
    routes: Sequence[MessageRoute] = (),
) -> CallbackOutcome:
    """Store one callback delivery and queue the work it asks for, unless it is a repeat.

    Every message but a test goes with its order; a message for an order we do not know records
    it, not provisioned. `routes` is the routing table of the settings file, in force unless
    the console saved one.
    """
    kind = msg.strip().casefold()
    order_id: int | None = None
    if kind == NEW_ORDER_MSG:
        inserted = _insert_new(
            session,
            Order,
            "order_ref",
            {
                "order_ref": order_ref,
                "state": OrderState.RECEIVED,
                "step": Step.LOOKUP_CONTRACT,
                "created_at": now,
                "updated_at": now,
                "next_attempt_at": now,
                "run": 1,
                "step_attempts": 0,
                "customer_created": False,
                "shadow": shadow,
            },
        )
        if inserted is not None:
            order_id, outcome = inserted, CallbackOutcome.QUEUED
        else:
            order_id = session.scalar(select(Order.id).where(Order.order_ref == order_ref))
            queued = _queue_recorded_order(session, order_ref, now, shadow)
            outcome = CallbackOutcome.QUEUED if queued else CallbackOutcome.REPEAT
    elif kind == TEST_MSG:
        window = int(now.timestamp() // TEST_REPEAT_WINDOW.total_seconds())
        digest = hashlib.sha256(f"{order_ref}|{event}".encode()).hexdigest()[:16]
        inserted = _insert_new(
            session,
            Notification,
            "message_id",
            {
                "order_id": None,
                "kind": NotificationKind.TEST,
                "message_id": f"test.{digest}.{window}",
                "context": {"order_ref": order_ref, "event": event or ""},
                "state": NotificationState.PENDING,
                "created_at": now,
                "next_attempt_at": now,
                "attempts": 0,
            },
        )
        outcome = CallbackOutcome.TEST_QUEUED if inserted is not None else CallbackOutcome.REPEAT
    else:
        order_id, outcome = _record_message(session, order_ref, msg, event, now, routes)
    # Plain SQL: the ORM's unit of work costs more than the rest of this function together.
    _insert_row(
        session,
        Callback,
        {
            "received_at": now,
            "order_ref": order_ref,
            "msg": msg,
            "event": event,
            "outcome": outcome,
            "remote_addr": remote_addr,
            "body": body,
            "order_id": order_id,
        },
    )
    return outcome


def _record_message(
    session: Executor,
    order_ref: str,
    msg: str,
    event: str | None,
    now: datetime,
    routes: Sequence[MessageRoute],
) -> tuple[int, CallbackOutcome]:
    """Any other message: its order (recorded when unknown) and what the routing table says."""
    # One round trip for the three look-ups: this runs for every such callback.
    seen, order_id, stored = session.execute(
        _MESSAGE_LOOKUP[event is None],
        {"ref": order_ref, "msg": msg, "event": event, "kind": ConfigKind.MESSAGE_ROUTES.value},
    ).one()
    if order_id is None:
        order_id = _record_known_order(session, order_ref, msg, now)
    if seen is not None:
        return order_id, CallbackOutcome.REPEAT
    route = _router(stored, routes).route(msg)
    if route is None:
        return order_id, CallbackOutcome.NOT_HANDLED
    if route.action == "ignore":
        return order_id, CallbackOutcome.IGNORED
    inserted = _insert_new(
        session,
        MessageAction,
        "key",
        {
            "order_id": order_id,
            "key": message_action_key(order_id, msg, event),
            "msg": msg,
            "event": event,
            "action": MessageActionKind(route.action),
            "state": MessageActionState.PENDING,
            "run": 1,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
            "next_attempt_at": now,
        },
    )
    return order_id, CallbackOutcome.ROUTED if inserted is not None else CallbackOutcome.REPEAT


def message_action_key(order_id: int, msg: str, event: str | None) -> str:
    """What makes a routed message one piece of work: its order, text and event."""
    return hashlib.sha256(f"{order_id}|{msg}|{event or ''}".encode()).hexdigest()


def _record_known_order(session: Executor, order_ref: str, msg: str, now: datetime) -> int:
    """A message for an order we do not know: the order, recorded but not provisioned.

    The lifecycle's record_known_order, written as one statement because it runs on the
    callback's path; a concurrent delivery that recorded it first is found instead.
    """
    inserted = _insert_new(
        session,
        Order,
        "order_ref",
        {
            "order_ref": order_ref,
            "state": OrderState.RECORDED,
            "step": Step.LOOKUP_CONTRACT,
            "created_at": now,
            "updated_at": now,
            "next_attempt_at": now,
            "run": 1,
            "step_attempts": 0,
            "customer_created": False,
            "reason": f"UTOPIA sent {msg!r}; no new-order message yet",
        },
    )
    if inserted is not None:
        return inserted
    found = session.scalar(select(Order.id).where(Order.order_ref == order_ref))
    assert found is not None  # the conflicting row is committed: ON CONFLICT waited for it
    return found


def _message_lookup(event_is_null: bool) -> Any:
    # Table and column names are ours; the values are bound parameters.
    same_event = "event IS NULL" if event_is_null else "event = :event"
    return text(
        "SELECT "  # noqa: S608
        "(SELECT id FROM callbacks WHERE order_ref = :ref AND msg = :msg "
        f"AND {same_event} LIMIT 1) AS seen, "
        "(SELECT id FROM orders WHERE order_ref = :ref) AS order_id, "
        "(SELECT value FROM config_versions WHERE kind = :kind ORDER BY id DESC LIMIT 1) AS routes"
    ).columns(seen=Integer, order_id=Integer, routes=JSON)


# The callback's look-ups as plain SQL, compiled once (by whether the event is missing).
_MESSAGE_LOOKUP = {True: _message_lookup(True), False: _message_lookup(False)}


def routes_in_force(session: Session, base: Sequence[MessageRoute]) -> Router:
    """The routing table in force: the console's newest version, else the settings file's."""
    value = session.scalar(
        select(ConfigVersion.value)
        .where(ConfigVersion.kind == ConfigKind.MESSAGE_ROUTES)
        .order_by(ConfigVersion.id.desc())
        .limit(1)
    )
    return _router(value, base)


def _router(stored: Any, base: Sequence[MessageRoute]) -> Router:
    """The console's saved table when there is one (`stored`), else the settings file's."""
    if stored is None:
        return compile_routes(tuple(base))
    # Checked when saved; compiled once per distinct table (compile_routes is cached).
    return compile_routes(
        tuple(
            MessageRoute(row["action"], row.get("match"), row.get("pattern"))
            for row in stored
            if isinstance(row, dict) and row.get("action") in ROUTE_ACTIONS
        )
    )


def stored_routes(value: Any) -> tuple[MessageRoute, ...]:
    """A saved routing table's rows, checked again (for people to read and edit)."""
    return tuple(route_from_mapping(row) for row in value or () if isinstance(row, dict))


def _queue_recorded_order(session: Executor, order_ref: str, now: datetime, shadow: bool) -> bool:
    """A new-order message for an order only recorded so far: it is provisioned now.

    The lifecycle's "recorded -> received" change (lifecycle.provision_recorded), written here
    as one conditional statement because it runs on the callback's path.
    """
    result = session.execute(
        update(Order)
        .where(Order.order_ref == order_ref, Order.state == OrderState.RECORDED)
        .values(
            state=OrderState.RECEIVED,
            step=Step.LOOKUP_CONTRACT,
            reason=None,
            next_attempt_at=now,
            updated_at=now,
            shadow=shadow,
        )
    )
    return bool(getattr(result, "rowcount", 0))


# Claiming and leases -----------------------------------------------------------------------------


_Leased = type[Order] | type[Notification] | type[MessageAction] | type[SubscriberAction]
# A durable action of either kind: a routed message's, or a subscriber action a person asked for.
AnyAction = MessageAction | SubscriberAction


def _claim(
    session: Session,
    model: _Leased,
    waiting: ColumnElement[bool],
    owner: str,
    limit: int,
    now: datetime,
    lease: timedelta,
) -> list[int]:
    """Lease up to `limit` rows of `model` that wait for work, are due, and hold no live lease."""
    ids = list(
        session.scalars(
            select(model.id)
            .where(
                waiting,
                model.next_attempt_at <= now,
                or_(model.lease_expires_at.is_(None), model.lease_expires_at < now),
            )
            .order_by(model.next_attempt_at, model.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(
            update(model)
            .where(model.id.in_(ids))
            .values(lease_owner=owner, lease_expires_at=now + lease)
        )
    return ids


def claim_due_orders(
    session: Session,
    owner: str,
    limit: int,
    now: datetime,
    lease: timedelta,
    *,
    shadow: bool = False,
) -> list[int]:
    """Take up to `limit` orders that are due and not held by a live lease.

    Only orders received in the worker's own mode: a shadow order is never provisioned for real
    because shadow mode was turned off, nor a real one shadowed because it was turned on.
    """
    waiting = Order.state.in_(ACTIVE_STATES) & (Order.shadow == shadow)
    return _claim(session, Order, waiting, owner, limit, now, lease)


def claim_due_notifications(
    session: Session, owner: str, limit: int, now: datetime, lease: timedelta
) -> list[int]:
    """Take up to `limit` e-mails that are due and not held by a live lease."""
    pending = Notification.state == NotificationState.PENDING
    return _claim(session, Notification, pending, owner, limit, now, lease)


def claim_due_message_actions(
    session: Session,
    owner: str,
    limit: int,
    now: datetime,
    lease: timedelta,
    *,
    shadow: bool = False,
) -> list[int]:
    """Take up to `limit` routed messages' actions that are due and not held by a live lease.

    Only those of orders of the worker's own mode, as with orders (claim_due_orders).
    """
    # A correlated look-up of each due action's order by its key: an IN over every order of
    # the mode would read the whole orders table at every claim.
    in_mode = (
        select(Order.id).where(Order.id == MessageAction.order_id, Order.shadow == shadow).exists()
    )
    pending = (MessageAction.state == MessageActionState.PENDING) & in_mode
    return _claim(session, MessageAction, pending, owner, limit, now, lease)


def claim_due_subscriber_actions(
    session: Session,
    owner: str,
    limit: int,
    now: datetime,
    lease: timedelta,
    *,
    shadow: bool = False,
    only: int | None = None,
) -> list[int]:
    """Take up to `limit` subscriber actions (only action `only`, if given) that are due and
    not held by a live lease.

    Only those queued in the worker's own mode: one queued in shadow mode is never sent for real.
    """
    pending = (SubscriberAction.state == MessageActionState.PENDING) & (
        SubscriberAction.shadow == shadow
    )
    if only is not None:
        pending = pending & (SubscriberAction.id == only)
    return _claim(session, SubscriberAction, pending, owner, limit, now, lease)


def extend_leases(
    session: Session,
    owner: str,
    order_ids: list[int],
    notification_ids: list[int],
    until: datetime,
    message_action_ids: Sequence[int] = (),
    subscriber_action_id: int | None = None,
) -> None:
    """Heartbeat: keep the leases of the work this worker holds."""
    if subscriber_action_id is not None:
        session.execute(
            update(SubscriberAction)
            .where(
                SubscriberAction.id == subscriber_action_id, SubscriberAction.lease_owner == owner
            )
            .values(lease_expires_at=until)
        )
    if order_ids:
        session.execute(
            update(Order)
            .where(Order.id.in_(order_ids), Order.lease_owner == owner)
            .values(lease_expires_at=until)
        )
    if notification_ids:
        session.execute(
            update(Notification)
            .where(Notification.id.in_(notification_ids), Notification.lease_owner == owner)
            .values(lease_expires_at=until)
        )
    if message_action_ids:
        session.execute(
            update(MessageAction)
            .where(MessageAction.id.in_(message_action_ids), MessageAction.lease_owner == owner)
            .values(lease_expires_at=until)
        )


def release_all(session: Session, owner: str) -> None:
    """Give back every lease this worker holds (at shutdown), so others need not wait for expiry."""
    session.execute(
        update(Order)
        .where(Order.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )
    session.execute(
        update(Notification)
        .where(Notification.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )
    for model in (MessageAction, SubscriberAction):
        session.execute(
            update(model)
            .where(model.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


def give_back(session: Session, model: _Leased, row_id: int, owner: str) -> None:
    """Release one row's lease, if `owner` still holds it (after its work, whatever happened)."""
    row: Any = session.get(model, row_id)
    if row is not None and row.lease_owner == owner:
        row.lease_owner = None
        row.lease_expires_at = None


def _owned(session: Session, model: _Leased, row_id: int, owner: str) -> Any:
    row: Any = session.scalar(select(model).where(model.id == row_id).with_for_update())
    if row is None or row.lease_owner != owner:
        raise LeaseLost(f"{model.__tablename__} {row_id}")
    return row


def owned_order(session: Session, order_id: int, owner: str) -> Order:
    """The order, locked for this transaction, provided this worker still holds its lease."""
    order: Order = _owned(session, Order, order_id, owner)
    return order


def owned_notification(session: Session, notification_id: int, owner: str) -> Notification:
    """The notification, locked, provided this worker still holds its lease."""
    row: Notification = _owned(session, Notification, notification_id, owner)
    return row


def owned_message_action(session: Session, action_id: int, owner: str) -> MessageAction:
    """The routed message's action, locked, provided this worker still holds its lease."""
    row: MessageAction = _owned(session, MessageAction, action_id, owner)
    return row


def owned_subscriber_action(session: Session, action_id: int, owner: str) -> SubscriberAction:
    """The subscriber action, locked, provided this worker still holds its lease."""
    row: SubscriberAction = _owned(session, SubscriberAction, action_id, owner)
    return row


# Step attempts -----------------------------------------------------------------------------------

_MAYBE_APPLIED = (AttemptOutcome.STARTED, AttemptOutcome.UNCERTAIN)


def earlier_attempts(session: Session, order: Order, step: Step) -> tuple[int, bool]:
    """How many attempts this step had in the order's current run, and whether one may have applied."""
    rows = session.execute(
        select(StepAttempt.outcome).where(
            StepAttempt.order_id == order.id,
            StepAttempt.run == order.run,
            StepAttempt.step == step,
        )
    ).all()
    return len(rows), any(row.outcome in _MAYBE_APPLIED for row in rows)


def previous_attempt(
    session: Session, order: Order, step: Step, before_id: int
) -> StepAttempt | None:
    """The order's latest attempt of `step` before attempt `before_id` (any run), or None."""
    return session.scalar(
        select(StepAttempt)
        .where(
            StepAttempt.order_id == order.id,
            StepAttempt.step == step,
            StepAttempt.id < before_id,
        )
        .order_by(StepAttempt.id.desc())
        .limit(1)
    )


def add_attempt(session: Session, order: Order, owner: str, now: datetime) -> StepAttempt:
    """Write the attempt row of the order's current step and attempt number (see lifecycle)."""
    attempt = StepAttempt(
        order_id=order.id,
        run=order.run,
        step=order.step,
        attempt=order.step_attempts,
        worker=owner,
        started_at=now,
        outcome=AttemptOutcome.STARTED,
    )
    session.add(attempt)
    session.flush()
    return attempt


def finish_attempt(
    session: Session,
    attempt_id: int,
    outcome: AttemptOutcome,
    detail: str,
    now: datetime,
    ids: dict[str, Any] | None = None,
) -> None:
    """Record how an attempt ended."""
    _finish(session, StepAttempt, attempt_id, outcome, detail, now, {"ids": ids} if ids else {})


def _finish(
    session: Session,
    model: type[StepAttempt] | type[MessageActionAttempt] | type[SubscriberActionAttempt],
    attempt_id: int,
    outcome: AttemptOutcome,
    detail: str,
    now: datetime,
    more: dict[str, Any] | None = None,
) -> None:
    # One UPDATE, without loading the row first (an attempt loaded in this session is updated
    # in memory too).
    session.execute(
        update(model)
        .where(model.id == attempt_id)
        .values(outcome=outcome, detail=detail[:2000], finished_at=now, **(more or {}))
    )


# Routed messages' attempts ------------------------------------------------------------------------


def _attempt_model(action: AnyAction) -> type[MessageActionAttempt | SubscriberActionAttempt]:
    return MessageActionAttempt if isinstance(action, MessageAction) else SubscriberActionAttempt


def earlier_action_attempts(session: Session, action: AnyAction) -> tuple[int, bool]:
    """How many attempts the action (a subscriber action: its current step) had in its current
    run, and whether one may have applied."""
    model = _attempt_model(action)
    query = select(model.outcome).where(model.action_id == action.id, model.run == action.run)
    if isinstance(action, SubscriberAction):
        query = query.where(SubscriberActionAttempt.step == action.steps[action.step]["name"])
    rows = session.execute(query).all()
    return len(rows), any(row.outcome in _MAYBE_APPLIED for row in rows)


def add_action_attempt(
    session: Session, action: AnyAction, owner: str, now: datetime
) -> MessageActionAttempt | SubscriberActionAttempt:
    """Write the attempt row of the action's current attempt number (see lifecycle)."""
    columns: dict[str, Any] = {
        "action_id": action.id,
        "run": action.run,
        "attempt": action.attempts,
        "worker": owner,
        "started_at": now,
        "outcome": AttemptOutcome.STARTED,
    }
    if isinstance(action, SubscriberAction):
        columns["step"] = action.steps[action.step]["name"]
    attempt = _attempt_model(action)(**columns)
    session.add(attempt)
    session.flush()
    return attempt


def finish_action_attempt(
    session: Session,
    action: AnyAction,
    attempt_id: int,
    outcome: AttemptOutcome,
    detail: str,
    now: datetime,
) -> None:
    """Record how an attempt of a durable action ended."""
    if isinstance(action, MessageAction):
        _finish(session, MessageActionAttempt, attempt_id, outcome, detail, now)
    else:
        _finish(session, SubscriberActionAttempt, attempt_id, outcome, detail, now)


# Notifications -----------------------------------------------------------------------------------


def enqueue_notification(
    session: Session,
    order: Order,
    kind: NotificationKind,
    context: dict[str, Any],
    now: datetime,
) -> Notification:
    """Queue one staff e-mail about an order, with a Message-ID stable for this order and kind."""
    earlier = session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.order_id == order.id, Notification.kind == kind)
    )
    sequence = f".{earlier}" if earlier else ""
    row = Notification(
        order_id=order.id,
        kind=kind,
        message_id=f"{kind.value}.{order.order_ref}{sequence}",
        context=context,
        state=NotificationState.PENDING,
        created_at=now,
        next_attempt_at=now,
        attempts=0,
    )
    session.add(row)
    return row


def lease_queued_notification(
    session: Session, row: Notification, owner: str, until: datetime
) -> int:
    """Lease an e-mail queued in this transaction to the worker that queued it; its id.

    That worker sends it right after the commit, instead of leaving it for the next claim."""
    row.lease_owner = owner
    row.lease_expires_at = until
    session.flush()
    return row.id


def enqueue_staff_notification(
    session: Session,
    kind: NotificationKind,
    message_id: str,
    context: dict[str, Any],
    now: datetime,
) -> None:
    """Queue one staff e-mail about no one order (reconciliation's), with the given Message-ID."""
    session.add(
        Notification(
            order_id=None,
            kind=kind,
            message_id=message_id,
            context=context,
            state=NotificationState.PENDING,
            created_at=now,
            next_attempt_at=now,
            attempts=0,
        )
    )


# Reading for people -----------------------------------------------------------------------------


def shadow_writes(session: Session, order_id: int) -> list[ShadowWrite]:
    """What shadow mode recorded instead of sending for one order, oldest first."""
    return list(
        session.scalars(
            select(ShadowWrite).where(ShadowWrite.order_id == order_id).order_by(ShadowWrite.id)
        )
    )


def find_order(session: Session, order_ref: str) -> Order | None:
    """One order by its UTOPIA reference."""
    return session.scalar(select(Order).where(Order.order_ref == order_ref))


_MAX_ID = 2**31 - 1
# "10004", "#10004", "PC#10004", "pc 10004": a PowerCode customer number (or a numeric site id).
_NUMBER_RE = re.compile(r"(?:pc)?\s*#?\s*([0-9]{1,10})", re.IGNORECASE)


# A part of an order ref or of a name (not its beginning) can only be found by reading the
# rows: only the newest orders are read for it, so a search costs the same at any size.
SEARCH_SCAN_ORDERS = 20_000


def search_floor(session: Session) -> int | None:
    """The lowest order id a search reads for parts of refs and names: the newest
    SEARCH_SCAN_ORDERS orders (None when there are no more than that)."""
    highest = session.scalar(select(func.max(Order.id)))  # the primary key's last entry
    if highest is None or highest <= SEARCH_SCAN_ORDERS:
        return None
    return int(highest) - SEARCH_SCAN_ORDERS + 1


def order_search(text: str, *, scan_from: int | None = None) -> ColumnElement[bool]:
    """Orders matching a person's search, as one condition (see search_conditions)."""
    return or_(*search_conditions(text, scan_from=scan_from))


def order_search_ids(text: str, *, scan_from: int | None = None) -> ColumnElement[bool]:
    """Orders matching a person's search, as "id in" the union of each way of matching: every
    part then runs on its own index (or its bounded range of ids), whatever the list's order."""
    parts = [select(Order.id).where(c) for c in search_conditions(text, scan_from=scan_from)]
    return Order.id.in_(union(*parts))


def search_conditions(text: str, *, scan_from: int | None = None) -> list[ColumnElement[bool]]:
    """The ways an order matches a person's search, ignoring case and accents ("Maria" finds
    "María").

    Through an index, among every order: a whole order ref, the beginning of the customer's
    name ("maria jo", "whitf"), a site id, or a PowerCode customer number written 10004, #10004
    or PC#10004. By reading rows, among the orders from id `scan_from` on (all when None): part
    of an order ref, and words of the name in any order ("ramirez maria").
    """
    words = " ".join(text.split())
    conditions: list[ColumnElement[bool]] = [
        Order.order_ref.in_({words, words.upper()}),
        Order.site_id == words,
    ]
    folded_text = normalise_name(words)
    folded = folded_text.split()
    if folded_text:
        # A range on the folded name's index; LIKE makes it exact whatever the collation.
        conditions.append(
            and_(
                Order.customer_name_folded >= folded_text,
                Order.customer_name_folded < folded_text + "\U0010ffff",
                Order.customer_name_folded.startswith(folded_text, autoescape=True),
            )
        )
    scanned: list[ColumnElement[bool]] = [Order.order_ref.icontains(words, autoescape=True)]
    if folded:  # every word, in any order: "maria ramirez" finds "María José O'Neill-Ramírez"
        scanned.append(
            and_(*(Order.customer_name_folded.contains(w, autoescape=True) for w in folded))
        )
    bound = [Order.id >= scan_from] if scan_from is not None else []
    conditions.append(and_(*bound, or_(*scanned)))
    number = _NUMBER_RE.fullmatch(words)
    if number is not None:
        digits = number.group(1)
        conditions.append(Order.site_id == digits)
        if int(digits) <= _MAX_ID:
            conditions.append(Order.customer_id == int(digits))
    return conditions


# The console counts orders up to this many per state: beyond it, "1000+". A count of every
# row would read the whole table at every page view; the states people act on stay far below.
COUNT_CAP = 1000


@dataclass(frozen=True)
class StateCounts:
    """Orders per state, counted up to COUNT_CAP; a count in `over` is "at least" that many."""

    counts: dict[OrderState, int]
    over: frozenset[OrderState]
    all: int
    all_over: bool

    def shown(self, state: OrderState | None = None) -> str:
        """The count as people read it: "12", or "1000+" where counting stopped (None: all)."""
        if state is None:
            return f"{self.all}+" if self.all_over else str(self.all)
        return f"{self.counts[state]}+" if state in self.over else str(self.counts[state])


def count_orders_bounded(
    session: Session, matching: ColumnElement[bool] | None = None
) -> StateCounts:
    """Orders per state, each read through the (state, id) index up to COUNT_CAP + 1 entries.

    Of a search's matches (`matching`), the first COUNT_CAP + 1 are counted by state: with
    more, every count is "at least".
    """
    if matching is not None:
        first = select(Order.state).where(matching).limit(COUNT_CAP + 1).subquery()
        found = {
            OrderState(s): int(n)
            for s, n in session.execute(select(first.c.state, func.count()).group_by(first.c.state))
        }
        counts = {s: found.get(s, 0) for s in OrderState}
        total = sum(counts.values())
        if total > COUNT_CAP:
            over = frozenset(s for s, n in counts.items() if n)
            return StateCounts(counts, over, COUNT_CAP, True)
        return StateCounts(counts, frozenset(), total, False)
    columns = [
        select(func.count())
        .select_from(select(Order.id).where(Order.state == state).limit(COUNT_CAP + 1).subquery())
        .scalar_subquery()
        for state in OrderState
    ]
    row = session.execute(select(*columns)).one()
    raw = dict(zip(OrderState, (int(n) for n in row), strict=True))
    over = frozenset(s for s, n in raw.items() if n > COUNT_CAP)
    counts = {s: min(n, COUNT_CAP) for s, n in raw.items()}
    return StateCounts(counts, over, sum(counts.values()), bool(over))


@dataclass(frozen=True)
class OrderPage:
    """One page of the orders list, newest first, and the ids its neighbours start from."""

    orders: list[Order]
    newer: int | None  # ?after= for the page before this one (None: this is the newest)
    older: int | None  # ?before= for the page after this one (None: nothing older)


def page_of_orders(
    session: Session,
    where: Sequence[ColumnElement[bool]],
    size: int,
    *,
    before: int | None = None,
    after: int | None = None,
) -> OrderPage:
    """The `size` orders just older than id `before`, just newer than id `after`, or the
    newest, among those matching `where`: a seek on the id, never an OFFSET, so any page costs
    what the first does and rows added meanwhile neither repeat nor skip one."""
    if after is not None:
        rows = _seek(session, [*where, Order.id > after], Order.id, size + 1)
        if len(rows) <= size:  # nothing newer than these: the newest page, full
            return page_of_orders(session, where, size)
        rows = rows[:size][::-1]
        older = _any(session, [*where, Order.id < rows[-1].id])
        return OrderPage(rows, rows[0].id, rows[-1].id if older else None)
    seek = [Order.id < before] if before is not None else []
    rows = _seek(session, [*where, *seek], Order.id.desc(), size + 1)
    older_from = rows[size - 1].id if len(rows) > size else None
    rows = rows[:size]
    newer_from: int | None = None
    if before is not None:  # a page back: newer ones exist unless all were removed
        newer_from = rows[0].id if rows else before - 1
        if not _any(session, [*where, Order.id > newer_from]):
            newer_from = None
    return OrderPage(rows, newer_from, older_from)


def _seek(
    session: Session, where: Sequence[ColumnElement[bool]], order: Any, limit: int
) -> list[Order]:
    return list(session.scalars(select(Order).where(*where).order_by(order).limit(limit)))


def _any(session: Session, where: Sequence[ColumnElement[bool]]) -> bool:
    return bool(session.scalar(select(select(Order.id).where(*where).exists())))


def order_history(
    session: Session, order: Order
) -> tuple[list[Callback], list[StepAttempt], list[Notification]]:
    """Callbacks received, step attempts and e-mails of one order, oldest first."""
    callbacks = list(
        session.scalars(select(Callback).where(Callback.order_id == order.id).order_by(Callback.id))
    )
    attempts = list(
        session.scalars(
            select(StepAttempt).where(StepAttempt.order_id == order.id).order_by(StepAttempt.id)
        )
    )
    notifications = list(
        session.scalars(
            select(Notification).where(Notification.order_id == order.id).order_by(Notification.id)
        )
    )
    return callbacks, attempts, notifications


def message_actions(
    session: Session, order: Order
) -> tuple[list[MessageAction], list[MessageActionAttempt]]:
    """The routed messages' actions of one order and their attempts, oldest first."""
    return _actions_of(session, order, MessageAction, MessageActionAttempt)


def subscriber_actions(
    session: Session, order: Order
) -> tuple[list[SubscriberAction], list[SubscriberActionAttempt]]:
    """The order's subscriber actions and their attempts, oldest first."""
    return _actions_of(session, order, SubscriberAction, SubscriberActionAttempt)


def _actions_of(
    session: Session, order: Order, model: Any, attempt_model: Any
) -> tuple[list[Any], list[Any]]:
    actions = list(
        session.scalars(select(model).where(model.order_id == order.id).order_by(model.id))
    )
    ids = [action.id for action in actions]
    attempts = (
        list(
            session.scalars(
                select(attempt_model)
                .where(attempt_model.action_id.in_(ids))
                .order_by(attempt_model.id)
            )
        )
        if ids
        else []
    )
    return actions, attempts


def callbacks_by_message(session: Session, top: int) -> tuple[list[tuple[str, int]], int]:
    """The `top` most frequent callback messages with their counts, and how many others came."""
    rows = session.execute(
        select(Callback.msg, func.count())
        .group_by(Callback.msg)
        .order_by(func.count().desc(), Callback.msg)
        .limit(top)
    ).all()
    total = session.scalar(select(func.count()).select_from(Callback)) or 0
    named = [(str(msg), int(count)) for msg, count in rows]
    return named, int(total) - sum(count for _, count in named)


def not_handled_messages(session: Session, limit: int) -> list[tuple[str, int]]:
    """The messages no route takes, most frequent first, with how often they came."""
    rows = session.execute(
        select(Callback.msg, func.count())
        .where(Callback.outcome == CallbackOutcome.NOT_HANDLED)
        .group_by(Callback.msg)
        .order_by(func.count().desc(), Callback.msg)
        .limit(limit)
    ).all()
    return [(str(msg), int(count)) for msg, count in rows]


def count_orders_by_state(session: Session) -> dict[OrderState, int]:
    """How many orders are in each state."""
    rows = session.execute(select(Order.state, func.count()).group_by(Order.state)).all()
    return {state: count for state, count in rows}


def all_work_finished(session: Session) -> bool:
    """Whether nothing is left to do: no order received or in progress, no e-mail or routed
    message's action pending."""
    active = select(Order.id).where(Order.state.in_(ACTIVE_STATES))
    pending = select(Notification.id).where(Notification.state == NotificationState.PENDING)
    routed = select(MessageAction.id).where(MessageAction.state == MessageActionState.PENDING)
    return not session.scalar(select(or_(active.exists(), pending.exists(), routed.exists())))
