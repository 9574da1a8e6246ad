"""The hardened callback over real HTTP: signatures, source allow-list, proxies, rate limit, size.

Every refusal must be JSON, store nothing, and leave the endpoint working for the next good call.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import CALLBACK_TOKEN, new_order
from tests.reliability.privacy_watch import watch_secret
from utopia_handler.runtime import Runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.settings import SettingsError, describe_settings
from utopia_handler.store.models import Callback, Notification, Order
from utopia_handler.web.security import (
    RateLimiter,
    client_address,
    sign,
    verify_signature,
)

ORDER = "UIA202611-004217"
# The Standard Webhooks specification's published test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY = (
    "msg_p5jXN8AQM9LWM0D4loKWxJek",
    1614265330,
    b'{"test": 2432232314}',
)
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
OLD_SECRET = "whsec_" + base64.b64encode(b"old-signing-secret-32-bytes-long").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"new-signing-secret-32-bytes-long").decode()
watch_secret(OLD_SECRET, NEW_SECRET)  # the end-of-session check looks for them in logs and rows


def key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


@pytest.fixture
def start_web(make_runtime: Callable[..., Runtime]) -> Iterator[Callable[..., ServiceHandle]]:
    """Start the HTTP side (no worker) with some settings changed."""
    handles: list[ServiceHandle] = []

    def start(**overrides: str | None) -> ServiceHandle:
        handle = ServiceHandle(make_runtime(**overrides), worker=False, port=0).start()
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


def stored(runtime: Runtime) -> tuple[int, int, int]:
    with runtime.store.read() as session:
        return (
            session.scalar(select(func.count()).select_from(Callback)) or 0,
            session.scalar(select(func.count()).select_from(Order)) or 0,
            session.scalar(select(func.count()).select_from(Notification)) or 0,
        )


def post(
    web: ServiceHandle,
    body: bytes | dict[str, Any],
    *,
    token: str | None = CALLBACK_TOKEN,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    params = {"token": token} if token is not None else {}
    return httpx.post(
        f"{web.url}/api-callback",
        params=params,
        content=content,
        headers={"Content-Type": "application/json", **(headers or {})},
        timeout=10,
    )


def signed_headers(secret: str, body: bytes, *, at: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if at is None else at)
    return {
        "webhook-id": "msg_2mYHq1ZsC5",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key(secret), "msg_2mYHq1ZsC5", timestamp, body),
    }


# -- signatures ------------------------------------------------------------------------------------


def test_our_signatures_match_the_standard_webhooks_test_vector() -> None:
    assert sign(key(SPEC_SECRET), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert verify_signature([key(SPEC_SECRET)], headers, SPEC_BODY, SPEC_TIMESTAMP + 10) is None
    assert verify_signature([key(SPEC_SECRET)], headers, SPEC_BODY + b" ", SPEC_TIMESTAMP) == (
        "no valid webhook signature"
    )


def test_signed_callbacks_need_no_token_and_are_accepted_with_either_rotation_secret(
    start_web: Callable[..., ServiceHandle],
) -> None:
    web = start_web(
        UTOPIA_CALLBACK_TOKEN=None, CALLBACK_SIGNING_SECRETS=f"{OLD_SECRET} {NEW_SECRET}"
    )
    for secret, ref in ((OLD_SECRET, ORDER), (NEW_SECRET, "UIA202611-004218")):
        body = json.dumps(new_order(ref)).encode()
        answer = post(web, body, token=None, headers=signed_headers(secret, body))
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "queued"
    assert stored(web.runtime) == (2, 2, 0)


def test_a_signature_header_with_several_values_passes_when_one_is_valid(
    start_web: Callable[..., ServiceHandle],
) -> None:
    web = start_web(UTOPIA_CALLBACK_TOKEN=None, CALLBACK_SIGNING_SECRETS=NEW_SECRET)
    body = json.dumps(new_order(ORDER)).encode()
    headers = signed_headers(NEW_SECRET, body)
    forged = sign(key(OLD_SECRET), "msg_2mYHq1ZsC5", int(headers["webhook-timestamp"]), body)
    headers["webhook-signature"] = f"v2,abc {forged} {headers['webhook-signature']}"
    assert post(web, body, token=None, headers=headers).status_code == 200


BAD_SIGNATURES: dict[str, Callable[[bytes], dict[str, str]]] = {
    "unsigned": lambda body: {},
    "wrong secret": lambda body: signed_headers(OLD_SECRET, body),
    "other body": lambda body: signed_headers(NEW_SECRET, body + b" "),
    "six minutes old": lambda body: signed_headers(NEW_SECRET, body, at=time.time() - 360),
    "six minutes ahead": lambda body: signed_headers(NEW_SECRET, body, at=time.time() + 360),
    "not a number": lambda body: {**signed_headers(NEW_SECRET, body), "webhook-timestamp": "1e9"},
    "no id": lambda body: {**signed_headers(NEW_SECRET, body), "webhook-id": ""},
    "v1 missing": lambda body: {
        **signed_headers(NEW_SECRET, body),
        "webhook-signature": signed_headers(NEW_SECRET, body)["webhook-signature"][3:],
    },
}


@pytest.mark.parametrize("case", list(BAD_SIGNATURES))
def test_an_unsigned_or_badly_signed_callback_gets_401_and_stores_nothing(
    start_web: Callable[..., ServiceHandle], case: str
) -> None:
    # The token is right: with signing configured, a signature is needed as well.
    web = start_web(CALLBACK_SIGNING_SECRETS=NEW_SECRET)
    body = json.dumps(new_order(ORDER)).encode()
    answer = post(web, body, headers=BAD_SIGNATURES[case](body))
    assert answer.status_code == 401
    assert "error" in answer.json()
    assert stored(web.runtime) == (0, 0, 0)
    good = post(web, body, headers=signed_headers(NEW_SECRET, body))
    assert good.status_code == 200


def test_with_token_and_signing_both_are_needed(start_web: Callable[..., ServiceHandle]) -> None:
    web = start_web(CALLBACK_SIGNING_SECRETS=NEW_SECRET)
    body = json.dumps(new_order(ORDER)).encode()
    answer = post(
        web, body, token="wrong-token-wrong-token", headers=signed_headers(NEW_SECRET, body)
    )
    assert answer.status_code == 401
    assert stored(web.runtime) == (0, 0, 0)


@pytest.mark.parametrize(
    "value",
    ["not-a-secret-at-all-xx", "whsec_%%%%", "whsec_" + base64.b64encode(b"short").decode()],
)
def test_bad_signing_secrets_are_refused_without_echo(
    make_runtime: Callable[..., Runtime], value: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        make_runtime(CALLBACK_SIGNING_SECRETS=f"{NEW_SECRET},{value}")
    message = str(caught.value)
    assert message.startswith("CALLBACK_SIGNING_SECRETS: secret 2")
    assert value not in message and NEW_SECRET not in message


def test_guard_settings_are_shown_with_secrets_masked(make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime(
        CALLBACK_SIGNING_SECRETS=f"{OLD_SECRET}, {NEW_SECRET}",
        CALLBACK_ALLOWED_NETWORKS="203.0.113.0/24, 2001:db8::/32",
        TRUSTED_PROXIES="10.0.0.5",
        CALLBACK_RATE_LIMIT="2.5",
        CALLBACK_RATE_BURST="7",
    )
    shown = dict(describe_settings(runtime.settings))
    assert shown["web.guard.signing_secrets"] == "********, ********"
    assert shown["web.guard.allowed_networks"] == "203.0.113.0/24, 2001:db8::/32"
    assert shown["web.guard.trusted_proxies"] == "10.0.0.5/32"
    assert shown["web.guard.rate_per_second"] == "2.5"
    assert shown["web.guard.rate_burst"] == "7"
    assert "whsec_" not in repr(runtime.settings)


# -- where a callback comes from -------------------------------------------------------------------


def test_a_source_outside_the_allow_list_gets_403(start_web: Callable[..., ServiceHandle]) -> None:
    web = start_web(CALLBACK_ALLOWED_NETWORKS="203.0.113.0/24")
    answer = post(web, new_order(ORDER))
    assert answer.status_code == 403
    assert answer.headers["Content-Type"] == "application/json"
    assert stored(web.runtime) == (0, 0, 0)


def test_a_source_inside_the_allow_list_is_served(start_web: Callable[..., ServiceHandle]) -> None:
    web = start_web(CALLBACK_ALLOWED_NETWORKS="203.0.113.0/24,127.0.0.0/8")
    assert post(web, new_order(ORDER)).status_code == 200


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    start_web: Callable[..., ServiceHandle],
) -> None:
    web = start_web(CALLBACK_ALLOWED_NETWORKS="203.0.113.0/24")
    answer = post(web, new_order(ORDER), headers={"X-Forwarded-For": "203.0.113.9"})
    assert answer.status_code == 403


def test_behind_a_trusted_proxy_the_right_most_untrusted_address_counts(
    start_web: Callable[..., ServiceHandle],
) -> None:
    web = start_web(CALLBACK_ALLOWED_NETWORKS="203.0.113.0/24", TRUSTED_PROXIES="127.0.0.1")
    allowed = post(web, new_order(ORDER), headers={"X-Forwarded-For": "203.0.113.9"})
    assert allowed.status_code == 200
    # A client that writes an allowed address itself is still seen as what the proxy saw.
    spoofed = post(web, new_order(ORDER), headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
    assert spoofed.status_code == 403
    with web.runtime.store.read() as session:
        assert list(session.scalars(select(Callback.remote_addr))) == ["203.0.113.9"]


def test_client_address_rules() -> None:
    proxies = (parse_network("10.0.0.0/8"),)
    assert str(client_address("10.0.0.2", ["198.51.100.7, 10.0.0.3"], proxies)) == "198.51.100.7"
    assert str(client_address("10.0.0.2", ["203.0.113.1", "198.51.100.7"], proxies)) == (
        "198.51.100.7"
    )
    assert str(client_address("10.0.0.2", ["10.0.0.9"], proxies)) == "10.0.0.9"  # all trusted
    assert str(client_address("10.0.0.2", ["garbage"], proxies)) == "10.0.0.2"  # fail closed
    assert str(client_address("192.0.2.1", ["198.51.100.7"], proxies)) == "192.0.2.1"
    assert str(client_address("10.0.0.2", ["[2001:db8::1]:443"], proxies)) == "2001:db8::1"
    assert str(client_address("10.0.0.2", ["198.51.100.7:5123"], proxies)) == "198.51.100.7"
    assert client_address(None, [], proxies) is None


def parse_network(text: str) -> Any:
    import ipaddress

    return ipaddress.ip_network(text)


# -- rate limit ------------------------------------------------------------------------------------


def test_a_flood_gets_429_with_retry_after_and_the_sender_can_come_back(
    start_web: Callable[..., ServiceHandle],
) -> None:
    web = start_web(CALLBACK_RATE_LIMIT="1", CALLBACK_RATE_BURST="3")
    answers = [post(web, new_order(f"UIA202611-00421{n}")) for n in range(5)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    limited = answers[3]
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert "error" in limited.json()
    assert stored(web.runtime)[:2] == (3, 3)
    time.sleep(1.05)
    assert post(web, new_order(ORDER)).status_code == 200


def test_rate_limit_is_per_source(start_web: Callable[..., ServiceHandle]) -> None:
    web = start_web(CALLBACK_RATE_LIMIT="0.1", CALLBACK_RATE_BURST="1", TRUSTED_PROXIES="127.0.0.1")
    first = {"X-Forwarded-For": "198.51.100.1"}
    second = {"X-Forwarded-For": "198.51.100.2"}
    assert post(web, new_order(ORDER), headers=first).status_code == 200
    assert post(web, new_order(ORDER), headers=first).status_code == 429
    assert post(web, new_order(ORDER), headers=second).status_code == 200


def test_token_bucket_refills_at_its_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(2.0, 2, clock=lambda: now[0], max_keys=2)
    assert limiter.take("a") == (0.0, False)
    assert limiter.take("a") == (0.0, False)
    assert limiter.take("a") == (0.5, True)  # first refusal: worth one log line
    assert limiter.take("a") == (0.5, False)  # the flood after it is not
    now[0] += 0.5
    assert limiter.take("a") == (0.0, False)
    limiter.take("b")
    limiter.take("c")  # a third source pushes out the least recently seen one ("a")
    assert limiter.take("a") == (0.0, False)


# -- the order of the checks -----------------------------------------------------------------------


def test_checks_run_in_order_allow_list_rate_size_token_content(
    start_web: Callable[..., ServiceHandle],
) -> None:
    web = start_web(CALLBACK_RATE_LIMIT="0.01", CALLBACK_RATE_BURST="3")
    # Just over the limit (far over it, waitress itself refuses before the app sees it).
    big = json.dumps({**new_order(ORDER), "pad": "x" * 65_600}).encode()
    assert 64 * 1024 < len(big) < 65 * 1024
    # Size before the token: a big body with a wrong token is 413, not 401.
    too_big = post(web, big, token="wrong-token-wrong-token")
    assert too_big.status_code == 413
    assert "error" in too_big.json()
    # Token before content: bad JSON with a wrong token is 401, not 400.
    assert post(web, b"{not json", token="wrong-token-wrong-token").status_code == 401
    assert post(web, b"{not json").status_code == 400
    # Rate before anything else: the bucket is now empty, so even a good call waits.
    limited = post(web, new_order(ORDER))
    assert limited.status_code == 429
    assert stored(web.runtime) == (0, 0, 0)


def test_allow_list_comes_before_the_rate_limit(start_web: Callable[..., ServiceHandle]) -> None:
    web = start_web(CALLBACK_ALLOWED_NETWORKS="203.0.113.0/24", CALLBACK_RATE_BURST="1")
    assert [post(web, new_order(ORDER)).status_code for _ in range(3)] == [403, 403, 403]
