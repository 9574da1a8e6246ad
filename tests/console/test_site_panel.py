"""The site panel on the order page and the tools page, over the real stand-ins."""

from __future__ import annotations

import time
from collections.abc import Callable

from click.testing import CliRunner
from flask.testing import FlaskClient

from tests.conftest import queue_order
from utopia_handler.cli import cli
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import Role
from utopia_handler.store.models import Order
from utopia_handler.worker import Worker

ORDER = "UIA202611-004217"  # site 204817 in the demo seed


def _order_id(runtime: Runtime, ref: str) -> int:
    with runtime.store.read() as db:
        order = db.query(Order).filter_by(order_ref=ref).one()
        return order.id


def _provisioned(runtime: Runtime, worker: Worker) -> int:
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    return _order_id(runtime, ORDER)


def test_a_viewer_sees_the_site_panel_of_an_order(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    order_id = _provisioned(console_runtime, worker)
    customer_id = next(
        cid for cid, c in emulators.powercode.customers.items() if c.get("extAccountID") == "204817"
    )
    emulators.powercode.add_equipment(customer_id, "00:1a:2b:3c:00:00")
    viewer = client_as(Role.VIEWER)
    page = viewer.get(f"/orders/{order_id}").get_data(as_text=True)
    assert f"/orders/{order_id}/site" in page and "site_panel.js" in page
    panel = viewer.get(f"/orders/{order_id}/site").get_data(as_text=True)
    assert "C204817" in panel  # UTOPIA's cid from the service look-up
    assert "Active" in panel and "250 Mbps" in panel
    assert "00:1a:2b:3c:00:00" in panel  # ONT MAC, its macsearch row and PowerCode's equipment
    assert "PowerCode services" in panel and "PowerCode equipment" in panel
    assert "<details><summary>Raw reply</summary>" in panel  # access check: unknown shape


def test_errors_are_words_and_a_slow_utopia_does_not_hang_the_panel(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    order_id = _provisioned(console_runtime, worker)
    console_runtime.site_lookup().timeout = 0.5
    emulators.utopia.latency = 3.0
    viewer = client_as(Role.VIEWER)
    started = time.monotonic()
    panel = viewer.get(f"/orders/{order_id}/site?fresh=1").get_data(as_text=True)
    assert time.monotonic() - started < 2.9
    assert "no answer within 0.5 s" in panel or "read timed out" in panel
    assert "PowerCode customer" in panel
    emulators.utopia.latency = 0.0
    emulators.utopia.faults.add_from_json({"target": "service", "kind": "fail", "status": 400})
    panel = viewer.get(f"/orders/{order_id}/site?fresh=1").get_data(as_text=True)
    assert "Could not read this: service refused: HTTP 400" in panel


def test_the_tools_page_looks_things_up_and_refuses_unknown_tools(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    viewer = client_as(Role.VIEWER)
    found = viewer.get("/tools?kind=mac&q=00:1a:2b:3c:00:00").get_data(as_text=True)
    assert "204817" in found
    assert "UIA202611-004217" in viewer.get(f"/tools?kind=contract&q={ORDER}").get_data(True)
    missing = viewer.get("/tools?kind=utopia_customer&q=NOPE").get_data(as_text=True)
    assert "nothing found" in missing or "No valid records" in missing
    assert viewer.get("/tools?kind=updateCustomerStatus&q=1").status_code == 404
    assert viewer.get("/tools?kind=site&q=204817").headers["Location"].endswith("/sites/204817")
    assert "C204817" in viewer.get("/sites/204817").get_data(as_text=True)


def test_the_cli_prints_the_site_panel(console_runtime: Runtime, base_env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["site", "204817"], env=base_env)
    assert result.exit_code == 0, result.output
    assert "UTOPIA cid C204817" in result.output
    assert "== UTOPIA service (UTOPIA)" in result.output
