"""Request data and calls shared by the emulator tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from utopia_handler.emulators import PowerCodeEmulator

# A createCustomer form as the production handler sent it (made-up person, its fixed values).
NEW_CUSTOMER = {
    "firstName": "Avery",
    "lastName": "Lindqvist",
    "emailAddress": "avery.lindqvist@example.net",
    "physicalStreet": "1432 S CANYON VIEW DR",
    "physicalCity": "Orem",
    "physicalState": "UT",
    "physicalZip": "84058",
    "physicalAutomaticallyGeocode": "1",
    "billingSameAsPhysical": "1",
    "taxZoneId": "1",
    "invoicePreference": "Email",
    "billDay": "Activation Date",
    "dueByDays": "0",
    "gracePeriodDays": "10",
    "extAccountID": "204817",
    "customerNotes": "UTOPIA order UIA202611-004217",
    "phone": json.dumps([{"Type": "Home", "Number": "8015550142"}]),
}

# A createTicket form as the production handler sent it, less the customerID.
NEW_TICKET = {
    "type": "Individual",
    "summary": "New UTOPIA install",
    "description": "<p>Install for Avery</p>",
    "category": "54",
    "ticketType": "21",
    "status": "1",
    "responsibleUser": "Sales",
    "responsibleGroupID": "4",
    "customerViewable": "1",
}


def uapi_headers(key: str) -> dict[str, str]:
    """The UAPI's Authorization header: Basic with the bare key base64-encoded."""
    return {"Authorization": "Basic " + base64.b64encode(key.encode()).decode()}


def tags_url(powercode: PowerCodeEmulator) -> str:
    """The UAPI customer-tags resource."""
    return powercode.uapi_url + "customer/tags/customer"


def call(
    client: httpx.Client, powercode: PowerCodeEmulator, action: str, **fields: str
) -> dict[str, Any]:
    """One classic API call with the right key; PowerCode always answers HTTP 200."""
    response = client.post(
        powercode.api_url, data={"apiKey": powercode.api_key, "action": action, **fields}
    )
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def create_customer(client: httpx.Client, powercode: PowerCodeEmulator, **changes: str) -> int:
    """Create a customer as production did; returns its id."""
    reply = call(client, powercode, "createCustomer", **{**NEW_CUSTOMER, **changes})
    assert reply["statusCode"] == 0, reply
    return int(reply["customerID"])


def tag_request(
    client: httpx.Client, powercode: PowerCodeEmulator, method: str, customer: int, tag: int
) -> httpx.Response:
    """One tag added or removed as production did: query string, no body."""
    return client.request(
        method,
        tags_url(powercode),
        params={"customerID": str(customer), "tags[]": str(tag)},
        headers=uapi_headers(powercode.api_key),
    )
