"""Stop an order anywhere, run it again: nothing is created twice, nothing is lost.

A worker is stopped the way a crash stops it: an exception no handler catches, raised either as a
step begins (after the attempt row is written) or just after an outside call returned (before its
outcome is recorded). Replies lost on the wire are shown with the stand-ins' drop_after_apply fault.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ManualClock, load_order, queue_order
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store.models import AttemptOutcome, OrderState, Step, StepAttempt
from utopia_handler.worker import Worker

ORDER = "UIA202611-004218"
SITE = "318002"


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the worker catches it."""


def customers_for_site(emulators: Emulators) -> list[dict[str, Any]]:
    return [c for c in emulators.powercode.customers.values() if c.get("extAccountID") == SITE]


def assert_provisioned_once(emulators: Emulators, runtime: Runtime) -> None:
    order = load_order(runtime, ORDER)
    assert order.state == OrderState.DONE, order.reason
    [customer] = customers_for_site(emulators)
    customer_id = int(customer["customerID"])
    adds = Counter(emulators.powercode.service_adds)
    assert adds == Counter({(customer_id, 164): 1, (customer_id, 172): 1})
    assert emulators.powercode.customer_services[customer_id] == {164: 1, 172: 1}
    assert len(emulators.powercode.tickets) == 1
    assert emulators.powercode.customer_tags[customer_id] == {1, 3}
    message_ids = {str(m["Message-ID"]) for m in emulators.smtp.messages}
    assert message_ids == {f"<success.{ORDER}@utopia-handler.local>"}


def fresh_worker(runtime: Runtime, clock: ManualClock, name: str) -> Worker:
    return Worker(runtime, name=name, clock=clock)


@pytest.mark.parametrize("crash_step", [s for s in Step if s not in (Step.FINISHED,)])
def test_killed_as_a_step_begins_then_restarted(
    runtime: Runtime,
    emulators: Emulators,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    crash_step: Step,
) -> None:
    queue_order(runtime, ORDER)
    real_run = runtime.provisioner.run

    def run_or_die(step: Step, order: Any) -> Any:
        if step == crash_step:
            raise Killed
        return real_run(step, order)

    monkeypatch.setattr(runtime.provisioner, "run", run_or_die)
    with pytest.raises(Killed):
        fresh_worker(runtime, clock, "first").run_until_idle()
    monkeypatch.setattr(runtime.provisioner, "run", real_run)

    clock.advance(120)  # past the dead worker's lease
    fresh_worker(runtime, clock, "second").run_until_idle()

    if crash_step == Step.CREATE_TICKET:
        # PowerCode cannot be asked whether the ticket exists, so a person decides.
        order = load_order(runtime, ORDER)
        assert order.state == OrderState.WAITING
        assert order.reason is not None and "may exist" in order.reason
        assert emulators.powercode.tickets == {}
        return
    assert_provisioned_once(emulators, runtime)


WRITING_CALLS = {
    "create_customer": "createCustomer",
    "add_service": "addCustomerService",
    "create_ticket": "createTicket",
    "add_tags": "uapi:tags",
}


@pytest.mark.parametrize("method", list(WRITING_CALLS))
def test_killed_after_an_outside_write_then_restarted(
    runtime: Runtime,
    emulators: Emulators,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
) -> None:
    queue_order(runtime, ORDER)
    real: Callable[..., Any] = getattr(runtime.powercode, method)

    def call_then_die(*args: Any) -> Any:
        real(*args)
        raise Killed

    monkeypatch.setattr(runtime.powercode, method, call_then_die)
    with pytest.raises(Killed):
        fresh_worker(runtime, clock, "first").run_until_idle()
    monkeypatch.setattr(runtime.powercode, method, real)
    clock.advance(120)
    fresh_worker(runtime, clock, "second").run_until_idle()

    if method == "create_ticket":
        order = load_order(runtime, ORDER)
        assert order.state == OrderState.WAITING
        assert len(emulators.powercode.tickets) == 1  # the one that was made; no second
        return
    assert_provisioned_once(emulators, runtime)


@pytest.mark.parametrize("target", ["createCustomer", "addCustomerService", "uapi:tags"])
def test_lost_reply_is_reconciled_not_repeated(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock, target: str
) -> None:
    emulators.powercode.faults.add(target, "drop_after_apply", count=1)
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    order = load_order(runtime, ORDER)
    assert order.state == OrderState.IN_PROGRESS  # waiting for its retry
    assert order.reason is not None and "retrying" in order.reason
    clock.advance(120)
    worker.run_until_idle()
    assert_provisioned_once(emulators, runtime)
    with runtime.store.read() as session:
        outcomes = [a.outcome for a in session.query(StepAttempt).order_by(StepAttempt.id)]
    assert AttemptOutcome.UNCERTAIN in outcomes


def test_lost_ticket_reply_waits_for_a_person_and_a_retry_opens_one_ticket(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    from utopia_handler.actions import retry_order

    emulators.powercode.faults.add("createTicket", "drop_after_apply", count=1)
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    clock.advance(120)
    worker.run_until_idle()
    order = load_order(runtime, ORDER)
    assert order.state == OrderState.WAITING
    assert len(emulators.powercode.tickets) == 1
    subjects = [str(m["Subject"]) for m in emulators.smtp.messages]
    assert subjects == [f"Order waiting for a person - Order {ORDER}"]

    # The person checks PowerCode, decides the ticket is wanted again, and retries the step.
    with runtime.store.write() as session:
        retry_order(session, ORDER, clock(), Step.CREATE_TICKET)
    worker.run_until_idle()
    order = load_order(runtime, ORDER)
    assert order.state == OrderState.DONE
    assert order.ticket_id in emulators.powercode.tickets


def test_email_whose_final_reply_was_lost_is_resent_with_the_same_message_id(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    emulators.smtp.faults.add("DATA", "drop_after_apply", count=1)
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    assert load_order(runtime, ORDER).state == OrderState.DONE
    assert len(emulators.smtp.messages) == 1
    clock.advance(120)
    worker.run_until_idle()
    ids = [str(m["Message-ID"]) for m in emulators.smtp.messages]
    assert ids == [f"<success.{ORDER}@utopia-handler.local>"] * 2  # collapses in mail clients
