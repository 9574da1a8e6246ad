"""The control surface for out-of-process tools, the bundle of all three, and the seed data."""

from __future__ import annotations

import os
import random
import signal
import smtplib
import threading
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from utopia_handler.emulators import (
    PowerCodeEmulator,
    UtopiaEmulator,
    serve_forever,
    start_emulators,
)
from utopia_handler.emulators.seed import DEMO_ORDERS, EXISTING_CUSTOMERS, make_order

# -- control endpoints ---------------------------------------------------------------------


def test_state_reports_counts_records_and_calls(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer = powercode.add_customer("Dale", "Whitfield", "87 N 400 E", "Layton")
    powercode.customer_tags[customer] = {1}
    client.post(
        powercode.api_url,
        data={"apiKey": powercode.api_key, "action": "readCustomer", "customerID": str(customer)},
    )
    state = client.get(powercode.base_url + "/_emulator/state").json()
    assert state["counts"] == {
        "customers": 1,
        "tickets": 0,
        "service_adds": 0,
        "customer_updates": 0,
    }
    assert state["customers"][str(customer)]["lastName"] == "Whitfield"
    assert state["customer_tags"] == {str(customer): [1]}
    assert state["calls"] == {"readCustomer": 1}
    assert state["faults"] == []


def test_faults_can_be_added_listed_and_cleared_over_http(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    url = powercode.base_url + "/_emulator/faults"
    added = client.post(
        url,
        json={"target": "searchCustomers", "kind": "fail", "count": None, "status": 500},
    )
    assert added.status_code == 201
    assert added.json()["faults"][0]["kind"] == "fail"
    search = {"apiKey": powercode.api_key, "action": "searchCustomers", "searchString": "x"}
    assert client.post(powercode.api_url, data=search).status_code == 500
    assert client.post(powercode.api_url, data=search).status_code == 500
    assert client.delete(url).json() == {"faults": []}
    assert client.post(powercode.api_url, data=search).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"target": "*", "kind": "explode"},
        {"target": "*"},
        {"target": "*", "kind": "fail", "count": "two"},
        ["not", "an", "object"],
    ],
)
def test_bad_fault_requests_are_400(
    client: httpx.Client, powercode: PowerCodeEmulator, body: Any
) -> None:
    response = client.post(powercode.base_url + "/_emulator/faults", json=body)
    assert response.status_code == 400
    assert powercode.faults.pending() == []


def test_reject_fault_over_http(client: httpx.Client, powercode: PowerCodeEmulator) -> None:
    client.post(
        powercode.base_url + "/_emulator/faults",
        json={"target": "createCustomer", "kind": "reject", "status_code": 23, "message": "no"},
    )
    fault = powercode.faults.take("createCustomer")
    assert fault is not None and (fault.kind, fault.status_code, fault.message) == (
        "reject",
        23,
        "no",
    )


def test_control_routes_skip_latency_and_faults(client: httpx.Client) -> None:
    with PowerCodeEmulator(latency=1.0) as pc:
        pc.faults.add("*", "drop_before", count=None)
        response = client.get(pc.base_url + "/_emulator/state", timeout=0.5)
        assert response.status_code == 200


def test_utopia_orders_can_be_added_over_http(client: httpx.Client, utopia: UtopiaEmulator) -> None:
    orderref, contract = make_order(1, random.Random(1))
    added = client.post(
        utopia.base_url + "/_emulator/orders", json={"orderref": orderref, "contract": contract}
    )
    assert added.status_code == 201
    lookup = client.post(
        utopia.base_url + "/spquery/contractlookup",
        json={"apikey": utopia.api_key, "orderref": orderref},
    )
    assert lookup.json() == contract
    state = client.get(utopia.base_url + "/_emulator/state").json()
    assert state["counts"] == {"orders": 1}
    assert state["calls"] == {"contractlookup": 1}
    bad = client.post(utopia.base_url + "/_emulator/orders", json={"orderref": orderref})
    assert bad.status_code == 400


def test_unknown_control_route_is_404(client: httpx.Client, utopia: UtopiaEmulator) -> None:
    assert client.get(utopia.base_url + "/_emulator/nothing").status_code == 404


# -- all three together --------------------------------------------------------------------


def test_start_emulators_seeds_and_describes_itself(client: httpx.Client) -> None:
    with start_emulators() as emulators:
        env = emulators.env()
        assert env["PC_URL_API"] == emulators.powercode.api_url
        assert env["PC_URL_UAPI"].endswith("/uapi/")
        assert env["UTOPIA_URL_ENDPOINT"] == emulators.utopia.base_url
        assert env["MAIL_PORT"] == str(emulators.smtp.port)
        assert env["PC_CUST_TAGS"] == "1,3"
        assert env["SERVICE_PLAN_250MBPS_ID"] == "163"
        lookup = client.post(
            env["UTOPIA_URL_ENDPOINT"] + "/spquery/contractlookup",
            json={"apikey": env["UTOPIA_API_KEY"], "orderref": "UIA202611-004220"},
        )
        person = lookup.json()["customer"]
        search = client.post(
            env["PC_URL_API"],
            data={
                "apiKey": env["PC_API_KEY"],
                "action": "searchCustomers",
                "searchString": f"{person['firstname']} {person['lastname']}",
            },
        )
        [existing] = search.json()["customers"]
        assert existing["City"] == "Lehi"
        assert existing["Address1"] == "1875 East Harvest Lane"
        msg = EmailMessage()
        msg["Subject"] = "hello"
        msg.set_content("hi")
        with smtplib.SMTP(env["MAIL_SERVER"], int(env["MAIL_PORT"]), timeout=5) as smtp:
            smtp.send_message(msg, from_addr="a@example.com", to_addrs=["b@example.com"])
        assert len(emulators.smtp.messages) == 1


def test_start_emulators_unseeded() -> None:
    with start_emulators(seed=False) as emulators:
        assert emulators.powercode.customers == {}
        assert emulators.utopia.orders == {}


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers need the main thread",
)
def test_serve_forever_stops_on_sigterm() -> None:
    emulators = start_emulators(seed=False)
    timer = threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        serve_forever(emulators)
    finally:
        timer.cancel()
    assert not emulators.powercode.running
    assert not emulators.utopia.running
    with httpx.Client() as http, pytest.raises(httpx.ConnectError):
        http.get(f"http://127.0.0.1:{emulators.utopia.port}/_emulator/state")


# -- seed data -----------------------------------------------------------------------------


def _all_strings(value: object) -> bool:
    if isinstance(value, dict):
        return all(_all_strings(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_strings(v) for v in value)
    return isinstance(value, str)


def test_demo_orders_cover_the_awkward_cases() -> None:
    assert _all_strings(DEMO_ORDERS)
    plain = DEMO_ORDERS["UIA202611-004217"]
    assert plain["orderitems"][0]["description"] == "250 Mbps"
    assert "termsagreement" in plain
    accented = DEMO_ORDERS["UIA202611-004218"]
    assert accented["address"]["apt"] == "UNIT 4B"
    assert accented["billingaddress"]["address"] != accented["address"]["address"]
    assert [item["chargetype"] for item in accented["orderitems"]] == ["mrc", "nrc"]
    older = DEMO_ORDERS["UIA202611-004219"]
    assert "termsagreement" not in older
    assert older["customer"]["email"] == ""
    assert older["contractdownload"] == "Pending"
    existing = DEMO_ORDERS["UIA202611-004220"]
    assert existing["customer"]["lastname"] == EXISTING_CUSTOMERS[0]["last_name"]
    assert existing["address"]["address"] != EXISTING_CUSTOMERS[0]["street"]
    assert DEMO_ORDERS["UIA202611-004221"]["address"]["address"] == "PO BOX 77"


def test_make_order_is_deterministic_unique_and_well_formed() -> None:
    orders = [make_order(i, random.Random(i)) for i in range(300)]
    refs = {ref for ref, _ in orders}
    sites = {contract["address"]["siteid"] for _, contract in orders}
    assert len(refs) == len(sites) == 300
    assert not refs & DEMO_ORDERS.keys()
    assert make_order(7, random.Random(7)) == orders[7]
    for ref, contract in orders:
        assert len(ref) == len("UIA202611-004217") and ref.startswith("UIA")
        assert _all_strings(contract)
        assert contract["orderitems"][0]["description"] in ("250 Mbps", "1 Gbps")
        assert len(contract["address"]["state"]) > 2  # full state names, as UTOPIA sends
