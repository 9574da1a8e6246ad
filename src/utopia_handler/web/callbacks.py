"""POST /api-callback: authenticate, validate, store durably, answer. No outside call here.

A 2xx answer means the callback is committed to the database. When the database cannot take it
the answer is 503, so UTOPIA (or whoever sends) tries again later.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from utopia_handler.clients.utopia_orders import BadOrderRef, check_order_ref
from utopia_handler.logs import log_event
from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.models import CallbackOutcome
from utopia_handler.text import has_unsafe_characters
from utopia_handler.timeutil import utcnow
from utopia_handler.web import security

bp = Blueprint("callbacks", __name__)
log = logging.getLogger("utopia_handler.web.callbacks")

FIELD_LIMITS = {"orderref": 64, "msg": 200, "event": 200}


class BadCallback(Exception):
    """The request body is not a callback we accept; the message says what is wrong."""


def parse_callback(body: bytes) -> tuple[str, str, str | None]:
    """The (orderref, msg, event) of a callback body, or BadCallback saying what is wrong."""
    try:
        # UTF-8 only: json.loads would also take UTF-16 and UTF-32 bytes, which cannot be stored.
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadCallback("the body is not UTF-8 text") from None
    try:
        payload: Any = json.loads(text)
    except RecursionError:
        raise BadCallback("the body is nested too deeply") from None
    except ValueError:
        raise BadCallback("the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadCallback("the body must be a JSON object")
    values: dict[str, str | None] = {}
    for name, limit in FIELD_LIMITS.items():
        value = payload.get(name)
        if value is None and name == "event":
            values[name] = None
            continue
        if not isinstance(value, str):
            raise BadCallback(
                f"'{name}' must be a string" if name in payload else f"'{name}' is missing"
            )
        value = value.strip()
        if not value and name != "event":
            raise BadCallback(f"'{name}' must not be empty")
        if len(value) > limit:
            raise BadCallback(f"'{name}' is longer than {limit} characters")
        # C0 and C1 controls and the Unicode line/paragraph separators can start a fake line in
        # a log file or a terminal that shows these values (found by the fuzz tests); invisible
        # format characters hide what a value says; a lone surrogate (a "\ud800" escape) is
        # not text at all and cannot be stored.
        if name == "orderref":
            # The one rule for order references; it lets no control or invisible character by.
            try:
                value = check_order_ref(value)
            except BadOrderRef as problem:
                raise BadCallback(f"'orderref' is not an order reference: {problem}") from None
        elif has_unsafe_characters(value):
            raise BadCallback(
                f"'{name}' contains control characters (or invisible or invalid ones)"
            )
        values[name] = value or None
    order_ref, msg = values["orderref"], values["msg"]
    assert order_ref is not None and msg is not None
    return order_ref, msg, values["event"]


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), status


def _read_body(limit: int) -> bytes | None:
    """The whole request body, or None when it is longer than `limit` bytes.

    One byte more than the limit is read, whether the body has a Content-Length or comes
    chunked: a reader that stops at the limit cannot tell a body of exactly the limit from a
    longer one cut there (gunicorn hands chunked bodies on, and Werkzeug's limit stops reading
    at the limit without complaint). Over a Content-Length of limit + 1, Werkzeug answers 413
    before reading.
    """
    request.max_content_length = limit + 1
    body = request.get_data(cache=False)
    return None if len(body) > limit else body


def _authenticated(runtime: Runtime, signed: bool = False) -> bool:
    expected = runtime.settings.web.callback_token
    if expected is None:
        # Start-up refuses this unless signatures or ALLOW_UNAUTHENTICATED_CALLBACKS=true stand in.
        return signed or runtime.settings.web.allow_unauthenticated_callbacks
    given = request.headers.get("X-Callback-Token") or request.args.get("token") or ""
    return hmac.compare_digest(given.encode(), expected.reveal().encode())


def _refuse(
    refusal: security.Refusal, source: object, *, log_it: bool = True
) -> tuple[Response, int]:
    if log_it:
        log_event(log, "callback.refused", logging.WARNING, reason=refusal.reason, remote=source)
    response = jsonify({"error": refusal.message})
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response, refusal.status


@bp.post("/api-callback")
def api_callback() -> tuple[Response, int]:
    runtime: Runtime = current_app.extensions["runtime"]
    # Checks run cheapest-first: source, rate, size, token and signature, content, then store.
    gate = security.gate_for(current_app)
    source = gate.source(request.remote_addr, request.headers.getlist("X-Forwarded-For"))
    refusal, worth_logging = gate.admit(source)
    if refusal is not None:
        return _refuse(refusal, source, log_it=worth_logging)
    body = _read_body(runtime.settings.web.max_body_bytes)
    if body is None:
        return _error(413, "the body is larger than the limit")
    if not _authenticated(runtime, gate.signs):
        log_event(log, "callback.unauthorized", logging.WARNING, remote=source)
        return _error(401, "missing or wrong callback token")
    signature_headers = {name: request.headers.get(name, "") for name in security.SIGNED_HEADERS}
    refusal = gate.check_signature(signature_headers, body)
    if refusal is not None:
        return _refuse(refusal, source)
    try:
        order_ref, msg, event = parse_callback(body)
    except BadCallback as problem:
        log_event(
            log,
            "callback.rejected",
            logging.WARNING,
            remote=request.remote_addr,
            problem=str(problem),
        )
        return _error(400, str(problem))
    record = functools.partial(
        queries.record_callback,
        order_ref=order_ref,
        msg=msg,
        event=event,
        body=body.decode("utf-8"),  # parse_callback checked it is UTF-8
        remote_addr=str(source) if source is not None else request.remote_addr,
        now=utcnow(),
        shadow=runtime.settings.shadow_mode,
        routes=runtime.settings.routing.messages,
    )
    try:
        # Wait only briefly for a busy database: a quick 503 lets the sender retry, a hang does not.
        # Callbacks arriving together share one commit; each is answered after the one holding it.
        wait = runtime.settings.web.guard.store_wait_seconds
        outcome = runtime.store.write_together(record, wait_seconds=wait)
    except SQLAlchemyError as error:
        log_event(
            log, "callback.not_stored", logging.ERROR, order=order_ref, error=type(error).__name__
        )
        response = jsonify({"error": "the callback could not be stored; please send it again"})
        response.headers["Retry-After"] = "30"
        return response, 503
    if outcome in (CallbackOutcome.QUEUED, CallbackOutcome.TEST_QUEUED, CallbackOutcome.ROUTED):
        runtime.wakeup.set()
    log_event(log, "callback.stored", order=order_ref, outcome=outcome.value)
    return jsonify({"status": outcome.value, "orderref": order_ref}), 200
