"""Each role against each console action: viewers only read, operators act on orders, admins also
change settings. A refused action changes nothing; every POST needs its CSRF token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.conftest import queue_order
from tests.console.conftest import post_form
from utopia_handler import config_store
from utopia_handler.runtime import Runtime
from utopia_handler.settings import PlanMapping
from utopia_handler.settings.schema import MessageRoute
from utopia_handler.store import queries
from utopia_handler.store.console_models import AuditEntry, Role
from utopia_handler.store.models import MessageAction, Order, OrderState
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

HELD = "UIA202611-004219"  # its plan "2 Gbps" is not mapped: it waits for a person


@dataclass(frozen=True)
class Action:
    name: str
    path: str  # {order}: the held order's id, {version}: a saved settings version, {action}: a
    # routed message's action of the held order
    data: dict[str, str]
    needs: Role
    changes: bool = True  # writes an audit entry when allowed


ACTIONS = [
    Action("retry now", "/orders/{order}/retry", {}, Role.OPERATOR),
    Action("retry from a step", "/orders/{order}/retry", {"from_step": "lookup_contract"}, Role.OPERATOR),
    Action("mark resolved", "/orders/{order}/resolve", {"note": "made by hand in PowerCode"}, Role.OPERATOR),
    Action("ignore", "/orders/{order}/ignore", {"note": "test order from UTOPIA"}, Role.OPERATOR),
    Action("re-send the e-mail", "/orders/{order}/resend", {}, Role.OPERATOR),
    # The held order is not asked about its site, so even an allowed decision changes nothing.
    Action("decide about the site", "/orders/{order}/site-decision", {"decision": "new_customer", "note": "new tenant"}, Role.OPERATOR, changes=False),
    Action("look up for provisioning", "/provision/lookup", {"order_ref": HELD}, Role.OPERATOR, changes=False),
    # The held order is not a recorded one, so even an allowed provisioning changes nothing.
    Action("provision a recorded order", "/reconciliation/orders/{order}/provision", {}, Role.OPERATOR, changes=False),
    Action("save the plan mapping", "/settings/plans", {"plan_text": "2 Gbps", "service_id": "165"}, Role.ADMIN),
    Action("save always-added services", "/settings/services", {"service_ids": "172"}, Role.ADMIN),
    Action("save the ticket template", "/settings/ticket-template", {"source": "<p>{{ customer_name }}</p>"}, Role.ADMIN),
    Action("preview the ticket template", "/settings/ticket-template/preview", {"source": "<p>x</p>"}, Role.ADMIN, changes=False),
    Action("roll back a setting", "/settings/rollback/{version}", {}, Role.ADMIN),
    Action("retry a message's action", "/orders/{order}/messages/{action}/retry", {}, Role.OPERATOR),
    Action("close a message's action", "/orders/{order}/messages/{action}/close", {"note": "added by hand"}, Role.OPERATOR),
    Action("save the routing table", "/settings/messages", {"route_how": "match", "route_text": "Port Complete", "route_action": "note"}, Role.ADMIN),
    Action("save the message ticket template", "/settings/message-ticket-template", {"source": "<p>{{ msg }}</p>"}, Role.ADMIN),
    Action("preview the message ticket template", "/settings/message-ticket-template/preview", {"source": "<p>x</p>"}, Role.ADMIN, changes=False),
    # The held order has no PowerCode customer, so even an allowed send is only shown.
    Action("show a subscriber action's plan", "/orders/{order}/subscriber/suspend", {"note": "unpaid", "step": "send"}, Role.OPERATOR, changes=False),
]  # fmt: skip
PAGES = [
    ("/", Role.VIEWER),
    ("/orders", Role.VIEWER),
    ("/orders/{order}", Role.VIEWER),
    ("/callbacks/not-handled", Role.VIEWER),
    ("/audit", Role.VIEWER),
    ("/reconciliation", Role.VIEWER),
    ("/provision", Role.OPERATOR),
    ("/orders/{order}/provision", Role.OPERATOR),
    ("/orders/{order}/subscriber/cancel", Role.OPERATOR),
    ("/settings", Role.ADMIN),
    ("/settings/plans", Role.ADMIN),
    ("/settings/ticket-template", Role.ADMIN),
    ("/settings/messages", Role.ADMIN),
    ("/settings/message-ticket-template", Role.ADMIN),
]


@pytest.fixture
def held_order(console_runtime: Runtime, worker: Worker) -> dict[str, int]:
    """The held order's id and a saved settings version, for the paths above."""
    queue_order(console_runtime, HELD)
    worker.run_until_idle()
    with console_runtime.store.write() as session:
        # A note for the waiting order: it waits for the customer the order does not have yet.
        queries.record_callback(
            session,
            order_ref=HELD,
            msg="Port Complete",
            event="Port",
            body="{}",
            remote_addr="127.0.0.1",
            now=utcnow(),
            routes=(MessageRoute("note", match="Port Complete"),),
        )
    worker.run_until_idle()
    with console_runtime.store.write() as session:
        order = session.scalar(select(Order).where(Order.order_ref == HELD))
        assert order is not None and order.state == OrderState.WAITING
        action = session.scalar(select(MessageAction.id))
        assert action is not None
        version = config_store.save_plans(
            session, [PlanMapping("250 Mbps", 163)], "setup", utcnow()
        )
        return {"order": order.id, "version": version.id, "action": action}


def _audit_count(runtime: Runtime) -> int:
    with runtime.store.read() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: a.name)
def test_each_role_may_do_only_what_its_role_allows(
    role: Role,
    action: Action,
    held_order: dict[str, int],
    console_runtime: Runtime,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    client = client_as(role)
    before = _audit_count(console_runtime)
    answer = post_form(client, action.path.format(**held_order), action.data)
    allowed = role.allows(action.needs)
    if allowed:
        assert answer.status_code in (200, 303), answer.get_data(as_text=True)[:500]
        assert _audit_count(console_runtime) == before + (1 if action.changes else 0)
    else:
        assert answer.status_code == 403
        assert "Your role does not allow this" in answer.get_data(as_text=True)
        assert _audit_count(console_runtime) == before  # nothing happened


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_each_role_sees_the_pages_its_role_allows(
    role: Role, held_order: dict[str, int], client_as: Callable[[Role], FlaskClient]
) -> None:
    client = client_as(role)
    for path, needs in PAGES:
        answer = client.get(path.format(**held_order))
        assert answer.status_code == (200 if role.allows(needs) else 403), path


def test_viewers_see_no_action_buttons_and_operators_no_settings_links(
    held_order: dict[str, int], client_as: Callable[[Role], FlaskClient]
) -> None:
    page = f"/orders/{held_order['order']}"
    viewer = client_as(Role.VIEWER).get(page).get_data(as_text=True)
    assert "Retry now" not in viewer and "Mark resolved" not in viewer
    operator = client_as(Role.OPERATOR).get(page).get_data(as_text=True)
    assert "Retry now" in operator and "Mark resolved" in operator
    assert "/settings/plans" not in operator
    assert "/settings/plans" in client_as(Role.ADMIN).get("/").get_data(as_text=True)


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: a.name)
def test_every_action_is_refused_without_its_csrf_token(
    action: Action,
    held_order: dict[str, int],
    console_runtime: Runtime,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    client = client_as(Role.ADMIN)  # allowed everything, so only the token is missing
    before = _audit_count(console_runtime)
    answer = client.post(action.path.format(**held_order), data=action.data)
    assert answer.status_code == 400
    assert _audit_count(console_runtime) == before


def test_logged_out_posts_go_to_the_login_page_and_change_nothing(
    app: Flask, held_order: dict[str, int], console_runtime: Runtime
) -> None:
    client = app.test_client()
    from tests.console.conftest import csrf_token

    token = csrf_token(client)  # a valid token, but no login
    answer = client.post(
        f"/orders/{held_order['order']}/ignore", data={"note": "x", "csrf_token": token}
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/login"
    with console_runtime.store.read() as session:
        assert (
            session.scalar(select(Order.state).where(Order.order_ref == HELD)) == OrderState.WAITING
        )
