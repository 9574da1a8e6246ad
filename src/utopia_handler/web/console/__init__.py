"""The operator console: server-rendered pages for office and support staff.

`init_app` adds it to the Flask app: secure session cookies, CSRF protection on every
state-changing request (the callback endpoint is exempt: it authenticates by token), security
headers, and the first admin from ADMIN_USER when no user exists yet.
"""

from __future__ import annotations

from flask import Flask, g, jsonify, make_response, render_template, request, session
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import NotFound

from utopia_handler import accounts
from utopia_handler.runtime import Runtime
from utopia_handler.timeutil import utcnow
from utopia_handler.web.console.common import SECURITY_HEADERS, bp, template_globals
from utopia_handler.web.console.common import runtime as current_runtime

# Paths that authenticate by their own means (a token), not by a console session and CSRF token.
CSRF_EXEMPT_PATHS = ("/api-callback",)
# Paths machines call: an unknown address under them is answered in JSON, like the rest of them.
MACHINE_PATHS = ("/api-callback", "/healthz", "/readyz", "/metrics", "/openapi.json")


def _not_found(error: NotFound) -> ResponseReturnValue:
    """An unknown address: the console's page for people's browsers, JSON for machines."""
    # Browsers name text/html; scripts and monitors (curl, httpx: */*) get JSON as before.
    browser = any(kind == "text/html" for kind, _ in request.accept_mimetypes)
    if request.path.startswith(MACHINE_PATHS) or not browser:
        return jsonify({"error": error.description or error.name}), 404
    token = session.get("token")
    g.user = (
        accounts.session_user(current_runtime().store, token, utcnow())
        if isinstance(token, str)
        else None
    )
    page = render_template(
        "console/error.html",
        code=404,
        message="There is nothing here. The address may be mistyped, or the page was moved.",
        **template_globals(),
        user=g.user,
    )
    answer = make_response(page, 404)
    answer.headers.update(SECURITY_HEADERS)
    answer.headers["Cache-Control"] = "no-store"
    return answer


def init_app(app: Flask, runtime: Runtime) -> None:
    """Register the console on the app and make sure the first admin exists if configured."""
    # The view modules add their routes to `bp` when first imported.
    from utopia_handler.web.console import (  # noqa: F401
        admin,
        auth,
        orders,
        pages,
        provision,
        reconcile,
        shadow,
        site,
        subscriber,
    )

    app.config.update(
        SESSION_COOKIE_NAME="utopia_handler_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=runtime.settings.console.session_cookie_secure,
        # A form token lasts as long as the login; the server ends idle and old sessions itself.
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.register_blueprint(bp)
    csrf = CSRFProtect(app)
    for rule in app.url_map.iter_rules():
        if rule.rule in CSRF_EXEMPT_PATHS:
            csrf.exempt(app.view_functions[rule.endpoint])
    # Addresses outside every blueprint; the console's own 404s have its error handler already.
    app.register_error_handler(NotFound, _not_found)
    accounts.bootstrap_from_settings(runtime.store, runtime.settings.console)
