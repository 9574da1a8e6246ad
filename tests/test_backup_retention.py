"""Retention: finished orders lose their personal data after RETENTION_DAYS and keep their outcome."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from tests.conftest import ManualClock, load_order, queue_order, wait_for
from utopia_handler.emulators import Emulators
from utopia_handler.emulators.seed import DEMO_ORDERS
from utopia_handler.report import order_story
from utopia_handler.runtime import Runtime
from utopia_handler.settings import Settings, SettingsError
from utopia_handler.store.models import Callback, Notification, OrderState, StepAttempt
from utopia_handler.store.retention import purge_expired
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

DONE = "UIA202611-004217"
WAITING = "UIA202611-004219"  # unmapped plan: waits for a person
PERSONAL = DEMO_ORDERS[DONE]["customer"]


def run_orders(runtime: Runtime, worker: Worker, clock: ManualClock, *refs: str) -> None:
    for ref in refs:
        queue_order(runtime, ref)
    worker.run_until_idle()
    clock.advance(120)  # past the retry of the e-mails' contract download, if any
    worker.run_until_idle()


def sqlite_file(runtime: Runtime) -> Path:
    return Path(runtime.store.engine.url.database or "")


def test_a_year_later_the_order_keeps_its_outcome_but_not_the_customers_data(
    runtime: Runtime, worker: Worker, clock: ManualClock, emulators: Emulators
) -> None:
    run_orders(runtime, worker, clock, DONE, WAITING)
    before = load_order(runtime, DONE)
    assert before.state == OrderState.DONE and before.contract is not None
    with runtime.store.read() as session:
        attempts_before = session.scalar(select(func.count()).select_from(StepAttempt))

    assert purge_expired(runtime.store, utcnow(), 365).orders == 0  # too recent: nothing goes
    report = purge_expired(runtime.store, utcnow() + timedelta(days=366), 365)
    assert report.orders == 1 and report.callbacks == 1 and report.notifications == 1

    after = load_order(runtime, DONE)
    assert after.purged_at is not None
    assert after.contract is None and after.customer_name is None
    # The outcome stays: what happened, the PowerCode ids, the history.
    assert (after.state, after.step, after.site_id) == (before.state, before.step, before.site_id)
    assert (after.customer_id, after.ticket_id) == (before.customer_id, before.ticket_id)
    assert after.services_added == before.services_added and after.tags_added == before.tags_added
    with runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(StepAttempt)) == attempts_before
        bodies = session.scalars(select(Callback.body).where(Callback.order_ref == DONE)).all()
        contexts = session.scalars(
            select(Notification.context).where(Notification.order_id == after.id)
        ).all()
        assert session.scalar(text("SELECT count(*) FROM orders WHERE contract IS NULL")) == 1
        story = "\n".join(order_story(session, after))
    assert bodies == [None] and contexts == [{}]
    assert f"customer #{after.customer_id}" in story and "e-mail success: sent" in story

    # An order still waiting for a person keeps everything a person needs to decide.
    waiting = load_order(runtime, WAITING)
    assert waiting.state == OrderState.WAITING and waiting.contract is not None


def test_after_a_purge_the_sqlite_file_keeps_no_trace_of_the_person(
    runtime: Runtime, worker: Worker, clock: ManualClock, emulators: Emulators
) -> None:
    run_orders(runtime, worker, clock, DONE)
    assert purge_expired(runtime.store, utcnow() + timedelta(days=366), 365).orders == 1
    runtime.store.close()
    stored = b"".join(
        path.read_bytes()
        for path in sqlite_file(runtime).parent.glob(f"{sqlite_file(runtime).name}*")
        if path.is_file()
    )
    for value in (PERSONAL["email"], PERSONAL["phone"], PERSONAL["lastname"]):
        assert value.encode() not in stored, value


def test_the_worker_purges_on_its_own(
    make_runtime: Callable[..., Runtime], clock: ManualClock, emulators: Emulators
) -> None:
    runtime = make_runtime(RETENTION_DAYS="30")
    run_orders(runtime, Worker(runtime, name="inline", clock=clock), clock, DONE)
    assert load_order(runtime, DONE).purged_at is None

    background = Worker(runtime, name="later", clock=lambda: utcnow() + timedelta(days=31))
    background.retention_first_seconds = 0.05
    background.start()
    try:
        wait_for(lambda: load_order(runtime, DONE).purged_at is not None, timeout=10)
    finally:
        background.stop()
    assert load_order(runtime, DONE).contract is None


def test_a_purged_order_retried_from_a_later_step_asks_for_the_contract_lookup(
    runtime: Runtime, worker: Worker, clock: ManualClock, emulators: Emulators
) -> None:
    from utopia_handler.actions import retry_order
    from utopia_handler.store.models import Step

    run_orders(runtime, worker, clock, DONE)
    purge_expired(runtime.store, utcnow() + timedelta(days=400), 365)
    with runtime.store.write() as session:
        retry_order(session, DONE, clock(), Step.CHOOSE_PLANS)
    worker.run_until_idle()
    order = load_order(runtime, DONE)
    assert order.state == OrderState.WAITING
    assert order.reason is not None and "retry it from the contract lookup" in order.reason
    assert len(emulators.powercode.customers) == 4 and len(emulators.powercode.tickets) == 1


def test_retention_days_is_validated(make_settings: Callable[..., Settings]) -> None:
    assert make_settings().retention_days == 365
    assert make_settings(RETENTION_DAYS="90").retention_days == 90
    for wrong in ("0", "-5", "a year"):
        with pytest.raises(SettingsError, match="RETENTION_DAYS"):
            make_settings(RETENTION_DAYS=wrong)
