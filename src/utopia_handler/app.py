"""Wiring only: the Flask app from a runtime (see runtime.py), and start-up warnings.

Nothing happens at import time; every process (serve, web, worker, demo, tests) calls these.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter, Map

from utopia_handler.logs import log_event
from utopia_handler.runtime import Runtime, build_runtime
from utopia_handler.settings import Settings

# Runtime and build_runtime live in runtime.py; still importable from here for older callers.
__all__ = ["Runtime", "build_runtime", "create_app", "warn_about_risky_settings"]

log = logging.getLogger("utopia_handler.app")


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


class DatabaseId(IntegerConverter):
    """An id in a URL: digits for a whole number from 0 to 2**63 - 1 (a 64-bit database key)."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, max=2**63 - 1)


def create_app(runtime: Runtime) -> Flask:
    """The WSGI app: callback endpoint and health checks."""
    from utopia_handler.web import callbacks, health, openapi
    from utopia_handler.web.security import PeerRecorder

    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=runtime.settings.web.max_body_bytes,
        SECRET_KEY=(
            runtime.settings.web.secret_key.reveal() if runtime.settings.web.secret_key else None
        ),
        JSON_SORT_KEYS=False,
    )
    app.extensions["runtime"] = runtime
    # `<int:...>` in every route: a database id, at most 2**63 - 1. A longer number in a URL
    # (/orders/99999999999999999999) is "not found", not an error of the database driver.
    app.url_map.converters["int"] = DatabaseId
    # Outermost: the socket peer and any proxy header, as the server received them.
    app.wsgi_app = PeerRecorder(app.wsgi_app, runtime.settings.web.guard.trusted_proxies)  # type: ignore[method-assign]
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
