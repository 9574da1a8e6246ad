"""Reading UTOPIA's contractlookup reply into a Contract, and storing it as JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import load_fixture
from utopia_handler.clients.errors import RejectedError
from utopia_handler.clients.utopia import (
    Contract,
    OrderItem,
    Person,
    PostalAddress,
    parse_contract,
)

# tests/fixtures/utopia/contractlookup__signed_250.json, read for order UIA202612-007351.
SIGNED_250 = Contract(
    order_ref="UIA202612-007351",
    status="Signed",
    site_id="517264",
    customer=Person("Jonah", "Abernathy", "jonah.abernathy@example.com", "8015550163"),
    service_address=PostalAddress("2718 N JUNIPER RIDGE RD", "", "Lehi", "Utah", "84043"),
    billing_address=PostalAddress(
        "2718 N JUNIPER RIDGE RD", "", "Lehi", "Utah", "84043", "Jonah Abernathy", "8015550163"
    ),
    items=(OrderItem("250 Mbps", "mrc", "1", "259"),),
    terms_agreed_at="2026-12-01 10:47:05",
    contract_download="Ready",
    promo="",
    order_source="webcustomer",
)


def test_signed_order_becomes_a_typed_contract() -> None:
    payload = load_fixture("utopia/contractlookup__signed_250.json")

    assert parse_contract("UIA202612-007351", payload) == SIGNED_250


def test_unit_billing_address_accents_and_second_item_are_kept() -> None:
    payload = load_fixture("utopia/contractlookup__signed_1g_unit.json")

    contract = parse_contract("UIA202611-000777", payload)

    assert contract.customer == Person(
        "Zoë Anaïs", "D'Amato-Núñez", "zoe.damato@example.org", "2085550126"
    )
    assert contract.service_address == PostalAddress(
        "95 E BROADWAY ST", "APT 12C", "Idaho Falls", "Idaho", "83402"
    )
    assert contract.billing_address == PostalAddress(
        "PO BOX 2203", "", "Ammon", "Idaho", "83406", "Zoe Damato", "2085550126"
    )
    assert contract.items == (
        OrderItem("1 Gbps", "mrc", "1", "261"),
        OrderItem("Installation", "nrc", "1", "12"),
    )
    assert (contract.site_id, contract.promo) == ("402753", "WINTER27")
    assert contract.terms_agreed_at == "2026-12-08 17:30:44"


def test_older_order_without_terms_or_email() -> None:
    payload = load_fixture("utopia/contractlookup__older_no_terms.json")

    contract = parse_contract("UIA202611-000123", payload)

    assert contract.terms_agreed_at is None
    assert (contract.customer.last_name, contract.customer.email) == ("Okafor", "")
    assert contract.site_id == "77341"
    assert contract.contract_download == "Pending"
    assert [item.description for item in contract.items] == ["2 Gbps"]


def test_missing_blocks_become_empty_values() -> None:
    contract = parse_contract(" UIA202611-000001 ", {"status": "Signed"})

    assert contract == Contract(
        order_ref="UIA202611-000001",
        status="Signed",
        site_id="",
        customer=Person("", "", "", ""),
        service_address=PostalAddress("", "", "", "", ""),
        billing_address=PostalAddress("", "", "", "", ""),
        items=(),
        terms_agreed_at=None,
        contract_download="",
        promo="",
        order_source="",
    )


def test_numbers_nulls_padding_and_odd_shapes_are_read_as_text() -> None:
    payload: dict[str, Any] = {
        "status": " Signed ",
        "customer": {"firstname": "  Avery ", "lastname": None, "phone": 8015550142},
        "address": {"siteid": 204817, "zip": 84058, "apt": ["nested"], "city": {"x": 1}},
        "billingaddress": "not an object",
        "orderitems": {"0": {"pid": 259, "qty": 1, "description": "250 Mbps"}, "1": {"pid": 12}},
        "termsagreement": {"sp_terms_agree_date": "  "},
        "promo": None,
        "unknown_field": {"ignored": True},
    }

    contract = parse_contract("UIA1", payload)

    assert contract.status == "Signed"
    assert contract.customer == Person("Avery", "", "", "8015550142")
    assert contract.site_id == "204817"
    assert contract.service_address == PostalAddress("", "", "", "", "84058")
    assert contract.billing_address == PostalAddress("", "", "", "", "")
    assert contract.items == (
        OrderItem("250 Mbps", "", "1", "259"),
        OrderItem("", "", "", "12"),
    )
    assert contract.terms_agreed_at is None
    assert contract.promo == ""


def test_order_items_that_are_not_objects_are_skipped() -> None:
    payload = {"orderitems": ["250 Mbps", None, {"description": "1 Gbps"}]}

    contract = parse_contract("UIA1", payload)

    assert [item.description for item in contract.items] == ["1 Gbps"]


def test_a_lone_order_item_object_counts_as_one_item() -> None:
    payload = {"orderitems": {"pid": "259", "description": "250 Mbps", "qty": "1"}}

    assert parse_contract("UIA1", payload).items == (OrderItem("250 Mbps", "", "1", "259"),)


@pytest.mark.parametrize("payload", [None, [], ["a"], "Signed", 3, True])
def test_a_reply_that_is_not_an_object_is_rejected(payload: Any) -> None:
    with pytest.raises(RejectedError) as caught:
        parse_contract("UIA1", payload)

    assert caught.value.service == "utopia"
    assert "not a JSON object" in caught.value.message


def test_customer_data_containing_the_word_error_is_not_a_failure() -> None:
    payload = load_fixture("utopia/contractlookup__signed_250.json")
    payload["customer"]["lastname"] = "Error"
    payload["promo"] = "error"

    contract = parse_contract("UIA1", payload)

    assert contract.customer.last_name == "Error"


@pytest.mark.parametrize(
    "name",
    [
        "utopia/contractlookup__signed_250.json",
        "utopia/contractlookup__signed_1g_unit.json",
        "utopia/contractlookup__older_no_terms.json",
    ],
)
def test_json_round_trip_through_the_database_form(name: str) -> None:
    contract = parse_contract("UIA202612-007351", load_fixture(name))

    stored = json.loads(json.dumps(contract.to_json()))

    assert Contract.from_json(stored) == contract


def test_database_form_uses_our_names_and_plain_json_types() -> None:
    data = SIGNED_250.to_json()

    assert data["customer"] == {
        "first_name": "Jonah",
        "last_name": "Abernathy",
        "email": "jonah.abernathy@example.com",
        "phone": "8015550163",
    }
    assert data["items"] == [
        {"description": "250 Mbps", "charge_type": "mrc", "quantity": "1", "product_id": "259"}
    ]
    assert data["terms_agreed_at"] == "2026-12-01 10:47:05"
    assert data["site_id"] == "517264"


def test_contract_repr_shows_no_personal_data() -> None:
    text = repr(SIGNED_250)

    assert "UIA202612-007351" in text
    for private in ("Jonah", "Abernathy", "jonah.abernathy@example.com", "JUNIPER", "8015550163"):
        assert private not in text
