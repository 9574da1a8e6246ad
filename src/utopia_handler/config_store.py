"""Settings people edit in the console, kept as versions in the database.

The plan mapping, the always-added services, the ticket template, the routing table of UTOPIA
messages and the message ticket's template may be saved in the console.
Each save is a new `config_versions` row (who, when); the newest row of a kind is in force, and a
rollback saves an old version again as the newest. The worker reads the current versions for each
order, so every process sees a change at once, without a restart. Kinds never saved in the console
come from the environment, `.env` or TOML file as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from utopia_handler import audit
from utopia_handler.clients.powercode import NOTHING_LEARNED, EmptyReply, LearnedReplies
from utopia_handler.clients.utopia import Contract, OrderItem, Person, PostalAddress
from utopia_handler.message_actions import ActionView
from utopia_handler.message_actions import ticket_variables as message_ticket_variables
from utopia_handler.provisioning import OrderView, PlannedService, ticket_variables
from utopia_handler.settings import PlanMapping, ProvisioningSettings, plan_key
from utopia_handler.settings.converters import read_speed_products
from utopia_handler.settings.routes import (
    RouteProblem,
    check_table,
    describe_route,
    make_route,
    route_to_mapping,
)
from utopia_handler.settings.schema import MessageRoute
from utopia_handler.store import queries
from utopia_handler.store.console_models import ConfigKind, ConfigVersion
from utopia_handler.store.db import Store
from utopia_handler.store.models import MessageActionKind, OrderState
from utopia_handler.tickets import RenderedTicket, TemplateProblem, TicketRenderer

MAX_SERVICE_ID = 2**31 - 1  # PowerCode ids are 32-bit database keys
MAX_TEMPLATE_CHARS = 100_000
_ID_RE = re.compile(r"[0-9]{1,10}")


class ConfigInvalid(Exception):
    """What a person entered cannot be saved; `problems` lists each reason in plain words."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


# Reading -----------------------------------------------------------------------------------------


def latest(session: Session, kind: ConfigKind) -> ConfigVersion | None:
    """The version of this kind in force, or None when it was never saved in the console."""
    return session.scalar(
        select(ConfigVersion)
        .where(ConfigVersion.kind == kind)
        .order_by(ConfigVersion.id.desc())
        .limit(1)
    )


def history(session: Session, kind: ConfigKind, limit: int = 50) -> list[ConfigVersion]:
    """Saved versions of one kind, newest first."""
    return list(
        session.scalars(
            select(ConfigVersion)
            .where(ConfigVersion.kind == kind)
            .order_by(ConfigVersion.id.desc())
            .limit(limit)
        )
    )


def version_number(session: Session, version: ConfigVersion) -> int:
    """The version's number among the versions of its kind (1, 2, 3...), as people see it.

    Stored ids are shared by every kind (the template's third version may be id 7).
    """
    return int(
        session.scalar(
            select(func.count())
            .select_from(ConfigVersion)
            .where(ConfigVersion.kind == version.kind, ConfigVersion.id <= version.id)
        )
        or 0
    )


def numbered_history(
    session: Session, kind: ConfigKind, limit: int = 50
) -> list[tuple[int, ConfigVersion]]:
    """Saved versions of one kind, newest first, each with its number within the kind."""
    versions = history(session, kind, limit)
    if not versions:
        return []
    newest = version_number(session, versions[0])
    return [(newest - index, version) for index, version in enumerate(versions)]


def _plans(value: Any) -> tuple[PlanMapping, ...]:
    return tuple(PlanMapping(str(row["utopia_text"]), int(row["service_id"])) for row in value)


def _always_services(value: Any) -> tuple[tuple[int, int], ...]:
    # An id alone (every version before quantities existed), or {"service_id", "quantity"}.
    return tuple(
        (int(row["service_id"]), int(row.get("quantity") or 1))
        if isinstance(row, dict)
        else (int(row), 1)
        for row in value
    )


def current_provisioning(session: Session, base: ProvisioningSettings) -> ProvisioningSettings:
    """The provisioning settings in force: console-saved versions over the file/env ones."""
    plans = latest(session, ConfigKind.PLANS)
    always = latest(session, ConfigKind.ALWAYS_SERVICES)
    settings = replace(base, plans=_plans(plans.value) if plans is not None else base.plans)
    if always is None:
        return settings
    services = _always_services(always.value)
    return replace(
        settings,
        always_services=tuple(service_id for service_id, _ in services),
        service_quantities=tuple((s, q) for s, q in services if q != 1),
    )


def describe_always_services(settings: ProvisioningSettings) -> str:
    """The always-added services as a person types them: "172, 180x3"."""
    return _services_text((s, settings.quantity_of(s)) for s in settings.always_services)


def _services_text(services: Iterable[tuple[int, int]]) -> str:
    return ", ".join(str(s) if q == 1 else f"{s}x{q}" for s, q in services)


def current_routes(
    session: Session, base: Sequence[MessageRoute]
) -> tuple[tuple[MessageRoute, ...], ConfigVersion | None]:
    """The routing table in force (the console's newest version, else the file's) and its version."""
    version = latest(session, ConfigKind.MESSAGE_ROUTES)
    if version is None:
        return tuple(base), None
    return queries.stored_routes(version.value), version


def stored_ticket_template(session: Session) -> ConfigVersion | None:
    """The ticket template version saved in the console and in force, if any (None: the file).

    A version without a source ({"source": null}) puts the template file back in force.
    """
    version = latest(session, ConfigKind.TICKET_TEMPLATE)
    if version is None or not isinstance(version.value, dict) or not version.value.get("source"):
        return None
    return version


def learned_replies(session: Session) -> LearnedReplies:
    """What the probe last learned of PowerCode's "nothing there" replies (nothing: never run)."""
    version = latest(session, ConfigKind.POWERCODE_REPLIES)
    if version is None or not isinstance(version.value, dict):
        return NOTHING_LEARNED
    return LearnedReplies(
        customer_not_found=EmptyReply.from_json(version.value.get("customer_not_found")),
        no_services=EmptyReply.from_json(version.value.get("no_services")),
    )


def save_learned_replies(
    session: Session, learned: LearnedReplies, actor: str, now: datetime
) -> ConfigVersion:
    """Record what the probe learned; a reply it could not learn this time keeps the last one."""
    before = learned_replies(session)
    kept = LearnedReplies(
        customer_not_found=learned.customer_not_found or before.customer_not_found,
        no_services=learned.no_services or before.no_services,
    )
    value = {
        "customer_not_found": kept.customer_not_found.to_json()
        if kept.customer_not_found
        else None,
        "no_services": kept.no_services.to_json() if kept.no_services else None,
    }
    return _save(
        session, ConfigKind.POWERCODE_REPLIES, value, actor, now, None, "PowerCode replies probed"
    )


class StoredSettings:
    """Reads the current console-saved settings for the worker, one short read each time."""

    def __init__(self, store: Store, base: ProvisioningSettings) -> None:
        self._store = store
        self._base = base

    def provisioning(self) -> ProvisioningSettings:
        with self._store.read() as session:
            return current_provisioning(session, self._base)

    def message_ticket_template(self) -> tuple[str, str] | None:
        """(message ticket template source, where it came from), or None for the built-in one."""
        with self._store.read() as session:
            version = latest(session, ConfigKind.MESSAGE_TICKET_TEMPLATE)
        if version is None:
            return None
        return str(version.value["source"]), f"version {version.id} saved in the console"

    def learned_replies(self) -> LearnedReplies:
        with self._store.read() as session:
            return learned_replies(session)

    def ticket_template(self) -> tuple[str, str] | None:
        """(template source, where it came from) or None to use the template file."""
        with self._store.read() as session:
            version = stored_ticket_template(session)
            if version is None:
                return None
            number = version_number(session, version)
        return str(version.value["source"]), f"version {number} saved in the console"


# Validating --------------------------------------------------------------------------------------


def parse_service_id(text: str, label: str, problems: list[str]) -> int | None:
    """A PowerCode service id from a form field, or None with the problem appended."""
    value = text.strip()
    if not _ID_RE.fullmatch(value) or not 1 <= int(value) <= MAX_SERVICE_ID:
        problems.append(
            f"{label}: the service id must be a whole number from 1 to {MAX_SERVICE_ID}"
        )
        return None
    return int(value)


def parse_plan_rows(rows: Sequence[tuple[str, str]]) -> tuple[PlanMapping, ...]:
    """Plan mappings from (UTOPIA plan text, service id) form rows; rows left blank are dropped."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    plans: list[PlanMapping] = []
    for number, (raw_text, raw_id) in enumerate(rows, start=1):
        text = " ".join(raw_text.split())
        if not text and not raw_id.strip():
            continue
        label = f"row {number}" + (f" ({text})" if text else "")
        if not text:
            problems.append(f"{label}: the UTOPIA plan text is empty")
            continue
        if len(text) > 200:
            problems.append(f"{label}: the plan text is longer than 200 characters")
            continue
        key = plan_key(text)
        if key in seen:
            problems.append(
                f"{label}: the same plan as {seen[key]!r} (case and spaces are ignored)"
            )
            continue
        seen[key] = text
        service_id = parse_service_id(raw_id, label, problems)
        if service_id is not None:
            plans.append(PlanMapping(text, service_id))
    if not plans and not problems:
        problems.append("map at least one UTOPIA plan, or every order would wait for a person")
    if problems:
        raise ConfigInvalid(problems)
    return tuple(plans)


def parse_always_services(text: str) -> tuple[tuple[int, int], ...]:
    """Always-added services from comma- or space-separated text (may be empty).

    Each is a service id, or `IDxN` for a service priced per unit that each order gets N of.
    """
    problems: list[str] = []
    services: list[tuple[int, int]] = []
    for part in (p for p in re.split(r"[\s,]+", text) if p):
        raw_id, times, raw_quantity = part.casefold().replace("\u00d7", "x").partition("x")
        service_id = parse_service_id(raw_id, repr(part), problems)
        quantity = 1
        if times:
            if not raw_quantity.isdigit() or not 1 <= int(raw_quantity) <= 1000:
                problems.append(f"{part!r}: the quantity after x must be a number from 1 to 1000")
                continue
            quantity = int(raw_quantity)
        if service_id is None:
            continue
        if any(service_id == known for known, _ in services):
            problems.append(f"service {service_id} is listed twice")
        else:
            services.append((service_id, quantity))
    if problems:
        raise ConfigInvalid(problems)
    return tuple(services)


def parse_speed_products(text: str) -> tuple[tuple[int, str], ...]:
    """The speed change's mapping from `164=1000, 165=2000` text (may be empty)."""
    pairs, problems = read_speed_products(text)
    if problems:
        raise ConfigInvalid(problems)
    return pairs


def current_speed_products(session: Session, base: tuple[tuple[int, str], ...]) -> dict[int, str]:
    """PowerCode service id -> UTOPIA product id: the console's version in force, else `base`."""
    version = latest(session, ConfigKind.SPEED_PRODUCTS)
    if version is None:
        return dict(base)
    return {int(row["service_id"]): str(row["product"]) for row in version.value}


def describe_speed_products(mapping: dict[int, str]) -> str:
    """The mapping as the text the console's form takes."""
    return ", ".join(f"{service_id}={product}" for service_id, product in mapping.items())


def save_speed_products(
    session: Session, pairs: Sequence[tuple[int, str]], actor: str, now: datetime
) -> ConfigVersion:
    """Put a new speed change mapping (PowerCode service -> UTOPIA product) in force."""
    value = [{"service_id": service_id, "product": product} for service_id, product in pairs]
    listed = ", ".join(f"{service_id} -> {product!r}" for service_id, product in pairs) or "none"
    return _save(session, ConfigKind.SPEED_PRODUCTS, value, actor, now, None, listed)


def parse_route_rows(rows: Sequence[tuple[str, str, str]]) -> tuple[MessageRoute, ...]:
    """A routing table from (match|pattern, text, action) form rows; rows left blank are dropped."""
    problems: list[str] = []
    routes: list[MessageRoute] = []
    for number, (how, raw_text, action) in enumerate(rows, start=1):
        text = raw_text.strip()
        if not text:
            continue
        label = f"row {number} ({text[:60]})"
        if how not in ("match", "pattern"):
            problems.append(f"{label}: say whether the text is the message or a pattern")
            continue
        try:
            routes.append(
                make_route(
                    action, text if how == "match" else None, text if how == "pattern" else None
                )
            )
        except RouteProblem as problem:
            problems.append(f"{label}: {problem.problem}; {problem.fix}")
    if not problems:
        problems = check_table(routes)
    if problems:
        raise ConfigInvalid(problems)
    return tuple(routes)


def sample_contract() -> Contract:
    """A made-up order for template previews: never a real customer's data."""
    service = PostalAddress(
        street="123 N Example St", unit="2", city="Orem", state="UT", zip="84057"
    )
    return Contract(
        order_ref="UIA000000-000000",
        status="Signed",
        site_id="100001",
        customer=Person(
            first_name="Jordan",
            last_name="Sample",
            email="jordan.sample@example.org",
            phone="8015550100",
        ),
        service_address=service,
        billing_address=service,
        items=(OrderItem("1 Gbps", "mrc", "1", "1"),),
        terms_agreed_at="2026-11-01 10:00:00",
        contract_download="",
        promo="",
        order_source="sample",
    )


def sample_ticket_variables() -> dict[str, Any]:
    """The variables of the sample order, as the ticket step would pass them."""
    contract = sample_contract()
    view = OrderView(
        order_ref=contract.order_ref,
        contract=contract,
        plans=(PlannedService(164, "1 Gbps"), PlannedService(172, "always added")),
    )
    return ticket_variables(view, contract, customer_id=10001)


def sample_message_ticket_variables() -> dict[str, Any]:
    """The variables of a made-up message about the sample order, as the ticket action passes them."""
    contract = sample_contract()
    view = ActionView(
        action_id=0,
        order_id=0,
        kind=MessageActionKind.TICKET,
        msg="Project Install Scheduled",
        event="Project Update",
        received_at=datetime(2026, 11, 20, 15, 30),
        order_ref=contract.order_ref,
        order_state=OrderState.DONE,
        customer_id=10001,
        customer_name="Jordan Sample",
        site_id=contract.site_id,
        contract=contract,
        attempt_id=0,
        attempt_number=1,
        maybe_applied=False,
    )
    return message_ticket_variables(view, 10001)


def preview_ticket(
    renderer: TicketRenderer, source: str, variables: dict[str, Any] | None = None
) -> RenderedTicket:
    """The ticket the sample order (or `variables`) would get with this template; ConfigInvalid
    if it fails."""
    if not source.strip():
        raise ConfigInvalid(["the template is empty"])
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ConfigInvalid([f"the template is longer than {MAX_TEMPLATE_CHARS} characters"])
    try:
        return renderer.render(
            sample_ticket_variables() if variables is None else variables, source=source
        )
    except TemplateProblem as problem:
        raise ConfigInvalid([str(problem)]) from None


# Saving ------------------------------------------------------------------------------------------


def _save(
    session: Session,
    kind: ConfigKind,
    value: Any,
    actor: str,
    now: datetime,
    note: str | None,
    detail: str,
) -> ConfigVersion:
    version = ConfigVersion(kind=kind, value=value, created_at=now, created_by=actor, note=note)
    session.add(version)
    session.flush()
    # Numbered within its kind, as the console shows it: ids are shared by every kind.
    number = version_number(session, version)
    audit.record(session, actor, f"save_{kind.value}", now, detail=f"version {number}: {detail}")
    return version


def save_plans(
    session: Session, plans: Sequence[PlanMapping], actor: str, now: datetime
) -> ConfigVersion:
    """Put a new plan mapping in force."""
    value = [{"utopia_text": p.utopia_text, "service_id": p.service_id} for p in plans]
    listed = ", ".join(f"{p.utopia_text!r} -> {p.service_id}" for p in plans)
    return _save(session, ConfigKind.PLANS, value, actor, now, None, listed)


def save_always_services(
    session: Session, services: Sequence[tuple[int, int]], actor: str, now: datetime
) -> ConfigVersion:
    """Put a new list of always-added services, (id, quantity) each, in force."""
    value: list[Any] = [s if q == 1 else {"service_id": s, "quantity": q} for s, q in services]
    listed = _services_text(services) or "none"
    return _save(session, ConfigKind.ALWAYS_SERVICES, value, actor, now, None, listed)


def save_ticket_template(
    session: Session,
    renderer: TicketRenderer,
    source: str,
    actor: str,
    now: datetime,
    *,
    note: str | None = None,
) -> ConfigVersion:
    """Put a new ticket template in force, after checking it renders the sample order."""
    preview_ticket(renderer, source)
    return _save(
        session,
        ConfigKind.TICKET_TEMPLATE,
        {"source": source},
        actor,
        now,
        note,
        f"{len(source)} characters" + (f" ({note})" if note else ""),
    )


def save_message_ticket_template(
    session: Session, renderer: TicketRenderer, source: str, actor: str, now: datetime
) -> ConfigVersion:
    """Put a new message ticket template in force, after checking it renders the sample message."""
    preview_ticket(renderer, source, sample_message_ticket_variables())
    return _save(
        session,
        ConfigKind.MESSAGE_TICKET_TEMPLATE,
        {"source": source},
        actor,
        now,
        None,
        f"{len(source)} characters",
    )


def save_routes(
    session: Session, routes: Sequence[MessageRoute], actor: str, now: datetime
) -> ConfigVersion:
    """Put a new routing table of UTOPIA messages in force (checked again: it may come from
    anywhere)."""
    problems = check_table(routes)
    for route in routes:
        try:
            make_route(route.action, route.match, route.pattern)
        except RouteProblem as problem:
            problems.append(f"{describe_route(route)}: {problem}")
    if problems:
        raise ConfigInvalid(problems)
    value = [route_to_mapping(route) for route in routes]
    listed = ", ".join(describe_route(route) for route in routes) or "no routes"
    return _save(session, ConfigKind.MESSAGE_ROUTES, value, actor, now, None, listed[:1000])


def use_file_template(session: Session, actor: str, now: datetime) -> ConfigVersion:
    """Put the ticket template file back in force, as a new version without a source."""
    return _save(
        session,
        ConfigKind.TICKET_TEMPLATE,
        {"source": None},
        actor,
        now,
        "the template file again",
        "the template file again",
    )


def roll_back(session: Session, version_id: int, actor: str, now: datetime) -> ConfigVersion:
    """Put an older version in force again, as a new version (history is never rewritten)."""
    old = session.get(ConfigVersion, version_id)
    if old is None:
        raise ConfigInvalid([f"there is no saved version {version_id}"])
    number = version_number(session, old)
    return _save(
        session,
        old.kind,
        old.value,
        actor,
        now,
        f"rollback to version {number}",
        f"rollback to version {number}",
    )
