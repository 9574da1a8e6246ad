"""Tables: callbacks received, orders and their step attempts, routed messages' actions, the
e-mail outbox, reconciliation.

Each order's history is rows a person can read later, not log lines to grep.
Times are naive UTC datetimes everywhere (SQLite keeps no time zone).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from utopia_handler.addresses import normalise_name


class Base(DeclarativeBase):
    pass


class OrderState(enum.StrEnum):
    RECEIVED = "received"  # stored, not yet worked on
    IN_PROGRESS = "in_progress"  # being worked on, or waiting for its next retry
    WAITING = "waiting"  # waiting for a person; `reason` says why
    DONE = "done"
    DUPLICATE = "duplicate"  # the customer existed in PowerCode before this order
    NOT_OURS = "not_ours"  # UTOPIA says the order is not this ISP's
    IGNORED = "ignored"  # a person decided nothing is to be done
    # Known from UTOPIA but not provisioned: listed before installation (reconciliation's
    # baseline), or only other messages so far. A new-order message or a person provisions it.
    RECORDED = "recorded"


ACTIVE_STATES = (OrderState.RECEIVED, OrderState.IN_PROGRESS)


class Step(enum.StrEnum):
    """The steps of a new order, in the order they run."""

    LOOKUP_CONTRACT = "lookup_contract"
    CHOOSE_PLANS = "choose_plans"
    FIND_CUSTOMER = "find_customer"
    CREATE_CUSTOMER = "create_customer"
    ADD_SERVICES = "add_services"
    CREATE_TICKET = "create_ticket"
    ADD_TAGS = "add_tags"
    NOTIFY = "notify"
    FINISHED = "finished"


STEP_SEQUENCE = tuple(Step)


class SiteDecision(enum.StrEnum):
    """A person's answer when the order's site already has a PowerCode customer of another name."""

    NEW_CUSTOMER = "new_customer"  # a new subscriber moved in: create an account of their own
    SAME_PERSON = "same_person"  # the site's customer is this order's person: a duplicate


class AttemptOutcome(enum.StrEnum):
    STARTED = "started"  # written before the outside calls; left as is if the process died
    OK = "ok"
    RETRY = "retry"  # a fault outside; tried again later
    UNCERTAIN = "uncertain"  # the request went out but its reply was lost
    REJECTED = "rejected"  # the outside system said no; waits for a person
    HELD = "held"  # our own rule stopped the order (unmapped plan, missing field...)
    FINAL = "final"  # the order ended here (duplicate, not ours)
    FAILED = "failed"  # an internal error; waits for a person


class CallbackOutcome(enum.StrEnum):
    QUEUED = "queued"  # a new order was queued
    REPEAT = "repeat"  # the same callback was seen before; nothing new started
    TEST_QUEUED = "test_queued"  # a test e-mail was queued
    NOT_HANDLED = "not_handled"  # stored and acknowledged; no work for this `msg`
    ROUTED = "routed"  # the routing table gave this `msg` an action; it was queued
    IGNORED = "ignored"  # the routing table says: store and show it, nothing else


class NotificationKind(enum.StrEnum):
    SUCCESS = "success"
    DUPLICATE = "duplicate"
    HELD = "held"
    FAILED = "failed"
    TEST = "test"
    # Reconciliation's, about no one order: what one run found, and a list not read for long.
    MISSED_ORDERS = "missed_orders"
    RECONCILE_STALE = "reconcile_stale"
    MESSAGE = "message"  # a routed UTOPIA message: `notify`, or an action that needs a person
    SUBSCRIBER = "subscriber"  # a subscriber action finished, or waits for a person


class ReconcileOutcome(enum.StrEnum):
    OK = "ok"  # the order list was read whole (it may be empty)
    FAILED = "failed"  # UTOPIA could not be asked or refused: down, timed out, 401...
    UNREADABLE = "unreadable"  # UTOPIA answered, but not with a list that could be read whole


class NotificationState(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up; shown to a person


def _enum(cls: type[enum.StrEnum]) -> Any:
    # Stored as plain strings so the values are readable in the database and migrations stay simple.
    from sqlalchemy import Enum

    return Enum(cls, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_ref: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[OrderState] = mapped_column(_enum(OrderState), default=OrderState.RECEIVED)
    step: Mapped[Step] = mapped_column(_enum(Step), default=Step.LOOKUP_CONTRACT)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[datetime | None]
    # A person's retry starts a new run; uncertainty from earlier runs no longer blocks a step.
    run: Mapped[int] = mapped_column(default=1)
    step_attempts: Mapped[int] = mapped_column(default=0)
    retrying_since: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)

    contract: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    site_id: Mapped[str | None] = mapped_column(String(32), index=True)
    customer_name: Mapped[str | None] = mapped_column(String(200))
    # The name folded for search (case, accents, apostrophes): "María O'Neill" -> "maria oneill".
    # Kept in step with customer_name by the ORM (see below) and by retention's purge.
    customer_name_folded: Mapped[str | None] = mapped_column(String(200))
    plans: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    customer_id: Mapped[int | None] = mapped_column(index=True)
    customer_created: Mapped[bool] = mapped_column(default=False)
    services_added: Mapped[list[int] | None] = mapped_column(JSON)
    ticket_id: Mapped[str | None] = mapped_column(String(32))
    tags_added: Mapped[list[int] | None] = mapped_column(JSON)
    # The customer PowerCode already had at the order's site under another name, as find_customer
    # saw it, and what a person decided about it (None: not asked, or not answered yet).
    former_customer_id: Mapped[int | None]
    former_customer_name: Mapped[str | None] = mapped_column(String(200))
    former_customer_status: Mapped[str | None] = mapped_column(String(32))
    site_decision: Mapped[SiteDecision | None] = mapped_column(_enum(SiteDecision))
    # Received while SHADOW_MODE was on: worked on with real reads, every write recorded instead
    # of sent. Only a worker in the same mode takes it up; a person provisions it for real.
    shadow: Mapped[bool] = mapped_column(default=False)
    # A person closed the order as done by hand (state DONE); their note is in `reason`.
    resolved_by_hand: Mapped[bool] = mapped_column(default=False)
    # When retention removed this finished order's raw payloads (contract, bodies, e-mail data).
    purged_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_orders_due", "state", "next_attempt_at"),  # the worker's claim
        # The console: the list of one state, newest first, and the counts per state.
        Index("ix_orders_state_id", "state", "id"),
        # The search by the beginning of a name (see queries.order_search).
        Index("ix_orders_customer_name_folded", "customer_name_folded"),
    )

    @validates("customer_name")
    def _fold_customer_name(self, _key: str, value: str | None) -> str | None:
        # SQLite cannot fold accents in a query and PostgreSQL needs an extension for it, so the
        # folded name is stored beside the name, the same on both.
        self.customer_name_folded = (normalise_name(value)[:200] or None) if value else None
        return value


class StepAttempt(Base):
    __tablename__ = "step_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    run: Mapped[int]
    step: Mapped[Step] = mapped_column(_enum(Step))
    attempt: Mapped[int]
    worker: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[AttemptOutcome] = mapped_column(_enum(AttemptOutcome))
    detail: Mapped[str | None] = mapped_column(Text)
    ids: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # PowerCode ids this attempt produced


class ShadowWrite(Base):
    """A write that shadow mode recorded instead of sending: what would have gone out, exactly."""

    __tablename__ = "shadow_writes"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    run: Mapped[int | None]
    step: Mapped[str | None] = mapped_column(String(32))
    attempt_id: Mapped[int | None]
    service: Mapped[str] = mapped_column(String(32))  # "powercode" or "utopia"
    action: Mapped[str] = mapped_column(String(64))  # e.g. createCustomer, uapi:tags POST
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)  # secrets masked
    recorded_at: Mapped[datetime]


class Callback(Base):
    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime]
    order_ref: Mapped[str] = mapped_column(String(64))
    msg: Mapped[str] = mapped_column(String(200))
    event: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[CallbackOutcome] = mapped_column(_enum(CallbackOutcome))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str | None] = mapped_column(Text)  # None once retention purged it
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))

    __table_args__ = (
        Index("ix_callbacks_ref_msg", "order_ref", "msg"),
        # Home's "not handled in the last 7 days" and that list, without reading every callback.
        Index("ix_callbacks_outcome_received", "outcome", "received_at"),
    )


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[NotificationKind] = mapped_column(_enum(NotificationKind))
    # Stable per order and kind, so a repeat after a crash collapses in mail clients.
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[NotificationState] = mapped_column(
        _enum(NotificationState), default=NotificationState.PENDING
    )
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    attachment: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_notifications_due", "state", "next_attempt_at"),)


class MessageActionKind(enum.StrEnum):
    """What the routing table asks for a UTOPIA message (`ignore` never becomes an action)."""

    NOTIFY = "notify"  # a staff e-mail with the message and the order's facts
    HOLD = "hold"  # the order waits for a person, with the message as the reason
    TICKET = "ticket"  # a PowerCode ticket on the order's customer, from its own template
    NOTE = "note"  # a line added to the PowerCode customer's notes


class MessageActionState(enum.StrEnum):
    PENDING = "pending"  # to do, or waiting for its next try
    DONE = "done"
    WAITING = "waiting"  # waiting for a person; `detail` says why
    CLOSED = "closed"  # a person closed it (did it by hand, or nothing is to be done)


class _DurableAction:
    """The columns every durable action shares: its state, runs, attempts, lease and outcome."""

    state: Mapped[MessageActionState] = mapped_column(
        _enum(MessageActionState), default=MessageActionState.PENDING
    )
    # A person's retry starts a new run; a doubt from an earlier run no longer blocks a write.
    run: Mapped[int] = mapped_column(default=1)
    attempts: Mapped[int] = mapped_column(default=0)  # in the current run
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[datetime | None]
    retrying_since: Mapped[datetime | None]
    detail: Mapped[str | None] = mapped_column(Text)  # how it ended, or why it waits
    ticket_id: Mapped[str | None] = mapped_column(String(32))


class _ActionAttempt:
    """The columns of one attempt of a durable action (written before any outside call)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int]
    attempt: Mapped[int]
    worker: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[AttemptOutcome] = mapped_column(_enum(AttemptOutcome))
    detail: Mapped[str | None] = mapped_column(Text)


class MessageAction(_DurableAction, Base):
    """The work a routed UTOPIA message asks for: claimed, leased and retried like an order.

    One row per order, message and event (`key`), so a repeated callback starts nothing. Its
    attempts are `message_action_attempts` rows, written before any outside call.
    `created_at` is when the message came: the note's line carries it.
    """

    __tablename__ = "message_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # hash of order id, msg and event
    msg: Mapped[str] = mapped_column(String(200))
    event: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[MessageActionKind] = mapped_column(_enum(MessageActionKind))

    __table_args__ = (Index("ix_message_actions_due", "state", "next_attempt_at"),)


class MessageActionAttempt(_ActionAttempt, Base):
    __tablename__ = "message_action_attempts"

    action_id: Mapped[int] = mapped_column(
        ForeignKey("message_actions.id", ondelete="CASCADE"), index=True
    )


class SubscriberActionKind(enum.StrEnum):
    """What a person asked for an order's subscriber, in UTOPIA and PowerCode together."""

    SUSPEND = "suspend"
    UNSUSPEND = "unsuspend"
    CHANGE_SPEED = "change-speed"
    CANCEL = "cancel"


class SubscriberAction(_DurableAction, Base):
    """A subscriber action a person confirmed: its steps run one at a time by the worker.

    `steps` is the list fixed when it was queued (each `{"name", "done", "detail"}`), so a
    change of settings meanwhile does not change an action under way; `step` is the index of
    the next one. Attempts are `subscriber_action_attempts` rows, each of one step.
    """

    __tablename__ = "subscriber_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    action: Mapped[SubscriberActionKind] = mapped_column(_enum(SubscriberActionKind))
    # What is sent: UTOPIA's customer id and service, PowerCode's customer and new service.
    site_id: Mapped[str] = mapped_column(String(64))
    cid: Mapped[str] = mapped_column(String(64))
    uia_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[int | None]
    service_id: Mapped[int | None]
    product: Mapped[str | None] = mapped_column(String(64))
    product_before: Mapped[str | None] = mapped_column(String(200))  # what `service` showed
    issue_date: Mapped[str | None] = mapped_column(String(10))
    note: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(80))
    shadow: Mapped[bool] = mapped_column(default=False)  # queued in shadow mode: run in it
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    step: Mapped[int] = mapped_column(default=0)

    __table_args__ = (Index("ix_subscriber_actions_due", "state", "next_attempt_at"),)


class SubscriberActionAttempt(_ActionAttempt, Base):
    __tablename__ = "subscriber_action_attempts"

    action_id: Mapped[int] = mapped_column(
        ForeignKey("subscriber_actions.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[str] = mapped_column(String(40))


class WorkerProcess(Base):
    """A worker that runs, or ran: which process it is, so that a lease names a process.

    A table of processes rather than process columns on every leased row: a heartbeat then checks
    a few rows here, not the orders table, and the code that releases a lease (the worker's steps,
    the console) goes on clearing `lease_owner` alone. A lease's `lease_owner` is the `name` here;
    not a foreign key, so a lease without a row (an older release, a worker driven inline) simply
    runs until it expires.
    """

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    pid: Mapped[int]
    process_started: Mapped[str] = mapped_column(String(64))  # see process_identity.py
    pid_space: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


class ReconcileRun(Base):
    """One network's order list read by one reconciliation: what it listed and what was new.

    No personal data: order refs, counts, and an error text that never quotes UTOPIA's reply.
    """

    __tablename__ = "reconcile_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    network: Mapped[str | None] = mapped_column(String(32))  # None: asked without `network`
    outcome: Mapped[ReconcileOutcome] = mapped_column(_enum(ReconcileOutcome))
    dry_run: Mapped[bool] = mapped_column(default=False)  # recorded only; nothing was changed
    # The network's first good run: what it listed was recorded, not provisioned.
    baseline: Mapped[bool] = mapped_column(default=False)
    listed_count: Mapped[int] = mapped_column(default=0)
    new_count: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)  # why the list was not read
    new_refs: Mapped[list[str] | None] = mapped_column(JSON)  # refs no order row had

    __table_args__ = (Index("ix_reconcile_runs_network_outcome", "network", "outcome"),)


class JobLease(Base):
    """A periodic job that one process at a time runs (reconciliation): who holds it, when it
    last began, and what its alert needs to know."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(80))  # a worker's name, as lease_owner
    expires_at: Mapped[datetime | None]
    last_started_at: Mapped[datetime | None]  # a period is counted from here
    last_good_at: Mapped[datetime | None]  # the last run that read every network's list
    alerted_at: Mapped[datetime | None]  # the last "not read for too long" e-mail
