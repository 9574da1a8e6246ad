"""What UTOPIA says about a subscriber's site: small records for the few known facts, raw for the rest.

The reference records only a few shapes (service: `data[]` with a `customer` block holding `cid`;
apview: MACs at `result[0].eth.eth1.macs[]`, the first 17 characters; macsearch: `status`,
`siteid`, `vlan`, `firstseen`, `lastseen`). Everything else, and the replies of the writes, has
never been seen: each record keeps the raw reply so a person can read what came back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from utopia_handler.clients.http import as_records, as_text, get_field

MAC_LENGTH = 17


@dataclass(frozen=True)
class RawReply:
    """A reply read as-is; `found` is False when UTOPIA said it has nothing for this provider."""

    found: bool
    raw: Any


@dataclass(frozen=True)
class ServiceLine:
    """One service at a site; the field names beyond `customer.cid` are read tolerantly."""

    site_id: str
    status: str
    product: str
    uia_id: str
    cid: str
    customer_name: str


@dataclass(frozen=True)
class SiteService:
    """The `service` look-up of a site: its lines (possibly none) and the raw reply."""

    found: bool
    lines: tuple[ServiceLine, ...]
    raw: Any

    @property
    def cid(self) -> str:
        """UTOPIA's customer id for the site, when exactly one is named."""
        cids = {line.cid for line in self.lines if line.cid}
        return cids.pop() if len(cids) == 1 else ""

    @property
    def status(self) -> str:
        """The first line's status ("" when none)."""
        return self.lines[0].status if self.lines else ""


@dataclass(frozen=True)
class OntView:
    """The MACs seen on the site's ONT port (apview)."""

    found: bool
    macs: tuple[str, ...]
    raw: Any


@dataclass(frozen=True)
class MacSighting:
    """Where UTOPIA last saw a MAC (macsearch); `found` False for status `notfound`."""

    found: bool
    site_id: str
    vlan: str
    first_seen: str
    last_seen: str
    raw: Any


def _first_of(block: Any, *names: str) -> str:
    if not isinstance(block, dict):
        return ""
    for name in names:
        value = as_text(get_field(block, name))
        if value:
            return value
    return ""


def parse_service(found: bool, payload: Any) -> SiteService:
    """Read a `service` reply; unknown fields are ignored, missing ones become ""."""
    rows = as_records(get_field(payload, "data")) if isinstance(payload, dict) else []
    if not rows and isinstance(payload, list):
        rows = as_records(payload)
    lines = []
    for row in rows:
        customer = get_field(row, "customer")
        first = _first_of(customer, "firstname", "first_name")
        last = _first_of(customer, "lastname", "last_name")
        lines.append(
            ServiceLine(
                site_id=_first_of(row, "siteid"),
                # GUESS: status/product/uiaid names are not recorded anywhere.
                status=_first_of(row, "status", "servicestatus", "state"),
                product=_first_of(row, "product", "productname", "description", "speed"),
                uia_id=_first_of(row, "uiaid", "serviceid", "servid", "id"),
                cid=_first_of(customer, "cid", "customerid", "id") or _first_of(row, "cid"),
                customer_name=" ".join(part for part in (first, last) if part),
            )
        )
    return SiteService(found, tuple(lines), payload)


def parse_apview(found: bool, payload: Any) -> OntView:
    """Read an `apview` reply: the MACs at result[0].eth.eth1.macs[], first 17 characters."""
    macs: list[str] = []
    results = as_records(get_field(payload, "result")) if isinstance(payload, dict) else []
    if results:
        eth = get_field(results[0], "eth")
        eth1 = get_field(eth, "eth1") if isinstance(eth, dict) else None
        listed = get_field(eth1, "macs") if isinstance(eth1, dict) else None
        if isinstance(listed, list):
            macs = [as_text(m)[:MAC_LENGTH] for m in listed if as_text(m)]
    return OntView(found, tuple(macs), payload)


def parse_macsearch(payload: Any) -> MacSighting:
    """Read a `macsearch` reply; any status but `success` counts as not found."""
    block = payload if isinstance(payload, dict) else {}
    return MacSighting(
        found=as_text(get_field(block, "status")).lower() == "success",
        site_id=as_text(get_field(block, "siteid")),
        vlan=as_text(get_field(block, "vlan")),
        first_seen=as_text(get_field(block, "firstseen")),
        last_seen=as_text(get_field(block, "lastseen")),
        raw=payload,
    )
