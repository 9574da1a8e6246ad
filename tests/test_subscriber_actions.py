"""Subscriber actions as durable work, over real HTTP against the stand-ins: each action keeps
UTOPIA and PowerCode in step, faults are retried without sending UTOPIA's write twice, a lost
reply is read back (or waits for a person where nothing can be read back), shadow mode records."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from tests.conftest import ManualClock, load_order, queue_order
from utopia_handler import audit
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.models import (
    AttemptOutcome,
    MessageActionState,
    ShadowWrite,
    SubscriberAction,
    SubscriberActionAttempt,
)
from utopia_handler.subscriber import SubscriberAction as Kind
from utopia_handler.subscriber import plan_action
from utopia_handler.subscriber_work import queue_action
from utopia_handler.worker import Worker

ORDER = "UIA202611-004217"  # site 204817, UTOPIA cid C204817, in the demo seed
SITE = "204817"


def _provisioned(runtime: Runtime, worker: Worker) -> int:
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    customer_id = load_order(runtime, ORDER).customer_id
    assert customer_id is not None
    return customer_id


def _queue(runtime: Runtime, clock: ManualClock, kind: Kind, **options: object) -> int:
    plan = plan_action(runtime, ORDER, kind, note="unpaid since May", actor="op", **options)  # type: ignore[arg-type]
    assert plan.problems == (), plan.problems
    with runtime.store.write() as session:
        action = queue_action(
            session, plan, "unpaid since May", "op", clock(), shadow=runtime.settings.shadow_mode
        )
        return action.id


def _action(runtime: Runtime, action_id: int) -> SubscriberAction:
    with runtime.store.read() as session:
        action = session.get(SubscriberAction, action_id)
        assert action is not None
        session.expunge(action)
        return action


def _attempts(runtime: Runtime, action_id: int) -> list[tuple[str, AttemptOutcome]]:
    with runtime.store.read() as session:
        rows = session.scalars(
            select(SubscriberActionAttempt)
            .where(SubscriberActionAttempt.action_id == action_id)
            .order_by(SubscriberActionAttempt.id)
        )
        return [(row.step, row.outcome) for row in rows]


def _sent(emulators: Emulators, endpoint: str) -> int:
    return len([e for e, _ in emulators.utopia.journal if e == endpoint])


def test_a_suspend_then_an_unsuspend_keep_both_systems_in_step_with_notes_audit_and_mail(
    runtime: Runtime, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    customer_id = _provisioned(runtime, worker)
    emulators.smtp.clear()
    action_id = _queue(runtime, clock, Kind.SUSPEND)
    worker.run_until_idle()

    action = _action(runtime, action_id)
    assert action.state == MessageActionState.DONE
    assert emulators.utopia.sites[SITE].status == "Suspended"
    assert emulators.powercode.customers[customer_id]["status"] == "Suspended"
    assert "UTOPIA suspend by op (order UIA202611-004217): unpaid since May" in str(
        emulators.powercode.customers[customer_id].get("customerNotes")
    )
    assert _attempts(runtime, action_id) == [
        ("utopia_suspend", AttemptOutcome.OK),
        ("pc_status", AttemptOutcome.OK),
        ("pc_note", AttemptOutcome.OK),
    ]
    subjects = [m["Subject"] for m in emulators.smtp.messages]
    assert f"Subscriber suspend done - Order {ORDER}" in subjects
    with runtime.store.read() as session:
        logged = [(e.actor, e.action) for e in audit.entries(session, order_ref=ORDER)]
    assert ("op", "subscriber_action") in logged
    assert logged.count(("worker", "subscriber_step_done")) == 2
    assert ("worker", "subscriber_done") in logged

    back = _queue(runtime, clock, Kind.UNSUSPEND)
    worker.run_until_idle()
    assert _action(runtime, back).state == MessageActionState.DONE
    assert emulators.utopia.sites[SITE].status == "Active"
    assert emulators.powercode.customers[customer_id].get("status") != "Suspended"


def test_a_speed_change_moves_utopia_to_the_product_and_swaps_the_powercode_service(
    runtime: Runtime, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    customer_id = _provisioned(runtime, worker)
    before = set(emulators.powercode.customer_services[customer_id])
    action_id = _queue(
        runtime, clock, Kind.CHANGE_SPEED, service_id=165, product="2000", issue_date="2026-12-01"
    )
    worker.run_until_idle()
    assert _action(runtime, action_id).state == MessageActionState.DONE
    assert emulators.utopia.sites[SITE].product == "2 Gbps"
    after = set(emulators.powercode.customer_services[customer_id])
    assert 165 in after and not (before - {172}) & after - {165}


def test_a_cancel_cancels_in_utopia_sets_the_status_and_opens_a_ticket(
    runtime: Runtime, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    customer_id = _provisioned(runtime, worker)
    tickets_before = set(emulators.powercode.tickets)
    action_id = _queue(runtime, clock, Kind.CANCEL, issue_date="2026-12-31")
    worker.run_until_idle()
    action = _action(runtime, action_id)
    assert action.state == MessageActionState.DONE
    site = emulators.utopia.sites[SITE]
    assert (site.status, site.cancel_date) == ("Cancelled", "2026-12-31")
    assert emulators.powercode.customers[customer_id]["status"] == "Inactive"
    new = [
        emulators.powercode.tickets[t] for t in set(emulators.powercode.tickets) - tickets_before
    ]
    assert (
        len(new) == 1 and new[0]["summary"] == f"UTOPIA service cancelled from 2026-12-31 ({ORDER})"
    )
    assert action.ticket_id == new[0]["ticketID"]


def test_powercode_down_after_utopia_applied_is_retried_without_sending_utopia_again(
    runtime: Runtime, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    customer_id = _provisioned(runtime, worker)
    emulators.powercode.faults.add("updateCustomerStatus", "fail", count=1)
    action_id = _queue(runtime, clock, Kind.SUSPEND)
    worker.run_until_idle()
    action = _action(runtime, action_id)
    assert action.state == MessageActionState.PENDING and action.step == 1
    assert emulators.utopia.sites[SITE].status == "Suspended"
    clock.advance(120)
    worker.run_until_idle()
    assert _action(runtime, action_id).state == MessageActionState.DONE
    assert emulators.powercode.customers[customer_id]["status"] == "Suspended"
    assert _sent(emulators, "suspend") == 1
    assert [o for s, o in _attempts(runtime, action_id) if s == "pc_status"] == [
        AttemptOutcome.RETRY,
        AttemptOutcome.OK,
    ]


def test_a_utopia_reply_lost_after_applying_is_read_back_and_not_sent_again(
    runtime: Runtime, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    _provisioned(runtime, worker)
    emulators.utopia.faults.add("suspend", "drop_after_apply", count=1)
    action_id = _queue(runtime, clock, Kind.SUSPEND)
    worker.run_until_idle()
    assert _attempts(runtime, action_id) == [("utopia_suspend", AttemptOutcome.UNCERTAIN)]
    clock.advance(120)
    worker.run_until_idle()
    action = _action(runtime, action_id)
    assert action.state == MessageActionState.DONE
    assert "shows it done already" in action.steps[0]["detail"]
    assert _sent(emulators, "suspend") == 1


def test_a_lost_ticket_reply_waits_for_a_person_instead_of_a_second_ticket(
    runtime: Runtime, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    _provisioned(runtime, worker)
    tickets_before = len(emulators.powercode.tickets)
    emulators.smtp.clear()
    emulators.powercode.faults.add("createTicket", "drop_after_apply", count=1)
    action_id = _queue(runtime, clock, Kind.CANCEL, issue_date="2026-12-31")
    worker.run_until_idle()
    clock.advance(120)
    worker.run_until_idle()
    action = _action(runtime, action_id)
    assert action.state == MessageActionState.WAITING
    assert action.detail is not None and "the ticket may exist" in action.detail
    assert len(emulators.powercode.tickets) == tickets_before + 1
    subjects = [m["Subject"] for m in emulators.smtp.messages]
    assert f"Subscriber cancel needs a person - Order {ORDER}" in subjects


def test_in_shadow_mode_the_writes_are_recorded_and_not_sent(
    runtime: Runtime,
    worker: Worker,
    make_runtime: Callable[..., Runtime],
    emulators: Emulators,
    clock: ManualClock,
) -> None:
    customer_id = _provisioned(runtime, worker)  # a real customer, from before shadow mode
    shadow = make_runtime(SHADOW_MODE="true")
    journal_before = _sent(emulators, "suspend")
    action_id = _queue(shadow, clock, Kind.SUSPEND)
    worker.run_until_idle()  # a worker outside shadow mode leaves it alone
    assert _action(runtime, action_id).state == MessageActionState.PENDING
    Worker(shadow, name="shadow-worker", clock=clock).run_until_idle()
    assert _action(runtime, action_id).state == MessageActionState.DONE
    assert emulators.utopia.sites[SITE].status == "Active"
    assert emulators.powercode.customers[customer_id].get("status") != "Suspended"
    assert _sent(emulators, "suspend") == journal_before
    with runtime.store.read() as session:
        recorded = [(w.service, w.action) for w in session.scalars(select(ShadowWrite))]
    assert ("utopia", "suspend") in recorded
    assert ("powercode", "updateCustomerStatus") in recorded


def test_a_worker_that_died_after_sending_leaves_a_step_the_next_one_reads_back(
    runtime: Runtime, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    from datetime import timedelta

    from utopia_handler.store import leases

    _provisioned(runtime, worker)
    action_id = _queue(runtime, clock, Kind.SUSPEND)
    dead = Worker(runtime, name="dead-worker", clock=clock).subscribers
    with runtime.store.write() as session:
        assert queries.claim_due_subscriber_actions(
            session, "dead-worker", 1, clock(), timedelta(minutes=5)
        ) == [action_id]
    view = dead.prepare(action_id)
    assert view is not None
    dead.perform(view)  # UTOPIA applied it; the process died before recording anything
    with runtime.store.write() as session:
        leases.take_over(session, "dead-worker", clock(), timedelta(seconds=0))
    worker.run_until_idle()
    action = _action(runtime, action_id)
    assert action.state == MessageActionState.DONE
    assert "shows it done already" in action.steps[0]["detail"]
    assert _sent(emulators, "suspend") == 1
    assert _attempts(runtime, action_id)[:2] == [
        ("utopia_suspend", AttemptOutcome.STARTED),
        ("utopia_suspend", AttemptOutcome.OK),
    ]


def test_a_step_longer_than_the_lease_keeps_its_lease_by_the_heartbeat(
    make_runtime: Callable[..., Runtime], emulators: Emulators
) -> None:
    import time

    from tests.conftest import wait_for
    from utopia_handler.timeutil import utcnow

    runtime = make_runtime(LEASE_SECONDS="1.5", UTOPIA_READ_TIMEOUT="10")
    plain = Worker(runtime, name="provisioner")
    queue_order(runtime, ORDER)
    plain.run_until_idle()
    emulators.utopia.faults.add("suspend", "latency", seconds=4.0)
    action_id = _queue(runtime, lambda: utcnow(), Kind.SUSPEND)  # type: ignore[arg-type]
    running = Worker(runtime, name="long-step")
    running.start()
    try:
        wait_for(lambda: emulators.utopia.calls["suspend"] == 1)  # the slow call is out
        time.sleep(2.5)  # longer than the lease: only the heartbeat keeps it
        action = _action(runtime, action_id)
        assert action.lease_owner == "long-step"
        assert action.lease_expires_at is not None and action.lease_expires_at > utcnow()
        wait_for(lambda: _action(runtime, action_id).state == MessageActionState.DONE)
    finally:
        running.stop()
    assert _sent(emulators, "suspend") == 1
    assert [o for s, o in _attempts(runtime, action_id) if s == "utopia_suspend"] == [
        AttemptOutcome.OK
    ]


def test_the_migration_matches_the_model_and_can_be_undone(runtime: Runtime) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect

    from utopia_handler.store.db import alembic_config
    from utopia_handler.store.models import Base

    with runtime.store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in differences if "subscriber_action" in repr(d)] == []
    config = alembic_config(runtime.store.url)
    command.downgrade(config, "0011")
    assert "subscriber_actions" not in inspect(runtime.store.engine).get_table_names()
    command.upgrade(config, "head")
    assert "subscriber_actions" in inspect(runtime.store.engine).get_table_names()
