"""PowerCodeClient against the local PowerCode emulator (a real HTTP server on loopback)."""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import replace

import httpx
import pytest

from tests.conftest import load_fixture
from utopia_handler.clients.errors import OutsideError, RejectedError, RetryableError
from utopia_handler.clients.powercode import (
    CustomerMatch,
    GeocodeFailed,
    NewCustomer,
    NewTicket,
    PowerCodeClient,
    PowerCodeCustomer,
)
from utopia_handler.emulators.powercode import PowerCodeEmulator

from ._shared import FAST, PC_KEY, closed_port

AVERY = NewCustomer(
    first_name="Avery",
    last_name="Lindqvist",
    email="avery.lindqvist@example.net",
    street="1432 S CANYON VIEW DR",
    city="Orem",
    state="UT",
    zip="84058",
    phone_numbers=("8015550142",),
    notes="UTOPIA order UIA202611-004217, site 204817",
    ext_account_id="204817",
    portal_username="avery.lindqvist@example.net",
    portal_password="portal-secret-77",
    tax_zone_id=1,
    invoice_preference="Email",
    bill_day="Activation Date",
    due_by_days=0,
    grace_period_days=10,
)
PRIVATE = (
    "Avery",
    "Lindqvist",
    "avery.lindqvist@example.net",
    "CANYON VIEW",
    "8015550142",
    "portal-secret-77",
)


def assert_clean(error: OutsideError) -> None:
    """No API key and no customer data in what operators and logs will see."""
    for text in (str(error), error.message):
        assert PC_KEY not in text
        for private in PRIVATE:
            assert private not in text


# -- customers


def test_create_then_find_by_site_and_read(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    customer_id = powercode.create_customer(AVERY).customer_id

    expected = PowerCodeCustomer(
        customer_id=customer_id,
        first_name="Avery",
        last_name="Lindqvist",
        company_name="Avery Lindqvist",
        status="Active",
        ext_account_id="204817",
        street="1432 S CANYON VIEW DR",
        city="Orem",
        state="UT",
        notes=AVERY.notes,
    )
    assert powercode.find_customer_by_site("204817") == expected
    assert powercode.read_customer(customer_id) == expected


def test_create_sends_exactly_the_documented_fields(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    created = powercode.create_customer(replace(AVERY, tax_zone_id=3, due_by_days=15))
    customer_id = created.customer_id

    stored = powercode_emulator.customers[customer_id]
    stored.pop("customerID")
    assert stored == {
        "firstName": "Avery",
        "lastName": "Lindqvist",
        "emailAddress": "avery.lindqvist@example.net",
        "physicalStreet": "1432 S CANYON VIEW DR",
        "physicalCity": "Orem",
        "physicalState": "UT",
        "physicalZip": "84058",
        "physicalAutomaticallyGeocode": "1",
        "billingSameAsPhysical": "1",
        "taxZoneId": "3",
        "invoicePreference": "Email",
        "billDay": "Activation Date",
        "dueByDays": "15",
        "gracePeriodDays": "10",
        "customerNotes": "UTOPIA order UIA202611-004217, site 204817",
        "customerPortalUsername": "avery.lindqvist@example.net",
        "customerPortalPassword": "portal-secret-77",
        "phone": [{"Type": "Home", "Number": "8015550142"}],
        "extAccountID": "204817",
    }


def test_create_leaves_out_an_unset_portal_login_but_never_the_billing_fields(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    created = powercode.create_customer(
        replace(AVERY, portal_username=None, portal_password=None, phone_numbers=())
    )

    stored = powercode_emulator.customers[created.customer_id]
    for absent in ("customerPortalUsername", "customerPortalPassword"):
        assert absent not in stored
    # The production handler always sent these two; PowerCode may refuse a create without them.
    assert (stored["taxZoneId"], stored["dueByDays"]) == ("1", "0")
    assert stored["phone"] == []


def test_geocode_failure_is_its_own_error_and_retry_without_geocoding_works(
    powercode: PowerCodeClient,
) -> None:
    po_box = replace(AVERY, street="PO BOX 1187")

    with pytest.raises(GeocodeFailed) as caught:
        powercode.create_customer(po_box)

    assert caught.value.code == 23
    assert caught.value.message == (
        "createCustomer refused: statusCode 23 (Unable to geocode physical address)"
    )
    assert powercode.create_customer(replace(po_box, geocode=False)).customer_id > 0


def test_geocode_failure_from_a_scripted_reject(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    powercode_emulator.faults.add(
        "createCustomer", "reject", status_code=23, message="Unable to geocode physical address"
    )

    with pytest.raises(GeocodeFailed):
        powercode.create_customer(AVERY)


def test_refusal_carries_statuscode_and_message_but_no_personal_data(
    powercode: PowerCodeClient,
) -> None:
    with pytest.raises(RejectedError) as caught:
        powercode.create_customer(replace(AVERY, state="Utah"))

    assert not isinstance(caught.value, GeocodeFailed)
    assert caught.value.code == 4
    assert caught.value.message == "createCustomer refused: statusCode 4 (Invalid state)"
    assert_clean(caught.value)


def test_long_vendor_messages_are_cut(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    powercode_emulator.faults.add("createCustomer", "reject", status_code=9, message="x" * 1000)

    with pytest.raises(RejectedError) as caught:
        powercode.create_customer(AVERY)

    assert len(caught.value.message) < 260


def test_wrong_key_is_rejected_without_showing_it(powercode_emulator: PowerCodeEmulator) -> None:
    wrong = "wrong-pc-key-31337"
    with (
        PowerCodeClient(
            powercode_emulator.api_url, powercode_emulator.uapi_url, wrong, timeouts=FAST
        ) as client,
        pytest.raises(RejectedError) as caught,
    ):
        client.search_customers("Avery Lindqvist")

    assert caught.value.code == 1
    assert caught.value.message == "searchCustomers refused: statusCode 1 (Invalid API key)"
    assert wrong not in str(caught.value)


def test_search_finds_existing_customers(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    existing = powercode_emulator.add_customer(
        "Avery", "Lindqvist", "1432 S Canyon View Dr", "Orem"
    )
    powercode_emulator.add_customer("Dale", "Whitfield", "87 N 400 E", "Layton")

    assert powercode.search_customers("Avery Lindqvist") == [
        CustomerMatch(existing, "Avery Lindqvist", "1432 S Canyon View Dr", "Orem")
    ]
    assert powercode.search_customers("Nobody Here") == []


def test_unknown_site_and_unknown_id_are_none(powercode: PowerCodeClient) -> None:
    assert powercode.find_customer_by_site("999999") is None
    assert powercode.read_customer(424242) is None


def test_create_lost_after_apply_may_have_applied_and_is_found_by_site(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    powercode_emulator.faults.add("createCustomer", "drop_after_apply")

    with pytest.raises(RetryableError) as caught:
        powercode.create_customer(AVERY)

    assert caught.value.may_have_applied is True
    assert_clean(caught.value)
    # This is how the worker reconciles before trying the create again.
    found = powercode.find_customer_by_site("204817")
    assert found is not None and found.last_name == "Lindqvist"


def test_create_timing_out_may_have_applied(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    powercode_emulator.faults.add("createCustomer", "timeout", seconds=3)

    with pytest.raises(RetryableError) as caught:
        powercode.create_customer(AVERY)

    assert caught.value.message == "createCustomer: read timed out after 0.5s"
    assert caught.value.may_have_applied is True


def test_create_dropped_before_reply_may_have_applied(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    powercode_emulator.faults.add("createCustomer", "drop_before")

    with pytest.raises(RetryableError) as caught:
        powercode.create_customer(AVERY)

    # Indistinguishable from a drop after the create, so the caller must look first.
    assert caught.value.may_have_applied is True
    assert powercode_emulator.customers == {}


@pytest.mark.parametrize(("status", "may_have_applied"), [(500, True), (503, False), (504, True)])
def test_server_errors_are_retryable(
    powercode: PowerCodeClient,
    powercode_emulator: PowerCodeEmulator,
    status: int,
    may_have_applied: bool,
) -> None:
    powercode_emulator.faults.add("createCustomer", "fail", status=status, retry_after=4)

    with pytest.raises(RetryableError) as caught:
        powercode.create_customer(AVERY)

    assert caught.value.retry_after == 4.0
    assert caught.value.may_have_applied is may_have_applied


def test_nothing_listening_cannot_have_applied() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    pc = PowerCodeClient(f"{url}/api/1/index.php", f"{url}/uapi/", PC_KEY, timeouts=FAST)
    with pc, pytest.raises(RetryableError) as caught:
        pc.create_customer(AVERY)

    assert caught.value.may_have_applied is False
    assert_clean(caught.value)


def test_new_customer_repr_hides_personal_data_and_password() -> None:
    assert repr(AVERY) == "NewCustomer(ext_account_id='204817')"


# -- services


def test_services_are_added_once_each_and_listed(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    customer_id = powercode.create_customer(AVERY).customer_id

    powercode.add_service(customer_id, 163)
    powercode.add_service(customer_id, 172, quantity=3)

    assert powercode.list_service_ids(customer_id) == [163, 172]
    # A fee priced per unit takes its quantity; the Internet plan is always 1.
    assert powercode_emulator.customer_services[customer_id] == {163: 1, 172: 3}


def test_unknown_service_is_rejected(powercode: PowerCodeClient) -> None:
    customer_id = powercode.create_customer(AVERY).customer_id

    with pytest.raises(RejectedError) as caught:
        powercode.add_service(customer_id, 999)

    assert caught.value.code == 8


def test_services_of_unknown_customer_is_rejected(powercode: PowerCodeClient) -> None:
    with pytest.raises(RejectedError) as caught:
        powercode.list_service_ids(424242)

    assert caught.value.message == "readCustomerService refused: statusCode 6 (Customer not found)"


# -- tickets


def test_ticket_is_created_with_every_field_given(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    customer_id = powercode.create_customer(AVERY).customer_id
    ticket = NewTicket(
        customer_id=customer_id,
        summary="New UTOPIA install: Avery Lindqvist (UIA202611-004217)",
        description_html="<p>Install for Avery</p>",
        category=4,
        ticket_type=21,
        status=1,
        responsible_user="Sales",
        responsible_group=12,
        customer_viewable=False,
    )

    ticket_id = powercode.create_ticket(ticket)

    stored = powercode_emulator.tickets[ticket_id]
    assert stored == {
        "customerID": customer_id,
        "type": "Individual",
        "summary": "New UTOPIA install: Avery Lindqvist (UIA202611-004217)",
        "description": "<p>Install for Avery</p>",
        "category": "4",
        "ticketType": "21",
        "status": "1",
        "responsibleUser": "Sales",
        "responsibleGroupID": "12",
        "customerViewable": "0",
        "ticketID": ticket_id,
    }
    assert "Avery" not in repr(ticket)


@pytest.mark.parametrize("user", ["Sales", "12", "Install Crew"])
def test_responsible_user_is_passed_on_as_given(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator, user: str
) -> None:
    customer_id = powercode.create_customer(AVERY).customer_id
    ticket = NewTicket(customer_id, "s", "<p>d</p>", 54, 21, 1, user, 4, True)

    stored = powercode_emulator.tickets[powercode.create_ticket(ticket)]

    assert stored["responsibleUser"] == user


# -- tags (UAPI)


def test_tags_are_added_and_listed(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    customer_id = powercode.create_customer(AVERY).customer_id

    powercode.add_tags(customer_id, [3, 1])

    assert powercode.list_tag_ids(customer_id) == [1, 3]
    assert powercode_emulator.customer_tags[customer_id] == {1, 3}


def test_no_tags_means_no_call(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    powercode.add_tags(10001, [])

    assert powercode_emulator.calls["uapi:tags"] == 0


def test_unknown_tag_is_rejected_with_the_uapi_response(powercode: PowerCodeClient) -> None:
    customer_id = powercode.create_customer(AVERY).customer_id

    with pytest.raises(RejectedError) as caught:
        powercode.add_tags(customer_id, [99])

    assert caught.value.code == 400
    assert caught.value.message == "uapi:tags refused: HTTP 400 (Unknown tag 99)"


def test_uapi_wrong_key_is_rejected_with_a_hint(powercode_emulator: PowerCodeEmulator) -> None:
    with (
        PowerCodeClient(
            powercode_emulator.api_url, powercode_emulator.uapi_url, "wrong", timeouts=FAST
        ) as client,
        pytest.raises(RejectedError) as caught,
    ):
        client.list_tag_ids(10001)

    assert caught.value.code == 401
    assert caught.value.message == "authentication failed: check PC_API_KEY"


def test_uapi_unavailable_is_retryable(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    powercode_emulator.faults.add("uapi:tags", "fail", status=503, retry_after=9)

    with pytest.raises(RetryableError) as caught:
        powercode.list_tag_ids(10001)

    assert (caught.value.retry_after, caught.value.may_have_applied) == (9.0, False)


def test_uapi_scripted_reject(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    customer_id = powercode.create_customer(AVERY).customer_id
    powercode_emulator.faults.add("uapi:tags", "reject", message="Tag service disabled")

    with pytest.raises(RejectedError) as caught:
        powercode.add_tags(customer_id, [1])

    assert caught.value.message == "uapi:tags refused: HTTP 400 (Tag service disabled)"


def test_logs_name_the_action_but_never_the_key(
    powercode: PowerCodeClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="utopia_handler.clients.powercode"):
        customer_id = powercode.create_customer(AVERY).customer_id
        powercode.list_tag_ids(customer_id)

    lines = [r.getMessage() for r in caplog.records if r.name == "utopia_handler.clients.powercode"]
    assert len(lines) == 2
    assert "call=createCustomer status=200" in lines[0]
    assert "call=uapi:tags status=200" in lines[1]
    for line in lines:
        assert PC_KEY not in line
        assert all(private not in line for private in PRIVATE)


# -- what the emulator cannot show: replies PowerCode might send, played by httpx.MockTransport


def mocked(answer: httpx.MockTransport) -> PowerCodeClient:
    return PowerCodeClient(
        "https://pc.test:444/api/1/index.php",
        "https://pc.test:444/uapi/",
        PC_KEY,
        timeouts=FAST,
        transport=answer,
    )


def reply_with(payload: object, status: int = 200) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json=payload))


def test_fixture_replies_are_read_with_their_casing() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        action = urllib.parse.parse_qs(request.content.decode())["action"][0]
        name = {
            "readCustomer": "readCustomer__by_ext",
            "searchCustomers": "searchCustomers__one_hit",
            "createCustomer": "createCustomer__ok",
            "readCustomerService": "readCustomerService__two",
            "createTicket": "createTicket__ok",
        }[action]
        return httpx.Response(200, json=load_fixture(f"powercode/{name}.json"))

    with mocked(httpx.MockTransport(answer)) as client:
        customer = client.find_customer_by_site("517264")
        assert customer is not None and customer.customer_id == 20931
        assert (customer.last_name, customer.street) == ("Abernathy", "2718 N JUNIPER RIDGE RD")
        assert client.search_customers("Jonah Abernathy") == [
            CustomerMatch(20877, "Jonah Abernathy", "2718 N Juniper Ridge Rd", "Lehi")
        ]
        assert client.create_customer(AVERY).customer_id == 20931
        assert client.list_service_ids(20931) == [164, 172]
        ticket = NewTicket(20931, "s", "d", 54, 21, 1, "Sales", 4, True)
        assert client.create_ticket(ticket) == "27"


def test_fixture_refusals_keep_their_code_and_text() -> None:
    geocode = load_fixture("powercode/createCustomer__geocode_failed.json")
    with mocked(reply_with(geocode)) as client, pytest.raises(GeocodeFailed) as caught:
        client.create_customer(AVERY)
    assert caught.value.message == (
        "createCustomer refused: statusCode 23 (Could not geocode the physical address)"
    )

    bad_key = load_fixture("powercode/error__bad_key.json")
    with mocked(reply_with(bad_key)) as client, pytest.raises(RejectedError) as refused:
        client.search_customers("Jonah Abernathy")
    assert refused.value.code == 1
    assert refused.value.message == "searchCustomers refused: statusCode 1 (API key is not valid)"
    assert_clean(refused.value)


def test_a_customer_with_another_site_id_is_never_taken_for_ours() -> None:
    body = load_fixture("powercode/readCustomer__by_ext.json")  # extAccountID 517264

    with mocked(reply_with(body)) as client, pytest.raises(RejectedError) as caught:
        client.find_customer_by_site("402753")

    assert caught.value.message.startswith("readCustomer ignored extAccountID")


@pytest.mark.parametrize(
    "payload",
    [
        {"statusCode": 0, "message": ""},
        {"statusCode": "0", "customer": []},
        {"statusCode": 0, "customer": {}},
        {"statusCode": 17, "message": "No such customer"},
        {"statusCode": "5", "message": "Customer does not exist"},
    ],
)
def test_not_found_shapes_are_none(payload: object) -> None:
    with mocked(reply_with(payload)) as client:
        assert client.find_customer_by_site("204817") is None


@pytest.mark.parametrize("key", ["customerID", "CustomerID", "customerId"])
@pytest.mark.parametrize("value", [10517, "10517"])
def test_created_id_in_any_casing_and_type(key: str, value: object) -> None:
    with mocked(reply_with({"statusCode": 0, key: value})) as client:
        assert client.create_customer(AVERY).customer_id == 10517


def test_create_reply_without_id_is_rejected() -> None:
    client = mocked(reply_with({"statusCode": 0, "message": "ok"}))
    with client, pytest.raises(RejectedError) as caught:
        client.create_customer(AVERY)

    assert "no customer id" in caught.value.message


@pytest.mark.parametrize(
    ("status", "content", "error"),
    [
        (200, b"<html>login</html>", RejectedError),
        (200, b'["not", "an", "object"]', RejectedError),
        (200, b'{"statusCode": "OK"}', RejectedError),
        (403, b'{"no": "statusCode"}', RejectedError),
        (403, b"Forbidden", RejectedError),
        (502, b"<html>Bad gateway</html>", RetryableError),
    ],
)
def test_replies_that_are_not_the_api(
    status: int, content: bytes, error: type[OutsideError]
) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=content))

    with mocked(transport) as client, pytest.raises(error):
        client.search_customers("Avery")


def test_statuscode_decides_whatever_the_http_status() -> None:
    with mocked(reply_with({"statusCode": 0, "customers": []}, status=404)) as client:
        assert client.search_customers("Avery") == []


def test_uapi_success_false_with_200_is_rejected() -> None:
    client = mocked(reply_with({"Success": False, "Response": "Customer locked"}))
    with client, pytest.raises(RejectedError) as caught:
        client.list_tag_ids(10517)

    assert caught.value.message == "uapi:tags refused (Customer locked)"


def test_requests_are_form_encoded_with_key_and_basic_auth_for_uapi() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if "/uapi/" in str(request.url):
            tag = request.url.params["tags[]"]
            return httpx.Response(200, json={"Success": True, "Response": [{"TagID": tag}]})
        return httpx.Response(200, json={"statusCode": 0})

    with mocked(httpx.MockTransport(answer)) as client:
        client.add_service(10517, 163)
        client.add_tags(10517, [1, 2])

    classic, uapi, second_tag = seen
    assert classic.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(urllib.parse.parse_qsl(classic.content.decode())) == {
        "apiKey": PC_KEY,
        "action": "addCustomerService",
        "customerID": "10517",
        "serviceID": "163",
        "quantity": "1",
        "prorateService": "0",
    }
    assert "authorization" not in classic.headers
    # One request per tag, everything in the query string, no body.
    for request, tag in ((uapi, "1"), (second_tag, "2")):
        assert request.method == "POST"
        assert request.url.path == "/uapi/customer/tags/customer"
        assert list(request.url.params.multi_items()) == [("customerID", "10517"), ("tags[]", tag)]
        assert request.content == b""
        assert request.headers["Authorization"] == "Basic cGMta2V5LWE5MWIyYzNkNGU="


def test_a_tag_accepted_but_not_on_the_customer_is_rejected() -> None:
    """PowerCode says Success but the read-back lacks the tag: never reported as tagged."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return httpx.Response(200, json={"Success": True, "Response": []})

    with mocked(httpx.MockTransport(answer)) as client, pytest.raises(RejectedError) as caught:
        client.add_tags(10517, [3])

    assert seen == ["POST", "GET"]
    assert caught.value.message == (
        "uapi:tags: PowerCode accepted tag(s) [3] but the customer does not carry them "
        "(check the tag ids in PowerCode)"
    )


def test_notes_are_read_and_replaced_and_missing_notes_are_told_apart(
    powercode: PowerCodeClient, powercode_emulator: PowerCodeEmulator
) -> None:
    customer_id = powercode.create_customer(AVERY).customer_id
    powercode.update_customer_notes(customer_id, f"{AVERY.notes}\nUTOPIA sent a message")
    customer = powercode.read_customer(customer_id)
    assert customer is not None and customer.notes == f"{AVERY.notes}\nUTOPIA sent a message"
    powercode_emulator.read_notes = False  # a reply without customerNotes: the notes are unknown
    customer = powercode.read_customer(customer_id)
    assert customer is not None and customer.notes is None
    with pytest.raises(ValueError, match="erase"):
        powercode.update_customer_notes(customer_id, "  ")
