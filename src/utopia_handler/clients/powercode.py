"""Client for PowerCode: find and create customers, add services, open tickets, tag customers.

The classic API is one URL taking form-encoded POSTs with `apiKey` and `action`; its answer is the
`statusCode` in the JSON reply (0 = success), whatever the HTTP status. The newer UAPI is REST
with Basic auth and a `{"Success": ..., "Response": ...}` envelope. Both are read tolerantly: ids
may come as numbers or strings and key casing differs between actions.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Mapping, Sequence
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

# PowerCode's reply to readCustomer for an unknown customer is not documented. We accept both shapes
# that public clients suggest: statusCode 0 without a customer block, or a non-zero statusCode whose
# message says the customer does not exist. Any other refusal stays an error.
_NOT_FOUND = re.compile(r"not\s*found|no\s+(such\s+)?customer|does\s+not\s+exist", re.IGNORECASE)


class GeocodeFailed(RejectedError):
    """createCustomer refused because PowerCode could not geocode the address (statusCode 23)."""


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
    tax_zone_id: int | None
    invoice_preference: str
    bill_day: str
    due_by_days: int | None
    grace_period_days: int
    geocode: bool = True

    def __repr__(self) -> str:
        # Personal data and the portal password stay out of logs and tracebacks.
        return f"NewCustomer(ext_account_id={self.ext_account_id!r})"


@dataclass(frozen=True, repr=False)
class NewTicket:
    """What createTicket needs; None ids are left to PowerCode's defaults."""

    customer_id: int
    summary: str
    description_html: str
    category: int | None
    ticket_type: int | None
    status: int | None
    responsible_user: int | None
    responsible_group: int | None
    customer_viewable: bool

    def __repr__(self) -> str:
        # The summary and description name the customer.
        return f"NewTicket(customer_id={self.customer_id!r})"


@dataclass(frozen=True)
class _Reply:
    status_code: int
    message: str
    body: Mapping[str, Any]


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _optional(fields: dict[str, str], name: str, value: int | str | None) -> None:
    if value is not None:
        fields[name] = str(value)


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
    ) -> None:
        self._api_url = api_url
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
        customer = self._read_customer({"extAccountID": site_id})
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
        customer = self._read_customer({"customerID": str(customer_id)}, expected_id=customer_id)
        if customer is not None and customer.customer_id != customer_id:
            raise RejectedError(
                SERVICE, f"readCustomer returned customer {customer.customer_id}, not {customer_id}"
            )
        return customer

    def create_customer(self, customer: NewCustomer) -> int:
        """Create the customer and return its id; GeocodeFailed if its address cannot be placed."""
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
            "invoicePreference": customer.invoice_preference,
            "billDay": customer.bill_day,
            "gracePeriodDays": str(customer.grace_period_days),
            "customerNotes": customer.notes,
            # PowerCode takes nested values as a JSON string inside one form field.
            "phone": json.dumps([{"Type": "Home", "Number": n} for n in customer.phone_numbers]),
            "extAccountID": customer.ext_account_id.strip(),
        }
        _optional(fields, "taxZoneId", customer.tax_zone_id)
        _optional(fields, "dueByDays", customer.due_by_days)
        _optional(fields, "customerPortalUsername", customer.portal_username)
        _optional(fields, "customerPortalPassword", customer.portal_password)
        reply = self._call("createCustomer", fields)
        if reply.status_code == GEOCODE_FAILED:
            raise GeocodeFailed(
                SERVICE, self._refusal_text("createCustomer", reply), code=reply.status_code
            )
        body = self._ok("createCustomer", reply)
        customer_id = as_int(get_field(body, "customerID"))
        if customer_id is None:
            raise RejectedError(
                SERVICE,
                "createCustomer: reply has no customer id (the customer may exist: "
                "look it up by extAccountID)",
            )
        return customer_id

    # -- services

    def list_service_ids(self, customer_id: int) -> list[int]:
        """Ids of the services the customer has."""
        body = self._call_ok("readCustomerService", {"customerID": str(customer_id)})
        ids = (
            as_int(get_field(row, "serviceID")) for row in as_records(get_field(body, "services"))
        )
        return [service_id for service_id in ids if service_id is not None]

    def add_service(self, customer_id: int, service_id: int) -> None:
        """Add one service to the customer, not prorated."""
        # Quantity is always 1: PowerCode refuses more for Internet and VoIP services.
        self._call_ok(
            "addCustomerService",
            {
                "customerID": str(customer_id),
                "serviceID": str(service_id),
                "quantity": "1",
                "prorateService": "0",
            },
        )

    # -- tickets

    def create_ticket(self, ticket: NewTicket) -> str:
        """Open a ticket on the customer and return its id."""
        fields = {
            "customerID": str(ticket.customer_id),
            "type": "Individual",
            "summary": ticket.summary,
            "description": ticket.description_html,
            "customerViewable": _flag(ticket.customer_viewable),
        }
        _optional(fields, "category", ticket.category)
        _optional(fields, "ticketType", ticket.ticket_type)
        _optional(fields, "status", ticket.status)
        _optional(fields, "responsibleUser", ticket.responsible_user)
        _optional(fields, "responsibleGroupID", ticket.responsible_group)
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
        rows = self._uapi("GET", params={"customerID": str(customer_id)})
        ids = (as_int(get_field(row, "TagID")) for row in as_records(rows))
        return [tag_id for tag_id in ids if tag_id is not None]

    def add_tags(self, customer_id: int, tag_ids: Sequence[int]) -> None:
        """Put the tags on the customer; nothing is sent when there are none."""
        if not tag_ids:
            return
        self._uapi("POST", json={"customerID": customer_id, "tags": [int(t) for t in tag_ids]})

    # -- plumbing

    def _read_customer(
        self, fields: dict[str, str], expected_id: int | None = None
    ) -> PowerCodeCustomer | None:
        reply = self._call("readCustomer", fields)
        if reply.status_code != 0:
            if _NOT_FOUND.search(reply.message):
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
        )

    def _call(self, action: str, fields: Mapping[str, str]) -> _Reply:
        """One classic API call; returns its statusCode, message and body, whatever the code."""
        data = {"apiKey": self._api_key, "action": action, **fields}
        response = self._http.request(action, "POST", self._api_url, data=data)
        self._http.raise_if_retryable(action, response)
        payload = json_body(response)
        status_code = (
            as_int(get_field(payload, "statusCode")) if isinstance(payload, dict) else None
        )
        if not isinstance(payload, dict) or status_code is None:
            if response.is_success:
                raise RejectedError(SERVICE, f"{action}: not a PowerCode API reply")
            raise RejectedError(
                SERVICE, f"{action} refused: HTTP {response.status_code}", code=response.status_code
            )
        return _Reply(status_code, as_text(get_field(payload, "message")), payload)

    def _call_ok(self, action: str, fields: Mapping[str, str]) -> Mapping[str, Any]:
        return self._ok(action, self._call(action, fields))

    def _ok(self, action: str, reply: _Reply) -> Mapping[str, Any]:
        if reply.status_code != 0:
            raise RejectedError(SERVICE, self._refusal_text(action, reply), code=reply.status_code)
        return reply.body

    def _refusal_text(self, action: str, reply: _Reply) -> str:
        text = f"{action} refused: statusCode {reply.status_code}"
        if reply.message:
            text += f" ({clip(reply.message, self._http.secrets)})"
        return text

    def _uapi(self, method: str, **kwargs: Any) -> Any:
        """One call to the UAPI customer-tags resource; returns its `Response`."""
        label = "uapi:tags"
        response = self._http.request(
            label,
            method,
            f"{self._uapi_url}/customer/tags/customer",
            headers=self._uapi_headers,
            **kwargs,
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
