"""A stateful local stand-in for PowerCode: the classic form API and the UAPI customer tags."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import urllib.parse
from collections.abc import Callable
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


def _internet_info(service: ServiceDef) -> dict[str, int]:
    match = _SPEED.search(service.name)
    if match is None:
        return {"maxIn": 0, "maxOut": 0}
    kbps = int(match.group(1)) * (1_000_000 if match.group(2).lower() == "gbps" else 1_000)
    return {"maxIn": kbps, "maxOut": kbps}


class PowerCodeEmulator(HttpEmulator):
    """PowerCode on 127.0.0.1: customers, services, tickets and tags kept in memory."""

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
    ) -> None:
        super().__init__(host=host, port=port, latency=latency)
        self.api_key = api_key
        self.services: dict[int, ServiceDef] = dict(
            DEFAULT_SERVICES if services is None else services
        )
        self.tags: dict[int, str] = dict(DEFAULT_TAGS if tags is None else tags)
        self.customers: dict[int, dict[str, Any]] = {}
        self.customer_services: dict[int, dict[int, int]] = {}
        self.service_adds: list[tuple[int, int]] = []
        self.tickets: dict[str, dict[str, Any]] = {}
        self.customer_tags: dict[int, set[int]] = {}
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

    def _store_customer(self, record: dict[str, Any]) -> int:
        customer_id = self._next_customer_id
        self._next_customer_id += 1
        record["customerID"] = customer_id
        self.customers[customer_id] = record
        return customer_id

    # -- routing ---------------------------------------------------------------------------

    def handle_api(self, request: Request) -> Reply:
        """Route to the classic API or the UAPI."""
        if request.path == API_PATH:
            return self._handle_classic(request)
        if request.path.startswith(UAPI_PREFIX):
            return self._handle_uapi(request)
        return Reply.json({"error": "Not found"}, status=404)

    # -- classic API -----------------------------------------------------------------------

    def _handle_classic(self, request: Request) -> Reply:
        if request.method != "POST":
            return Reply.json({"error": "Method not allowed"}, status=405, Allow="POST")
        text = request.body.decode("utf-8", errors="replace")
        form = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
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
                return handler(form)
        except _ApiError as error:
            return {"statusCode": error.status_code, "message": error.message}

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
                        "CustomerID": str(customer_id),
                        "CompanyName": self._display_name(record),
                        "Address1": str(record.get("physicalStreet", "")),
                        "City": str(record.get("physicalCity", "")),
                    }
                )
        return _ok(customers=hits)

    def _read_customer(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("customerID", "").strip():
            customer_id = self._customer_id(form)
        elif form.get("extAccountID", "").strip():
            ext = form["extAccountID"].strip()
            matches = [
                cid
                for cid, rec in self.customers.items()
                if str(rec.get("extAccountID", "")) == ext
            ]
            if not matches:
                raise _ApiError(6, "Customer not found")
            customer_id = min(matches)
        else:
            raise _ApiError(3, "Missing field: customerID")
        record = self.customers[customer_id]
        customer = {
            "customerId": str(customer_id),
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
        return _ok(customer=customer)

    def _create_customer(self, form: dict[str, str]) -> dict[str, Any]:
        for name in (
            "firstName",
            "lastName",
            "physicalStreet",
            "physicalCity",
            "physicalState",
            "physicalZip",
        ):
            _required(form, name)
        if form["physicalState"].strip() not in US_STATE_CODES:
            raise _ApiError(4, "Invalid state")
        record: dict[str, Any] = {k: v for k, v in form.items() if k not in _ENVELOPE_FIELDS}
        if "phone" in form:
            record["phone"] = self._parse_phone(form["phone"])
        if form.get("physicalAutomaticallyGeocode") == "1" and _PO_BOX.match(
            form["physicalStreet"]
        ):
            raise _ApiError(23, "Unable to geocode physical address")
        customer_id = self._store_customer(record)
        return _ok("Customer created", customerID=customer_id)

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
                "serviceID": str(service_id),
                "quantity": str(quantity),
                "description": service.name if service else "",
            }
            if service is not None and service.internet:
                row["internetInfo"] = _internet_info(service)
            rows.append(row)
        return _ok(services=rows)

    def _create_ticket(self, form: dict[str, str]) -> dict[str, Any]:
        customer_id = self._customer_id(form)
        _required(form, "summary")
        _required(form, "description")
        ticket_id = str(self._next_ticket_id)
        self._next_ticket_id += 1
        record: dict[str, Any] = {k: v for k, v in form.items() if k not in _ENVELOPE_FIELDS}
        record["customerID"] = customer_id
        record["ticketID"] = ticket_id
        self.tickets[ticket_id] = record
        return _ok("Ticket created", ticketID=ticket_id)

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
            raw_id: object = request.query.get("customerID")
            raw_tags: object = []
        elif request.method in ("POST", "DELETE"):
            try:
                body = request.json()
            except ValueError:
                return self._uapi_error("Invalid JSON body", 400)
            if not isinstance(body, dict):
                return self._uapi_error("Invalid JSON body", 400)
            raw_id = body.get("customerID")
            raw_tags = body.get("tags")
        else:
            return self._uapi_error("Method not allowed", 405)
        customer_id = _as_int(raw_id)
        if customer_id is None:
            return self._uapi_error("Missing or invalid customerID", 400)
        if not isinstance(raw_tags, list):
            return self._uapi_error("tags must be a list", 400)
        tag_ids: list[int] = []
        for raw_tag in raw_tags:
            tag_id = _as_int(raw_tag)
            if tag_id is None:
                return self._uapi_error(f"Invalid tag {raw_tag!r}", 400)
            tag_ids.append(tag_id)
        with self.lock:
            if customer_id not in self.customers:
                return self._uapi_error("Customer not found", 404)
            for tag_id in tag_ids:
                if tag_id not in self.tags:
                    return self._uapi_error(f"Unknown tag {tag_id}", 400)
            current = self.customer_tags.setdefault(customer_id, set())
            if request.method == "POST":
                current.update(tag_ids)
            elif request.method == "DELETE":
                current.difference_update(tag_ids)
            listing = [{"TagID": t, "TagName": self.tags.get(t, "")} for t in sorted(current)]
        return Reply.json({"Success": True, "Response": listing})

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
                },
                customers={str(k): v for k, v in self.customers.items()},
                customer_services={
                    str(k): {str(s): q for s, q in v.items()}
                    for k, v in self.customer_services.items()
                },
                service_adds=[list(pair) for pair in self.service_adds],
                tickets=dict(self.tickets),
                customer_tags={str(k): sorted(v) for k, v in self.customer_tags.items()},
            )
            # Round-trip so callers get a deep copy that no request thread is mutating.
            result: dict[str, Any] = json.loads(json.dumps(state))
            return result


def _as_int(value: object) -> int | None:
    """An id given as a JSON number or a numeric string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
