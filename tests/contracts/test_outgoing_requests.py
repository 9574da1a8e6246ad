"""Every request we send, pinned to the form the evidence shows working.

No public specification exists for PowerCode or UTOPIA. What we know comes from PowerCode's
knowledge base, independent public clients and, above all, the requests the old production
handler sent for two years (summarised in README "What we assumed"). Each row of CONTRACTS says
where a request goes, how its body is encoded, and each parameter's place, name and value format,
with the evidence it follows. The clients are driven against a recording HTTP server and every
request that arrives is held against its row, so a change of wire format fails here, naming the
evidence it breaks.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from utopia_handler.clients.powercode import NewCustomer, NewTicket, PowerCodeClient
from utopia_handler.clients.utopia import UtopiaClient
from utopia_handler.settings import Timeouts

from .recorder import WireRequest, base_url, json_answer, recording_server

PC_KEY = "contract-pc-key-4471"
UTOPIA_KEY = "contract-utopia-key-9034"
TIMEOUTS = Timeouts(connect=2.0, read=5.0)

ID = r"[1-9][0-9]*"
FLAG = r"[01]"
Where = Literal["form", "query", "json"]


@dataclass(frozen=True)
class Param:
    name: str
    where: Where
    value: str  # a regular expression the whole value must match
    required: bool = True


@dataclass(frozen=True)
class Contract:
    """The one form of a request the evidence shows working."""

    method: str
    path: str
    body: Literal["form", "json", "none"]
    params: tuple[Param, ...]
    evidence: str
    basic_auth: bool = False  # Authorization: Basic <base64 of the bare API key>


def _classic(action: str, evidence: str, *params: Param) -> Contract:
    """A classic PowerCode API call: one endpoint, form-encoded, key and action in the form."""
    return Contract(
        "POST",
        "/api/1/index.php",
        "form",
        (
            Param("apiKey", "form", re.escape(PC_KEY)),
            Param("action", "form", re.escape(action)),
            *params,
        ),
        "classic API: POST form-encoded to /api/1/index.php with apiKey and action "
        "(several public clients). " + evidence,
    )


def _form(name: str, value: str, *, required: bool = True) -> Param:
    return Param(name, "form", value, required)


CONTRACTS: dict[str, Contract] = {
    "searchCustomers": _classic(
        "searchCustomers",
        'Fields: searchString, "First Last" as the production handler searched.',
        _form("searchString", r"\S.*\S"),
    ),
    "readCustomer by site": _classic(
        "readCustomer",
        "readCustomer takes customerID or extAccountID; the site id goes in extAccountID.",
        _form("extAccountID", r"[0-9]+"),
    ),
    "readCustomer by id": _classic(
        "readCustomer", "readCustomer takes customerID or extAccountID.", _form("customerID", ID)
    ),
    "createCustomer": _classic(
        "createCustomer",
        "The production handler always sent taxZoneId, dueByDays, gracePeriodDays, billDay, "
        "invoicePreference, billingSameAsPhysical 1 and physicalAutomaticallyGeocode (0 only on "
        "the retry after statusCode 23); phone is a JSON string of [{Type, Number}].",
        _form("firstName", r".+"),
        _form("lastName", r".+"),
        _form("emailAddress", r".*"),
        _form("physicalStreet", r".+"),
        _form("physicalCity", r".+"),
        _form("physicalState", r"[A-Z]{2}"),
        _form("physicalZip", r"[0-9]{5}(-[0-9]{4})?"),
        _form("physicalAutomaticallyGeocode", FLAG),
        _form("billingSameAsPhysical", "1"),
        _form("taxZoneId", ID),
        _form("invoicePreference", "Email|Print|Both|None"),
        _form("billDay", r".+"),
        _form("dueByDays", r"[0-9]+"),
        _form("gracePeriodDays", r"[0-9]+"),
        _form("customerNotes", r".+"),
        _form("phone", r"\[.*\]"),
        _form("extAccountID", r"[0-9]+"),
        _form("customerPortalUsername", r".+", required=False),
        _form("customerPortalPassword", r".+", required=False),
    ),
    "updateCustomer notes": _classic(
        "updateCustomer",
        "updateCustomer takes customerID + the fields to change (one source); the notes field is "
        "customerNotes, as createCustomer names it. Only the notes are sent: the routing "
        "table's note action reads them first and sends them back with its line added.",
        _form("customerID", ID),
        _form("customerNotes", r"(?s).*\S.*"),
    ),
    "readCustomerService": _classic(
        "readCustomerService", "Fields: customerID (one source).", _form("customerID", ID)
    ),
    "addCustomerService": _classic(
        "addCustomerService",
        "Fields: customerID, serviceID, quantity, prorateService 0 (one source). PowerCode's own "
        "rule: an Internet service never above quantity 1.",
        _form("customerID", ID),
        _form("serviceID", ID),
        _form("quantity", ID),
        _form("prorateService", "0"),
    ),
    "createTicket": _classic(
        "createTicket",
        "The production handler always sent type Individual, category, ticketType, status, "
        "responsibleUser as a NAME (e.g. Sales), responsibleGroupID and customerViewable.",
        _form("customerID", ID),
        _form("type", "Individual"),
        _form("summary", r".+"),
        _form("description", r"(?s).+"),
        _form("category", ID),
        _form("ticketType", ID),
        _form("status", ID),
        _form("responsibleUser", r"\S(.*\S)?"),
        _form("responsibleGroupID", ID),
        _form("customerViewable", FLAG),
    ),
    "updateCustomerStatus": _classic(
        "updateCustomerStatus",
        "Fields: customerID and status (e.g. Active) (one source).",
        _form("customerID", ID),
        _form("status", r"[A-Z][A-Za-z ]*"),
    ),
    "readCustomerEquipment": _classic(
        "readCustomerEquipment",
        "readCustomerEquipment is named by one source; customerID as every per-customer read.",
        _form("customerID", ID),
    ),
    "readTicket": _classic("readTicket", "Fields: ticketID (one source).", _form("ticketID", ID)),
    "list tags": Contract(
        "GET",
        "/uapi/customer/tags/customer",
        "none",
        (Param("customerID", "query", ID),),
        "UAPI customer/tags/customer: GET lists, customerID in the query string; Basic auth "
        "with the bare key (one source).",
        basic_auth=True,
    ),
    "add a tag": Contract(
        "POST",
        "/uapi/customer/tags/customer",
        "none",
        (Param("customerID", "query", ID), Param("tags[]", "query", ID)),
        "UAPI tags: the production handler's last form POSTs no body, customerID and tags[] in "
        "the query string, one request per tag id (the comma-joined tags[] was abandoned; a "
        "JSON body has never been seen to work).",
        basic_auth=True,
    ),
    "contractlookup": Contract(
        "POST",
        "/spquery/contractlookup",
        "json",
        (
            Param("apikey", "json", re.escape(UTOPIA_KEY)),
            Param("orderref", "json", r"UIA[0-9]{6}-[0-9]{6}"),
            Param("network", "json", "UTOPIA|BOUNTIFULFIBER|IDAHOFALLS|BOZEMAN", required=False),
        ),
        "UTOPIA: every call is a POST with a JSON body carrying the key as apikey (official page, "
        "one provider's production code).",
    ),
    "contractdownload": Contract(
        "POST",
        "/spquery/contractdownload",
        "json",
        (
            Param("apikey", "json", re.escape(UTOPIA_KEY)),
            Param("orderref", "json", r"UIA[0-9]{6}-[0-9]{6}"),
            Param("network", "json", "UTOPIA|BOUNTIFULFIBER|IDAHOFALLS|BOZEMAN", required=False),
        ),
        "UTOPIA: contractdownload takes orderref in a JSON body with apikey.",
    ),
    "orders": Contract(
        "POST",
        "/spquery/orders",
        "json",
        (
            Param("apikey", "json", re.escape(UTOPIA_KEY)),
            Param("network", "json", "UTOPIA|BOUNTIFULFIBER|IDAHOFALLS|BOZEMAN", required=False),
            Param("status", "json", r"\S+", required=False),
            Param("siteid", "json", r"[0-9]+", required=False),
            Param("orderref", "json", r"UIA[0-9]{6}-[0-9]{6}", required=False),
        ),
        "UTOPIA: /spquery/orders takes optional status, siteid, orderref in a JSON body with "
        "apikey (one provider's production code; the reply's shape is not recorded).",
    ),
}

_UTOPIA_EVIDENCE = (
    "UTOPIA: every call is a POST with a JSON body carrying the key as apikey; the endpoint and "
    "its fields are in the reference's table (one provider's production code). "
)
_NETWORK = Param("network", "json", "UTOPIA|BOUNTIFULFIBER|IDAHOFALLS|BOZEMAN", required=False)
_SITE = r"[0-9]+"
_CID = r"[A-Za-z0-9-]+"
_DAY = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"


def _spquery(endpoint: str, evidence: str, *params: Param) -> Contract:
    """A UTOPIA /spquery call: JSON body with apikey, optional network, and its own fields."""
    return Contract(
        "POST",
        f"/spquery/{endpoint}",
        "json",
        (Param("apikey", "json", re.escape(UTOPIA_KEY)), _NETWORK, *params),
        _UTOPIA_EVIDENCE + evidence,
    )


def _json(name: str, value: str, *, required: bool = True) -> Param:
    return Param(name, "json", value, required)


CONTRACTS.update(
    {
        "service": _spquery("service", "Fields: siteid.", _json("siteid", _SITE)),
        "apview": _spquery("apview", "Fields: siteid.", _json("siteid", _SITE)),
        "macsearch": _spquery(
            "macsearch",
            "Fields: mac, hourshistory.",
            _json("mac", r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}"),
            _json("hourshistory", r"[0-9]+"),
        ),
        "checkaccess": _spquery(
            "checkaccess", "Fields: siteid and/or clientid.", _json("siteid", _SITE)
        ),
        "customer": _spquery("customer", "Fields: cid.", _json("cid", _CID)),
        "products": _spquery("products", "No fields."),
        "projects": _spquery(
            "projects",
            "Optional statusid, siteid, orderref.",
            _json("siteid", _SITE, required=False),
            _json("orderref", r"UIA[0-9]{6}-[0-9]{6}", required=False),
            _json("statusid", r"[0-9]+", required=False),
        ),
        "projectdetail": _spquery(
            "projectdetail", "Fields: projectid.", _json("projectid", r"[A-Za-z0-9-]+")
        ),
        "outagetickets": _spquery(
            "outagetickets",
            "Filters (siteid is the one we send).",
            _json("siteid", _SITE, required=False),
        ),
        "outageticket": _spquery(
            "outageticket", "Fields: ticketid.", _json("ticketid", r"[A-Za-z0-9-]+")
        ),
        "suspend": _spquery(
            "suspend", "Fields: cid, siteid.", _json("cid", _CID), _json("siteid", _SITE)
        ),
        "unsuspend": _spquery(
            "unsuspend", "Fields: cid, siteid.", _json("cid", _CID), _json("siteid", _SITE)
        ),
        "changespeed": _spquery(
            "changespeed",
            "Fields: cid, siteid, uiaid (labelled Service ID), product (Product ID), issuedate "
            "YYYY-MM-DD (the production handler's form).",
            _json("cid", _CID),
            _json("siteid", _SITE),
            _json("uiaid", r"[A-Za-z0-9-]+"),
            _json("product", r"[A-Za-z0-9-]+"),
            _json("issuedate", _DAY),
        ),
        "cancelservice": _spquery(
            "cancelservice",
            "Fields: cid, siteid, issuedate YYYY-MM-DD, optional singleservice.",
            _json("cid", _CID),
            _json("siteid", _SITE),
            _json("issuedate", _DAY),
            _json("singleservice", r"[A-Za-z0-9-]+", required=False),
        ),
    }
)


def breaches(contract: Contract, request: WireRequest) -> list[str]:
    """Every way the request differs from its contract, in words."""
    found: list[str] = []
    if request.method != contract.method:
        found.append(f"method {request.method}, not {contract.method}")
    if request.path != contract.path:
        found.append(f"path {request.path}, not {contract.path}")
    sent: dict[Where, list[tuple[str, Any]]] = {
        "form": [],
        "query": list(request.query),
        "json": [],
    }
    if contract.body == "form":
        if request.content_type != "application/x-www-form-urlencoded":
            found.append(f"body type {request.content_type or 'none'}, not a form")
        sent["form"] = list(request.form())
    elif contract.body == "json":
        sent["json"] = list(request.json().items())
    elif request.body:
        found.append(f"a body of {len(request.body)} bytes where none was ever seen to work")
    for where, pairs in sent.items():
        names = [name for name, _ in pairs]
        allowed = {p.name for p in contract.params if p.where == where}
        found += [f"unexpected {where} parameter {n!r}" for n in names if n not in allowed]
        found += [f"{where} parameter {n!r} sent twice" for n in set(names) if names.count(n) > 1]
    for param in contract.params:
        values = [value for name, value in sent[param.where] if name == param.name]
        if not values:
            if param.required:
                found.append(f"{param.where} parameter {param.name!r} missing")
            continue
        value = values[0]
        if not isinstance(value, str) or not re.fullmatch(param.value, value):
            found.append(f"{param.name!r} = {value!r} does not match {param.value!r}")
    if contract.basic_auth:
        expected = "Basic " + base64.b64encode(PC_KEY.encode()).decode()
        if request.headers.get("authorization") != expected:
            found.append("no Basic authorization with the bare API key")
    elif "authorization" in request.headers:
        found.append("an Authorization header this API never used")
    return found


def assert_follows(name: str, requests: list[WireRequest], count: int = 1) -> None:
    contract = CONTRACTS[name]
    assert len(requests) == count, f"{name}: {len(requests)} requests sent, expected {count}"
    for request in requests:
        problems = breaches(contract, request)
        assert not problems, f"{name} breaks the evidence ({contract.evidence}): " + "; ".join(
            problems
        )


# -- the requests, made by the clients -----------------------------------------------------------

PERSON = NewCustomer(
    first_name="Rowan",
    last_name="Okafor-Delgado",
    email="rowan.od@example.org",
    street="77 E 300 S UNIT 12",
    city="Logan",
    state="UT",
    zip="84321",
    phone_numbers=("4355550177",),
    notes="UTOPIA order UIA202611-000777; site id 318877; terms agreed 2026-11-02",
    ext_account_id="318877",
    portal_username="rowan.od@example.org",
    portal_password="contract-portal-pw",
    tax_zone_id=1,
    invoice_preference="Email",
    bill_day="Activation Date",
    due_by_days=0,
    grace_period_days=10,
)
TICKET = NewTicket(5, "New UTOPIA install", "<p>Welcome</p>", 54, 21, 1, "Sales", 4, True)


def _powercode_reply(request: WireRequest) -> tuple[int, str, bytes]:
    if request.path.startswith("/uapi/"):
        tags = [{"TagID": t, "TagName": "t"} for n, t in request.query if n == "tags[]"]
        return json_answer({"Success": True, "Response": tags})
    action = dict(request.form()).get("action")
    replies: dict[str | None, object] = {
        "createCustomer": {"statusCode": 0, "customerID": 5},
        "createTicket": {"statusCode": 0, "ticketID": "15"},
        "readCustomer": {
            "statusCode": 0,
            "customer": {"customerId": "5", "extAccountID": "318877"},
        },
    }
    return json_answer(replies.get(action, {"statusCode": 0, "customers": [], "services": []}))


PowerCodeCall = Callable[[PowerCodeClient], object]
POWERCODE_CALLS: list[tuple[str, PowerCodeCall, int]] = [
    ("searchCustomers", lambda c: c.search_customers("Rowan Okafor-Delgado"), 1),
    ("readCustomer by site", lambda c: c.find_customer_by_site("318877"), 1),
    ("readCustomer by id", lambda c: c.read_customer(5), 1),
    ("createCustomer", lambda c: c.create_customer(PERSON), 1),
    (
        "updateCustomer notes",
        lambda c: c.update_customer_notes(5, "UTOPIA order UIA202611-000777\nline two"),
        1,
    ),
    ("readCustomerService", lambda c: c.list_service_ids(5), 1),
    ("addCustomerService", lambda c: c.add_service(5, 172, 2), 1),
    ("createTicket", lambda c: c.create_ticket(TICKET), 1),
    ("readCustomerService", lambda c: c.list_services(5), 1),
    ("updateCustomerStatus", lambda c: c.update_customer_status(5, "Suspended"), 1),
    ("readCustomerEquipment", lambda c: c.read_customer_equipment(5), 1),
    ("readTicket", lambda c: c.read_ticket("15"), 1),
    ("list tags", lambda c: c.list_tag_ids(5), 1),
    ("add a tag", lambda c: c.add_tags(5, [3, 7]), 2),
]


@pytest.mark.parametrize(
    ("name", "call", "count"), POWERCODE_CALLS, ids=[c[0] for c in POWERCODE_CALLS]
)
def test_powercode_request_follows_the_evidence(name: str, call: PowerCodeCall, count: int) -> None:
    with recording_server(_powercode_reply) as server:
        url = base_url(server)
        with PowerCodeClient(
            f"{url}/api/1/index.php", f"{url}/uapi/", PC_KEY, timeouts=TIMEOUTS
        ) as client:
            call(client)
        assert_follows(name, server.requests, count)


def test_one_tag_request_per_tag_each_naming_its_own_tag() -> None:
    with recording_server(_powercode_reply) as server:
        url = base_url(server)
        with PowerCodeClient(
            f"{url}/api/1/index.php", f"{url}/uapi/", PC_KEY, timeouts=TIMEOUTS
        ) as client:
            client.add_tags(5, [3, 7])
    assert [dict(r.query)["tags[]"] for r in server.requests] == ["3", "7"]


def test_createcustomer_phone_is_a_json_list_of_typed_numbers() -> None:
    with recording_server(_powercode_reply) as server:
        url = base_url(server)
        with PowerCodeClient(f"{url}/api/1/index.php", f"{url}/uapi/", PC_KEY) as client:
            client.create_customer(PERSON)
    phone = json.loads(dict(server.requests[0].form())["phone"])
    assert phone == [{"Type": "Home", "Number": "4355550177"}]


UtopiaCall = Callable[[UtopiaClient], object]


def _utopia_reply(request: WireRequest) -> tuple[int, str, bytes]:
    if request.path.endswith("orders"):
        return json_answer([{"orderref": "UIA202611-000777", "status": "Signed"}])
    if request.path.endswith("contractdownload"):
        return 200, "application/pdf; charset=UTF-8", b"%PDF-1.4 contract"
    return json_answer({"status": "Signed", "customer": {}, "address": {"siteid": "318877"}})


@pytest.mark.parametrize("network", [None, "BOZEMAN"])
@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("contractlookup", lambda c: c.lookup_contract("UIA202611-000777")),
        ("contractdownload", lambda c: c.download_contract("UIA202611-000777")),
        ("orders", lambda c: c.list_orders()),
        ("orders", lambda c: c.list_orders(status="Signed", site_id="318877")),
        ("service", lambda c: c.site_service("318877")),
        ("apview", lambda c: c.ont_view("318877")),
        ("macsearch", lambda c: c.mac_search("aa:bb:cc:dd:ee:01")),
        ("checkaccess", lambda c: c.check_access("318877")),
        ("customer", lambda c: c.customer("C77")),
        ("products", lambda c: c.products()),
        ("projects", lambda c: c.projects(site_id="318877")),
        ("projectdetail", lambda c: c.project_detail("P1")),
        ("outagetickets", lambda c: c.outage_tickets(site_id="318877")),
        ("outageticket", lambda c: c.outage_ticket("T9")),
        ("suspend", lambda c: c.suspend("C77", "318877")),
        ("unsuspend", lambda c: c.unsuspend("C77", "318877")),
        ("changespeed", lambda c: c.change_speed("C77", "318877", "9001", "1000", "2026-12-01")),
        ("cancelservice", lambda c: c.cancel_service("C77", "318877", "2026-12-31")),
        ("cancelservice", lambda c: c.cancel_service("C77", "318877", "2026-12-31", "9001")),
    ],
)
def test_utopia_request_follows_the_evidence(
    name: str, call: UtopiaCall, network: str | None
) -> None:
    with recording_server(_utopia_reply) as server:
        with UtopiaClient(
            base_url(server), UTOPIA_KEY, timeouts=TIMEOUTS, network=network
        ) as client:
            call(client)
        assert_follows(name, server.requests)
        assert server.requests[0].json().get("network") == network


def test_a_breach_is_reported_with_its_evidence() -> None:
    """The checker itself: the JSON tag body we used to send is caught and named."""
    old_form = WireRequest(
        "POST",
        "/uapi/customer/tags/customer",
        (),
        {"content-type": "application/json", "authorization": "Basic x"},
        b'{"customerID": 5, "tags": [3, 7]}',
    )
    problems = breaches(CONTRACTS["add a tag"], old_form)
    assert "a body of 33 bytes where none was ever seen to work" in problems
    assert "query parameter 'tags[]' missing" in problems
    assert "no Basic authorization with the bare API key" in problems
