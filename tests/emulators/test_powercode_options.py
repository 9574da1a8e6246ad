"""Where the evidence is silent the stand-in's answer is an option; each option does what it says."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from utopia_handler.emulators import PowerCodeEmulator
from utopia_handler.emulators.powercode import ID_STYLES, NO_SERVICES_SHAPES, NOT_FOUND_SHAPES

from ._shared import NEW_CUSTOMER, NEW_TICKET, call, create_customer, tag_request

# Written out here, not taken from the stand-in, so a changed shape fails.
NOT_FOUND: dict[str, Any] = {
    "code0_no_block": lambda field, value: {"statusCode": 0, "message": ""},
    "code0_empty_object": lambda field, value: {"statusCode": 0, "message": "", "customer": {}},
    "code0_empty_list": lambda field, value: {"statusCode": 0, "message": "", "customer": []},
    "code0_null": lambda field, value: {"statusCode": 0, "message": "", "customer": None},
    "refusal_not_found": lambda field, value: {"statusCode": 6, "message": "Customer not found"},
    "refusal_no_match": lambda field, value: {
        "statusCode": 2,
        "message": f"No customer matches {field} {value}",
    },
    "refusal_invalid": lambda field, value: {"statusCode": 11, "message": "Invalid customer"},
}

NO_SERVICES: dict[str, dict[str, Any]] = {
    "code0_empty_list": {"statusCode": 0, "message": "", "services": []},
    "code0_no_key": {"statusCode": 0, "message": ""},
    "code0_null": {"statusCode": 0, "message": "", "services": None},
    "code0_empty_object": {"statusCode": 0, "message": "", "services": {}},
    "refusal_none": {"statusCode": 9, "message": "No services found for customer"},
    "refusal_no_records": {"statusCode": 4, "message": "No records"},
}


def test_every_documented_shape_is_offered_and_the_defaults_are_todays() -> None:
    assert set(NOT_FOUND_SHAPES) == set(NOT_FOUND)
    assert set(NO_SERVICES_SHAPES) == set(NO_SERVICES)
    defaults = PowerCodeEmulator()
    assert defaults.not_found_shape == "refusal_not_found"
    assert defaults.no_services_shape == "code0_empty_list"
    assert defaults.tag_reply == "all"
    assert defaults.id_style == "evidence"
    assert defaults.omit_status_code == frozenset()
    assert defaults.create_warning is None


# -- readCustomer of an unknown customer ---------------------------------------------------


@pytest.mark.parametrize("shape", sorted(NOT_FOUND_SHAPES))
def test_not_found_shape_answers_both_lookups_of_an_unknown_customer(
    client: httpx.Client, powercode: PowerCodeEmulator, shape: str
) -> None:
    known = create_customer(client, powercode)
    powercode.not_found_shape = shape
    by_site = call(client, powercode, "readCustomer", extAccountID="999001")
    assert by_site == NOT_FOUND[shape]("extAccountID", "999001")
    by_id = call(client, powercode, "readCustomer", customerID="424242")
    assert by_id == NOT_FOUND[shape]("customerID", "424242")
    # A customer that exists is still found, whatever the shape.
    found = call(client, powercode, "readCustomer", extAccountID=NEW_CUSTOMER["extAccountID"])
    assert found["customer"]["customerId"] == str(known)


def test_the_no_match_message_echoes_the_value_looked_up(
    client: httpx.Client,
) -> None:
    with PowerCodeEmulator(not_found_shape="refusal_no_match") as pc:
        reply = call(client, pc, "readCustomer", extAccountID="2048-17 B")
    assert reply == {"statusCode": 2, "message": "No customer matches extAccountID 2048-17 B"}


# -- readCustomerService of a customer with none -------------------------------------------


@pytest.mark.parametrize("shape", sorted(NO_SERVICES_SHAPES))
def test_no_services_shape_answers_only_for_a_customer_with_none(
    client: httpx.Client, powercode: PowerCodeEmulator, shape: str
) -> None:
    bare = str(create_customer(client, powercode))
    served = str(create_customer(client, powercode, extAccountID="204818"))
    call(client, powercode, "addCustomerService", customerID=served, serviceID="163", quantity="1")
    powercode.no_services_shape = shape
    assert call(client, powercode, "readCustomerService", customerID=bare) == NO_SERVICES[shape]
    listed = call(client, powercode, "readCustomerService", customerID=served)
    assert [s["serviceID"] for s in listed["services"]] == ["163"]
    unknown = call(client, powercode, "readCustomerService", customerID="424242")
    assert unknown == {"statusCode": 6, "message": "Customer not found"}


# -- statusCode left out of successful replies ---------------------------------------------

# For each action: how to call it successfully, the key its reply must still carry, and a
# call it refuses.
OmitCase = tuple[dict[str, str], str, dict[str, str]]


def _omit_cases(customer: str) -> dict[str, OmitCase]:
    return {
        "searchCustomers": ({"searchString": "Avery"}, "customers", {}),
        "readCustomer": ({"customerID": customer}, "customer", {}),
        "createCustomer": (
            {**NEW_CUSTOMER, "extAccountID": "777"},
            "customerID",
            {**NEW_CUSTOMER, "physicalState": "Utah"},
        ),
        "addCustomerService": (
            {"customerID": customer, "serviceID": "172", "quantity": "1"},
            "",
            {"customerID": customer, "serviceID": "999", "quantity": "1"},
        ),
        "readCustomerService": ({"customerID": customer}, "services", {"customerID": "1"}),
        "createTicket": (
            {"customerID": customer, **NEW_TICKET},
            "ticketID",
            {"customerID": customer},
        ),
    }


@pytest.mark.parametrize("action", sorted(_omit_cases("0")))
def test_omit_status_code_leaves_the_envelope_out_of_successes_only(
    client: httpx.Client, powercode: PowerCodeEmulator, action: str
) -> None:
    customer = str(create_customer(client, powercode))
    call(
        client, powercode, "addCustomerService", customerID=customer, serviceID="163", quantity="1"
    )
    fields, key, refused_fields = _omit_cases(customer)[action]
    powercode.omit_status_code = frozenset({action})
    reply = call(client, powercode, action, **fields)
    assert "statusCode" not in reply
    assert "message" not in reply
    if key:
        assert key in reply
    else:
        assert reply == {}
    refused = call(client, powercode, action, **refused_fields)
    assert refused["statusCode"] != 0
    assert refused["message"]
    # Other actions keep their envelope.
    if action == "searchCustomers":
        other = call(client, powercode, "readCustomer", customerID=customer)
    else:
        other = call(client, powercode, "searchCustomers", searchString="x")
    assert other["statusCode"] == 0


def test_omit_status_code_refuses_an_unknown_action() -> None:
    with pytest.raises(ValueError, match="createCustomers"):
        PowerCodeEmulator(omit_status_code={"createCustomers"})


# -- id types ------------------------------------------------------------------------------


def _ids(client: httpx.Client, pc: PowerCodeEmulator) -> dict[str, object]:
    """Every id the stand-in hands out, one of each kind, as the JSON carried it."""
    created = call(client, pc, "createCustomer", **NEW_CUSTOMER)["customerID"]
    customer = str(created)
    call(client, pc, "addCustomerService", customerID=customer, serviceID="163", quantity="1")
    ticket = call(client, pc, "createTicket", customerID=customer, **NEW_TICKET)["ticketID"]
    tag = tag_request(client, pc, "POST", int(customer), 3).json()["Response"][0]["TagID"]
    return {
        "createCustomer customerID": created,
        "searchCustomers CustomerID": call(client, pc, "searchCustomers", searchString="Avery")[
            "customers"
        ][0]["CustomerID"],
        "readCustomer customerId": call(client, pc, "readCustomer", customerID=customer)[
            "customer"
        ]["customerId"],
        "readCustomerService serviceID": call(
            client, pc, "readCustomerService", customerID=customer
        )["services"][0]["serviceID"],
        "createTicket ticketID": ticket,
        "tags TagID": tag,
    }


# As the reference shows them; TagID's type is not shown, so it stays a number as before.
EVIDENCE_TYPES = {
    "createCustomer customerID": int,
    "searchCustomers CustomerID": str,
    "readCustomer customerId": str,
    "readCustomerService serviceID": str,
    "createTicket ticketID": str,
    "tags TagID": int,
}


@pytest.mark.parametrize("style", ID_STYLES)
def test_id_style_types_every_id(client: httpx.Client, style: str) -> None:
    with PowerCodeEmulator(id_style=style) as pc:
        ids = _ids(client, pc)
    expected = {
        "evidence": EVIDENCE_TYPES,
        "strings": dict.fromkeys(EVIDENCE_TYPES, str),
        "numbers": dict.fromkeys(EVIDENCE_TYPES, int),
    }[style]
    assert {name: type(value) for name, value in ids.items()} == expected
    # Same ids whatever their type.
    assert int(ids["createCustomer customerID"]) == 10001
    assert int(ids["createTicket ticketID"]) == 500
    assert int(ids["readCustomerService serviceID"]) == 163


# -- a create that answers with a warning --------------------------------------------------


def test_create_warning_still_creates_and_answers_the_code_with_the_id(
    client: httpx.Client,
) -> None:
    with PowerCodeEmulator(create_warning=(14, "Customer created; portal user not made")) as pc:
        reply = call(client, pc, "createCustomer", **NEW_CUSTOMER)
        assert reply == {
            "statusCode": 14,
            "message": "Customer created; portal user not made",
            "customerID": 10001,
        }
        assert pc.customers[10001]["extAccountID"] == NEW_CUSTOMER["extAccountID"]
        found = call(client, pc, "readCustomer", extAccountID=NEW_CUSTOMER["extAccountID"])
        assert found["customer"]["customerId"] == "10001"
        # A refused create is still a plain refusal with no id.
        refused = call(client, pc, "createCustomer", **{**NEW_CUSTOMER, "physicalState": "Utah"})
        assert refused == {"statusCode": 4, "message": "Invalid state"}
        assert len(pc.customers) == 1


def test_create_warning_keeps_its_status_code_when_successes_omit_theirs(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    powercode.create_warning = (14, "check the portal user")
    powercode.omit_status_code = frozenset({"createCustomer"})
    reply = call(client, powercode, "createCustomer", **NEW_CUSTOMER)
    assert reply == {"statusCode": 14, "message": "check the portal user", "customerID": 10001}


# -- the options themselves ----------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        {"tag_reply": "some"},
        {"not_found_shape": "code0"},
        {"no_services_shape": "none"},
        {"id_style": "ints"},
    ],
)
def test_an_unknown_option_value_is_refused_at_construction(option: dict[str, str]) -> None:
    [name] = option
    with pytest.raises(ValueError, match=name):
        PowerCodeEmulator(**option)


def test_constructor_keywords_set_the_same_attributes(client: httpx.Client) -> None:
    with PowerCodeEmulator(
        tag_reply="bare",
        not_found_shape="code0_null",
        no_services_shape="refusal_none",
        omit_status_code=["createTicket"],
        id_style="strings",
        required_customer_fields={"firstName"},
        required_ticket_fields=("summary",),
    ) as pc:
        assert pc.omit_status_code == frozenset({"createTicket"})
        assert pc.required_customer_fields == frozenset({"firstName"})
        assert pc.required_ticket_fields == frozenset({"summary"})
        created = call(client, pc, "createCustomer", firstName="Dale")
        assert created["customerID"] == "10001"
        ticket = call(client, pc, "createTicket", summary="s")
        assert ticket == {"ticketID": "500"}
        assert call(client, pc, "readCustomer", customerID="1") == {
            "statusCode": 0,
            "message": "",
            "customer": None,
        }
        assert call(client, pc, "readCustomerService", customerID="10001")["statusCode"] == 9
        assert tag_request(client, pc, "POST", 10001, 1).json() == {
            "Success": True,
            "Response": True,
        }


def test_a_bad_value_set_after_construction_answers_500_not_a_plausible_reply(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    powercode.not_found_shape = "code_zero"
    response = client.post(
        powercode.api_url,
        data={"apiKey": powercode.api_key, "action": "readCustomer", "customerID": "1"},
    )
    assert response.status_code == 500
