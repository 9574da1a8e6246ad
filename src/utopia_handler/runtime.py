"""The long-lived parts of one process (store, clients, mailer, renderers), built from settings.

`build_runtime` is called once per process (serve, web worker, worker, demo, tests) and the result
is passed down: to the Flask app by `app.create_app`, to the worker, to the CLI. It knows nothing
of the web side, so the web modules can name `Runtime` without importing the app factory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from utopia_handler.clients.powercode import PowerCodeClient
from utopia_handler.clients.utopia import UtopiaClient
from utopia_handler.config_store import StoredSettings
from utopia_handler.notify.messages import EmailRenderer
from utopia_handler.notify.smtp import SmtpSender
from utopia_handler.provisioning import Provisioner
from utopia_handler.settings import Settings
from utopia_handler.shadow import ShadowPowerCodeClient, ShadowRecorder, ShadowUtopiaClient
from utopia_handler.site_panel import SiteLookup
from utopia_handler.store.db import Store
from utopia_handler.tickets import BUILT_IN_MESSAGE_TEMPLATE, TicketRenderer
from utopia_handler.timeutil import utcnow


@dataclass
class Runtime:
    """The long-lived parts of one process, built once from settings and passed down."""

    settings: Settings
    store: Store
    utopia: UtopiaClient
    powercode: PowerCodeClient
    mailer: SmtpSender
    tickets: TicketRenderer
    emails: EmailRenderer
    provisioner: Provisioner
    # The ticket the routing table opens for a UTOPIA message (its own template and summary).
    message_tickets: TicketRenderer
    # Set when new work is stored, so an in-process worker starts at once instead of polling.
    wakeup: threading.Event = field(default_factory=threading.Event)
    _site_lookup: SiteLookup | None = field(default=None, repr=False)

    def site_lookup(self) -> SiteLookup:
        """Read-only, short-timeout look-ups for the site panel and tools (made on first use)."""
        if self._site_lookup is None:
            self._site_lookup = SiteLookup.from_settings(self.settings)
        return self._site_lookup

    def close(self) -> None:
        if self._site_lookup is not None:
            self._site_lookup.close()
        self.utopia.close()
        self.powercode.close()
        self.store.close()


def build_runtime(settings: Settings) -> Runtime:
    """Create the store, clients and renderers described by the settings."""
    store = Store(settings.database_url)
    utopia_key = settings.utopia.api_key.reveal() if settings.utopia.api_key else ""
    pc_key = settings.powercode.api_key.reveal() if settings.powercode.api_key else ""
    utopia: UtopiaClient
    if settings.shadow_mode:
        # Look-ups as usual; suspend, changespeed and other writes recorded instead of sent.
        utopia = ShadowUtopiaClient(
            settings.utopia.url,
            utopia_key,
            ShadowRecorder(store, utcnow),
            timeouts=settings.utopia.timeouts,
            network=settings.utopia.network,
        )
    else:
        utopia = UtopiaClient(
            settings.utopia.url,
            utopia_key,
            timeouts=settings.utopia.timeouts,
            network=settings.utopia.network,
        )
    # Plan mapping, always-added services, ticket template and PowerCode's learned replies, as
    # saved in the console or by `check-config --live`: read when needed, so all processes agree.
    stored = StoredSettings(store, settings.provisioning)
    powercode: PowerCodeClient
    if settings.shadow_mode:
        # Real reads; every write recorded in the database instead of sent (shadow.py).
        powercode = ShadowPowerCodeClient(
            settings.powercode.api_url,
            settings.powercode.uapi_url,
            pc_key,
            ShadowRecorder(store, utcnow),
            verify=settings.powercode.verify,
            timeouts=settings.powercode.timeouts,
            learned=stored.learned_replies,
        )
    else:
        powercode = PowerCodeClient(
            settings.powercode.api_url,
            settings.powercode.uapi_url,
            pc_key,
            verify=settings.powercode.verify,
            timeouts=settings.powercode.timeouts,
            learned=stored.learned_replies,
        )
    mail = settings.mail
    mailer = SmtpSender(
        mail.server,
        mail.port,
        security=mail.security,
        username=mail.username,
        password=mail.password.reveal() if mail.password else None,
        timeout=mail.timeout,
    )
    ticket_settings = settings.provisioning.ticket
    tickets = TicketRenderer(
        Path(ticket_settings.template_dir) / ticket_settings.template_file,
        ticket_settings.summary,
        stored_source=stored.ticket_template,
    )
    message_tickets = TicketRenderer(
        BUILT_IN_MESSAGE_TEMPLATE,
        ticket_settings.message_summary,
        stored_source=stored.message_ticket_template,
    )
    provisioner = Provisioner(
        utopia=utopia,
        powercode=powercode,
        settings=settings.provisioning,
        powercode_settings=settings.powercode,
        tickets=tickets,
        current_settings=stored.provisioning,
    )
    return Runtime(
        settings=settings,
        store=store,
        utopia=utopia,
        powercode=powercode,
        mailer=mailer,
        tickets=tickets,
        emails=EmailRenderer(settings.powercode),
        provisioner=provisioner,
        message_tickets=message_tickets,
    )
