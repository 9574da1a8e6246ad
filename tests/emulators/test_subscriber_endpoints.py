"""The stand-ins' subscriber calls: UTOPIA's look-ups and stateful writes, PowerCode's status."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from utopia_handler.emulators import PowerCodeEmulator, UtopiaEmulator

KEY = "ut-test-key"


def post(client: httpx.Client, utopia: UtopiaEmulator, endpoint: str, **body: Any) -> Any:
    reply = client.post(f"{utopia.base_url}/spquery/{endpoint}", json={"apikey": KEY, **body})
    return reply.status_code, reply.json()


def test_suspend_changes_what_service_shows_and_unsuspend_reverses_it(
    client: httpx.Client, utopia: UtopiaEmulator
) -> None:
    utopia.add_site("318877", cid="C77", macs=["aa:bb:cc:dd:ee:01"])
    assert post(client, utopia, "service", siteid="318877")[1]["data"][0]["status"] == "Active"
    assert post(client, utopia, "suspend", cid="C77", siteid="318877")[0] == 200
    _code, body = post(client, utopia, "service", siteid="318877")
    assert body["data"][0]["status"] == "Suspended"
    assert body["data"][0]["customer"]["cid"] == "C77"
    post(client, utopia, "unsuspend", cid="C77", siteid="318877")
    assert post(client, utopia, "service", siteid="318877")[1]["data"][0]["status"] == "Active"
    assert [entry[0] for entry in utopia.journal][:2] == ["service", "suspend"]
    assert all(body["apikey"] == "***" for _, body in utopia.journal)


def test_writes_are_strict_about_their_fields(client: httpx.Client, utopia: UtopiaEmulator) -> None:
    utopia.add_site("318877", cid="C77")
    assert post(client, utopia, "suspend", siteid="318877")[1] == {"error": "Missing field: cid"}
    assert post(client, utopia, "suspend", cid="WRONG", siteid="318877")[0] == 404
    code, body = post(
        client,
        utopia,
        "changespeed",
        cid="C77",
        siteid="318877",
        uiaid="9001",
        product="1000",
        issuedate="30/11/2026",
    )
    assert code == 400 and "YYYY-MM-DD" in body["error"]
    code, _ = post(
        client,
        utopia,
        "changespeed",
        cid="C77",
        siteid="318877",
        uiaid="9001",
        product="1000",
        issuedate="2026-12-01",
    )
    assert code == 200
    assert post(client, utopia, "service", siteid="318877")[1]["data"][0]["product"] == "1 Gbps"
    post(client, utopia, "cancelservice", cid="C77", siteid="318877", issuedate="2026-12-31")
    line = post(client, utopia, "service", siteid="318877")[1]["data"][0]
    assert (line["status"], line["canceldate"]) == ("Cancelled", "2026-12-31")


def test_lookups_answer_from_the_held_sites(client: httpx.Client, utopia: UtopiaEmulator) -> None:
    utopia.add_site("318877", cid="C77", macs=["aa:bb:cc:dd:ee:01"])
    utopia.add_project("P1", "318877")
    utopia.add_outage_ticket("T9", "318877", "Fiber cut")
    macs = post(client, utopia, "apview", siteid="318877")[1]["result"][0]["eth"]["eth1"]["macs"]
    assert macs[0][:17] == "aa:bb:cc:dd:ee:01"
    found = post(client, utopia, "macsearch", mac="AA:BB:CC:DD:EE:01", hourshistory="24")[1]
    assert (found["status"], found["siteid"]) == ("success", "318877")
    assert post(client, utopia, "macsearch", mac="00:00:00:00:00:00")[1]["status"] == "notfound"
    assert post(client, utopia, "customer", cid="C77")[1]["sites"] == ["318877"]
    assert post(client, utopia, "projects", siteid="318877")[1]["data"][0]["projectid"] == "P1"
    assert post(client, utopia, "projectdetail", projectid="P1")[0] == 200
    assert post(client, utopia, "outageticket", ticketid="T9")[1]["summary"] == "Fiber cut"
    assert post(client, utopia, "products")[1]["data"]
    assert post(client, utopia, "service", siteid="999")[0] == 404


def test_a_reply_lost_after_the_suspend_applied_still_suspends(
    client: httpx.Client, utopia: UtopiaEmulator
) -> None:
    utopia.add_site("318877", cid="C77")
    utopia.faults.add_from_json({"target": "suspend", "kind": "drop_after_apply"})
    with contextlib.suppress(httpx.HTTPError):
        post(client, utopia, "suspend", cid="C77", siteid="318877")
    assert utopia.sites["318877"].status == "Suspended"


def _classic(client: httpx.Client, pc: PowerCodeEmulator, **form: str) -> Any:
    return client.post(pc.api_url, data={"apiKey": "pc-test-key", **form}).json()


def test_powercode_update_customer_status_and_equipment(
    client: httpx.Client, powercode: PowerCodeEmulator
) -> None:
    customer = powercode.add_customer("Ada", "Lovelace", "1 Main", "Logan")
    powercode.add_equipment(customer, "aa:bb:cc:dd:ee:01")
    reply = _classic(client, powercode, action="updateCustomerStatus", customerID=str(customer))
    assert reply == {"statusCode": 3, "message": "Missing field: status"}
    reply = _classic(
        client, powercode, action="updateCustomerStatus", customerID=str(customer), status="Nope"
    )
    assert reply["statusCode"] == 3
    _classic(
        client,
        powercode,
        action="updateCustomerStatus",
        customerID=str(customer),
        status="Suspended",
    )
    read = _classic(client, powercode, action="readCustomer", customerID=str(customer))
    assert read["customer"]["status"] == "Suspended"
    equipment = _classic(
        client, powercode, action="readCustomerEquipment", customerID=str(customer)
    )
    assert equipment["equipment"][0]["macAddress"] == "aa:bb:cc:dd:ee:01"
