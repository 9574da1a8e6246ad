"""Logging in and out, the session check before every console page, and what every page gets."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import (
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from utopia_handler import accounts
from utopia_handler.logs import log_event
from utopia_handler.timeutil import utcnow
from utopia_handler.web.console.common import (
    SECURITY_HEADERS,
    bp,
    current_user,
    runtime,
    safe_target,
    template_globals,
)
from utopia_handler.web.security import client_address

log = logging.getLogger("utopia_handler.web.console")

PUBLIC_ENDPOINTS = frozenset({"console.login", "console.static"})


@bp.before_request
def load_user() -> ResponseReturnValue | None:
    """Find the session's user; send everyone else to the login page."""
    g.user = None
    if request.endpoint == "console.static":
        return None  # stylesheets and scripts are public and need no database read
    token = session.get("token")
    if isinstance(token, str):
        g.user = accounts.session_user(runtime().store, token, utcnow())
        if g.user is None:
            session.pop("token", None)  # ended, expired, or the user was disabled
    if request.endpoint in PUBLIC_ENDPOINTS or g.user is not None:
        return None
    if request.method == "GET":
        target = request.full_path.rstrip("?")
        return redirect(url_for("console.login", next=target if target != "/" else None))
    flash("Your session has ended; log in again.", "error")
    return redirect(url_for("console.login"), 303)


@bp.after_request
def security_headers(response: BaseResponse) -> BaseResponse:
    response.headers.update(SECURITY_HEADERS)
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def page_names() -> dict[str, Any]:
    return {
        **template_globals(),
        "user": g.get("user"),
        "shadow_mode_on": runtime().settings.shadow_mode,
    }


def _page_before() -> str | None:
    """The console page the browser was on (its Referer), to return to after logging in."""
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc != request.host:
        return None
    target = referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return safe_target(target) if referrer.path != "/login" else None


def _logged_out_form() -> ResponseReturnValue | None:
    """A form sent after its session ended (logged out in another tab, or timed out) lacks a
    valid security token: that is no broken page, so say what happened and offer to log in."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    token = session.get("token")
    if isinstance(token, str) and accounts.session_user(runtime().store, token, utcnow()):
        return None
    flash(
        "You were logged out (in another tab, or after a long pause), so that was not done. "
        "Log in to go back to where you were, then try again.",
        "error",
    )
    return redirect(url_for("console.login", next=_page_before()), 303)


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> ResponseReturnValue:
    code = error.code or 500
    if code == 400 and "CSRF" in (error.description or ""):
        logged_out = _logged_out_form()
        if logged_out is not None:
            return logged_out
        message = (
            "This form was not accepted: it is missing its security token or it has expired. "
            "Go back, reload the page and try again."
        )
    else:
        message = {
            401: "Log in to use the console.",
            403: "Your role does not allow this. Ask an admin if you need it.",
            404: "There is nothing here.",
        }.get(code, error.description or error.name)
    return render_template("console/error.html", code=code, message=message), code


@bp.errorhandler(SQLAlchemyError)
def store_error(error: SQLAlchemyError) -> ResponseReturnValue:
    log_event(log, "console.store_error", logging.ERROR, error=type(error).__name__)
    message = "The database does not answer right now. Try again in a minute."
    return render_template("console/error.html", code=503, message=message), 503


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    target = safe_target(request.values.get("next"))
    if request.method == "GET" and g.user is not None:
        return redirect(target or url_for("console.home"))
    error, status = None, 200
    if request.method == "POST":
        name = request.form.get("username", "")[:200]
        password = request.form.get("password", "")[:2000]
        # Behind a trusted proxy (TRUSTED_PROXIES) the throttle counts the real sender, so one
        # person's failures do not delay everybody who comes through nginx.
        source = client_address(
            request.remote_addr,
            request.headers.getlist("X-Forwarded-For"),
            runtime().settings.web.guard.trusted_proxies,
        )
        address = str(source) if source is not None else (request.remote_addr or "unknown")
        outcome = accounts.log_in(runtime().store, name, password, address, utcnow())
        if outcome.token is not None:
            session.clear()  # nothing from before the login carries over
            session["token"] = outcome.token
            return redirect(target or url_for("console.home"), 303)
        log_event(
            log,
            "console.login_refused",
            logging.WARNING,
            remote=address,
            throttled=outcome.throttled,
        )
        if outcome.retry_after is not None:
            seconds = outcome.retry_after
            page = render_template(
                "console/login.html",
                error="Too many failed log-ins for this user from this address. "
                f"Wait {seconds} second{'' if seconds == 1 else 's'}, then try again.",
                next=target,
            )
            return page, 429, {"Retry-After": str(seconds)}
        error, status = "Wrong user name or password (or the user is disabled).", 401
    return render_template("console/login.html", error=error, next=target), status


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    user = current_user()
    token = session.get("token")
    if isinstance(token, str):
        with runtime().store.write() as db:
            accounts.log_out(db, token, user.name, utcnow())
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("console.login"), 303)
