"""Made-up demo data for the emulators: named orders for the demo and random ones for load.

Every person, address, e-mail and phone number here is invented (e-mail domains are the
reserved example.* ones, phone numbers the fictional 555-01xx range).
"""

from __future__ import annotations

import random
import unicodedata
from typing import Any

from .powercode import PowerCodeEmulator
from .utopia import UtopiaEmulator

PLAN_ITEMS: dict[str, tuple[str, str]] = {
    # plan text -> (UTOPIA product id, monthly price)
    "250 Mbps": ("259", "65"),
    "1 Gbps": ("261", "75"),
    "2 Gbps": ("300", "95"),
}


def _address(
    siteid: str, street: str, city: str, state: str, zip_code: str, apt: str = ""
) -> dict[str, str]:
    return {
        "siteid": siteid,
        "address": street,
        "apt": apt,
        "city": city,
        "zip": zip_code,
        "state": state,
    }


def _billing(
    name: str, phone: str, street: str, city: str, state: str, zip_code: str, apt: str = ""
) -> dict[str, str]:
    return {
        "name": name,
        "phone": phone,
        "address": street,
        "apt": apt,
        "city": city,
        "zip": zip_code,
        "state": state,
    }


def _plan_item(plan: str) -> dict[str, str]:
    pid, price = PLAN_ITEMS[plan]
    return {
        "pid": pid,
        "chargetype": "mrc",
        "description": plan,
        "costper": price,
        "totalcost": price,
        "qty": "1",
    }


_INSTALLATION_ITEM = {
    "pid": "12",
    "chargetype": "nrc",
    "description": "Installation",
    "costper": "0",
    "totalcost": "0",
    "qty": "1",
}


def _contract(
    *,
    customer: dict[str, str],
    address: dict[str, str],
    billing: dict[str, str],
    items: list[dict[str, str]],
    download: str = "Ready",
    terms_date: str | None = None,
    promo: str = "",
    phone_ports: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    contract: dict[str, Any] = {
        "status": "Signed",
        "ordersource": "webcustomer",
        "promo": promo,
        "contractdownload": download,
        "customer": customer,
        "address": address,
        "billingaddress": billing,
        "orderitems": items,
        "orderphoneport": phone_ports or [],
    }
    # Older orders carry no terms agreement at all (the key is absent, not empty).
    if terms_date is not None:
        contract["termsagreement"] = {"sp_terms_agree_date": terms_date}
    return contract


DEMO_ORDERS: dict[str, dict[str, Any]] = {
    # A plain 250 Mbps order.
    "UIA202611-004217": _contract(
        customer={
            "firstname": "Avery",
            "lastname": "Lindqvist",
            "email": "avery.lindqvist@example.net",
            "phone": "8015550142",
        },
        address=_address("204817", "1432 S CANYON VIEW DR", "Orem", "Utah", "84058"),
        billing=_billing(
            "Avery Lindqvist", "8015550142", "1432 S CANYON VIEW DR", "Orem", "Utah", "84058"
        ),
        items=[_plan_item("250 Mbps")],
        terms_date="2026-11-03 14:22:51",
    ),
    # 1 Gbps with a unit, accents and an apostrophe, a different billing address and a
    # second order item that is not a plan.
    "UIA202611-004218": _contract(
        customer={
            "firstname": "María José",
            "lastname": "O'Neill-Ramírez",
            "email": "mj.oneill@example.org",
            "phone": "4065550199",
        },
        address=_address("318002", "220 W MAIN ST", "Bozeman", "Montana", "59715", "UNIT 4B"),
        billing=_billing(
            "Maria Oneill", "4065550199", "PO BOX 1187", "Belgrade", "Montana", "59714"
        ),
        items=[_plan_item("1 Gbps"), dict(_INSTALLATION_ITEM)],
        terms_date="2026-11-19 09:05:10",
        promo="FALL26",
    ),
    # An older order: unmapped plan text, no terms agreement, no e-mail, PDF not ready.
    "UIA202611-004219": _contract(
        customer={
            "firstname": "Dale",
            "lastname": "Whitfield",
            "email": "",
            "phone": "3855550107",
        },
        address=_address("99120", "87 N 400 E", "Layton", "Utah", "84041"),
        billing=_billing("Dale Whitfield", "3855550107", "87 N 400 E", "Layton", "Utah", "84041"),
        items=[_plan_item("2 Gbps")],
        download="Pending",
        phone_ports=[{"number": "3855550107", "carrier": "Example Wireless"}],
    ),
    # Someone who already has a PowerCode account (see EXISTING_CUSTOMERS), street written
    # in UTOPIA's abbreviated upper-case style.
    "UIA202611-004220": _contract(
        customer={
            "firstname": "Tobias",
            "lastname": "Wrenfield",
            "email": "t.wrenfield@example.com",
            "phone": "8015550163",
        },
        address=_address("226590", "1875 E HARVEST LN", "Lehi", "Utah", "84043"),
        billing=_billing(
            "Tobias Wrenfield", "8015550163", "1875 E HARVEST LN", "Lehi", "Utah", "84043"
        ),
        items=[_plan_item("1 Gbps")],
        terms_date="2026-11-21 18:40:02",
    ),
    # A PO BOX service street: PowerCode's automatic geocoding refuses it (statusCode 23).
    "UIA202611-004221": _contract(
        customer={
            "firstname": "Kenji",
            "lastname": "Halvorsen",
            "email": "kenji.halvorsen@example.com",
            "phone": "4355550118",
        },
        address=_address("277345", "PO BOX 77", "Tremonton", "Utah", "84337"),
        billing=_billing(
            "Kenji Halvorsen", "4355550118", "PO BOX 77", "Tremonton", "Utah", "84337"
        ),
        items=[_plan_item("250 Mbps")],
        terms_date="2026-11-24 07:58:30",
    ),
}

#: An order the demo adds to the UTOPIA stand-in after the first reconciliation and never sends a
#: callback for: reconciliation finds it and it is provisioned like any other. Not seeded.
MISSED_DEMO_ORDER: tuple[str, dict[str, Any]] = (
    "UIA202611-004223",
    _contract(
        customer={
            "firstname": "Odette",
            "lastname": "Quarrington",
            "email": "odette.q@example.com",
            "phone": "8015550177",
        },
        address=_address("207391", "88 N 400 E", "Provo", "Utah", "84606"),
        billing=_billing(
            "Odette Quarrington", "8015550177", "88 N 400 E", "Provo", "Utah", "84606"
        ),
        items=[_plan_item("1 Gbps")],
        terms_date="2026-11-27 18:40:02",
    ),
)

#: Keyword arguments for PowerCodeEmulator.add_customer: accounts that predate the demo orders.
EXISTING_CUSTOMERS: list[dict[str, Any]] = [
    # The same person as order UIA202611-004220, street spelled out in full.
    {
        "first_name": "Tobias",
        "last_name": "Wrenfield",
        "street": "1875 East Harvest Lane",
        "city": "Lehi",
        "state": "UT",
        "zip": "84043",
        "email": "t.wrenfield@example.com",
    },
    # Near misses that a name search must not confuse with the demo orders.
    {
        "first_name": "Avery",
        "last_name": "Lindgren",
        "street": "55 N 100 W",
        "city": "Provo",
        "state": "UT",
        "zip": "84601",
        "ext_account_id": "188204",
        "email": "avery.lindgren@example.org",
    },
    {
        "first_name": "Tobias",
        "last_name": "Marsh",
        "street": "310 S 200 E",
        "city": "Murray",
        "state": "UT",
        "zip": "84107",
    },
]

# -- random orders for load tests ------------------------------------------------------------

_FIRST_NAMES = (
    "Avery", "Jordan", "Mette", "Søren", "Zoë", "Andrés", "Priya", "Malia", "Chen", "Rosalind",
    "Émile", "Tavita", "Ingrid", "Marcus", "Noa", "Björn", "Leilani", "Dmitri", "Renée", "Kwame",
)  # fmt: skip
_LAST_NAMES = (
    "Lindqvist", "Haverford", "Østergaard", "Núñez", "Whitcombe", "Castellanos", "Okonkwo",
    "Brightwater", "D'Amato", "Van der Berg", "Tanaka-Reyes", "Pellegrini", "Halloran",
    "Szymańska", "Ashdown", "Kealoha", "Fairbairn", "Morrow",
)  # fmt: skip
# (city, full state name as UTOPIA writes it, zip, phone area code)
_PLACES = (
    ("Orem", "Utah", "84058", "801"),
    ("Provo", "Utah", "84604", "801"),
    ("Layton", "Utah", "84041", "385"),
    ("Lehi", "Utah", "84043", "801"),
    ("West Valley City", "Utah", "84119", "801"),
    ("Murray", "Utah", "84107", "801"),
    ("Midvale", "Utah", "84047", "801"),
    ("Centerville", "Utah", "84014", "801"),
    ("Brigham City", "Utah", "84302", "435"),
    ("Tremonton", "Utah", "84337", "435"),
    ("Payson", "Utah", "84651", "801"),
    ("Idaho Falls", "Idaho", "83402", "208"),
    ("Bozeman", "Montana", "59715", "406"),
)
_STREET_NAMES = (
    "CANYON VIEW DR", "MAIN ST", "CENTER ST", "HARVEST LN", "ASPEN WAY", "SUNSET DR",
    "CEDAR HILLS BLVD", "WILLOW CREEK RD", "QUAIL RIDGE CIR", "STATE ST",
)  # fmt: skip
_DIRECTIONS = ("N", "S", "E", "W")
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
# Letters NFKD does not split into base + accent.
_ASCII_FOLD = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss"})

#: Generated order numbers start here so they never collide with the demo orders.
_GENERATED_ORDER_BASE = 100_000
_GENERATED_SITE_BASE = 500_000


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD))
    return "".join(ch for ch in folded if ch.isascii() and ch.isalnum()).lower()


def _street(rng: random.Random) -> str:
    number = rng.randint(10, 9999)
    if rng.random() < 0.35:
        # Utah grid address, e.g. "87 N 400 E".
        return (
            f"{number} {rng.choice(_DIRECTIONS)} {rng.randint(1, 30) * 100} "
            f"{rng.choice(_DIRECTIONS)}"
        )
    return f"{number} {rng.choice(_DIRECTIONS)} {rng.choice(_STREET_NAMES)}"


def make_order(index: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A random but realistic contract; orderref and siteid are unique per ``index``."""
    if not 0 <= index < 900_000:
        raise ValueError("index must be between 0 and 899999")
    year = rng.choice((2026, 2027))
    month = rng.randint(1, 12)
    orderref = f"UIA{year}{month:02d}-{_GENERATED_ORDER_BASE + index:06d}"
    siteid = str(_GENERATED_SITE_BASE + index)
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    city, state, zip_code, area = rng.choice(_PLACES)
    phone = f"{area}5550{rng.randint(100, 199)}"
    email = ""
    if rng.random() < 0.95:
        email = f"{_ascii_slug(first)}.{_ascii_slug(last)}{index}@{rng.choice(_EMAIL_DOMAINS)}"
    street = _street(rng)
    apt = ""
    if rng.random() < 0.2:
        apt = rng.choice((f"APT {rng.randint(1, 40)}", f"UNIT {rng.randint(1, 20)}B"))
    if rng.random() < 0.1:
        billing = _billing(
            f"{first} {last}", phone, f"PO BOX {rng.randint(10, 2999)}", city, state, zip_code
        )
    else:
        billing = _billing(f"{first} {last}", phone, street, city, state, zip_code, apt)
    items = [_plan_item(rng.choice(("250 Mbps", "1 Gbps")))]
    if rng.random() < 0.15:
        items.append(dict(_INSTALLATION_ITEM))
    terms_date = None
    if rng.random() < 0.9:
        terms_date = (
            f"{year}-{month:02d}-{rng.randint(1, 28):02d} "
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        )
    contract = _contract(
        customer={"firstname": first, "lastname": last, "email": email, "phone": phone},
        address=_address(siteid, street, city, state, zip_code, apt),
        billing=billing,
        items=items,
        download="Ready" if rng.random() < 0.9 else "Pending",
        terms_date=terms_date,
        promo=rng.choice(("", "", "", "FALL26", "SPRING27")),
    )
    return orderref, contract


def seed_utopia(emulator: UtopiaEmulator) -> None:
    """Load the demo orders into a UTOPIA emulator."""
    for index, (orderref, contract) in enumerate(DEMO_ORDERS.items()):
        emulator.add_order(orderref, contract)
        # Each demo order's site is in service, so the site panel and the subscriber actions
        # have something to show and act on; `cid` is made up (UTOPIA's format is unknown).
        siteid = str(contract.get("address", {}).get("siteid", ""))
        customer = contract.get("customer", {})
        if siteid:
            emulator.add_site(
                siteid,
                cid=f"C{siteid}",
                firstname=str(customer.get("firstname", "")),
                lastname=str(customer.get("lastname", "")),
                macs=[f"00:1a:2b:3c:{index // 256:02x}:{index % 256:02x}"],
            )


def seed_powercode(emulator: PowerCodeEmulator) -> list[int]:
    """Add the pre-existing demo customers to a PowerCode emulator; returns their ids."""
    return [emulator.add_customer(**kwargs) for kwargs in EXISTING_CUSTOMERS]
