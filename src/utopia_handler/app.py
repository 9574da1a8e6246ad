"""Wiring only: build the runtime (store, clients, mailer, renderers) and the Flask app from settings.

Nothing happens at import time; every process (serve, web, worker, demo, tests) calls these.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from utopia_handler.clients.powercode import PowerCodeClient
from utopia_handler.clients.utopia import UtopiaClient
from utopia_handler.config_store import StoredSettings
from utopia_handler.logs import log_event
from utopia_handler.notify.messages import EmailRenderer
from utopia_handler.notify.smtp import SmtpSender
from utopia_handler.provisioning import Provisioner
from utopia_handler.settings import Settings
from utopia_handler.store.db import Store
from utopia_handler.tickets import TicketRenderer

log = logging.getLogger("utopia_handler.app")


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
    # Set when new work is stored, so an in-process worker starts at once instead of polling.
    wakeup: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.utopia.close()
        self.powercode.close()
        self.store.close()


def build_runtime(settings: Settings) -> Runtime:
    """Create the store, clients and renderers described by the settings."""
    store = Store(settings.database_url)
    utopia_key = settings.utopia.api_key.reveal() if settings.utopia.api_key else ""
    pc_key = settings.powercode.api_key.reveal() if settings.powercode.api_key else ""
    utopia = UtopiaClient(
        settings.utopia.url,
        utopia_key,
        timeouts=settings.utopia.timeouts,
        network=settings.utopia.network,
    )
    # Plan mapping, always-added services, ticket template and PowerCode's learned replies, as
    # saved in the console or by `check-config --live`: read when needed, so all processes agree.
    stored = StoredSettings(store, settings.provisioning)
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
    )


def warn_about_risky_settings(settings: Settings) -> None:
    """Loud start-up warnings for settings that are allowed but unsafe."""
    if settings.web.callback_token is None and settings.web.allow_unauthenticated_callbacks:
        log_event(
            log,
            "startup.warning",
            logging.WARNING,
            problem="callbacks are accepted WITHOUT authentication (ALLOW_UNAUTHENTICATED_CALLBACKS)",
        )
    if not settings.powercode.verify_ssl and settings.powercode.ca_bundle is None:
        log_event(
            log,
            "startup.warning",
            logging.WARNING,
            problem="PowerCode TLS certificates are NOT verified (PC_VERIFY_SSL=false); "
            "set PC_CA_BUNDLE to the server's certificate instead",
        )


def create_app(runtime: Runtime) -> Flask:
    """The WSGI app: callback endpoint and health checks."""
    from utopia_handler.web import callbacks, health, openapi

    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=runtime.settings.web.max_body_bytes,
        SECRET_KEY=(
            runtime.settings.web.secret_key.reveal() if runtime.settings.web.secret_key else None
        ),
        JSON_SORT_KEYS=False,
    )
    app.extensions["runtime"] = runtime
    app.register_blueprint(callbacks.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    # The operator console, /metrics and /readyz; after the callback endpoint, which it exempts
    # from CSRF (the callback authenticates by token).
    from utopia_handler.web import console, metrics

    app.register_blueprint(metrics.bp)
    console.init_app(app, runtime)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        # Plain JSON for every HTTP error (404, 405, 413...): no HTML pages, no tracebacks.
        code = error.code or 500
        return jsonify({"error": error.description or error.name}), code

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[Response, int]:
        # The type only: an exception's message may carry request data.
        log_event(log, "web.error", logging.ERROR, error=type(error).__name__)
        return jsonify({"error": "internal error"}), 500

    return app
