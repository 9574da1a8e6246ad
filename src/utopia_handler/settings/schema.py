"""What the settings are: frozen dataclasses, one per part of the service, and `Secret`.

Nothing here reads anything; `loading.py` fills these from the variables declared in `table.py`.
Defaults live on the fields; the README's settings table shows them from here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


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
    # The networks whose order lists are reconciled; empty: the one of `network`.
    networks: tuple[str, ...] = ()
    timeouts: Timeouts = field(default_factory=Timeouts)

    def reconciled_networks(self) -> tuple[str | None, ...]:
        """Each network to ask for its order list; None means a call without `network`."""
        return self.networks or (self.network,)


@dataclass(frozen=True)
class ReconcileSettings:
    """Reconciliation with UTOPIA's order list: whether, how often, and when staff are alerted."""

    enabled: bool = True
    interval_seconds: int = 900
    # Staff are e-mailed once when the last run that read every list is older than this.
    alert_seconds: float = 24 * 3600.0


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
    # The summary of a ticket the routing table opens for a UTOPIA message (`ticket` action).
    message_summary: str = "UTOPIA: {{ msg }} ({{ order_ref }})"


RouteAction = Literal["ignore", "notify", "hold", "ticket", "note"]


@dataclass(frozen=True)
class MessageRoute:
    """One row of the routing table: which UTOPIA `msg` it takes, and the one action it gets.

    `match` is the text as UTOPIA sends it (case and spaces ignored); `pattern` a regular
    expression the whole message must match (case ignored). Exactly one of them is set.
    """

    action: RouteAction
    match: str | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class RoutingSettings:
    """The routing table of UTOPIA messages other than a new order and a test, in file order."""

    messages: tuple[MessageRoute, ...] = ()


InvoicePreference = Literal["Email", "Print", "Both", "None"]
PortalUsername = Literal["email", "site_id", "none"]
PortalPassword = Literal["shared", "random", "none"]
UnmappedPlan = Literal["hold", "skip"]


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
    username: PortalUsername = "email"
    password: PortalPassword = "random"  # noqa: S105 - a policy name
    shared_password: Secret | None = None


@dataclass(frozen=True)
class ProvisioningSettings:
    plans: tuple[PlanMapping, ...] = ()
    always_services: tuple[int, ...] = ()
    # (service id, quantity) for always-added services priced per unit; any other: quantity 1.
    service_quantities: tuple[tuple[int, int], ...] = ()
    unmapped_plan: UnmappedPlan = "hold"
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
class SubscriberSettings:
    """What the subscriber actions do on PowerCode's side; each side-effect can be turned off."""

    pc_status_changes: bool = True  # updateCustomerStatus with the statuses below
    pc_suspended_status: str = "Suspended"
    pc_active_status: str = "Active"
    pc_cancelled_status: str = "Inactive"
    pc_swap_service: bool = True  # change speed: addCustomerService replaces the internet service
    pc_cancel_ticket: bool = True  # cancel: a PowerCode ticket for staff
    pc_note: bool = True  # suspend, unsuspend, change speed: a line in the customer's notes
    # change speed: UTOPIA's product for each PowerCode internet service, (service id, product)
    speed_products: tuple[tuple[int, str], ...] = ()


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
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    powercode: PowerCodeSettings = field(default_factory=PowerCodeSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    provisioning: ProvisioningSettings = field(default_factory=ProvisioningSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    # Shadow mode: real reads, every write to PowerCode or UTOPIA recorded instead of sent, staff
    # e-mails only to `shadow_email_recipients` (none: to nobody), for a week beside the old handler.
    shadow_mode: bool = False
    shadow_email_recipients: tuple[str, ...] = ()
    subscriber: SubscriberSettings = field(default_factory=SubscriberSettings)
    # Where each value came from is reported by check-config; the files that were read, in order.
    sources: tuple[str, ...] = ()
