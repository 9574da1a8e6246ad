"""Deliver a rendered e-mail through an SMTP server (the ISP's relay), one connection per message.

SMTP failures are sorted like the HTTP clients' ones: 4xx replies, lost connections and timeouts are
RetryableError; 5xx refusals are RejectedError. A connection lost while waiting for the server's
answer to the message itself is marked `may_have_applied`: the server may have queued it.
"""

from __future__ import annotations

import contextlib
import email.message
import logging
import smtplib
import ssl
import time
from typing import TYPE_CHECKING, Literal

from utopia_handler.clients.errors import RejectedError, RetryableError
from utopia_handler.clients.http import clip

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = logging.getLogger(__name__)

SERVICE = "smtp"

Security = Literal["none", "starttls", "ssl"]


class _TrackedSMTP(smtplib.SMTP):
    """smtplib.SMTP that notes when the whole message, up to its final ".", has been sent."""

    message_sent = False

    def send(self, s: ReadableBuffer | str) -> None:
        super().send(s)
        # Only the message data ends with CRLF.CRLF; commands are short single lines.
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.message_sent = True


class _TrackedSMTPSSL(smtplib.SMTP_SSL, _TrackedSMTP):
    """The same over implicit TLS (port 465)."""


def _reply_text(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
    return clip(text)


class SmtpSender:
    """Sends e-mails through one SMTP server, with optional TLS and login."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Security = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in ("none", "starttls", "ssl"):
            raise ValueError("security must be 'none', 'starttls' or 'ssl'")
        self._host = host
        self._port = port
        self._security = security
        self._username = username
        self._password = password
        self._timeout = timeout
        self._ssl_context = ssl_context

    def send(self, message: email.message.EmailMessage) -> None:
        """Deliver `message` to its To/Cc/Bcc recipients, or raise RetryableError/RejectedError."""
        if not self._host:
            # smtplib would quietly skip connecting and fail later with a misleading error.
            raise RejectedError(SERVICE, "no SMTP server is configured")
        started = time.perf_counter()
        outcome = "ok"
        smtp: _TrackedSMTP | None = None
        try:
            smtp = self._connect()
            refused = smtp.send_message(message)
            if refused:
                # Some recipients took it: sending again would duplicate it for them; only report.
                codes = sorted({code for code, _ in refused.values()})
                log.warning("smtp some recipients refused count=%d codes=%s", len(refused), codes)
            # The message was accepted; a failed goodbye changes nothing.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
        except smtplib.SMTPException as exc:
            error = self._error(exc, sent=smtp is not None and smtp.message_sent)
            outcome = type(exc).__name__
            raise error from None
        except OSError as exc:  # refused, unreachable, timed out, TLS failure
            sent = smtp is not None and smtp.message_sent
            outcome = type(exc).__name__
            raise RetryableError(
                SERVICE,
                f"connection to {self._host}:{self._port} failed: {clip(str(exc) or outcome)}",
                may_have_applied=sent,
            ) from None
        finally:
            if smtp is not None:
                smtp.close()
            log.debug(
                "outside call service=smtp call=send status=%s elapsed_ms=%.0f",
                outcome,
                (time.perf_counter() - started) * 1000,
            )

    def check(self) -> str:
        """Connect, greet, STARTTLS and log in as a delivery would, send nothing; what it saw.

        Raises RetryableError or RejectedError like `send`.
        """
        if not self._host:
            raise RejectedError(SERVICE, "no SMTP server is configured")
        try:
            smtp = self._connect()
        except smtplib.SMTPException as exc:
            raise self._error(exc, sent=False) from None
        except OSError as exc:
            raise RetryableError(
                SERVICE,
                f"connection to {self._host}:{self._port} failed: "
                f"{clip(str(exc) or type(exc).__name__)}",
            ) from None
        try:
            steps = ["connected", "EHLO"]
            if self._security == "starttls":
                steps.append("STARTTLS")
            if self._security == "ssl":
                steps[0] = "connected over TLS"
            if self._username:
                steps.append("login")
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            return ", ".join(steps)
        finally:
            smtp.close()

    def _connect(self) -> _TrackedSMTP:
        smtp: _TrackedSMTP
        if self._security == "ssl":
            smtp = _TrackedSMTPSSL(
                self._host, self._port, timeout=self._timeout, context=self._tls_context()
            )
        else:
            smtp = _TrackedSMTP(self._host, self._port, timeout=self._timeout)
        try:
            smtp.ehlo()
            if self._security == "starttls":
                # Never fall back to plain text: starttls raises if the server does not offer it.
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if self._username:
                smtp.login(self._username, self._password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _tls_context(self) -> ssl.SSLContext:
        # Certificates are always verified; a private CA comes in through `ssl_context`.
        return self._ssl_context or ssl.create_default_context()

    def _error(self, exc: smtplib.SMTPException, *, sent: bool) -> RetryableError | RejectedError:
        """The error to raise for an SMTP failure; `sent` when the message data had gone out."""
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            when = "after the message was sent" if sent else "before the message was accepted"
            return RetryableError(SERVICE, f"connection lost {when}", may_have_applied=sent)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return RejectedError(SERVICE, f"server does not support it: {clip(str(exc))}")
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            # Every recipient was refused; their addresses stay out of the message.
            codes = sorted({code for code, _ in exc.recipients.values()})
            text = f"all {len(exc.recipients)} recipients refused: {codes}"
            if codes and all(400 <= code < 500 for code in codes):
                return RetryableError(SERVICE, text)
            if not codes:
                return RejectedError(SERVICE, "the message has no recipients")
            return RejectedError(SERVICE, text, code=max(codes))
        if isinstance(exc, smtplib.SMTPResponseException):
            code = exc.smtp_code
            step = {
                smtplib.SMTPAuthenticationError: "login",
                smtplib.SMTPSenderRefused: "sender",
                smtplib.SMTPDataError: "message",
                smtplib.SMTPConnectError: "greeting",
                smtplib.SMTPHeloError: "EHLO",
            }.get(type(exc), "command")
            text = f"{step} refused: {code} {_reply_text(exc.smtp_error)}"
            if code == 535:
                text = "login refused: 535 (check the SMTP username and password)"
            if 500 <= code < 600:
                return RejectedError(SERVICE, text, code=code)
            # 4xx: the server did not take the message (even after DATA) and asks us to try later.
            # Anything else is not a valid SMTP reply, most likely a broken connection.
            return RetryableError(SERVICE, text)
        return RejectedError(SERVICE, f"{type(exc).__name__}: {clip(str(exc))}")
