"""Reading UTOPIA's order list (`/spquery/orders`), whose reply shape has never been recorded.

Nothing here depends on one shape. `find_listed_orders` walks the whole JSON value and picks out
order references by what they look like (`UIA202511-038570`) or by the key that holds them
(`orderref`, `OrderRef`, `order_ref`...), with the status and site id found beside each.
`read_order_list` adds the verdict the caller needs: a list we read (perhaps empty) or a reply we
could not read, which must never be reported as "no orders missed".

The rules, precisely:
- A reference is a string that is wholly (after stripping) `UIA` + 6 digits + `-` + 6 digits, in
  any case, anywhere in the value: a list item, an object value or an object key. A reference
  inside longer text ("see UIA202611-000001 notes") does not count: notes about an order are not
  a listing of it.
- A value under a key that names a reference (`_REF_KEYS`, compared without case, `_`, `-` or
  spaces) counts even when it is not UIA-shaped (other networks may use other prefixes), if it is
  a short token holding a digit (a string or an integer), only when its object has no UIA-shaped
  value (one object is one order, so a numeric `orderid` beside an `orderref` is not a second
  order), and only when the whole reply holds no UIA-shaped reference (in a UTOPIA list, an
  `orderid` inside an order's items is not another order).
- An object's status and site id are read from that object (`_STATUS_KEYS`, `_SITE_KEYS`, or a
  `siteid` in its `address`/`site` block) and belong to the object's own reference; other
  references in the same object are listed without them. An object keyed by a reference gives its
  value's status and site id to that reference (a bare word as the value is its status).
- One entry per reference, upper-cased, in first-seen order; a later occurrence only fills in a
  status or site id the first one lacked.
- The walk visits at most `MAX_NODES` values and goes at most `MAX_DEPTH` levels deep; past either
  it stops (or skips the deeper part) and says so instead of failing.

What `read_order_list` lists: only references of UTOPIA's shape (`check_order_ref`, the one rule
for every order reference that comes in), a status on one line, a site id only when it is digits.
A reply whose references are all of another shape is unreadable; with some, it says how many were
left out.

Empty versus unreadable (`read_order_list`):
- readable with orders: at least one reference found and the whole reply was walked;
- readable and empty: no reference, and the reply is UTOPIA's "No valid records found for this
  ISP" error, or `[]`, or `{}`, or an object whose lists and objects are all empty (at any depth of
  objects) with at least one of them present, e.g. `{"orders": []}`, `{"data": {"orders": {}}}`,
  `{"success": true, "data": []}`; scalar fields beside them are allowed, except a count-like
  field (`count`, `total`...) above zero, which says orders exist that we cannot see;
- unreadable: anything else, e.g. `{"message": "ok"}`, `null`, `"text"`, `[1, 2]`,
  `[{"id": 7}]`, and every reply the walk could not finish (too large or too deep; the orders
  found so far are kept, but the list is not complete).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from utopia_handler.text import one_line

log = logging.getLogger(__name__)

#: UTOPIA's order reference: `UIA` + YYYYMM + `-` + 6 digits, e.g. `UIA202511-038570`.
ORDER_REF_PATTERN = re.compile(r"UIA\d{6}-\d{6}", re.IGNORECASE | re.ASCII)
#: What `check_order_ref` says of anything else (never the text itself: it may be anything).
ORDER_REF_RULE = "an order reference is UIA, 6 digits, '-' and 6 digits, like UIA202611-004217"


class BadOrderRef(ValueError):
    """Text that is not a UTOPIA order reference (`ORDER_REF_RULE`)."""


def check_order_ref(text: str) -> str:
    """`text` as an order reference, trimmed and upper-cased, or BadOrderRef.

    The one rule for every order reference that comes in: a callback's `orderref`, one a person
    types to provision by hand, one found in UTOPIA's order list. Nothing else is stored, looked
    up, logged or put into a file name: no paths, quotes, controls or invisible characters.
    """
    ref = text.strip()
    if not ORDER_REF_PATTERN.fullmatch(ref):
        raise BadOrderRef(ORDER_REF_RULE)
    return ref.upper()


def is_order_ref(text: object) -> bool:
    """Whether `text` is an order reference as `check_order_ref` takes it."""
    return isinstance(text, str) and ORDER_REF_PATTERN.fullmatch(text.strip()) is not None


#: Deeper parts of a reply are skipped (and reported): no real list nests this far.
MAX_DEPTH = 64
#: The walk stops (and reports it) after visiting this many values.
MAX_NODES = 200_000

# UTOPIA's answer when it has nothing for this provider; on this endpoint it means "no orders".
NOTHING_FOR_THIS_ISP = "No valid records found for this ISP"

# Keys are compared in this normal form: lower case without "_", "-" or spaces.
# Keys that name a reference, best first (the first match is an object's own reference).
_REF_KEYS = (
    "orderref",
    "orderreference",
    "uiaorderref",
    "ordernumber",
    "ordernum",
    "orderno",
    "order",
    "orderid",
    "ref",
    "reference",
)
_STATUS_KEYS = ("orderstatus", "status", "statusname", "orderstate", "state")
_SITE_KEYS = ("siteid", "site", "sitenumber", "siteno")
# Blocks of an order object that may carry its site id (contractlookup has `address.siteid`).
_SITE_BLOCK_KEYS = ("address", "serviceaddress", "site", "location")
# Fields that count the orders a reply holds; one above zero means the reply is not empty.
_COUNT_KEYS = (
    "count",
    "total",
    "totalcount",
    "totalrecords",
    "records",
    "recordcount",
    "recordstotal",
    "numrows",
    "rowcount",
    "ordercount",
    "totalorders",
)
# A reference from another network: a short token with at least one digit.
_TOKEN = re.compile(r"(?=[^\d]*\d)[A-Za-z0-9][A-Za-z0-9._/-]{0,39}", re.ASCII)
# A status or site id longer than this, or on several lines, is not one.
_MAX_FIELD_CHARS = 64


@dataclass(frozen=True)
class ListedOrder:
    """One order in UTOPIA's list; `status` and `site_id` are "" when the reply did not say."""

    order_ref: str
    status: str
    site_id: str


@dataclass(frozen=True)
class OrderList:
    """UTOPIA's order list as read: `readable` is False when it could not be read whole.

    An unreadable list may still hold the orders found before the reading stopped; it must be
    reported as "could not read UTOPIA's order list", never as "no orders". `note` says why, for a
    person, and never quotes the reply.
    """

    orders: tuple[ListedOrder, ...]
    readable: bool
    note: str = ""


def _normal(key: object) -> str:
    return "".join(str(key).lower().replace("_", " ").replace("-", " ").split())


def _uia_ref(value: object) -> str | None:
    """`value` as an upper-cased UTOPIA reference when it is wholly one."""
    if isinstance(value, str) and ORDER_REF_PATTERN.fullmatch(value.strip()):
        return value.strip().upper()
    return None


def _token(value: object) -> str | None:
    """`value` as an upper-cased reference token (any network), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str) and _TOKEN.fullmatch(value.strip()):
        return value.strip().upper()
    return None


def _short_text(value: object) -> str:
    """A scalar as a short one-line string, or "" (objects, lists, long text)."""
    if value is None or isinstance(value, bool | Mapping | list):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a site id sent as 204817.0
    text = str(value).strip()
    if len(text) > _MAX_FIELD_CHARS or "\n" in text:
        return ""
    return text


def _fields(obj: Mapping[Any, Any]) -> dict[str, Any]:
    """The object's values by normal key; the first of keys that differ only in form wins."""
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        fields.setdefault(_normal(key), value)
    return fields


def _first(fields: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        text = _short_text(fields.get(key))
        if text:
            return text
    return ""


def _site_id(fields: Mapping[str, Any]) -> str:
    site = _first(fields, _SITE_KEYS)
    if site:
        return site
    for key in _SITE_BLOCK_KEYS:
        block = fields.get(key)
        if isinstance(block, Mapping):
            site = _first(_fields(block), _SITE_KEYS)
            if site:
                return site
    return ""


def _own_ref(obj: Mapping[Any, Any], fields: Mapping[str, Any]) -> str | None:
    """The reference an object is about: UIA-shaped under a reference key, anywhere, or a token."""
    for key in _REF_KEYS:
        ref = _uia_ref(fields.get(key))
        if ref:
            return ref
    for value in obj.values():
        ref = _uia_ref(value)
        if ref:
            return ref
    for key in _REF_KEYS:
        ref = _token(fields.get(key))
        if ref:
            return ref
    return None


class _Walk:
    """One pass over a reply, collecting references in first-seen order."""

    def __init__(self) -> None:
        self.found: dict[str, ListedOrder] = {}
        self.nodes = 0
        self.too_deep = False
        self.stopped = False

    def add(self, ref: str, status: str = "", site_id: str = "") -> None:
        known = self.found.get(ref)
        if known is None:
            self.found[ref] = ListedOrder(ref, status, site_id)
        elif (not known.status and status) or (not known.site_id and site_id):
            self.found[ref] = replace(
                known, status=known.status or status, site_id=known.site_id or site_id
            )

    def visit(self, value: Any, depth: int, implied_ref: str | None = None) -> None:
        """Visit one value; `implied_ref` is the reference an object was keyed by, if any."""
        if self.stopped:
            return
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.stopped = True
            return
        if depth > MAX_DEPTH:
            self.too_deep = True
            return
        if isinstance(value, Mapping):
            self._object(value, depth, implied_ref)
        elif isinstance(value, list | tuple):
            for item in value:
                self.visit(item, depth + 1)
                if self.stopped:
                    return
        else:
            ref = _uia_ref(value)
            if ref:
                self.add(ref)

    def _object(self, obj: Mapping[Any, Any], depth: int, implied_ref: str | None) -> None:
        fields = _fields(obj)
        own = _own_ref(obj, fields)
        if implied_ref and own and own != implied_ref:
            # Keyed by one reference but naming another: list both, the details go with its own.
            self.add(implied_ref)
        own = own or implied_ref
        if own:
            self.add(own, _first(fields, _STATUS_KEYS), _site_id(fields))
        for key, value in obj.items():
            key_ref = _uia_ref(key)
            if key_ref and isinstance(value, Mapping):
                self.visit(value, depth + 1, implied_ref=key_ref)
            elif key_ref:
                # {"UIA...": "Signed"}: a bare word beside a reference key is its status.
                word = _short_text(value) if isinstance(value, str) else ""
                self.add(key_ref, "" if _uia_ref(word) else word)
                self.visit(value, depth + 1)
            else:
                self.visit(value, depth + 1)
            if self.stopped:
                return

    def orders(self) -> tuple[ListedOrder, ...]:
        """What was found; other networks' tokens only when no UTOPIA reference was seen."""
        found = tuple(self.found.values())
        uia = tuple(order for order in found if ORDER_REF_PATTERN.fullmatch(order.order_ref))
        return uia or found


def _walk(payload: Any) -> _Walk:
    walk = _Walk()
    walk.visit(payload, 0)
    return walk


def find_listed_orders(payload: Any) -> list[ListedOrder]:
    """Every order reference in a decoded JSON reply of any shape, with its status and site id.

    A reply too large or too deep to walk whole gives what was found and a warning in the log;
    `read_order_list` reports it to the caller.
    """
    walk = _walk(payload)
    if walk.stopped or walk.too_deep:
        log.warning(
            "order list not read whole: nodes_visited=%d too_deep=%s stopped=%s",
            min(walk.nodes, MAX_NODES),
            walk.too_deep,
            walk.stopped,
        )
    return list(walk.orders())


def _positive_count(fields: Mapping[str, Any]) -> str | None:
    for key in _COUNT_KEYS:
        text = _short_text(fields.get(key))
        if re.fullmatch(r"\d+", text) and int(text) > 0:
            return text
    return None


def _emptiness(value: Any) -> tuple[bool, str]:
    """Whether `value` is an empty list (in the module docstring's sense), and why not if not."""
    if isinstance(value, list):
        return (not value), "" if not value else "a list whose items are not orders"
    if not isinstance(value, Mapping):
        return False, "not a list or an object"
    if not value:
        return True, ""
    fields = _fields(value)
    count = _positive_count(fields)
    if count is not None:
        return False, f"it counts {count} orders but lists none we can read"
    containers = [v for v in value.values() if isinstance(v, Mapping | list)]
    if not containers:
        return False, "an object with no list in it"
    for inner in containers:
        empty, why = _emptiness(inner)
        if not empty:
            return False, why
    return True, ""


def is_nothing_for_this_isp(payload: Any) -> bool:
    """Whether the reply is UTOPIA's "No valid records found for this ISP" error."""
    if not isinstance(payload, Mapping):
        return False
    error = payload.get("error")
    return isinstance(error, str) and error.strip() == NOTHING_FOR_THIS_ISP


def _accepted(orders: tuple[ListedOrder, ...]) -> tuple[tuple[ListedOrder, ...], int]:
    """The orders whose reference passes `check_order_ref` (with a status on one line and a site
    id only when it is digits), and how many were left out."""
    kept = tuple(
        ListedOrder(
            check_order_ref(order.order_ref),
            one_line(order.status),
            order.site_id if order.site_id.isascii() and order.site_id.isdigit() else "",
        )
        for order in orders
        if is_order_ref(order.order_ref)
    )
    return kept, len(orders) - len(kept)


def read_order_list(payload: Any) -> OrderList:
    """The orders in a decoded reply, and whether it was read whole (see the module docstring).

    Only references of UTOPIA's shape are listed (`check_order_ref`); a reply whose references
    are all of another shape is unreadable, and one with some says how many were left out.
    """
    walk = _walk(payload)
    orders, left_out = _accepted(walk.orders())
    if left_out and not orders:
        note = f"{left_out} references in the reply are not UTOPIA order references; none taken"
        return OrderList((), readable=False, note=note)
    if walk.stopped:
        note = f"the reply is too large: reading stopped after {MAX_NODES} values"
        return OrderList(orders, readable=False, note=note)
    if walk.too_deep:
        note = f"parts of the reply nested deeper than {MAX_DEPTH} levels were not read"
        return OrderList(orders, readable=False, note=note)
    if orders:
        note = f"{left_out} references not of UTOPIA's shape were left out" if left_out else ""
        return OrderList(orders, readable=True, note=note)
    # UTOPIA's "nothing for you": on a list, that is an empty list.
    if is_nothing_for_this_isp(payload):
        return OrderList((), readable=True)
    empty, why = _emptiness(payload)
    if empty:
        return OrderList((), readable=True)
    return OrderList((), readable=False, note=f"no order reference found in the reply ({why})")
