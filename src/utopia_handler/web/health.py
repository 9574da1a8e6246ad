"""GET /healthz: the process is alive, and whether the database answers."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from utopia_handler.runtime import Runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    runtime: Runtime = current_app.extensions["runtime"]
    store_ok = runtime.store.ping()
    body = {
        "status": "ok" if store_ok else "degraded",
        "store": "ok" if store_ok else "unavailable",
    }
    return jsonify(body), 200 if store_ok else 503
