"""A stateful local stand-in for PowerCode: the classic form API and the UAPI customer tags."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import ssl
import types
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ._http import HttpEmulator, Reply, Request
from .faults import Fault

logger = logging.getLogger(__name__)

API_PATH = "/api/1/index.php"
UAPI_PREFIX = "/uapi/"
UAPI_TAGS_TARGET = "uapi:tags"


@dataclass(frozen=True)
class ServiceDef:
    """A service in the PowerCode catalogue; ``internet`` services are one per customer."""

    name: str
    internet: bool


DEFAULT_SERVICES: dict[int, ServiceDef] = {
    163: ServiceDef("Fiber 250 Mbps", internet=True),
    164: ServiceDef("Fiber 1 Gbps", internet=True),
    165: ServiceDef("Fiber 2 Gbps", internet=True),
    172: ServiceDef("Bond fee", internet=False),
}
DEFAULT_TAGS: dict[int, str] = {1: "UTOPIA", 2: "Fiber", 3: "New install"}

FIRST_CUSTOMER_ID = 10001
FIRST_TICKET_ID = 500

# USPS codes: PowerCode stores the physical state as a two-letter code.
_STATE_CODES_TEXT = (
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH "
    "NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY AS GU MP PR VI"
)
US_STATE_CODES: frozenset[str] = frozenset(_STATE_CODES_TEXT.split())

_PO_BOX = re.compile(r"^\s*P\.?\s*O\.?\s*BOX\b", re.IGNORECASE)
_SPEED = re.compile(r"(\d+)\s*(Mbps|Gbps)", re.IGNORECASE)

# Fields of the classic API envelope, not of the record being written.
_ENVELOPE_FIELDS = frozenset({"apiKey", "action"})
_DIGITS = re.compile(r"[0-9]+")

# Production handler sent all of these on every createCustomer (the reference's table); the
# order is the order "Missing field" names them in.
_CUSTOMER_FIELD_ORDER = (
    "firstName",
    "lastName",
    "physicalStreet",
    "physicalCity",
    "physicalState",
    "physicalZip",
    "taxZoneId",
    "dueByDays",
    "extAccountID",
)
#: createCustomer fields the stand-in requires by default.
PRODUCTION_CUSTOMER_FIELDS: frozenset[str] = frozenset(_CUSTOMER_FIELD_ORDER)

# Production handler sent all of these on every createTicket.
_TICKET_FIELD_ORDER = (
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
)
#: createTicket fields the stand-in requires by default.
PRODUCTION_TICKET_FIELDS: frozenset[str] = frozenset(_TICKET_FIELD_ORDER)

# updateCustomer takes customerID and the fields to change (one source). Only the customer
# fields createCustomer is known to take are accepted: a field name never seen is refused.
_UPDATABLE_CUSTOMER_FIELDS = frozenset(
    {
        "firstName", "lastName", "emailAddress", "physicalStreet", "physicalCity",
        "physicalState", "physicalZip", "customerNotes", "extAccountID", "invoicePreference",
        "billDay", "dueByDays", "gracePeriodDays", "taxZoneId",
    }
)  # fmt: skip

#: Classic actions the stand-in answers (the names ``omit_status_code`` accepts).
CLASSIC_ACTIONS: frozenset[str] = frozenset(
    {
        "searchCustomers",
        "readCustomer",
        "createCustomer",
        "addCustomerService",
        "readCustomerService",
        "createTicket",
        "updateCustomerStatus",
        "readCustomerEquipment",
        "readTicket",
        "updateCustomer",
    }
)

#: Customer statuses updateCustomerStatus accepts (PowerCode's own words; only Active is evidence).
CUSTOMER_STATUSES: frozenset[str] = frozenset({"Active", "Inactive", "Suspended", "Pending"})

#: ``tag_reply``: what a tag POST answers in ``Response``. Only "all" is evidence.
TAG_REPLY_SHAPES: tuple[str, ...] = ("all", "added", "bare", "empty")

#: ``id_style``: "evidence" types each id as the reference shows it, or all strings / numbers.
ID_STYLES: tuple[str, ...] = ("evidence", "strings", "numbers")

# Never seen: readCustomer when nothing matches. Each takes the field looked up and its value.
_NOT_FOUND: dict[str, Callable[[str, str], dict[str, Any]]] = {
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
#: ``not_found_shape``: name -> reply to readCustomer for an unknown customer (field, value).
NOT_FOUND_SHAPES: Mapping[str, Callable[[str, str], dict[str, Any]]] = types.MappingProxyType(
    _NOT_FOUND
)

# Never seen: readCustomerService for a customer that has no services.
_NO_SERVICES: dict[str, Callable[[], dict[str, Any]]] = {
    "code0_empty_list": lambda: {"statusCode": 0, "message": "", "services": []},
    "code0_no_key": lambda: {"statusCode": 0, "message": ""},
    "code0_null": lambda: {"statusCode": 0, "message": "", "services": None},
    "code0_empty_object": lambda: {"statusCode": 0, "message": "", "services": {}},
    "refusal_none": lambda: {"statusCode": 9, "message": "No services found for customer"},
    "refusal_no_records": lambda: {"statusCode": 4, "message": "No records"},
}
#: ``no_services_shape``: name -> reply to readCustomerService for a customer with none.
NO_SERVICES_SHAPES: Mapping[str, Callable[[], dict[str, Any]]] = types.MappingProxyType(
    _NO_SERVICES
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request to the emulated API as it arrived (never the Authorization value)."""

    method: str
    path: str
    #: Query-string parameters in order, repeats and blank values kept.
    query: tuple[tuple[str, str], ...]
    #: Fields of a classic-API form body in order; empty for any other request.
    form: tuple[tuple[str, str], ...]
    content_type: str
    body: bytes
    has_authorization: bool


class _ApiError(Exception):
    """A classic-API refusal: HTTP 200 with a non-zero statusCode."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _ok(message: str = "", **fields: Any) -> dict[str, Any]:
    return {"statusCode": 0, "message": message, **fields}


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise _ApiError(3, f"Missing field: {name}")
    return value


def _require_all(form: dict[str, str], required: frozenset[str], order: tuple[str, ...]) -> None:
    """Refuse the first required field that is missing or blank, in ``order``."""
    for name in (*(n for n in order if n in required), *sorted(required.difference(order))):
        _required(form, name)


def _check_numeric(form: dict[str, str], *names: str) -> None:
    """Refuse any of ``names`` that is given but is not a whole number >= 0."""
    for name in names:
        value = form.get(name, "").strip()
        if value and not _DIGITS.fullmatch(value):
            raise _ApiError(3, f"Invalid field: {name}")


def _classic_form(request: Request) -> tuple[tuple[str, str], ...]:
    """The fields of a form-encoded body; none for any other body, as PHP's $_POST."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return ()
    text = request.body.decode("utf-8", errors="replace")
    return tuple(urllib.parse.parse_qsl(text, keep_blank_values=True))


def _choose(kind: str, value: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError naming both."""
    allowed = list(choices)
    if value not in allowed:
        raise ValueError(f"{kind} must be one of {allowed}, not {value!r}")
    return value


def _internet_info(service: ServiceDef) -> dict[str, int]:
    match = _SPEED.search(service.name)
    if match is None:
        return {"maxIn": 0, "maxOut": 0}
    kbps = int(match.group(1)) * (1_000_000 if match.group(2).lower() == "gbps" else 1_000)
    return {"maxIn": kbps, "maxOut": kbps}


class PowerCodeEmulator(HttpEmulator):
    """PowerCode on 127.0.0.1: customers, services, tickets and tags kept in memory.

    By default it refuses what the production handler never sent; where the evidence is
    silent (replies never seen) the answer is an option, each a plain attribute that can also
    be given to the constructor.
    """

    name: ClassVar[str] = "powercode"
    fault_kinds: ClassVar[frozenset[str]] = frozenset(
        {"latency", "fail", "timeout", "drop_before", "drop_after_apply", "reject", "outage"}
    )

    def __init__(
        self,
        api_key: str = "pc-demo-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        services: dict[int, ServiceDef] | None = None,
        tags: dict[int, str] | None = None,
        tag_reply: str = "all",
        not_found_shape: str = "refusal_not_found",
        no_services_shape: str = "code0_empty_list",
        omit_status_code: Iterable[str] = (),
        id_style: str = "evidence",
        create_warning: tuple[int, str] | None = None,
        required_customer_fields: Iterable[str] = PRODUCTION_CUSTOMER_FIELDS,
        required_ticket_fields: Iterable[str] = PRODUCTION_TICKET_FIELDS,
        tls: ssl.SSLContext | None = None,
        read_notes: bool = True,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency, tls=tls)
        self.api_key = api_key
        self.services: dict[int, ServiceDef] = dict(
            DEFAULT_SERVICES if services is None else services
        )
        self.tags: dict[int, str] = dict(DEFAULT_TAGS if tags is None else tags)
        self.tag_reply: str = _choose("tag_reply", tag_reply, TAG_REPLY_SHAPES)
        self.not_found_shape: str = _choose("not_found_shape", not_found_shape, NOT_FOUND_SHAPES)
        self.no_services_shape: str = _choose(
            "no_services_shape", no_services_shape, NO_SERVICES_SHAPES
        )
        self.omit_status_code: frozenset[str] = frozenset(omit_status_code)
        unknown = self.omit_status_code - CLASSIC_ACTIONS
        if unknown:
            raise ValueError(f"omit_status_code names unknown actions: {sorted(unknown)}")
        self.id_style: str = _choose("id_style", id_style, ID_STYLES)
        self.create_warning: tuple[int, str] | None = create_warning
        self.required_customer_fields: frozenset[str] = frozenset(required_customer_fields)
        self.required_ticket_fields: frozenset[str] = frozenset(required_ticket_fields)
        #: Whether readCustomer answers `customerNotes` (only the stand-in is seen to; the
        #: reference does not list it), so a reply without the notes can be shown too.
        self.read_notes: bool = read_notes
        #: Every request to the API (classic and UAPI) in arrival order, control routes excluded.
        self.requests: list[RecordedRequest] = []
        self.customers: dict[int, dict[str, Any]] = {}
        self.customer_services: dict[int, dict[int, int]] = {}
        self.service_adds: list[tuple[int, int]] = []
        self.tickets: dict[str, dict[str, Any]] = {}
        #: (customer id, field names) of every updateCustomer applied, in order.
        self.customer_updates: list[tuple[int, tuple[str, ...]]] = []
        self.customer_tags: dict[int, set[int]] = {}
        #: Equipment per customer, as readCustomerEquipment lists it (seeded by add_equipment).
        self.customer_equipment: dict[int, list[dict[str, Any]]] = {}
        #: (customer id, status) of every updateCustomerStatus, in order.
        self.status_changes: list[tuple[int, str]] = []
        self._next_customer_id = FIRST_CUSTOMER_ID
        self._next_ticket_id = FIRST_TICKET_ID
        self._basic_auth = "Basic " + base64.b64encode(api_key.encode("utf-8")).decode("ascii")
        self._actions: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
            "searchCustomers": self._search_customers,
            "readCustomer": self._read_customer,
            "createCustomer": self._create_customer,
            "addCustomerService": self._add_customer_service,
            "readCustomerService": self._read_customer_service,
            "createTicket": self._create_ticket,
            "updateCustomerStatus": self._update_customer_status,
            "readCustomerEquipment": self._read_customer_equipment,
            "readTicket": self._read_ticket,
            "updateCustomer": self._update_customer,
        }

    @property
    def api_url(self) -> str:
        """URL of the classic API endpoint."""
        return self.base_url + API_PATH

    @property
    def uapi_url(self) -> str:
        """Base URL of the UAPI (ends with a slash)."""
        return self.base_url + UAPI_PREFIX

    # -- seeding ---------------------------------------------------------------------------

    def add_customer(
        self,
        first_name: str,
        last_name: str,
        street: str,
        city: str,
        state: str = "UT",
        zip: str = "84000",
        ext_account_id: str | None = None,
        email: str = "",
    ) -> int:
        """Seed a customer that existed before the test; returns its id."""
        record: dict[str, Any] = {
            "firstName": first_name,
            "lastName": last_name,
            "emailAddress": email,
            "physicalStreet": street,
            "physicalCity": city,
            "physicalState": state,
            "physicalZip": zip,
        }
        if ext_account_id is not None:
            record["extAccountID"] = ext_account_id
        with self.lock:
            return self._store_customer(record)

    def add_equipment(self, customer_id: int, mac: str, name: str = "ONT") -> None:
        """Seed one piece of equipment on a customer (readCustomerEquipment lists it)."""
        with self.lock:
            rows = self.customer_equipment.setdefault(customer_id, [])
            rows.append({"equipmentID": str(1000 + len(rows)), "name": name, "macAddress": mac})

    def _store_customer(self, record: dict[str, Any]) -> int:
        customer_id = self._next_customer_id
        self._next_customer_id += 1
        record["customerID"] = customer_id
        self.customers[customer_id] = record
        return customer_id

    # -- routing ---------------------------------------------------------------------------

    def handle_api(self, request: Request) -> Reply:
        """Record the request, then route it to the classic API or the UAPI."""
        self._record(request)
        if request.path == API_PATH:
            return self._handle_classic(request)
        if request.path.startswith(UAPI_PREFIX):
            return self._handle_uapi(request)
        return Reply.json({"error": "Not found"}, status=404)

    def _record(self, request: Request) -> None:
        entry = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query_pairs,
            form=_classic_form(request) if request.path == API_PATH else (),
            content_type=request.headers.get("content-type", ""),
            body=request.body,
            has_authorization="authorization" in request.headers,
        )
        with self.lock:
            self.requests.append(entry)

    def _id(self, value: int | str, *, evidence_string: bool) -> int | str:
        """An id typed by ``id_style``; ``evidence_string`` is how the reference shows it."""
        style = _choose("id_style", self.id_style, ID_STYLES)
        as_string = evidence_string if style == "evidence" else style == "strings"
        return str(value) if as_string else int(value)

    # -- classic API -----------------------------------------------------------------------

    def _handle_classic(self, request: Request) -> Reply:
        if request.method != "POST":
            return Reply.json({"error": "Method not allowed"}, status=405, Allow="POST")
        # Every source sends form-encoded fields; any other body reads as no fields at all.
        form = dict(_classic_form(request))
        action = form.get("action", "")
        if action:
            with self.lock:
                self.calls[action] += 1

        def apply() -> Reply:
            return Reply.json(self._run_action(action, form))

        def reject(fault: Fault) -> Reply:
            code = 99 if fault.status_code is None else fault.status_code
            message = fault.message if fault.message is not None else "Rejected"
            return Reply.json({"statusCode": code, "message": message})

        return self.run_with_fault(action, apply, reject)

    def _run_action(self, action: str, form: dict[str, str]) -> dict[str, Any]:
        if not hmac.compare_digest(
            form.get("apiKey", "").encode("utf-8"), self.api_key.encode("utf-8")
        ):
            return {"statusCode": 1, "message": "Invalid API key"}
        handler = self._actions.get(action)
        if handler is None:
            return {"statusCode": 2, "message": f"Unknown action: {action}"}
        try:
            with self.lock:
                reply = handler(form)
        except _ApiError as error:
            return {"statusCode": error.status_code, "message": error.message}
        if action in self.omit_status_code and reply.get("statusCode") == 0:
            # The evidence shows no envelope on some successful replies; refusals keep theirs.
            reply = {k: v for k, v in reply.items() if k not in ("statusCode", "message")}
        return reply

    def _customer_id(self, form: dict[str, str], name: str = "customerID") -> int:
        """The existing customer the form names; refuses a missing or unknown one."""
        raw = _required(form, name)
        try:
            customer_id = int(raw)
        except ValueError:
            raise _ApiError(6, "Customer not found") from None
        if customer_id not in self.customers:
            raise _ApiError(6, "Customer not found")
        return customer_id

    @staticmethod
    def _display_name(record: dict[str, Any]) -> str:
        company = str(record.get("companyName") or "").strip()
        if company:
            return company
        return f"{record.get('firstName', '')} {record.get('lastName', '')}".strip()

    def _search_customers(self, form: dict[str, str]) -> dict[str, Any]:
        if "searchString" not in form:
            raise _ApiError(3, "Missing field: searchString")
        words = form["searchString"].lower().split()
        hits = []
        for customer_id in sorted(self.customers):
            record = self.customers[customer_id]
            haystack = " ".join(
                (
                    str(record.get("firstName", "")),
                    str(record.get("lastName", "")),
                    str(record.get("companyName", "")),
                )
            ).lower()
            if all(word in haystack for word in words):
                hits.append(
                    {
                        "CustomerID": self._id(customer_id, evidence_string=True),
                        "CompanyName": self._display_name(record),
                        "Address1": str(record.get("physicalStreet", "")),
                        "City": str(record.get("physicalCity", "")),
                    }
                )
        return _ok(customers=hits)

    def _read_customer(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("customerID", "").strip():
            field, value = "customerID", form["customerID"].strip()
            matches = [int(value)] if _DIGITS.fullmatch(value) else []
        elif form.get("extAccountID", "").strip():
            field, value = "extAccountID", form["extAccountID"].strip()
            matches = [
                cid
                for cid, rec in self.customers.items()
                if str(rec.get("extAccountID", "")) == value
            ]
        else:
            raise _ApiError(3, "Missing field: customerID")
        customer_id = min((cid for cid in matches if cid in self.customers), default=None)
        if customer_id is None:
            # Never seen from the real PowerCode: configurable (not_found_shape).
            shape = _choose("not_found_shape", self.not_found_shape, NOT_FOUND_SHAPES)
            return NOT_FOUND_SHAPES[shape](field, value)
        record = self.customers[customer_id]
        customer = {
            "customerId": self._id(customer_id, evidence_string=True),
            "companyName": self._display_name(record),
            "firstName": str(record.get("firstName", "")),
            "lastName": str(record.get("lastName", "")),
            "status": str(record.get("status", "Active")),
            "extAccountID": str(record.get("extAccountID", "")),
            "emailAddress": str(record.get("emailAddress", "")),
            "physicalStreet": str(record.get("physicalStreet", "")),
            "physicalCity": str(record.get("physicalCity", "")),
            "physicalState": str(record.get("physicalState", "")),
            "physicalZip": str(record.get("physicalZip", "")),
            "customerNotes": str(record.get("customerNotes", "")),
        }
        if not self.read_notes:
            del customer["customerNotes"]
        return _ok(customer=customer)

    def _update_customer(self, form: dict[str, str]) -> dict[str, Any]:
        customer_id = self._customer_id(form)
        fields = {
            name: value
            for name, value in form.items()
            if name not in _ENVELOPE_FIELDS and name != "customerID"
        }
        if not fields:
            raise _ApiError(3, "Missing field: nothing to update")
        for name in fields:
            if name not in _UPDATABLE_CUSTOMER_FIELDS:
                raise _ApiError(3, f"Invalid field: {name}")
        state = fields.get("physicalState", "").strip()
        if state and state not in US_STATE_CODES:
            raise _ApiError(4, "Invalid state")
        _check_numeric(fields, "taxZoneId", "dueByDays", "gracePeriodDays")
        self.customers[customer_id].update(fields)
        self.customer_updates.append((customer_id, tuple(sorted(fields))))
        return _ok("Customer updated")

    def _create_customer(self, form: dict[str, str]) -> dict[str, Any]:
        # Production handler sent these every time (taxZoneId 1, dueByDays 0, extAccountID).
        _require_all(form, self.required_customer_fields, _CUSTOMER_FIELD_ORDER)
        state = form.get("physicalState", "").strip()
        if state and state not in US_STATE_CODES:
            raise _ApiError(4, "Invalid state")
        _check_numeric(form, "taxZoneId", "dueByDays")
        record: dict[str, Any] = {k: v for k, v in form.items() if k not in _ENVELOPE_FIELDS}
        if "phone" in form:
            record["phone"] = self._parse_phone(form["phone"])
        if form.get("physicalAutomaticallyGeocode") == "1" and _PO_BOX.match(
            form.get("physicalStreet", "")
        ):
            raise _ApiError(23, "Unable to geocode physical address")
        customer_id = self._store_customer(record)
        new_id = self._id(customer_id, evidence_string=False)
        if self.create_warning is not None:
            # Production handler took any reply carrying customerID as created.
            code, message = self.create_warning
            return {"statusCode": code, "message": message, "customerID": new_id}
        return _ok("Customer created", customerID=new_id)

    @staticmethod
    def _parse_phone(raw: str) -> list[dict[str, str]]:
        try:
            phones = json.loads(raw)
        except ValueError:
            raise _ApiError(3, "Invalid field: phone") from None
        if not isinstance(phones, list) or not all(
            isinstance(p, dict)
            and isinstance(p.get("Type"), str)
            and isinstance(p.get("Number"), str)
            for p in phones
        ):
            raise _ApiError(3, "Invalid field: phone")
        return phones

    def _add_customer_service(self, form: dict[str, str]) -> dict[str, Any]:
        customer_id = self._customer_id(form)
        try:
            service_id = int(_required(form, "serviceID"))
        except ValueError:
            raise _ApiError(8, "Service not found") from None
        service = self.services.get(service_id)
        if service is None:
            raise _ApiError(8, "Service not found")
        try:
            quantity = int(form.get("quantity", "1").strip() or "1")
        except ValueError:
            raise _ApiError(3, "Invalid field: quantity") from None
        if quantity < 1:
            raise _ApiError(3, "Invalid field: quantity")
        # PowerCode's documentation: internet never above 1. Production sent 5 for the bond
        # fee too, so other services take any positive quantity (a per-unit fee).
        if service.internet and quantity != 1:
            raise _ApiError(7, "Internet services can not have a quantity above 1")
        services = self.customer_services.setdefault(customer_id, {})
        if service.internet:
            # PowerCode keeps one Monthly Internet service: a new one replaces the old.
            for other_id in list(services):
                other = self.services.get(other_id)
                if other_id != service_id and other is not None and other.internet:
                    del services[other_id]
        services[service_id] = quantity
        self.service_adds.append((customer_id, service_id))
        return _ok("Service added")

    def _read_customer_service(self, form: dict[str, str]) -> dict[str, Any]:
        customer_id = self._customer_id(form)
        rows = []
        for service_id, quantity in sorted(self.customer_services.get(customer_id, {}).items()):
            service = self.services.get(service_id)
            row: dict[str, Any] = {
                "serviceID": self._id(service_id, evidence_string=True),
                "quantity": str(quantity),
                "description": service.name if service else "",
            }
            if service is not None and service.internet:
                row["internetInfo"] = _internet_info(service)
            rows.append(row)
        if not rows:
            # Never seen from the real PowerCode: configurable (no_services_shape).
            shape = _choose("no_services_shape", self.no_services_shape, NO_SERVICES_SHAPES)
            return NO_SERVICES_SHAPES[shape]()
        return _ok(services=rows)

    def _create_ticket(self, form: dict[str, str]) -> dict[str, Any]:
        # Production handler sent every one of these on each ticket.
        _require_all(form, self.required_ticket_fields, _TICKET_FIELD_ORDER)
        kind = form.get("type", "").strip()
        if kind and kind != "Individual":
            raise _ApiError(3, "Invalid field: type")
        # responsibleUser went as a name ("Sales"): any text passes, so no check here.
        _check_numeric(form, "category", "ticketType", "status", "responsibleGroupID")
        if form.get("customerViewable", "").strip() not in ("", "0", "1"):
            raise _ApiError(3, "Invalid field: customerViewable")
        customer_id = self._customer_id(form) if form.get("customerID", "").strip() else None
        ticket_id = str(self._next_ticket_id)
        self._next_ticket_id += 1
        record: dict[str, Any] = {k: v for k, v in form.items() if k not in _ENVELOPE_FIELDS}
        record["customerID"] = customer_id
        record["ticketID"] = ticket_id
        self.tickets[ticket_id] = record
        return _ok("Ticket created", ticketID=self._id(ticket_id, evidence_string=True))

    def _update_customer_status(self, form: dict[str, str]) -> dict[str, Any]:
        # One source: customerID + status (e.g. "Active"); the reply is a GUESS (the envelope).
        customer_id = self._customer_id(form)
        status = _required(form, "status")
        if status not in CUSTOMER_STATUSES:
            raise _ApiError(3, "Invalid field: status")
        self.customers[customer_id]["status"] = status
        self.status_changes.append((customer_id, status))
        return _ok("Customer status updated")

    def _read_customer_equipment(self, form: dict[str, str]) -> dict[str, Any]:
        # One source names the action only: the `equipment` list shape is a GUESS.
        customer_id = self._customer_id(form)
        return _ok(equipment=list(self.customer_equipment.get(customer_id, [])))

    def _read_ticket(self, form: dict[str, str]) -> dict[str, Any]:
        # One source names the action only: the `ticket` block is a GUESS.
        ticket_id = _required(form, "ticketID")
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise _ApiError(10, "Ticket not found")
        return _ok(ticket=dict(ticket))

    # -- UAPI ------------------------------------------------------------------------------

    def _handle_uapi(self, request: Request) -> Reply:
        rest = request.path[len(UAPI_PREFIX) :].strip("/")
        if rest.lower() != "customer/tags/customer":
            target = "uapi:other"
            handler = self._uapi_not_found
        else:
            target = UAPI_TAGS_TARGET
            handler = self._uapi_tags
        with self.lock:
            self.calls[target] += 1

        def apply() -> Reply:
            supplied = request.headers.get("authorization", "")
            if not hmac.compare_digest(supplied.encode("utf-8"), self._basic_auth.encode("utf-8")):
                return Reply.json({"Success": False, "Response": "Unauthorized"}, status=401)
            return handler(request)

        def reject(fault: Fault) -> Reply:
            message = fault.message if fault.message is not None else "Rejected"
            return Reply.json({"Success": False, "Response": message}, status=400)

        # "uapi:tags:POST" aims a fault at the writing call only (reads use "uapi:tags:GET").
        return self.run_with_fault(target, apply, reject, also=(f"{target}:{request.method}",))

    @staticmethod
    def _uapi_not_found(request: Request) -> Reply:
        return Reply.json({"Success": False, "Response": "Not found"}, status=404)

    def _uapi_tags(self, request: Request) -> Reply:
        if request.method == "GET":
            customer_id = _query_customer_id(request.query_pairs)
            if customer_id is None:
                return self._uapi_error("Missing or invalid customerID", 400)
            tag_id = None
        elif request.method in ("POST", "DELETE"):
            parsed = _tag_write(request)
            if isinstance(parsed, str):
                return self._uapi_error(parsed, 400)
            customer_id, tag_id = parsed
        else:
            return self._uapi_error("Method not allowed", 405)
        with self.lock:
            if customer_id not in self.customers:
                return self._uapi_error("Customer not found", 404)
            if tag_id is not None and tag_id not in self.tags:
                return self._uapi_error(f"Unknown tag {tag_id}", 400)
            current = self.customer_tags.setdefault(customer_id, set())
            if tag_id is None:
                return self._uapi_ok(self._tag_rows(current))
            if request.method == "DELETE":
                current.discard(tag_id)
                return self._uapi_ok(self._tag_rows(current))
            current.add(tag_id)
            # The evidence shows the customer's tags; the other shapes are never seen.
            shape = _choose("tag_reply", self.tag_reply, TAG_REPLY_SHAPES)
            if shape == "all":
                return self._uapi_ok(self._tag_rows(current))
            if shape == "added":
                return self._uapi_ok(self._tag_rows([tag_id]))
            return self._uapi_ok(True if shape == "bare" else [])

    def _tag_rows(self, tag_ids: Iterable[int]) -> list[dict[str, Any]]:
        return [
            {"TagID": self._id(t, evidence_string=False), "TagName": self.tags.get(t, "")}
            for t in sorted(tag_ids)
        ]

    @staticmethod
    def _uapi_ok(response: object) -> Reply:
        return Reply.json({"Success": True, "Response": response})

    @staticmethod
    def _uapi_error(message: str, status: int) -> Reply:
        return Reply.json({"Success": False, "Response": message}, status=status)

    # -- control surface -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Counts and every record, JSON-ready."""
        with self.lock:
            state = super().snapshot()
            state.update(
                counts={
                    "customers": len(self.customers),
                    "tickets": len(self.tickets),
                    "service_adds": len(self.service_adds),
                    "customer_updates": len(self.customer_updates),
                },
                customers={str(k): v for k, v in self.customers.items()},
                customer_services={
                    str(k): {str(s): q for s, q in v.items()}
                    for k, v in self.customer_services.items()
                },
                service_adds=[list(pair) for pair in self.service_adds],
                tickets=dict(self.tickets),
                customer_tags={str(k): sorted(v) for k, v in self.customer_tags.items()},
                status_changes=[list(pair) for pair in self.status_changes],
            )
            # Round-trip so callers get a deep copy that no request thread is mutating.
            result: dict[str, Any] = json.loads(json.dumps(state))
            return result


def _query_customer_id(pairs: tuple[tuple[str, str], ...]) -> int | None:
    """The one numeric customerID of a query string, else None."""
    values = [value for name, value in pairs if name == "customerID"]
    if len(values) != 1 or not _DIGITS.fullmatch(values[0]):
        return None
    return int(values[0])


def _tag_write(request: Request) -> tuple[int, int] | str:
    """(customer id, tag id) of a tag POST or DELETE, or why it is refused.

    Production handler sent query-string parameters only, one request per tag id; the
    comma-joined form was abandoned and a JSON body has never been seen to work.
    """
    if request.body:
        return "request body not accepted"
    customer_id = _query_customer_id(request.query_pairs)
    if customer_id is None:
        return "Missing or invalid customerID"
    names = [name for name, _ in request.query_pairs]
    if any(name.startswith("tags") and name != "tags[]" for name in names):
        return "tag ids must be sent as tags[]"
    values = [value for name, value in request.query_pairs if name == "tags[]"]
    if not values:
        return "tags[] missing"
    if len(values) > 1:
        return "tags[] repeated: one tag per request"
    if "," in values[0]:
        return "tags[] holds a comma-joined list: one tag per request"
    if not _DIGITS.fullmatch(values[0]):
        return "tags[] is not a numeric tag id"
    return customer_id, int(values[0])
