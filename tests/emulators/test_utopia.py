"""The UTOPIA emulator: contract lookup, contract PDF download, order list, key checks and errors."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from utopia_handler.emulators import UtopiaEmulator
from utopia_handler.emulators.seed import DEMO_ORDERS, seed_utopia
from utopia_handler.emulators.utopia import ORDER_LIST_SHAPES

READY = "UIA202611-004217"
PENDING = "UIA202611-004219"


@pytest.fixture
def seeded(utopia: UtopiaEmulator) -> UtopiaEmulator:
    seed_utopia(utopia)
    return utopia


def post(
    client: httpx.Client, utopia: UtopiaEmulator, endpoint: str, **body: str
) -> httpx.Response:
    return client.post(f"{utopia.base_url}/spquery/{endpoint}", json=body)


def check_pdf(data: bytes) -> None:
    """Assert ``data`` is a well-formed PDF: header, cross-reference offsets, trailer."""
    assert data.startswith(b"%PDF-1.")
    assert data.rstrip().endswith(b"%%EOF")
    startxref = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data)
    assert startxref is not None
    xref_at = int(startxref.group(1))
    assert data[xref_at:].startswith(b"xref")
    header = re.match(rb"xref\r?\n(\d+) (\d+)\r?\n", data[xref_at:])
    assert header is not None
    first, count = int(header.group(1)), int(header.group(2))
    entries_at = xref_at + header.end()
    for index in range(count):
        entry = data[entries_at + 20 * index : entries_at + 20 * (index + 1)]
        assert len(entry) == 20 and entry.endswith((b" \n", b"\r\n")), entry
        offset, _generation, kind = entry.split()[:3]
        if kind == b"n":
            number = first + index
            assert data[int(offset) :].startswith(b"%d 0 obj" % number)
    trailer = data[entries_at + 20 * count :]
    assert trailer.startswith(b"trailer")
    assert b"/Size %d" % count in trailer
    # Each stream's /Length matches the bytes between "stream" and "endstream".
    for match in re.finditer(rb"/Length (\d+) >>\nstream\n", data):
        length = int(match.group(1))
        assert data[match.end() + length :].startswith(b"\nendstream")


def test_lookup_returns_the_contract_with_string_values(
    client: httpx.Client, seeded: UtopiaEmulator
) -> None:
    response = post(client, seeded, "contractlookup", apikey=seeded.api_key, orderref=READY)
    assert response.status_code == 200
    assert response.json() == DEMO_ORDERS[READY]
    assert response.json()["address"]["siteid"] == "204817"
    assert seeded.calls["contractlookup"] == 1


def test_ispapikey_alias_and_no_content_type(client: httpx.Client, seeded: UtopiaEmulator) -> None:
    # Raw bytes: httpx then sends no Content-Type at all, as UTOPIA's own examples do.
    content = json.dumps({"ispapikey": seeded.api_key, "orderref": READY}).encode()
    response = client.post(seeded.base_url + "/spquery/contractlookup", content=content)
    assert "content-type" not in response.request.headers
    assert response.status_code == 200
    assert response.json()["customer"]["lastname"] == "Lindqvist"


def test_unknown_order_is_not_ours(client: httpx.Client, seeded: UtopiaEmulator) -> None:
    for endpoint in ("contractlookup", "contractdownload"):
        response = post(
            client, seeded, endpoint, apikey=seeded.api_key, orderref="UIA202611-999999"
        )
        assert response.status_code == 404
        assert response.json() == {"error": "No valid records found for this ISP"}


@pytest.mark.parametrize("body", [{}, {"apikey": "wrong"}, {"ispapikey": ""}])
def test_wrong_or_missing_key_is_401(
    client: httpx.Client, seeded: UtopiaEmulator, body: dict[str, str]
) -> None:
    response = post(client, seeded, "contractlookup", orderref=READY, **body)
    assert response.status_code == 401
    assert response.json() == {"error": "Authentication Failed"}


def test_download_returns_a_valid_pdf_when_ready(
    client: httpx.Client, seeded: UtopiaEmulator
) -> None:
    response = post(client, seeded, "contractdownload", apikey=seeded.api_key, orderref=READY)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf; charset=UTF-8"
    check_pdf(response.content)
    assert f"(UTOPIA contract {READY})".encode() in response.content


def test_pdf_escapes_awkward_order_refs(client: httpx.Client, utopia: UtopiaEmulator) -> None:
    orderref = "UIA(odd)\\ref"
    utopia.add_order(orderref, {"contractdownload": "Ready"})
    response = post(client, utopia, "contractdownload", apikey=utopia.api_key, orderref=orderref)
    check_pdf(response.content)
    assert b"UIA\\(odd\\)\\\\ref" in response.content


def test_download_not_ready_is_pending_json(client: httpx.Client, seeded: UtopiaEmulator) -> None:
    response = post(client, seeded, "contractdownload", apikey=seeded.api_key, orderref=PENDING)
    assert response.status_code == 200
    assert response.json() == {"status": "Pending"}


def test_other_endpoints_are_unknown(client: httpx.Client, seeded: UtopiaEmulator) -> None:
    response = post(client, seeded, "editorderitem", apikey=seeded.api_key, cid="1")
    assert response.status_code == 404
    assert response.json() == {"error": "Unknown endpoint"}


def test_orders_are_copied_on_the_way_in_and_out(
    client: httpx.Client, utopia: UtopiaEmulator
) -> None:
    customer = {"firstname": "Dale"}
    utopia.add_order("UIA202611-000001", {"status": "Signed", "customer": customer})
    customer["firstname"] = "Changed"
    response = post(
        client, utopia, "contractlookup", apikey=utopia.api_key, orderref="UIA202611-000001"
    )
    assert response.json()["customer"]["firstname"] == "Dale"


# -- the order list (/spquery/orders); every shape is a guess, see the emulator's docstring


def list_orders(client: httpx.Client, utopia: UtopiaEmulator, **body: object) -> httpx.Response:
    return client.post(f"{utopia.base_url}/spquery/orders", json={"apikey": utopia.api_key, **body})


def test_order_list_shows_every_held_order_with_status_and_site(
    client: httpx.Client, seeded: UtopiaEmulator
) -> None:
    response = list_orders(client, seeded)

    assert response.status_code == 200
    listed = response.json()
    assert [item["orderref"] for item in listed] == list(DEMO_ORDERS)
    assert listed[0] == {"orderref": READY, "status": "Signed", "siteid": "204817"}
    assert seeded.calls["orders"] == 1


@pytest.fixture
def three(utopia: UtopiaEmulator) -> UtopiaEmulator:
    utopia.add_order("UIA202611-000001", {"address": {"siteid": "1001"}})
    utopia.add_order("UIA202611-000002", {"address": {"siteid": 1002}}, status="Cancelled")
    utopia.add_order("UIA202611-000003", {"status": "Pending"})
    return utopia


def test_an_orders_status_comes_from_add_order_the_contract_or_the_default(
    client: httpx.Client, three: UtopiaEmulator
) -> None:
    assert list_orders(client, three).json() == [
        {"orderref": "UIA202611-000001", "status": "Signed", "siteid": "1001"},
        {"orderref": "UIA202611-000002", "status": "Cancelled", "siteid": "1002"},
        {"orderref": "UIA202611-000003", "status": "Pending", "siteid": ""},
    ]


def test_set_order_status_changes_the_list_not_the_contract(
    client: httpx.Client, three: UtopiaEmulator
) -> None:
    three.set_order_status("UIA202611-000001", "Installed")

    listed = list_orders(client, three, orderref="UIA202611-000001").json()
    lookup = post(
        client, three, "contractlookup", apikey=three.api_key, orderref="UIA202611-000001"
    )
    assert listed == [{"orderref": "UIA202611-000001", "status": "Installed", "siteid": "1001"}]
    assert "status" not in lookup.json()
    with pytest.raises(KeyError):
        three.set_order_status("UIA202611-999999", "Signed")


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"status": "Cancelled"}, ["UIA202611-000002"]),
        ({"status": "signed"}, ["UIA202611-000001"]),
        ({"siteid": "1002"}, ["UIA202611-000002"]),
        ({"siteid": 1001}, ["UIA202611-000001"]),
        ({"orderref": "uia202611-000003"}, ["UIA202611-000003"]),
        ({"status": "Signed", "siteid": "1001"}, ["UIA202611-000001"]),
        (
            {"status": "", "siteid": None},
            ["UIA202611-000001", "UIA202611-000002", "UIA202611-000003"],
        ),
    ],
)
def test_order_list_filters(
    client: httpx.Client, three: UtopiaEmulator, filters: dict[str, object], expected: list[str]
) -> None:
    response = list_orders(client, three, **filters)

    assert [item["orderref"] for item in response.json()] == expected


def test_order_list_with_nothing_to_list_is_utopias_not_ours(
    client: httpx.Client, three: UtopiaEmulator
) -> None:
    response = list_orders(client, three, status="Signed", siteid="1002")

    assert response.status_code == 404
    assert response.json() == {"error": "No valid records found for this ISP"}


EXPECTED_SHAPES = {
    "objects": [
        {"orderref": "UIA202611-000001", "status": "Signed", "siteid": "1001"},
        {"orderref": "UIA202611-000002", "status": "Cancelled", "siteid": "1002"},
    ],
    "wrapped": {
        "data": [
            {"orderref": "UIA202611-000001", "status": "Signed", "siteid": "1001"},
            {"orderref": "UIA202611-000002", "status": "Cancelled", "siteid": "1002"},
        ]
    },
    "keyed": {
        "UIA202611-000001": {"status": "Signed", "siteid": "1001"},
        "UIA202611-000002": {"status": "Cancelled", "siteid": "1002"},
    },
    "refs_only": ["UIA202611-000001", "UIA202611-000002"],
    "php": {
        "0": {"orderref": "UIA202611-000001", "status": "Signed", "siteid": "1001"},
        "1": {"orderref": "UIA202611-000002", "status": "Cancelled", "siteid": "1002"},
    },
}
EMPTY_SHAPES = {"objects": [], "wrapped": {"data": []}, "keyed": {}, "refs_only": [], "php": {}}


def test_every_shape_is_tested() -> None:
    assert set(EXPECTED_SHAPES) == set(EMPTY_SHAPES) == set(ORDER_LIST_SHAPES)
    assert ORDER_LIST_SHAPES[0] == "objects"


@pytest.mark.parametrize("shape", ORDER_LIST_SHAPES)
def test_order_list_shapes(client: httpx.Client, utopia: UtopiaEmulator, shape: str) -> None:
    utopia.add_order("UIA202611-000001", {"address": {"siteid": "1001"}})
    utopia.add_order("UIA202611-000002", {"address": {"siteid": 1002}}, status="Cancelled")
    utopia.order_list_shape = shape

    response = list_orders(client, utopia)

    assert response.status_code == 200
    assert response.json() == EXPECTED_SHAPES[shape]


@pytest.mark.parametrize("shape", ORDER_LIST_SHAPES)
def test_an_empty_order_list_in_its_shape(
    client: httpx.Client, utopia: UtopiaEmulator, shape: str
) -> None:
    utopia.order_list_shape = shape
    utopia.empty_order_list_reply = "shape"

    response = list_orders(client, utopia)

    assert response.status_code == 200
    assert response.json() == EMPTY_SHAPES[shape]


def test_unreadable_order_lists_are_played_on_request(
    client: httpx.Client, utopia: UtopiaEmulator
) -> None:
    utopia.add_order("UIA202611-000001", {"address": {"siteid": "1001"}})
    utopia.order_list_shape = "html"
    page = list_orders(client, utopia)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert b"maintenance" in page.content

    utopia.order_list_shape = "message"
    assert list_orders(client, utopia).json() == {"message": "ok"}


def test_an_unknown_shape_is_an_emulator_error(client: httpx.Client, three: UtopiaEmulator) -> None:
    three.order_list_shape = "csv"

    assert list_orders(client, three).status_code == 500


@pytest.mark.parametrize("body", [{}, {"apikey": "wrong"}, {"ispapikey": ""}])
def test_order_list_needs_the_key(
    client: httpx.Client, three: UtopiaEmulator, body: dict[str, str]
) -> None:
    response = client.post(f"{three.base_url}/spquery/orders", json=body)

    assert response.status_code == 401
    assert response.json() == {"error": "Authentication Failed"}


def test_order_list_accepts_the_ispapikey_alias(
    client: httpx.Client, three: UtopiaEmulator
) -> None:
    response = client.post(f"{three.base_url}/spquery/orders", json={"ispapikey": three.api_key})

    assert response.status_code == 200
    assert len(response.json()) == 3


def test_order_list_is_post_only(client: httpx.Client, three: UtopiaEmulator) -> None:
    response = client.get(f"{three.base_url}/spquery/orders")

    assert response.status_code == 405


def test_order_list_faults_target_orders_only(client: httpx.Client, three: UtopiaEmulator) -> None:
    three.faults.add("orders", "fail", status=503, retry_after=4)
    body = {"apikey": three.api_key, "orderref": "UIA202611-000001"}

    lookup = client.post(f"{three.base_url}/spquery/contractlookup", json=body)
    failed = list_orders(client, three)
    recovered = list_orders(client, three)

    assert lookup.status_code == 200
    assert (failed.status_code, failed.headers["Retry-After"]) == (503, "4")
    assert recovered.status_code == 200
    three.faults.add("orders", "drop_before")
    with pytest.raises(httpx.RemoteProtocolError):
        list_orders(client, three)
    assert three.calls["orders"] == 3


def test_orders_can_be_added_with_a_status_over_http(
    client: httpx.Client, utopia: UtopiaEmulator
) -> None:
    added = client.post(
        f"{utopia.base_url}/_emulator/orders",
        json={"orderref": "UIA202611-000009", "contract": {}, "status": "Pending"},
    )
    bad = client.post(
        f"{utopia.base_url}/_emulator/orders",
        json={"orderref": "UIA202611-000010", "contract": {}, "status": 3},
    )

    assert added.status_code == 201 and bad.status_code == 400
    assert list_orders(client, utopia).json() == [
        {"orderref": "UIA202611-000009", "status": "Pending", "siteid": ""}
    ]
    state = client.get(f"{utopia.base_url}/_emulator/state").json()
    assert state["order_statuses"] == {"UIA202611-000009": "Pending"}
