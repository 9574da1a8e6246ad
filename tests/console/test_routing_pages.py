"""The console's routing table of UTOPIA messages and the message ticket template: admins edit
them as versions with history and rollback, the next message follows the version in force, and
an order's page shows its routed messages with what a person can do about them."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask.testing import FlaskClient

from tests.conftest import CALLBACK_TOKEN, load_order, queue_order
from tests.console.conftest import csrf_token, post_form
from utopia_handler import config_store
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import ConfigKind, ConfigVersion, Role
from utopia_handler.store.models import MessageActionState, OrderState
from utopia_handler.worker import Worker

PLAIN = "UIA202611-004217"


def _versions(runtime: Runtime, kind: ConfigKind) -> list[ConfigVersion]:
    with runtime.store.read() as session:
        return config_store.history(session, kind)


def _callback(client: FlaskClient, msg: str, ref: str = PLAIN, event: str = "Update") -> str:
    answer = client.post(
        f"/api-callback?token={CALLBACK_TOKEN}", json={"orderref": ref, "msg": msg, "event": event}
    )
    assert answer.status_code == 200
    status: str = answer.get_json()["status"]
    return status


def _rows(*rows: tuple[str, str, str]) -> dict[str, object]:
    return {
        "route_how": [r[0] for r in rows],
        "route_text": [r[1] for r in rows],
        "route_action": [r[2] for r in rows],
    }


def test_an_admin_saves_a_routing_table_that_the_next_message_follows(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    admin = client_as(Role.ADMIN)
    assert _callback(admin, "Port Complete") == "not_handled"
    page = admin.get("/settings/messages").get_data(as_text=True)
    assert "none: every message is only stored and shown" in page
    assert "“Port Complete”: 1" in page  # what is not routed yet, to route it

    saved = post_form(
        admin,
        "/settings/messages",
        _rows(
            ("pattern", "Port(ing)? Complete.*", "note"),
            ("match", " Status  Ping ", "ignore"),
            ("match", "", "notify"),  # a blank row is dropped
        ),
    )
    assert saved.status_code == 303
    [version] = _versions(console_runtime, ConfigKind.MESSAGE_ROUTES)
    assert version.value == [
        {"pattern": "Port(ing)? Complete.*", "action": "note"},
        {"match": "Status Ping", "action": "ignore"},
    ]
    assert version.created_by == "admin"
    assert _callback(admin, "Porting Complete", event="second") == "routed"
    assert _callback(admin, "status ping") == "ignored"
    page = admin.get("/settings/messages").get_data(as_text=True)
    assert f"version {version.id}, saved in the console by admin" in page
    assert 'value="Port(ing)? Complete.*"' in page


def test_rows_that_cannot_be_routed_are_refused_with_reasons_and_nothing_is_saved(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    admin = client_as(Role.ADMIN)
    answer = post_form(
        admin,
        "/settings/messages",
        _rows(
            ("match", "project  new ORDER", "notify"),
            ("pattern", "(Test|Survey).*", "note"),
            ("pattern", "Port (", "note"),
            ("match", "Install Scheduled", "explode"),
        ),
    )
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "row 1 (project  new ORDER): &#39;project  new ORDER&#39; cannot be rerouted" in page
    assert "row 2 ((Test|Survey).*): the pattern also matches &#39;Test&#39;" in page
    assert "row 3 (Port (): pattern is not a valid regular expression" in page
    assert "row 4 (Install Scheduled): action &#39;explode&#39; is not one of" in page
    assert 'value="Port ("' in page  # kept for the person to fix
    twice = post_form(
        admin,
        "/settings/messages",
        _rows(("match", "Port Complete", "note"), ("match", "port   COMPLETE", "ticket")),
    )
    assert twice.status_code == 422
    assert "row 2 takes the same message as row 1" in twice.get_data(as_text=True)
    assert _versions(console_runtime, ConfigKind.MESSAGE_ROUTES) == []


def test_routing_history_and_rollback(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    admin = client_as(Role.ADMIN)
    post_form(admin, "/settings/messages", _rows(("match", "Port Complete", "notify")))
    post_form(admin, "/settings/messages", _rows(("match", "Port Complete", "ignore")))
    first, second = reversed(_versions(console_runtime, ConfigKind.MESSAGE_ROUTES))
    assert _callback(admin, "Port Complete", event="a") == "ignored"
    page = admin.get("/settings/messages").get_data(as_text=True)
    assert f"Roll back to version {first.id}" in page and "“Port Complete” → notify" in page
    rolled = post_form(admin, f"/settings/rollback/{first.id}")
    assert rolled.status_code == 303 and rolled.headers["Location"] == "/settings/messages"
    newest = _versions(console_runtime, ConfigKind.MESSAGE_ROUTES)[0]
    assert newest.value == first.value and newest.note == f"rollback to version {first.id}"
    assert newest.id > second.id
    assert _callback(admin, "Port Complete", event="b") == "routed"


def test_the_message_ticket_template_is_edited_previewed_and_used(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    admin = client_as(Role.ADMIN)
    page = admin.get("/settings/message-ticket-template").get_data(as_text=True)
    assert "the file message_desc.txt" in page and "Message ticket template" in page
    preview = admin.post(
        "/settings/message-ticket-template/preview",
        data={
            "source": "<p>{{ msg }} for {{ customer_name }}</p>",
            "csrf_token": csrf_token(admin, "/settings/message-ticket-template"),
        },
        headers={"Accept": "application/json"},
    ).get_json()
    assert preview["html"] == "<p>Project Install Scheduled for Jordan Sample</p>"
    assert preview["summary"] == "UTOPIA: Project Install Scheduled (UIA000000-000000)"
    broken = post_form(admin, "/settings/message-ticket-template", {"source": "{{ plan }}"})
    assert broken.status_code == 422  # the install ticket's variable, not a message's
    source = "<p>UTOPIA says {{ msg }} ({{ event }}) to {{ first_name }}</p>"
    saved = post_form(admin, "/settings/message-ticket-template", {"source": source})
    assert saved.headers["Location"] == "/settings/message-ticket-template"
    post_form(admin, "/settings/messages", _rows(("match", "Install Scheduled", "ticket")))

    queue_order(console_runtime, PLAIN)
    worker.run_until_idle()
    assert _callback(admin, "Install Scheduled", event="Install") == "routed"
    worker.run_until_idle()
    order = load_order(console_runtime, PLAIN)
    [ticket] = [
        t for t in emulators.powercode.tickets.values() if "UTOPIA says" in t["description"]
    ]
    assert ticket["description"] == "<p>UTOPIA says Install Scheduled (Install) to Avery</p>"
    assert ticket["customerID"] == order.customer_id
    [version] = _versions(console_runtime, ConfigKind.MESSAGE_TICKET_TEMPLATE)
    rollback = post_form(admin, f"/settings/rollback/{version.id}")
    assert rollback.headers["Location"] == "/settings/message-ticket-template"


def test_an_orders_page_shows_its_messages_and_lets_an_operator_retry_or_close_an_action(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    admin = client_as(Role.ADMIN)
    post_form(admin, "/settings/messages", _rows(("match", "Port Complete", "note")))
    assert _callback(admin, "Port Complete", ref="UIA202611-004299") == "routed"
    worker.run_until_idle()  # a recorded order has no customer: the note waits for a person
    order = load_order(console_runtime, "UIA202611-004299")
    assert order.state == OrderState.RECORDED
    path = f"/orders/{order.id}"

    viewer_page = client_as(Role.VIEWER).get(path).get_data(as_text=True)
    assert "UTOPIA messages with an action" in viewer_page
    assert "Add a line to the customer&#39;s notes" in viewer_page
    assert "waiting for a person" in viewer_page
    assert "Callback from UTOPIA: Port Complete" in viewer_page  # on the timeline too
    assert "Retry the action" not in viewer_page and "Close the action" not in viewer_page

    operator = client_as(Role.OPERATOR)
    page = operator.get(path).get_data(as_text=True)
    found = re.search(r"/orders/\d+/messages/(\d+)/retry", page)
    assert found is not None and "Close the action" in page
    action_id = found.group(1)
    retried = post_form(operator, f"{path}/messages/{action_id}/retry")
    assert retried.status_code == 303
    assert "is queued again" in operator.get(path).get_data(as_text=True)
    closed = post_form(operator, f"{path}/messages/{action_id}/close", {"note": "noted by hand"})
    assert closed.status_code == 303
    page = operator.get(path).get_data(as_text=True)
    assert "closed by a person" in page and "closed by operator: noted by hand" in page
    refused = post_form(operator, f"{path}/messages/{action_id}/close", {"note": "again"})
    assert refused.status_code == 303
    assert "Not done: the action is closed already" in operator.get(path).get_data(as_text=True)
    with console_runtime.store.read() as session:
        from utopia_handler.store import queries

        [action], _ = queries.message_actions(session, order)
    assert action.state == MessageActionState.CLOSED
