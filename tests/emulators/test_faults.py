"""Scripted faults happen on the right call, the right number of times, with the right effect."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from utopia_handler.emulators import FaultPlan, PowerCodeEmulator, UtopiaEmulator
from utopia_handler.emulators.faults import DEFAULT_TIMEOUT_SECONDS

from ._shared import NEW_CUSTOMER, tag_request


def create(client: httpx.Client, powercode: PowerCodeEmulator) -> httpx.Response:
    data = {"apiKey": powercode.api_key, "action": "createCustomer", **NEW_CUSTOMER}
    return client.post(powercode.api_url, data=data)


# -- the plan itself -----------------------------------------------------------------------


def test_plan_takes_in_order_and_counts_down() -> None:
    plan = FaultPlan()
    plan.add("createCustomer", "fail", count=2, status=502)
    plan.add("*", "latency", seconds=0.1)
    assert plan.take("readCustomer") is not None  # the wildcard
    assert plan.take("readCustomer") is None
    first = plan.take("createCustomer")
    assert first is not None and first.status == 502
    assert len(plan.pending()) == 1
    assert plan.take("createCustomer") is not None
    assert plan.take("createCustomer") is None
    assert plan.pending() == []


def test_plan_forever_and_clear() -> None:
    plan = FaultPlan()
    plan.add("*", "drop_before", count=None)
    for _ in range(5):
        assert plan.take("x") is not None
    assert plan.pending()[0]["count"] is None
    plan.clear()
    assert plan.take("x") is None


def test_plan_refuses_unknown_kinds_and_bad_counts() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultPlan().add("*", "explode")
    with pytest.raises(ValueError):
        FaultPlan().add("*", "fail", count=0)
    with pytest.raises(ValueError, match="unknown fault kind"):
        UtopiaEmulator().faults.add("*", "reject")


def test_timeout_without_seconds_holds_for_the_default() -> None:
    plan = FaultPlan()
    plan.add("*", "timeout")
    fault = plan.take("x")
    assert fault is not None and fault.seconds == DEFAULT_TIMEOUT_SECONDS


# -- on the wire ---------------------------------------------------------------------------


def test_latency_delays_then_applies(client: httpx.Client, powercode: PowerCodeEmulator) -> None:
    powercode.faults.add("createCustomer", "latency", seconds=0.2)
    started = time.monotonic()
    response = create(client, powercode)
    assert time.monotonic() - started >= 0.2
    assert response.json()["statusCode"] == 0
    assert len(powercode.customers) == 1


def test_fail_answers_the_status_with_retry_after_and_applies_nothing(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    powercode.faults.add("createCustomer", "fail", status=503, retry_after=2)
    response = create(client, powercode)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert "error" in response.json()
    assert powercode.customers == {}
    assert powercode.calls["createCustomer"] == 1
    # Used up: the next call goes through.
    assert create(client, powercode).json()["statusCode"] == 0


def test_fault_only_hits_its_target(client: httpx.Client, powercode: PowerCodeEmulator) -> None:
    powercode.faults.add("createTicket", "fail", count=None)
    assert create(client, powercode).status_code == 200
    assert len(powercode.faults.pending()) == 1


def test_timeout_holds_the_connection_and_applies_nothing(
    powercode: PowerCodeEmulator,
) -> None:
    powercode.faults.add("createCustomer", "timeout", seconds=0.6)
    with httpx.Client(timeout=0.2) as impatient, pytest.raises(httpx.ReadTimeout):
        create(impatient, powercode)
    assert powercode.customers == {}


def test_timeout_closes_without_answer_after_its_seconds(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    powercode.faults.add("createCustomer", "timeout", seconds=0.2)
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        create(client, powercode)
    assert time.monotonic() - started >= 0.2
    assert powercode.customers == {}


def test_drop_before_closes_and_applies_nothing(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    powercode.faults.add("createCustomer", "drop_before")
    with pytest.raises(httpx.RemoteProtocolError):
        create(client, powercode)
    assert powercode.customers == {}
    # The same client recovers on a fresh connection.
    assert create(client, powercode).json()["statusCode"] == 0


def test_drop_after_apply_creates_the_customer_although_the_client_saw_an_error(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    powercode.faults.add("createCustomer", "drop_after_apply")
    with pytest.raises(httpx.TransportError):
        create(client, powercode)
    assert len(powercode.customers) == 1
    lookup = client.post(
        powercode.api_url,
        data={"apiKey": powercode.api_key, "action": "readCustomer", "extAccountID": "204817"},
    )
    assert lookup.json()["customer"]["customerId"] == "10001"


def test_reject_answers_200_with_the_given_status_code(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    powercode.faults.add(
        "createCustomer", "reject", status_code=23, message="Unable to geocode physical address"
    )
    response = create(client, powercode)
    assert response.status_code == 200
    assert response.json() == {"statusCode": 23, "message": "Unable to geocode physical address"}
    assert powercode.customers == {}


def test_wildcard_and_count(client: httpx.Client, powercode: PowerCodeEmulator) -> None:
    powercode.faults.add("*", "fail", count=2, status=500)
    assert [create(client, powercode).status_code for _ in range(3)] == [500, 500, 200]
    assert powercode.calls["createCustomer"] == 3


def test_uapi_faults_use_the_uapi_tags_target(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer = powercode.add_customer("Dale", "Whitfield", "87 N 400 E", "Layton")
    powercode.faults.add("uapi:tags", "drop_after_apply")
    with pytest.raises(httpx.RemoteProtocolError):
        tag_request(client, powercode, "POST", customer, 1)
    assert powercode.customer_tags[customer] == {1}


def test_utopia_faults_by_endpoint(client: httpx.Client, utopia: UtopiaEmulator) -> None:
    utopia.add_order("UIA202611-000100", {"status": "Signed", "contractdownload": "Ready"})
    utopia.faults.add("contractdownload", "fail", status=502)
    body = {"apikey": utopia.api_key, "orderref": "UIA202611-000100"}
    assert client.post(utopia.base_url + "/spquery/contractlookup", json=body).status_code == 200
    assert client.post(utopia.base_url + "/spquery/contractdownload", json=body).status_code == 502
    utopia.faults.add("*", "drop_before")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(utopia.base_url + "/spquery/contractlookup", json=body)
    assert utopia.calls["contractlookup"] == 2


def test_stop_interrupts_a_held_connection_promptly() -> None:
    emulator = PowerCodeEmulator().start()
    emulator.faults.add("*", "timeout", seconds=30)
    errors: list[Exception] = []

    def doomed_call() -> None:
        try:
            with httpx.Client(timeout=10) as http:
                create(http, emulator)
        except httpx.TransportError as error:
            errors.append(error)

    caller = threading.Thread(target=doomed_call)
    caller.start()
    deadline = time.monotonic() + 5
    while emulator.calls["createCustomer"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    emulator.stop()
    caller.join(5)
    assert time.monotonic() - started < 2
    assert len(errors) == 1
    with httpx.Client() as http, pytest.raises(httpx.ConnectError):
        http.get(f"http://127.0.0.1:{emulator.port}/")
