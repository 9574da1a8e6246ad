"""Run the HTTP side on waitress (a production WSGI server) and, optionally, a worker beside it.

`ServiceHandle` runs both in background threads of this process: the demo and the tests use it.
`serve` (run_forever) runs its web side the same way and its worker in a child process
(worker_process.py), so a busy worker never slows acknowledgements.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import threading
from types import FrameType

from waitress import wasyncore
from waitress.server import create_server

from utopia_handler.app import create_app, warn_about_risky_settings
from utopia_handler.logs import log_event, setup_logging
from utopia_handler.runtime import Runtime, build_runtime
from utopia_handler.settings import Settings
from utopia_handler.worker import Worker
from utopia_handler.worker_process import WorkerChild

log = logging.getLogger("utopia_handler.server")


class ServiceHandle:
    """The web server and (optionally) a worker of one process, started and stopped together."""

    def __init__(
        self, runtime: Runtime, *, web: bool = True, worker: bool = True, port: int | None = None
    ) -> None:
        self.runtime = runtime
        settings = runtime.settings.web
        self.app = create_app(runtime)
        self._server = (
            create_server(
                self.app,
                host=settings.host,
                port=settings.port if port is None else port,
                threads=settings.threads,
                ident="utopia-handler",
                # X-Forwarded-* reach the app, whose outermost layer (web/security.py's
                # PeerRecorder) notes that they came and drops them unless the peer is one of
                # TRUSTED_PROXIES: as under gunicorn. Dropped here, a request forwarded by a proxy
                # on this machine would look like a direct local one (/metrics).
                clear_untrusted_proxy_headers=False,
                channel_timeout=30,
                max_request_body_size=settings.max_body_bytes + 1024,
            )
            if web
            else None
        )
        self.worker = Worker(runtime, wakeup=runtime.wakeup) if worker else None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.effective_host, self._server.effective_port
        return f"http://{host}:{port}"

    def start(self) -> ServiceHandle:
        if self.worker is not None:
            self.worker.start()
        if self._server is not None:
            self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)
            self._thread.start()
            log_event(log, "web.listening", url=self.url)
        return self

    def stop(self) -> None:
        """Stop taking requests, then let the worker finish or release what it holds."""
        server = self._server
        if server is not None and self._thread is not None:
            # Closing sockets must happen in waitress's own loop thread; its trigger runs code there.
            server.trigger.pull_trigger(lambda: wasyncore.dispatcher.close(server))
            server.task_dispatcher.shutdown(timeout=30)  # requests in hand finish
            # The loop may have closed every channel, its trigger included, once the listening
            # socket went: then there is nothing left to close (seen as EBADF under load).
            with contextlib.suppress(OSError):
                server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
            self._thread.join(10)
        if self.worker is not None:
            self.worker.stop()


def run_forever(settings: Settings, *, web: bool = True, worker: bool = True) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully (`serve`, `worker`)."""
    setup_logging(settings.log_file, settings.log_level)
    runtime = build_runtime(settings)
    runtime.store.migrate()
    warn_about_risky_settings(settings)
    # `serve`: the worker runs in a child process, so a busy worker never slows acknowledgements.
    child = WorkerChild(settings) if web and worker and os.name == "posix" else None
    if child is not None:
        runtime.wakeup = child.wakeup
    handle = ServiceHandle(runtime, web=web, worker=worker and child is None).start()
    if child is not None:
        child.start()
    stop = threading.Event()
    # `kill -USR1 <pid>` prints every thread's stack to stderr: how to see where a process hangs.
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log_event(log, "shutdown.requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    # Wake now and then: a signal that the kernel hands to another thread only runs its Python
    # handler when the main thread wakes, and an untimed wait might never wake.
    while not stop.wait(0.5):
        if child is not None:
            child.watch()
    handle.stop()
    if child is not None:
        child.stop()
    runtime.close()
    log_event(log, "shutdown.done")
