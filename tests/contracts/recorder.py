"""A real HTTP server that records every request exactly as it arrived and answers from a script.

The contract tests drive our clients against it and compare what went over the wire with the
table of forms the evidence shows working. It knows nothing of PowerCode or UTOPIA: the answer to
each request comes from the test, so no rule of ours can hide in it.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class WireRequest:
    """One request as it reached the server."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def form(self) -> tuple[tuple[str, str], ...]:
        """The body read as an HTML form (name, value) list, in order."""
        return tuple(urllib.parse.parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


Answer = Callable[[WireRequest], tuple[int, str, bytes]]


def json_answer(payload: object, status: int = 200) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(payload).encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    server: _RecordingServer

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urllib.parse.urlsplit(self.path)
        request = WireRequest(
            method=self.command,
            path=split.path,
            query=tuple(urllib.parse.parse_qsl(split.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        with self.server.lock:
            self.server.requests.append(request)
        status, content_type, payload = self.server.answer(request)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test reads the recorded requests instead


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answer: Answer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer
        self.lock = threading.Lock()
        self.requests: list[WireRequest] = []


@contextmanager
def recording_server(answer: Answer) -> Iterator[_RecordingServer]:
    """A recording server on a free loopback port, stopped on leaving the block."""
    server = _RecordingServer(answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def base_url(server: _RecordingServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"
