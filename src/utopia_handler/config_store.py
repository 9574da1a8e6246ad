"""Settings people edit in the console, kept as versions in the database.

The plan mapping, the always-added services and the ticket template may be saved in the console.
Each save is a new `config_versions` row (who, when); the newest row of a kind is in force, and a
rollback saves an old version again as the newest. The worker reads the current versions for each
order, so every process sees a change at once, without a restart. Kinds never saved in the console
come from the environment, `.env` or TOML file as before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from utopia_handler import audit
from utopia_handler.clients.utopia import Contract, OrderItem, Person, PostalAddress
from utopia_handler.provisioning import OrderView, PlannedService, ticket_variables
from utopia_handler.settings import PlanMapping, ProvisioningSettings
from utopia_handler.store.console_models import ConfigKind, ConfigVersion
from utopia_handler.store.db import Store
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


def _plans(value: Any) -> tuple[PlanMapping, ...]:
    return tuple(PlanMapping(str(row["utopia_text"]), int(row["service_id"])) for row in value)


def current_provisioning(session: Session, base: ProvisioningSettings) -> ProvisioningSettings:
    """The provisioning settings in force: console-saved versions over the file/env ones."""
    plans = latest(session, ConfigKind.PLANS)
    always = latest(session, ConfigKind.ALWAYS_SERVICES)
    return replace(
        base,
        plans=_plans(plans.value) if plans is not None else base.plans,
        always_services=(
            tuple(int(i) for i in always.value) if always is not None else base.always_services
        ),
    )


def stored_ticket_template(session: Session) -> ConfigVersion | None:
    """The ticket template version saved in the console, if any."""
    return latest(session, ConfigKind.TICKET_TEMPLATE)


class StoredSettings:
    """Reads the current console-saved settings for the worker, one short read each time."""

    def __init__(self, store: Store, base: ProvisioningSettings) -> None:
        self._store = store
        self._base = base

    def provisioning(self) -> ProvisioningSettings:
        with self._store.read() as session:
            return current_provisioning(session, self._base)

    def ticket_template(self) -> tuple[str, str] | None:
        """(template source, where it came from) or None to use the template file."""
        with self._store.read() as session:
            version = stored_ticket_template(session)
        if version is None:
            return None
        return str(version.value["source"]), f"version {version.id} saved in the console"


# Validating --------------------------------------------------------------------------------------


def _plan_key(text: str) -> str:
    return "".join(text.split()).casefold()


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
        key = _plan_key(text)
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


def parse_service_ids(text: str) -> tuple[int, ...]:
    """Always-added service ids from comma- or space-separated text (may be empty)."""
    problems: list[str] = []
    ids: list[int] = []
    for part in (p for p in re.split(r"[\s,]+", text) if p):
        service_id = parse_service_id(part, repr(part), problems)
        if service_id is not None:
            if service_id in ids:
                problems.append(f"service {service_id} is listed twice")
            else:
                ids.append(service_id)
    if problems:
        raise ConfigInvalid(problems)
    return tuple(ids)


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


def preview_ticket(renderer: TicketRenderer, source: str) -> RenderedTicket:
    """The ticket the sample order would get with this template; ConfigInvalid if it fails."""
    if not source.strip():
        raise ConfigInvalid(["the template is empty"])
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ConfigInvalid([f"the template is longer than {MAX_TEMPLATE_CHARS} characters"])
    try:
        return renderer.render(sample_ticket_variables(), source=source)
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
    audit.record(
        session, actor, f"save_{kind.value}", now, detail=f"version {version.id}: {detail}"
    )
    return version


def save_plans(
    session: Session, plans: Sequence[PlanMapping], actor: str, now: datetime
) -> ConfigVersion:
    """Put a new plan mapping in force."""
    value = [{"utopia_text": p.utopia_text, "service_id": p.service_id} for p in plans]
    listed = ", ".join(f"{p.utopia_text!r} -> {p.service_id}" for p in plans)
    return _save(session, ConfigKind.PLANS, value, actor, now, None, listed)


def save_always_services(
    session: Session, service_ids: Sequence[int], actor: str, now: datetime
) -> ConfigVersion:
    """Put a new list of always-added services in force."""
    listed = ", ".join(str(i) for i in service_ids) or "none"
    return _save(session, ConfigKind.ALWAYS_SERVICES, list(service_ids), actor, now, None, listed)


def save_ticket_template(
    session: Session, renderer: TicketRenderer, source: str, actor: str, now: datetime
) -> ConfigVersion:
    """Put a new ticket template in force, after checking it renders the sample order."""
    preview_ticket(renderer, source)
    return _save(
        session,
        ConfigKind.TICKET_TEMPLATE,
        {"source": source},
        actor,
        now,
        None,
        f"{len(source)} characters",
    )


def roll_back(session: Session, version_id: int, actor: str, now: datetime) -> ConfigVersion:
    """Put an older version in force again, as a new version (history is never rewritten)."""
    old = session.get(ConfigVersion, version_id)
    if old is None:
        raise ConfigInvalid([f"there is no saved version {version_id}"])
    return _save(
        session,
        old.kind,
        old.value,
        actor,
        now,
        f"rollback to version {old.id}",
        f"rollback to version {old.id}",
    )
