"""The operator console: server-rendered pages for office and support staff.

`init_app` adds it to the Flask app: secure session cookies, CSRF protection on every
state-changing request (the callback endpoint is exempt: it authenticates by token), security
headers, and the first admin from ADMIN_USER when no user exists yet.
"""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from utopia_handler import accounts
from utopia_handler.runtime import Runtime
from utopia_handler.web.console.common import bp

# Paths that authenticate by their own means (a token), not by a console session and CSRF token.
CSRF_EXEMPT_PATHS = ("/api-callback",)


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
    accounts.bootstrap_from_settings(runtime.store, runtime.settings.console)
