"""The PowerCode emulator answers like PowerCode: classic actions and their refusals."""

from __future__ import annotations

import http.client
import json

import httpx
import pytest

from utopia_handler.emulators import PowerCodeEmulator, ServiceDef
from utopia_handler.emulators.powercode import (
    PRODUCTION_CUSTOMER_FIELDS,
    PRODUCTION_TICKET_FIELDS,
)

from ._shared import NEW_CUSTOMER, NEW_TICKET, call, create_customer

# -- urls and keys -------------------------------------------------------------------------


def test_urls_point_at_the_running_server(powercode: PowerCodeEmulator) -> None:
    assert powercode.base_url == f"http://127.0.0.1:{powercode.port}"
    assert powercode.api_url == powercode.base_url + "/api/1/index.php"
    assert powercode.uapi_url == powercode.base_url + "/uapi/"


@pytest.mark.parametrize("key", ["wrong-key", ""])
def test_classic_api_refuses_a_wrong_or_missing_key(
    client: httpx.Client, powercode: PowerCodeEmulator, key: str
) -> None:
    data = {"apiKey": key, "action": "createCustomer", **NEW_CUSTOMER}
    response = client.post(powercode.api_url, data=data)
    assert response.status_code == 200
    assert response.json() == {"statusCode": 1, "message": "Invalid API key"}
    assert powercode.customers == {}


def test_unknown_action_is_status_2(client: httpx.Client, powercode: PowerCodeEmulator) -> None:
    assert call(client, powercode, "launchRocket")["statusCode"] == 2


def test_form_fields_are_read_only_from_a_form_body(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    # Every source sends the classic API form-encoded; a JSON body carries no fields, no key.
    body = {"apiKey": powercode.api_key, "action": "createCustomer", **NEW_CUSTOMER}
    response = client.post(powercode.api_url, json=body)
    assert response.json() == {"statusCode": 1, "message": "Invalid API key"}
    assert powercode.customers == {}


# The fields the production handler sent on every createCustomer, written out so that
# dropping one from the stand-in's list fails here.
CUSTOMER_FIELDS = [
    "firstName",
    "lastName",
    "physicalStreet",
    "physicalCity",
    "physicalState",
    "physicalZip",
    "taxZoneId",
    "dueByDays",
    "extAccountID",
]


@pytest.mark.parametrize("blank", [False, True], ids=["absent", "blank"])
@pytest.mark.parametrize("field", CUSTOMER_FIELDS)
def test_create_customer_missing_production_field_is_status_3_and_names_it(
    client: httpx.Client, powercode: PowerCodeEmulator, field: str, blank: bool
) -> None:
    fields = {k: v for k, v in NEW_CUSTOMER.items() if k != field}
    if blank:
        fields[field] = "  "
    reply = call(client, powercode, "createCustomer", **fields)
    assert reply == {"statusCode": 3, "message": f"Missing field: {field}"}
    assert powercode.customers == {}


def test_production_customer_fields_are_the_required_default(
    powercode: PowerCodeEmulator,
) -> None:
    assert set(CUSTOMER_FIELDS) == PRODUCTION_CUSTOMER_FIELDS
    assert powercode.required_customer_fields == PRODUCTION_CUSTOMER_FIELDS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("taxZoneId", "Utah"),
        ("taxZoneId", "1.5"),
        ("dueByDays", "-1"),
        ("dueByDays", "ten"),
    ],
)
def test_create_customer_refuses_a_non_numeric_tax_zone_or_due_days(
    client: httpx.Client, powercode: PowerCodeEmulator, field: str, value: str
) -> None:
    reply = call(client, powercode, "createCustomer", **{**NEW_CUSTOMER, field: value})
    assert reply == {"statusCode": 3, "message": f"Invalid field: {field}"}
    assert powercode.customers == {}


def test_relaxed_customer_fields_accept_a_bare_create_but_still_check_values(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    powercode.required_customer_fields = frozenset({"firstName", "lastName"})
    bare = call(client, powercode, "createCustomer", firstName="Dale", lastName="Whitfield")
    assert bare["statusCode"] == 0
    assert powercode.customers[bare["customerID"]]["lastName"] == "Whitfield"
    bad = call(
        client, powercode, "createCustomer", firstName="Dale", lastName="W", dueByDays="soon"
    )
    assert bad == {"statusCode": 3, "message": "Invalid field: dueByDays"}
    assert len(powercode.customers) == 1


# -- customers -----------------------------------------------------------------------------


def test_create_customer_stores_every_field_and_numbers_from_10001(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    reply = call(client, powercode, "createCustomer", **NEW_CUSTOMER)
    assert reply == {"statusCode": 0, "message": "Customer created", "customerID": 10001}
    second = create_customer(client, powercode, firstName="Dale", lastName="Whitfield")
    assert second == 10002
    record = powercode.customers[10001]
    assert record["customerID"] == 10001
    assert record["customerNotes"] == "UTOPIA order UIA202611-004217"
    assert record["phone"] == [{"Type": "Home", "Number": "8015550142"}]
    assert "apiKey" not in record
    assert powercode.calls["createCustomer"] == 2


def test_create_customer_refuses_a_state_that_is_not_a_code(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    reply = call(client, powercode, "createCustomer", **{**NEW_CUSTOMER, "physicalState": "Utah"})
    assert reply == {"statusCode": 4, "message": "Invalid state"}
    assert powercode.customers == {}


@pytest.mark.parametrize("phone", ["8015550142", json.dumps({"Type": "Home"}), "[{}]"])
def test_create_customer_refuses_a_phone_that_is_not_a_json_list(
    client: httpx.Client, powercode: PowerCodeEmulator, phone: str
) -> None:
    reply = call(client, powercode, "createCustomer", **{**NEW_CUSTOMER, "phone": phone})
    assert reply["statusCode"] == 3
    assert powercode.customers == {}


def test_po_box_fails_automatic_geocoding_but_not_manual(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    po_box = {**NEW_CUSTOMER, "physicalStreet": "po box 77"}
    reply = call(client, powercode, "createCustomer", **po_box)
    assert reply == {"statusCode": 23, "message": "Unable to geocode physical address"}
    assert powercode.customers == {}
    retry = call(
        client, powercode, "createCustomer", **{**po_box, "physicalAutomaticallyGeocode": "0"}
    )
    assert retry["statusCode"] == 0


def test_search_matches_every_word_case_insensitively(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    wanted = powercode.add_customer("Tobias", "Wrenfield", "1875 East Harvest Lane", "Lehi")
    powercode.add_customer("Tobias", "Marsh", "310 S 200 E", "Murray")
    reply = call(client, powercode, "searchCustomers", searchString="tobias WRENFIELD")
    assert reply["statusCode"] == 0
    assert reply["customers"] == [
        {
            "CustomerID": str(wanted),
            "CompanyName": "Tobias Wrenfield",
            "Address1": "1875 East Harvest Lane",
            "City": "Lehi",
        }
    ]
    assert len(call(client, powercode, "searchCustomers", searchString="Tobias")["customers"]) == 2
    assert call(client, powercode, "searchCustomers", searchString="Nobody")["customers"] == []


def test_read_customer_by_id_and_by_ext_account_id(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    first = create_customer(client, powercode)
    create_customer(client, powercode)  # same site id again: the lowest id wins
    by_ext = call(client, powercode, "readCustomer", extAccountID="204817")["customer"]
    assert by_ext["customerId"] == str(first)
    assert by_ext["companyName"] == "Avery Lindqvist"
    assert by_ext["status"] == "Active"
    assert by_ext["physicalState"] == "UT"
    by_id = call(client, powercode, "readCustomer", customerID=str(first))["customer"]
    assert by_id == by_ext


def test_read_customer_not_found_is_status_6(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    expected = {"statusCode": 6, "message": "Customer not found"}
    assert call(client, powercode, "readCustomer", extAccountID="999") == expected
    assert call(client, powercode, "readCustomer", customerID="424242") == expected
    assert call(client, powercode, "readCustomer")["statusCode"] == 3


# -- services ------------------------------------------------------------------------------


def test_add_and_read_services(client: httpx.Client, powercode: PowerCodeEmulator) -> None:
    customer = str(create_customer(client, powercode))
    fields = {"customerID": customer, "quantity": "1", "prorateService": "0"}
    assert (
        call(client, powercode, "addCustomerService", serviceID="163", **fields)["statusCode"] == 0
    )
    assert (
        call(client, powercode, "addCustomerService", serviceID="172", **fields)["statusCode"] == 0
    )
    services = call(client, powercode, "readCustomerService", customerID=customer)["services"]
    assert [(s["serviceID"], s["quantity"]) for s in services] == [("163", "1"), ("172", "1")]
    assert services[0]["internetInfo"] == {"maxIn": 250000, "maxOut": 250000}
    assert "internetInfo" not in services[1]


def test_second_internet_service_replaces_the_first(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer = create_customer(client, powercode)
    for service in ("163", "172", "164"):
        call(
            client,
            powercode,
            "addCustomerService",
            customerID=str(customer),
            serviceID=service,
            quantity="1",
        )
    assert powercode.customer_services[customer] == {164: 1, 172: 1}


def test_internet_quantity_must_be_one(client: httpx.Client, powercode: PowerCodeEmulator) -> None:
    customer = str(create_customer(client, powercode))
    reply = call(
        client, powercode, "addCustomerService", customerID=customer, serviceID="163", quantity="5"
    )
    assert reply == {
        "statusCode": 7,
        "message": "Internet services can not have a quantity above 1",
    }
    assert powercode.customer_services.get(int(customer), {}) == {}
    fee = call(
        client, powercode, "addCustomerService", customerID=customer, serviceID="172", quantity="5"
    )
    assert fee["statusCode"] == 0
    assert powercode.customer_services[int(customer)] == {172: 5}


@pytest.mark.parametrize("quantity", ["0", "-1", "two", "1.5"])
def test_quantity_must_be_a_positive_whole_number(
    client: httpx.Client, powercode: PowerCodeEmulator, quantity: str
) -> None:
    customer = str(create_customer(client, powercode))
    reply = call(
        client,
        powercode,
        "addCustomerService",
        customerID=customer,
        serviceID="172",
        quantity=quantity,
    )
    assert reply == {"statusCode": 3, "message": "Invalid field: quantity"}
    assert powercode.service_adds == []


def test_adding_a_service_twice_keeps_one_entry_but_records_both_adds(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer = create_customer(client, powercode)
    for _ in range(2):
        call(
            client,
            powercode,
            "addCustomerService",
            customerID=str(customer),
            serviceID="163",
            quantity="1",
        )
    assert powercode.customer_services[customer] == {163: 1}
    assert powercode.service_adds == [(customer, 163), (customer, 163)]


def test_add_service_refuses_unknown_customer_or_service(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer = str(create_customer(client, powercode))
    unknown_customer = call(
        client, powercode, "addCustomerService", customerID="1", serviceID="163", quantity="1"
    )
    assert unknown_customer["statusCode"] == 6
    unknown_service = call(
        client, powercode, "addCustomerService", customerID=customer, serviceID="999", quantity="1"
    )
    assert unknown_service["statusCode"] == 8
    assert call(client, powercode, "readCustomerService", customerID="1")["statusCode"] == 6
    assert powercode.service_adds == []


def test_custom_catalogue_and_tags(client: httpx.Client) -> None:
    with PowerCodeEmulator(
        services={7: ServiceDef("Static IP", internet=False)}, tags={9: "VIP"}
    ) as pc:
        customer = pc.add_customer("Dale", "Whitfield", "87 N 400 E", "Layton")
        reply = call(
            client, pc, "addCustomerService", customerID=str(customer), serviceID="7", quantity="2"
        )
        assert reply["statusCode"] == 0
        assert (
            call(client, pc, "addCustomerService", customerID=str(customer), serviceID="163")[
                "statusCode"
            ]
            == 8
        )


# -- tickets -------------------------------------------------------------------------------


def test_create_ticket_stores_fields_and_numbers_from_500(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer = str(create_customer(client, powercode))
    ticket = {"customerID": customer, **NEW_TICKET}
    reply = call(client, powercode, "createTicket", **ticket)
    assert reply == {"statusCode": 0, "message": "Ticket created", "ticketID": "500"}
    assert call(client, powercode, "createTicket", **ticket)["ticketID"] == "501"
    stored = powercode.tickets["500"]
    assert stored["description"] == "<p>Install for Avery</p>"
    assert stored["responsibleUser"] == "Sales"
    assert stored["customerID"] == int(customer)


# The fields the production handler sent on every createTicket, written out on purpose.
TICKET_FIELDS = [
    "customerID",
    "type",
    "summary",
    "description",
    "category",
    "ticketType",
    "status",
    "responsibleUser",
    "responsibleGroupID",
    "customerViewable",
]


@pytest.mark.parametrize("blank", [False, True], ids=["absent", "blank"])
@pytest.mark.parametrize("field", TICKET_FIELDS)
def test_create_ticket_missing_production_field_is_status_3_and_names_it(
    client: httpx.Client, powercode: PowerCodeEmulator, field: str, blank: bool
) -> None:
    customer = str(create_customer(client, powercode))
    fields = {k: v for k, v in {"customerID": customer, **NEW_TICKET}.items() if k != field}
    if blank:
        fields[field] = ""
    reply = call(client, powercode, "createTicket", **fields)
    assert reply == {"statusCode": 3, "message": f"Missing field: {field}"}
    assert powercode.tickets == {}


def test_production_ticket_fields_are_the_required_default(powercode: PowerCodeEmulator) -> None:
    assert set(TICKET_FIELDS) == PRODUCTION_TICKET_FIELDS
    assert powercode.required_ticket_fields == PRODUCTION_TICKET_FIELDS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "Group"),
        ("type", "individual"),
        ("category", "Install"),
        ("ticketType", "21a"),
        ("status", "Open"),
        ("responsibleGroupID", "Sales"),
        ("customerViewable", "yes"),
        ("customerViewable", "2"),
    ],
)
def test_create_ticket_refuses_an_invalid_value(
    client: httpx.Client, powercode: PowerCodeEmulator, field: str, value: str
) -> None:
    customer = str(create_customer(client, powercode))
    fields = {"customerID": customer, **NEW_TICKET, field: value}
    reply = call(client, powercode, "createTicket", **fields)
    assert reply == {"statusCode": 3, "message": f"Invalid field: {field}"}
    assert powercode.tickets == {}


@pytest.mark.parametrize("user", ["Sales", "12", "Jo Tech"])
def test_create_ticket_takes_the_responsible_user_as_a_name_or_a_number(
    client: httpx.Client, powercode: PowerCodeEmulator, user: str
) -> None:
    customer = str(create_customer(client, powercode))
    fields = {"customerID": customer, **NEW_TICKET, "responsibleUser": user}
    reply = call(client, powercode, "createTicket", **fields)
    assert reply["statusCode"] == 0
    assert powercode.tickets[reply["ticketID"]]["responsibleUser"] == user


def test_create_ticket_for_an_unknown_customer_is_status_6(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    reply = call(client, powercode, "createTicket", customerID="77", **NEW_TICKET)
    assert reply == {"statusCode": 6, "message": "Customer not found"}
    assert powercode.tickets == {}


def test_relaxed_ticket_fields_accept_a_short_ticket_but_still_check_values(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer = str(create_customer(client, powercode))
    powercode.required_ticket_fields = frozenset({"customerID", "summary"})
    short = call(client, powercode, "createTicket", customerID=customer, summary="s")
    assert short["statusCode"] == 0
    assert powercode.tickets[short["ticketID"]]["summary"] == "s"
    bad = call(client, powercode, "createTicket", customerID=customer, summary="s", type="Group")
    assert bad == {"statusCode": 3, "message": "Invalid field: type"}
    assert len(powercode.tickets) == 1


# -- transport -----------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(powercode: PowerCodeEmulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", powercode.port, timeout=5)
    try:
        for _ in range(3):
            body = f"apiKey={powercode.api_key}&action=searchCustomers&searchString=x"
            connection.request(
                "POST",
                "/api/1/index.php",
                body=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            response = connection.getresponse()
            assert response.status == 200
            assert response.getheader("Content-Length") is not None
            assert json.loads(response.read())["statusCode"] == 0
            assert not response.will_close
    finally:
        connection.close()


def test_global_latency_slows_every_call(client: httpx.Client) -> None:
    with PowerCodeEmulator(latency=0.15) as pc:
        response = client.post(
            pc.api_url, data={"apiKey": pc.api_key, "action": "searchCustomers", "searchString": ""}
        )
        assert response.elapsed.total_seconds() >= 0.15


def test_restart_keeps_url_and_state(client: httpx.Client, powercode: PowerCodeEmulator) -> None:
    customer = create_customer(client, powercode)
    url = powercode.api_url
    powercode.stop()
    assert not powercode.running
    powercode.start()
    assert powercode.api_url == url
    reply = call(client, powercode, "readCustomer", customerID=str(customer))
    assert reply["customer"]["lastName"] == "Lindqvist"


# -- updateCustomer (customerID + the fields to change, form-encoded; one source) ----------------


def test_update_customer_changes_only_the_fields_sent(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer_id = create_customer(client, powercode)
    before = dict(powercode.customers[customer_id])
    reply = call(
        client,
        powercode,
        "updateCustomer",
        customerID=str(customer_id),
        customerNotes="first line\nsecond line",
    )
    assert reply == {"statusCode": 0, "message": "Customer updated"}
    after = powercode.customers[customer_id]
    assert after["customerNotes"] == "first line\nsecond line"
    assert {k: v for k, v in after.items() if k != "customerNotes"} == {
        k: v for k, v in before.items() if k != "customerNotes"
    }
    read = call(client, powercode, "readCustomer", customerID=str(customer_id))
    assert read["customer"]["customerNotes"] == "first line\nsecond line"
    assert powercode.customer_updates == [(customer_id, ("customerNotes",))]


@pytest.mark.parametrize(
    ("fields", "refusal"),
    [
        ({"customerNotes": "x"}, {"statusCode": 3, "message": "Missing field: customerID"}),
        ({"customerID": "99999", "customerNotes": "x"}, {"statusCode": 6, "message": "Customer not found"}),
        ({"customerID": "{id}"}, {"statusCode": 3, "message": "Missing field: nothing to update"}),
        ({"customerID": "{id}", "notes": "x"}, {"statusCode": 3, "message": "Invalid field: notes"}),
    ],
)  # fmt: skip
def test_update_customer_refuses_what_was_never_seen_to_work(
    client: httpx.Client, powercode: PowerCodeEmulator, fields: dict[str, str], refusal: object
) -> None:
    customer_id = create_customer(client, powercode)
    sent = {k: v.replace("{id}", str(customer_id)) for k, v in fields.items()}
    assert call(client, powercode, "updateCustomer", **sent) == refusal
    assert powercode.customer_updates == []


def test_update_customer_reads_a_form_body_only(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer_id = create_customer(client, powercode)
    body = {
        "apiKey": powercode.api_key,
        "action": "updateCustomer",
        "customerID": customer_id,
        "customerNotes": "x",
    }
    assert client.post(powercode.api_url, json=body).json()["statusCode"] == 1
    assert powercode.customer_updates == []


def test_read_customer_can_leave_the_notes_out(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer_id = create_customer(client, powercode)
    powercode.read_notes = False
    read = call(client, powercode, "readCustomer", customerID=str(customer_id))
    assert "customerNotes" not in read["customer"]
