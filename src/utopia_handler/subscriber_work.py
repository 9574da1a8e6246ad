"""Subscriber actions as durable work: queue a confirmed plan, then run its steps one by one.

A plan (subscriber.py) becomes a `subscriber_actions` row whose steps are the plan's requests.
The worker claims it with a lease like a routed message's action and runs each step as
prepare (attempt row, committed) -> perform (outside calls) -> record (lifecycle, one commit):

- a fault outside is retried with the worker's RetryPolicy; the steps already done are not
  sent again, because the next attempt starts at the step that failed;
- before repeating a write that may have applied (an earlier attempt of the step was left
  `started` or its reply was lost), the step reads back: UTOPIA's `service` look-up (status,
  product), PowerCode's readCustomer (status) and readCustomerService (services); the note is
  always read first. The ticket of a cancel has no read-back: it waits for a person instead;
- a refusal, or one of our own rules, makes the action wait for a person (one staff e-mail);
  when every step is done staff get an e-mail too.

Every step's attempt is a row on the order's timeline, and each step done is in the audit log.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from utopia_handler import audit, lifecycle
from utopia_handler.clients.errors import RejectedError, RetryableError
from utopia_handler.clients.powercode import PowerCodeClient
from utopia_handler.clients.utopia import UtopiaClient
from utopia_handler.clients.utopia_site import SiteService
from utopia_handler.logs import log_event
from utopia_handler.message_actions import (
    ActionResult,
    NeedsPerson,
    add_note_line,
    crashed_result,
    open_attempt,
    open_ticket,
    record_setback,
    refuse_repeat_ticket,
    setback,
)
from utopia_handler.settings import TicketSettings
from utopia_handler.shadow import WorkContext, working_on
from utopia_handler.store import queries
from utopia_handler.store.db import Store
from utopia_handler.store.models import (
    AttemptOutcome,
    MessageActionState,
    Order,
    SubscriberAction,
    SubscriberActionKind,
)
from utopia_handler.subscriber import Plan

if TYPE_CHECKING:
    from utopia_handler.runtime import Runtime

log = logging.getLogger(__name__)

# Who the audit log names for the steps the worker runs.
WORKER_ACTOR = "worker"


def steps_of(plan: Plan) -> list[dict[str, Any]]:
    """The durable steps of a plan: one per request, with what that step sends besides the
    action's own columns (the status, the note's line, the ticket's text)."""
    steps: list[dict[str, Any]] = []
    for request in plan.requests:
        step: dict[str, Any] = {"name": request.step, "done": False, "detail": ""}
        fields = dict(request.fields)
        if request.step == "pc_status":
            step["status"] = fields["status"]
        elif request.step == "pc_note":
            step["line"] = plan.note_line
        elif request.step == "pc_ticket":
            step["summary"] = plan.ticket_summary
            step["description"] = plan.ticket_description
        steps.append(step)
    return steps


def queue_action(
    session: Session, plan: Plan, note: str, actor: str, now: datetime, *, shadow: bool
) -> SubscriberAction:
    """Queue a confirmed plan as durable work, with an audit entry; refused (ActionRefused)
    when the plan has problems or the order has another action unfinished."""
    if plan.problems:
        raise lifecycle.ActionRefused("; ".join(plan.problems))
    order = queries.find_order(session, plan.order_ref)
    if order is None:
        raise lifecycle.ActionRefused(f"no order {plan.order_ref}")
    action = lifecycle.queue_subscriber_action(
        session,
        order,
        now,
        action=plan.action,
        site_id=plan.site_id,
        cid=plan.cid,
        uia_id=plan.uia_id or None,
        customer_id=plan.customer_id,
        service_id=plan.service_id,
        product=plan.product or None,
        product_before=plan.product_before[:200] or None,
        issue_date=plan.issue_date or None,
        note=lifecycle.checked_note(note),
        requested_by=actor[:80],
        shadow=shadow,
        steps=steps_of(plan),
    )
    audit.record(
        session,
        actor,
        "subscriber_action",
        now,
        order_ref=order.order_ref,
        detail=f"{plan.action.value} queued (action {action.id}; cid {plan.cid}): "
        + " ".join(note.split()),
    )
    return action


@dataclass(frozen=True)
class StepView:
    """What one step of a subscriber action needs to run."""

    action_id: int
    order_id: int
    order_ref: str
    kind: SubscriberActionKind
    step: dict[str, Any]
    site_id: str
    cid: str
    uia_id: str
    customer_id: int | None
    service_id: int | None
    product: str
    product_before: str
    issue_date: str
    attempt_id: int
    attempt_number: int
    maybe_applied: bool  # an earlier attempt of this step in this run may have applied


def shows_applied(view: StepView, service: SiteService) -> bool:
    """Whether UTOPIA's `service` look-up shows the step's write applied (a GUESS at the
    status and product texts: see docs/operations.md)."""
    status = service.status.casefold()
    if view.step["name"] == "utopia_suspend":
        return "suspend" in status
    if view.step["name"] == "utopia_unsuspend":
        return status == "active"
    if view.step["name"] == "utopia_cancelservice":
        return "cancel" in status
    shown = service.lines[0].product if service.lines else ""
    return bool(shown) and (
        shown == view.product or bool(view.product_before and shown != view.product_before)
    )


class SubscriberActionRunner:
    """Runs claimed subscriber actions for one worker (or the CLI), step by step."""

    def __init__(
        self,
        store: Store,
        utopia: UtopiaClient,
        powercode: PowerCodeClient,
        ticket_settings: TicketSettings,
        owner: str,
        clock: Callable[[], datetime],
        retry: lifecycle.RetryPolicy,
        rng: random.Random,
        lease: timedelta,
    ) -> None:
        self.store = store
        self.utopia = utopia
        self.powercode = powercode
        self.ticket_settings = ticket_settings
        self.owner = owner
        self.clock = clock
        self.retry = retry
        self.rng = rng
        self.lease = lease
        self.in_hand: int | None = None  # the action being run: the heartbeat keeps its lease

    def run_due(self, limit: int, *, shadow: bool, only: int | None = None) -> int:
        """Claim up to `limit` due actions (only action `only`, if given) and run each."""
        with self.store.write() as session:
            ids = queries.claim_due_subscriber_actions(
                session, self.owner, limit, self.clock(), self.lease, shadow=shadow, only=only
            )
        for action_id in ids:
            self.run_claimed(action_id)
        return len(ids)

    def run_claimed(self, action_id: int) -> None:
        """Run a claimed action's steps until it ends, waits or must retry later; the one
        catch-all for this unit of work."""
        self.in_hand = action_id
        try:
            while True:
                view = self.prepare(action_id)
                if view is None:
                    return
                try:
                    context = WorkContext(view.order_id, f"subscriber {view.kind.value}", None)
                    with working_on(context):
                        result = self.perform(view)
                except Exception as error:  # the catch-all: recorded, a person looks
                    log_event(
                        log,
                        "subscriber_action.crashed",
                        logging.ERROR,
                        order=view.order_ref,
                        step=view.step["name"],
                        error=type(error).__name__,
                    )
                    log.error(
                        "traceback (frames only):\n%s",
                        "".join(traceback.format_tb(error.__traceback__)),
                    )
                    result = crashed_result(error)
                if not self.record(view, result):
                    return
        except queries.LeaseLost:
            log_event(log, "subscriber_action.lease_lost", logging.WARNING, action_id=action_id)
        finally:
            self.in_hand = None
            self._release(action_id)

    def _release(self, action_id: int) -> None:
        with self.store.write() as session:
            queries.give_back(session, SubscriberAction, action_id, self.owner)

    # 1 -----------------------------------------------------------------------------------------
    def prepare(self, action_id: int) -> StepView | None:
        """Write the attempt row of the action's current step and commit; None when not due."""
        now = self.clock()
        with self.store.write() as session:
            action = queries.owned_subscriber_action(session, action_id, self.owner)
            if (
                action.state != MessageActionState.PENDING
                or action.next_attempt_at > now
                or action.step >= len(action.steps)
            ):
                return None
            action.lease_expires_at = now + self.lease  # each step renews the lease
            order, attempt_id, maybe_applied = open_attempt(session, action, self.owner, now)
            return StepView(
                action_id=action.id,
                order_id=order.id,
                order_ref=order.order_ref,
                kind=action.action,
                step=dict(action.steps[action.step]),
                site_id=action.site_id,
                cid=action.cid,
                uia_id=action.uia_id or "",
                customer_id=action.customer_id,
                service_id=action.service_id,
                product=action.product or "",
                product_before=action.product_before or "",
                issue_date=action.issue_date or "",
                attempt_id=attempt_id,
                attempt_number=action.attempts,
                maybe_applied=maybe_applied,
            )

    # 2 -----------------------------------------------------------------------------------------
    def perform(self, view: StepView) -> ActionResult:
        """Make the step's outside calls (reading back first where it may have applied)."""
        log_event(
            log,
            "subscriber_action.step",
            order=view.order_ref,
            action=view.kind.value,
            step=view.step["name"],
            attempt=view.attempt_number,
        )
        try:
            name = view.step["name"]
            if name.startswith("utopia_"):
                return ActionResult("done", self._utopia(view))
            return self._powercode(view)
        except ValueError as error:
            return ActionResult("waits", str(error), AttemptOutcome.HELD)
        except (NeedsPerson, RejectedError, RetryableError) as error:
            return setback(error, f"{view.step['name']}: ")

    def _utopia(self, view: StepView) -> str:
        name = view.step["name"]
        if view.maybe_applied and shows_applied(view, self.utopia.site_service(view.site_id)):
            return "UTOPIA's service look-up shows it done already: not sent again"
        if name == "utopia_suspend":
            self.utopia.suspend(view.cid, view.site_id)
        elif name == "utopia_unsuspend":
            self.utopia.unsuspend(view.cid, view.site_id)
        elif name == "utopia_changespeed":
            self.utopia.change_speed(
                view.cid, view.site_id, view.uia_id, view.product, view.issue_date
            )
        else:
            self.utopia.cancel_service(view.cid, view.site_id, view.issue_date)
        return f"UTOPIA accepted {name.removeprefix('utopia_')}"

    def _powercode(self, view: StepView) -> ActionResult:
        customer_id = view.customer_id
        if customer_id is None:
            raise NeedsPerson("the order has no PowerCode customer: do this step by hand")
        name = view.step["name"]
        if name == "pc_note":
            return ActionResult(
                "done", add_note_line(self.powercode, customer_id, view.step["line"])
            )
        if name == "pc_status":
            status = view.step["status"]
            if view.maybe_applied:
                customer = self.powercode.read_customer(customer_id)
                if customer is not None and customer.status == status:
                    return ActionResult("done", f"customer #{customer_id} is {status} already")
            self.powercode.update_customer_status(customer_id, status)
            return ActionResult("done", f"customer #{customer_id} set to {status}")
        if name == "pc_service":
            service_id = view.service_id
            if service_id is None:
                raise NeedsPerson("no PowerCode service was named for the new speed")
            if view.maybe_applied and service_id in self.powercode.list_service_ids(customer_id):
                return ActionResult("done", f"service {service_id} is on customer #{customer_id}")
            self.powercode.add_service(customer_id, service_id)
            return ActionResult(
                "done", f"service {service_id} added to customer #{customer_id} (replaces the old)"
            )
        # pc_ticket: PowerCode cannot list a customer's tickets, so no read-back.
        refuse_repeat_ticket(view.maybe_applied, customer_id)
        return open_ticket(
            self.powercode,
            self.ticket_settings,
            customer_id,
            view.step["summary"],
            view.step["description"],
        )

    # 3 -----------------------------------------------------------------------------------------
    def record(self, view: StepView, result: ActionResult) -> bool:
        """Write what the step achieved in one commit; whether the next step is due now."""
        now = self.clock()
        go_on = False
        with self.store.write() as session:
            action = queries.owned_subscriber_action(session, view.action_id, self.owner)
            order = session.get(Order, action.order_id, with_for_update=True)
            assert order is not None
            step = view.step["name"]
            if result.kind == "done":
                if result.ticket_id:
                    action.ticket_id = result.ticket_id
                finished = lifecycle.subscriber_step_done(
                    session, order, action, view.attempt_id, result.detail, now
                )
                go_on = not finished
                state = "done" if finished else "step_done"
            else:
                state = record_setback(
                    session,
                    order,
                    action,
                    view.attempt_id,
                    result,
                    now,
                    self.retry,
                    self.rng,
                    where=f"{step}: ",
                )
            audit.record(
                session,
                WORKER_ACTOR,
                f"subscriber_{state}",
                now,
                order_ref=order.order_ref,
                detail=f"{view.kind.value} (action {view.action_id}) {step}: {result.detail}",
            )
        log_event(
            log,
            f"subscriber_action.{state}",
            logging.INFO if state in ("done", "step_done") else logging.WARNING,
            order=view.order_ref,
            action=view.kind.value,
            step=step,
            attempt=view.attempt_number,
        )
        return go_on


def worker_alive(session: Session, now: datetime, within: timedelta) -> bool:
    """Whether a worker process was heard from within `within` (it will claim the action)."""
    from utopia_handler.store.models import WorkerProcess

    seen = session.scalar(
        select(WorkerProcess.name).where(WorkerProcess.heartbeat_at >= now - within).limit(1)
    )
    return seen is not None


def run_or_wait(
    runtime: Runtime, action_id: int, wait_seconds: float, owner: str
) -> SubscriberAction:
    """See an action through from the CLI: wait up to `wait_seconds` for a running worker to
    finish it, or, with no worker running, run it here through the same runner (and deliver
    its e-mails). Returns the action as it then is."""
    from utopia_handler.notify.outbox import Outbox
    from utopia_handler.timeutil import utcnow

    settings = runtime.settings.worker
    lease = timedelta(seconds=settings.lease_seconds)
    # No heartbeat here: the lease covers a step's read-back and write at their longest.
    longest = max(
        t.connect + t.read
        for t in (runtime.settings.utopia.timeouts, runtime.settings.powercode.timeouts)
    )
    step_lease = max(lease, timedelta(seconds=4 * longest))
    retry = lifecycle.RetryPolicy.from_settings(settings)
    with runtime.store.read() as session:
        alive = worker_alive(session, utcnow(), lease)
    if not alive:
        rng = random.Random()
        runner = SubscriberActionRunner(
            runtime.store,
            runtime.utopia,
            runtime.powercode,
            runtime.settings.provisioning.ticket,
            owner,
            utcnow,
            retry,
            rng,
            step_lease,
        )
        runner.run_due(1, shadow=runtime.settings.shadow_mode, only=action_id)
        outbox = Outbox(runtime, owner, utcnow, retry, rng)
        with runtime.store.write() as session:
            mail = queries.claim_due_notifications(session, owner, 20, utcnow(), lease)
        for notification_id in mail:
            outbox.deliver(notification_id)
    deadline = time.monotonic() + (wait_seconds if alive else 0.0)
    while True:
        with runtime.store.read() as session:
            action = session.get(SubscriberAction, action_id)
            assert action is not None
            session.expunge(action)
        if action.state != MessageActionState.PENDING or time.monotonic() >= deadline:
            return action
        time.sleep(0.2)
