"""A local SMTP server that keeps what it receives, with optional AUTH and scripted faults."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import threading
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .faults import FaultPlan

logger = logging.getLogger(__name__)

DATA_TARGET = "DATA"
#: Faults aimed here act when a client connects: an ``outage`` refuses every connection with
#: REFUSED_GREETING until it is over (a relay that is "down for a while").
CONNECT_TARGET = "CONNECT"
FAIL_REPLY = "451 4.3.0 Try again later"
REFUSED_GREETING = "421 4.3.2 Service not available, try again later"
QUEUED_REPLY = "250 2.0.0 OK: queued"
AUTH_REQUIRED_REPLY = "530 5.7.0 Authentication required"


class _QuietSession(Session):
    """A Session whose legacy ``login_data`` does not log a deprecation warning on each AUTH."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _Server(SMTP):
    """aiosmtpd's SMTP protocol; reports its connections so stop() can close them."""

    event_handler: _Handler

    def _create_session(self) -> Session:
        return _QuietSession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.event_handler.emulator._connections.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.event_handler.emulator._connections.discard(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        outage = self.event_handler.emulator.faults.take(CONNECT_TARGET, kinds=_REFUSING)
        if outage is None:
            await super()._handle_client()
            return
        # RFC 5321 4.3.2: a server that cannot serve says 421 instead of 220 and hangs up.
        await self.push(REFUSED_GREETING)
        assert self.transport is not None
        self.transport.close()


class _Controller(Controller):
    def factory(self) -> SMTP:
        # Passing our loop stops aiosmtpd from looking one up itself, which swaps the
        # process-wide warning filters from the server thread.
        return _Server(self.handler, loop=self.loop, **self.SMTP_kwargs)


_REFUSING = frozenset({"outage"})


async def _wait_for_cancel() -> None:
    """Park the session until closing the transport cancels it."""
    await asyncio.Event().wait()


class _Handler:
    """aiosmtpd hooks: enforce AUTH when configured, apply faults, keep messages."""

    def __init__(self, emulator: SmtpEmulator) -> None:
        self.emulator = emulator

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Refuse mail from unauthenticated sessions when credentials are configured."""
        if self.emulator.requires_auth and not session.authenticated:
            return AUTH_REQUIRED_REPLY
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Keep the message (unless a fault says otherwise) and answer."""
        fault = self.emulator.faults.take(DATA_TARGET)
        if fault is None:
            self.emulator._keep(envelope)
            return QUEUED_REPLY
        logger.debug("smtp emulator: fault %s on DATA", fault.kind)
        if fault.kind in ("fail", "outage"):
            return FAIL_REPLY
        if fault.kind in ("latency", "timeout"):
            await asyncio.sleep(fault.seconds)
        if fault.kind in ("latency", "drop_after_apply"):
            self.emulator._keep(envelope)
        if fault.kind == "latency":
            return QUEUED_REPLY
        # drop_before, drop_after_apply, timeout: hang up without the final reply.
        assert server.transport is not None
        server.transport.close()
        await _wait_for_cancel()
        return QUEUED_REPLY  # not reached: closing the transport cancels this session

    def authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """Check LOGIN/PLAIN credentials; without configured ones, accept any."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username, password = self.emulator.username, self.emulator.password
        if username is None or password is None:
            return AuthResult(success=True, auth_data=auth_data)
        ok = hmac.compare_digest(auth_data.login, username.encode("utf-8"))
        ok &= hmac.compare_digest(auth_data.password, password.encode("utf-8"))
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class SmtpEmulator:
    """An SMTP server on 127.0.0.1 (aiosmtpd in a thread) that records every message."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        # drop_after_apply at DATA is "accept the message, then close before the final reply".
        self.faults = FaultPlan(
            {"latency", "fail", "timeout", "drop_before", "drop_after_apply", "outage"}
        )
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()
        self._controller: _Controller | None = None
        # Touched only on the server's event loop thread.
        self._connections: set[_Server] = set()

    @property
    def requires_auth(self) -> bool:
        """True when credentials are configured and AUTH is required before MAIL."""
        return self.username is not None

    def start(self) -> Self:
        """Start serving in a background thread; returns self."""
        if self._controller is not None:
            return self
        # A restart reuses the port it had, so clients configured with it keep working.
        attempts = 5 if self.port == 0 else 1
        for attempt in range(attempts):
            port = self.port or _free_port(self.host)
            handler = _Handler(self)
            controller = _Controller(
                handler,
                hostname=self.host,
                port=port,
                server_hostname="localhost",
                authenticator=handler.authenticate,
                # Plain-text AUTH is fine on loopback; auth_required stays False (we enforce
                # it at MAIL) because aiosmtpd warns when it is combined with no TLS.
                auth_require_tls=False,
            )
            try:
                controller.start()
            except OSError:
                # Another process took the free port between our probe and the bind.
                with contextlib.suppress(Exception):
                    controller.stop(no_assert=True)
                controller.loop.close()
                if attempt == attempts - 1:
                    raise
                continue
            self._controller = controller
            self.port = port
            logger.debug("smtp emulator listening on %s:%d", self.host, port)
            return self
        raise RuntimeError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Close open sessions, stop the server and its thread; safe to call twice."""
        controller = self._controller
        if controller is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._close_connections(), controller.loop)
        with contextlib.suppress(Exception):
            future.result(timeout=5)
        controller.stop()
        self._controller = None
        logger.debug("smtp emulator stopped")

    async def _close_connections(self) -> None:
        # Close client sessions ourselves: a transport left open when the loop closes
        # would raise ResourceWarning later, which the test suite treats as an error.
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        current = asyncio.current_task()
        for _ in range(200):
            pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
            if not pending and not self._connections:
                return
            await asyncio.sleep(0.005)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self.lock:
            self.messages.clear()
            self.envelopes.clear()

    def _keep(self, envelope: Envelope) -> None:
        content = envelope.original_content or b""
        message = BytesParser(policy=policy.default).parsebytes(content)
        with self.lock:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from or "", list(envelope.rcpt_tos)))
