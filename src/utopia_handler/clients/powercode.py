"""Client for PowerCode: find, create and annotate customers, add services, open tickets, tag
customers.

The classic API is one URL taking form-encoded POSTs with `apiKey` and `action`; its answer is the
`statusCode` in the JSON reply (0 = success), whatever the HTTP status. The newer UAPI is REST
with Basic auth and a `{"Success": ..., "Response": ...}` envelope.

Strict in what we send: every request has the form the production handler is known to have used
(tests/contracts pins each one to its evidence). Tolerant in what we read: ids may come as numbers
or strings, key casing differs between actions, and `statusCode` is only seen in some replies.
Two replies were never seen anywhere (readCustomer finding nothing, readCustomerService for a
customer with no services); `probe_replies` learns them from the real server, and until it has,
a refusal counts as "nothing there" only when its message says so.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from utopia_handler.clients.errors import RejectedError
from utopia_handler.clients.http import (
    DEFAULT_TIMEOUTS,
    ClientBase,
    HttpSession,
    as_int,
    as_records,
    as_text,
    clip,
    get_field,
    json_body,
)
from utopia_handler.settings import Timeouts

log = logging.getLogger(__name__)

SERVICE = "powercode"

# statusCode PowerCode gives createCustomer when it cannot geocode the physical address.
GEOCODE_FAILED = 23

INVOICE_PREFERENCES = frozenset({"Email", "Print", "Both", "None"})

# Until the probe has recorded what this PowerCode answers, a refusal means "nothing there" only
# when its message says so; any other refusal stays an error (a person sees it).
_NOT_FOUND = re.compile(
    r"not\s*found|no\s+(such\s+)?customers?\b|no\s+customer\s+match|does\s+not\s+exist|"
    r"no\s+(matching\s+)?records?",
    re.IGNORECASE,
)
# "Customer not found" is not among them: for services that names a different problem.
_NO_SERVICES = re.compile(
    r"no\s+(customer\s+)?services?|no\s+(matching\s+)?records?|none\s+found", re.IGNORECASE
)
# A search that finds nobody in any real installation: the doctor and the probe use it to see
# that PowerCode accepts the key, changing nothing.
PROBE_SEARCH = "zz utopia-handler connection check"
# What the probe puts for the value it looked up and the field it looked it up by, so a message
# that echoes them ("No customer matches extAccountID 9123") matches any other look-up.
VALUE_MARK = "{value}"
FIELD_MARK = "{field}"


class GeocodeFailed(RejectedError):
    """createCustomer refused because PowerCode could not geocode the address (statusCode 23)."""


@dataclass(frozen=True)
class EmptyReply:
    """How this PowerCode says "nothing there", as the probe recorded it.

    `status_code` 0 means it answered success with an empty or missing block; otherwise the
    refusal's code and message, the looked-up value in the message replaced by VALUE_MARK.
    """

    status_code: int
    message: str = ""

    def matches(self, status_code: int, message: str, field: str, value: str) -> bool:
        """Whether a refusal is this recorded "nothing there" (always False for code 0)."""
        if self.status_code == 0 or status_code != self.status_code:
            return False
        filled = self.message.replace(FIELD_MARK, field).replace(VALUE_MARK, value)
        return " ".join(message.split()).casefold() == " ".join(filled.split()).casefold()

    def to_json(self) -> dict[str, Any]:
        return {"status_code": self.status_code, "message": self.message}

    @classmethod
    def from_json(cls, value: Any) -> EmptyReply | None:
        if not isinstance(value, dict) or as_int(value.get("status_code")) is None:
            return None
        return cls(int(value["status_code"]), as_text(value.get("message")))


@dataclass(frozen=True)
class LearnedReplies:
    """What the probe learned of this PowerCode's replies; None where it has not learned yet."""

    customer_not_found: EmptyReply | None = None
    no_services: EmptyReply | None = None


NOTHING_LEARNED = LearnedReplies()


@dataclass(frozen=True)
class ProbeReport:
    """What the read-only probe asked PowerCode, what it answered, and what that taught us."""

    learned: LearnedReplies
    findings: tuple[str, ...]


@dataclass(frozen=True)
class CreatedCustomer:
    """A customer createCustomer made; `warning` is what PowerCode said beside the id, if anything."""

    customer_id: int
    warning: str = ""


@dataclass(frozen=True)
class CustomerMatch:
    """One hit of a customer search."""

    customer_id: int
    name: str
    street: str
    city: str


@dataclass(frozen=True)
class PowerCodeCustomer:
    customer_id: int
    first_name: str
    last_name: str
    company_name: str
    status: str
    ext_account_id: str
    street: str
    city: str
    state: str
    # The customer's notes; None when the reply did not carry `customerNotes` at all (which the
    # reference does not list for readCustomer), so a write would replace notes unseen.
    notes: str | None = None


@dataclass(frozen=True)
class CustomerService:
    """One service on a customer (readCustomerService)."""

    service_id: int
    description: str
    quantity: str
    internet: bool


@dataclass(frozen=True)
class Equipment:
    """One piece of a customer's equipment (readCustomerEquipment; shape one source, read raw)."""

    mac: str
    name: str
    raw: Mapping[str, Any]


@dataclass(frozen=True, repr=False)
class NewCustomer:
    """What createCustomer needs; `ext_account_id` is the UTOPIA site id that links the two."""

    first_name: str
    last_name: str
    email: str
    street: str
    city: str
    state: str
    zip: str
    phone_numbers: tuple[str, ...]
    notes: str
    ext_account_id: str
    portal_username: str | None
    portal_password: str | None
    tax_zone_id: int
    invoice_preference: str
    bill_day: str
    due_by_days: int
    grace_period_days: int
    geocode: bool = True

    def __repr__(self) -> str:
        # Personal data and the portal password stay out of logs and tracebacks.
        return f"NewCustomer(ext_account_id={self.ext_account_id!r})"


@dataclass(frozen=True, repr=False)
class NewTicket:
    """What createTicket needs; every field is sent, as the production handler always did."""

    customer_id: int
    summary: str
    description_html: str
    category: int
    ticket_type: int
    status: int
    # PowerCode takes the responsible user by name ("Sales"); it is passed on exactly as given.
    responsible_user: str
    responsible_group: int
    customer_viewable: bool

    def __repr__(self) -> str:
        # The summary and description name the customer.
        return f"NewTicket(customer_id={self.customer_id!r})"


@dataclass(frozen=True)
class _Reply:
    status_code: int | None  # None: the reply carried no statusCode (seen for some actions)
    message: str
    body: Mapping[str, Any]

    @property
    def refused(self) -> bool:
        return self.status_code not in (None, 0)


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _optional(fields: dict[str, str], name: str, value: int | str | None) -> None:
    if value is not None:
        fields[name] = str(value)


def _mark(message: str, field: str, value: str) -> str:
    """The message with the field and value we looked up replaced by their marks."""
    marked = re.sub(rf"(?<![0-9]){re.escape(value)}(?![0-9])", VALUE_MARK, message)
    return re.sub(rf"\b{re.escape(field)}\b", FIELD_MARK, marked)


def _says_nothing_there(
    reply: _Reply, learned: EmptyReply | None, pattern: re.Pattern[str], field: str, value: str
) -> bool:
    """Whether a refusal is this PowerCode's way of saying "nothing there".

    By what the probe recorded once it has run; by the message's words only until then.
    """
    assert reply.status_code is not None
    if learned is not None:
        return learned.matches(reply.status_code, reply.message, field, value)
    return bool(pattern.search(reply.message))


def _notes(block: Mapping[str, Any]) -> str | None:
    """The customer's notes as readCustomer gave them (kept as sent); None when not given.

    A `customerNotes` of null counts as no notes; a reply without the key says nothing.
    """
    if not any(isinstance(key, str) and key.lower() == "customernotes" for key in block):
        return None
    value = get_field(block, "customerNotes")
    if isinstance(value, dict | list):
        return None
    return "" if value is None else str(value)


def _tag_ids(value: Any) -> set[int]:
    """The TagIDs listed in a UAPI `Response`, if it lists any."""
    ids = (as_int(get_field(row, "TagID")) for row in as_records(value))
    return {tag_id for tag_id in ids if tag_id is not None}


class PowerCodeClient(ClientBase):
    """PowerCode's classic API and UAPI, as provisioning needs them."""

    def __init__(
        self,
        api_url: str,
        uapi_url: str,
        api_key: str,
        *,
        verify: bool | str = True,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        transport: httpx.BaseTransport | None = None,
        learned: Callable[[], LearnedReplies] | None = None,
    ) -> None:
        self._api_url = api_url
        self._learned = learned or (lambda: NOTHING_LEARNED)
        self._uapi_url = uapi_url.rstrip("/")
        self._api_key = api_key
        basic = base64.b64encode(api_key.encode()).decode("ascii")
        self._uapi_headers = {"Authorization": f"Basic {basic}"}
        self._http = HttpSession(
            SERVICE,
            timeouts=timeouts,
            verify=verify,
            transport=transport,
            secrets=(api_key, basic),
            logger=log,
        )

    # -- customers

    def search_customers(self, text: str) -> list[CustomerMatch]:
        """Customers PowerCode finds for `text` (e.g. "First Last"), possibly none."""
        if not text.strip():
            raise ValueError("search text must not be empty")
        body = self._call_ok("searchCustomers", {"searchString": text.strip()})
        matches = []
        for row in as_records(get_field(body, "customers")):
            customer_id = as_int(get_field(row, "CustomerID"))
            if customer_id is None:
                continue
            matches.append(
                CustomerMatch(
                    customer_id=customer_id,
                    name=as_text(get_field(row, "CompanyName")),
                    street=as_text(get_field(row, "Address1")),
                    city=as_text(get_field(row, "City")),
                )
            )
        return matches

    def find_customer_by_site(self, site_id: str) -> PowerCodeCustomer | None:
        """The customer whose extAccountID is the UTOPIA `site_id`, or None when there is none."""
        site_id = site_id.strip()
        if not site_id:
            raise ValueError("site_id must not be empty")
        customer = self._read_customer("extAccountID", site_id)
        # If PowerCode ignored extAccountID and answered with some other customer, a lookup by site
        # id is not supported here; guessing would attach the order to the wrong account.
        if customer is not None and customer.ext_account_id != site_id:
            raise RejectedError(
                SERVICE,
                "readCustomer ignored extAccountID: the customer it returned has another one",
            )
        return customer

    def read_customer(self, customer_id: int) -> PowerCodeCustomer | None:
        """Customer `customer_id`, or None when PowerCode has no such customer."""
        customer = self._read_customer("customerID", str(customer_id), expected_id=customer_id)
        if customer is not None and customer.customer_id != customer_id:
            raise RejectedError(
                SERVICE, f"readCustomer returned customer {customer.customer_id}, not {customer_id}"
            )
        return customer

    def create_customer(self, customer: NewCustomer) -> CreatedCustomer:
        """Create the customer; GeocodeFailed if its address cannot be placed.

        A reply carrying a customer id means the customer exists, whatever else it says (the
        production handler took it so): a non-zero statusCode beside it comes back as `warning`.
        """
        if not customer.ext_account_id.strip():
            raise ValueError("ext_account_id must not be empty: it is how the order finds it again")
        if customer.invoice_preference not in INVOICE_PREFERENCES:
            raise ValueError(f"invoice_preference must be one of {sorted(INVOICE_PREFERENCES)}")
        fields = {
            "firstName": customer.first_name,
            "lastName": customer.last_name,
            "emailAddress": customer.email,
            "physicalStreet": customer.street,
            "physicalCity": customer.city,
            "physicalState": customer.state,
            "physicalZip": customer.zip,
            "physicalAutomaticallyGeocode": _flag(customer.geocode),
            "billingSameAsPhysical": "1",
            "taxZoneId": str(customer.tax_zone_id),
            "invoicePreference": customer.invoice_preference,
            "billDay": customer.bill_day,
            "dueByDays": str(customer.due_by_days),
            "gracePeriodDays": str(customer.grace_period_days),
            "customerNotes": customer.notes,
            # PowerCode takes nested values as a JSON string inside one form field.
            "phone": json.dumps([{"Type": "Home", "Number": n} for n in customer.phone_numbers]),
            "extAccountID": customer.ext_account_id.strip(),
        }
        _optional(fields, "customerPortalUsername", customer.portal_username)
        _optional(fields, "customerPortalPassword", customer.portal_password)
        reply = self._call("createCustomer", fields)
        customer_id = as_int(get_field(reply.body, "customerID"))
        if customer_id is not None:
            warning = self._refusal_text("createCustomer", reply) if reply.refused else ""
            return CreatedCustomer(customer_id, warning)
        if reply.status_code == GEOCODE_FAILED:
            raise GeocodeFailed(
                SERVICE, self._refusal_text("createCustomer", reply), code=reply.status_code
            )
        self._ok("createCustomer", reply)
        raise RejectedError(
            SERVICE,
            "createCustomer: reply has no customer id (the customer may exist: "
            "look it up by extAccountID)",
        )

    def update_customer_notes(self, customer_id: int, notes: str) -> None:
        """Replace the customer's notes with `notes` (read them first: nothing is appended here).

        updateCustomer takes customerID and the fields to change (one source); the notes field
        is createCustomer's `customerNotes`.
        """
        if not notes.strip():
            raise ValueError("notes must not be empty: that would erase the customer's notes")
        self._call_ok("updateCustomer", {"customerID": str(customer_id), "customerNotes": notes})

    # -- services

    def list_service_ids(self, customer_id: int) -> list[int]:
        """Ids of the services the customer has (none: an empty list)."""
        reply = self._call("readCustomerService", {"customerID": str(customer_id)})
        if reply.refused:
            learned = self._learned().no_services
            if _says_nothing_there(reply, learned, _NO_SERVICES, "customerID", str(customer_id)):
                return []
            raise RejectedError(
                SERVICE, self._refusal_text("readCustomerService", reply), code=reply.status_code
            )
        ids = (
            as_int(get_field(row, "serviceID"))
            for row in as_records(get_field(reply.body, "services"))
        )
        return [service_id for service_id in ids if service_id is not None]

    def list_services(self, customer_id: int) -> list[CustomerService]:
        """The customer's services with their descriptions (none: an empty list)."""
        reply = self._call("readCustomerService", {"customerID": str(customer_id)})
        if reply.refused:
            learned = self._learned().no_services
            if _says_nothing_there(reply, learned, _NO_SERVICES, "customerID", str(customer_id)):
                return []
            raise RejectedError(
                SERVICE, self._refusal_text("readCustomerService", reply), code=reply.status_code
            )
        services = []
        for row in as_records(get_field(reply.body, "services")):
            service_id = as_int(get_field(row, "serviceID"))
            if service_id is None:
                continue
            services.append(
                CustomerService(
                    service_id=service_id,
                    description=as_text(get_field(row, "description")),
                    quantity=as_text(get_field(row, "quantity")),
                    internet=get_field(row, "internetInfo") is not None,
                )
            )
        return services

    def update_customer_status(self, customer_id: int, status: str) -> None:
        """Set the customer's status (e.g. Active, Suspended, Inactive)."""
        if not status.strip():
            raise ValueError("status must not be empty")
        self._call_ok(
            "updateCustomerStatus", {"customerID": str(customer_id), "status": status.strip()}
        )

    def read_customer_equipment(self, customer_id: int) -> list[Equipment]:
        """The customer's equipment, each with its MAC address when PowerCode gives one."""
        body = self._call_ok("readCustomerEquipment", {"customerID": str(customer_id)})
        return [
            Equipment(
                mac=as_text(get_field(row, "macAddress")),
                name=as_text(get_field(row, "name")),
                raw=row,
            )
            for row in as_records(get_field(body, "equipment"))
        ]

    def read_ticket(self, ticket_id: str) -> Mapping[str, Any]:
        """Ticket `ticket_id` as PowerCode sends it (its shape is unknown: kept raw)."""
        if not ticket_id.strip():
            raise ValueError("ticket_id must not be empty")
        return self._call_ok("readTicket", {"ticketID": ticket_id.strip()})

    def add_service(self, customer_id: int, service_id: int, quantity: int = 1) -> None:
        """Add one service to the customer, not prorated."""
        # PowerCode refuses a quantity above 1 for Internet and VoIP services; the caller passes
        # more only for a service the operator prices per unit (a fee).
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        self._call_ok(
            "addCustomerService",
            {
                "customerID": str(customer_id),
                "serviceID": str(service_id),
                "quantity": str(quantity),
                "prorateService": "0",
            },
        )

    # -- tickets

    def create_ticket(self, ticket: NewTicket) -> str:
        """Open a ticket on the customer and return its id."""
        if not ticket.responsible_user.strip():
            raise ValueError("responsible_user must not be empty")
        fields = {
            "customerID": str(ticket.customer_id),
            "type": "Individual",
            "summary": ticket.summary,
            "description": ticket.description_html,
            "category": str(ticket.category),
            "ticketType": str(ticket.ticket_type),
            "status": str(ticket.status),
            "responsibleUser": ticket.responsible_user.strip(),
            "responsibleGroupID": str(ticket.responsible_group),
            "customerViewable": _flag(ticket.customer_viewable),
        }
        body = self._call_ok("createTicket", fields)
        ticket_id = as_text(get_field(body, "ticketID"))
        if not ticket_id:
            raise RejectedError(
                SERVICE, "createTicket: reply has no ticketID (the ticket may exist)"
            )
        return ticket_id

    # -- tags (UAPI)

    def list_tag_ids(self, customer_id: int) -> list[int]:
        """Ids of the tags on the customer."""
        rows = self._uapi("GET", [("customerID", str(customer_id))])
        return sorted(_tag_ids(rows))

    def add_tags(self, customer_id: int, tag_ids: Sequence[int]) -> None:
        """Put the tags on the customer, one request per tag; nothing is sent when there are none.

        The form is the production handler's last one: POST with no body, `customerID` and one
        `tags[]` in the query string (its comma-joined form was abandoned; a JSON body has never
        been seen to work). Each tag must then show, in the reply or in a read-back.
        """
        unconfirmed: list[int] = []
        for tag_id in tag_ids:
            reply = self._uapi("POST", [("customerID", str(customer_id)), ("tags[]", str(tag_id))])
            if int(tag_id) not in _tag_ids(reply):
                unconfirmed.append(int(tag_id))
        if unconfirmed:
            # Replies that list nothing (or only other tags) are not proof either way: read back.
            missing = sorted(set(unconfirmed) - set(self.list_tag_ids(customer_id)))
            if missing:
                raise RejectedError(
                    SERVICE,
                    f"uapi:tags: PowerCode accepted tag(s) {missing} but the customer does not "
                    "carry them (check the tag ids in PowerCode)",
                )

    # -- learning the replies nobody has published

    def probe_replies(self, customer_id: int | None = None) -> ProbeReport:
        """Ask, read-only, how this PowerCode says "no such customer" and "no services".

        readCustomer for a site id that cannot exist shows the first; readCustomerService for
        `customer_id` (read first, so it surely exists) shows the second when that customer has no
        services. Nothing is written to PowerCode.
        """
        findings: list[str] = []
        # First a call whose success is on record (searchCustomers answers statusCode 0): with a
        # wrong key or a refused address, the refusal below would be learned as "not found".
        self.search_customers(PROBE_SEARCH)
        site_id = "9" + "".join(secrets.choice("0123456789") for _ in range(14))
        reply = self._call("readCustomer", {"extAccountID": site_id})
        if reply.refused:
            assert reply.status_code is not None
            not_found = EmptyReply(reply.status_code, _mark(reply.message, "extAccountID", site_id))
            findings.append(
                f"readCustomer for a site id that cannot exist: refused with statusCode "
                f"{reply.status_code} ({clip(not_found.message, self._http.secrets)}); "
                'that reply now means "no customer"'
            )
        elif as_records(get_field(reply.body, "customer")):
            raise RejectedError(
                SERVICE,
                "readCustomer answered a customer for a site id that cannot exist: this PowerCode "
                "does not look customers up by extAccountID, so orders cannot be matched safely",
            )
        else:
            not_found = EmptyReply(0)
            findings.append(
                "readCustomer for a site id that cannot exist: success with no customer; any "
                "refusal of readCustomer now waits for a person"
            )
        no_services: EmptyReply | None = None
        if customer_id is None:
            findings.append(
                "readCustomerService: not probed (name a customer with no services to learn it)"
            )
        else:
            no_services, finding = self._probe_services(customer_id)
            findings.append(finding)
        return ProbeReport(LearnedReplies(not_found, no_services), tuple(findings))

    def _probe_services(self, customer_id: int) -> tuple[EmptyReply | None, str]:
        if self._read_customer("customerID", str(customer_id), expected_id=customer_id) is None:
            return None, f"readCustomerService: not probed: there is no customer #{customer_id}"
        reply = self._call("readCustomerService", {"customerID": str(customer_id)})
        label = f"readCustomerService for customer #{customer_id}"
        if reply.refused:
            assert reply.status_code is not None
            learned = EmptyReply(
                reply.status_code, _mark(reply.message, "customerID", str(customer_id))
            )
            return learned, (
                f"{label}: refused with statusCode {reply.status_code} "
                f"({clip(learned.message, self._http.secrets)}); that reply now means "
                '"no services"'
            )
        services = as_records(get_field(reply.body, "services"))
        if services:
            return None, (
                f"{label}: it has {len(services)} service(s), so the no-services reply is still "
                "unknown; name a customer with none"
            )
        return EmptyReply(0), (
            f"{label}: success with no services; any refusal of readCustomerService now waits "
            "for a person"
        )

    # -- plumbing

    def _read_customer(
        self, key: str, value: str, expected_id: int | None = None
    ) -> PowerCodeCustomer | None:
        reply = self._call("readCustomer", {key: value})
        if reply.refused:
            learned = self._learned().customer_not_found
            if _says_nothing_there(reply, learned, _NOT_FOUND, key, value):
                return None
            raise RejectedError(
                SERVICE, self._refusal_text("readCustomer", reply), code=reply.status_code
            )
        records = as_records(get_field(reply.body, "customer"))
        if not records:
            return None
        if len(records) > 1:
            raise RejectedError(SERVICE, f"readCustomer returned {len(records)} customers")
        block = records[0]
        customer_id = as_int(get_field(block, "customerId"))
        if customer_id is None:
            customer_id = expected_id
        if customer_id is None:
            raise RejectedError(SERVICE, "readCustomer: reply has no customer id")
        return PowerCodeCustomer(
            customer_id=customer_id,
            first_name=as_text(get_field(block, "firstName")),
            last_name=as_text(get_field(block, "lastName")),
            company_name=as_text(get_field(block, "companyName")),
            status=as_text(get_field(block, "status")),
            ext_account_id=as_text(get_field(block, "extAccountID")),
            street=as_text(get_field(block, "physicalStreet")),
            city=as_text(get_field(block, "physicalCity")),
            state=as_text(get_field(block, "physicalState")),
            notes=_notes(block),
        )

    def _call(self, action: str, fields: Mapping[str, str]) -> _Reply:
        """One classic API call; returns its statusCode, message and body, whatever the code."""
        data = {"apiKey": self._api_key, "action": action, **fields}
        response = self._http.request(action, "POST", self._api_url, data=data)
        self._http.raise_if_retryable(action, response)
        payload = json_body(response)
        raw_code = get_field(payload, "statusCode") if isinstance(payload, dict) else None
        status_code = as_int(raw_code)
        # statusCode is seen in some replies only (not in addCustomerService's, readCustomerService's
        # or a successful createCustomer's): a JSON object answered with 2xx and no code is success.
        if (
            not isinstance(payload, dict)
            or (raw_code is not None and status_code is None)
            or (status_code is None and not response.is_success)
        ):
            if response.is_success:
                raise RejectedError(SERVICE, f"{action}: not a PowerCode API reply")
            raise RejectedError(
                SERVICE, f"{action} refused: HTTP {response.status_code}", code=response.status_code
            )
        return _Reply(status_code, as_text(get_field(payload, "message")), payload)

    def _call_ok(self, action: str, fields: Mapping[str, str]) -> Mapping[str, Any]:
        return self._ok(action, self._call(action, fields))

    def _ok(self, action: str, reply: _Reply) -> Mapping[str, Any]:
        if reply.refused:
            raise RejectedError(SERVICE, self._refusal_text(action, reply), code=reply.status_code)
        return reply.body

    def _refusal_text(self, action: str, reply: _Reply) -> str:
        text = f"{action} refused: statusCode {reply.status_code}"
        if reply.message:
            text += f" ({clip(reply.message, self._http.secrets)})"
        return text

    def _uapi(self, method: str, query: list[tuple[str, str]]) -> Any:
        """One call to the UAPI customer-tags resource, all in the query string; its `Response`."""
        label = "uapi:tags"
        response = self._http.request(
            label,
            method,
            f"{self._uapi_url}/customer/tags/customer",
            headers=self._uapi_headers,
            params=query,
        )
        if response.status_code == 401:
            raise RejectedError(SERVICE, "authentication failed: check PC_API_KEY", code=401)
        self._http.raise_if_retryable(label, response)
        payload = json_body(response)
        if not isinstance(payload, dict):
            if response.is_success:
                raise RejectedError(SERVICE, f"{label}: not a PowerCode UAPI reply")
            raise RejectedError(
                SERVICE, f"{label} refused: HTTP {response.status_code}", code=response.status_code
            )
        success = get_field(payload, "Success")
        result = get_field(payload, "Response")
        # Success may arrive as true, 1 or "true".
        if not response.is_success or as_text(success).lower() not in ("true", "1"):
            text = f"{label} refused"
            if not response.is_success:
                text += f": HTTP {response.status_code}"
            if isinstance(result, str) and result.strip():
                text += f" ({clip(result, self._http.secrets)})"
            raise RejectedError(SERVICE, text, code=response.status_code)
        return result
