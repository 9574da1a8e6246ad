"""`utopia-handler web`: the HTTP side under gunicorn, with the configuration shipped here.

The master process validates settings and applies migrations once, then forks WEB_WORKERS
processes; each builds its own runtime (database engine, HTTP clients) after the fork, because
connections must never be shared across a fork. SIGTERM stops taking connections and lets the
requests in hand finish for up to GRACEFUL_TIMEOUT seconds.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers.base import Worker as GunicornWorker

from utopia_handler.app import warn_about_risky_settings
from utopia_handler.logs import setup_logging
from utopia_handler.runtime import Runtime
from utopia_handler.settings import Settings
from utopia_handler.store.db import Store
from utopia_handler.wsgi import create_wsgi_app

# A callback does one database write and answers; 30 s covers the longest lock wait.
TIMEOUT = 30
GRACEFUL_TIMEOUT = 30  # systemd's TimeoutStopSec for the web unit must be longer than this
# No query string (it may hold the callback token) and no user agent or referrer.
SHM = "/dev/shm"  # noqa: S108 - tmpfs on purpose; not a file name anyone could predict
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """The gunicorn settings for these Settings."""
    host, port = settings.web.host, settings.web.port
    return {
        "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
        "workers": settings.web.workers,
        "worker_class": "gthread",
        "threads": settings.web.threads,
        "timeout": TIMEOUT,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "keepalive": 5,
        # Off: every worker builds its own engine and clients after the fork.
        "preload_app": False,
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "proc_name": "utopia-handler-web",
        # Only nginx on this host may say the request came in over https.
        "forwarded_allow_ips": "127.0.0.1,::1",
        # The control socket would live in $HOME, which the service user cannot write
        # (ProtectHome), and two instances on one host would fight over it.
        "control_socket_disable": True,
        # Heartbeat files on tmpfs: on a busy disk, fchmod can stall a worker into a timeout.
        "worker_tmp_dir": SHM if os.path.isdir(SHM) else None,
        "worker_exit": _close_runtime,
    }


class WebApplication(BaseApplication):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn driven from our settings instead of its command line."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__(prog="utopia-handler web")

    def load_config(self) -> None:
        for name, value in gunicorn_options(self.settings).items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        return create_wsgi_app(self.settings)


def run_web(settings: Settings) -> None:
    """Migrate once, then serve HTTP until SIGTERM (graceful) or SIGINT."""
    # stdout only: several processes cannot share one rotating log file; systemd keeps stdout.
    setup_logging(None, settings.log_level)
    store = Store(settings.database_url)
    try:
        store.migrate()
    finally:
        store.close()  # no connection may survive into the forked workers
    warn_about_risky_settings(settings)
    WebApplication(settings).run()


def _close_runtime(_server: Any, worker: GunicornWorker) -> None:
    app = getattr(worker, "wsgi", None)
    runtime: Runtime | None = getattr(app, "extensions", {}).get("runtime")
    if runtime is not None:
        runtime.close()
