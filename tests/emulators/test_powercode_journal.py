"""The request journal: what our client really put on the wire, never the UAPI key."""

from __future__ import annotations

import dataclasses
import http.client

import httpx
import pytest

from utopia_handler.emulators import PowerCodeEmulator, RecordedRequest

from ._shared import tag_request, uapi_headers


def test_a_classic_call_is_recorded_with_its_form_in_order(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    data = {"apiKey": powercode.api_key, "action": "searchCustomers", "searchString": ""}
    client.post(powercode.api_url, data=data)
    [entry] = powercode.requests
    assert entry.method == "POST"
    assert entry.path == "/api/1/index.php"
    assert entry.query == ()
    assert entry.form == (
        ("apiKey", powercode.api_key),
        ("action", "searchCustomers"),
        ("searchString", ""),
    )
    assert entry.content_type == "application/x-www-form-urlencoded"
    assert entry.body == b"apiKey=pc-test-key&action=searchCustomers&searchString="
    assert entry.has_authorization is False


def test_a_non_form_classic_body_is_recorded_with_no_form(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    client.post(powercode.api_url, json={"apiKey": powercode.api_key, "action": "readCustomer"})
    [entry] = powercode.requests
    assert entry.form == ()
    assert entry.content_type == "application/json"
    assert b"readCustomer" in entry.body


def test_a_tag_call_keeps_the_query_order_and_repeats_but_not_the_key(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer = powercode.add_customer("Dale", "Whitfield", "87 N 400 E", "Layton")
    tag_request(client, powercode, "POST", customer, 3)
    client.post(
        powercode.uapi_url + "customer/tags/customer",
        params=[("tags[]", "1"), ("tags[]", ""), ("customerID", str(customer))],
        headers=uapi_headers(powercode.api_key),
    )
    first, second = powercode.requests
    assert first.query == (("customerID", str(customer)), ("tags[]", "3"))
    assert first.form == ()
    assert first.body == b""
    assert first.has_authorization is True
    assert second.query == (("tags[]", "1"), ("tags[]", ""), ("customerID", str(customer)))
    secret = uapi_headers(powercode.api_key)["Authorization"]
    for entry in powercode.requests:
        assert all(secret not in str(value) for value in dataclasses.astuple(entry))


def test_every_api_request_is_recorded_even_unanswered_but_control_routes_are_not(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    powercode.faults.add("*", "drop_before")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(powercode.api_url, data={"action": "readCustomer"})
    client.get(powercode.uapi_url + "customer/Find", params={"query": "x"})
    client.get(powercode.base_url + "/_emulator/state")
    client.delete(powercode.base_url + "/_emulator/faults")
    assert [(r.method, r.path) for r in powercode.requests] == [
        ("POST", "/api/1/index.php"),
        ("GET", "/uapi/customer/Find"),
    ]
    assert powercode.requests[1].query == (("query", "x"),)


def test_a_raw_request_line_is_recorded_as_sent(powercode: PowerCodeEmulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", powercode.port, timeout=5)
    try:
        connection.request("POST", "/uapi/customer/tags/customer?customerID=5&tags[]=3,7")
        connection.getresponse().read()
    finally:
        connection.close()
    [entry] = powercode.requests
    assert entry == RecordedRequest(
        method="POST",
        path="/uapi/customer/tags/customer",
        query=(("customerID", "5"), ("tags[]", "3,7")),
        form=(),
        content_type="",
        body=b"",
        has_authorization=False,
    )
