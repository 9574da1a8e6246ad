"""The old handler's `.env`, read by this handler's loader and compared with what it means here.

For `utopia-handler import-old`: every value is checked by the same converter the loader uses,
then the file is loaded as a whole (leniently, so one gap does not hide the others), and the
result is set against what the old handler did with the same variables. Nothing here shows a
secret's value: messages name variables, and non-secret values only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from utopia_handler.settings.checks import runtime_problems
from utopia_handler.settings.converters import SettingsError, mask_credentials, show
from utopia_handler.settings.loading import load_settings
from utopia_handler.settings.schema import CustomerDefaults, Settings
from utopia_handler.settings.sources import read_dotenv
from utopia_handler.settings.table import CONFIG_VARIABLE, VARIABLES

# What the old handler sent for every service, and what it gave a plan text it did not know.
OLD_SERVICE_QUANTITY = 5
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_WHY_UNUSED = {
    "FLASK_DEBUG": "debug mode is never on here",
    "FLASK_ENV": "debug mode is never on here",
}


@dataclass(frozen=True)
class OldEnvReview:
    """What the old `.env` holds and what each part means here.

    `values` are the raw texts, secrets included: use them, never print them.
    """

    path: Path
    values: Mapping[str, str]
    settings: Settings | None  # None when the loader refuses the file as a whole
    refused: tuple[str, ...]  # values this handler's loader refuses, one line each
    missing: tuple[str, ...]  # what serving needs that the file does not give
    changed: tuple[str, ...]  # variables (or their absence) that mean something else here
    unused: tuple[str, ...]  # variables this handler does not read, with why where known


def review_old_env(path: Path) -> OldEnvReview:
    """Check the old handler's `.env` with this handler's loader; say what changes meaning."""
    values = read_dotenv(path, {})
    known = {variable.name: variable for variable in VARIABLES}
    refused: list[str] = []
    usable: dict[str, str] = {}
    for name, raw in values.items():
        variable = known.get(name)
        if variable is None or name == CONFIG_VARIABLE:
            continue
        if not raw.strip() and not variable.secret:
            continue  # blank means "the default", as the loader reads it
        try:
            variable.convert(f"{name} (in {path.name})", raw)
        except SettingsError as problem:
            refused.append(str(problem))
            continue
        usable[name] = raw
    try:
        # The values alone: neither this process's environment nor a .env in the working folder.
        settings: Settings | None = load_settings(
            usable, dotenv_path=Path(os.devnull), require_runtime=False
        )
    except SettingsError as problem:
        refused.append(str(problem))
        settings = None
    if settings is None:
        missing = ["(the loader stopped at the value above; fix it and run again for the rest)"]
        changed: list[str] = []
    else:
        missing = runtime_problems(settings) + _worth_adding(usable)
        changed = _changed_meanings(usable, settings)
    unused = [
        f"{name} ({_WHY_UNUSED[name]})" if name in _WHY_UNUSED else name
        for name in values
        if name not in known or name == CONFIG_VARIABLE
    ]
    return OldEnvReview(
        path=path,
        values=values,
        settings=settings,
        refused=tuple(refused),
        missing=tuple(missing),
        changed=tuple(changed),
        unused=tuple(unused),
    )


def _worth_adding(values: Mapping[str, str]) -> list[str]:
    lines = []
    if "TRUSTED_PROXIES" not in values:
        lines.append(
            "TRUSTED_PROXIES: not set; behind the shipped nginx set it to 127.0.0.1, so the "
            "throttles see each sender and the console knows a request came over https"
        )
    if "DATA_DIR" not in values and "DATABASE_URL" not in values:
        lines.append(
            "DATA_DIR: not set; the database and api_class.log go to ./data of the working "
            "folder (the systemd units use /var/lib/utopia-handler)"
        )
    return lines


def _changed_meanings(values: Mapping[str, str], settings: Settings) -> list[str]:
    """One line per variable, or absent variable, whose effect differs from the old handler's."""
    lines: list[str] = []
    provisioning = settings.provisioning
    web_url = settings.powercode.web_url
    if "PC_URL" in values and web_url != values["PC_URL"].strip().rstrip("/"):
        lines.append(
            f"PC_URL {show(mask_credentials(values['PC_URL'].strip()))} names no port: it means "
            f"{web_url} (PowerCode's port 444, which the old handler added itself) for both APIs "
            "and the customer link; write the port if your PowerCode answers on another"
        )
    if provisioning.plans:
        mapped = ", ".join(f"{p.utopia_text!r} -> {p.service_id}" for p in provisioning.plans)
        fallback = next(
            (p.service_id for p in provisioning.plans if p.utopia_text == "250 Mbps"), None
        )
        old = f" (service {fallback})" if fallback is not None else ""
        lines.append(
            f"plans: only {mapped} are mapped; an order with any other plan text now waits for a "
            f"person, where the old handler silently gave it the 250 Mbps plan{old}; map every "
            "plan UTOPIA sends in [plans] of the TOML file (UTOPIA_HANDLER_CONFIG)"
        )
    lines.append(
        f"services: each is added with quantity 1; the old handler sent {OLD_SERVICE_QUANTITY} "
        "for every service, which PowerCode refuses for Internet plans"
    )
    for fee in provisioning.always_services:
        if provisioning.quantity_of(fee) == 1:
            lines.append(
                f"SERVICE_PLAN_BOND_FEE_ID={fee}: added once per order (was quantity "
                f"{OLD_SERVICE_QUANTITY}); if the fee is priced per unit and {OLD_SERVICE_QUANTITY} "
                f"was meant, set SERVICE_PLAN_BOND_FEE_QUANTITY={OLD_SERVICE_QUANTITY}"
            )
    ticket = provisioning.ticket
    lines.append(
        "ticket fields: the old .env had none; this handler sends category "
        f"{ticket.category}, ticket type {ticket.ticket_type}, status {ticket.status}, "
        f"responsible user {ticket.responsible_user!r}, group {ticket.responsible_group}, "
        f"customer-viewable {'yes' if ticket.customer_viewable else 'no'} (the original "
        "handler's built-in values) and the summary "
        f"{ticket.summary!r}; if your copy of the old handler was changed, set them in "
        "[ticket] of the TOML file"
    )
    customer = CustomerDefaults()
    lines.append(
        f"customer fields: createCustomer now also sends tax zone {customer.tax_zone_id} and "
        f"due-by days {customer.due_by_days} ([customer] of the TOML file); invoices by "
        f"{customer.invoice_preference.lower()}, bill day {customer.bill_day!r} and "
        f"{customer.grace_period_days} grace days as before"
    )
    if provisioning.portal.shared_password is None:
        lines.append(
            "CUSTOMER_PORTAL_PASSWORD: not set, so each new customer gets a random portal "
            "password, never stored, instead of one shared password"
        )
    if not settings.powercode.verify_ssl:
        lines.append(
            "PC_VERIFY_SSL=false: PowerCode's certificate is still not checked, and every start "
            "now warns about it; set PC_CA_BUNDLE to its certificate instead "
            "(docs/operations.md, 1.3)"
        )
    host = settings.web.host
    if "FLASK_HOST" in values and host not in _LOOPBACK:
        lines.append(
            f"FLASK_HOST={host}: the handler listens on every address as before, but callbacks "
            "now need UTOPIA_CALLBACK_TOKEN; behind the shipped nginx use 127.0.0.1 and register "
            "https://YOUR.HOST/api-callback?token=... at UTOPIA (the old "
            f"http://server:{settings.web.port}/api-callback stops working)"
        )
    if "TICKET_TEMPLATE_DIR" in values or "TICKET_TEMPLATE_FILE" in values:
        lines.append(
            "TICKET_TEMPLATE_DIR/TICKET_TEMPLATE_FILE: the template this command imports is kept "
            "in the database and used before any file; a relative folder is now read from the "
            "new service's working folder"
        )
    if "ADMIN_USER" in values:
        lines.append(
            "ADMIN_USER: creates the first admin only while the database has no user; this "
            "command imports it with the old users, so leave ADMIN_USER, ADMIN_PASS_HASH and "
            "ADMIN_PASS out of the new settings"
        )
    return lines
