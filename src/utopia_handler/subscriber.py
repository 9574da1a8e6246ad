"""Subscriber actions after the order (suspend, unsuspend, change speed, cancel): their plans.

`plan_action` says exactly what an action would send to UTOPIA and to PowerCode, every field,
the API keys masked, reading only (the site's `service` look-up gives UTOPIA's `cid` and service
id). The confirmation page, the CLI's question and a dry run show this plan; queued, it becomes
a `subscriber_actions` row whose steps are the plan's requests (subscriber_work.py).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from utopia_handler.clients.errors import OutsideError
from utopia_handler.config_store import current_speed_products
from utopia_handler.runtime import Runtime
from utopia_handler.settings.schema import SubscriberSettings
from utopia_handler.store.models import Order, SubscriberActionKind

MASK = "********"


# The one list of actions: the table's column and the plan's are the same enum.
SubscriberAction = SubscriberActionKind


@dataclass(frozen=True)
class PlannedRequest:
    """One request the action would send, with every field (secrets masked) and why."""

    service: str  # "UTOPIA" or "PowerCode"
    call: str
    fields: tuple[tuple[str, str], ...]
    purpose: str
    step: str  # the durable action's step that sends it (subscriber_work.py)


@dataclass(frozen=True)
class Plan:
    """What an action on an order's subscriber would send; `problems` say why it cannot yet."""

    action: SubscriberAction
    order_ref: str
    site_id: str
    cid: str
    cid_from: str  # "UTOPIA" (the service look-up), "typed" or ""
    requests: tuple[PlannedRequest, ...]
    problems: tuple[str, ...]
    # What the durable action needs besides the requests (subscriber_work.queue_action).
    uia_id: str = ""
    customer_id: int | None = None
    service_id: int | None = None
    product: str = ""
    product_before: str = ""
    issue_date: str = ""
    note_line: str = ""
    ticket_summary: str = ""
    ticket_description: str = ""

    def lines(self) -> list[str]:
        """The plan as text, for the CLI and logs (no secrets in it)."""
        out = [
            f"{self.action.value} for order {self.order_ref}, site {self.site_id or '?'}, "
            f"UTOPIA cid {self.cid or '?'}" + (f" ({self.cid_from})" if self.cid_from else "")
        ]
        for number, request in enumerate(self.requests, start=1):
            out.append(f"{number}. {request.service} {request.call}: {request.purpose}")
            out += [f"     {name} = {value}" for name, value in request.fields]
        out += [f"cannot run: {problem}" for problem in self.problems]
        return out


def _utopia(call: str, purpose: str, **fields: str) -> PlannedRequest:
    return PlannedRequest(
        "UTOPIA", f"/spquery/{call}", (("apikey", MASK), *fields.items()), purpose, f"utopia_{call}"
    )


def _powercode(step: str, action: str, purpose: str, **fields: str) -> PlannedRequest:
    return PlannedRequest(
        "PowerCode",
        action,
        (("apiKey", MASK), ("action", action), *fields.items()),
        purpose,
        step,
    )


def note_line(action: SubscriberAction, order_ref: str, actor: str, note: str, day: date) -> str:
    """The line a suspend, unsuspend or speed change adds to the PowerCode customer's notes."""
    text = " ".join(note.split())
    return f"{day.isoformat()}: UTOPIA {action.value} by {actor or '?'} (order {order_ref}): {text}"


def cancel_ticket(
    order_ref: str, site_id: str, issue_date: str, actor: str, note: str
) -> tuple[str, str]:
    """The summary and HTML description of the ticket a cancel opens for staff."""
    summary = f"UTOPIA service cancelled from {issue_date or '?'} ({order_ref})"
    description = (
        f"<p>The UTOPIA service of order {html.escape(order_ref)} (site "
        f"{html.escape(site_id or '?')}) is cancelled from {html.escape(issue_date or '?')}, "
        f"asked by {html.escape(actor or '?')}.</p><p>Note: {html.escape(note.strip())}</p>"
        "<p>To do: equipment pick-up and the final bill.</p>"
    )
    return summary, description


def plan_action(
    runtime: Runtime,
    order_ref: str,
    action: SubscriberAction,
    *,
    typed_cid: str = "",
    service_id: int | None = None,
    product: str = "",
    issue_date: str = "",
    note: str = "",
    actor: str = "",
) -> Plan:
    """The requests `action` would send for the order's subscriber; only reads are made."""
    with runtime.store.read() as db:
        order = db.scalar(select(Order).where(Order.order_ref == order_ref.strip()))
        if order is None:
            raise LookupError(f"no order {order_ref}")
        site_id = order.site_id or ""
        customer_id = order.customer_id
    problems: list[str] = []
    cid, cid_from, uia_id = typed_cid.strip(), "typed" if typed_cid.strip() else "", ""
    product_before = ""
    if site_id:
        try:
            service = runtime.site_lookup().run(
                lambda: runtime.site_lookup().utopia.site_service(site_id)
            )
            if service.lines:
                uia_id = service.lines[0].uia_id
                product_before = service.lines[0].product
            if service.cid and not cid:
                cid, cid_from = service.cid, "UTOPIA"
        except (OutsideError, TimeoutError) as error:
            problems.append(f"UTOPIA's service look-up failed: {error}")
    else:
        problems.append("the order has no site id")
    if not cid:
        problems.append("UTOPIA gave no cid for the site: type it (--cid)")
    if customer_id is None or customer_id <= 0:
        problems.append("the order has no PowerCode customer")
    settings: SubscriberSettings = runtime.settings.subscriber
    pc_id = str(customer_id or "?")
    requests: list[PlannedRequest] = []
    if action == SubscriberAction.SUSPEND:
        requests.append(_utopia("suspend", "suspend the service", cid=cid, siteid=site_id))
        if settings.pc_status_changes:
            requests.append(
                _powercode(
                    "pc_status",
                    "updateCustomerStatus",
                    "mark the customer suspended",
                    customerID=pc_id,
                    status=settings.pc_suspended_status,
                )
            )
    elif action == SubscriberAction.UNSUSPEND:
        requests.append(_utopia("unsuspend", "lift the suspension", cid=cid, siteid=site_id))
        if settings.pc_status_changes:
            requests.append(
                _powercode(
                    "pc_status",
                    "updateCustomerStatus",
                    "mark the customer active",
                    customerID=pc_id,
                    status=settings.pc_active_status,
                )
            )
    elif action == SubscriberAction.CHANGE_SPEED:
        if service_id is None:
            problems.append("name the new PowerCode service (--service ID)")
        if not product.strip() and service_id is not None:
            with runtime.store.read() as db:
                mapping = current_speed_products(db, settings.speed_products)
            product = mapping.get(service_id, "")
            if not product:
                problems.append(
                    f"no UTOPIA product is mapped for PowerCode service {service_id}: map it "
                    "under Settings, Plans (speed changes), or name it (--product)"
                )
        issue_date = issue_date or date.today().isoformat()
        when = issue_date
        requests.append(
            _utopia(
                "changespeed",
                "move the service to the new product",
                cid=cid,
                siteid=site_id,
                uiaid=uia_id,
                product=product.strip(),
                issuedate=when,
            )
        )
        if not uia_id:
            problems.append("UTOPIA gave no service id (uiaid) for the site")
        if settings.pc_swap_service:
            requests.append(
                _powercode(
                    "pc_service",
                    "addCustomerService",
                    "the new internet service (PowerCode replaces the old one)",
                    customerID=pc_id,
                    serviceID=str(service_id or "?"),
                    quantity="1",
                    prorateService="0",
                )
            )
    elif action == SubscriberAction.CANCEL:
        if not issue_date:
            problems.append("give the cancel date (--date YYYY-MM-DD)")
        requests.append(
            _utopia(
                "cancelservice",
                "cancel the service from that date",
                cid=cid,
                siteid=site_id,
                issuedate=issue_date,
            )
        )
        if settings.pc_status_changes:
            requests.append(
                _powercode(
                    "pc_status",
                    "updateCustomerStatus",
                    "mark the customer cancelled",
                    customerID=pc_id,
                    status=settings.pc_cancelled_status,
                )
            )
        if settings.pc_cancel_ticket:
            summary, description = cancel_ticket(order_ref, site_id, issue_date, actor, note)
            ticket = runtime.settings.provisioning.ticket
            requests.append(
                _powercode(
                    "pc_ticket",
                    "createTicket",
                    "tell staff (equipment pick-up, final bill)",
                    customerID=pc_id,
                    type="Individual",
                    summary=summary,
                    description=description,
                    category=str(ticket.category),
                    ticketType=str(ticket.ticket_type),
                    status=str(ticket.status),
                    responsibleUser=ticket.responsible_user,
                    responsibleGroupID=str(ticket.responsible_group),
                    customerViewable="1" if ticket.customer_viewable else "0",
                )
            )
    line = ""
    if settings.pc_note and action != SubscriberAction.CANCEL:
        line = note_line(action, order_ref, actor, note, date.today())
        requests.append(
            _powercode(
                "pc_note",
                "updateCustomer",
                "a line in the customer's notes (read first; not added twice)",
                customerID=pc_id,
                customerNotes=f"(the customer's notes, then) {line}",
            )
        )
    if issue_date:
        try:
            date.fromisoformat(issue_date)
            if len(issue_date) != 10:
                raise ValueError(issue_date)
        except ValueError:
            problems.append(f"the date must be YYYY-MM-DD, not {issue_date!r}")
    summary, description = ("", "")
    if action == SubscriberAction.CANCEL:
        summary, description = cancel_ticket(order_ref, site_id, issue_date, actor, note)
    return Plan(
        action,
        order_ref,
        site_id,
        cid,
        cid_from,
        tuple(requests),
        tuple(problems),
        uia_id=uia_id,
        customer_id=customer_id if customer_id and customer_id > 0 else None,
        service_id=service_id,
        product=product.strip(),
        product_before=product_before,
        issue_date=issue_date,
        note_line=line,
        ticket_summary=summary,
        ticket_description=description,
    )
