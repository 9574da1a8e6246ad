"""Request data shared by the emulator tests."""

from __future__ import annotations

import base64
import json

# A createCustomer form as the service sends it (made-up person).
NEW_CUSTOMER = {
    "firstName": "Avery",
    "lastName": "Lindqvist",
    "emailAddress": "avery.lindqvist@example.net",
    "physicalStreet": "1432 S CANYON VIEW DR",
    "physicalCity": "Orem",
    "physicalState": "UT",
    "physicalZip": "84058",
    "physicalAutomaticallyGeocode": "1",
    "extAccountID": "204817",
    "customerNotes": "UTOPIA order UIA202611-004217",
    "phone": json.dumps([{"Type": "Home", "Number": "8015550142"}]),
}


def uapi_headers(key: str) -> dict[str, str]:
    """The UAPI's Authorization header: Basic with the bare key base64-encoded."""
    return {"Authorization": "Basic " + base64.b64encode(key.encode()).decode()}
