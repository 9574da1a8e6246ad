"""PowerCode over HTTPS with its usual self-signed certificate: verified, never switched off."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.tls import self_signed_certificate
from utopia_handler.clients.errors import RetryableError
from utopia_handler.clients.powercode import PowerCodeClient

from ._shared import FAST, PC_KEY


class _AlwaysOk(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({"statusCode": 0, "customers": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle(self) -> None:
        # A client that refuses our certificate ends the handshake; that is the test's point.
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            super().handle()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_url(certificate: tuple[Path, Path]) -> Iterator[str]:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AlwaysOk)
    server.daemon_threads = True
    # The handshake runs in the handler thread, so one refused client cannot stall the server.
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_named_certificate_is_trusted(https_url: str, certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    with PowerCodeClient(
        f"{https_url}/api/1/index.php", f"{https_url}/uapi/", PC_KEY, verify=str(cert),
        timeouts=FAST,
    ) as client:  # fmt: skip
        assert client.search_customers("Avery") == []


def test_unknown_certificate_is_refused_by_default(https_url: str) -> None:
    with (
        PowerCodeClient(
            f"{https_url}/api/1/index.php", f"{https_url}/uapi/", PC_KEY, timeouts=FAST
        ) as client,
        pytest.raises(RetryableError) as caught,
    ):
        client.search_customers("Avery")

    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    assert caught.value.may_have_applied is False
