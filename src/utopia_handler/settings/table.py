"""The one table of settings: every variable and TOML key, how it is read and what it fills.

Reading (`loading.py`), the one-line messages (each entry's converter and name), check-config's
listing (`describe_settings`) and the README's settings table (`readme_table`) all come from
here. `python -m utopia_handler.settings` prints the README table;
`python -m utopia_handler.settings README.md` rewrites it in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_type_hints

from utopia_handler.settings.converters import (
    MASK,
    Converter,
    choice,
    choice_list,
    integer,
    mask_credentials,
    number,
    to_addresses,
    to_always_services,
    to_base_url,
    to_bcrypt_hash,
    to_bool,
    to_database_url,
    to_days,
    to_filename,
    to_host,
    to_hours_as_seconds,
    to_id,
    to_ids,
    to_networks,
    to_nonempty_text,
    to_path,
    to_powercode_url,
    to_readable_file,
    to_relative_path,
    to_secret,
    to_sender,
    to_signing_secrets,
    to_speed_products,
    to_template,
    to_text,
    to_url,
    to_user_name,
    token,
)
from utopia_handler.settings.routes import describe_route, to_message_routes
from utopia_handler.settings.schema import (
    InvoicePreference,
    MailSecurity,
    MessageRoute,
    PlanMapping,
    PortalPassword,
    PortalUsername,
    Secret,
    Settings,
    UnmappedPlan,
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
NETWORKS = ("UTOPIA", "BOUNTIFULFIBER", "IDAHOFALLS", "BOZEMAN")
CONFIG_VARIABLE = "UTOPIA_HANDLER_CONFIG"
NOT_SET = "(not set)"


@dataclass(frozen=True)
class Variable:
    """One environment variable (also a top-level TOML key): how it is read and what it fills."""

    name: str
    fills: str  # the dotted Settings field it fills, as check-config lists it; "" for none
    convert: Converter  # (label, raw) -> typed value, or SettingsError naming the label
    help: str  # the README's "meaning" column
    secret: bool = False  # never shown; a blank value is an error rather than "use the default"
    # Combined with the TOML tables by loading.py (an old variable beside a newer table) rather
    # than simply replacing the field's value.
    combines: bool = False
    default: str = ""  # the README's default where the field's own default is not what applies
    shown: Callable[[str], str] | None = None  # check-config's display, where it needs masking
    in_toml: bool = True  # may be a top-level key of the TOML file too


@dataclass(frozen=True)
class TableKey:
    """One key of a TOML table ([provisioning], [ticket], [customer], [portal])."""

    table: str
    key: str
    fills: str
    convert: Converter
    combines: bool = False
    relative_to_file: bool = False  # a relative path is taken next to the TOML file


@dataclass(frozen=True)
class ArrayTable:
    """One TOML array of tables (`[[messages]]`): read as a whole into one field."""

    name: str
    fills: str
    convert: Converter  # (label, list of tables) -> typed value


def plan(text: str) -> Callable[[str, object], PlanMapping]:
    """A converter of a service id to the mapping of the plan `text` (the old handler's ids)."""

    def convert(label: str, raw: object) -> PlanMapping:
        return PlanMapping(text, to_id(label, raw))

    return convert


def _one_of(words: tuple[str, ...]) -> str:
    quoted = [f"`{word}`" for word in words]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


_RETRY = "the worker's retries"
_CALLBACK = 'see "Hardening the callback"'

VARIABLES: tuple[Variable, ...] = (
    # The order is the order of reading (so, of the first error found) and of the README.
    Variable(
        CONFIG_VARIABLE,
        "",
        to_path,
        "the TOML file (or `--config`)",
        in_toml=False,
    ),
    # Storage and logs
    Variable(
        "DATA_DIR",
        "data_dir",
        to_path,
        "the folder of the database and the log",
        default="`./data`",
    ),
    Variable(
        "DATABASE_URL",
        "database_url",
        to_database_url,
        "SQLite or PostgreSQL (`postgresql://user@host/dbname`)",
        default="`sqlite:///<DATA_DIR>/utopia-handler.db`",
        shown=mask_credentials,
    ),
    Variable(
        "LOG_FILE",
        "log_file",
        to_path,
        "the log (rotating)",
        default="`<DATA_DIR>/api_class.log`",
    ),
    Variable("LOG_LEVEL", "log_level", choice(LOG_LEVELS), _one_of(LOG_LEVELS)),
    Variable(
        "RETENTION_DAYS",
        "retention_days",
        integer(1, 36500),
        "how long finished orders keep their raw payloads (personal data)",
    ),
    # The web side
    Variable(
        "UTOPIA_CALLBACK_TOKEN",
        "web.callback_token",
        token(url_safe=True),
        "required (16+ characters) unless `CALLBACK_SIGNING_SECRETS` is set or "
        "`ALLOW_UNAUTHENTICATED_CALLBACKS=true` (which warns at start)",
        secret=True,
    ),
    Variable("FLASK_HOST", "web.host", to_host, "where the service listens"),
    Variable("FLASK_PORT", "web.port", integer(1, 65535), "the port it listens on"),
    Variable(
        "SECRET_KEY",
        "web.secret_key",
        to_secret,
        "required; 16+ characters",
        secret=True,
    ),
    Variable(
        "ALLOW_UNAUTHENTICATED_CALLBACKS",
        "web.allow_unauthenticated_callbacks",
        to_bool,
        "accept callbacks that carry neither token nor signature",
    ),
    Variable(
        "MAX_CALLBACK_BYTES",
        "web.max_body_bytes",
        integer(1024, 16 * 1024 * 1024),
        "the largest request body accepted (413 above it)",
    ),
    Variable("WEB_THREADS", "web.threads", integer(1, 256), "threads serving HTTP per process"),
    Variable(
        "WEB_WORKERS",
        "web.workers",
        integer(1, 64),
        "gunicorn processes of `utopia-handler web`",
    ),
    # Hardening the callback
    Variable(
        "CALLBACK_SIGNING_SECRETS",
        "web.guard.signing_secrets",
        to_signing_secrets,
        _CALLBACK,
        secret=True,
    ),
    Variable(
        "CALLBACK_ALLOWED_NETWORKS",
        "web.guard.allowed_networks",
        to_networks,
        _CALLBACK,
    ),
    Variable("TRUSTED_PROXIES", "web.guard.trusted_proxies", to_networks, _CALLBACK),
    Variable(
        "CALLBACK_RATE_LIMIT",
        "web.guard.rate_per_second",
        number(high=1e6),
        _CALLBACK,
    ),
    Variable(
        "CALLBACK_RATE_BURST",
        "web.guard.rate_burst",
        integer(1, 10**6),
        _CALLBACK,
    ),
    Variable(
        "CALLBACK_STORE_WAIT_SECONDS",
        "web.guard.store_wait_seconds",
        number(high=600),
        _CALLBACK,
    ),
    # The worker
    Variable(
        "RETRY_BASE_SECONDS",
        "worker.retry_base_seconds",
        number(),
        f"backoff start of {_RETRY}",
    ),
    Variable(
        "RETRY_MAX_SECONDS",
        "worker.retry_max_seconds",
        number(),
        f"backoff cap of {_RETRY} (at least `RETRY_BASE_SECONDS`)",
    ),
    Variable(
        "WORKER_CONCURRENCY",
        "worker.concurrency",
        integer(1, 64),
        "orders worked at once per worker",
    ),
    Variable(
        "LEASE_SECONDS",
        "worker.lease_seconds",
        number(),
        "how long a claim lasts without a heartbeat (which runs every third of it), so how "
        "soon another host takes over a dead worker's work",
    ),
    Variable("POLL_SECONDS", "worker.poll_seconds", number(), "idle poll"),
    Variable(
        "RETRY_DEADLINE_HOURS",
        "worker.retry_deadline_seconds",
        to_hours_as_seconds,
        "give-up deadline of an order's retries, in hours",
        default="`24`",
    ),
    Variable(
        "RUN_WORKER_IN_SERVE",
        "worker.run_in_serve",
        to_bool,
        "`utopia-handler serve` runs a worker beside the web side",
    ),
    # UTOPIA
    Variable("UTOPIA_URL_ENDPOINT", "utopia.url", to_base_url, "UTOPIA API base URL"),
    Variable(
        "UTOPIA_API_KEY",
        "utopia.api_key",
        to_secret,
        "UTOPIA API key; required",
        secret=True,
    ),
    Variable(
        "UTOPIA_NETWORK",
        "utopia.network",
        choice(NETWORKS),
        f"optional `network` parameter ({', '.join(NETWORKS)})",
    ),
    Variable(
        "UTOPIA_NETWORKS",
        "utopia.networks",
        choice_list(NETWORKS),
        "comma-separated networks whose order lists reconciliation reads, each in turn",
        default="`UTOPIA_NETWORK` if set, else one call without `network`",
    ),
    Variable(
        "UTOPIA_CONNECT_TIMEOUT",
        "utopia.timeouts.connect",
        number(high=600),
        "seconds to wait for a connection to UTOPIA",
    ),
    Variable(
        "UTOPIA_READ_TIMEOUT",
        "utopia.timeouts.read",
        number(high=3600),
        "seconds to wait for UTOPIA's answer",
    ),
    # Reconciliation with UTOPIA's order list
    Variable(
        "RECONCILE_ENABLED",
        "reconcile.enabled",
        to_bool,
        "workers compare UTOPIA's order list with the orders known here, to find orders whose "
        'callback never came (see "Reconciliation")',
    ),
    Variable(
        "RECONCILE_INTERVAL_SECONDS",
        "reconcile.interval_seconds",
        integer(1, 7 * 86400),
        "seconds between reconciliations (one process runs each, whatever the number of workers)",
    ),
    Variable(
        "RECONCILE_ALERT_HOURS",
        "reconcile.alert_seconds",
        to_hours_as_seconds,
        "staff are e-mailed once when UTOPIA's order list has not been read for this many hours",
        default="`24`",
    ),
    # PowerCode
    Variable(
        "PC_URL",
        "powercode.web_url",
        to_powercode_url,
        "PowerCode web base, `http://` or `https://`; without a port it means port 444, as the "
        "old handler added it, for the APIs and the customer link",
        default="from `PC_URL_API`",
    ),
    Variable(
        "PC_URL_API",
        "powercode.api_url",
        to_url,
        "PowerCode classic API endpoint",
        default="`<PC_URL>/api/1/index.php`",
    ),
    Variable(
        "PC_VERIFY_SSL",
        "powercode.verify_ssl",
        to_bool,
        "verify PowerCode's certificate; `false` works but warns loudly at start",
    ),
    Variable(
        "PC_CA_BUNDLE",
        "powercode.ca_bundle",
        to_readable_file,
        "a CA file or the certificate of a self-signed PowerCode: verification stays on",
    ),
    Variable(
        "PC_URL_UAPI",
        "powercode.uapi_url",
        to_url,
        "PowerCode UAPI base",
        default="`<PC_URL>/uapi/`",
    ),
    Variable(
        "PC_API_KEY",
        "powercode.api_key",
        to_secret,
        "PowerCode API key (bound to this server's IP in PowerCode); required",
        secret=True,
    ),
    Variable(
        "PC_CONNECT_TIMEOUT",
        "powercode.timeouts.connect",
        number(high=600),
        "seconds to wait for a connection to PowerCode",
    ),
    Variable(
        "PC_READ_TIMEOUT",
        "powercode.timeouts.read",
        number(high=3600),
        "seconds to wait for PowerCode's answer",
    ),
    # E-mail
    Variable("MAIL_SERVER", "mail.server", to_host, "SMTP relay; required"),
    Variable("EMAIL_SENDER", "mail.sender", to_sender, "From address; required"),
    Variable("MAIL_PORT", "mail.port", integer(1, 65535), "SMTP relay port"),
    Variable(
        "MAIL_SECURITY",
        "mail.security",
        choice(get_args(MailSecurity)),
        _one_of(get_args(MailSecurity)),
    ),
    Variable("MAIL_USERNAME", "mail.username", to_text, "optional relay login (with a password)"),
    Variable(
        "MAIL_PASSWORD",
        "mail.password",
        to_secret,
        "the relay login's password (with a user name)",
        secret=True,
    ),
    Variable(
        "EMAIL_RECIPIENTS",
        "mail.recipients",
        to_addresses,
        "comma-separated staff addresses; required",
    ),
    Variable("MAIL_TIMEOUT", "mail.timeout", number(high=3600), "seconds to wait for the relay"),
    Variable(
        "MAIL_ATTACH_CONTRACT",
        "mail.attach_contract",
        to_bool,
        "attach the signed contract PDF as `<orderref>.pdf`",
    ),
    # Shadow mode, for a trial beside the old handler
    Variable(
        "SHADOW_MODE",
        "shadow_mode",
        to_bool,
        "work on orders with real reads but record every write to PowerCode or UTOPIA instead "
        'of sending it (see "Switching from the old handler" in docs/operations.md)',
    ),
    Variable(
        "SHADOW_EMAIL_RECIPIENTS",
        "shadow_email_recipients",
        to_addresses,
        "in shadow mode, the only addresses staff e-mails go to, marked [SHADOW] (none: nobody)",
    ),
    # Subscriber actions (suspend, unsuspend, change speed, cancel): PowerCode's side
    Variable(
        "SUBSCRIBER_PC_STATUS_CHANGES",
        "subscriber.pc_status_changes",
        to_bool,
        "subscriber actions also set the PowerCode customer's status (false: UTOPIA only)",
    ),
    Variable(
        "SUBSCRIBER_PC_SUSPENDED_STATUS",
        "subscriber.pc_suspended_status",
        to_nonempty_text,
        "PowerCode customer status a suspend sets",
    ),
    Variable(
        "SUBSCRIBER_PC_ACTIVE_STATUS",
        "subscriber.pc_active_status",
        to_nonempty_text,
        "PowerCode customer status an unsuspend sets",
    ),
    Variable(
        "SUBSCRIBER_PC_CANCELLED_STATUS",
        "subscriber.pc_cancelled_status",
        to_nonempty_text,
        "PowerCode customer status a cancel sets",
    ),
    Variable(
        "SUBSCRIBER_PC_SWAP_SERVICE",
        "subscriber.pc_swap_service",
        to_bool,
        "a speed change also adds the new internet service in PowerCode (it replaces the old one)",
    ),
    Variable(
        "SUBSCRIBER_PC_CANCEL_TICKET",
        "subscriber.pc_cancel_ticket",
        to_bool,
        "a cancel also opens a PowerCode ticket for staff",
    ),
    Variable(
        "SUBSCRIBER_PC_NOTE",
        "subscriber.pc_note",
        to_bool,
        "a suspend, unsuspend or speed change also adds a line to the PowerCode customer's notes",
    ),
    Variable(
        "SUBSCRIBER_SPEED_PRODUCTS",
        "subscriber.speed_products",
        to_speed_products,
        "change speed: UTOPIA's product id for each PowerCode internet service, e.g. "
        "`164=1000, 165=2000` (the console's Plans page may replace it)",
    ),
    # Provisioning: the old handler's variables beside the TOML tables
    Variable(
        "SERVICE_PLAN_1GBPS_ID",
        "provisioning.plans",
        plan("1 Gbps"),
        'service id for the plan text "1 Gbps" (beats the same plan in `[plans]`)',
        combines=True,
    ),
    Variable(
        "SERVICE_PLAN_250MBPS_ID",
        "provisioning.plans",
        plan("250 Mbps"),
        'service id for the plan text "250 Mbps" (beats the same plan in `[plans]`)',
        combines=True,
    ),
    Variable(
        "SERVICE_PLAN_BOND_FEE_ID",
        "provisioning.always_services",
        to_id,
        "a service added to every order, besides `[provisioning] always_add_services`",
        combines=True,
    ),
    Variable(
        "SERVICE_PLAN_BOND_FEE_QUANTITY",
        "provisioning.service_quantities",
        integer(1, 1000),
        "how many units of `SERVICE_PLAN_BOND_FEE_ID` each order gets (the old handler sent 5 "
        "for everything, which PowerCode refuses for Internet plans)",
        combines=True,
        default="`1`",
    ),
    Variable(
        "TICKET_TEMPLATE_DIR",
        "provisioning.ticket.template_dir",
        to_relative_path,
        "the folder of the ticket description template (beats `[ticket] template_dir`)",
    ),
    Variable(
        "TICKET_TEMPLATE_FILE",
        "provisioning.ticket.template_file",
        to_filename,
        "the ticket description template in it (a built-in one when absent)",
    ),
    Variable(
        "CUSTOMER_PORTAL_PASSWORD",
        "provisioning.portal.shared_password",
        to_secret,
        "shared portal password (as before); without it each customer gets a random one, "
        "never stored",
        secret=True,
    ),
    Variable(
        "PC_CUST_TAGS",
        "provisioning.tag_ids",
        to_ids,
        "comma-separated tag ids added to every new customer (beats `[provisioning] tag_ids`)",
    ),
    # The console
    Variable(
        "METRICS_TOKEN",
        "console.metrics_token",
        token(),
        "bearer token for `/metrics` (16+ characters)",
        secret=True,
    ),
    Variable(
        "ADMIN_USER",
        "console.admin_user",
        to_text,
        "the first console admin, as in the old handler",
    ),
    Variable(
        "ADMIN_PASS_HASH",
        "console.admin_pass_hash",
        to_bcrypt_hash,
        "the first admin's password as the old handler stored it (bcrypt)",
        secret=True,
    ),
    Variable(
        "ADMIN_PASS",
        "console.admin_pass",
        to_secret,
        "the first admin's password in plain text (accepted, with a warning)",
        secret=True,
    ),
    Variable(
        "SESSION_COOKIE_SECURE",
        "console.session_cookie_secure",
        to_bool,
        "console cookie over TLS only (`false` for plain-http testing only)",
    ),
)

# The TOML tables, in the order messages list them; [plans] maps free plan texts to service ids.
PLANS_TABLE = "plans"
TABLE_KEYS: tuple[TableKey, ...] = (
    TableKey(
        "provisioning",
        "always_add_services",
        "provisioning.always_services",
        to_always_services,
        combines=True,
    ),
    TableKey(
        "provisioning",
        "unmapped_plan",
        "provisioning.unmapped_plan",
        choice(get_args(UnmappedPlan)),
    ),
    TableKey("provisioning", "tag_ids", "provisioning.tag_ids", to_ids),
    TableKey(
        "ticket",
        "template_dir",
        "provisioning.ticket.template_dir",
        to_relative_path,
        relative_to_file=True,
    ),
    TableKey("ticket", "template_file", "provisioning.ticket.template_file", to_filename),
    TableKey("ticket", "summary", "provisioning.ticket.summary", to_template),
    TableKey("ticket", "category", "provisioning.ticket.category", to_id),
    TableKey("ticket", "ticket_type", "provisioning.ticket.ticket_type", to_id),
    TableKey("ticket", "status", "provisioning.ticket.status", to_id),
    TableKey("ticket", "responsible_user", "provisioning.ticket.responsible_user", to_user_name),
    TableKey("ticket", "responsible_group", "provisioning.ticket.responsible_group", to_id),
    TableKey("ticket", "customer_viewable", "provisioning.ticket.customer_viewable", to_bool),
    TableKey("ticket", "message_summary", "provisioning.ticket.message_summary", to_template),
    TableKey("customer", "tax_zone_id", "provisioning.customer.tax_zone_id", to_id),
    TableKey(
        "customer",
        "invoice_preference",
        "provisioning.customer.invoice_preference",
        choice(get_args(InvoicePreference)),
    ),
    TableKey("customer", "bill_day", "provisioning.customer.bill_day", to_nonempty_text),
    TableKey("customer", "due_by_days", "provisioning.customer.due_by_days", to_days),
    TableKey("customer", "grace_period_days", "provisioning.customer.grace_period_days", to_days),
    TableKey(
        "portal", "username", "provisioning.portal.username", choice(get_args(PortalUsername))
    ),
    TableKey(
        "portal", "password", "provisioning.portal.password", choice(get_args(PortalPassword))
    ),
)
TABLES: tuple[str, ...] = (PLANS_TABLE, *dict.fromkeys(key.table for key in TABLE_KEYS))
# Arrays of tables, each row a table of its own: the routing table of UTOPIA messages.
ARRAY_TABLES: tuple[ArrayTable, ...] = (
    ArrayTable("messages", "routing.messages", to_message_routes),
)

# The name lists that used to be kept by hand, now derived.
TOML_VARIABLES = frozenset(v.name for v in VARIABLES if v.in_toml)
SECRET_VARIABLES = frozenset(v.name for v in VARIABLES if v.secret)
KEYS_OF_TABLE: dict[str, frozenset[str]] = {
    table: frozenset(key.key for key in TABLE_KEYS if key.table == table) for table in TABLES
}
_SECRET_FIELDS = frozenset(v.fills for v in VARIABLES if v.secret)
_SHOWN = {v.fills: v.shown for v in VARIABLES if v.shown is not None}


# --- check-config's listing ---------------------------------------------------------------------


def describe_settings(settings: Settings) -> list[tuple[str, str]]:
    """Every effective setting as (dotted name, display value), secrets masked, for check-config."""
    lines: list[tuple[str, str]] = []
    _describe(settings, "", lines)
    return lines


def _describe(obj: object, prefix: str, lines: list[tuple[str, str]]) -> None:
    if not is_dataclass(obj) or isinstance(obj, type):
        return
    for item in fields(obj):
        name = f"{prefix}{item.name}"
        value = getattr(obj, item.name)
        if is_dataclass(value) and not isinstance(value, type):
            _describe(value, f"{name}.", lines)
        elif name in _SECRET_FIELDS:
            lines.append((name, _masked(value)))
        elif name in _SHOWN and isinstance(value, str):
            lines.append((name, _SHOWN[name](value)))
        else:
            lines.append((name, display(value)))


def _masked(value: object) -> str:
    """A secret field: whether it is set (and how many values it holds), never what it is."""
    if value is None or value == "":
        return NOT_SET
    if isinstance(value, tuple):
        return ", ".join(_masked(item) for item in value) if value else "(none)"
    return MASK


def display(value: object) -> str:
    """A value as check-config shows it; a Secret, wherever it is, as asterisks."""
    if isinstance(value, Secret):
        return MASK
    if value is None or value == "":
        return NOT_SET
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, PlanMapping):
        return f"{value.utopia_text!r} -> {value.service_id}"
    if isinstance(value, MessageRoute):
        return describe_route(value)
    if isinstance(value, tuple):
        return ", ".join(display(item) for item in value) if value else "(none)"
    if isinstance(value, str) and "://" in value:
        return mask_credentials(value)  # any URL: a password or token may be written into it
    return str(value)


# --- the README's table --------------------------------------------------------------------------

README_START = "<!-- settings table: generated by `python -m utopia_handler.settings README.md` -->"
README_END = "<!-- end of the settings table -->"


def field_default(path: str) -> object:
    """The schema's default of a dotted Settings field; MISSING when it has none."""
    cls: Any = Settings
    value: object = MISSING
    for part in path.split("."):
        if cls is None:
            return MISSING
        [item] = [f for f in fields(cls) if f.name == part]
        kind = get_type_hints(cls)[part]
        value = item.default if item.default_factory is MISSING else item.default_factory()
        cls = kind if is_dataclass(kind) else None
    return value


def _readme_default(variable: Variable) -> str:
    if variable.default:
        return variable.default
    value = field_default(variable.fills) if variable.fills else None
    shown = display(value)
    return "not set" if shown in (NOT_SET, "(none)") or value is MISSING else f"`{shown}`"


def readme_table() -> str:
    """The README's settings table, one row per variable, in the table's order."""
    rows = [
        "| variable | meaning | default | check-config shows it as |",
        "|---|---|---|---|",
    ]
    for variable in VARIABLES:
        # A variable that fills no field (the TOML file's name) shows among the sources read.
        fills = f"`{variable.fills or 'sources'}`"
        rows.append(
            f"| `{variable.name}` | {variable.help} | {_readme_default(variable)} | {fills} |"
        )
    return "\n".join(rows)


def readme_section() -> str:
    """The table between its markers, as it stands in README.md."""
    return f"{README_START}\n{readme_table()}\n{README_END}"


def rewrite_readme(path: Path) -> bool:
    """Put the generated table into the README at `path`; True when it changed."""
    text = path.read_text(encoding="utf-8")
    head, start, rest = text.partition(README_START)
    _, end, tail = rest.partition(README_END)
    if not start or not end:
        raise SystemExit(f"{path}: the markers {README_START!r} ... {README_END!r} are missing")
    updated = f"{head}{readme_section()}{tail}"
    path.write_text(updated, encoding="utf-8")
    return updated != text


def main(argv: list[str]) -> int:
    """Print the README table, or rewrite it in the README file named."""
    if not argv:
        print(readme_table())
        return 0
    changed = rewrite_readme(Path(argv[0]))
    print(f"{argv[0]}: settings table {'rewritten' if changed else 'already up to date'}")
    return 0
