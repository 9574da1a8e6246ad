"""UTOPIA's order list: finding orders in replies of any shape, empty versus unreadable, the client.

UTOPIA's reply shape for `/spquery/orders` has never been recorded, so the reading is tested over
many plausible shapes, and the client over real HTTP against the stand-in (every shape it plays)
and against a recording server for the replies the stand-in does not play.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import load_fixture
from tests.contracts.recorder import WireRequest, base_url, json_answer, recording_server
from utopia_handler.clients import utopia_orders
from utopia_handler.clients.errors import RejectedError, RetryableError
from utopia_handler.clients.utopia import UtopiaClient
from utopia_handler.clients.utopia_orders import (
    MAX_DEPTH,
    MAX_NODES,
    ListedOrder,
    OrderList,
    find_listed_orders,
    read_order_list,
)
from utopia_handler.emulators.utopia import ORDER_LIST_SHAPES, UtopiaEmulator

from ._shared import FAST, UTOPIA_KEY

REF_A = "UIA202611-004217"
REF_B = "UIA202611-004218"
REF_C = "UIA202612-000031"
NOT_OURS = {"error": "No valid records found for this ISP"}


def refs(payload: Any) -> list[str]:
    return [order.order_ref for order in find_listed_orders(payload)]


# -- finding orders in replies of any shape


def test_a_bare_list_of_refs() -> None:
    payload = [REF_A, f"  {REF_B.lower()} ", REF_C]

    assert find_listed_orders(payload) == [
        ListedOrder(REF_A, "", ""),
        ListedOrder(REF_B, "", ""),
        ListedOrder(REF_C, "", ""),
    ]


def test_a_list_of_objects_with_status_and_site() -> None:
    payload = [
        {"orderref": REF_A, "status": "Signed", "siteid": "517264"},
        {"orderref": REF_B, "status": "Pending", "siteid": 318002},
        {"orderref": REF_C, "status": "Cancelled", "siteid": 99120.0},
    ]

    assert find_listed_orders(payload) == [
        ListedOrder(REF_A, "Signed", "517264"),
        ListedOrder(REF_B, "Pending", "318002"),
        ListedOrder(REF_C, "Cancelled", "99120"),
    ]


def test_orders_nested_in_wrappers() -> None:
    payload = {
        "status": "success",
        "count": 2,
        "data": {"orders": [{"orderref": REF_A, "status": "Signed", "siteid": "517264"}]},
        "meta": {"page": 1, "more": [{"order": {"ref": REF_B, "orderstatus": "Installed"}}]},
    }

    assert find_listed_orders(payload) == [
        ListedOrder(REF_A, "Signed", "517264"),
        ListedOrder(REF_B, "Installed", ""),
    ]


def test_an_object_keyed_by_refs() -> None:
    payload = {
        REF_A: {"status": "Signed", "siteid": "517264"},
        REF_B.lower(): "Pending",
        REF_C: {"status": "Signed", "orderref": REF_C, "site": "99120"},
    }

    assert find_listed_orders(payload) == [
        ListedOrder(REF_A, "Signed", "517264"),
        ListedOrder(REF_B, "Pending", ""),
        ListedOrder(REF_C, "Signed", "99120"),
    ]


def test_an_object_keyed_by_one_ref_naming_another_lists_both() -> None:
    payload = {REF_A: {"orderref": REF_B, "status": "Signed", "siteid": "318002"}}

    # The details belong to the order the object names; the key is listed without them.
    assert find_listed_orders(payload) == [
        ListedOrder(REF_A, "", ""),
        ListedOrder(REF_B, "Signed", "318002"),
    ]


def test_php_lists_sent_as_objects() -> None:
    payload = {
        "0": {"orderref": REF_A, "status": "Signed", "siteid": "517264"},
        "1": {"orderref": REF_B, "status": "Signed", "siteid": "318002"},
        "2": {"items": {"0": REF_C}},
    }

    assert refs(payload) == [REF_A, REF_B, REF_C]


@pytest.mark.parametrize(
    "ref_key",
    ["orderref", "order_ref", "orderRef", "OrderRef", "ORDERREF", "order-ref", "Order Ref", "ref"],
)
@pytest.mark.parametrize(
    ("status_key", "site_key"),
    [
        ("status", "siteid"),
        ("Status", "siteId"),
        ("order_status", "site_id"),
        ("OrderStatus", "SiteID"),
        ("state", "site"),
    ],
)
def test_keys_in_any_casing_or_spelling(ref_key: str, status_key: str, site_key: str) -> None:
    payload = [{ref_key: REF_A, status_key: "Signed", site_key: "517264"}]

    assert find_listed_orders(payload) == [ListedOrder(REF_A, "Signed", "517264")]


def test_status_is_preferred_over_state_and_site_may_sit_in_the_address() -> None:
    payload = [
        {
            "orderref": REF_A,
            "state": "Utah",
            "status": "Signed",
            "address": {"siteid": "517264", "state": "Utah"},
        }
    ]

    assert find_listed_orders(payload) == [ListedOrder(REF_A, "Signed", "517264")]


def test_a_list_of_whole_contracts_gives_refs_statuses_and_sites_only() -> None:
    contract = load_fixture("utopia/contractlookup__signed_250.json")
    payload = {"orders": [{"orderref": REF_A, **contract}]}

    [order] = find_listed_orders(payload)

    assert order == ListedOrder(REF_A, "Signed", "517264")
    assert "Lindqvist" not in repr(order)


@pytest.mark.parametrize(
    "text",
    [
        f"see {REF_A} notes",
        f"{REF_A} (replaced)",
        f"Order {REF_A}",
        f"{REF_A},{REF_B}",
        "UIA202611-0042170",  # seven digits
        "UIA20261-004217",  # five digits of date
        "XUIA202611-004217",
        "UIA\uff12\uff10\uff12\uff16\uff11\uff11-004217",  # full-width digits
    ],
)
def test_a_ref_inside_longer_text_does_not_count(text: str) -> None:
    payload = [{"note": text}, text, {text: "Signed"}]

    assert find_listed_orders(payload) == []
    assert read_order_list(payload).readable is False


def test_duplicates_keep_the_first_and_fill_in_what_it_lacked() -> None:
    payload = {
        "new": [REF_B, {"orderref": REF_A, "status": "Signed"}],
        "all": [
            {"orderref": REF_A, "status": "Installed", "siteid": "517264"},
            {"orderref": REF_B.lower(), "status": "Pending", "siteid": "318002"},
            {"orderref": REF_A},
        ],
    }

    assert find_listed_orders(payload) == [
        ListedOrder(REF_B, "Pending", "318002"),
        ListedOrder(REF_A, "Signed", "517264"),
    ]


def test_statuses_are_kept_as_written_but_long_text_is_not_a_status() -> None:
    payload = [
        {"orderref": REF_A, "status": "Pending Install"},
        {"orderref": REF_B, "status": 3},
        {"orderref": REF_C, "status": "x" * 200, "siteid": "line one\nline two"},
    ]

    assert find_listed_orders(payload) == [
        ListedOrder(REF_A, "Pending Install", ""),
        ListedOrder(REF_B, "3", ""),
        ListedOrder(REF_C, "", ""),
    ]


def test_other_networks_refs_are_taken_from_reference_keys() -> None:
    payload = {
        "data": [
            {"orderref": "bf-2001", "status": "Signed", "siteid": "7"},
            {"OrderID": 2002, "status": "Pending"},
            {"order_ref": "pending"},  # no digit: a word, not a reference
            {"name": "BF-2003"},  # not under a reference key
        ]
    }

    assert find_listed_orders(payload) == [
        ListedOrder("BF-2001", "Signed", "7"),
        ListedOrder("2002", "Pending", ""),
    ]


def test_other_ids_beside_utopia_refs_are_not_orders() -> None:
    payload = [
        {
            "orderid": "8812",
            "orderref": REF_A,
            "status": "Signed",
            "items": [{"orderid": "55", "description": "250 Mbps"}],
        }
    ]

    assert find_listed_orders(payload) == [ListedOrder(REF_A, "Signed", "")]


def test_a_second_ref_in_an_object_is_listed_without_the_objects_details() -> None:
    payload = [{"orderref": REF_A, "status": "Signed", "siteid": "1", "replaces": REF_B}]

    assert find_listed_orders(payload) == [
        ListedOrder(REF_A, "Signed", "1"),
        ListedOrder(REF_B, "", ""),
    ]


# -- empty versus unreadable


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {},
        {"orders": []},
        {"data": []},
        {"data": {"orders": {}}},
        {"success": True, "message": "ok", "total": 0, "data": []},
        {"count": "0", "orders": [], "links": {}},
        NOT_OURS,
    ],
)
def test_an_empty_list_is_readable_and_empty(payload: Any) -> None:
    assert read_order_list(payload) == OrderList((), readable=True, note="")


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"message": "ok"}, "an object with no list in it"),
        ({"error": "Invalid status"}, "an object with no list in it"),
        (None, "not a list or an object"),
        ("Orders", "not a list or an object"),
        (0, "not a list or an object"),
        ([1, 2], "a list whose items are not orders"),
        ([{"id": 7, "name": "x"}], "a list whose items are not orders"),
        ({"data": [{"name": "x"}]}, "a list whose items are not orders"),
        ({"total": 3, "data": []}, "it counts 3 orders but lists none we can read"),
        ({"data": {"orders": [], "recordCount": 12}}, "it counts 12 orders"),
    ],
)
def test_a_reply_without_orders_that_is_not_an_empty_list_is_unreadable(
    payload: Any, why: str
) -> None:
    result = read_order_list(payload)

    assert (result.orders, result.readable) == ((), False)
    assert result.note.startswith("no order reference found in the reply (")
    assert why in result.note


def test_the_note_never_quotes_the_reply() -> None:
    result = read_order_list({"customer": "Avery Lindqvist", "phone": "8015550142"})

    assert result.readable is False
    assert "Avery" not in result.note and "8015550142" not in result.note


def test_a_list_with_orders_is_readable() -> None:
    assert read_order_list([{"orderref": REF_A, "status": "Signed"}]) == OrderList(
        (ListedOrder(REF_A, "Signed", ""),), readable=True
    )


# -- guards against pathological replies


def nested(levels: int, inner: Any) -> Any:
    value = inner
    for _ in range(levels):
        value = {"next": [value]}
    return value


def test_parts_nested_too_deep_are_skipped_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    payload = [nested(5, REF_A), nested(MAX_DEPTH, REF_B), REF_C]

    with caplog.at_level(logging.WARNING, logger="utopia_handler.clients.utopia_orders"):
        assert refs(payload) == [REF_A, REF_C]
    result = read_order_list(payload)

    assert result.orders == (ListedOrder(REF_A, "", ""), ListedOrder(REF_C, "", ""))
    assert result.readable is False
    assert result.note == "parts of the reply nested deeper than 64 levels were not read"
    assert "too_deep=True" in caplog.text


def test_the_depth_limit_is_exact() -> None:
    # Each step of nested() is an object and a list: the ref sits at depth MAX_DEPTH.
    at_limit = nested(MAX_DEPTH // 2, REF_A)

    assert read_order_list(at_limit) == OrderList((ListedOrder(REF_A, "", ""),), readable=True)
    assert read_order_list([at_limit]).readable is False


def test_a_huge_reply_stops_at_the_node_cap_and_says_so() -> None:
    payload = [REF_A, *(["filler"] * MAX_NODES), REF_B]

    result = read_order_list(payload)

    assert result.orders == (ListedOrder(REF_A, "", ""),)
    assert result.readable is False
    assert result.note == "the reply is too large: reading stopped after 200000 values"


def test_the_node_cap_counts_keys_objects_and_lists_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(utopia_orders, "MAX_NODES", 10)
    payload = {"data": [{"orderref": f"UIA202611-{n:06d}"} for n in range(10)]}

    result = read_order_list(payload)

    assert 0 < len(result.orders) < 10
    assert result.readable is False


# -- the client against the stand-in (real HTTP)


@pytest.fixture
def listing(utopia_emulator: UtopiaEmulator) -> UtopiaEmulator:
    contract = load_fixture("utopia/contractlookup__signed_250.json")
    utopia_emulator.add_order(REF_A, contract)
    utopia_emulator.add_order(
        REF_B, {**contract, "address": {"siteid": "318002"}}, status="Cancelled"
    )
    # An order whose callback never came is just an order the stand-in holds.
    utopia_emulator.add_order(REF_C, {"address": {"siteid": "99120"}})
    return utopia_emulator


EXPECTED = (
    ListedOrder(REF_A, "Signed", "517264"),
    ListedOrder(REF_B, "Cancelled", "318002"),
    ListedOrder(REF_C, "Signed", "99120"),
)


@pytest.mark.parametrize("shape", ORDER_LIST_SHAPES)
def test_every_shape_the_stand_in_plays_is_read(
    listing: UtopiaEmulator, utopia: UtopiaClient, shape: str
) -> None:
    listing.order_list_shape = shape

    result = utopia.list_orders()

    assert result.readable is True and result.note == ""
    if shape == "refs_only":
        assert result.orders == tuple(ListedOrder(o.order_ref, "", "") for o in EXPECTED)
    else:
        assert result.orders == EXPECTED
    assert listing.calls["orders"] == 1


@pytest.mark.parametrize("shape", ORDER_LIST_SHAPES)
def test_filters_reach_the_stand_in(
    listing: UtopiaEmulator, utopia: UtopiaClient, shape: str
) -> None:
    listing.order_list_shape = shape

    cancelled = utopia.list_orders(status="Cancelled")
    by_site = utopia.list_orders(site_id="99120")
    by_ref = utopia.list_orders(order_ref=REF_A, status="Signed", site_id="517264")

    assert [o.order_ref for o in cancelled.orders] == [REF_B]
    assert [o.order_ref for o in by_site.orders] == [REF_C]
    assert [o.order_ref for o in by_ref.orders] == [REF_A]


def test_no_valid_records_is_an_empty_list(listing: UtopiaEmulator, utopia: UtopiaClient) -> None:
    # The stand-in answers as UTOPIA does when it has nothing for this provider: 404 + error.
    assert utopia.list_orders(status="Disconnected") == OrderList((), readable=True, note="")


@pytest.mark.parametrize("shape", ORDER_LIST_SHAPES)
def test_an_empty_list_in_each_shape_is_empty(
    utopia_emulator: UtopiaEmulator, utopia: UtopiaClient, shape: str
) -> None:
    utopia_emulator.order_list_shape = shape
    utopia_emulator.empty_order_list_reply = "shape"

    assert utopia.list_orders() == OrderList((), readable=True, note="")


def test_wrong_key_is_rejected_with_a_hint(listing: UtopiaEmulator) -> None:
    client = UtopiaClient(listing.base_url, "wrong-key-0042", timeouts=FAST)
    with client, pytest.raises(RejectedError) as caught:
        client.list_orders()

    assert caught.value.code == 401
    assert caught.value.message == "authentication failed: check UTOPIA_API_KEY"


def test_unavailable_is_retryable(listing: UtopiaEmulator, utopia: UtopiaClient) -> None:
    listing.faults.add("orders", "fail", status=503, retry_after=7)

    with pytest.raises(RetryableError) as caught:
        utopia.list_orders()

    assert caught.value.message == "orders: HTTP 503 (retry after 7s)"
    assert caught.value.retry_after == 7.0
    # The fault was used up: the next try reads the list.
    assert utopia.list_orders().orders == EXPECTED


def test_no_answer_in_time_is_retryable(listing: UtopiaEmulator, utopia: UtopiaClient) -> None:
    listing.faults.add("orders", "timeout", seconds=3)

    with pytest.raises(RetryableError) as caught:
        utopia.list_orders()

    assert caught.value.message == "orders: read timed out after 0.5s"


def test_other_refusals_are_rejected_quoting_utopia(
    listing: UtopiaEmulator, utopia: UtopiaClient
) -> None:
    listing.faults.add("orders", "fail", status=400, message="Invalid status")

    with pytest.raises(RejectedError) as caught:
        utopia.list_orders(status="Bogus")

    assert caught.value.message == "orders refused: HTTP 400 (Invalid status)"
    assert caught.value.code == 400


# -- what goes over the wire, and replies the stand-in does not play (a recording server)


@pytest.fixture
def answer() -> dict[str, tuple[int, str, bytes]]:
    """The recording server's next answer; tests replace "reply"."""
    return {"reply": json_answer([])}


@pytest.fixture
def recorder(answer: dict[str, tuple[int, str, bytes]]) -> Iterator[Any]:
    def reply(request: WireRequest) -> tuple[int, str, bytes]:
        return answer["reply"]

    with recording_server(reply) as server:
        yield server


def client_for(server: Any, network: str | None = None) -> UtopiaClient:
    return UtopiaClient(base_url(server), UTOPIA_KEY, timeouts=FAST, network=network)


def test_the_request_carries_only_the_key_when_no_filter_is_given(recorder: Any) -> None:
    with client_for(recorder) as client:
        client.list_orders()

    [request] = recorder.requests
    assert (request.method, request.path, request.content_type) == (
        "POST",
        "/spquery/orders",
        "application/json",
    )
    assert request.json() == {"apikey": UTOPIA_KEY}


def test_the_request_carries_key_network_and_every_filter_given(recorder: Any) -> None:
    with client_for(recorder, network="BOZEMAN") as client:
        client.list_orders(status=" Signed ", site_id="517264", order_ref=REF_A)
        client.list_orders(status="", site_id="  ", order_ref=None)

    assert [r.json() for r in recorder.requests] == [
        {
            "apikey": UTOPIA_KEY,
            "network": "BOZEMAN",
            "status": "Signed",
            "siteid": "517264",
            "orderref": REF_A,
        },
        {"apikey": UTOPIA_KEY, "network": "BOZEMAN"},
    ]


def test_a_network_given_per_call_replaces_the_clients_own(recorder: Any) -> None:
    with client_for(recorder, network="BOZEMAN") as client:
        client.list_orders(network="IDAHOFALLS")
        client.list_orders(network=None)  # the client's own
    with client_for(recorder) as client:
        client.list_orders(network="UTOPIA")
        client.list_orders()

    assert [r.json().get("network") for r in recorder.requests] == [
        "IDAHOFALLS",
        "BOZEMAN",
        "UTOPIA",
        None,
    ]


@pytest.mark.parametrize(
    ("body", "content_type", "note"),
    [
        (
            b"<html><body>Maintenance</body></html>",
            "text/html",
            "the reply is not JSON (text/html)",
        ),
        (b"Orders: none", "text/plain; charset=utf-8", "the reply is not JSON (text/plain)"),
        (b"", "", "the reply is not JSON (no content type)"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "nested too deeply to decode"),
    ],
)
def test_a_reply_that_cannot_be_decoded_is_unreadable(
    recorder: Any,
    answer: dict[str, tuple[int, str, bytes]],
    body: bytes,
    content_type: str,
    note: str,
) -> None:
    answer["reply"] = (200, content_type, body)

    with client_for(recorder) as client:
        result = client.list_orders()

    assert (result.orders, result.readable) == ((), False)
    assert note in result.note


def test_a_200_that_is_only_an_error_is_a_refusal(
    recorder: Any, answer: dict[str, tuple[int, str, bytes]]
) -> None:
    answer["reply"] = json_answer({"error": "Invalid siteid"})

    with client_for(recorder) as client, pytest.raises(RejectedError) as caught:
        client.list_orders(site_id="x")

    assert caught.value.message == "orders refused: Invalid siteid"


@pytest.mark.parametrize("status", [200, 404])
def test_no_valid_records_is_empty_whatever_the_status(
    recorder: Any, answer: dict[str, tuple[int, str, bytes]], status: int
) -> None:
    answer["reply"] = json_answer(NOT_OURS, status=status)

    with client_for(recorder) as client:
        assert client.list_orders() == OrderList((), readable=True)


def test_an_error_key_beside_orders_is_data(
    recorder: Any, answer: dict[str, tuple[int, str, bytes]]
) -> None:
    answer["reply"] = json_answer({"error": "", "data": [{"orderref": REF_A, "status": "Signed"}]})

    with client_for(recorder) as client:
        assert client.list_orders().orders == (ListedOrder(REF_A, "Signed", ""),)


def test_a_json_reply_without_orders_is_unreadable_not_empty(
    recorder: Any, answer: dict[str, tuple[int, str, bytes]]
) -> None:
    answer["reply"] = json_answer({"message": "ok"})

    with client_for(recorder) as client:
        result = client.list_orders()

    assert result.readable is False
    assert json.dumps({"message": "ok"}) not in result.note
