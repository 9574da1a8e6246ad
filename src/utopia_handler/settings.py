"""The one place that reads configuration: environment, `.env`, and an optional TOML file.

Precedence, highest first: process environment, `.env` in the working directory, the TOML file
(`UTOPIA_HANDLER_CONFIG=path` or `--config path`). The result is one immutable `Settings`.
A wrong or missing value raises `SettingsError` with one line naming the setting and why.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Literal, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values
from dotenv.variables import parse_variables
from jinja2 import Environment, TemplateError, TemplateSyntaxError


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line a person can act on."""


class Secret:
    """A string that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    read: float = 30.0


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class CallbackGuard:
    """The callback endpoint's defences beyond the token (see web/security.py)."""

    # Standard Webhooks secrets (`whsec_<base64>`); several at once while one is being rotated.
    signing_secrets: tuple[Secret, ...] = ()
    allowed_networks: tuple[IPNetwork, ...] = ()  # empty: any source may call
    trusted_proxies: tuple[IPNetwork, ...] = ()  # X-Forwarded-For is believed only from these
    rate_per_second: float = 10.0  # per source address, per process
    rate_burst: int = 50
    # How long a callback waits for the database before answering 503 (the sender retries).
    store_wait_seconds: float = 5.0


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 5050
    secret_key: Secret | None = None
    callback_token: Secret | None = None
    allow_unauthenticated_callbacks: bool = False
    max_body_bytes: int = 64 * 1024
    threads: int = 8
    workers: int = 2  # gunicorn processes of `utopia-handler web`
    guard: CallbackGuard = field(default_factory=CallbackGuard)


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4
    lease_seconds: float = 30.0
    poll_seconds: float = 1.0
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 900.0
    retry_deadline_seconds: float = 24 * 3600.0
    run_in_serve: bool = True


@dataclass(frozen=True)
class ConsoleSettings:
    """The operator console: session cookies, metrics access and the first admin of a move-over."""

    # True behind TLS (the normal set-up); only a plain-http loopback demo turns it off.
    session_cookie_secure: bool = True
    metrics_token: Secret | None = None
    admin_user: str | None = None
    admin_pass_hash: Secret | None = None  # bcrypt, as the old handler stored it
    admin_pass: Secret | None = None  # plain text; accepted, with a warning to replace it


@dataclass(frozen=True)
class UtopiaSettings:
    url: str = "https://api.utopiafiber.com"
    api_key: Secret | None = None
    network: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class PowerCodeSettings:
    web_url: str = ""
    api_url: str = ""
    uapi_url: str = ""
    api_key: Secret | None = None
    verify_ssl: bool = True
    ca_bundle: Path | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)

    @property
    def verify(self) -> bool | str:
        """What to pass as the HTTP client's `verify`: a CA file, True, or False."""
        if self.ca_bundle is not None:
            return str(self.ca_bundle)
        return self.verify_ssl

    def customer_link(self, customer_id: int) -> str:
        """The PowerCode web page of one customer, for e-mails and the console."""
        base = self.web_url.rstrip("/")
        return f"{base}/index.php?q&page=/customers/_view.php&customerid={customer_id}"


MailSecurity = Literal["none", "starttls", "ssl"]


@dataclass(frozen=True)
class MailSettings:
    server: str = ""
    port: int = 25
    security: MailSecurity = "none"
    username: str | None = None
    password: Secret | None = None
    sender: str = ""
    recipients: tuple[str, ...] = ()
    timeout: float = 30.0
    attach_contract: bool = True


@dataclass(frozen=True)
class PlanMapping:
    """A UTOPIA plan text (matched ignoring case and spaces) and its PowerCode service id."""

    utopia_text: str
    service_id: int


@dataclass(frozen=True)
class TicketSettings:
    """The installation ticket; the ids default to what the production handler always sent."""

    template_dir: Path = Path("ticket_descriptions")
    template_file: str = "new_desc.txt"
    summary: str = "New UTOPIA install: {{ customer_name }} ({{ order_ref }})"
    category: int = 54
    ticket_type: int = 21
    status: int = 1
    # A user NAME: PowerCode's field carries no "ID" (unlike responsibleGroupID); a number is
    # passed on as given too.
    responsible_user: str = "Sales"
    responsible_group: int = 4
    # The description is a letter to the customer, so the customer may see it.
    customer_viewable: bool = True


InvoicePreference = Literal["Email", "Print", "Both", "None"]


@dataclass(frozen=True)
class CustomerDefaults:
    """createCustomer's billing fields; the defaults are what the production handler always sent."""

    tax_zone_id: int = 1
    invoice_preference: InvoicePreference = "Email"
    bill_day: str = "Activation Date"
    due_by_days: int = 0
    grace_period_days: int = 10


@dataclass(frozen=True)
class PortalPolicy:
    username: Literal["email", "site_id", "none"] = "email"
    password: Literal["shared", "random", "none"] = "random"  # noqa: S105 - a policy name
    shared_password: Secret | None = None


@dataclass(frozen=True)
class ProvisioningSettings:
    plans: tuple[PlanMapping, ...] = ()
    always_services: tuple[int, ...] = ()
    # (service id, quantity) for always-added services priced per unit; any other: quantity 1.
    service_quantities: tuple[tuple[int, int], ...] = ()
    unmapped_plan: Literal["hold", "skip"] = "hold"
    tag_ids: tuple[int, ...] = ()
    ticket: TicketSettings = field(default_factory=TicketSettings)
    customer: CustomerDefaults = field(default_factory=CustomerDefaults)
    portal: PortalPolicy = field(default_factory=PortalPolicy)

    def quantity_of(self, service_id: int) -> int:
        """How many units of an always-added service each order gets (1 unless configured)."""
        return dict(self.service_quantities).get(service_id, 1)


def plan_key(text: str) -> str:
    """A plan text as compared everywhere: case and every space ignored ("1Gbps" is "1 Gbps")."""
    return "".join(text.split()).casefold()


@dataclass(frozen=True)
class Settings:
    database_url: str
    data_dir: Path
    log_file: Path
    log_level: str = "INFO"
    # Days a finished order keeps its raw payloads (personal data); its outcome is kept for good.
    retention_days: int = 365
    web: WebSettings = field(default_factory=WebSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    utopia: UtopiaSettings = field(default_factory=UtopiaSettings)
    powercode: PowerCodeSettings = field(default_factory=PowerCodeSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    provisioning: ProvisioningSettings = field(default_factory=ProvisioningSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    # Where each value came from is reported by check-config; the files that were read, in order.
    sources: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Loading

PortalUsername = Literal["email", "site_id", "none"]
PortalPassword = Literal["shared", "random", "none"]
UnmappedPlan = Literal["hold", "skip"]

_MAIL_SECURITY: tuple[MailSecurity, ...] = ("none", "starttls", "ssl")
_INVOICE_PREFERENCES: tuple[InvoicePreference, ...] = ("Email", "Print", "Both", "None")
_PORTAL_USERNAMES: tuple[PortalUsername, ...] = ("email", "site_id", "none")
_PORTAL_PASSWORDS: tuple[PortalPassword, ...] = ("shared", "random", "none")
_UNMAPPED_PLANS: tuple[UnmappedPlan, ...] = ("hold", "skip")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_NETWORKS = ("UTOPIA", "BOUNTIFULFIBER", "IDAHOFALLS", "BOZEMAN")

_SECRET_VARIABLES = frozenset(
    {
        "PC_API_KEY",
        "UTOPIA_API_KEY",
        "SECRET_KEY",
        "UTOPIA_CALLBACK_TOKEN",
        "MAIL_PASSWORD",
        "CUSTOMER_PORTAL_PASSWORD",
        "CALLBACK_SIGNING_SECRETS",
        "METRICS_TOKEN",
        "ADMIN_PASS_HASH",
        "ADMIN_PASS",
    }
)
# Every variable load_settings reads; a TOML top-level key outside this set is a typo.
_VARIABLES = _SECRET_VARIABLES | frozenset(
    {
        "DATA_DIR",
        "DATABASE_URL",
        "LOG_FILE",
        "LOG_LEVEL",
        "FLASK_HOST",
        "FLASK_PORT",
        "ALLOW_UNAUTHENTICATED_CALLBACKS",
        "MAX_CALLBACK_BYTES",
        "WEB_THREADS",
        "WEB_WORKERS",
        "RETENTION_DAYS",
        "WORKER_CONCURRENCY",
        "LEASE_SECONDS",
        "POLL_SECONDS",
        "RETRY_BASE_SECONDS",
        "RETRY_MAX_SECONDS",
        "RETRY_DEADLINE_HOURS",
        "RUN_WORKER_IN_SERVE",
        "UTOPIA_URL_ENDPOINT",
        "UTOPIA_NETWORK",
        "UTOPIA_CONNECT_TIMEOUT",
        "UTOPIA_READ_TIMEOUT",
        "PC_URL",
        "PC_URL_API",
        "PC_URL_UAPI",
        "PC_VERIFY_SSL",
        "PC_CA_BUNDLE",
        "PC_CONNECT_TIMEOUT",
        "PC_READ_TIMEOUT",
        "MAIL_SERVER",
        "MAIL_PORT",
        "MAIL_SECURITY",
        "MAIL_USERNAME",
        "EMAIL_SENDER",
        "EMAIL_RECIPIENTS",
        "MAIL_TIMEOUT",
        "MAIL_ATTACH_CONTRACT",
        "SERVICE_PLAN_1GBPS_ID",
        "SERVICE_PLAN_250MBPS_ID",
        "SERVICE_PLAN_BOND_FEE_ID",
        "SERVICE_PLAN_BOND_FEE_QUANTITY",
        "PC_CUST_TAGS",
        "TICKET_TEMPLATE_DIR",
        "TICKET_TEMPLATE_FILE",
        "CALLBACK_ALLOWED_NETWORKS",
        "TRUSTED_PROXIES",
        "CALLBACK_RATE_LIMIT",
        "CALLBACK_RATE_BURST",
        "CALLBACK_STORE_WAIT_SECONDS",
        "SESSION_COOKIE_SECURE",
        "ADMIN_USER",
    }
)
_TABLE_KEYS: dict[str, frozenset[str]] = {
    "plans": frozenset(),  # free-form: plan text -> service id
    "provisioning": frozenset({"always_add_services", "unmapped_plan", "tag_ids"}),
    "ticket": frozenset(
        {
            "summary",
            "category",
            "ticket_type",
            "status",
            "responsible_user",
            "responsible_group",
            "customer_viewable",
            "template_dir",
            "template_file",
        }
    ),
    "customer": frozenset(
        {"tax_zone_id", "invoice_preference", "bill_day", "due_by_days", "grace_period_days"}
    ),
    "portal": frozenset({"username", "password"}),
}
_LEGACY_PLANS = (("SERVICE_PLAN_1GBPS_ID", "1 Gbps"), ("SERVICE_PLAN_250MBPS_ID", "250 Mbps"))

_ENVIRONMENT = "environment"
_MASK = "********"
_MAX_ID = 2**31 - 1  # PowerCode ids are 32-bit database keys
_NOT_SET = "(not set)"
_RANDOM_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"

_INT_RE = re.compile(r"[+-]?[0-9]{1,18}")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,15})?|\.[0-9]{1,15})")
_ADDRESS_RE = re.compile(r"[^@\s<>(),;:\"\[\]\\]+@[^@\s<>(),;:\"\[\]\\.][^@\s<>(),;:\"\[\]\\]*")
_TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]+")
_SIMPLE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_PLACEHOLDER_WORDS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "password", "todo", "example"}
)
_PLACEHOLDER_PREFIXES = ("xxx", "your", "replace")
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_FORBIDDEN_CHARS = frozenset("\x00\r\n")

T = TypeVar("T")
C = TypeVar("C", bound=str)


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    config_path: Path | None = None,
    dotenv_path: Path | None = None,
    require_runtime: bool = True,
) -> Settings:
    """Read the environment, `.env` and the TOML file into one validated, immutable Settings."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    dotenv_file = Path.cwd() / ".env" if dotenv_path is None else dotenv_path
    dotenv_values_ = _read_dotenv(dotenv_file, env)
    sources = [_ENVIRONMENT]
    if dotenv_file.is_file():
        sources.append(str(dotenv_file))

    before_toml = _Variables([(_ENVIRONMENT, env), (str(dotenv_file), dotenv_values_)])
    toml_file, toml_label = config_path, "config file"
    if toml_file is None:
        configured = before_toml.path("UTOPIA_HANDLER_CONFIG")
        toml_file, toml_label = configured, "UTOPIA_HANDLER_CONFIG"
    document: dict[str, object] = {}
    toml_variables: dict[str, object] = {}
    if toml_file is not None:
        document = _read_toml(toml_file, toml_label)
        toml_variables = _split_toml(document, toml_file)
        sources.append(str(toml_file))

    variables = _Variables(
        [
            (_ENVIRONMENT, env),
            (str(dotenv_file), dotenv_values_),
            (str(toml_file), toml_variables),
        ]
    )
    provisioning, explicit_portal_password = _read_tables(document, toml_file)
    settings = _build(variables, provisioning, explicit_portal_password, tuple(sources))
    if require_runtime:
        _check_runtime(settings)
    return settings


def describe_settings(settings: Settings) -> list[tuple[str, str]]:
    """Every effective setting as (dotted name, display value), secrets masked, for check-config."""
    lines: list[tuple[str, str]] = []
    _describe(settings, "", lines)
    return lines


# --- sources -------------------------------------------------------------------------------------


def _read_dotenv(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    try:
        raw = dotenv_values(path, interpolate=False)
    except UnicodeDecodeError:
        _fail(str(path), "is not UTF-8 text", "save the .env file as UTF-8")
    except OSError as exc:
        _fail(str(path), f"cannot be read ({exc.strerror})", "check the path and its permissions")
    # Expand ${NAME} like python-dotenv does, but against the environment we were given, so a
    # caller-supplied environ is never mixed with the real process environment.
    resolved: dict[str, str] = {}
    for name, value in raw.items():
        if value is None:
            continue
        scope = {**environ, **resolved}
        resolved[name] = "".join(atom.resolve(scope) for atom in parse_variables(value))
    return resolved


def _read_toml(path: Path, label: str) -> dict[str, object]:
    try:
        with path.open("rb") as stream:
            # A device or pipe (found by the fuzz tests: /dev/zero) would be read forever.
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                _fail(label, f"{path} is not a regular file", "point it at the TOML file")
            return dict(tomllib.load(stream))
    except FileNotFoundError:
        _fail(label, f"{path} does not exist", "create it or correct the path")
    except tomllib.TOMLDecodeError as exc:
        _fail(label, f"{path} is not valid TOML: {exc}", "fix the file at that line")
    except UnicodeDecodeError:
        _fail(label, f"{path} is not UTF-8 text", "save it as UTF-8")
    except ValueError as exc:  # tomllib lets int() errors through, e.g. a 5000-digit number
        _fail(label, f"{path} is not valid TOML ({exc})", "fix the file")
    except OSError as exc:
        _fail(label, f"{path} cannot be read ({exc.strerror})", "check the path and permissions")


def _split_toml(document: Mapping[str, object], path: Path) -> dict[str, object]:
    """Return the TOML variables; reject top-level keys that are neither variables nor tables."""
    variables: dict[str, object] = {}
    for key, value in document.items():
        if key in _VARIABLES:
            variables[key] = value
        elif key in _TABLE_KEYS:
            if not isinstance(value, dict):
                _fail(
                    f"[{key}]", f"must be a table in {path}", f"write it as [{key}] on its own line"
                )
        elif isinstance(value, dict):
            _fail(
                f"[{_show_key(key)}]",
                f"unknown table in {path}",
                f"use one of {', '.join(_TABLE_KEYS)} or remove it",
            )
        else:
            _fail(
                _show_key(key),
                f"unknown setting in {path}",
                "check the spelling; variables use the environment names, e.g. PC_URL",
            )
    return variables


class _Variables:
    """Variables from every source; the first source that defines a name wins."""

    def __init__(self, layers: Sequence[tuple[str, Mapping[str, object]]]) -> None:
        self._layers = layers

    def _find(self, name: str) -> tuple[str, object] | None:
        for origin, values in self._layers:
            if name in values:
                label = name if origin == _ENVIRONMENT else f"{name} (in {origin})"
                return label, values[name]
        return None

    def _given(self, name: str) -> tuple[str, object] | None:
        # A blank non-secret means "use the default": .env templates often list empty keys.
        found = self._find(name)
        if found is None or (isinstance(found[1], str) and not found[1].strip()):
            return None
        return found

    def text(self, name: str) -> str | None:
        found = self._given(name)
        return None if found is None else _to_text(*found)

    def secret(self, name: str) -> Secret | None:
        found = self._find(name)
        return None if found is None else _to_secret(*found)

    def integer(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        found = self._given(name)
        return default if found is None else _to_int(*found, low=low, high=high)

    def ident(self, name: str) -> int | None:
        found = self._given(name)
        return None if found is None else _to_id(*found)

    def number(self, name: str, default: float, *, high: float | None = None) -> float:
        found = self._given(name)
        return default if found is None else _to_positive_float(*found, high=high)

    def flag(self, name: str, default: bool) -> bool:
        found = self._given(name)
        return default if found is None else _to_bool(*found)

    def choice(self, name: str, default: C, choices: tuple[C, ...]) -> C:
        found = self._given(name)
        return default if found is None else _to_choice(*found, choices)

    def url(self, name: str) -> str | None:
        found = self._given(name)
        return None if found is None else _to_url(*found)

    def path(self, name: str) -> Path | None:
        text = self.text(name)
        return None if text is None else Path(os.path.abspath(os.path.expanduser(text)))

    def ids(self, name: str) -> tuple[int, ...] | None:
        found = self._given(name)
        return None if found is None else _to_ids(*found)

    def addresses(self, name: str) -> tuple[str, ...] | None:
        found = self._given(name)
        if found is None:
            return None
        label, raw = found
        items = raw if isinstance(raw, list) else _to_text(label, raw).split(",")
        texts = [_to_text(label, item) for item in items]
        return tuple(_to_address(label, text) for text in texts if text)


# --- building ------------------------------------------------------------------------------------


def _build(
    v: _Variables,
    tables: ProvisioningSettings,
    explicit_portal_password: PortalPassword | None,
    sources: tuple[str, ...],
) -> Settings:
    data_dir = v.path("DATA_DIR") or Path(os.path.abspath("data"))
    database_url = v.text("DATABASE_URL") or f"sqlite:///{data_dir / 'utopia-handler.db'}"
    if not database_url.lower().startswith(("sqlite", "postgresql")):
        _fail(
            "DATABASE_URL",
            f"{_show(_mask_credentials(database_url))} is neither SQLite nor PostgreSQL",
            "use sqlite:///path/to/file.db or postgresql://user@host/dbname",
        )
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        log_file=v.path("LOG_FILE") or data_dir / "api_class.log",
        log_level=v.choice("LOG_LEVEL", "INFO", _LOG_LEVELS),
        retention_days=v.integer("RETENTION_DAYS", Settings.retention_days, low=1, high=36500),
        web=_build_web(v),
        worker=_build_worker(v),
        utopia=UtopiaSettings(
            url=(v.url("UTOPIA_URL_ENDPOINT") or UtopiaSettings.url).rstrip("/"),
            api_key=v.secret("UTOPIA_API_KEY"),
            network=_optional_choice(v, "UTOPIA_NETWORK", _NETWORKS),
            timeouts=Timeouts(
                connect=v.number("UTOPIA_CONNECT_TIMEOUT", 5.0, high=600),
                read=v.number("UTOPIA_READ_TIMEOUT", 30.0, high=3600),
            ),
        ),
        powercode=_build_powercode(v),
        mail=_build_mail(v),
        provisioning=_apply_legacy(v, tables, explicit_portal_password),
        console=_build_console(v),
        sources=sources,
    )


_BCRYPT_RE = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")


def _build_console(v: _Variables) -> ConsoleSettings:
    metrics_token = v.secret("METRICS_TOKEN")
    if metrics_token is not None and len(metrics_token.reveal()) < 16:
        _fail(
            "METRICS_TOKEN",
            "is shorter than 16 characters",
            f"use 16+ random characters, e.g. from {_RANDOM_HINT}",
        )
    admin_user = v.text("ADMIN_USER")
    pass_hash = v.secret("ADMIN_PASS_HASH")
    password = v.secret("ADMIN_PASS")
    if pass_hash is not None and not _BCRYPT_RE.fullmatch(pass_hash.reveal()):
        _fail(
            "ADMIN_PASS_HASH",
            "is not a bcrypt hash ($2b$...)",
            "copy it unchanged from the old handler, or set ADMIN_PASS instead",
        )
    if admin_user is not None and pass_hash is None and password is None:
        _fail(
            "ADMIN_USER",
            "is set without ADMIN_PASS_HASH or ADMIN_PASS",
            "set one of them, or remove ADMIN_USER and use `utopia-handler users add`",
        )
    if admin_user is None and (pass_hash is not None or password is not None):
        _fail(
            "ADMIN_USER",
            "is not set but ADMIN_PASS_HASH or ADMIN_PASS is",
            "set ADMIN_USER to the first admin's login name",
        )
    if admin_user is not None and (len(admin_user) > 64 or any(c.isspace() for c in admin_user)):
        _fail("ADMIN_USER", "is not a login name", "use up to 64 characters without spaces")
    return ConsoleSettings(
        session_cookie_secure=v.flag("SESSION_COOKIE_SECURE", True),
        metrics_token=metrics_token,
        admin_user=admin_user,
        admin_pass_hash=pass_hash,
        admin_pass=password,
    )


def _build_web(v: _Variables) -> WebSettings:
    token = v.secret("UTOPIA_CALLBACK_TOKEN")
    if token is not None:
        if len(token.reveal()) < 16:
            _fail(
                "UTOPIA_CALLBACK_TOKEN",
                "is shorter than 16 characters",
                f"use 16+ random characters, e.g. from {_RANDOM_HINT}",
            )
        if not _TOKEN_RE.fullmatch(token.reveal()):
            _fail(
                "UTOPIA_CALLBACK_TOKEN",
                "has characters that need escaping in the callback URL",
                f"use only letters, digits and - _ . ~, e.g. from {_RANDOM_HINT}",
            )
    return WebSettings(
        host=_to_host("FLASK_HOST", v.text("FLASK_HOST") or WebSettings.host),
        port=v.integer("FLASK_PORT", WebSettings.port, low=1, high=65535),
        secret_key=v.secret("SECRET_KEY"),
        callback_token=token,
        allow_unauthenticated_callbacks=v.flag("ALLOW_UNAUTHENTICATED_CALLBACKS", False),
        max_body_bytes=v.integer(
            "MAX_CALLBACK_BYTES", WebSettings.max_body_bytes, low=1024, high=16 * 1024 * 1024
        ),
        threads=v.integer("WEB_THREADS", WebSettings.threads, low=1, high=256),
        workers=v.integer("WEB_WORKERS", WebSettings.workers, low=1, high=64),
        guard=_build_guard(v),
    )


def _build_guard(v: _Variables) -> CallbackGuard:
    secrets_found = v._find("CALLBACK_SIGNING_SECRETS")
    networks = v._given("CALLBACK_ALLOWED_NETWORKS")
    proxies = v._given("TRUSTED_PROXIES")
    return CallbackGuard(
        signing_secrets=() if secrets_found is None else _to_signing_secrets(*secrets_found),
        allowed_networks=() if networks is None else _to_networks(*networks),
        trusted_proxies=() if proxies is None else _to_networks(*proxies),
        rate_per_second=v.number("CALLBACK_RATE_LIMIT", CallbackGuard.rate_per_second, high=1e6),
        rate_burst=v.integer("CALLBACK_RATE_BURST", CallbackGuard.rate_burst, low=1, high=10**6),
        store_wait_seconds=v.number(
            "CALLBACK_STORE_WAIT_SECONDS", CallbackGuard.store_wait_seconds, high=600
        ),
    )


def _list_items(label: str, raw: object) -> list[object]:
    """The items of a TOML list, or of text separated by commas and/or spaces."""
    if isinstance(raw, list):
        return list(raw)
    return [item for item in re.split(r"[,\s]+", _checked_text(label, raw)) if item]


def _to_signing_secrets(label: str, raw: object) -> tuple[Secret, ...]:
    """Standard Webhooks secrets, `whsec_` + base64 of 16 to 128 random bytes; never echoed."""
    secrets_ = tuple(_to_secret(label, item) for item in _list_items(label, raw))
    if not secrets_:
        _fail(label, "is empty", "set one or more whsec_... secrets or remove the line")
    for position, secret in enumerate(secrets_, start=1):
        text = secret.reveal()
        if not text.startswith("whsec_"):
            _fail(label, f"secret {position} does not start with whsec_", "copy it whole")
        try:
            key = base64.b64decode(text[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            _fail(label, f"secret {position} is not whsec_ + base64", "copy it whole")
        if not 16 <= len(key) <= 128:
            _fail(
                label,
                f"secret {position} holds {len(key)} bytes",
                "use 16 to 128 random bytes, e.g. whsec_ + base64 of 32 bytes",
            )
    return secrets_


def _to_networks(label: str, raw: object) -> tuple[IPNetwork, ...]:
    """Networks in CIDR notation (a bare address is a /32 or /128)."""
    networks: list[IPNetwork] = []
    for item in _list_items(label, raw):
        text = _to_text(label, item)
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            _fail(label, f"{_show(text)} is not a network", "use CIDR, e.g. 203.0.113.0/24")
        if network not in networks:
            networks.append(network)
    return tuple(networks)


def signing_key(secret: Secret) -> bytes:
    """The HMAC key of a validated `whsec_` secret."""
    return base64.b64decode(secret.reveal()[len("whsec_") :])


def _build_worker(v: _Variables) -> WorkerSettings:
    base = v.number("RETRY_BASE_SECONDS", WorkerSettings.retry_base_seconds)
    most = v.number("RETRY_MAX_SECONDS", WorkerSettings.retry_max_seconds)
    if most < base:
        _fail(
            "RETRY_MAX_SECONDS",
            f"{most:g} is less than RETRY_BASE_SECONDS ({base:g})",
            "make it at least RETRY_BASE_SECONDS",
        )
    return WorkerSettings(
        concurrency=v.integer("WORKER_CONCURRENCY", WorkerSettings.concurrency, low=1, high=64),
        lease_seconds=v.number("LEASE_SECONDS", WorkerSettings.lease_seconds),
        poll_seconds=v.number("POLL_SECONDS", WorkerSettings.poll_seconds),
        retry_base_seconds=base,
        retry_max_seconds=most,
        retry_deadline_seconds=v.number("RETRY_DEADLINE_HOURS", 24.0) * 3600.0,
        run_in_serve=v.flag("RUN_WORKER_IN_SERVE", True),
    )


def _build_powercode(v: _Variables) -> PowerCodeSettings:
    web_url = _with_powercode_port((v.url("PC_URL") or "").rstrip("/"))
    api_url = v.url("PC_URL_API")
    if not web_url and api_url:
        parts = urlsplit(api_url)
        web_url = f"{parts.scheme}://{parts.netloc}"
    verify_ssl = v.flag("PC_VERIFY_SSL", True)
    ca_bundle = v.path("PC_CA_BUNDLE")
    if ca_bundle is not None:
        if not _is_readable_file(ca_bundle):
            _fail(
                "PC_CA_BUNDLE",
                f"{ca_bundle} is not a readable file",
                "point it at the PEM file of the certificate PowerCode uses, or unset it",
            )
        if not verify_ssl:
            _fail(
                "PC_VERIFY_SSL",
                "is false while PC_CA_BUNDLE is set",
                "remove PC_VERIFY_SSL=false; the CA bundle already trusts PowerCode's certificate",
            )
    return PowerCodeSettings(
        web_url=web_url,
        api_url=api_url or (f"{web_url}/api/1/index.php" if web_url else ""),
        uapi_url=v.url("PC_URL_UAPI") or (f"{web_url}/uapi/" if web_url else ""),
        api_key=v.secret("PC_API_KEY"),
        verify_ssl=verify_ssl,
        ca_bundle=ca_bundle,
        timeouts=Timeouts(
            connect=v.number("PC_CONNECT_TIMEOUT", 5.0, high=600),
            read=v.number("PC_READ_TIMEOUT", 30.0, high=3600),
        ),
    )


# PowerCode serves its web pages and both APIs on port 444. The old handler's PC_URL named no port
# and it added ":444" to the API and to the customer link; a PC_URL with a port is kept as given.
POWERCODE_PORT = 444


def _with_powercode_port(url: str) -> str:
    if not url:
        return url
    parts = urlsplit(url)
    if parts.port is not None:
        return url
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@" if userinfo else ""
    return urlunsplit(
        parts._replace(netloc=f"{netloc}{host}:{POWERCODE_PORT}", path=parts.path.rstrip("/"))
    )


def _build_mail(v: _Variables) -> MailSettings:
    server = v.text("MAIL_SERVER")
    sender = v.text("EMAIL_SENDER")
    return MailSettings(
        server=_to_host("MAIL_SERVER", server) if server else "",
        port=v.integer("MAIL_PORT", MailSettings.port, low=1, high=65535),
        security=v.choice("MAIL_SECURITY", "none", _MAIL_SECURITY),
        username=v.text("MAIL_USERNAME"),
        password=v.secret("MAIL_PASSWORD"),
        sender=_to_sender("EMAIL_SENDER", sender) if sender else "",
        recipients=v.addresses("EMAIL_RECIPIENTS") or (),
        timeout=v.number("MAIL_TIMEOUT", MailSettings.timeout, high=3600),
        attach_contract=v.flag("MAIL_ATTACH_CONTRACT", True),
    )


def _read_tables(
    document: Mapping[str, object], path: Path | None
) -> tuple[ProvisioningSettings, PortalPassword | None]:
    """The provisioning the TOML tables describe, before legacy variables are applied."""
    origin = str(path)
    plans = _Table(document, "plans", origin)
    seen: dict[str, str] = {}
    mappings: list[PlanMapping] = []
    for text, raw in plans.items():
        label = plans.label(text)
        if not text.strip():
            _fail(label, "plan text is empty", "write the plan text exactly as UTOPIA sends it")
        _check_unique_plan(seen, text, label)
        mappings.append(PlanMapping(text.strip(), _to_id(label, raw)))

    prov = _Table(document, "provisioning", origin)
    ticket = _Table(document, "ticket", origin)
    customer = _Table(document, "customer", origin)
    portal = _Table(document, "portal", origin)
    defaults = TicketSettings()
    template_dir = defaults.template_dir
    if "template_dir" in ticket:
        template_dir = Path(_to_text(ticket.label("template_dir"), ticket["template_dir"]))
        # A relative folder in the TOML file means "next to this file", so the config and its
        # templates can move together; the TICKET_TEMPLATE_DIR variable stays relative to the cwd.
        if path is not None and not template_dir.is_absolute():
            template_dir = Path(os.path.abspath(path.parent / template_dir))

    def ticket_id(key: str, default: int) -> int:
        return ticket.get(key, _to_id, default)

    no_services: tuple[tuple[int, int], ...] = ()
    always = prov.get("always_add_services", _to_always_services, no_services)
    settings = ProvisioningSettings(
        plans=tuple(mappings),
        always_services=tuple(service_id for service_id, _ in always),
        service_quantities=tuple((s, q) for s, q in always if q != 1),
        unmapped_plan=prov.get("unmapped_plan", _choice_of(_UNMAPPED_PLANS), "hold"),
        tag_ids=prov.get("tag_ids", _to_ids, ()),
        ticket=TicketSettings(
            template_dir=template_dir,
            template_file=ticket.get("template_file", _to_filename, defaults.template_file),
            summary=ticket.get("summary", _to_template, defaults.summary),
            category=ticket_id("category", defaults.category),
            ticket_type=ticket_id("ticket_type", defaults.ticket_type),
            status=ticket_id("status", defaults.status),
            responsible_user=ticket.get(
                "responsible_user", _to_user_name, defaults.responsible_user
            ),
            responsible_group=ticket_id("responsible_group", defaults.responsible_group),
            customer_viewable=ticket.get("customer_viewable", _to_bool, defaults.customer_viewable),
        ),
        customer=CustomerDefaults(
            tax_zone_id=customer.get("tax_zone_id", _to_id, CustomerDefaults.tax_zone_id),
            invoice_preference=customer.get(
                "invoice_preference", _choice_of(_INVOICE_PREFERENCES), "Email"
            ),
            bill_day=customer.get("bill_day", _to_nonempty_text, "Activation Date"),
            due_by_days=customer.get("due_by_days", _to_days, CustomerDefaults.due_by_days),
            grace_period_days=customer.get("grace_period_days", _to_days, 10),
        ),
        portal=PortalPolicy(
            username=portal.get("username", _choice_of(_PORTAL_USERNAMES), "email"),
        ),
    )
    explicit_password = portal.get("password", _choice_of(_PORTAL_PASSWORDS), None)
    return settings, explicit_password


def _apply_legacy(
    v: _Variables,
    tables: ProvisioningSettings,
    explicit_portal_password: PortalPassword | None,
) -> ProvisioningSettings:
    """Let the legacy variables override the TOML tables, as the old handler's .env did."""
    plans = list(tables.plans)
    for name, text in _LEGACY_PLANS:
        service_id = v.ident(name)
        if service_id is None:
            continue
        for index, plan in enumerate(plans):
            if plan_key(plan.utopia_text) == plan_key(text):
                plans[index] = PlanMapping(plan.utopia_text, service_id)
                break
        else:
            plans.append(PlanMapping(text, service_id))

    always = tables.always_services
    quantities = dict(tables.service_quantities)
    fee = v.ident("SERVICE_PLAN_BOND_FEE_ID")
    if fee is not None and fee not in always:
        always = (*always, fee)
    fee_quantity = v.integer("SERVICE_PLAN_BOND_FEE_QUANTITY", 1, low=1, high=1000)
    if fee is not None and fee_quantity != 1:
        quantities[fee] = fee_quantity

    ticket = tables.ticket
    template_dir = v.text("TICKET_TEMPLATE_DIR")
    if template_dir is not None:
        ticket = replace(ticket, template_dir=Path(template_dir))
    template_file = v.text("TICKET_TEMPLATE_FILE")
    if template_file is not None:
        ticket = replace(ticket, template_file=_to_filename("TICKET_TEMPLATE_FILE", template_file))

    shared = v.secret("CUSTOMER_PORTAL_PASSWORD")
    password: PortalPassword = explicit_portal_password or ("shared" if shared else "random")
    tags = v.ids("PC_CUST_TAGS")
    return replace(
        tables,
        plans=tuple(plans),
        always_services=always,
        service_quantities=tuple(sorted(quantities.items())),
        tag_ids=tables.tag_ids if tags is None else tags,
        ticket=ticket,
        portal=replace(tables.portal, password=password, shared_password=shared),
    )


def _check_runtime(s: Settings) -> None:
    """Refuse to serve or work with anything missing that a real order would need."""
    required = (
        ("PC_API_KEY", s.powercode.api_key is None, "set it to the PowerCode API key"),
        (
            "PC_URL",
            not s.powercode.api_url,
            "set it to the PowerCode web address, e.g. https://pc.example.net:444",
        ),
        ("UTOPIA_API_KEY", s.utopia.api_key is None, "set it to the API key UTOPIA issued"),
        ("MAIL_SERVER", not s.mail.server, "set it to the SMTP relay host name"),
        ("EMAIL_SENDER", not s.mail.sender, "set it to the From address, e.g. noreply@isp.net"),
        (
            "EMAIL_RECIPIENTS",
            not s.mail.recipients,
            "set it to the staff addresses, separated by commas",
        ),
        (
            "SECRET_KEY",
            s.web.secret_key is None,
            f"set it to 16+ random characters, e.g. from {_RANDOM_HINT}",
        ),
    )
    for name, missing, fix in required:
        if missing:
            _fail(name, "is not set", fix)
    if s.web.secret_key is not None and len(s.web.secret_key.reveal()) < 16:
        _fail(
            "SECRET_KEY",
            "is shorter than 16 characters",
            f"use 16+ random characters, e.g. from {_RANDOM_HINT}",
        )
    # Signed callbacks authenticate on their own, so the token is not needed with them.
    if (
        s.web.callback_token is None
        and not s.web.guard.signing_secrets
        and not s.web.allow_unauthenticated_callbacks
    ):
        _fail(
            "UTOPIA_CALLBACK_TOKEN",
            "is not set",
            "set it (16+ random characters) and register the callback URL with ?token=..., "
            "or set CALLBACK_SIGNING_SECRETS for a sender that signs, "
            "or set ALLOW_UNAUTHENTICATED_CALLBACKS=true to accept unauthenticated callbacks",
        )
    if not s.provisioning.plans:
        _fail(
            "[plans]",
            "no UTOPIA plan is mapped to a PowerCode service",
            "add a [plans] table to the config file or set SERVICE_PLAN_250MBPS_ID",
        )
    portal = s.provisioning.portal
    if portal.password == "shared" and portal.shared_password is None:  # noqa: S105
        _fail(
            "CUSTOMER_PORTAL_PASSWORD",
            'is not set but [portal] password = "shared" needs it',
            'set it, or use password = "random"',
        )
    if s.mail.username and s.mail.password is None:
        _fail("MAIL_PASSWORD", "is not set but MAIL_USERNAME is", "set both or neither")
    if s.mail.password is not None and not s.mail.username:
        _fail("MAIL_USERNAME", "is not set but MAIL_PASSWORD is", "set both or neither")


class _Table:
    """One optional TOML table whose keys are checked against the allowed ones."""

    def __init__(self, document: Mapping[str, object], name: str, origin: str) -> None:
        self._name = name
        self._origin = origin
        raw = document.get(name, {})
        self._values: dict[str, object] = dict(raw) if isinstance(raw, dict) else {}
        allowed = _TABLE_KEYS[name]
        unknown = sorted(set(self._values) - allowed) if allowed else []
        if unknown:
            _fail(
                self.label(unknown[0]),
                "unknown key",
                f"use one of {', '.join(sorted(allowed))} or remove it",
            )

    def label(self, key: str) -> str:
        return f"[{self._name}] {_show_key(key)} (in {self._origin})"

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def __getitem__(self, key: str) -> object:
        return self._values[key]

    def items(self) -> list[tuple[str, object]]:
        return list(self._values.items())

    def get(self, key: str, convert: Callable[[str, object], T], default: T) -> T:
        if key not in self._values:
            return default
        return convert(self.label(key), self._values[key])


# --- converters: (label, raw value) -> typed value, or SettingsError ------------------------------


def _fail(name: str, problem: str, fix: str) -> NoReturn:
    message = f"{name}: {problem}; {fix}"
    raise SettingsError(" ".join(message.splitlines()))


def _show(value: object) -> str:
    """A non-secret value for a message: quoted, escaped onto one line, and kept short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _show_key(key: str) -> str:
    """A TOML key as it would be written in the file, quoted when it needs quotes."""
    if _SIMPLE_KEY_RE.fullmatch(key):
        return key
    quoted = json.dumps(key)
    return quoted if len(quoted) <= 80 else quoted[:77] + '..."'


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, str):
        return "text"
    return "a date or time"


def _to_text(label: str, raw: object) -> str:
    return _checked_text(label, raw).strip()


def _checked_text(label: str, raw: object) -> str:
    """The raw text if it is a string that fits on one line and can reach the OS; never echoed."""
    if not isinstance(raw, str):
        _fail(label, f"expected text, got {_kind(raw)}", "write it as a quoted string")
    if any(char in _FORBIDDEN_CHARS for char in raw):
        _fail(label, "contains a line break or NUL character", "put the value on one line")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        _fail(label, "is not valid UTF-8 text", "retype the value")
    return raw


def _to_nonempty_text(label: str, raw: object) -> str:
    text = _to_text(label, raw)
    if not text:
        _fail(label, "is empty", "give it a value or remove it")
    return text


def _to_secret(label: str, raw: object) -> Secret:
    # Never echo the value: a message may end up in a log, a terminal or a ticket.
    value = _checked_text(label, raw).strip()
    if not value:
        _fail(label, "is empty", "set a real value or remove the line")
    folded = value.casefold()
    if (
        folded in _PLACEHOLDER_WORDS
        or folded.startswith(_PLACEHOLDER_PREFIXES)
        or (folded.startswith("<") and folded.endswith(">"))
    ):
        _fail(label, "looks like a placeholder", "set a real value or remove the line")
    return Secret(value)


def _to_int(label: str, raw: object, *, low: int, high: int | None = None) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and _INT_RE.fullmatch(raw.strip()):
        value = int(raw.strip())
    else:
        _fail(label, f"{_show(raw)} is not a whole number", f"use a number {_range(low, high)}")
    if value < low or (high is not None and value > high):
        _fail(label, f"{value} is out of range", f"use a number {_range(low, high)}")
    return value


def _range(low: int, high: int | None) -> str:
    return f"from {low} to {high}" if high is not None else f"of at least {low}"


def _to_id(label: str, raw: object) -> int:
    return _to_int(label, raw, low=1, high=_MAX_ID)


def _to_days(label: str, raw: object) -> int:
    return _to_int(label, raw, low=0, high=366)


def _to_positive_float(label: str, raw: object, *, high: float | None = None) -> float:
    if isinstance(raw, float) or (isinstance(raw, int) and not isinstance(raw, bool)):
        # A huge TOML integer would overflow float(); anything this big is out of range anyway.
        value = float(raw) if abs(raw) < 1e15 else math.inf
    elif isinstance(raw, str) and _FLOAT_RE.fullmatch(raw.strip()):
        value = float(raw.strip())
    else:
        _fail(label, f"{_show(raw)} is not a number", "use a number of seconds, e.g. 30 or 2.5")
    limit = f" and at most {high:g}" if high is not None else ""
    if not math.isfinite(value) or value <= 0 or (high is not None and value > high):
        _fail(label, f"{_show(raw)} is out of range", f"use a number above 0{limit}")
    return value


def _to_bool(label: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().casefold()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    _fail(label, f"{_show(raw)} is not true or false", "use true/false, yes/no, on/off or 1/0")


def _to_choice(label: str, raw: object, choices: tuple[C, ...]) -> C:
    word = _to_text(label, raw).casefold()
    for choice in choices:
        if choice.casefold() == word:
            return choice
    _fail(label, f"{_show(raw)} is not allowed", f"use one of {', '.join(choices)}")


def _choice_of(choices: tuple[C, ...]) -> Callable[[str, object], C]:
    def convert(label: str, raw: object) -> C:
        return _to_choice(label, raw, choices)

    return convert


def _optional_choice(v: _Variables, name: str, choices: tuple[str, ...]) -> str | None:
    return None if v.text(name) is None else v.choice(name, choices[0], choices)


def _to_ids(label: str, raw: object) -> tuple[int, ...]:
    """Positive ids from a TOML list, a single number, or comma-separated text."""
    items: list[object]
    if isinstance(raw, list):
        items = list(raw)
    elif isinstance(raw, str):
        items = [item for item in (part.strip() for part in raw.split(",")) if item]
    else:
        items = [raw]
    ids = tuple(_to_id(label, item) for item in items)
    for index, value in enumerate(ids):
        if value in ids[:index]:
            _fail(label, f"id {value} is listed twice", "list each id once")
    return ids


def _to_always_services(label: str, raw: object) -> tuple[tuple[int, int], ...]:
    """Always-added services as (id, quantity): ids, or tables `{ service = 172, quantity = 2 }`."""
    items = raw if isinstance(raw, list) else [raw]
    result: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, dict):
            if set(item) - {"service", "quantity"} or "service" not in item:
                _fail(
                    label,
                    f"has an entry {_show(item)}",
                    "write a service id, or { service = 172, quantity = 2 } for a fee priced "
                    "per unit",
                )
            quantity = _to_int(label, item.get("quantity", 1), low=1, high=1000)
            pairs = [(_to_id(label, item["service"]), quantity)]
        else:
            pairs = [(service_id, 1) for service_id in _to_ids(label, item)]
        for service_id, quantity in pairs:
            if any(service_id == known for known, _ in result):
                _fail(label, f"id {service_id} is listed twice", "list each id once")
            result.append((service_id, quantity))
    return tuple(result)


def _to_user_name(label: str, raw: object) -> str:
    """A PowerCode user as named in the ticket: text such as "Sales", or a number."""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        _fail(label, f"is {_kind(raw)}", 'write the user\'s name in quotes, e.g. "Sales"')
    return _to_nonempty_text(label, str(raw))


def _to_url(label: str, raw: object) -> str:
    text = _to_text(label, raw)
    shown = _show(_mask_credentials(text))
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - parsing the port is what validates it
    except ValueError:
        _fail(label, f"{shown} is not a valid URL", "use http(s)://host[:port][/path]")
    if parts.scheme.lower() not in ("http", "https"):
        _fail(label, f"{shown} must start with http:// or https://", "fix the scheme")
    if parts.username is not None or parts.password is not None:
        _fail(label, "contains a user name or password", "put credentials in the API key setting")
    if not parts.hostname or any(char.isspace() or not char.isprintable() for char in text):
        _fail(label, f"{shown} is not a valid URL", "use http(s)://host[:port][/path]")
    return text


def _to_host(label: str, host: str) -> str:
    if any(char.isspace() or not char.isprintable() or char in "/@" for char in host):
        _fail(label, f"{_show(host)} is not a host name", "use a name or address like mail.isp.net")
    return host


def _to_address(label: str, text: str) -> str:
    if not _ADDRESS_RE.fullmatch(text) or text.endswith("."):
        _fail(label, f"{_show(text)} is not an e-mail address", "use addresses like ops@isp.net")
    return text


def _to_sender(label: str, text: str) -> str:
    """A bare address or `Display Name <address>`."""
    address = text
    if text.endswith(">") and "<" in text:
        address = text[text.rfind("<") + 1 : -1]
    _to_address(label, address)
    return text


def _to_filename(label: str, raw: object) -> str:
    name = _to_nonempty_text(label, raw)
    if "/" in name or "\\" in name or name in (".", ".."):
        _fail(label, f"{_show(name)} is not a plain file name", "name a file inside the folder")
    return name


def _to_template(label: str, raw: object) -> str:
    text = _to_nonempty_text(label, raw)
    try:
        Environment(autoescape=True).parse(text)
    except TemplateSyntaxError as exc:
        _fail(label, f"is not a valid template ({exc.message})", "fix the {{ }} / {% %} syntax")
    except (TemplateError, RecursionError):
        _fail(label, "is not a valid template", "fix the {{ }} / {% %} syntax")
    return text


def _is_readable_file(path: Path) -> bool:
    try:
        with path.open("rb"):
            return True
    except (OSError, ValueError):  # missing, a folder, no permission, a name too long...
        return False


def _check_unique_plan(seen: dict[str, str], text: str, label: str) -> None:
    key = plan_key(text)
    if key in seen:
        _fail(
            label,
            f"is the same plan as {_show(seen[key])} (case and spaces are ignored)",
            "keep one of them",
        )
    seen[key] = text


def _mask_credentials(url: str) -> str:
    """Hide a password (or a lone token) written into a URL before showing it."""
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    shown_user = f"{user}:{_MASK}" if colon else _MASK
    return f"{head}{sep}{shown_user}@{host}"


# --- describing ----------------------------------------------------------------------------------


def _describe(obj: object, prefix: str, lines: list[tuple[str, str]]) -> None:
    if not is_dataclass(obj) or isinstance(obj, type):
        return
    for item in fields(obj):
        name = f"{prefix}{item.name}"
        value = getattr(obj, item.name)
        if is_dataclass(value) and not isinstance(value, type):
            _describe(value, f"{name}.", lines)
        elif name == "database_url":
            lines.append((name, _mask_credentials(str(value))))
        else:
            lines.append((name, _display(value)))


def _display(value: object) -> str:
    if isinstance(value, Secret):
        return _MASK
    if value is None or value == "":
        return _NOT_SET
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, PlanMapping):
        return f"{value.utopia_text!r} -> {value.service_id}"
    if isinstance(value, tuple):
        return ", ".join(_display(item) for item in value) if value else "(none)"
    return str(value)
