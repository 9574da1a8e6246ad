"""Provisioning by hand: look up at UTOPIA, correct, choose plans, and the usual steps run."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import CALLBACK_TOKEN, load_order, new_order, queue_order
from tests.console.conftest import post_form
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.console_models import AuditEntry, Role
from utopia_handler.store.models import OrderState
from utopia_handler.worker import Worker

PLAIN = "UIA202611-004217"  # Avery Lindqvist, 1432 S CANYON VIEW DR, Orem, Utah 84058
HELD = "UIA202611-004219"  # Dale Whitfield: "2 Gbps" is not mapped
UNKNOWN = "UIA202611-999999"


def _form(page: TestResponse) -> dict[str, str]:
    """The review form's fields as the page filled them in."""
    html = page.get_data(as_text=True)
    fields = dict(re.findall(r'<input id="f-[a-z_]+" name="([a-z_]+)" value="([^"]*)"', html))
    blob = re.search(r'name="contract" value="([^"]+)"', html)
    assert blob is not None, html[:2000]
    return {**fields, "contract": blob.group(1)}


def _customer(emulators: Emulators, site_id: str) -> dict[str, object]:
    [found] = [
        c for c in emulators.powercode.customers.values() if c.get("extAccountID") == site_id
    ]
    return found


def test_an_order_whose_callback_never_came_is_corrected_and_provisioned(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    operator = client_as(Role.OPERATOR)
    looked_up = post_form(operator, "/provision/lookup", {"order_ref": PLAIN})
    assert looked_up.status_code == 200
    form = _form(looked_up)
    assert form["first_name"] == "Avery" and form["state"] == "Utah" and form["zip"] == "84058"
    assert 'value="250 Mbps" checked' in looked_up.get_data(as_text=True)  # mapped from the items

    form.update(phone="(801) 555-0199", unit="Apt 3", state="UT")
    submitted = post_form(operator, "/provision/submit", {**form, "plan": "1 Gbps"})
    assert submitted.status_code == 303
    order = load_order(console_runtime, PLAIN)
    assert submitted.headers["Location"] == f"/orders/{order.id}"
    assert order.state == OrderState.RECEIVED and order.step.value == "find_customer"

    worker.run_until_idle()
    order = load_order(console_runtime, PLAIN)
    assert order.state == OrderState.DONE
    customer = _customer(emulators, "204817")
    assert customer["physicalStreet"] == "1432 S CANYON VIEW DR Apt 3"
    assert customer["phone"] == [{"Type": "Home", "Number": "8015550199"}]
    assert emulators.powercode.customer_services[order.customer_id or 0] == {164: 1, 172: 1}
    with console_runtime.store.read() as session:
        [entry] = session.query(AuditEntry).filter_by(action="provision_by_hand").all()
    assert entry.actor == "operator" and entry.order_ref == PLAIN
    # "Utah" sent back as "UT" is the same state: no correction claimed for it.
    assert entry.detail is not None and entry.detail.endswith("corrected: phone, unit or apartment")

    # The callback arriving late is a repeat: it starts nothing new.
    late = operator.application.test_client().post(
        "/api-callback", query_string={"token": CALLBACK_TOKEN}, json=new_order(PLAIN)
    )
    assert late.get_json()["status"] == "repeat"
    assert worker.run_until_idle() == 0


def test_fields_that_are_missing_or_wrong_are_named_and_nothing_is_queued(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    operator = client_as(Role.OPERATOR)
    form = _form(post_form(operator, "/provision/lookup", {"order_ref": PLAIN}))
    form.update(first_name="", state="Narnia", zip="840", email="not-an-address", phone="12")
    answer = post_form(operator, "/provision/submit", form)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    for problem in (
        "First name is required",
        "State must be a US state",
        "ZIP code must be 5 digits",
        "E-mail is not an address",
        "Phone must have 10 digits",
    ):
        assert problem in page, problem
    assert 'value="Narnia"' in page  # what the person typed is kept for them to fix
    with console_runtime.store.read() as session:
        assert queries.find_order(session, PLAIN) is None


def test_a_held_order_is_corrected_from_its_stored_contract_and_finished(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    queue_order(console_runtime, HELD)
    worker.run_until_idle()
    held = load_order(console_runtime, HELD)
    assert held.state == OrderState.WAITING
    operator = client_as(Role.OPERATOR)
    review = operator.get(f"/orders/{held.id}/provision")
    assert "as stored on the order" in review.get_data(as_text=True)
    submitted = post_form(operator, "/provision/submit", {**_form(review), "plan": "1 Gbps"})
    assert submitted.status_code == 303
    with console_runtime.store.read() as session:
        [entry] = session.query(AuditEntry).filter_by(action="provision_by_hand").all()
    assert entry.detail is not None and "corrected" not in entry.detail  # nothing was changed
    worker.run_until_idle()
    order = load_order(console_runtime, HELD)
    assert order.state == OrderState.DONE
    assert order.run == 2
    assert emulators.powercode.customer_services[order.customer_id or 0] == {164: 1, 172: 1}


def test_an_order_ref_typed_in_lower_case_is_looked_up_in_upper_case(
    client_as: Callable[[Role], FlaskClient],
) -> None:
    operator = client_as(Role.OPERATOR)
    looked_up = post_form(operator, "/provision/lookup", {"order_ref": " uia202611-004217 "})
    assert looked_up.status_code == 200
    page = looked_up.get_data(as_text=True)
    assert f"Review order {PLAIN}" in page and "uia202611" not in page
    assert _form(looked_up)["first_name"] == "Avery"


def test_a_changed_contract_in_the_form_is_refused(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    operator = client_as(Role.OPERATOR)
    form = _form(post_form(operator, "/provision/lookup", {"order_ref": PLAIN}))
    form["contract"] = form["contract"][:-3] + "abc"
    answer = post_form(operator, "/provision/submit", form)
    assert answer.status_code == 303 and answer.headers["Location"] == "/provision"
    assert "expired or was altered" in operator.get("/provision").get_data(as_text=True)
    with console_runtime.store.read() as session:
        assert queries.find_order(session, PLAIN) is None


def test_an_order_that_made_its_customer_is_not_provisioned_again(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    queue_order(console_runtime, PLAIN)
    worker.run_until_idle()
    operator = client_as(Role.OPERATOR)
    form = _form(post_form(operator, "/provision/lookup", {"order_ref": PLAIN}))
    answer = post_form(operator, "/provision/submit", {**form, "plan": "1 Gbps"})
    assert answer.status_code == 409
    assert "is done already" in answer.get_data(as_text=True)
    assert worker.run_until_idle() == 0
    _customer(emulators, "204817")  # still exactly one customer for the site


def test_looking_up_an_order_utopia_does_not_know(
    client_as: Callable[[Role], FlaskClient],
) -> None:
    operator = client_as(Role.OPERATOR)
    answer = post_form(operator, "/provision/lookup", {"order_ref": UNKNOWN})
    assert answer.status_code == 502
    assert f"UTOPIA has no record of order {UNKNOWN}" in answer.get_data(as_text=True)
    bad = post_form(operator, "/provision/lookup", {"order_ref": "UIA 1; DROP"})
    assert bad.status_code == 422
