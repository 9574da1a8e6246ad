"""An order's life: every change of its state and step happens here, in the caller's transaction.

    recorded --a new-order message or a person--> received
    (nothing) --a callback, or reconciliation finding an order no callback brought--> received
    (failed in the old handler, imported) --> waiting | done, resolved by hand
    received --worker--> in_progress --steps finish--> done | duplicate | not_ours
                              |  ^ retry later (a fault outside)
                              v  |
                           waiting --a person--> in_progress (a new run)
                              |
                              +--a person--> done, resolved by hand | ignored

A routed UTOPIA message's action (`message_actions` rows) and a subscriber action a person asked
for (`subscriber_actions` rows: suspend, unsuspend, change speed, cancel) have a smaller life of
their own, here too (a subscriber action goes through its steps one by one while pending):

    pending --worker--> done | pending (retry later) | waiting --a person--> pending (new run)
                                                                         +--> closed

The worker (after each step), the console and the CLI (a person's actions) call these functions;
none of them sets an order column itself. Each function takes the order row and the caller's
session and changes nothing outside them, so a caller's one commit records the step's outcome,
its history row and any e-mail together. The rules that make retries safe live here too: a run
number that a person's action increases, a lease that every change gives back, and backoff with
jitter under a deadline.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from utopia_handler.clients.errors import OutsideError, RetryableError
from utopia_handler.clients.utopia_orders import check_order_ref
from utopia_handler.settings.schema import WorkerSettings
from utopia_handler.store import queries
from utopia_handler.store.models import (
    ACTIVE_STATES,
    STEP_SEQUENCE,
    AttemptOutcome,
    MessageAction,
    MessageActionState,
    Notification,
    NotificationKind,
    Order,
    OrderState,
    SiteDecision,
    Step,
    SubscriberAction,
)

# Orders a person may close by hand: not finished yet, or waiting for them.
OPEN_STATES = (OrderState.RECEIVED, OrderState.IN_PROGRESS, OrderState.WAITING)
NOTE_LIMIT = 2000

# Columns a step may set through its result; anything else is the lifecycle's.
STEP_COLUMNS = frozenset(
    {"contract", "site_id", "customer_name", "plans", "customer_id", "customer_created",
     "services_added", "ticket_id", "tags_added"}
)  # fmt: skip
# PowerCode ids worth keeping on the attempt row, for the history a person reads.
_ID_COLUMNS = ("customer_id", "ticket_id", "services_added", "tags_added")


class ActionRefused(Exception):
    """A person's action does not apply to this order now; the message says why."""


@dataclass(frozen=True)
class StepOutcome:
    """What a finished step asks the lifecycle to record (provisioning's StepResult fits)."""

    detail: str
    changes: Mapping[str, Any]
    next_step: Step | None
    final_state: OrderState | None
    notify: NotificationKind | None
    notify_context: Mapping[str, Any]


@dataclass(frozen=True)
class FormerCustomer:
    """The customer already at the order's site under another name (a person decides)."""

    customer_id: int
    name: str
    status: str


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for faults outside: exponential with jitter, capped, given up after a deadline."""

    base_seconds: float
    max_seconds: float
    deadline: timedelta

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> RetryPolicy:
        """The policy the worker settings describe (RETRY_BASE/MAX_SECONDS, the deadline)."""
        return cls(
            settings.retry_base_seconds,
            settings.retry_max_seconds,
            timedelta(seconds=settings.retry_deadline_seconds),
        )

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds until the next attempt; a server's Retry-After is a floor, within reason."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        delay = rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, 3600.0))
        return delay


def following_step(step: Step) -> Step:
    """The step after `step` in the new-order sequence."""
    return STEP_SEQUENCE[STEP_SEQUENCE.index(step) + 1]


# Leases ------------------------------------------------------------------------------------------


def is_leased(row: Order | queries.AnyAction, now: datetime) -> bool:
    """Whether a worker holds the order (or durable action) right now."""
    return bool(row.lease_owner and row.lease_expires_at and row.lease_expires_at > now)


def _refuse_if_leased(order: Order, now: datetime) -> None:
    if is_leased(order, now):
        raise ActionRefused(
            f"order {order.order_ref} is being worked on right now; try again shortly"
        )


def release_lease(order: Order) -> None:
    """Give the order's lease back, in the caller's transaction (a kill after it leaves none)."""
    order.lease_owner = None
    order.lease_expires_at = None


# Orders known but not provisioned --------------------------------------------------------------


def record_known_order(
    session: Session, order_ref: str, reason: str, now: datetime, *, site_id: str | None = None
) -> Order:
    """The order UTOPIA told us of, recorded but not provisioned; an existing order is kept as is.

    For reconciliation's baseline (orders listed before installation) and for messages about an
    order no new-order message has come for. `reason` says why it is not provisioned. A reference
    not of UTOPIA's shape raises BadOrderRef and nothing is recorded.
    """
    order_ref = check_order_ref(order_ref)
    order = queries.find_order(session, order_ref)
    if order is not None:
        return order
    return _new_order(
        session, order_ref, OrderState.RECORDED, now, site_id=site_id or None, reason=reason
    )


def queue_found_order(
    session: Session, order_ref: str, now: datetime, *, shadow: bool = False
) -> Order | None:
    """An order UTOPIA lists but no callback brought: created as a new-order callback creates it
    (received, at lookup_contract), so the same steps provision it. None if the order exists.

    `shadow`: found while shadow mode is on, so worked on in it, as a callback would be."""
    if queries.find_order(session, order_ref) is not None:
        return None
    return _new_order(session, order_ref, OrderState.RECEIVED, now, shadow=shadow)


def _new_order(
    session: Session, order_ref: str, state: OrderState, now: datetime, **columns: Any
) -> Order:
    """A new order row at the first step, due now, in `state`; flushed so it has its id."""
    order = Order(
        order_ref=order_ref,
        state=state,
        step=Step.LOOKUP_CONTRACT,
        created_at=now,
        updated_at=now,
        next_attempt_at=now,
        run=1,
        step_attempts=0,
        customer_created=False,
        resolved_by_hand=False,
        **columns,
    )
    session.add(order)
    session.flush()
    return order


def import_failed_order(
    session: Session,
    order_ref: str,
    failure: str,
    now: datetime,
    *,
    site_id: str | None = None,
    resolution: str | None = None,
) -> Order | None:
    """An order the old handler failed, known here from now on; None if it is known already.

    Unresolved, it waits for a person with `failure` as its reason; a person's retry then runs
    every step from the contract lookup, and find_customer recognises a customer the old handler
    may have made. With `resolution` (who resolved it there, and their note) it is done, resolved
    by hand. No e-mail goes out: staff knew of these failures in the old handler.
    """
    if queries.find_order(session, order_ref) is not None:
        return None
    order = record_known_order(session, order_ref, failure, now, site_id=site_id)
    if resolution is None:
        order.state = OrderState.WAITING
    else:
        order.state = OrderState.DONE
        order.step = Step.FINISHED
        order.resolved_by_hand = True
        order.reason = resolution
    return order


def provision_recorded(order: Order, now: datetime, *, shadow: bool = False) -> None:
    """A recorded order is provisioned after all, through the same steps a callback starts.

    `shadow`: in shadow mode, worked on in it like any order arriving then."""
    if order.state != OrderState.RECORDED:
        raise ActionRefused(
            f"order {order.order_ref} is {order.state.value}, not recorded: it is provisioned "
            "already or was decided otherwise"
        )
    order.state = OrderState.RECEIVED
    order.step = Step.LOOKUP_CONTRACT
    order.reason = None
    order.shadow = shadow
    order.next_attempt_at = now
    order.updated_at = now


def _forget_found(order: Order) -> None:
    """Drop what an earlier run found or made (customer, services, ticket, tags, site)."""
    order.customer_id = None
    order.customer_created = False
    order.services_added = None
    order.ticket_id = None
    order.tags_added = None
    order.former_customer_id = None
    order.former_customer_name = None
    order.former_customer_status = None
    order.site_decision = None


def provision_for_real(order: Order, now: datetime) -> None:
    """An order worked on in shadow mode runs again from the start with real writes.

    What shadow mode made up (customer and ticket ids, services, tags) goes; the contract is read
    again. Only a worker outside shadow mode takes it up.
    """
    if not order.shadow:
        raise ActionRefused(f"order {order.order_ref} was not worked on in shadow mode")
    _refuse_if_leased(order, now)
    order.shadow = False
    _forget_found(order)
    start_new_run(order, Step.LOOKUP_CONTRACT, now)


# What the worker records ------------------------------------------------------------------------


def start_attempt(session: Session, order: Order, owner: str, now: datetime) -> int:
    """The current step begins: its attempt row is written before any outside call, so a crash
    leaves a trace the next attempt reads as "may have applied". Returns the attempt's id."""
    order.step_attempts += 1
    if order.state == OrderState.RECEIVED:
        order.state = OrderState.IN_PROGRESS
    order.updated_at = now
    return queries.add_attempt(session, order, owner, now).id


def record_step(
    session: Session, order: Order, attempt_id: int, step: Step, outcome: StepOutcome, now: datetime
) -> Notification | None:
    """A step finished: keep what it found, close its attempt, and move to the next step or end.

    Returns the staff e-mail it queued, if the outcome asks for one."""
    for column in outcome.changes:
        if column not in STEP_COLUMNS:
            raise ValueError(f"a step may not set {column}")
    ids = {k: outcome.changes[k] for k in _ID_COLUMNS if outcome.changes.get(k) is not None}
    ended_elsewhere = outcome.final_state not in (None, OrderState.DONE)
    attempt_outcome = AttemptOutcome.FINAL if ended_elsewhere else AttemptOutcome.OK
    # The attempt first: the order's changes below then go out as one UPDATE when flushed.
    queries.finish_attempt(session, attempt_id, attempt_outcome, outcome.detail, now, ids)
    for column, value in outcome.changes.items():
        setattr(order, column, value)
    order.step = outcome.next_step or following_step(step)
    order.step_attempts = 0
    order.retrying_since = None
    # A duplicate keeps its explanation in sight; any other outcome clears the last problem.
    order.reason = outcome.detail if outcome.final_state == OrderState.DUPLICATE else None
    order.updated_at = now
    if outcome.final_state is not None:
        order.state = outcome.final_state
        release_lease(order)
    if outcome.notify is None:
        return None
    context = {**outcome.notify_context, "step": step.value}
    return queries.enqueue_notification(session, order, outcome.notify, context, now)


def hold_for_person(
    session: Session,
    order: Order,
    attempt_id: int,
    step: Step,
    attempt_outcome: AttemptOutcome,
    reason: str,
    now: datetime,
    *,
    cause: BaseException | None = None,
    history: str | None = None,
    former: FormerCustomer | None = None,
) -> None:
    """The order waits for a person, with `reason`; staff get one e-mail.

    `history` replaces the reason on the attempt row when the reason names people (the history
    outlives the retention of personal data); `former` records who already is at the site.
    A retry that stops at the same step for the same reason as the step's last attempt sends no
    second e-mail: staff know already, and the person who retried sees it on the order.
    """
    detail = (history or reason)[:2000]
    last = queries.previous_attempt(session, order, step, attempt_id)
    repeated = last is not None and (last.outcome, last.detail) == (attempt_outcome, detail)
    if former is not None:
        order.former_customer_id = former.customer_id
        order.former_customer_name = former.name[:200]
        order.former_customer_status = former.status[:32] or None
        order.site_decision = None
    queries.finish_attempt(session, attempt_id, attempt_outcome, history or reason, now)
    order.state = OrderState.WAITING
    order.reason = f"{step.value}: {reason}"
    order.updated_at = now
    order.retrying_since = None
    release_lease(order)
    kind = (
        NotificationKind.FAILED
        if attempt_outcome == AttemptOutcome.FAILED
        else NotificationKind.HELD
    )
    if repeated:
        return
    context = {"step": step.value, "reason": reason, "headline": _headline(step, cause)}
    queries.enqueue_notification(session, order, kind, context, now)


def schedule_retry(
    session: Session,
    order: Order,
    attempt_id: int,
    step: Step,
    error: RetryableError,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> bool:
    """A fault outside: try the step again later, or give up past the deadline (returns True)."""
    attempt_outcome = AttemptOutcome.UNCERTAIN if error.may_have_applied else AttemptOutcome.RETRY
    queries.finish_attempt(session, attempt_id, attempt_outcome, str(error), now)
    order.retrying_since = order.retrying_since or now
    order.updated_at = now
    release_lease(order)
    if now - order.retrying_since >= policy.deadline:
        hours = policy.deadline.total_seconds() / 3600
        order.state = OrderState.WAITING
        order.reason = f"{step.value}: still failing after {hours:g} h of retries: {error}"
        context = {
            "step": step.value,
            "reason": str(error),
            "headline": "Order could not be completed",
        }
        queries.enqueue_notification(session, order, NotificationKind.FAILED, context, now)
        return True
    delay = policy.delay(order.step_attempts, error.retry_after, rng)
    order.next_attempt_at = now + timedelta(seconds=delay)
    order.reason = (
        f"{step.value}: retrying after a fault outside ({error}); attempt "
        f"{order.step_attempts}, next at {order.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    return False


def _headline(step: Step, cause: BaseException | None) -> str:
    """The subject line of the staff e-mail, in the old handler's words where it had them."""
    if isinstance(cause, OutsideError) and cause.service == "utopia":
        return "Utopia API Error"
    if isinstance(cause, OutsideError) and step == Step.CREATE_CUSTOMER:
        return "Failed to create customer in PowerCode"
    return "Order waiting for a person"


# What a person does -------------------------------------------------------------------------------


def start_new_run(order: Order, step: Step, now: datetime) -> None:
    """Queue the order at `step` as a new run: a person has taken the earlier runs' doubts on."""
    order.run += 1
    order.state = OrderState.IN_PROGRESS
    order.step = step
    order.step_attempts = 0
    order.retrying_since = None
    order.reason = None
    order.resolved_by_hand = False
    order.next_attempt_at = now
    order.updated_at = now


def check_open(order: Order, now: datetime, verb: str) -> None:
    """Refuse a person's action on an order a worker holds or that has ended."""
    _refuse_if_leased(order, now)
    if order.state not in OPEN_STATES:
        raise ActionRefused(
            f"order {order.order_ref} is {order.state.value} already; only an order in progress "
            f"or waiting for a person can be {verb}"
        )


def checked_note(note: str) -> str:
    """A person's note, trimmed; refused when empty or too long."""
    text = note.strip()
    if not text:
        raise ActionRefused("write a note saying what was done or why")
    if len(text) > NOTE_LIMIT:
        raise ActionRefused(f"the note is longer than {NOTE_LIMIT} characters")
    return text


def resolve_by_hand(order: Order, note: str, actor: str, now: datetime) -> None:
    """A person finished the order by hand (in PowerCode): it is done, with their note."""
    check_open(order, now, "marked resolved")
    order.state = OrderState.DONE
    order.step = Step.FINISHED
    order.resolved_by_hand = True
    order.reason = f"resolved by hand by {actor}: {checked_note(note)}"
    order.retrying_since = None
    order.updated_at = now


def ignore(order: Order, note: str, actor: str, now: datetime) -> None:
    """Nothing is to be done for the order; a later retry goes on where it stopped."""
    check_open(order, now, "ignored")
    order.state = OrderState.IGNORED
    order.reason = f"ignored by {actor}: {checked_note(note)}"
    order.retrying_since = None
    order.updated_at = now


def waits_for_site_decision(order: Order) -> bool:
    """Whether the order waits for a person to say who lives at its site now."""
    return (
        order.state == OrderState.WAITING
        and order.step == Step.FIND_CUSTOMER
        and order.former_customer_id is not None
        and order.site_decision is None
    )


def decide_site(order: Order, decision: SiteDecision, now: datetime) -> None:
    """Record who lives at the order's site and queue it again at find_customer."""
    _refuse_if_leased(order, now)
    if not waits_for_site_decision(order):
        raise ActionRefused(
            f"order {order.order_ref} is not waiting for a decision about a former customer at "
            "its site"
        )
    order.site_decision = decision
    start_new_run(order, Step.FIND_CUSTOMER, now)


def restart_with_contract(
    order: Order,
    contract: dict[str, Any],
    site_id: str | None,
    customer_name: str | None,
    plans: list[dict[str, Any]] | None,
    step: Step,
    now: datetime,
    *,
    first_run: bool = False,
) -> None:
    """A person's reviewed contract becomes the order's, and the order runs from `step`.

    `first_run`: the order was just made by hand (its callback never came). Otherwise everything
    an earlier run found goes: the corrections may change the person or the site.
    """
    if not first_run:
        _refuse_if_leased(order, now)
        if order.state == OrderState.DONE:
            raise ActionRefused(
                f"order {order.order_ref} is done already; nothing is left to provision"
            )
        if order.customer_created:
            # Corrections would not reach the customer that exists; retrying goes on safely.
            raise ActionRefused(
                f"order {order.order_ref} already created PowerCode customer "
                f"#{order.customer_id}: correct it in PowerCode and retry the order instead"
            )
    order.contract = contract
    order.site_id = site_id
    order.customer_name = customer_name
    order.plans = plans
    _forget_found(order)
    if first_run:
        order.run = 1
        order.state = OrderState.RECEIVED
        order.step = step
        order.step_attempts = 0
        order.resolved_by_hand = False
        order.next_attempt_at = now
        order.updated_at = now
    else:
        start_new_run(order, step, now)


# Routed messages' actions ---------------------------------------------------------------------


def message_context(action: MessageAction, **more: str) -> dict[str, str]:
    """What the staff e-mail about a routed message says (UTOPIA's words; no personal data)."""
    return {"msg": action.msg, "event": action.event or "", "action": action.action.value, **more}


def subscriber_context(action: SubscriberAction, **more: str) -> dict[str, Any]:
    """What the staff e-mail about a subscriber action says: the action, each step, who asked."""
    steps = [
        f"{step['name']}: {step.get('detail') or ('done' if step.get('done') else 'not done')}"
        for step in action.steps
    ]
    return {
        "action": action.action.value,
        "requested_by": action.requested_by,
        "steps": steps,
        **more,
    }


def _action_mail(action: queries.AnyAction, **more: str) -> tuple[NotificationKind, dict[str, Any]]:
    if isinstance(action, MessageAction):
        return NotificationKind.MESSAGE, message_context(action, **more)
    return NotificationKind.SUBSCRIBER, subscriber_context(action, **more)


def start_action_attempt(
    session: Session, action: queries.AnyAction, owner: str, now: datetime
) -> int:
    """The action begins: its attempt row is written before any outside call. Its id."""
    action.attempts += 1
    action.updated_at = now
    return queries.add_action_attempt(session, action, owner, now).id


def _end_attempt(
    session: Session,
    action: queries.AnyAction,
    attempt_id: int,
    outcome: AttemptOutcome,
    detail: str,
    now: datetime,
) -> None:
    """Close the attempt row and let go of the action, which shows `detail` as its last word."""
    queries.finish_action_attempt(session, action, attempt_id, outcome, detail, now)
    action.detail = detail
    action.updated_at = now
    action.lease_owner = None
    action.lease_expires_at = None


def action_done(
    session: Session,
    action: queries.AnyAction,
    attempt_id: int,
    detail: str,
    now: datetime,
    *,
    ticket_id: str | None = None,
) -> None:
    """The action did what it was routed to do (or found it done): it is finished."""
    _end_attempt(session, action, attempt_id, AttemptOutcome.OK, detail, now)
    action.state = MessageActionState.DONE
    action.ticket_id = ticket_id or action.ticket_id
    action.retrying_since = None


def action_waits(
    session: Session,
    order: Order,
    action: queries.AnyAction,
    attempt_id: int,
    attempt_outcome: AttemptOutcome,
    reason: str,
    now: datetime,
) -> None:
    """The action waits for a person, with `reason`; staff get one e-mail about it."""
    _end_attempt(session, action, attempt_id, attempt_outcome, reason, now)
    action.state = MessageActionState.WAITING
    action.retrying_since = None
    kind, context = _action_mail(action, waiting=reason)
    queries.enqueue_notification(session, order, kind, context, now)


def action_retry(
    session: Session,
    order: Order,
    action: queries.AnyAction,
    attempt_id: int,
    detail: str,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
    *,
    uncertain: bool = False,
    retry_after: float | None = None,
) -> bool:
    """Try the action again later, or wait for a person past the deadline (returns True)."""
    outcome = AttemptOutcome.UNCERTAIN if uncertain else AttemptOutcome.RETRY
    action.retrying_since = action.retrying_since or now
    if now - action.retrying_since >= policy.deadline:
        hours = policy.deadline.total_seconds() / 3600
        reason = f"still not done after {hours:g} h of retries: {detail}"
        action_waits(session, order, action, attempt_id, outcome, reason, now)
        return True
    _end_attempt(session, action, attempt_id, outcome, detail, now)
    delay = policy.delay(action.attempts, retry_after, rng)
    action.next_attempt_at = now + timedelta(seconds=delay)
    action.detail = (
        f"{detail}; attempt {action.attempts}, next at "
        f"{action.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    return False


def action_later(
    session: Session,
    action: queries.AnyAction,
    attempt_id: int,
    detail: str,
    at: datetime,
    now: datetime,
) -> None:
    """Nothing went wrong, but the action cannot run yet (its order is being worked on)."""
    _end_attempt(session, action, attempt_id, AttemptOutcome.RETRY, detail, now)
    action.next_attempt_at = at


def hold_for_message(
    session: Session, order: Order, action: MessageAction, now: datetime
) -> str | None:
    """The `hold` action: an active order waits for a person, with the message as its reason.

    An order that is not active (recorded, waiting already, or ended) is not changed: staff are
    e-mailed about the message instead. Returns None when the order is being worked on right
    now (the caller tries again shortly), else what was done, for the history.
    """
    if is_leased(order, now):
        return None
    where = f'event "{action.event}"' if action.event else "no event"
    if order.state not in ACTIVE_STATES:
        note = (
            f"the order is {order.state.value}, so it was not put on hold; staff were e-mailed "
            "about the message instead"
        )
        context = message_context(action, note=note)
        queries.enqueue_notification(session, order, NotificationKind.MESSAGE, context, now)
        return note
    order.state = OrderState.WAITING
    order.reason = (
        f"{order.step.value}: UTOPIA sent {action.msg!r} ({where}); check the order with UTOPIA, "
        "then retry it to go on, or ignore it"
    )
    order.retrying_since = None
    order.updated_at = now
    release_lease(order)
    note = f"the order waits for a person at {order.step.value}"
    context = message_context(action, held=note)
    queries.enqueue_notification(session, order, NotificationKind.MESSAGE, context, now)
    return note


def _refuse_if_action_leased(action: queries.AnyAction, now: datetime) -> None:
    if is_leased(action, now):
        raise ActionRefused("the action is being worked on right now; try again shortly")


def retry_action(action: queries.AnyAction, now: datetime) -> None:
    """A person queues the action again as a new run: they have taken earlier doubts on."""
    _refuse_if_action_leased(action, now)
    if action.state == MessageActionState.DONE:
        raise ActionRefused("the action is done already")
    action.run += 1
    action.state = MessageActionState.PENDING
    action.attempts = 0
    action.retrying_since = None
    action.detail = None
    action.next_attempt_at = now
    action.updated_at = now


def close_action(action: queries.AnyAction, note: str, actor: str, now: datetime) -> None:
    """A person closes the action: done by hand, or nothing is to be done; with their note."""
    _refuse_if_action_leased(action, now)
    if action.state in (MessageActionState.DONE, MessageActionState.CLOSED):
        raise ActionRefused(f"the action is {action.state.value} already")
    action.state = MessageActionState.CLOSED
    action.detail = f"closed by {actor}: {checked_note(note)}"
    action.retrying_since = None
    action.updated_at = now


# Subscriber actions ------------------------------------------------------------------------------


def queue_subscriber_action(
    session: Session, order: Order, now: datetime, **columns: Any
) -> SubscriberAction:
    """A person's confirmed subscriber action, due now; refused while another one of the order's
    is not finished (pending or waiting for a person), so two never cross."""
    unfinished = session.scalar(
        select(SubscriberAction.id).where(
            SubscriberAction.order_id == order.id,
            SubscriberAction.state.in_((MessageActionState.PENDING, MessageActionState.WAITING)),
        )
    )
    if unfinished is not None:
        raise ActionRefused(
            f"order {order.order_ref} has subscriber action {unfinished} unfinished: let it "
            "finish, or retry or close it first"
        )
    if not columns.get("steps"):
        raise ActionRefused("the action has nothing to send")
    action = SubscriberAction(
        order_id=order.id,
        state=MessageActionState.PENDING,
        run=1,
        attempts=0,
        step=0,
        created_at=now,
        updated_at=now,
        next_attempt_at=now,
        **columns,
    )
    session.add(action)
    session.flush()
    return action


def subscriber_step_done(
    session: Session,
    order: Order,
    action: SubscriberAction,
    attempt_id: int,
    detail: str,
    now: datetime,
) -> bool:
    """The action's current step is done: the next one is due now, or the action is finished
    (staff get an e-mail). Returns whether the action is finished."""
    steps = [dict(step) for step in action.steps]
    steps[action.step].update(done=True, detail=detail[:500])
    action.steps = steps  # a new list, so the JSON column is written
    action.step += 1
    if action.step < len(steps):
        queries.finish_action_attempt(session, action, attempt_id, AttemptOutcome.OK, detail, now)
        action.attempts = 0
        action.retrying_since = None
        action.next_attempt_at = now
        action.detail = f"{steps[action.step - 1]['name']}: {detail}"
        action.updated_at = now
        return False
    action_done(session, action, attempt_id, detail, now)
    action.detail = "every step done"
    kind, context = _action_mail(action, done="every step done")
    queries.enqueue_notification(session, order, kind, context, now)
    return True
