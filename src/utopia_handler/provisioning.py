"""The steps of a new order, as plain functions over the outside clients and an order view.

Each step reads what earlier steps recorded (an `OrderView`), makes its outside calls, and returns
a `StepResult` saying what to record and where to go next. The worker records it before the next
step runs, so a finished step is never redone. Steps that create things make sure a retry never
creates them twice: they look first (customer by site id, services already on the account) or,
where PowerCode offers no way to look (tickets), stop for a person rather than guess.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from utopia_handler.addresses import normalise_name, normalise_street, state_code, street_with_unit
from utopia_handler.clients.powercode import (
    CustomerMatch,
    GeocodeFailed,
    NewCustomer,
    NewTicket,
    PowerCodeClient,
    PowerCodeCustomer,
)
from utopia_handler.clients.utopia import Contract, NotOurOrder, UtopiaClient
from utopia_handler.settings import PowerCodeSettings, ProvisioningSettings, plan_key
from utopia_handler.store.models import NotificationKind, OrderState, SiteDecision, Step
from utopia_handler.tickets import TemplateProblem, TicketRenderer


class Hold(Exception):
    """One of our own rules stops the order until a person looks; the message says why."""


class FormerCustomerAtSite(Hold):
    """The order's site already has a PowerCode customer of another name: a person decides.

    The message names both people, for the person deciding; `history` says the same without
    names, for the step history, which is kept after retention removes personal data.
    """

    def __init__(self, message: str, *, history: str, former: PowerCodeCustomer) -> None:
        super().__init__(message)
        self.history = history
        self.customer_id = former.customer_id
        self.name = powercode_name(former)
        self.status = former.status


@dataclass(frozen=True)
class PlannedService:
    service_id: int
    label: str  # the UTOPIA plan text, or "always added"
    quantity: int = 1  # more only for an always-added service the operator prices per unit

    def to_json(self) -> dict[str, Any]:
        return {"service_id": self.service_id, "label": self.label, "quantity": self.quantity}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> PlannedService:
        # Orders stored before quantities existed have none: each service was added once.
        return cls(int(row["service_id"]), str(row["label"]), int(row.get("quantity") or 1))


@dataclass(frozen=True)
class OrderView:
    """What a step may know about its order: the results of the steps before it."""

    order_ref: str
    contract: Contract | None = None
    plans: tuple[PlannedService, ...] = ()
    customer_id: int | None = None
    customer_created: bool = False
    ticket_id: str | None = None
    earlier_attempts: int = 0  # attempts of this step in this run, before this one
    maybe_applied: bool = False  # an earlier attempt may have reached PowerCode unanswered
    # The customer found at the order's site under another name, and what a person decided.
    former_customer_id: int | None = None
    site_decision: SiteDecision | None = None

    def require_contract(self) -> Contract:
        if self.contract is None:
            raise Hold("the order has no contract recorded; retry it from the contract lookup")
        return self.contract

    def require_customer(self) -> int:
        if self.customer_id is None:
            raise Hold("the order has no PowerCode customer recorded; retry it from find_customer")
        return self.customer_id


@dataclass
class StepResult:
    """What a step achieved: a sentence for the history, columns to record, and what comes next."""

    detail: str
    changes: dict[str, Any] = field(default_factory=dict)
    next_step: Step | None = None  # None: the following step in STEP_SEQUENCE
    final_state: OrderState | None = None
    notify: NotificationKind | None = None
    notify_context: dict[str, Any] = field(default_factory=dict)


@dataclass
class Provisioner:
    """Everything the steps need: the two clients, the operator's settings and the ticket renderer."""

    utopia: UtopiaClient
    powercode: PowerCodeClient
    settings: ProvisioningSettings
    powercode_settings: PowerCodeSettings
    tickets: TicketRenderer
    # The plan mapping and always-added services in force now (the console may have changed
    # them since start-up); None: `settings` as given.
    current_settings: Callable[[], ProvisioningSettings] | None = None

    def run(self, step: Step, order: OrderView) -> StepResult:
        """Run one step of one order."""
        return _STEP_FUNCTIONS[step](self, order)

    def settings_now(self) -> ProvisioningSettings:
        """The provisioning settings in force for the order being worked on."""
        return self.current_settings() if self.current_settings is not None else self.settings

    # 1 -----------------------------------------------------------------------------------------
    def lookup_contract(self, order: OrderView) -> StepResult:
        try:
            contract = self.utopia.lookup_contract(order.order_ref)
        except NotOurOrder:
            return StepResult(
                "UTOPIA has no record of this order for this ISP; nothing to do",
                final_state=OrderState.NOT_OURS,
                next_step=Step.FINISHED,
            )
        name = f"{contract.customer.first_name} {contract.customer.last_name}".strip()
        return StepResult(
            f"contract found (status {contract.status or 'not given'}, site {contract.site_id})",
            changes={
                "contract": contract.to_json(),
                "site_id": contract.site_id or None,
                "customer_name": name or None,
            },
        )

    # 2 -----------------------------------------------------------------------------------------
    def choose_plans(self, order: OrderView) -> StepResult:
        contract = order.require_contract()
        check_contract_fields(contract)
        plans = plan_services(contract, self.settings_now())
        listed = ", ".join(
            f"{p.label} -> {p.service_id}" + (f" x{p.quantity}" if p.quantity != 1 else "")
            for p in plans
        )
        return StepResult(
            f"services chosen: {listed}", changes={"plans": [p.to_json() for p in plans]}
        )

    # 3 -----------------------------------------------------------------------------------------
    def find_customer(self, order: OrderView) -> StepResult:
        contract = order.require_contract()
        site = contract.site_id
        if order.site_decision == SiteDecision.SAME_PERSON and order.former_customer_id:
            former = order.former_customer_id
            return _duplicate(
                former,
                f"customer #{former} at site {site} is this order's person, as a person decided",
                "site id (a person confirmed it is the same person)",
            )
        by_site = self.powercode.find_customer_by_site(site)
        if by_site is not None and _is_former_customer(order, by_site.customer_id):
            # A person decided this order is a new subscriber where that customer used to live.
            by_site = None
        if by_site is not None and _created_by_order(order, by_site.customer_id):
            return StepResult(
                f"customer #{by_site.customer_id} was created by this order before",
                next_step=Step.ADD_SERVICES,
            )
        if by_site is not None:
            if not is_same_person(contract, by_site):
                raise _site_question(contract, by_site)
            return _duplicate(
                by_site.customer_id,
                f"customer #{by_site.customer_id} already carries site id {site}",
                "site id",
            )
        match = self._customer_by_name(contract)
        if match is not None and _created_by_order(order, match.customer_id):
            return StepResult(
                f"customer #{match.customer_id} was created by this order before "
                "(found by name, city and street)",
                next_step=Step.ADD_SERVICES,
            )
        if match is not None:
            return _duplicate(
                match.customer_id,
                f"customer #{match.customer_id} has the same name, city and street",
                "name, city and street",
            )
        return StepResult("no existing PowerCode customer matches; a new one will be created")

    def _customer_by_name(self, contract: Contract) -> CustomerMatch | None:
        """The first customer PowerCode finds with the contract's name, city and street."""
        wanted_name = normalise_name(
            f"{contract.customer.first_name} {contract.customer.last_name}"
        )
        wanted_city = normalise_name(contract.service_address.city)
        wanted_street = normalise_street(contract.service_address.street)
        search = f"{contract.customer.first_name} {contract.customer.last_name}"
        for match in self.powercode.search_customers(search):
            if (
                normalise_name(match.name) == wanted_name
                and normalise_name(match.city) == wanted_city
                and normalise_street(match.street) == wanted_street
            ):
                return match
        return None

    # 4 -----------------------------------------------------------------------------------------
    def create_customer(self, order: OrderView) -> StepResult:
        contract = order.require_contract()
        if order.earlier_attempts:
            # An earlier attempt may have created the customer and lost the reply: look first.
            earlier = self._created_earlier(order, contract)
            if earlier is not None:
                customer_id, found_by = earlier
                return StepResult(
                    f"customer #{customer_id} found by {found_by}: created by an earlier "
                    "attempt whose reply was lost",
                    changes={"customer_id": customer_id, "customer_created": True},
                )
        new_customer = build_new_customer(order.order_ref, contract, self.settings)
        note = ""
        try:
            created = self.powercode.create_customer(new_customer)
        except GeocodeFailed:
            created = self.powercode.create_customer(replace(new_customer, geocode=False))
            note = " without geocoding (PowerCode could not geocode the address)"
        if created.warning:
            # The reply carried the new customer's id: it exists, whatever else PowerCode said.
            note += f"; PowerCode added: {created.warning}"
        return StepResult(
            f"customer #{created.customer_id} created{note}",
            changes={"customer_id": created.customer_id, "customer_created": True},
        )

    def _created_earlier(self, order: OrderView, contract: Contract) -> tuple[int, str] | None:
        """The customer an earlier create_customer attempt made, with how it was found, or None."""
        by_site = self.powercode.find_customer_by_site(contract.site_id)
        if by_site is not None and not _is_former_customer(order, by_site.customer_id):
            return by_site.customer_id, "site id"
        if order.site_decision == SiteDecision.NEW_CUSTOMER:
            # The site id may lead to the former customer only; the new account has our name.
            match = self._customer_by_name(contract)
            if match is not None and match.customer_id != order.former_customer_id:
                return match.customer_id, "name, city and street"
        return None

    # 5 -----------------------------------------------------------------------------------------
    def add_services(self, order: OrderView) -> StepResult:
        customer_id = order.require_customer()
        present = set(self.powercode.list_service_ids(customer_id))
        added: list[int] = []
        for plan in order.plans:
            if plan.service_id not in present:
                self.powercode.add_service(customer_id, plan.service_id, plan.quantity)
                present.add(plan.service_id)
                added.append(plan.service_id)
        wanted = [p.service_id for p in order.plans]
        already = [s for s in wanted if s not in added]
        detail = f"services added: {added or 'none'}"
        if already:
            detail += f"; already on the account: {already}"
        return StepResult(detail, changes={"services_added": wanted})

    # 6 -----------------------------------------------------------------------------------------
    def create_ticket(self, order: OrderView) -> StepResult:
        customer_id = order.require_customer()
        if order.ticket_id:
            # A person re-ran earlier steps of an order whose ticket exists: never a second one.
            return StepResult(
                f"ticket {order.ticket_id} was opened by this order before",
                changes={"ticket_id": order.ticket_id},
            )
        if order.maybe_applied:
            raise Hold(
                f"an earlier ticket request for customer #{customer_id} got no reply, so the ticket "
                "may exist: check the customer's tickets in PowerCode, then retry this step to "
                "open one, or mark the order resolved"
            )
        contract = order.require_contract()
        ticket_settings = self.settings.ticket
        try:
            rendered = self.tickets.render(ticket_variables(order, contract, customer_id))
        except TemplateProblem as problem:
            raise Hold(str(problem)) from None
        ticket_id = self.powercode.create_ticket(
            NewTicket(
                customer_id=customer_id,
                summary=rendered.summary,
                description_html=rendered.description_html,
                category=ticket_settings.category,
                ticket_type=ticket_settings.ticket_type,
                status=ticket_settings.status,
                responsible_user=ticket_settings.responsible_user,
                responsible_group=ticket_settings.responsible_group,
                customer_viewable=ticket_settings.customer_viewable,
            )
        )
        return StepResult(f"ticket {ticket_id} opened", changes={"ticket_id": ticket_id})

    # 7 -----------------------------------------------------------------------------------------
    def add_tags(self, order: OrderView) -> StepResult:
        customer_id = order.require_customer()
        wanted = list(self.settings.tag_ids)
        if not wanted:
            return StepResult("no tags configured", changes={"tags_added": []})
        present = set(self.powercode.list_tag_ids(customer_id))
        missing = [tag for tag in wanted if tag not in present]
        if missing:
            self.powercode.add_tags(customer_id, missing)
        return StepResult(
            f"tags added: {missing or 'none (all present)'}", changes={"tags_added": wanted}
        )

    # 8 -----------------------------------------------------------------------------------------
    def notify(self, order: OrderView) -> StepResult:
        # The e-mail itself goes through the outbox, which retries SMTP on its own schedule.
        return StepResult(
            "order complete; staff e-mail queued",
            final_state=OrderState.DONE,
            next_step=Step.FINISHED,
            notify=NotificationKind.SUCCESS,
        )


# Steps that make no outside call and read nothing: the worker runs them inside the commit that
# records the step before them, so they cost no transaction of their own. (choose_plans is not
# one: it reads the plan mapping in force, on a connection of its own.)
LOCAL_STEPS = frozenset({Step.NOTIFY})

_STEP_FUNCTIONS = {
    Step.LOOKUP_CONTRACT: Provisioner.lookup_contract,
    Step.CHOOSE_PLANS: Provisioner.choose_plans,
    Step.FIND_CUSTOMER: Provisioner.find_customer,
    Step.CREATE_CUSTOMER: Provisioner.create_customer,
    Step.ADD_SERVICES: Provisioner.add_services,
    Step.CREATE_TICKET: Provisioner.create_ticket,
    Step.ADD_TAGS: Provisioner.add_tags,
    Step.NOTIFY: Provisioner.notify,
}


def _duplicate(customer_id: int, detail: str, matched_by: str) -> StepResult:
    """The order ends: its person already has PowerCode customer `customer_id`; staff are told."""
    return StepResult(
        detail,
        changes={"customer_id": customer_id, "customer_created": False},
        final_state=OrderState.DUPLICATE,
        next_step=Step.FINISHED,
        notify=NotificationKind.DUPLICATE,
        notify_context={"customer_id": customer_id, "matched_by": matched_by},
    )


def _created_by_order(order: OrderView, customer_id: int) -> bool:
    return order.customer_created and order.customer_id == customer_id


def _is_former_customer(order: OrderView, customer_id: int) -> bool:
    """Whether a person decided the order is a new subscriber at this customer's site."""
    return (
        order.site_decision == SiteDecision.NEW_CUSTOMER and order.former_customer_id == customer_id
    )


def powercode_name(customer: PowerCodeCustomer) -> str:
    """The customer's name as PowerCode shows it: first and last name, else the company name."""
    name = f"{customer.first_name} {customer.last_name}".strip()
    return name or customer.company_name.strip() or "(no name)"


def is_same_person(contract: Contract, customer: PowerCodeCustomer) -> bool:
    """Whether the contract's "first last" is the customer's name or company name.

    Case, accents, punctuation and spacing are ignored.
    """
    wanted = normalise_name(f"{contract.customer.first_name} {contract.customer.last_name}")
    names = (f"{customer.first_name} {customer.last_name}", customer.company_name)
    return bool(wanted) and any(normalise_name(name) == wanted for name in names)


def _site_question(contract: Contract, former: PowerCodeCustomer) -> FormerCustomerAtSite:
    """The hold that asks a person whether the order's person is new at the site."""
    person = f"{contract.customer.first_name} {contract.customer.last_name}".strip()
    status = f"status {former.status}" if former.status else "status not given"
    number = f"#{former.customer_id}"
    choices = (
        f'decide "new customer at this site" (a new account for this order) or "same person" '
        f"(the order ends as a duplicate of {number})"
    )
    return FormerCustomerAtSite(
        f"the order is for {person}, but site {contract.site_id} already has PowerCode "
        f"customer {number} {powercode_name(former)} ({status}): {choices}",
        history=(
            f"site {contract.site_id} already has PowerCode customer {number} ({status}) under "
            f"another name: {choices}"
        ),
        former=former,
    )


def check_contract_fields(contract: Contract) -> None:
    """Hold the order when a field PowerCode needs is missing or unusable, or when the contract
    could not be taken as UTOPIA sent it (`Contract.problems`)."""
    if contract.problems:
        raise Hold(
            "the contract from UTOPIA cannot be used as it came: "
            + "; ".join(contract.problems)
            + ". Check it with UTOPIA, then correct and provision the order by hand"
        )
    required = {
        "first name": contract.customer.first_name,
        "last name": contract.customer.last_name,
        "site id": contract.site_id,
        "street": contract.service_address.street,
        "city": contract.service_address.city,
        "zip": contract.service_address.zip,
    }
    missing = [name for name, value in required.items() if not value]
    if missing:
        raise Hold(f"the contract lacks {', '.join(missing)}; correct the order by hand")
    if state_code(contract.service_address.state) is None:
        raise Hold(
            f"the service address state {contract.service_address.state!r} is not a US state"
        )


# What a held order's reason tells the reader to do about a plan mapping; the console shows
# readers who cannot edit the mapping their own choices instead (web/console/common.py).
MAP_THE_PLAN = "add one to the plan mapping, then retry"
ADD_A_PLAN_MAPPING = "add a plan mapping, then retry"


def unmapped_plans(contract: Contract, settings: ProvisioningSettings) -> list[str]:
    """The recurring (`mrc`) order items no plan mapping matches, by their UTOPIA text."""
    mapping = {plan_key(p.utopia_text) for p in settings.plans}
    return [
        item.description or "(no description)"
        for item in contract.items
        if plan_key(item.description) not in mapping and item.charge_type.casefold() != "nrc"
    ]


def plan_services(contract: Contract, settings: ProvisioningSettings) -> list[PlannedService]:
    """The PowerCode services for an order: each mapped plan, then the always-added services.

    Every recurring (`mrc`) item must map to a service; one-off items without a mapping (such as
    "Installation") are left out. An unmapped recurring item holds the order unless the operator
    chose the "skip" policy; an order with no mapped plan at all is always held.
    """
    mapping = {plan_key(p.utopia_text): p.service_id for p in settings.plans}
    planned: list[PlannedService] = []
    for item in contract.items:
        service_id = mapping.get(plan_key(item.description))
        if service_id is not None and all(p.service_id != service_id for p in planned):
            planned.append(PlannedService(service_id, item.description))
    unmapped = unmapped_plans(contract, settings)
    if unmapped and settings.unmapped_plan == "hold":
        raise Hold(
            f"plan {', '.join(repr(u) for u in unmapped)} has no PowerCode service mapping: "
            + MAP_THE_PLAN
        )
    if not planned:
        raise Hold("no order item maps to a PowerCode plan: " + ADD_A_PLAN_MAPPING)
    for service_id in settings.always_services:
        if all(p.service_id != service_id for p in planned):
            planned.append(
                PlannedService(service_id, "always added", settings.quantity_of(service_id))
            )
    return planned


def build_new_customer(
    order_ref: str, contract: Contract, settings: ProvisioningSettings
) -> NewCustomer:
    """The createCustomer fields for a contract, per the operator's defaults and portal policy."""
    address = contract.service_address
    person = contract.customer
    terms = contract.terms_agreed_at or "not given"
    notes = f"UTOPIA order {order_ref}; site id {contract.site_id}; terms agreed {terms}"
    code = state_code(address.state)
    if code is None:  # choose_plans checked this already; a person may have edited the contract
        raise Hold(f"the service address state {address.state!r} is not a US state")
    defaults = settings.customer
    return NewCustomer(
        first_name=person.first_name,
        last_name=person.last_name,
        email=person.email,
        street=street_with_unit(address.street, address.unit),
        city=address.city,
        state=code,
        zip=address.zip,
        phone_numbers=(person.phone,) if person.phone else (),
        notes=notes,
        ext_account_id=contract.site_id,
        portal_username=_portal_username(contract, settings),
        portal_password=_portal_password(settings),
        tax_zone_id=defaults.tax_zone_id,
        invoice_preference=defaults.invoice_preference,
        bill_day=defaults.bill_day,
        due_by_days=defaults.due_by_days,
        grace_period_days=defaults.grace_period_days,
    )


def _portal_username(contract: Contract, settings: ProvisioningSettings) -> str | None:
    policy = settings.portal.username
    if policy == "none":
        return None
    if policy == "email" and contract.customer.email:
        return contract.customer.email
    # No e-mail to log in with: the site id is unique and known to the customer's paperwork.
    return contract.site_id


def _portal_password(settings: ProvisioningSettings) -> str | None:
    policy = settings.portal
    if policy.password == "none":  # noqa: S105 - a policy name, not a password
        return None
    if policy.password == "shared" and policy.shared_password is not None:  # noqa: S105
        return policy.shared_password.reveal()
    # Never stored or logged: the customer sets their own through PowerCode's password reset.
    return secrets.token_urlsafe(18)


def ticket_variables(order: OrderView, contract: Contract, customer_id: int) -> dict[str, Any]:
    """The variables a ticket template may use."""
    address = contract.service_address
    labels = [p.label for p in order.plans if p.label != "always added"]
    return {
        "customer_name": f"{contract.customer.first_name} {contract.customer.last_name}".strip(),
        "first_name": contract.customer.first_name,
        "last_name": contract.customer.last_name,
        "email": contract.customer.email,
        "phone": format_phone(contract.customer.phone),
        "order_ref": order.order_ref,
        "site_id": contract.site_id,
        "plan": ", ".join(labels),
        "plans": labels,
        "address": street_with_unit(address.street, address.unit),
        "street": address.street,
        "unit": address.unit,
        "city": address.city,
        "state": state_code(address.state) or address.state,
        "zip": address.zip,
        "terms_agreed_at": contract.terms_agreed_at or "",
        "promo": contract.promo,
        "customer_id": customer_id,
    }


def format_phone(digits: str) -> str:
    """A ten-digit number as (801) 555-0142; anything else as given."""
    if len(digits) == 10 and digits.isdigit():
        return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    return digits
