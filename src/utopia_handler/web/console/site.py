"""The site panel (on every order page) and the tools page: read-only look-ups, viewers may look.

No form here sends an arbitrary API action: each look-up is one fixed, read-only client method.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from utopia_handler.clients.errors import OutsideError
from utopia_handler.site_panel import SiteLookup
from utopia_handler.store.models import Order
from utopia_handler.web.console.common import bp, runtime


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


bp.add_app_template_filter(_pretty, "pretty_json")


@bp.get("/orders/<int:order_id>/site")
def order_site_panel(order_id: int) -> ResponseReturnValue:
    """The site panel of an order, as an HTML fragment the order page loads after itself."""
    with runtime().store.read() as db:
        order = db.get(Order, order_id)
        if order is None:
            abort(404)
        site_id = order.site_id or ""
    if not site_id:
        return render_template("console/_site_panel.html", panel=None, site_id="")
    panel = runtime().site_lookup().panel(site_id, fresh=request.args.get("fresh") == "1")
    return render_template("console/_site_panel.html", panel=panel, site_id=site_id)


@bp.get("/sites/<site_id>")
def site_page(site_id: str) -> ResponseReturnValue:
    """The site panel as a page of its own (from the tools page or a link)."""
    if not site_id.isdigit() or len(site_id) > 32:
        abort(404)
    panel = runtime().site_lookup().panel(site_id, fresh=request.args.get("fresh") == "1")
    return render_template("console/site.html", panel=panel, site_id=site_id)


def _lookups(look: SiteLookup) -> dict[str, tuple[str, str, Callable[[str], Any]]]:
    """Each tool: (label, what to type, the one read-only call it makes)."""
    ut, pc = look.utopia, look.powercode
    return {
        "contract": ("UTOPIA contract by order ref", "UIA202611-000001", ut.lookup_contract),
        "utopia_customer": ("UTOPIA customer by cid", "cid", lambda v: ut.customer(v).raw),
        "mac": ("UTOPIA site by MAC", "aa:bb:cc:dd:ee:ff", ut.mac_search),
        "products": ("UTOPIA products", "(nothing)", lambda v: ut.products().raw),
        "projects": ("UTOPIA projects by site", "site id", lambda v: ut.projects(site_id=v).raw),
        "project": ("UTOPIA project detail", "project id", lambda v: ut.project_detail(v).raw),
        "outage": ("UTOPIA outage ticket", "ticket id", lambda v: ut.outage_ticket(v).raw),
        "pc_search": ("PowerCode customer search", "name", pc.search_customers),
        "pc_customer": (
            "PowerCode customer by id",
            "customer id",
            lambda v: pc.read_customer(int(v)),
        ),
        "pc_site": ("PowerCode customer by site id", "site id", pc.find_customer_by_site),
        "pc_ticket": ("PowerCode ticket by id", "ticket id", pc.read_ticket),
    }


@bp.get("/tools")
def tools_page() -> ResponseReturnValue:
    """Look-ups not tied to an order; each form runs one fixed read-only call."""
    look = runtime().site_lookup()
    tools = _lookups(look)
    kind = request.args.get("kind", "")
    value = request.args.get("q", "").strip()[:200]
    if kind == "site" and value.isdigit() and len(value) <= 32:
        return redirect(url_for("console.site_page", site_id=value))
    result: Any = None
    error = ""
    if kind:
        if kind not in tools:
            abort(404)
        call = tools[kind][2]
        try:
            if not value and kind != "products":
                raise ValueError("type what to look up")
            result = look.run(lambda: call(value))
        except OutsideError as failure:
            error = failure.message
        except ValueError as failure:
            error = str(failure) or "not a valid value"
        except TimeoutError:
            error = f"no answer within {look.timeout:g} s; try again in a moment"
        if result is None and not error:
            error = "nothing found"
    shown = _plain(result)
    return render_template(
        "console/tools.html", tools=tools, kind=kind, value=value, result=shown, error=error
    )


def _plain(value: Any) -> Any:
    """A record, a list of records or a raw reply as plain JSON types, for showing."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_plain(item) for item in value]
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    if hasattr(value, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    return value
