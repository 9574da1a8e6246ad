"""What a person can do to an order (and to its routed messages' actions). The CLI and the console
call these; the worker does the work.

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

from utopia_handler import audit, config_store, lifecycle
from utopia_handler.addresses import state_code
from utopia_handler.clients import utopia_orders
from utopia_handler.clients.utopia import Contract
from utopia_handler.lifecycle import ActionRefused
from utopia_handler.provisioning import (
    Hold,
    PlannedService,
    check_contract_fields,
    plan_services,
    unmapped_plans,
)
from utopia_handler.settings import ProvisioningSettings, plan_key
from utopia_handler.store import queries
from utopia_handler.store.console_models import ConfigVersion
from utopia_handler.store.models import (
    STEP_SEQUENCE,
    MessageAction,
    Notification,
    NotificationKind,
    Order,
    OrderState,
    SiteDecision,
    Step,
)

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
    order, step = check_retry(session, order_ref, now, from_step)
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


def check_retry(
    session: Session, order_ref: str, now: datetime, from_step: Step | None = None
) -> tuple[Order, Step]:
    """The order and the step a retry would queue it at; ActionRefused when it may not run."""
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
    return order, step


def retry_resends_success_email(session: Session, order: Order, step: Step) -> bool:
    """Whether running the order again from `step` sends staff the "customer created" e-mail a
    second time: it was sent (or queued) already and the run would pass the notify step."""
    if STEP_SEQUENCE.index(step) > STEP_SEQUENCE.index(Step.NOTIFY):
        return False
    sent = session.scalar(
        select(Notification.id)
        .where(Notification.order_id == order.id, Notification.kind == NotificationKind.SUCCESS)
        .limit(1)
    )
    return sent is not None


# Orders waiting for a plan mapping ---------------------------------------------------------------


def waits_for_plan_mapping(order: Order, settings: ProvisioningSettings) -> tuple[str, ...] | None:
    """For an order held at choose_plans for its plans: the plan texts still unmapped under
    `settings` (empty: the mapping covers it now, a retry goes on). None: it waits for
    something else, or does not wait."""
    if order.state != OrderState.WAITING or order.step != Step.CHOOSE_PLANS:
        return None
    if order.contract is None:
        return None
    contract = Contract.from_json(order.contract)
    try:
        check_contract_fields(contract)
    except Hold:
        return None  # a field needs correcting first; a mapping would not help
    try:
        plan_services(contract, settings)
    except Hold:
        unmapped = unmapped_plans(contract, settings)
        mapped = {plan_key(p.utopia_text) for p in settings.plans}
        # Only one-off items ("Installation"): any of them may be the plan a person maps.
        return tuple(unmapped) or tuple(
            i.description
            for i in contract.items
            if i.description and plan_key(i.description) not in mapped
        )
    return ()


def orders_waiting_for_plans(
    session: Session, settings: ProvisioningSettings, limit: int = 200
) -> list[tuple[Order, tuple[str, ...]]]:
    """Orders held for their plans, oldest first, each with the plan texts still unmapped."""
    held = session.scalars(
        select(Order)
        .where(Order.state == OrderState.WAITING, Order.step == Step.CHOOSE_PLANS)
        .order_by(Order.id)
        .limit(limit)
    )
    found = []
    for order in held:
        unmapped = waits_for_plan_mapping(order, settings)
        if unmapped is not None:
            found.append((order, unmapped))
    return found


def map_plans_and_retry(
    session: Session,
    order_ref: str,
    service_ids: Mapping[str, str],
    settings: ProvisioningSettings,
    now: datetime,
    *,
    actor: str,
) -> tuple[ConfigVersion, Order]:
    """Add plan texts to the mapping in force (a new version) and retry the order that waits for
    them, in one transaction: ConfigInvalid (nothing saved) if an id is not usable."""
    order = _find(session, order_ref)
    problems: list[str] = []
    for text, service_id in service_ids.items():
        config_store.parse_service_id(service_id, f"“{text}”", problems)
    if problems:
        raise config_store.ConfigInvalid(problems)
    rows = [(p.utopia_text, str(p.service_id)) for p in settings.plans]
    rows += [(text, service_id) for text, service_id in service_ids.items()]
    version = config_store.save_plans(session, config_store.parse_plan_rows(rows), actor, now)
    retry_order(session, order.order_ref, now, actor=actor)
    return version, order


def retry_orders_now_mapped(
    session: Session, settings: ProvisioningSettings, now: datetime, *, actor: str
) -> list[str]:
    """Retry every order held for its plans that the mapping in force now covers; their refs.
    Orders a worker holds right now are left out (they are not waiting)."""
    retried = []
    for order, unmapped in orders_waiting_for_plans(session, settings):
        if not unmapped and not lifecycle.is_leased(order, now):
            retry_order(session, order.order_ref, now, actor=actor)
            retried.append(order.order_ref)
    return retried


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


# Routed messages' actions --------------------------------------------------------------------


def _find_message_action(session: Session, order_ref: str, action_id: int) -> MessageAction:
    order = _find(session, order_ref)
    action = session.get(MessageAction, action_id)
    if action is None or action.order_id != order.id:
        raise ActionRefused(f"order {order_ref} has no routed message action {action_id}")
    return action


def retry_message_action(
    session: Session, order_ref: str, action_id: int, now: datetime, *, actor: str
) -> MessageAction:
    """Queue a routed message's action again, as a new run (a person has looked)."""
    action = _find_message_action(session, order_ref, action_id)
    was = action.state.value
    lifecycle.retry_action(action, now)
    audit.record(
        session,
        actor,
        "retry_message_action",
        now,
        order_ref=order_ref,
        detail=f"{action.action.value} for {action.msg!r} (action {action.id}, was {was})",
    )
    return action


def close_message_action(
    session: Session, order_ref: str, action_id: int, note: str, now: datetime, *, actor: str
) -> MessageAction:
    """Close a routed message's action: done by hand, or nothing is to be done."""
    action = _find_message_action(session, order_ref, action_id)
    lifecycle.close_action(action, note, actor, now)
    audit.record(
        session,
        actor,
        "close_message_action",
        now,
        order_ref=order_ref,
        detail=f"{action.action.value} for {action.msg!r} (action {action.id}): {note.strip()}",
    )
    return action


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


def corrected_fields(original: Contract, fields: ContractCorrections) -> list[str]:
    """The labels of the fields a person really changed, in lower case ("city", "zip code").

    Both sides are compared as checked and normalised ("Utah" is "UT", "(801) 555-0142" is
    "8015550142", spaces squeezed), so a field shown and sent back unchanged is no correction.
    """
    before, _ = check_corrections(contract_fields(original))
    return [
        FIELD_LABELS[name].lower()
        for name in FIELD_LABELS
        if getattr(before, name) != getattr(fields, name)
    ]


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


def provision_recorded_order(
    session: Session,
    order_ref: str,
    now: datetime,
    *,
    actor: str,
    why: str = "",
    shadow: bool = False,
) -> Order:
    """Provision an order that was only recorded (known from UTOPIA, not provisioned): it runs
    the steps a new-order callback starts. `why` goes into the audit row beside the change;
    `shadow`: shadow mode is on, so the order is worked on in it."""
    order = _find(session, order_ref)
    lifecycle.provision_recorded(order, now, shadow=shadow)
    detail = "recorded, not provisioned; queued at lookup_contract"
    audit.record(
        session,
        actor,
        "provision_recorded",
        now,
        order_ref=order.order_ref,
        detail=f"{detail} ({why})" if why else detail,
    )
    return order


# Leaving shadow mode ------------------------------------------------------------------------------


def provision_shadow_orders(
    session: Session, order_refs: Sequence[str] | None, now: datetime, *, actor: str
) -> list[str]:
    """Provision for real the named orders seen in shadow mode, or all of them (None).

    Orders a worker holds right now are passed over in the bulk form (the person may try again).
    """
    if order_refs is None:
        orders = list(
            session.scalars(select(Order).where(Order.shadow.is_(True)).order_by(Order.id))
        )
    else:
        orders = [_find(session, ref) for ref in order_refs]
    queued: list[str] = []
    for order in orders:
        try:
            lifecycle.provision_for_real(order, now)
        except ActionRefused:
            if order_refs is not None:
                raise
            continue
        audit.record(
            session,
            actor,
            "provision_for_real",
            now,
            order_ref=order.order_ref,
            detail="worked on in shadow mode; now provisioned for real from the contract lookup",
        )
        queued.append(order.order_ref)
    return queued
