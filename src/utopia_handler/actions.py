"""What a person can do to an order. The CLI and the console call these; the worker does the work.

Each action finds the order, checks what only a person's action needs (a note, an audit row),
and leaves every change of the order's state and step to `lifecycle`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from utopia_handler import audit, lifecycle
from utopia_handler.addresses import state_code
from utopia_handler.clients import utopia_orders
from utopia_handler.clients.utopia import Contract
from utopia_handler.lifecycle import ActionRefused
from utopia_handler.provisioning import PlannedService
from utopia_handler.settings import ProvisioningSettings, plan_key
from utopia_handler.store import queries
from utopia_handler.store.models import Notification, Order, OrderState, SiteDecision, Step

__all__ = ["ActionRefused"]  # re-exported: the console and the CLI catch it from here


def retry_order(
    session: Session,
    order_ref: str,
    now: datetime,
    from_step: Step | None = None,
    *,
    actor: str | None = None,
) -> Order:
    """Queue the order again, at its current step or at `from_step`, as a new run."""
    order = queries.find_order(session, order_ref)
    if order is None:
        raise ActionRefused(f"no order {order_ref}")
    step = from_step or order.step
    if step == Step.FINISHED:
        raise ActionRefused(f"order {order_ref} has finished; name a step to run again")
    if lifecycle.is_leased(order, now):
        raise ActionRefused(f"order {order_ref} is being worked on right now; try again shortly")
    if step == Step.CREATE_CUSTOMER and order.customer_created:
        # A new run would not look for the customer first: a second account. find_customer
        # recognises the customer this order created and goes on from there.
        raise ActionRefused(
            f"customer #{order.customer_id} was already created by order {order_ref}; "
            "retry from find_customer (it recognises that customer) or a later step"
        )
    if actor is not None:
        audit.record(
            session,
            actor,
            "retry" if from_step is None else "retry_from_step",
            now,
            order_ref=order_ref,
            detail=f"queued at {step.value} (was {order.state.value} at {order.step.value})",
        )
    lifecycle.start_new_run(order, step, now)
    return order


# Closing an order by hand -------------------------------------------------------------------------


def _find(session: Session, order_ref: str) -> Order:
    order = queries.find_order(session, order_ref)
    if order is None:
        raise ActionRefused(f"no order {order_ref}")
    return order


def resolve_order(
    session: Session, order_ref: str, note: str, now: datetime, *, actor: str
) -> Order:
    """Close an order a person completed by hand (in PowerCode): done, with their note."""
    order = _find(session, order_ref)
    lifecycle.resolve_by_hand(order, note, actor, now)
    audit.record(session, actor, "resolve", now, order_ref=order_ref, detail=note.strip())
    return order


def ignore_order(
    session: Session, order_ref: str, note: str, now: datetime, *, actor: str
) -> Order:
    """Stop work on an order nothing is to be done for; a later retry goes on where it stopped."""
    order = _find(session, order_ref)
    lifecycle.ignore(order, note, actor, now)
    audit.record(session, actor, "ignore", now, order_ref=order_ref, detail=note.strip())
    return order


# A site that changed hands --------------------------------------------------------------------

SITE_DECISION_WORDS = {
    SiteDecision.NEW_CUSTOMER: "new customer at this site",
    SiteDecision.SAME_PERSON: "same person",
}


waits_for_site_decision = lifecycle.waits_for_site_decision


def decide_site(
    session: Session,
    order_ref: str,
    decision: SiteDecision,
    note: str,
    now: datetime,
    *,
    actor: str,
) -> Order:
    """Record who lives at the order's site and queue it again at find_customer, as a new run.

    "new customer at this site": the former customer is passed over and a new account is created.
    "same person": the order ends as a duplicate of the former customer.
    """
    order = _find(session, order_ref)
    text = lifecycle.checked_note(note)
    former = order.former_customer_id
    lifecycle.decide_site(order, decision, now)
    audit.record(
        session,
        actor,
        f"site_{decision.value}",
        now,
        order_ref=order_ref,
        detail=f"{SITE_DECISION_WORDS[decision]} (former customer #{former}): {text}",
    )
    return order


def is_resolved_by_hand(order: Order) -> bool:
    """Whether a person closed this order with `resolve_order`."""
    return order.state == OrderState.DONE and order.resolved_by_hand


def resend_notification(session: Session, order_ref: str, now: datetime, *, actor: str) -> str:
    """Queue the order's latest staff e-mail again (a new outbox row); returns its kind."""
    order = queries.find_order(session, order_ref)
    if order is None:
        raise ActionRefused(f"no order {order_ref}")
    latest = session.scalar(
        select(Notification)
        .where(Notification.order_id == order.id)
        .order_by(Notification.id.desc())
        .limit(1)
    )
    if latest is None:
        raise ActionRefused(f"no e-mail has been queued for order {order_ref} yet")
    queries.enqueue_notification(session, order, latest.kind, dict(latest.context), now)
    audit.record(
        session,
        actor,
        "resend_email",
        now,
        order_ref=order_ref,
        detail=f"{latest.kind.value} e-mail",
    )
    return latest.kind.value


# Provisioning by hand -----------------------------------------------------------------------------

_ZIP_RE = re.compile(r"[0-9]{5}(?:-[0-9]{4})?")
_EMAIL_RE = re.compile(r"[^@\s<>]+@[^@\s<>.][^@\s<>]*\.[^@\s<>]+")
_SITE_RE = re.compile(r"[0-9]{1,32}")
FIELD_LABELS = {
    "first_name": "First name",
    "last_name": "Last name",
    "email": "E-mail",
    "phone": "Phone",
    "street": "Street",
    "unit": "Unit or apartment",
    "city": "City",
    "state": "State",
    "zip": "ZIP code",
    "site_id": "Site id",
}
_REQUIRED_FIELDS = ("first_name", "last_name", "street", "city", "state", "zip", "site_id")


@dataclass(frozen=True)
class ContractCorrections:
    """The contract fields a person may correct before provisioning by hand."""

    first_name: str
    last_name: str
    email: str
    phone: str
    street: str
    unit: str
    city: str
    state: str
    zip: str
    site_id: str


def check_order_ref(order_ref: str) -> str:
    """The order ref as `utopia_orders.check_order_ref` takes it, or ActionRefused saying why."""
    try:
        return utopia_orders.check_order_ref(order_ref)
    except utopia_orders.BadOrderRef as problem:
        raise ActionRefused(str(problem)) from None


def contract_fields(contract: Contract) -> dict[str, str]:
    """The correctable fields of a contract, as a form shows them."""
    return {
        "first_name": contract.customer.first_name,
        "last_name": contract.customer.last_name,
        "email": contract.customer.email,
        "phone": contract.customer.phone,
        "street": contract.service_address.street,
        "unit": contract.service_address.unit,
        "city": contract.service_address.city,
        "state": contract.service_address.state,
        "zip": contract.service_address.zip,
        "site_id": contract.site_id,
    }


def check_corrections(fields: Mapping[str, str]) -> tuple[ContractCorrections, dict[str, str]]:
    """The fields, cleaned, and one problem per field that is missing or wrong (none: all good)."""
    clean = {name: " ".join(str(fields.get(name, "")).split()) for name in FIELD_LABELS}
    problems: dict[str, str] = {}
    for name in _REQUIRED_FIELDS:
        if not clean[name]:
            problems[name] = f"{FIELD_LABELS[name]} is required"
    for name, value in clean.items():
        if len(value) > 100 and name not in problems:
            problems[name] = f"{FIELD_LABELS[name]} is longer than 100 characters"
    if clean["state"] and "state" not in problems:
        code = state_code(clean["state"])
        if code is None:
            problems["state"] = "State must be a US state, e.g. UT or Utah"
        else:
            clean["state"] = code
    if clean["zip"] and "zip" not in problems and not _ZIP_RE.fullmatch(clean["zip"]):
        problems["zip"] = "ZIP code must be 5 digits (or ZIP+4, 84057-1234)"
    if clean["email"] and "email" not in problems and not _EMAIL_RE.fullmatch(clean["email"]):
        problems["email"] = "E-mail is not an address like name@example.org"
    if clean["phone"]:
        digits = re.sub(r"\D", "", clean["phone"])
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        if len(digits) != 10:
            problems.setdefault("phone", "Phone must have 10 digits, e.g. 801 555 0142")
        clean["phone"] = digits
    if clean["site_id"] and "site_id" not in problems and not _SITE_RE.fullmatch(clean["site_id"]):
        problems["site_id"] = "Site id is digits (up to 32)"
    return ContractCorrections(**clean), problems


def corrected_contract(base: Contract, fields: ContractCorrections) -> Contract:
    """The contract with a person's corrections applied; a person has now looked at it, so what
    parse_contract found wrong with it (the fields it cut short) no longer holds the order."""
    return replace(
        base,
        problems=(),
        site_id=fields.site_id,
        customer=replace(
            base.customer,
            first_name=fields.first_name,
            last_name=fields.last_name,
            email=fields.email,
            phone=fields.phone,
        ),
        service_address=replace(
            base.service_address,
            street=fields.street,
            unit=fields.unit,
            city=fields.city,
            state=fields.state,
            zip=fields.zip,
        ),
    )


def chosen_services(
    plan_texts: Sequence[str], settings: ProvisioningSettings
) -> list[PlannedService]:
    """The services for the plans a person chose (by mapped plan text), then the always-added."""
    mapping = {plan_key(p.utopia_text): p for p in settings.plans}
    planned: list[PlannedService] = []
    for text in plan_texts:
        plan = mapping.get(plan_key(text))
        if plan is None:
            raise ActionRefused(f"the plan {text!r} is not in the plan mapping")
        if all(p.service_id != plan.service_id for p in planned):
            planned.append(PlannedService(plan.service_id, plan.utopia_text))
    for service_id in settings.always_services:
        if all(p.service_id != service_id for p in planned):
            planned.append(
                PlannedService(service_id, "always added", settings.quantity_of(service_id))
            )
    return planned


def provision_by_hand(
    session: Session,
    order_ref: str,
    contract: Contract,
    plans: Sequence[PlannedService] | None,
    now: datetime,
    *,
    actor: str,
    changed: Sequence[str] = (),
) -> Order:
    """Store a person's reviewed contract (and plans) on the order and queue it as a new run.

    The order is created when its callback never came. It starts at find_customer with the chosen
    plans, or at choose_plans to take them from the mapping, so the same steps (and the same
    duplicate checks) run as for any order.
    """
    ref = check_order_ref(order_ref)
    step = Step.FIND_CUSTOMER if plans else Step.CHOOSE_PLANS
    order = queries.find_order(session, ref)
    created = order is None
    if order is None:
        order = Order(order_ref=ref, created_at=now)
        session.add(order)
    name = f"{contract.customer.first_name} {contract.customer.last_name}".strip()
    lifecycle.restart_with_contract(
        order,
        replace(contract, order_ref=ref).to_json(),
        contract.site_id or None,
        name or None,
        [p.to_json() for p in plans] if plans else None,
        step,
        now,
        first_run=created,
    )
    session.flush()
    services = ", ".join(str(p.service_id) for p in plans) if plans else "from the plan mapping"
    detail = f"{'new order' if created else 'order updated'}; queued at {step.value}; services {services}"
    if changed:
        detail += f"; corrected: {', '.join(changed)}"
    audit.record(session, actor, "provision_by_hand", now, order_ref=ref, detail=detail)
    return order
