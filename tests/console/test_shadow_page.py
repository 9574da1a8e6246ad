"""The console's shadow report: viewers read what would have been sent, operators provision."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from tests.conftest import load_order
from tests.console.conftest import post_form
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.console_models import Role
from utopia_handler.store.models import OrderState
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

ORDER = "UIA202611-004217"


@pytest.fixture
def console_runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    """A console running in shadow mode (the test client speaks plain http)."""
    return make_runtime(SESSION_COOKIE_SECURE="false", SHADOW_MODE="true")


@pytest.fixture
def shadowed(console_runtime: Runtime, worker: Worker) -> int:
    with console_runtime.store.write() as session:
        queries.record_callback(
            session,
            order_ref=ORDER,
            msg="Project New Order",
            event="Project Update",
            body="{}",
            remote_addr="127.0.0.1",
            now=utcnow(),
            shadow=True,
        )
    worker.run_until_idle()
    return load_order(console_runtime, ORDER).id


def test_the_order_page_shows_what_would_have_been_sent(
    client_as: Callable[[Role], FlaskClient], shadowed: int
) -> None:
    page = client_as(Role.VIEWER).get(f"/orders/{shadowed}").get_data(as_text=True)

    assert "Shadow mode: what would have been sent" in page
    assert "<strong>createCustomer</strong>" in page
    assert "<code>customerPortalPassword</code></dt><dd>********</dd>" in page
    assert "in PowerCode</a>" not in page  # no link to a made-up customer


def test_viewers_read_the_report_and_operators_provision_for_real(
    client_as: Callable[[Role], FlaskClient],
    shadowed: int,
    console_runtime: Runtime,
    emulators: Emulators,
) -> None:
    viewer = client_as(Role.VIEWER)
    report = viewer.get("/shadow").get_data(as_text=True)
    assert ORDER in report and "Shadow mode is <strong>on</strong>" in report
    assert 'href="/shadow"' in report  # in the navigation while shadow mode is on
    assert post_form(viewer, "/shadow/provision", {"order_ref": ORDER}).status_code == 403

    answer = post_form(client_as(Role.OPERATOR), "/shadow/provision", {"all": "1"})

    assert answer.status_code == 303
    order = load_order(console_runtime, ORDER)
    # Queued for real, but it waits: this console still runs in shadow mode.
    assert (order.shadow, order.state, order.customer_id) == (False, OrderState.IN_PROGRESS, None)
    assert len(emulators.powercode.customers) == 3
