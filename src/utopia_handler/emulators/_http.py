"""The HTTP machinery shared by the PowerCode and UTOPIA emulators.

Built on ``http.server`` rather than a framework because faults need raw control of the
socket: answer nothing and close, or hold the connection open past the client's timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

from .faults import Fault, FaultPlan

logger = logging.getLogger(__name__)

# Request bodies larger than this are refused; no emulated call comes close.
_MAX_BODY = 16 * 1024 * 1024
# An idle keep-alive connection is closed after this long.
_IDLE_TIMEOUT = 120.0


@dataclass
class Request:
    """One parsed HTTP request, as the emulator logic sees it."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    #: Every query-string parameter in order, repeats and blank values kept (``query`` keeps
    #: only the last of a repeated name).
    query_pairs: tuple[tuple[str, str], ...] = ()

    def json(self) -> Any:
        """The body decoded as JSON; raises ValueError when it is not JSON."""
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Reply:
    """What to send back; ``drop`` closes the connection without sending anything."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False

    @classmethod
    def json(cls, payload: object, status: int = 200, **headers: str) -> Reply:
        """A JSON reply."""
        return cls(status=status, body=json.dumps(payload).encode("utf-8"), headers=headers)


DROP = Reply(drop=True)


class _Server(ThreadingHTTPServer):
    """A threading server that remembers its open connections so stop() can cut them."""

    daemon_threads = True
    # Benchmarks open many connections at once; the default backlog of 5 would refuse them.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], emulator: HttpEmulator) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        tls = self.emulator.tls
        if tls is not None:
            # The handshake happens in the handler thread, on the first read, so a client that
            # refuses the certificate only ends its own connection.
            conn = tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, address

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request_thread(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        assert isinstance(request, socket.socket)
        with self._conn_lock:
            self._connections.add(request)
            self._handler_threads.add(threading.current_thread())
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._connections.discard(request)
                self._handler_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (killed, timed out) is normal here; anything else is printed."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | ssl.SSLError):
            logger.debug("%s emulator: client %s went away", self.emulator.name, client_address)
            return
        super().handle_error(request, client_address)

    def cut_connections(self, wait: float) -> None:
        """Shut down every open connection and wait for their threads to close them."""
        with self._conn_lock:
            connections = list(self._connections)
            threads = list(self._handler_threads)
        for conn in connections:
            # OSError: already closed by its own thread.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + wait
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    """Turns raw HTTP into Request objects and Reply objects back into bytes (or silence)."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle plus delayed ACKs
    # would add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    timeout = _IDLE_TIMEOUT
    server: _Server

    def do_GET(self) -> None:
        """Handle GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Handle POST."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Handle DELETE."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Handle PUT."""
        self._dispatch()

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            return None
        if length < 0 or length > _MAX_BODY:
            return None
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                # Skip trailers up to the blank line.
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send(Reply.json({"error": "Bad request body"}, status=400))
            return
        split = urllib.parse.urlsplit(self.path)
        query_pairs = tuple(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        request = Request(
            method=self.command,
            path=split.path,
            query=dict(query_pairs),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            query_pairs=query_pairs,
        )
        try:
            reply = self.server.emulator.handle(request)
        except Exception:
            # An emulator bug must show as a 500, not as a dropped connection that a
            # client would treat as a network fault.
            logger.exception("emulator error on %s %s", self.command, split.path)
            reply = Reply.json({"error": "Emulator internal error"}, status=500)
        if reply.drop:
            self.close_connection = True
            return
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Send the access log to logging at DEBUG instead of stderr."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.server.emulator.name, format % args)


class HttpEmulator:
    """Base of the HTTP emulators: a threaded server, faults, global latency and control routes."""

    name: ClassVar[str] = "emulator"
    #: Fault kinds this emulator understands.
    fault_kinds: ClassVar[frozenset[str]] = frozenset(
        {"latency", "fail", "timeout", "drop_before", "drop_after_apply", "outage"}
    )

    def __init__(
        self, *, host: str, port: int, latency: float, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        # A server-side TLS context: the stand-in then answers https:// (a self-signed PowerCode).
        self.tls = tls
        self.port = port
        self.latency = latency
        self.faults = FaultPlan(self.fault_kinds)
        self.calls: Counter[str] = Counter()
        self.lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # Set on stop so that sleeping faults and latency give up at once.
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind the port and serve in a background thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        # After a stop, self.port still holds the old port: a restart keeps the same URL.
        server = _Server((self.host, self.port), self)
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-emulator",
            daemon=True,
        )
        self._thread.start()
        logger.debug("%s emulator listening on %s", self.name, self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.cut_connections(wait=5.0)
        server.server_close()
        if thread is not None:
            thread.join(5.0)
        self._server = None
        self._thread = None
        logger.debug("%s emulator stopped", self.name)

    @property
    def running(self) -> bool:
        """True while the server is serving."""
        return self._server is not None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (``https://`` with TLS) of the running server."""
        if self._server is None:
            raise RuntimeError(f"{self.name} emulator is not running")
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    # -- request handling ------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        """Answer one request: the control routes, else the emulated API."""
        # The control routes need no key: the emulators bind to loopback and exist for
        # local tests and chaos tools only.
        if request.path.startswith("/_emulator/"):
            return self._handle_control(request)
        if self.latency > 0:
            self.sleep(self.latency)
        return self.handle_api(request)

    def handle_api(self, request: Request) -> Reply:
        """Answer one request to the emulated API (subclasses)."""
        raise NotImplementedError

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the emulator stops."""
        self._stopping.wait(seconds)

    def run_with_fault(
        self,
        target: str,
        apply: Callable[[], Reply],
        reject: Callable[[Fault], Reply] | None = None,
        *,
        also: tuple[str, ...] = (),
    ) -> Reply:
        """Run ``apply`` under the next fault queued for ``target`` (or one of ``also``), if any."""
        fault = self.faults.take(target, *also)
        if fault is None:
            return apply()
        logger.debug("%s emulator: fault %s on %s", self.name, fault.kind, target)
        if fault.kind == "latency":
            self.sleep(fault.seconds)
            return apply()
        if fault.kind in ("fail", "outage"):
            # A burst is a fail with a count; an outage fails every call until it is over.
            headers = {}
            retry_after = fault.retry_after_header()
            if retry_after is not None:
                headers["Retry-After"] = retry_after
            message = fault.message or "Service temporarily unavailable"
            return Reply.json({"error": message}, status=fault.status, **headers)
        if fault.kind == "timeout":
            self.sleep(fault.seconds)
            return DROP
        if fault.kind == "drop_before":
            return DROP
        if fault.kind == "drop_after_apply":
            apply()
            return DROP
        if fault.kind == "reject" and reject is not None:
            return reject(fault)
        raise ValueError(f"fault kind {fault.kind!r} is not supported here")

    # -- control surface -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The emulator's state as JSON-ready data (subclasses add their records)."""
        with self.lock:
            return {"calls": dict(self.calls), "faults": self.faults.pending()}

    def handle_control_extra(self, request: Request) -> Reply | None:
        """Extra control routes of a subclass; None when the route is not theirs."""
        return None

    def _handle_control(self, request: Request) -> Reply:
        if request.path == "/_emulator/state" and request.method == "GET":
            return Reply.json(self.snapshot())
        if request.path == "/_emulator/faults":
            if request.method == "DELETE":
                self.faults.clear()
                return Reply.json({"faults": []})
            if request.method == "POST":
                try:
                    self.faults.add_from_json(request.json())
                except ValueError as error:
                    return Reply.json({"error": str(error)}, status=400)
                return Reply.json({"faults": self.faults.pending()}, status=201)
            return Reply.json({"error": "Method not allowed"}, status=405)
        extra = self.handle_control_extra(request)
        if extra is not None:
            return extra
        return Reply.json({"error": "Unknown control endpoint"}, status=404)
