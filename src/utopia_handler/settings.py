"""The one place that reads configuration: environment, `.env`, and an optional TOML file.

Precedence, highest first: process environment, `.env` in the working directory, the TOML file
(`UTOPIA_HANDLER_CONFIG=path` or `--config path`). The result is one immutable `Settings`.
A wrong or missing value raises `SettingsError` with one line naming the setting and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


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


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 5050
    secret_key: Secret | None = None
    callback_token: Secret | None = None
    allow_unauthenticated_callbacks: bool = False
    max_body_bytes: int = 64 * 1024
    threads: int = 8


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 900.0
    retry_deadline_seconds: float = 24 * 3600.0
    run_in_serve: bool = True


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
    """One UTOPIA plan text (compared ignoring case and spacing) and the PowerCode service it becomes."""

    utopia_text: str
    service_id: int


@dataclass(frozen=True)
class TicketSettings:
    template_dir: Path = Path("ticket_descriptions")
    template_file: str = "new_desc.txt"
    summary: str = "New UTOPIA install: {{ customer_name }} ({{ order_ref }})"
    category: int | None = None
    ticket_type: int | None = None
    status: int | None = None
    responsible_user: int | None = None
    responsible_group: int | None = None
    customer_viewable: bool = False


InvoicePreference = Literal["Email", "Print", "Both", "None"]


@dataclass(frozen=True)
class CustomerDefaults:
    tax_zone_id: int | None = None
    invoice_preference: InvoicePreference = "Email"
    bill_day: str = "Activation Date"
    due_by_days: int | None = None
    grace_period_days: int = 10


@dataclass(frozen=True)
class PortalPolicy:
    username: Literal["email", "site_id", "none"] = "email"
    password: Literal["shared", "random", "none"] = "random"
    shared_password: Secret | None = None


@dataclass(frozen=True)
class ProvisioningSettings:
    plans: tuple[PlanMapping, ...] = ()
    always_services: tuple[int, ...] = ()
    unmapped_plan: Literal["hold", "skip"] = "hold"
    tag_ids: tuple[int, ...] = ()
    ticket: TicketSettings = field(default_factory=TicketSettings)
    customer: CustomerDefaults = field(default_factory=CustomerDefaults)
    portal: PortalPolicy = field(default_factory=PortalPolicy)


@dataclass(frozen=True)
class Settings:
    database_url: str
    data_dir: Path
    log_file: Path
    log_level: str = "INFO"
    web: WebSettings = field(default_factory=WebSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    utopia: UtopiaSettings = field(default_factory=UtopiaSettings)
    powercode: PowerCodeSettings = field(default_factory=PowerCodeSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    provisioning: ProvisioningSettings = field(default_factory=ProvisioningSettings)
    # Where each value came from is reported by check-config; the files that were read, in order.
    sources: tuple[str, ...] = ()
