"""UtopiaClient against the local UTOPIA emulator (a real HTTP server on loopback)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from tests.conftest import load_fixture
from utopia_handler.clients.errors import OutsideError, RejectedError, RetryableError
from utopia_handler.clients.utopia import NotOurOrder, UtopiaClient
from utopia_handler.emulators.utopia import UtopiaEmulator

from ._shared import FAST, UTOPIA_KEY, closed_port
from .test_utopia_parse import SIGNED_250

REF = "UIA202612-007351"  # Jonah Abernathy, tests/fixtures/utopia/contractlookup__signed_250.json
PRIVATE = ("Jonah", "Abernathy", "jonah.abernathy@example.com", "JUNIPER RIDGE", "8015550163")


@pytest.fixture
def emulator(utopia_emulator: UtopiaEmulator) -> UtopiaEmulator:
    utopia_emulator.add_order(REF, load_fixture("utopia/contractlookup__signed_250.json"))
    return utopia_emulator


def assert_clean(error: OutsideError) -> None:
    """No API key and no customer data in what operators and logs will see."""
    for text in (str(error), error.message):
        assert UTOPIA_KEY not in text
        for private in PRIVATE:
            assert private not in text


# -- lookup_contract


def test_lookup_returns_the_typed_contract(emulator: UtopiaEmulator, utopia: UtopiaClient) -> None:
    assert utopia.lookup_contract(REF) == SIGNED_250


def test_lookup_logs_one_line_without_key_or_body(
    emulator: UtopiaEmulator, utopia: UtopiaClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="utopia_handler.clients.utopia"):
        utopia.lookup_contract(REF)

    lines = [r.getMessage() for r in caplog.records if r.name == "utopia_handler.clients.utopia"]
    assert len(lines) == 1
    assert "contractlookup" in lines[0] and "status=200" in lines[0] and "elapsed_ms=" in lines[0]
    assert UTOPIA_KEY not in lines[0] and "Abernathy" not in lines[0]


def test_order_of_another_isp_is_not_our_order(
    emulator: UtopiaEmulator, utopia: UtopiaClient
) -> None:
    with pytest.raises(NotOurOrder) as caught:
        utopia.lookup_contract("UIA202611-999999")

    assert caught.value.message == "contractlookup: No valid records found for this ISP"
    assert caught.value.code == 404


def test_wrong_key_is_rejected_with_a_hint(emulator: UtopiaEmulator) -> None:
    wrong_key = "wrong-key-0042"
    client = UtopiaClient(emulator.base_url, wrong_key, timeouts=FAST)
    with client, pytest.raises(RejectedError) as caught:
        client.lookup_contract(REF)

    assert not isinstance(caught.value, NotOurOrder)
    assert caught.value.code == 401
    assert caught.value.message == "authentication failed: check UTOPIA_API_KEY"
    assert wrong_key not in str(caught.value)


def test_unavailable_with_retry_after_is_retryable(
    emulator: UtopiaEmulator, utopia: UtopiaClient
) -> None:
    emulator.faults.add("contractlookup", "fail", status=503, retry_after=7)

    with pytest.raises(RetryableError) as caught:
        utopia.lookup_contract(REF)

    assert caught.value.retry_after == 7.0
    assert caught.value.may_have_applied is False
    assert caught.value.message == "contractlookup: HTTP 503 (retry after 7s)"
    # The fault was used up: the next try goes through.
    assert utopia.lookup_contract(REF) == SIGNED_250


def test_too_many_requests_is_retryable(emulator: UtopiaEmulator, utopia: UtopiaClient) -> None:
    emulator.faults.add("contractlookup", "fail", status=429, retry_after=2)

    with pytest.raises(RetryableError) as caught:
        utopia.lookup_contract(REF)

    assert (caught.value.retry_after, caught.value.may_have_applied) == (2.0, False)


def test_gateway_timeout_may_have_applied(emulator: UtopiaEmulator, utopia: UtopiaClient) -> None:
    emulator.faults.add("contractlookup", "fail", status=504)

    with pytest.raises(RetryableError) as caught:
        utopia.lookup_contract(REF)

    assert caught.value.may_have_applied is True
    assert caught.value.retry_after is None


def test_no_answer_in_time_is_retryable_and_may_have_applied(
    emulator: UtopiaEmulator, utopia: UtopiaClient
) -> None:
    emulator.faults.add("contractlookup", "timeout", seconds=3)

    with pytest.raises(RetryableError) as caught:
        utopia.lookup_contract(REF)

    assert caught.value.message == "contractlookup: read timed out after 0.5s"
    assert caught.value.may_have_applied is True
    assert_clean(caught.value)


@pytest.mark.parametrize("kind", ["drop_before", "drop_after_apply"])
def test_connection_dropped_before_the_reply(
    emulator: UtopiaEmulator, utopia: UtopiaClient, kind: str
) -> None:
    emulator.faults.add("contractlookup", kind)

    with pytest.raises(RetryableError) as caught:
        utopia.lookup_contract(REF)

    # The request went out either way; the client cannot tell the two apart.
    assert caught.value.may_have_applied is True
    assert "connection lost before the reply" in caught.value.message
    assert_clean(caught.value)


def test_nothing_listening_cannot_have_applied() -> None:
    client = UtopiaClient(f"http://127.0.0.1:{closed_port()}", UTOPIA_KEY, timeouts=FAST)
    with client, pytest.raises(RetryableError) as caught:
        client.lookup_contract(REF)

    assert caught.value.may_have_applied is False
    assert caught.value.message.startswith("contractlookup: could not connect")
    assert_clean(caught.value)


def test_empty_url_is_a_configuration_error() -> None:
    client = UtopiaClient("", UTOPIA_KEY, timeouts=FAST)
    with client, pytest.raises(RejectedError) as caught:
        client.lookup_contract(REF)

    assert "http://" in caught.value.message


def test_other_refusals_quote_utopias_error(emulator: UtopiaEmulator, utopia: UtopiaClient) -> None:
    emulator.faults.add("contractlookup", "fail", status=400, message="Invalid orderref")

    with pytest.raises(RejectedError) as caught:
        utopia.lookup_contract(REF)

    assert caught.value.message == "contractlookup refused: HTTP 400 (Invalid orderref)"
    assert caught.value.code == 400


# -- download_contract


def test_download_returns_the_pdf(emulator: UtopiaEmulator, utopia: UtopiaClient) -> None:
    pdf = utopia.download_contract(REF)

    assert pdf is not None
    assert pdf.startswith(b"%PDF") and REF.encode() in pdf


def test_download_not_ready_is_none(emulator: UtopiaEmulator, utopia: UtopiaClient) -> None:
    emulator.add_order(
        "UIA202611-000123", load_fixture("utopia/contractlookup__older_no_terms.json")
    )

    assert utopia.download_contract("UIA202611-000123") is None


def test_download_of_unknown_order_is_none(emulator: UtopiaEmulator, utopia: UtopiaClient) -> None:
    assert utopia.download_contract("UIA202611-999999") is None


def test_download_with_wrong_key_is_rejected(emulator: UtopiaEmulator) -> None:
    client = UtopiaClient(emulator.base_url, "nope", timeouts=FAST)
    with client, pytest.raises(RejectedError) as caught:
        client.download_contract(REF)

    assert caught.value.code == 401


def test_download_unavailable_is_retryable(emulator: UtopiaEmulator, utopia: UtopiaClient) -> None:
    emulator.faults.add("contractdownload", "fail", status=502)

    with pytest.raises(RetryableError):
        utopia.download_contract(REF)


# -- what the emulator cannot show: replies UTOPIA might send, played by httpx.MockTransport


def mocked(handler: httpx.MockTransport, *, network: str | None = None) -> UtopiaClient:
    return UtopiaClient(
        "https://utopia.test", UTOPIA_KEY, timeouts=FAST, network=network, transport=handler
    )


def test_request_carries_key_ref_and_network_in_a_json_body() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=load_fixture("utopia/contractlookup__signed_250.json"))

    with mocked(httpx.MockTransport(answer), network="BOZEMAN") as client:
        client.lookup_contract(REF)

    assert str(seen[0].url) == "https://utopia.test/spquery/contractlookup"
    assert seen[0].method == "POST"
    assert json.loads(seen[0].content) == {
        "apikey": UTOPIA_KEY,
        "orderref": REF,
        "network": "BOZEMAN",
    }


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"<html>maintenance</html>"),
        (200, b"[1, 2]"),
        (200, b'{"error": "Order is locked"}'),
    ],
)
def test_a_200_that_is_no_contract_is_rejected(status: int, body: bytes) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))

    with mocked(transport) as client, pytest.raises(RejectedError) as caught:
        client.lookup_contract(REF)

    assert not isinstance(caught.value, NotOurOrder)


def test_authentication_failed_reply_is_rejected_and_never_retried() -> None:
    body = load_fixture("utopia/auth__failed.json")
    transport = httpx.MockTransport(lambda request: httpx.Response(401, json=body))

    with mocked(transport) as client, pytest.raises(RejectedError) as caught:
        client.lookup_contract(REF)

    assert not isinstance(caught.value, (NotOurOrder, RetryableError))
    assert (caught.value.code, caught.value.message) == (
        401,
        "authentication failed: check UTOPIA_API_KEY",
    )


def test_not_our_order_whatever_the_status() -> None:
    body = load_fixture("utopia/contractlookup__error_not_ours.json")
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))

    with mocked(transport) as client, pytest.raises(NotOurOrder):
        client.lookup_contract(REF)


def test_an_error_key_beside_the_contract_is_not_a_failure() -> None:
    body = load_fixture("utopia/contractlookup__signed_250.json")
    body["error"] = ""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))

    with mocked(transport) as client:
        assert client.lookup_contract(REF) == SIGNED_250


def test_retry_after_as_http_date() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(
            429, headers={"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}
        )
    )

    with mocked(transport) as client, pytest.raises(RetryableError) as caught:
        client.lookup_contract(REF)

    assert caught.value.retry_after == 0.0


def test_a_pdf_content_type_without_a_pdf_is_rejected() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(
            200, content=b"<html>oops</html>", headers={"Content-Type": "application/pdf"}
        )
    )

    with mocked(transport) as client, pytest.raises(RejectedError):
        client.download_contract(REF)
