"""The console's Reconciliation page: anyone sees the runs and the orders recorded but not
provisioned; an operator provisions one (CSRF, audited) and the worker does the rest. A found
order's page says it was found by reconciliation."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import load_order
from tests.console.conftest import post_form
from utopia_handler.emulators import Emulators
from utopia_handler.emulators.seed import MISSED_DEMO_ORDER
from utopia_handler.reconcile import FOUND_NOTE, reconcile
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import AuditEntry, Role
from utopia_handler.store.models import OrderState
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

PLAIN = "UIA202611-004217"
MISSED, MISSED_CONTRACT = MISSED_DEMO_ORDER


def test_viewers_see_runs_and_recorded_orders_but_no_provision_button(
    console_runtime: Runtime, emulators: Emulators, client_as: Callable[[Role], FlaskClient]
) -> None:
    reconcile(console_runtime, utcnow())  # the baseline
    emulators.utopia.order_list_shape = "html"
    reconcile(console_runtime, utcnow())

    viewer = client_as(Role.VIEWER)
    home = viewer.get("/").get_data(as_text=True)
    assert 'href="/reconciliation"' in home
    page = viewer.get("/reconciliation")
    text = page.get_data(as_text=True)

    assert page.status_code == 200
    assert "Recorded, not provisioned" in text and PLAIN in text
    assert "baseline" in text and "unreadable" in text
    assert "could not read UTOPIA&#39;s order list: the reply is not JSON (text/html)" in text
    assert "No run has read every list" not in text  # the baseline did
    assert ">Provision<" not in text


def test_an_operator_provisions_a_recorded_order(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    reconcile(console_runtime, utcnow())
    operator = client_as(Role.OPERATOR)
    order_id = load_order(console_runtime, PLAIN).id
    assert ">Provision<" in operator.get("/reconciliation").get_data(as_text=True)
    # Without the form's token nothing happens.
    assert operator.post(f"/reconciliation/orders/{order_id}/provision").status_code == 400
    assert load_order(console_runtime, PLAIN).state == OrderState.RECORDED

    answer = post_form(operator, f"/reconciliation/orders/{order_id}/provision")

    assert answer.status_code == 303 and answer.headers["Location"] == "/reconciliation"
    shown = operator.get("/reconciliation").get_data(as_text=True)
    assert f"Order {PLAIN} is queued for provisioning." in shown
    assert load_order(console_runtime, PLAIN).state == OrderState.RECEIVED
    with console_runtime.store.read() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.order_ref == PLAIN))
    assert (entry.actor, entry.action) == ("operator", "provision_recorded")
    worker.run_until_idle()
    assert load_order(console_runtime, PLAIN).state == OrderState.DONE

    again = post_form(operator, f"/reconciliation/orders/{order_id}/provision")
    assert "Not done: order UIA202611-004217 is done, not recorded" in operator.get(
        again.headers["Location"]
    ).get_data(as_text=True)


def test_a_recorded_orders_page_offers_provision_and_comes_back_to_it(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    reconcile(console_runtime, utcnow())
    operator = client_as(Role.OPERATOR)
    order_id = load_order(console_runtime, PLAIN).id
    page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert 'name="back" value="order"' in page

    answer = post_form(operator, f"/reconciliation/orders/{order_id}/provision", {"back": "order"})

    assert answer.headers["Location"] == f"/orders/{order_id}"
    assert load_order(console_runtime, PLAIN).state == OrderState.RECEIVED


def test_a_found_orders_story_says_reconciliation_found_it(
    console_runtime: Runtime, emulators: Emulators, client_as: Callable[[Role], FlaskClient]
) -> None:
    reconcile(console_runtime, utcnow())
    emulators.utopia.add_order(MISSED, MISSED_CONTRACT)
    reconcile(console_runtime, utcnow())

    page = client_as(Role.VIEWER).get(f"/orders/{load_order(console_runtime, MISSED).id}")
    text = page.get_data(as_text=True)

    assert "reconciliation: queued for provisioning" in text and "automatic" in text
    assert FOUND_NOTE in text
    runs_page = client_as(Role.VIEWER).get("/reconciliation").get_data(as_text=True)
    assert f"queued: {MISSED}" in runs_page
