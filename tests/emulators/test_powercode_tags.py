"""UAPI customer tags: only the production form (query string, one tag, no body) is taken."""

from __future__ import annotations

import base64
import http.client
from typing import Any

import httpx
import pytest

from utopia_handler.emulators import PowerCodeEmulator
from utopia_handler.emulators.powercode import TAG_REPLY_SHAPES

from ._shared import create_customer, tag_request, tags_url, uapi_headers


def test_tags_add_list_and_remove(client: httpx.Client, powercode: PowerCodeEmulator) -> None:
    customer = create_customer(client, powercode)
    first = tag_request(client, powercode, "POST", customer, 1)
    assert first.status_code == 200
    assert first.json() == {"Success": True, "Response": [{"TagID": 1, "TagName": "UTOPIA"}]}
    assert tag_request(client, powercode, "POST", customer, 3).status_code == 200
    listed = client.get(
        tags_url(powercode),
        params={"customerID": customer},
        headers=uapi_headers(powercode.api_key),
    )
    assert listed.json() == {
        "Success": True,
        "Response": [{"TagID": 1, "TagName": "UTOPIA"}, {"TagID": 3, "TagName": "New install"}],
    }
    removed = tag_request(client, powercode, "DELETE", customer, 3)
    assert removed.json() == {"Success": True, "Response": [{"TagID": 1, "TagName": "UTOPIA"}]}
    assert powercode.customer_tags[customer] == {1}
    assert powercode.calls["uapi:tags"] == 4


def test_a_tag_post_with_content_length_zero_is_taken(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer = create_customer(client, powercode)
    connection = http.client.HTTPConnection("127.0.0.1", powercode.port, timeout=5)
    try:
        headers = {**uapi_headers(powercode.api_key), "Content-Length": "0"}
        path = f"/uapi/customer/tags/customer?customerID={customer}&tags[]=3"
        connection.request("POST", path, headers=headers)
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    assert powercode.customer_tags[customer] == {3}


# (query-string pairs, body keyword arguments for httpx, the refusal); "{c}" is the customer.
REFUSED: dict[str, tuple[list[tuple[str, str]], dict[str, Any], str]] = {
    "json body": ([], {"json": {"customerID": "{c}", "tags": [3]}}, "request body not accepted"),
    "json body with the right query": (
        [("customerID", "{c}"), ("tags[]", "3")],
        {"json": {"customerID": "{c}", "tags": [3]}},
        "request body not accepted",
    ),
    "form body": (
        [],
        {"data": {"customerID": "{c}", "tags[]": "3"}},
        "request body not accepted",
    ),
    "tags[] missing": ([("customerID", "{c}")], {}, "tags[] missing"),
    "tags[] repeated": (
        [("customerID", "{c}"), ("tags[]", "3"), ("tags[]", "2")],
        {},
        "tags[] repeated: one tag per request",
    ),
    "comma-joined": (
        [("customerID", "{c}"), ("tags[]", "3,2")],
        {},
        "tags[] holds a comma-joined list: one tag per request",
    ),
    "not numeric": (
        [("customerID", "{c}"), ("tags[]", "New install")],
        {},
        "tags[] is not a numeric tag id",
    ),
    "blank": ([("customerID", "{c}"), ("tags[]", "")], {}, "tags[] is not a numeric tag id"),
    "no brackets": (
        [("customerID", "{c}"), ("tags", "3")],
        {},
        "tag ids must be sent as tags[]",
    ),
    "no brackets beside tags[]": (
        [("customerID", "{c}"), ("tags[]", "3"), ("tags", "3")],
        {},
        "tag ids must be sent as tags[]",
    ),
    "indexed": ([("customerID", "{c}"), ("tags[0]", "3")], {}, "tag ids must be sent as tags[]"),
    "customerID missing": ([("tags[]", "3")], {}, "Missing or invalid customerID"),
    "customerID not numeric": (
        [("customerID", "Avery"), ("tags[]", "3")],
        {},
        "Missing or invalid customerID",
    ),
}


def _fill(value: Any, customer: int) -> Any:
    if isinstance(value, str):
        return value.replace("{c}", str(customer))
    if isinstance(value, dict):
        return {k: _fill(v, customer) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, customer) for v in value]
    return value


@pytest.mark.parametrize("method", ["POST", "DELETE"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_tag_writes_not_in_the_production_form_are_refused_with_the_reason(
    client: httpx.Client, powercode: PowerCodeEmulator, method: str, case: str
) -> None:
    customer = create_customer(client, powercode)
    powercode.customer_tags[customer] = {1}
    pairs, body, reason = REFUSED[case]
    response = client.request(
        method,
        tags_url(powercode),
        params=[(name, _fill(value, customer)) for name, value in pairs],
        headers=uapi_headers(powercode.api_key),
        **_fill(body, customer),
    )
    assert response.status_code == 400
    assert response.json() == {"Success": False, "Response": reason}
    # Neither added nor removed.
    assert powercode.customer_tags[customer] == {1}


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_unknown_customer_is_404_and_unknown_tag_400(
    client: httpx.Client, powercode: PowerCodeEmulator, method: str
) -> None:
    customer = create_customer(client, powercode)
    unknown_tag = tag_request(client, powercode, method, customer, 9)
    assert unknown_tag.status_code == 400
    assert unknown_tag.json() == {"Success": False, "Response": "Unknown tag 9"}
    unknown_customer = tag_request(client, powercode, method, 1, 1)
    assert unknown_customer.status_code == 404
    assert unknown_customer.json() == {"Success": False, "Response": "Customer not found"}
    assert powercode.customer_tags.get(customer, set()) == set()


@pytest.mark.parametrize("customer_id", [None, "", "Avery"])
def test_listing_needs_a_numeric_customer_id(
    client: httpx.Client, powercode: PowerCodeEmulator, customer_id: str | None
) -> None:
    params = {} if customer_id is None else {"customerID": customer_id}
    response = client.get(
        tags_url(powercode), params=params, headers=uapi_headers(powercode.api_key)
    )
    assert response.status_code == 400
    assert response.json() == {"Success": False, "Response": "Missing or invalid customerID"}


def test_listing_an_unknown_customer_is_404(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    response = client.get(
        tags_url(powercode), params={"customerID": "1"}, headers=uapi_headers(powercode.api_key)
    )
    assert response.status_code == 404


EXPECTED_POST_REPLY: dict[str, object] = {
    "all": [{"TagID": 1, "TagName": "UTOPIA"}, {"TagID": 3, "TagName": "New install"}],
    "added": [{"TagID": 3, "TagName": "New install"}],
    "bare": True,
    "empty": [],
}


@pytest.mark.parametrize("shape", TAG_REPLY_SHAPES)
def test_tag_reply_shapes_change_the_answer_not_the_tags(
    client: httpx.Client, powercode: PowerCodeEmulator, shape: str
) -> None:
    customer = create_customer(client, powercode)
    powercode.customer_tags[customer] = {1}
    powercode.tag_reply = shape
    reply = tag_request(client, powercode, "POST", customer, 3)
    assert reply.status_code == 200
    assert reply.json() == {"Success": True, "Response": EXPECTED_POST_REPLY[shape]}
    # Whatever the reply showed, a read-back sees both tags.
    listed = client.get(
        tags_url(powercode),
        params={"customerID": customer},
        headers=uapi_headers(powercode.api_key),
    )
    assert listed.json()["Response"] == EXPECTED_POST_REPLY["all"]


def test_tag_reply_shapes_are_the_documented_four() -> None:
    assert set(TAG_REPLY_SHAPES) == set(EXPECTED_POST_REPLY)
    assert TAG_REPLY_SHAPES[0] == "all"  # the default is the one the evidence shows


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + base64.b64encode(b"wrong").decode()},
        # The right key in the user:password form is not what PowerCode expects.
        {"Authorization": "Basic " + base64.b64encode(b"pc-test-key:").decode()},
    ],
)
def test_uapi_refuses_a_wrong_key(
    client: httpx.Client, powercode: PowerCodeEmulator, headers: dict[str, str]
) -> None:
    customer = create_customer(client, powercode)
    response = client.post(
        tags_url(powercode), params={"customerID": customer, "tags[]": 1}, headers=headers
    )
    assert response.status_code == 401
    assert response.json() == {"Success": False, "Response": "Unauthorized"}
    assert powercode.customer_tags.get(customer, set()) == set()


def test_a_fault_on_tag_posts_spares_the_reads(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer = create_customer(client, powercode)
    powercode.faults.add("uapi:tags:POST", "fail", status=502, count=None)
    headers = uapi_headers(powercode.api_key)
    listed = client.get(tags_url(powercode), params={"customerID": customer}, headers=headers)
    assert listed.status_code == 200
    assert tag_request(client, powercode, "POST", customer, 1).status_code == 502
    assert powercode.customer_tags.get(customer, set()) == set()
    powercode.faults.clear()
    powercode.faults.add("uapi:tags", "fail", status=503)
    listed = client.get(tags_url(powercode), params={"customerID": customer}, headers=headers)
    assert listed.status_code == 503
