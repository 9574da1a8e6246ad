"""Subscriber actions from the order page: the confirmation page shows every field (keys masked)
and sends nothing; confirming queues durable work the worker runs; operators only; CSRF."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.conftest import load_order, queue_order
from tests.console.conftest import csrf_token, post_form
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import AuditEntry, Role
from utopia_handler.store.models import MessageActionState, SubscriberAction
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

ORDER = "UIA202611-004217"  # site 204817, UTOPIA cid C204817
SITE = "204817"
_SHOWN = re.compile(r'name="shown" value="([0-9a-f]+)"')


def _order_id(runtime: Runtime, worker: Worker) -> int:
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    return load_order(runtime, ORDER).id


def _actions(runtime: Runtime) -> list[SubscriberAction]:
    with runtime.store.read() as session:
        rows = list(session.scalars(select(SubscriberAction)))
        for row in rows:
            session.expunge(row)
        return rows


def test_an_operator_sees_the_plan_then_confirms_and_the_worker_keeps_both_in_step(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    order_id = _order_id(console_runtime, worker)
    operator = client_as(Role.OPERATOR)
    page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert f"/orders/{order_id}/subscriber/suspend" in page and "Cancel service" in page
    path = f"/orders/{order_id}/subscriber/suspend"
    assert operator.get(path).status_code == 200

    shown = post_form(operator, path, {"note": "unpaid since May", "step": "plan"})
    text = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "Exactly what will be sent" in text
    for field in ("/spquery/suspend", "C204817", SITE, "updateCustomerStatus", "Suspended"):
        assert field in text
    assert "********" in text and "test-" not in text.split("Exactly what will be sent")[1][:50]
    assert emulators.utopia.sites[SITE].status == "Active"  # the dry run sent nothing
    assert _actions(console_runtime) == []

    found = _SHOWN.search(text)
    assert found is not None
    sent = post_form(
        operator, path, {"note": "unpaid since May", "step": "send", "shown": found.group(1)}
    )
    assert sent.status_code == 303
    worker.run_until_idle()
    [action] = _actions(console_runtime)
    assert action.state == MessageActionState.DONE and action.requested_by == "operator"
    assert emulators.utopia.sites[SITE].status == "Suspended"
    order_page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert f'id="subscriber-action-{action.id}"' in order_page
    assert "Subscriber suspend: utopia_suspend (run 1, attempt 1)" in order_page


def test_a_send_that_differs_from_what_was_shown_is_shown_again_not_sent(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    order_id = _order_id(console_runtime, worker)
    operator = client_as(Role.OPERATOR)
    answer = post_form(
        operator,
        f"/orders/{order_id}/subscriber/cancel",
        {"note": "moving", "step": "send", "issue_date": "2026-12-31", "shown": "0" * 20},
    )
    assert answer.status_code == 200
    assert "changed since it was shown" in answer.get_data(as_text=True)
    assert _actions(console_runtime) == []
    bad_date = post_form(
        operator,
        f"/orders/{order_id}/subscriber/cancel",
        {"note": "moving", "step": "plan", "issue_date": "31/12/2026"},
    )
    assert "the date must be YYYY-MM-DD" in bad_date.get_data(as_text=True)


def test_a_viewer_sees_no_buttons_and_cannot_act(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    order_id = _order_id(console_runtime, worker)
    viewer = client_as(Role.VIEWER)
    page = viewer.get(f"/orders/{order_id}").get_data(as_text=True)
    assert "subscriber-buttons" not in page
    path = f"/orders/{order_id}/subscriber/suspend"
    assert viewer.get(path).status_code == 403
    answer = post_form(viewer, path, {"note": "x", "step": "send"})
    assert answer.status_code == 403
    assert _actions(console_runtime) == []


def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    order_id = _order_id(console_runtime, worker)
    operator = client_as(Role.OPERATOR)
    with console_runtime.store.read() as session:
        before = session.scalar(select(func.count()).select_from(AuditEntry))
    answer = operator.post(
        f"/orders/{order_id}/subscriber/suspend", data={"note": "x", "step": "send"}
    )
    assert answer.status_code == 400
    with console_runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == before
    assert _actions(console_runtime) == []


def test_an_action_waiting_for_a_person_is_retried_from_the_order_page(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    order_id = _order_id(console_runtime, worker)
    operator = client_as(Role.OPERATOR)
    emulators.powercode.faults.add(
        "updateCustomerStatus", "reject", count=1, status_code=3, message="Invalid field: status"
    )
    path = f"/orders/{order_id}/subscriber/suspend"
    text = post_form(operator, path, {"note": "unpaid", "step": "plan"}).get_data(as_text=True)
    found = _SHOWN.search(text)
    assert found is not None
    post_form(operator, path, {"note": "unpaid", "step": "send", "shown": found.group(1)})
    worker.run_until_idle()
    [action] = _actions(console_runtime)
    assert action.state == MessageActionState.WAITING
    page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert "Retry from the step it stopped at" in page
    token = csrf_token(operator, f"/orders/{order_id}")
    retried = operator.post(
        f"/orders/{order_id}/subscriber-actions/{action.id}/retry", data={"csrf_token": token}
    )
    assert retried.status_code == 303
    worker.run_until_idle()
    [action] = _actions(console_runtime)
    assert action.state == MessageActionState.DONE and action.run == 2
    assert [e for e, _ in emulators.utopia.journal if e == "suspend"] == ["suspend"]


def test_the_speed_mapping_is_saved_in_versions_on_the_plans_page_and_used_by_the_plan(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    order_id = _order_id(console_runtime, worker)
    admin = client_as(Role.ADMIN)
    bad = post_form(admin, "/settings/speed-products", {"speed_products": "165=2 Gbps"})
    assert bad.status_code == 422
    assert "write the PowerCode service id, =, then UTOPIA" in bad.get_data(as_text=True)
    saved = post_form(admin, "/settings/speed-products", {"speed_products": "165=2000"})
    assert saved.status_code == 303
    page = admin.get("/settings/plans").get_data(as_text=True)
    assert 'value="165=2000"' in page and "165 → 2000" in page
    assert post_form(client_as(Role.OPERATOR), "/settings/speed-products", {}).status_code == 403
    plan = post_form(
        client_as(Role.OPERATOR),
        f"/orders/{order_id}/subscriber/change-speed",
        {"note": "upgrade", "service_id": "165", "step": "plan"},
    ).get_data(as_text=True)
    assert "/spquery/changespeed" in plan and ">2000<" in plan


def test_an_action_a_worker_holds_shows_as_running_now(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    order_id = _order_id(console_runtime, worker)
    operator = client_as(Role.OPERATOR)
    path = f"/orders/{order_id}/subscriber/suspend"
    shown = post_form(operator, path, {"note": "unpaid since May", "step": "plan"})
    found = _SHOWN.search(shown.get_data(as_text=True))
    assert found is not None
    form = {"note": "unpaid since May", "step": "send", "shown": found.group(1)}
    assert post_form(operator, path, form).status_code == 303
    [action] = _actions(console_runtime)

    def state_cell() -> str:
        page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
        row = page.split(f'id="subscriber-action-{action.id}"', 1)[1].split("</tr>", 1)[0]
        cell = re.search(r'data-label="State">([^<]*)<', row)
        assert cell is not None
        return cell.group(1)

    assert state_cell() == "to do"
    held_until = utcnow() + timedelta(seconds=60)
    with console_runtime.store.write() as session:
        row = session.get(SubscriberAction, action.id)
        assert row is not None
        row.lease_owner, row.lease_expires_at = "worker-a", held_until
    assert state_cell() == "running now"
    with console_runtime.store.write() as session:  # the worker died: its lease ran out
        row = session.get(SubscriberAction, action.id)
        assert row is not None
        row.lease_expires_at = utcnow() - timedelta(seconds=1)
    assert state_cell() == "to do"
