"""What a person can do to an order, called as the console and the CLI call it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import ManualClock, load_order, queue_order
from utopia_handler import actions
from utopia_handler.actions import ActionRefused
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import AuditEntry
from utopia_handler.store.models import Notification, OrderState, Step
from utopia_handler.worker import Worker

ORDER = "UIA202611-004217"
UNMAPPED = "UIA202611-004219"  # its "2 Gbps" plan has no mapping: it waits for a person


def audit_rows(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    with runtime.store.read() as session:
        rows = session.execute(
            select(AuditEntry.actor, AuditEntry.action, AuditEntry.order_ref).order_by(
                AuditEntry.id
            )
        )
        return [(r.actor, r.action, r.order_ref) for r in rows]


@pytest.fixture
def waiting(runtime: Runtime, worker: Worker) -> str:
    queue_order(runtime, UNMAPPED)
    worker.run_until_idle()
    assert load_order(runtime, UNMAPPED).state == OrderState.WAITING
    return UNMAPPED


def test_retry_starts_a_new_run_and_is_audited(
    runtime: Runtime, waiting: str, clock: ManualClock
) -> None:
    with runtime.store.write() as session:
        actions.retry_order(session, waiting, clock(), actor="alice")

    order = load_order(runtime, waiting)
    assert (order.run, order.state, order.step) == (2, OrderState.IN_PROGRESS, Step.CHOOSE_PLANS)
    assert audit_rows(runtime) == [("alice", "retry", waiting)]


def test_retry_refuses_what_would_make_a_second_customer(
    runtime: Runtime, worker: Worker, clock: ManualClock
) -> None:
    queue_order(runtime, ORDER)
    worker.run_until_idle()

    with runtime.store.write() as session, pytest.raises(ActionRefused) as caught:
        actions.retry_order(session, ORDER, clock(), Step.CREATE_CUSTOMER, actor="alice")
    assert "retry from find_customer" in str(caught.value)
    with runtime.store.write() as session, pytest.raises(ActionRefused, match="name a step"):
        actions.retry_order(session, ORDER, clock(), actor="alice")
    assert audit_rows(runtime) == []


def test_resolve_and_ignore_close_the_order_with_the_note_and_an_audit_row(
    runtime: Runtime, waiting: str, clock: ManualClock
) -> None:
    with runtime.store.write() as session:
        actions.resolve_order(session, waiting, "made in PowerCode by phone", clock(), actor="bo")

    order = load_order(runtime, waiting)
    assert actions.is_resolved_by_hand(order)
    assert order.reason == "resolved by hand by bo: made in PowerCode by phone"
    with runtime.store.write() as session, pytest.raises(ActionRefused, match="done already"):
        actions.ignore_order(session, waiting, "again", clock(), actor="bo")
    assert audit_rows(runtime) == [("bo", "resolve", waiting)]


def test_resend_queues_the_latest_email_again(
    runtime: Runtime, waiting: str, clock: ManualClock
) -> None:
    with runtime.store.write() as session:
        kind = actions.resend_notification(session, waiting, clock(), actor="alice")

    assert kind == "held"
    with runtime.store.read() as session:
        kinds = session.scalars(select(Notification.kind).order_by(Notification.id)).all()
    assert [k.value for k in kinds] == ["held", "held"]
    assert audit_rows(runtime) == [("alice", "resend_email", waiting)]


def test_an_unknown_order_is_refused_by_every_action(runtime: Runtime, clock: ManualClock) -> None:
    with runtime.store.write() as session:
        for act in (
            lambda: actions.retry_order(session, "UIA000000-000000", clock()),
            lambda: actions.resolve_order(session, "UIA000000-000000", "n", clock(), actor="a"),
            lambda: actions.ignore_order(session, "UIA000000-000000", "n", clock(), actor="a"),
            lambda: actions.resend_notification(session, "UIA000000-000000", clock(), actor="a"),
        ):
            with pytest.raises(ActionRefused, match="no order UIA000000-000000"):
                act()


def test_provision_by_hand_makes_an_order_whose_callback_never_came(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    contract = runtime.utopia.lookup_contract(ORDER)
    with runtime.store.write() as session:
        actions.provision_by_hand(session, "UIA202611-777777", contract, None, clock(), actor="al")
    worker.run_until_idle()

    order = load_order(runtime, "UIA202611-777777")
    assert (order.state, order.run) == (OrderState.DONE, 1)
    assert emulators.powercode.customer_tags[order.customer_id or 0] == {1, 3}
    assert audit_rows(runtime) == [("al", "provision_by_hand", "UIA202611-777777")]
