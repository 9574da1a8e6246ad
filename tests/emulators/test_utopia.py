"""The UTOPIA emulator: contract lookup, contract PDF download, key checks and errors."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from utopia_handler.emulators import UtopiaEmulator
from utopia_handler.emulators.seed import DEMO_ORDERS, seed_utopia

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
    response = post(client, seeded, "suspend", apikey=seeded.api_key, cid="1")
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
