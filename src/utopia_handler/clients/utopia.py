"""Client for UTOPIA Fiber's provider API: a signed order ("contract"), its PDF, the order list.

Every call is a POST with a JSON body carrying the API key. Replies are read tolerantly (any block
may be missing, any value may be a number) and become small frozen records with our own field names.

A contract is also made safe here, once, for everything downstream (PowerCode, tickets, e-mails,
logs): every text field is put on one line without control or invisible characters, and a field
longer than its limit, a site id that is not digits, or too many order items are cut or left out
and said in `Contract.problems`, which holds the order for a person.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import httpx

from utopia_handler.clients.errors import RejectedError
from utopia_handler.clients.http import (
    DEFAULT_TIMEOUTS,
    ClientBase,
    HttpSession,
    as_records,
    as_text,
    clip,
    json_body,
)
from utopia_handler.clients.utopia_orders import (
    NOTHING_FOR_THIS_ISP,
    OrderList,
    is_nothing_for_this_isp,
    read_order_list,
)
from utopia_handler.clients.utopia_site import (
    MacSighting,
    OntView,
    RawReply,
    SiteService,
    parse_apview,
    parse_macsearch,
    parse_service,
)
from utopia_handler.settings import Timeouts
from utopia_handler.text import one_line

log = logging.getLogger(__name__)

SERVICE = "utopia"

# UTOPIA's exact answer when the order is not this provider's (or does not exist).
NOT_OUR_ORDER_TEXT = NOTHING_FOR_THIS_ISP


class NotOurOrder(RejectedError):
    """UTOPIA says the order does not belong to this provider (or does not exist)."""


@dataclass(frozen=True)
class Person:
    first_name: str
    last_name: str
    email: str
    phone: str


@dataclass(frozen=True)
class PostalAddress:
    street: str
    unit: str
    city: str
    state: str
    zip: str
    name: str = ""
    phone: str = ""


@dataclass(frozen=True)
class OrderItem:
    description: str
    charge_type: str
    quantity: str
    product_id: str


@dataclass(frozen=True, repr=False)
class Contract:
    """A signed order as UTOPIA describes it; `terms_agreed_at` is None for older orders."""

    order_ref: str
    status: str
    site_id: str
    customer: Person
    service_address: PostalAddress
    billing_address: PostalAddress
    items: tuple[OrderItem, ...]
    terms_agreed_at: str | None
    contract_download: str
    promo: str
    order_source: str
    #: What parse_contract had to cut or leave out to make the contract safe; any holds the order.
    problems: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # Kept free of personal data so a stray log line cannot leak a customer record.
        return (
            f"Contract(order_ref={self.order_ref!r}, status={self.status!r}, "
            f"site_id={self.site_id!r})"
        )

    def to_json(self) -> dict[str, Any]:
        """This contract as plain JSON types, for storing in the database."""
        data = asdict(self)
        data["items"] = list(data["items"])
        data["problems"] = list(self.problems)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Contract:
        """The contract `to_json` stored."""
        terms = data.get("terms_agreed_at")
        return cls(
            order_ref=as_text(data.get("order_ref")),
            status=as_text(data.get("status")),
            site_id=as_text(data.get("site_id")),
            customer=_person(data.get("customer"), "first_name", "last_name", "email", "phone"),
            service_address=_address(data.get("service_address"), _STORED_ADDRESS_KEYS),
            billing_address=_address(data.get("billing_address"), _STORED_ADDRESS_KEYS),
            items=tuple(
                OrderItem(
                    description=as_text(item.get("description")),
                    charge_type=as_text(item.get("charge_type")),
                    quantity=as_text(item.get("quantity")),
                    product_id=as_text(item.get("product_id")),
                )
                for item in as_records(data.get("items"))
            ),
            terms_agreed_at=as_text(terms) or None,
            contract_download=as_text(data.get("contract_download")),
            promo=as_text(data.get("promo")),
            order_source=as_text(data.get("order_source")),
            problems=tuple(str(p) for p in data.get("problems") or () if isinstance(p, str)),
        )


# Our field -> the key that holds it, in UTOPIA's reply and in what to_json stored.
_UTOPIA_ADDRESS_KEYS = {
    "street": "address",
    "unit": "apt",
    "city": "city",
    "state": "state",
    "zip": "zip",
    "name": "name",
    "phone": "phone",
}
# The service address block has no name/phone of its own; the billing block does.
_UTOPIA_SERVICE_ADDRESS_KEYS = {
    ours: theirs for ours, theirs in _UTOPIA_ADDRESS_KEYS.items() if ours not in ("name", "phone")
}
_STORED_ADDRESS_KEYS = {key: key for key in _UTOPIA_ADDRESS_KEYS}


def _block(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# The longest value of each contract field (characters) that is passed on; PowerCode's own
# columns are of this order. A longer one is cut, and the order waits for a person.
FIELD_LIMITS = {
    "first name": 100,
    "last name": 100,
    "e-mail": 254,
    "phone": 40,
    "street": 200,
    "unit": 50,
    "city": 100,
    "state": 50,
    "zip": 10,
    "name": 200,
    "status": 64,
    "site id": 32,
    "item": 200,
    "terms date": 64,
    "contract download": 2000,
    "promo": 200,
    "order source": 100,
}
MAX_ORDER_ITEMS = 50


class _Cleaner:
    """Makes each field of one contract safe, noting what it had to cut or leave out."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def text(self, value: Any, label: str) -> str:
        """One line, no control or invisible characters, at most the field's limit."""
        text = one_line(as_text(value))
        limit = FIELD_LIMITS[label]
        if len(text) > limit:
            self.problems.append(f"the {label} is longer than {limit} characters ({len(text)})")
            text = text[:limit].rstrip()
        return text

    def site_id(self, value: Any) -> str:
        """Digits only: the site id becomes PowerCode's extAccountID and part of its notes."""
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # a site id sent as 204817.0
        text = self.text(value, "site id")
        if text and not (text.isascii() and text.isdigit()):
            shown = text if len(text) <= 40 else text[:37] + "..."
            self.problems.append(f"the site id {shown!r} is not digits")
            return ""
        return text


def _person(
    value: Any, first: str, last: str, email: str, phone: str, clean: _Cleaner | None = None
) -> Person:
    block = _block(value)
    if clean is None:  # a contract stored by to_json: made safe when it came in
        return Person(
            first_name=as_text(block.get(first)),
            last_name=as_text(block.get(last)),
            email=as_text(block.get(email)),
            phone=as_text(block.get(phone)),
        )
    return Person(
        first_name=clean.text(block.get(first), "first name"),
        last_name=clean.text(block.get(last), "last name"),
        email=clean.text(block.get(email), "e-mail"),
        phone=clean.text(block.get(phone), "phone"),
    )


_ADDRESS_LABELS = {
    "street": "street",
    "unit": "unit",
    "city": "city",
    "state": "state",
    "zip": "zip",
    "name": "name",
    "phone": "phone",
}


def _address(value: Any, keys: dict[str, str], clean: _Cleaner | None = None) -> PostalAddress:
    block = _block(value)
    if clean is None:
        return PostalAddress(**{ours: as_text(block.get(theirs)) for ours, theirs in keys.items()})
    return PostalAddress(
        **{
            ours: clean.text(block.get(theirs), _ADDRESS_LABELS[ours])
            for ours, theirs in keys.items()
        }
    )


def parse_contract(order_ref: str, payload: Any) -> Contract:
    """Read UTOPIA's contractlookup reply and make it safe (see the module docstring); missing
    blocks become empty values, never errors."""
    if not isinstance(payload, dict):
        raise RejectedError(SERVICE, "contractlookup: reply is not a JSON object")
    clean = _Cleaner()
    service = _block(payload.get("address"))
    terms = _block(payload.get("termsagreement")).get("sp_terms_agree_date")
    records = as_records(payload.get("orderitems"))
    if len(records) > MAX_ORDER_ITEMS:
        clean.problems.append(
            f"the order has {len(records)} items; only the first {MAX_ORDER_ITEMS} were read"
        )
    items = tuple(
        OrderItem(
            description=clean.text(item.get("description"), "item"),
            charge_type=clean.text(item.get("chargetype"), "item"),
            quantity=clean.text(item.get("qty"), "item"),
            product_id=clean.text(item.get("pid"), "item"),
        )
        for item in records[:MAX_ORDER_ITEMS]
    )
    return Contract(
        order_ref=order_ref.strip(),
        status=clean.text(payload.get("status"), "status"),
        site_id=clean.site_id(service.get("siteid")),
        customer=_person(payload.get("customer"), "firstname", "lastname", "email", "phone", clean),
        service_address=_address(service, _UTOPIA_SERVICE_ADDRESS_KEYS, clean),
        billing_address=_address(payload.get("billingaddress"), _UTOPIA_ADDRESS_KEYS, clean),
        items=items,
        terms_agreed_at=clean.text(terms, "terms date") or None,
        contract_download=clean.text(payload.get("contractdownload"), "contract download"),
        promo=clean.text(payload.get("promo"), "promo"),
        order_source=clean.text(payload.get("ordersource"), "order source"),
        problems=tuple(dict.fromkeys(clean.problems)),
    )


class UtopiaClient(ClientBase):
    """UTOPIA's provider API, as the new-order flow needs it."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        network: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._network = network
        self._http = HttpSession(
            SERVICE, timeouts=timeouts, transport=transport, secrets=(api_key,), logger=log
        )

    def lookup_contract(self, order_ref: str) -> Contract:
        """The signed order `order_ref`; NotOurOrder when UTOPIA says it is not this provider's."""
        label = "contractlookup"
        response = self._post(label, order_ref)
        payload = json_body(response)
        self._raise_for_refusal(label, response, payload)
        if not isinstance(payload, dict):
            raise RejectedError(SERVICE, f"{label}: reply is not a JSON object")
        error = payload.get("error")
        # Only a reply that is nothing but an error counts: customer data may contain the word.
        if isinstance(error, str) and "customer" not in payload and "address" not in payload:
            reason = clip(error, (self._api_key,)) or "an empty error"
            raise RejectedError(SERVICE, f"{label} refused: {reason}")
        return parse_contract(order_ref, payload)

    def download_contract(self, order_ref: str) -> bytes | None:
        """The contract PDF, or None while UTOPIA has none (a JSON reply, or a 404 with error)."""
        label = "contractdownload"
        response = self._post(label, order_ref)
        status = response.status_code
        if status == 401:
            raise self._auth_failed()
        self._http.raise_if_retryable(label, response)
        payload = json_body(response)
        # Whether the order is ours was settled by the lookup; here JSON only means "no PDF yet".
        if status == 404 and isinstance(payload, dict) and "error" in payload:
            return None
        if status >= 300:
            raise RejectedError(SERVICE, f"{label} refused: HTTP {status}", code=status)
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type == "application/pdf" and response.content.startswith(b"%PDF"):
            return response.content
        if payload is not None:
            return None
        raise RejectedError(
            SERVICE, f"{label}: reply is neither a PDF nor JSON ({clip(content_type) or 'no type'})"
        )

    def list_orders(
        self,
        *,
        status: str | None = None,
        site_id: str | None = None,
        order_ref: str | None = None,
        network: str | None = None,
    ) -> OrderList:
        """UTOPIA's orders for this provider, optionally filtered; see OrderList for `readable`.

        The reply's shape has never been recorded, so it is read by `read_order_list`, which
        depends on no shape. A blank filter is not sent. `network` asks about that network
        instead of the client's own (UTOPIA_NETWORK); reconciliation asks each of
        UTOPIA_NETWORKS in turn with one client.
        """
        label = "orders"
        filters = {"status": status, "siteid": site_id, "orderref": order_ref}
        body = self._body(
            {name: value for name, value in filters.items() if value and value.strip()},
            network=network,
        )
        response = self._http.request(label, "POST", f"{self._base_url}/spquery/{label}", json=body)
        if response.status_code == 401:
            raise self._auth_failed()
        self._http.raise_if_retryable(label, response)
        try:
            payload = json.loads(response.content)
        except RecursionError:
            return OrderList((), readable=False, note="the reply is nested too deeply to decode")
        except (ValueError, UnicodeDecodeError):
            payload = None
            if response.status_code < 300:
                content_type = response.headers.get("Content-Type", "").split(";")[0]
                note = f"the reply is not JSON ({clip(content_type) or 'no content type'})"
                return OrderList((), readable=False, note=note)
        # "No valid records found for this ISP" is UTOPIA's "nothing here for you" text (404 on
        # the look-ups): asked for a list, it means the list is empty, not that we were refused.
        if is_nothing_for_this_isp(payload):
            return OrderList((), readable=True)
        self._raise_for_refusal(label, response, payload)
        orders = read_order_list(payload)
        error = payload.get("error") if isinstance(payload, dict) else None
        # A 200 that is nothing but an error is a refusal; an `error` key beside orders is data.
        if not orders.orders and isinstance(error, str) and error.strip():
            reason = clip(error, (self._api_key,))
            raise RejectedError(SERVICE, f"{label} refused: {reason}", code=response.status_code)
        return orders

    # -- a subscriber's site: look-ups (read tolerantly; see clients/utopia_site.py)

    def site_service(self, site_id: str) -> SiteService:
        """The services at `site_id`, with UTOPIA's customer id (`cid`) when it names one."""
        found, payload = self._lookup("service", {"siteid": _needed("site_id", site_id)})
        return parse_service(found, payload)

    def ont_view(self, site_id: str) -> OntView:
        """The equipment view of `site_id`: the MACs seen on its ONT port."""
        found, payload = self._lookup("apview", {"siteid": _needed("site_id", site_id)})
        return parse_apview(found, payload)

    def mac_search(self, mac: str, hours_history: int = 24) -> MacSighting:
        """Where and when UTOPIA last saw `mac`."""
        fields = {"mac": _needed("mac", mac), "hourshistory": str(hours_history)}
        found, payload = self._lookup("macsearch", fields)
        return parse_macsearch(payload if found else {"status": "notfound"})

    def check_access(self, site_id: str) -> RawReply:
        """UTOPIA's access check of `site_id` (reply shape unknown: kept raw)."""
        return RawReply(*self._lookup("checkaccess", {"siteid": _needed("site_id", site_id)}))

    def customer(self, cid: str) -> RawReply:
        """UTOPIA's customer record `cid` (shape unknown: kept raw)."""
        return RawReply(*self._lookup("customer", {"cid": _needed("cid", cid)}))

    def products(self) -> RawReply:
        """This provider's products (shape unknown: kept raw)."""
        return RawReply(*self._lookup("products", {}))

    def projects(self, *, site_id: str = "", order_ref: str = "", status_id: str = "") -> RawReply:
        """Construction projects, filtered by whichever of the filters is given."""
        filters = {"siteid": site_id, "orderref": order_ref, "statusid": status_id}
        return RawReply(*self._lookup("projects", {k: v for k, v in filters.items() if v.strip()}))

    def project_detail(self, project_id: str) -> RawReply:
        """One construction project."""
        fields = {"projectid": _needed("project_id", project_id)}
        return RawReply(*self._lookup("projectdetail", fields))

    def outage_tickets(self, *, site_id: str = "") -> RawReply:
        """Outage tickets, for one site when `site_id` is given."""
        fields = {"siteid": site_id} if site_id.strip() else {}
        return RawReply(*self._lookup("outagetickets", fields))

    def outage_ticket(self, ticket_id: str) -> RawReply:
        """One outage ticket."""
        fields = {"ticketid": _needed("ticket_id", ticket_id)}
        return RawReply(*self._lookup("outageticket", fields))

    # -- a subscriber's site: writes (replies never seen: kept raw, any 2xx JSON is success)

    def suspend(self, cid: str, site_id: str) -> RawReply:
        """Suspend the subscriber's service at `site_id`."""
        return self._write("suspend", {"cid": cid, "siteid": site_id})

    def unsuspend(self, cid: str, site_id: str) -> RawReply:
        """Lift the suspension of the subscriber's service at `site_id`."""
        return self._write("unsuspend", {"cid": cid, "siteid": site_id})

    def change_speed(
        self, cid: str, site_id: str, uia_id: str, product: str, issue_date: str
    ) -> RawReply:
        """Move service `uia_id` at `site_id` to `product` from `issue_date` (YYYY-MM-DD)."""
        fields = {
            "cid": cid,
            "siteid": site_id,
            "uiaid": uia_id,
            "product": product,
            "issuedate": _date(issue_date),
        }
        return self._write("changespeed", fields)

    def cancel_service(
        self, cid: str, site_id: str, issue_date: str, single_service: str = ""
    ) -> RawReply:
        """Cancel the service at `site_id` from `issue_date`; `single_service` only that one."""
        fields = {"cid": cid, "siteid": site_id, "issuedate": _date(issue_date)}
        if single_service.strip():
            fields["singleservice"] = single_service
        return self._write("cancelservice", fields)

    def _lookup(self, label: str, fields: dict[str, str]) -> tuple[bool, Any]:
        """(found, reply) of a look-up; UTOPIA's "nothing for this ISP" is found=False."""
        status, payload = self._spquery(label, fields)
        if is_nothing_for_this_isp(payload):
            return False, payload
        self._check_reply(label, status, payload)
        return True, payload

    def _write(self, label: str, fields: dict[str, str]) -> RawReply:
        for name, value in fields.items():
            _needed(name, value)
        status, payload = self._spquery(label, fields)
        if is_nothing_for_this_isp(payload):
            raise NotOurOrder(SERVICE, f"{label}: {NOT_OUR_ORDER_TEXT}", code=status)
        self._check_reply(label, status, payload)
        return RawReply(True, payload)

    def _spquery(self, label: str, fields: dict[str, str]) -> tuple[int, Any]:
        """POST one /spquery call; transport faults and 5xx/429 raise RetryableError."""
        body = self._body(fields)
        response = self._http.request(label, "POST", f"{self._base_url}/spquery/{label}", json=body)
        if response.status_code == 401:
            raise self._auth_failed()
        self._http.raise_if_retryable(label, response)
        return response.status_code, json_body(response)

    def _check_reply(self, label: str, status: int, payload: Any) -> None:
        error = payload.get("error") if isinstance(payload, dict) else None
        reason = clip(error, (self._api_key,)) if isinstance(error, str) else ""
        if status >= 300:
            text = f"{label} refused: HTTP {status}" + (f" ({reason})" if reason else "")
            raise RejectedError(SERVICE, text, code=status)
        if payload is None:
            raise RejectedError(SERVICE, f"{label}: reply is not JSON")
        # A 200 that is nothing but an error is a refusal; an `error` key beside data is data.
        if reason and len(payload) == 1:
            raise RejectedError(SERVICE, f"{label} refused: {reason}", code=status)

    def _body(self, fields: dict[str, str], *, network: str | None = None) -> dict[str, str]:
        body = {"apikey": self._api_key, **{name: value.strip() for name, value in fields.items()}}
        chosen = network or self._network
        if chosen:
            body["network"] = chosen
        return body

    def _post(self, label: str, order_ref: str) -> httpx.Response:
        if not order_ref.strip():
            raise ValueError("order_ref must not be empty")
        body = self._body({"orderref": order_ref})
        return self._http.request(label, "POST", f"{self._base_url}/spquery/{label}", json=body)

    def _raise_for_refusal(self, label: str, response: httpx.Response, payload: Any) -> None:
        status = response.status_code
        if status == 401:
            raise self._auth_failed()
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, str) and error.strip() == NOT_OUR_ORDER_TEXT:
            raise NotOurOrder(SERVICE, f"{label}: {NOT_OUR_ORDER_TEXT}", code=status)
        self._http.raise_if_retryable(label, response)
        if status >= 300:
            text = f"{label} refused: HTTP {status}"
            if isinstance(error, str) and error.strip():
                text += f" ({clip(error, (self._api_key,))})"
            raise RejectedError(SERVICE, text, code=status)

    @staticmethod
    def _auth_failed() -> RejectedError:
        return RejectedError(SERVICE, "authentication failed: check UTOPIA_API_KEY", code=401)


def _needed(name: str, value: str) -> str:
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value.strip()


def _date(value: str) -> str:
    """`value` when it is a YYYY-MM-DD date (UTOPIA's issuedate format), else ValueError."""
    try:
        date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"issue date must be YYYY-MM-DD, not {value!r}") from None
    if len(value.strip()) != 10:
        raise ValueError(f"issue date must be YYYY-MM-DD, not {value!r}")
    return value.strip()
