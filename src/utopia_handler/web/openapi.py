"""GET /openapi.json: an OpenAPI 3.1 description of the service's machine-facing HTTP API.

It describes the callback endpoint and the health checks, so a sender's developer (or a fuzzer)
knows every answer to expect. `/readyz` and `/metrics` are described only when this app serves
them; the operator console's pages are for people and stay out.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify

from utopia_handler.runtime import Runtime
from utopia_handler.store.models import CallbackOutcome
from utopia_handler.web.callbacks import FIELD_LIMITS

bp = Blueprint("openapi", __name__)

# JSON Schema has no "after trimming"; this pattern says "no control characters", which is what
# a sender must know. Surrounding spaces are trimmed and then the length is checked.
# Controls, line/paragraph separators and the common invisible format characters (the service
# refuses every Unicode format character; these are the ones a schema can list briefly).
_NO_CONTROL_CHARACTERS = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u200b-\\u200f"
    "\\u2028-\\u202e\\u2060-\\u206f\\ufeff]*$"
)


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before sending again.",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return response


def _text_field(limit: int, description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": limit,
        "pattern": _NO_CONTROL_CHARACTERS,
        "description": description,
    }


def _callback_operation(max_body_bytes: int) -> dict[str, Any]:
    optional_header = {"in": "header", "required": False, "schema": {"type": "string"}}
    return {
        "operationId": "receiveCallback",
        "summary": "Receive one UTOPIA order callback",
        "description": (
            "Authenticates (token and/or Standard Webhooks signature), validates, stores the "
            "callback durably and answers. A 200 means the callback is committed; anything else "
            "means nothing was stored and the sender should send it again (after Retry-After "
            "for 429 and 503). Checks run in this order: source allow-list (403), rate limit "
            f"(429), size limit of {max_body_bytes} bytes (413), token and signature (401), "
            "content (400), storage (503)."
        ),
        "parameters": [
            {
                "name": "token",
                "in": "query",
                "required": False,
                "description": "The callback token, as registered in the callback URL.",
                "schema": {"type": "string"},
            },
            {
                **optional_header,
                "name": "X-Callback-Token",
                "description": "The callback token, for senders that can set a header.",
            },
            {
                **optional_header,
                "name": "webhook-id",
                "description": "Standard Webhooks message id (signed callbacks only).",
            },
            {
                **optional_header,
                "name": "webhook-timestamp",
                "description": "Standard Webhooks send time, seconds since 1970; 5-minute window.",
            },
            {
                **optional_header,
                "name": "webhook-signature",
                "description": "Space-separated `v1,<base64 HMAC-SHA256>` signatures.",
            },
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Callback"}}},
        },
        "responses": {
            "200": {
                "description": "Stored (or recognised as a repeat of a stored callback).",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                },
            },
            "400": _error("The body is not a callback: the message says what is wrong."),
            "401": _error("Missing or wrong token, or a missing or invalid signature."),
            "403": _error("The source address is not in the allow-list."),
            "405": _error("Only POST is allowed."),
            "413": {
                **_error(f"The body is larger than {max_body_bytes} bytes."),
                # Far over the limit, the HTTP server refuses before the app reads anything.
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
                    "text/plain": {"schema": {"type": "string"}},
                },
            },
            "429": _error("Too many callbacks from this source.", retry_after=True),
            "503": _error("The database could not take the callback now.", retry_after=True),
        },
        "security": [{}, {"callbackToken": []}, {"callbackTokenHeader": []}],
    }


def _health_operation() -> dict[str, Any]:
    health = {"$ref": "#/components/schemas/Health"}
    return {
        "operationId": "health",
        "summary": "Liveness, and whether the database answers",
        "responses": {
            "200": {
                "description": "Alive; the database answers.",
                "content": {"application/json": {"schema": health}},
            },
            "503": {
                "description": "Alive, but the database does not answer.",
                "content": {"application/json": {"schema": health}},
            },
        },
    }


def _optional_operations(app: Flask) -> dict[str, Any]:
    """/readyz and /metrics, when this app serves them (the console adds them)."""
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    paths: dict[str, Any] = {}
    if "/readyz" in rules:
        paths["/readyz"] = {
            "get": {
                "operationId": "ready",
                "summary": "Ready to take traffic (database reachable and migrated)",
                "responses": {
                    "200": {"description": "Ready.", "content": {"application/json": {}}},
                    "503": {
                        "description": "Not ready: the database does not answer or is behind.",
                        "content": {"application/json": {}},
                    },
                },
            }
        }
    if "/metrics" in rules:
        paths["/metrics"] = {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (bearer METRICS_TOKEN, or loopback without a proxy)",
                "responses": {
                    "200": {"description": "Metrics.", "content": {"text/plain": {}}},
                    "401": _error("Missing or wrong bearer token."),
                    "403": _error("Not from loopback, and no METRICS_TOKEN is set."),
                    "503": _error("The database does not answer."),
                },
            }
        }
    return paths


def openapi_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `app`, as a dict."""
    runtime: Runtime = app.extensions["runtime"]
    outcomes = [outcome.value for outcome in CallbackOutcome]
    limits = FIELD_LIMITS
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "utopia-handler",
            "version": "1",
            "description": (
                "UTOPIA Fiber order callbacks in; PowerCode customers out, exactly once. "
                "Every error answer is JSON with an `error` string."
            ),
        },
        "paths": {
            "/api-callback": {"post": _callback_operation(runtime.settings.web.max_body_bytes)},
            "/healthz": {"get": _health_operation()},
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
                    },
                }
            },
            **_optional_operations(app),
        },
        "components": {
            "securitySchemes": {
                "callbackToken": {"type": "apiKey", "in": "query", "name": "token"},
                "callbackTokenHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Callback-Token",
                },
            },
            "schemas": {
                "Callback": {
                    "type": "object",
                    "required": ["orderref", "msg"],
                    "properties": {
                        "orderref": {
                            "type": "string",
                            "pattern": "^[Uu][Ii][Aa][0-9]{6}-[0-9]{6}$",
                            "description": "UTOPIA order reference: UIA, 6 digits, '-' and 6 "
                            "digits, e.g. UIA202511-038570 (stored upper-cased). Anything else "
                            "is refused with 400.",
                        },
                        "msg": _text_field(
                            limits["msg"],
                            "What happened: `Project New Order` starts provisioning, `Test` "
                            "sends a test e-mail, anything else is stored and acknowledged.",
                        ),
                        "event": {
                            **_text_field(limits["event"], "UTOPIA's event name (optional)."),
                            "type": ["string", "null"],
                            "minLength": 0,
                        },
                    },
                    "additionalProperties": True,
                },
                "Accepted": {
                    "type": "object",
                    "required": ["status", "orderref"],
                    "properties": {
                        "status": {"type": "string", "enum": outcomes},
                        "orderref": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "store"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok", "degraded"]},
                        "store": {"type": "string", "enum": ["ok", "unavailable"]},
                    },
                },
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(openapi_document(current_app))
