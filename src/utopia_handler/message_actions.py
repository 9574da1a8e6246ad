"""Routed UTOPIA messages: run one claimed action (notify, hold, ticket, note) exactly once.

The callback stored the action as a `message_actions` row in the same transaction as the
callback, one per order, message and event, so a repeated callback starts nothing. The worker
claims it with a lease like an order, then:

1. `prepare` writes the attempt row (`started`) and commits, before any outside call;
2. `perform` makes the outside calls, if any, and says what happened (never raises for the
   faults it knows; the worker's catch-all turns anything else into `crashed`);
3. `record` writes the outcome through `lifecycle`, with any e-mail or order change, in one commit.

Where exactly-once comes from, per action:
- `notify` and `hold`: their whole effect (the outbox row, the order's change) is written in the
  commit that marks the action done, so a crash before it leaves nothing half done.
- `ticket`: PowerCode cannot list tickets, so an earlier attempt in this run that may have reached
  it (`started` or `uncertain`) makes the action wait for a person instead of sending again.
- `note`: the customer's notes are read first; a line already there is not added again.
"""

from __future__ import annotations

import html
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from utopia_handler import lifecycle
from utopia_handler.addresses import state_code, street_with_unit
from utopia_handler.clients.errors import RejectedError, RetryableError
from utopia_handler.clients.powercode import NewTicket, PowerCodeClient
from utopia_handler.clients.utopia import Contract
from utopia_handler.logs import log_event
from utopia_handler.settings import TicketSettings
from utopia_handler.store import queries
from utopia_handler.store.db import Store
from utopia_handler.store.models import (
    AttemptOutcome,
    MessageActionKind,
    MessageActionState,
    NotificationKind,
    Order,
    OrderState,
)
from utopia_handler.tickets import TemplateProblem, TicketRenderer

log = logging.getLogger(__name__)

# An order being provisioned right now is held as soon as its worker lets go of it.
BUSY_DELAY = timedelta(seconds=5)
# Orders that may still get a PowerCode customer: an action needing one waits for it (retried,
# under the retry deadline). Any other order without a customer waits for a person at once.
MAY_GET_CUSTOMER = (OrderState.RECEIVED, OrderState.IN_PROGRESS, OrderState.WAITING)
# The variables a message ticket template may use.
MESSAGE_TICKET_VARIABLES = (
    "msg", "event", "received_at", "order_ref", "customer_id", "customer_name", "first_name",
    "last_name", "site_id", "address", "city", "state", "zip", "order_state",
)  # fmt: skip


@dataclass(frozen=True)
class ActionView:
    """What an action may know: the message, its order, and this run's earlier attempts."""

    action_id: int
    order_id: int
    kind: MessageActionKind
    msg: str
    event: str | None
    received_at: datetime
    order_ref: str
    order_state: OrderState
    customer_id: int | None
    customer_name: str | None
    site_id: str | None
    contract: Contract | None
    attempt_id: int
    attempt_number: int
    maybe_applied: bool  # an earlier attempt of this run may have reached PowerCode


@dataclass(frozen=True)
class ActionResult:
    """What `perform` found; `record` writes it."""

    kind: Literal["done", "waits", "retry", "notify", "hold"]
    detail: str = ""
    outcome: AttemptOutcome = AttemptOutcome.OK
    ticket_id: str | None = None
    uncertain: bool = False
    retry_after: float | None = None


class NeedsPerson(Exception):
    """One of our own rules stops the action until a person looks; the message says why."""


class _NoCustomerYet(Exception):
    """The order has no PowerCode customer yet, but provisioning may still make one."""


def note_line(view: ActionView) -> str:
    """The line the `note` action adds: the same for every attempt, so it is found again."""
    event = f" (event {view.event})" if view.event else ""
    return (
        f'{view.received_at:%Y-%m-%d %H:%M} UTC: UTOPIA sent "{view.msg}"{event} for order '
        f"{view.order_ref}"
    )


def has_line(notes: str, line: str) -> bool:
    """Whether the notes hold the line, whatever PowerCode did to spaces, breaks or escaping."""
    flat = " ".join(html.unescape(notes).split())
    return " ".join(line.split()) in flat


def add_note_line(powercode: PowerCodeClient, customer_id: int, line: str) -> str:
    """Add `line` to the customer's notes unless it is there already (read first, so a repeat
    adds nothing); says which. Raises NeedsPerson when the notes cannot be read."""
    customer = powercode.read_customer(customer_id)
    if customer is None:
        raise NeedsPerson(f"PowerCode has no customer #{customer_id}")
    if customer.notes is None:
        raise NeedsPerson(
            "PowerCode's readCustomer did not return the customer's notes (customerNotes), "
            "so a line cannot be added without replacing them: add it by hand, then close "
            "this action"
        )
    if has_line(customer.notes, line):
        return f"the line is in customer #{customer_id}'s notes already"
    notes = f"{customer.notes.rstrip()}\n{line}" if customer.notes.strip() else line
    powercode.update_customer_notes(customer_id, notes)
    return f"line added to customer #{customer_id}'s notes"


def ticket_variables(view: ActionView, customer_id: int) -> dict[str, Any]:
    """The variables of a message ticket's template."""
    contract = view.contract
    variables: dict[str, Any] = {
        "msg": view.msg,
        "event": view.event or "",
        "received_at": f"{view.received_at:%Y-%m-%d %H:%M} UTC",
        "order_ref": view.order_ref,
        "customer_id": customer_id,
        "customer_name": view.customer_name or "",
        "first_name": "",
        "last_name": "",
        "site_id": view.site_id or "",
        "address": "",
        "city": "",
        "state": "",
        "zip": "",
        "order_state": view.order_state.value,
    }
    if contract is not None:
        address = contract.service_address
        variables.update(
            first_name=contract.customer.first_name,
            last_name=contract.customer.last_name,
            address=street_with_unit(address.street, address.unit),
            city=address.city,
            state=state_code(address.state) or address.state,
            zip=address.zip,
            site_id=contract.site_id or variables["site_id"],
        )
    return variables


# Shared with subscriber actions (subscriber_work.py) ----------------------------------------------


def open_attempt(
    session: Session, action: queries.AnyAction, owner: str, now: datetime
) -> tuple[Order, int, bool]:
    """Write the attempt row of a claimed, due action: its order, the attempt's id, and whether
    an earlier attempt of this run may have applied."""
    _, maybe_applied = queries.earlier_action_attempts(session, action)
    attempt_id = lifecycle.start_action_attempt(session, action, owner, now)
    order = session.get(Order, action.order_id)
    assert order is not None  # the action is removed with its order
    return order, attempt_id, maybe_applied


def refuse_repeat_ticket(maybe_applied: bool, customer_id: int) -> None:
    """PowerCode cannot list a customer's tickets: after a request that may have reached it,
    a person checks (NeedsPerson) rather than a second ticket being opened."""
    if maybe_applied:
        raise NeedsPerson(
            f"an earlier ticket request for customer #{customer_id} got no reply, so the "
            "ticket may exist: check the customer's tickets in PowerCode, then retry this "
            "action to open one, or close it"
        )


def open_ticket(
    powercode: PowerCodeClient,
    settings: TicketSettings,
    customer_id: int,
    summary: str,
    description_html: str,
) -> ActionResult:
    """Open a ticket on the customer, filed as the ticket settings say."""
    ticket_id = powercode.create_ticket(
        NewTicket(
            customer_id=customer_id,
            summary=summary,
            description_html=description_html,
            category=settings.category,
            ticket_type=settings.ticket_type,
            status=settings.status,
            responsible_user=settings.responsible_user,
            responsible_group=settings.responsible_group,
            customer_viewable=settings.customer_viewable,
        )
    )
    return ActionResult(
        "done", f"ticket {ticket_id} opened on customer #{customer_id}", ticket_id=ticket_id
    )


def setback(error: NeedsPerson | RejectedError | RetryableError, where: str = "") -> ActionResult:
    """What a known fault makes of an attempt: a fault outside is retried; a refusal or one of
    our own rules waits for a person. `where` leads the retry's detail."""
    if isinstance(error, RetryableError):
        return ActionResult(
            "retry",
            f"{where}a fault outside ({error})",
            uncertain=error.may_have_applied,
            retry_after=error.retry_after,
        )
    if isinstance(error, RejectedError):
        return ActionResult("waits", str(error), AttemptOutcome.REJECTED)
    return ActionResult("waits", str(error), AttemptOutcome.HELD)


def crashed_result(error: BaseException) -> ActionResult:
    """What a catch-all records for an unexpected error: a person looks."""
    reason = f"internal error ({type(error).__name__}); the log has the details"
    return ActionResult("waits", reason, AttemptOutcome.FAILED)


def record_setback(
    session: Session,
    order: Order,
    action: queries.AnyAction,
    attempt_id: int,
    result: ActionResult,
    now: datetime,
    retry: lifecycle.RetryPolicy,
    rng: random.Random,
    *,
    where: str = "",
) -> Literal["waiting", "retry"]:
    """Record a result that is not `done`: the action waits for a person (`where` leads the
    reason), or is tried again later, or waits once past the retry deadline. Which of the two."""
    if result.kind == "waits":
        outcome, reason = result.outcome, f"{where}{result.detail}"
        lifecycle.action_waits(session, order, action, attempt_id, outcome, reason, now)
        return "waiting"
    gave_up = lifecycle.action_retry(
        session,
        order,
        action,
        attempt_id,
        result.detail,
        now,
        retry,
        rng,
        uncertain=result.uncertain,
        retry_after=result.retry_after,
    )
    return "waiting" if gave_up else "retry"


class MessageActionRunner:
    """Runs claimed actions for one worker (its lease name, clock and retry policy)."""

    def __init__(
        self,
        store: Store,
        powercode: PowerCodeClient,
        tickets: TicketRenderer,
        ticket_settings: TicketSettings,
        owner: str,
        clock: Callable[[], datetime],
        retry: lifecycle.RetryPolicy,
        rng: random.Random,
    ) -> None:
        self.store = store
        self.powercode = powercode
        self.tickets = tickets  # the message ticket's renderer, not the installation ticket's
        self.ticket_settings = ticket_settings
        self.owner = owner
        self.clock = clock
        self.retry = retry
        self.rng = rng

    # 1 -----------------------------------------------------------------------------------------
    def prepare(self, action_id: int) -> ActionView | None:
        """Write the attempt row of a due action and commit; what the attempt needs, or None."""
        now = self.clock()
        with self.store.write() as session:
            action = queries.owned_message_action(session, action_id, self.owner)
            if action.state != MessageActionState.PENDING or action.next_attempt_at > now:
                return None
            order, attempt_id, maybe_applied = open_attempt(session, action, self.owner, now)
            return ActionView(
                action_id=action.id,
                order_id=order.id,
                kind=action.action,
                msg=action.msg,
                event=action.event,
                received_at=action.created_at,
                order_ref=order.order_ref,
                order_state=order.state,
                customer_id=order.customer_id,
                customer_name=order.customer_name,
                site_id=order.site_id,
                contract=Contract.from_json(order.contract) if order.contract else None,
                attempt_id=attempt_id,
                attempt_number=action.attempts,
                maybe_applied=maybe_applied,
            )

    # 2 -----------------------------------------------------------------------------------------
    def perform(self, view: ActionView) -> ActionResult:
        """Make the action's outside calls; the faults outside and our own rules as results."""
        log_event(
            log,
            "message_action.start",
            order=view.order_ref,
            action=view.kind.value,
            attempt=view.attempt_number,
        )
        if view.kind == MessageActionKind.NOTIFY:
            return ActionResult("notify")
        if view.kind == MessageActionKind.HOLD:
            return ActionResult("hold")
        try:
            if view.kind == MessageActionKind.TICKET:
                return self._open_ticket(view)
            return self._add_note(view)
        except _NoCustomerYet as later:
            return ActionResult("retry", str(later))
        except (NeedsPerson, RejectedError, RetryableError) as error:
            return setback(error)

    def crashed(self, error: BaseException) -> ActionResult:
        """What the worker's catch-all records for an unexpected error: a person looks."""
        return crashed_result(error)

    def _customer(self, view: ActionView) -> int:
        if view.customer_id is not None:
            return view.customer_id
        if view.order_state in MAY_GET_CUSTOMER:
            raise _NoCustomerYet(
                f"the order has no PowerCode customer yet ({view.order_state.value}); tried "
                "again when provisioning has made one"
            )
        raise NeedsPerson(
            f"the order is {view.order_state.value} and has no PowerCode customer, and "
            "provisioning will not make one: provision the order (or do this by hand), then "
            "retry this action or close it"
        )

    def _open_ticket(self, view: ActionView) -> ActionResult:
        customer_id = self._customer(view)
        refuse_repeat_ticket(view.maybe_applied, customer_id)
        try:
            rendered = self.tickets.render(ticket_variables(view, customer_id))
        except TemplateProblem as problem:
            raise NeedsPerson(str(problem)) from None
        return open_ticket(
            self.powercode,
            self.ticket_settings,
            customer_id,
            rendered.summary,
            rendered.description_html,
        )

    def _add_note(self, view: ActionView) -> ActionResult:
        customer_id = self._customer(view)
        return ActionResult("done", add_note_line(self.powercode, customer_id, note_line(view)))

    # 3 -----------------------------------------------------------------------------------------
    def record(self, view: ActionView, result: ActionResult) -> None:
        """Write what the attempt achieved, with its e-mail or order change, in one commit."""
        now = self.clock()
        state = "done"
        with self.store.write() as session:
            action = queries.owned_message_action(session, view.action_id, self.owner)
            order = session.get(Order, action.order_id, with_for_update=True)
            assert order is not None
            attempt_id = view.attempt_id
            if result.kind == "notify":
                context = lifecycle.message_context(action)
                queries.enqueue_notification(session, order, NotificationKind.MESSAGE, context, now)
                lifecycle.action_done(session, action, attempt_id, "staff e-mailed", now)
            elif result.kind == "hold":
                held = lifecycle.hold_for_message(session, order, action, now)
                if held is None:
                    state = "later"
                    lifecycle.action_later(
                        session,
                        action,
                        attempt_id,
                        "the order is being worked on; held once its worker lets go",
                        now + BUSY_DELAY,
                        now,
                    )
                else:
                    lifecycle.action_done(session, action, attempt_id, held, now)
            elif result.kind == "done":
                lifecycle.action_done(
                    session, action, attempt_id, result.detail, now, ticket_id=result.ticket_id
                )
            else:
                state = record_setback(
                    session, order, action, attempt_id, result, now, self.retry, self.rng
                )
            order_ref = order.order_ref
        log_event(
            log,
            f"message_action.{state}",
            logging.INFO if state in ("done", "later") else logging.WARNING,
            order=order_ref,
            action=view.kind.value,
            attempt=view.attempt_number,
            ticket_id=result.ticket_id,
        )
