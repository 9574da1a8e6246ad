"""What UTOPIA and PowerCode say about one site, gathered in parallel with short timeouts.

The site panel on each order page, the tools page and `utopia-handler site SITEID` all call
`SiteLookup.panel`. Every call runs at once in a small thread pool with its own short timeout
(PANEL_TIMEOUT), the whole panel waits at most a little longer than that, and a finished panel is
kept for CACHE_SECONDS, so a slow UTOPIA makes the panel say so instead of hanging the page.
Only reads are made here. Each section holds a readable table for what we know of a reply's
shape and the raw reply for what we do not; an error becomes words in the section.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from utopia_handler.clients.errors import OutsideError
from utopia_handler.clients.powercode import PowerCodeClient
from utopia_handler.clients.utopia import UtopiaClient
from utopia_handler.settings import Settings, Timeouts

#: Each outside call's connect and read timeout on the panel, in seconds.
PANEL_TIMEOUT = 3.0
#: How long a gathered panel is shown again without asking anew.
CACHE_SECONDS = 30.0
#: At most this many ONT MACs are looked up with macsearch.
MAX_MAC_SEARCHES = 3


@dataclass(frozen=True)
class Section:
    """One look-up's result: a table of what we could read, the raw reply, or an error."""

    title: str
    source: str  # "UTOPIA" or "PowerCode"
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    raw: Any = None
    error: str = ""
    empty: str = ""  # what to say when there is nothing (and no error)


@dataclass(frozen=True)
class Panel:
    """Everything gathered about one site."""

    site_id: str
    sections: tuple[Section, ...]
    cid: str = ""
    powercode_customer_id: int | None = None
    gathered_at: float = field(default=0.0, compare=False)

    def section(self, title: str) -> Section:
        """The section titled `title` (KeyError when there is none)."""
        for section in self.sections:
            if section.title == title:
                return section
        raise KeyError(title)


def _words(error: BaseException, timeout: float) -> str:
    if isinstance(error, FutureTimeout):
        return f"no answer within {timeout:g} s; try again in a moment"
    if isinstance(error, OutsideError):
        return error.message
    if isinstance(error, ValueError):
        return str(error)
    return f"could not be read ({type(error).__name__})"


class SiteLookup:
    """Short-timeout, read-only clients and a small cache, for the site panel and the tools page."""

    def __init__(
        self,
        utopia: UtopiaClient,
        powercode: PowerCodeClient,
        *,
        timeout: float = PANEL_TIMEOUT,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.utopia = utopia
        self.powercode = powercode
        self.timeout = timeout
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, Panel] = {}
        self._lock = threading.Lock()
        # Threads left waiting on a slow server finish on their own, bounded by the timeout.
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="site-panel")

    @classmethod
    def from_settings(cls, settings: Settings, timeout: float = PANEL_TIMEOUT) -> SiteLookup:
        """Read-only clients of their own, with `timeout` for connect and read."""
        short = Timeouts(connect=timeout, read=timeout)
        utopia_key = settings.utopia.api_key.reveal() if settings.utopia.api_key else ""
        pc_key = settings.powercode.api_key.reveal() if settings.powercode.api_key else ""
        utopia = UtopiaClient(
            settings.utopia.url, utopia_key, timeouts=short, network=settings.utopia.network
        )
        powercode = PowerCodeClient(
            settings.powercode.api_url,
            settings.powercode.uapi_url,
            pc_key,
            verify=settings.powercode.verify,
            timeouts=short,
        )
        return cls(utopia, powercode, timeout=timeout)

    def close(self) -> None:
        """Stop the pool and close the clients."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.utopia.close()
        self.powercode.close()

    def run(self, call: Callable[[], Any]) -> Any:
        """One call with the panel's overall wait; raises what the call raised, or a timeout."""
        return self._pool.submit(call).result(timeout=self.timeout + 1.0)

    def panel(self, site_id: str, *, fresh: bool = False) -> Panel:
        """The panel for `site_id`, from the cache when it is recent and `fresh` is not asked."""
        site_id = site_id.strip()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(site_id)
        if cached is not None and not fresh and now - cached.gathered_at < self._cache_seconds:
            return cached
        panel = self._gather(site_id)
        with self._lock:
            self._cache[site_id] = panel
        return panel

    def _gather(self, site_id: str) -> Panel:
        deadline = self._clock() + self.timeout + 1.0
        ut, pc = self.utopia, self.powercode
        first: dict[str, Future[Any]] = {
            "service": self._pool.submit(ut.site_service, site_id),
            "ont": self._pool.submit(ut.ont_view, site_id),
            "access": self._pool.submit(ut.check_access, site_id),
            "outages": self._pool.submit(lambda: ut.outage_tickets(site_id=site_id)),
            "projects": self._pool.submit(lambda: ut.projects(site_id=site_id)),
            "customer": self._pool.submit(pc.find_customer_by_site, site_id),
        }
        got = {name: self._wait(future, deadline) for name, future in first.items()}
        ont = got["ont"]
        macs = list(ont.macs)[:MAX_MAC_SEARCHES] if not isinstance(ont, BaseException) else []
        customer = got["customer"]
        customer_id = (
            customer.customer_id
            if customer is not None and not isinstance(customer, BaseException)
            else None
        )
        second: dict[str, Future[Any]] = {
            f"mac:{mac}": self._pool.submit(ut.mac_search, mac) for mac in macs
        }
        if customer_id is not None:
            second["services"] = self._pool.submit(pc.list_services, customer_id)
            second["tags"] = self._pool.submit(pc.list_tag_ids, customer_id)
            second["equipment"] = self._pool.submit(pc.read_customer_equipment, customer_id)
        deadline = self._clock() + self.timeout + 1.0
        later = {name: self._wait(future, deadline) for name, future in second.items()}
        service = got["service"]
        cid = "" if isinstance(service, BaseException) else service.cid
        sections = [
            self._service_section(service),
            self._ont_section(ont),
            self._mac_section(macs, later),
            self._raw_section("Access check", got["access"]),
            self._raw_section("Outage tickets", got["outages"]),
            self._raw_section("Projects", got["projects"]),
            self._customer_section(customer),
            *self._customer_details(customer_id, later),
        ]
        return Panel(site_id, tuple(sections), cid, customer_id, gathered_at=self._clock())

    def _wait(self, future: Future[Any], deadline: float) -> Any:
        """The call's result, or the exception it raised (a timeout when it ran too long)."""
        try:
            return future.result(timeout=max(0.0, deadline - self._clock()))
        except Exception as error:  # the section shows it in words
            return error

    def _error(self, title: str, source: str, error: BaseException) -> Section:
        return Section(title, source, error=_words(error, self.timeout))

    def _service_section(self, service: Any) -> Section:
        title = "UTOPIA service"
        if isinstance(service, BaseException):
            return self._error(title, "UTOPIA", service)
        rows = tuple(
            (line.status, line.product, line.cid, line.uia_id, line.customer_name)
            for line in service.lines
        )
        return Section(
            title,
            "UTOPIA",
            ("Status", "Product", "cid", "Service id (uiaid)", "Customer"),
            rows,
            raw=service.raw,
            empty="UTOPIA has no service for this site for this provider."
            if not service.found
            else "No service line could be read from the reply (see the raw reply).",
        )

    def _ont_section(self, ont: Any) -> Section:
        title = "ONT MACs (apview)"
        if isinstance(ont, BaseException):
            return self._error(title, "UTOPIA", ont)
        return Section(
            title,
            "UTOPIA",
            ("MAC",),
            tuple((mac,) for mac in ont.macs),
            raw=ont.raw,
            empty="No MAC seen on the ONT port.",
        )

    def _mac_section(self, macs: list[str], later: dict[str, Any]) -> Section:
        rows = []
        errors = []
        for mac in macs:
            found = later.get(f"mac:{mac}")
            if isinstance(found, BaseException):
                errors.append(f"{mac}: {_words(found, self.timeout)}")
            elif found is not None and found.found:
                rows.append((mac, found.site_id, found.vlan, found.first_seen, found.last_seen))
            else:
                rows.append((mac, "not found", "", "", ""))
        return Section(
            "Where the MACs were last seen (macsearch)",
            "UTOPIA",
            ("MAC", "Site", "VLAN", "First seen", "Last seen"),
            tuple(rows),
            error="; ".join(errors),
            empty="No MAC to look up.",
        )

    def _raw_section(self, title: str, reply: Any) -> Section:
        if isinstance(reply, BaseException):
            return self._error(title, "UTOPIA", reply)
        empty = "" if reply.found else "UTOPIA has nothing for this site for this provider."
        return Section(title, "UTOPIA", raw=reply.raw if reply.found else None, empty=empty)

    def _customer_section(self, customer: Any) -> Section:
        title = "PowerCode customer"
        if isinstance(customer, BaseException):
            return self._error(title, "PowerCode", customer)
        if customer is None:
            return Section(title, "PowerCode", empty="No PowerCode customer has this site id.")
        name = customer.company_name or f"{customer.first_name} {customer.last_name}".strip()
        return Section(
            title,
            "PowerCode",
            ("Id", "Name", "Status", "Street", "City"),
            ((str(customer.customer_id), name, customer.status, customer.street, customer.city),),
        )

    def _customer_details(self, customer_id: int | None, later: dict[str, Any]) -> list[Section]:
        if customer_id is None:
            return []
        sections = []
        services = later.get("services")
        if isinstance(services, BaseException):
            sections.append(self._error("PowerCode services", "PowerCode", services))
        else:
            sections.append(
                Section(
                    "PowerCode services",
                    "PowerCode",
                    ("Service id", "Description", "Quantity", "Internet"),
                    tuple(
                        (str(s.service_id), s.description, s.quantity, "yes" if s.internet else "")
                        for s in services or []
                    ),
                    empty="No services.",
                )
            )
        tags = later.get("tags")
        if isinstance(tags, BaseException):
            sections.append(self._error("PowerCode tags", "PowerCode", tags))
        else:
            rows = tuple((str(t),) for t in tags or [])
            sections.append(
                Section("PowerCode tags", "PowerCode", ("Tag id",), rows, empty="None.")
            )
        equipment = later.get("equipment")
        if isinstance(equipment, BaseException):
            sections.append(self._error("PowerCode equipment", "PowerCode", equipment))
        else:
            sections.append(
                Section(
                    "PowerCode equipment",
                    "PowerCode",
                    ("Name", "MAC"),
                    tuple((e.name, e.mac) for e in equipment or []),
                    raw=[dict(e.raw) for e in equipment or []] or None,
                    empty="No equipment.",
                )
            )
        return sections


def panel_text(panel: Panel) -> str:
    """The panel as plain text, for the CLI."""
    out = [f"Site {panel.site_id}" + (f" (UTOPIA cid {panel.cid})" if panel.cid else "")]
    for section in panel.sections:
        out.append("")
        out.append(f"== {section.title} ({section.source})")
        if section.error:
            out.append(f"  error: {section.error}")
        if section.rows:
            out.append("  " + " | ".join(section.headers))
            out += ["  " + " | ".join(row) for row in section.rows]
        elif section.raw is not None:
            out.append("  " + json.dumps(section.raw, indent=2).replace("\n", "\n  "))
        elif not section.error and section.empty:
            out.append(f"  {section.empty}")
    return "\n".join(out)
