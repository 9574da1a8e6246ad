"""The service under test, run as a child process: `python -m bench.target serve|web`.

It is the real service with one addition, `POST /bench/noop`: it reads and validates a callback
exactly as `/api-callback` does, then answers without storing. Served by the same server with the
same settings, it is the ceiling of the web stack.
"""

from __future__ import annotations

import sys
from typing import Any

from flask import Flask, Response, jsonify, request

from utopia_handler.settings import load_settings
from utopia_handler.web.callbacks import BadCallback, parse_callback


def add_noop(app: Flask) -> Flask:
    def noop() -> tuple[Response, int]:
        try:
            order_ref, _msg, _event = parse_callback(request.get_data(cache=False))
        except BadCallback as problem:
            return jsonify({"error": str(problem)}), 400
        return jsonify({"status": "noop", "orderref": order_ref}), 200

    app.add_url_rule("/bench/noop", "bench_noop", noop, methods=["POST"])
    csrf = app.extensions.get("csrf")
    if csrf is not None:  # like /api-callback, it authenticates by other means than a form
        csrf.exempt(noop)
    return app


def run_serve() -> None:
    from utopia_handler import server

    original = server.create_app

    def create_app_with_noop(runtime: Any) -> Flask:
        return add_noop(original(runtime))

    server.create_app = create_app_with_noop  # type: ignore[assignment]
    settings = load_settings()
    server.run_forever(settings, web=True, worker=settings.worker.run_in_serve)


def run_web() -> None:
    from utopia_handler import gunicorn_conf
    from utopia_handler.wsgi import create_wsgi_app

    class BenchApplication(gunicorn_conf.WebApplication):  # type: ignore[misc]
        def load(self) -> Any:
            return add_noop(create_wsgi_app(self.settings))

    settings = load_settings()
    original = gunicorn_conf.WebApplication
    gunicorn_conf.WebApplication = BenchApplication  # type: ignore[misc]
    try:
        gunicorn_conf.run_web(settings)
    finally:
        gunicorn_conf.WebApplication = original  # type: ignore[misc]


if __name__ == "__main__":
    {"serve": run_serve, "web": run_web}[sys.argv[1]]()
