"""HTTP plumbing shared by the UTOPIA and PowerCode clients.

`HttpSession` owns one httpx.Client, turns every transport failure into a `RetryableError` (or a
`RejectedError` for a malformed URL) and offers the shared 5xx/429 rule, so the clients above it
only decide what a *reply* means. Nothing here puts a request body, a header or an API key into a
message or a log line; the helpers at the end read vendor JSON tolerantly.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self

import httpx

from utopia_handler.clients.errors import RejectedError, RetryableError
from utopia_handler.settings import Timeouts

log = logging.getLogger(__name__)

# Vendor texts we quote in error messages are cut to this length.
MAX_QUOTED_CHARS = 200

# Timeouts() as a shared default argument (it is frozen, so sharing is safe).
DEFAULT_TIMEOUTS = Timeouts()

# Statuses that say "not now" before doing anything: the request cannot have been applied.
_REFUSED_BEFORE_WORK = frozenset({429, 503})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value (seconds or HTTP-date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result means no zone was given
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def clip(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` on one line, with any secret masked, cut to MAX_QUOTED_CHARS."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    if len(text) > MAX_QUOTED_CHARS:
        text = text[: MAX_QUOTED_CHARS - 3] + "..."
    return text


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when the body is not JSON."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:g}s"


def ssl_verify(verify: bool | str) -> bool | ssl.SSLContext:
    """httpx's `verify` for True, False or a CA file/directory (httpx 0.28 deprecates a path)."""
    if isinstance(verify, bool):
        return verify
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


class HttpSession:
    """One httpx.Client for one outside service, with its timeouts and error mapping."""

    def __init__(
        self,
        service: str,
        *,
        timeouts: Timeouts,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
        secrets: Iterable[str] = (),
        logger: logging.Logger = log,
    ) -> None:
        self.service = service
        self._log = logger
        self.timeouts = timeouts
        self.secrets = tuple(s for s in secrets if s)
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                connect=timeouts.connect,
                read=timeouts.read,
                # Writing a small body should never take longer than reading the reply.
                write=timeouts.read,
                pool=timeouts.connect,
            ),
            verify=ssl_verify(verify),
            transport=transport,
            # Redirects are never part of these APIs; following one could re-send a create.
            follow_redirects=False,
            # Only settings.py reads the environment: no proxy or CA file sneaks in from it.
            trust_env=False,
        )

    def request(self, label: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request and return whatever HTTP reply came back; transport failures raise.

        `label` names the call in messages and logs (an action name or a path), never its content.
        """
        started = time.perf_counter()
        outcome = "?"
        try:
            response = self._client.request(method, url, **kwargs)
            outcome = str(response.status_code)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
            # Not chained: the httpx exception holds the request, and with it the API key.
            raise self._transport_error(label, exc) from None
        except httpx.InvalidURL:
            outcome = "InvalidURL"
            raise RejectedError(self.service, f"{label}: invalid URL") from None
        finally:
            self._log.debug(
                "outside call service=%s call=%s status=%s elapsed_ms=%.0f",
                self.service,
                label,
                outcome,
                (time.perf_counter() - started) * 1000,
            )
        return response

    def raise_if_retryable(self, label: str, response: httpx.Response) -> None:
        """Raise RetryableError for a 5xx or 429 reply, with the server's Retry-After if any."""
        status = response.status_code
        if status < 500 and status != 429:
            return
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        text = f"{label}: HTTP {status}"
        if retry_after is not None:
            text += f" (retry after {_seconds(retry_after)})"
        # 429/503 refuse before doing work; any other 5xx (500, 502, 504...) may come after the
        # server acted on the request, so the caller must look before it creates again.
        raise RetryableError(
            self.service,
            text,
            retry_after=retry_after,
            may_have_applied=status not in _REFUSED_BEFORE_WORK,
        )

    def _transport_error(self, label: str, exc: httpx.HTTPError) -> RetryableError | RejectedError:
        reason = clip(str(exc) or type(exc).__name__, self.secrets)
        # Nothing went out: no connection was made (or none was free in the pool).
        if isinstance(exc, httpx.ConnectTimeout):
            return RetryableError(
                self.service, f"{label}: connect timed out after {_seconds(self.timeouts.connect)}"
            )
        if isinstance(exc, httpx.PoolTimeout):
            return RetryableError(self.service, f"{label}: no free connection (pool timeout)")
        if isinstance(exc, httpx.ConnectError | httpx.ProxyError):
            return RetryableError(self.service, f"{label}: could not connect: {reason}")
        if isinstance(exc, httpx.UnsupportedProtocol):
            # A configuration mistake (empty URL, wrong scheme): trying again will not help.
            return RejectedError(
                self.service, f"{label}: the URL must start with http:// or https://"
            )
        # From here on the request (or part of it) went out, so the server may have acted on it.
        if isinstance(exc, httpx.ReadTimeout):
            message = f"{label}: read timed out after {_seconds(self.timeouts.read)}"
        elif isinstance(exc, httpx.WriteTimeout):
            message = f"{label}: write timed out after {_seconds(self.timeouts.read)}"
        else:
            # RemoteProtocolError, ReadError, WriteError, DecodingError...: the connection broke
            # after the request was (at least partly) sent; a partial send is counted too because
            # the client cannot tell how much the server read.
            message = f"{label}: connection lost before the reply ({type(exc).__name__}: {reason})"
        return RetryableError(self.service, message, may_have_applied=True)

    def close(self) -> None:
        """Close the underlying connections."""
        self._client.close()


# Reading vendor JSON: every value may be a string, a number, null or missing.


def as_text(value: Any) -> str:
    """A scalar as a stripped string; None, lists and objects become ""."""
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value).strip()


def as_int(value: Any) -> int | None:
    """An id sent as a number or a numeric string, or None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def get_field(block: Mapping[str, Any], name: str) -> Any:
    """`block[name]`, or a key differing only in case (vendors mix `customerID`/`customerId`)."""
    if name in block:
        return block[name]
    lowered = name.lower()
    for key, value in block.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def as_records(value: Any) -> list[Mapping[str, Any]]:
    """The objects of a JSON list.

    Tolerates PHP's habits: a list sent as an object keyed "0", "1"..., or a lone object where a
    list of one was meant.
    """
    if isinstance(value, dict):
        keyed = all(isinstance(v, dict) for v in value.values())
        value = list(value.values()) if keyed else [value]
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


class ClientBase:
    """What every client shares: one HttpSession, closed by close() or by leaving a with-block."""

    _http: HttpSession

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
