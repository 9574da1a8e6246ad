"""The callback endpoint's defences, in the order they run before anything is stored.

1. Source allow-list: the sender's address must be in `CALLBACK_ALLOWED_NETWORKS` (when set).
   Behind a reverse proxy the address comes from `X-Forwarded-For`, believed only when the direct
   peer is one of `TRUSTED_PROXIES`: the right-most address that is not a trusted proxy.
2. Rate limit: a token bucket per source address, in this process's memory (each process of a
   multi-process set-up has its own buckets).
3. (The size limit is Flask's MAX_CONTENT_LENGTH, checked when the body is read.)
4. Signature, when `CALLBACK_SIGNING_SECRETS` is set: the Standard Webhooks scheme
   (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` and `webhook-signature`
   headers, HMAC-SHA256 over `{id}.{timestamp}.{raw body}`, a 5-minute window, several secrets
   accepted at once for rotation.

Refusals are small records the endpoint turns into JSON answers; nothing here stores or logs.

`PeerRecorder`, the outermost WSGI layer under every server (waitress and gunicorn alike), keeps
the socket peer as the server saw it and whether the request came through a proxy, before
anything can rewrite REMOTE_ADDR or drop a header; then it drops X-Forwarded-* and the like from
peers that are not trusted proxies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask

from utopia_handler.settings import CallbackGuard, IPNetwork, Secret

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: The headers a Standard Webhooks signature travels in.
SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
#: How far a signed callback's timestamp may be from our clock, either way.
SIGNATURE_TOLERANCE_SECONDS = 5 * 60
# Longer header values than these are refused unread: no real sender comes close.
_MAX_ID_CHARS = 256
_MAX_SIGNATURE_HEADER_CHARS = 4096
# Beyond this many tracked sources the least recently seen one is forgotten (memory stays flat).
_MAX_SOURCES = 10_000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: WSGI environ keys `PeerRecorder` writes: the untouched socket peer, and whether the request
#: carried any proxy header (so came through a proxy, or pretends to).
SOCKET_PEER = "utopia_handler.socket_peer"
CAME_THROUGH_PROXY = "utopia_handler.came_through_proxy"
#: The headers a proxy adds to say who the client is, as WSGI environ keys.
PROXY_HEADER_KEYS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_BY",
    "HTTP_FORWARDED",
    "HTTP_X_REAL_IP",
)


@dataclass(frozen=True)
class Refusal:
    """Why a callback is turned away: the HTTP status, a message for the sender, a log reason."""

    status: int
    message: str
    reason: str
    retry_after: int | None = None


def parse_address(text: str) -> IPAddress | None:
    """An IP address from a peer or an X-Forwarded-For entry (`[v6]:port` and `v4:port` too)."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    # An IPv4 client reaching an IPv6 socket shows as ::ffff:a.b.c.d; compare it as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)


def from_trusted_proxy(peer: str | None, trusted_proxies: Sequence[IPNetwork]) -> bool:
    """Whether the direct peer is one of `TRUSTED_PROXIES`, whose X-Forwarded-* headers count."""
    address = parse_address(peer or "")
    return address is not None and _within(address, trusted_proxies)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork]
) -> IPAddress | None:
    """The sender's address: the peer, or (from a trusted proxy) the right-most untrusted hop."""
    address = parse_address(peer or "")
    if address is None or not trusted_proxies or not _within(address, trusted_proxies):
        # X-Forwarded-For from anyone else is just text the client chose.
        return address
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        hop_address = parse_address(hop)
        if hop_address is None:
            # A malformed entry that our own proxy chain did not write: stop believing here and
            # take the last hop we could read, i.e. fail closed towards the proxy.
            return address
        address = hop_address
        if not _within(hop_address, trusted_proxies):
            return hop_address
    return address


def is_local(address: IPAddress | None) -> bool:
    """Whether an address is this machine's loopback (an IPv4 one reaching an IPv6 socket too)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and address.is_loopback


class PeerRecorder:
    """WSGI middleware, outermost: note the socket peer and any proxy header, then drop proxy
    headers that do not come from a trusted proxy.

    waitress would drop them itself (`clear_untrusted_proxy_headers`), but then nobody could tell
    a request forwarded by a proxy on this machine from a direct local one; gunicorn drops none.
    Done here, it is the same under both.
    """

    def __init__(self, app: WSGIApplication, trusted_proxies: Sequence[IPNetwork]) -> None:
        self.app = app
        self.trusted_proxies = tuple(trusted_proxies)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        peer = str(environ.get("REMOTE_ADDR") or "")
        environ[SOCKET_PEER] = peer
        environ[CAME_THROUGH_PROXY] = any(key in environ for key in PROXY_HEADER_KEYS)
        address = parse_address(peer)
        if address is None or not _within(address, self.trusted_proxies):
            for key in PROXY_HEADER_KEYS:
                environ.pop(key, None)
        return self.app(environ, start_response)


@dataclass
class _Bucket:
    tokens: float
    updated: float
    refusal_logged: bool = False


class RateLimiter:
    """A token bucket per key: `rate` tokens a second, at most `burst` saved up."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = _MAX_SOURCES,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> tuple[float, bool]:
        """Take a token for `key`: (0, False) if allowed, else (seconds to wait, first refusal?)."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(tokens=float(self.burst), updated=now)
                self._buckets[key] = bucket
                if len(self._buckets) > self._max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                bucket.refusal_logged = False
                return 0.0, False
            first = not bucket.refusal_logged
            bucket.refusal_logged = True
            return (1.0 - bucket.tokens) / self.rate, first


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` Standard Webhooks signature of one message (senders and tests use it)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_signature(
    keys: Sequence[bytes], headers: Mapping[str, str], body: bytes, now: float
) -> str | None:
    """None when a `v1` signature in the headers matches one of `keys`; else what is wrong."""
    message_id = headers.get("webhook-id", "")
    timestamp_text = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not message_id or not timestamp_text or not signatures:
        return "the webhook-id, webhook-timestamp and webhook-signature headers are required"
    if len(message_id) > _MAX_ID_CHARS or len(signatures) > _MAX_SIGNATURE_HEADER_CHARS:
        return "a webhook header is too long"
    if not timestamp_text.isascii() or not timestamp_text.isdigit() or len(timestamp_text) > 12:
        return "webhook-timestamp must be whole seconds since 1970"
    timestamp = int(timestamp_text)
    if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        return "webhook-timestamp is more than 5 minutes from now"
    given = [
        value.encode("ascii", "replace")
        for version, _, value in (part.partition(",") for part in signatures.split())
        if version == "v1"
    ]
    matched = False
    for key in keys:
        expected = sign(key, message_id, timestamp, body)[len("v1,") :].encode("ascii")
        for candidate in given:
            # Every pair is compared in constant time; a match sets the flag without a shortcut.
            matched |= hmac.compare_digest(candidate, expected)
    return None if matched else "no valid webhook signature"


def signing_key(secret: Secret) -> bytes:
    """The HMAC key of a `whsec_` secret (the settings checked it is valid base64)."""
    return base64.b64decode(secret.reveal()[len("whsec_") :])


class CallbackGate:
    """One process's defences for the callback endpoint, built from the settings once."""

    def __init__(self, guard: CallbackGuard, *, clock: Callable[[], float] = time.time) -> None:
        self.guard = guard
        self._keys = tuple(signing_key(secret) for secret in guard.signing_secrets)
        self._clock = clock
        self.limiter = RateLimiter(guard.rate_per_second, guard.rate_burst)

    @property
    def signs(self) -> bool:
        """True when callbacks must carry a valid signature."""
        return bool(self._keys)

    def source(self, peer: str | None, forwarded_for: Sequence[str]) -> IPAddress | None:
        """The sender's address, per the trusted-proxy setting."""
        return client_address(peer, forwarded_for, self.guard.trusted_proxies)

    def admit(self, source: IPAddress | None) -> tuple[Refusal | None, bool]:
        """Allow-list, then rate limit: (refusal or None, whether this refusal is worth a log line)."""
        allowed = self.guard.allowed_networks
        if allowed and (source is None or not _within(source, allowed)):
            return Refusal(403, "this source address may not send callbacks", "network"), True
        wait, first = self.limiter.take(str(source))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            refusal = Refusal(
                429, "too many callbacks; slow down", "rate_limited", retry_after=seconds
            )
            return refusal, first
        return None, False

    def check_signature(self, headers: Mapping[str, str], body: bytes) -> Refusal | None:
        """A refusal when signing is configured and the request is unsigned or badly signed."""
        if not self._keys:
            return None
        problem = verify_signature(self._keys, headers, body, self._clock())
        return None if problem is None else Refusal(401, problem, "signature")


_GATE_KEY = "utopia_handler.callback_gate"
_gate_lock = threading.Lock()


def gate_for(app: Flask) -> CallbackGate:
    """The app's CallbackGate, made on first use from the runtime's settings."""
    gate = app.extensions.get(_GATE_KEY)
    if gate is None:
        with _gate_lock:
            gate = app.extensions.get(_GATE_KEY)
            if gate is None:
                gate = CallbackGate(app.extensions["runtime"].settings.web.guard)
                app.extensions[_GATE_KEY] = gate
    assert isinstance(gate, CallbackGate)
    return gate
