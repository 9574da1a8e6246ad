"""The worker as a scheduler: it claims due work, runs one step, and hands the outcome over.

The behaviour tests (test_pipeline, test_retries, test_exactly_once) follow orders through; these
pin the worker's own duties: only due work is claimed, each kind of step outcome reaches the
lifecycle, and its one catch-all turns a crash into a person's task without losing the order.
"""

from __future__ import annotations

import logging

import pytest

from tests.conftest import ManualClock, load_order, queue_order
from utopia_handler.emulators import Emulators
from utopia_handler.provisioning import OrderView, Provisioner, StepResult
from utopia_handler.runtime import Runtime
from utopia_handler.store.models import AttemptOutcome, OrderState, Step, StepAttempt
from utopia_handler.worker import Worker

ORDER = "UIA202611-004217"


def attempt_rows(runtime: Runtime) -> list[tuple[Step, AttemptOutcome]]:
    from sqlalchemy import select

    with runtime.store.read() as session:
        rows = session.execute(
            select(StepAttempt.step, StepAttempt.outcome).order_by(StepAttempt.id)
        )
        return [(row.step, row.outcome) for row in rows]


def test_work_not_yet_due_is_left_alone(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    emulators.powercode.faults.add("createCustomer", "fail", status=503, retry_after=60)
    queue_order(runtime, ORDER)
    assert worker.run_until_idle() > 0
    attempts_before = attempt_rows(runtime)

    assert worker.run_until_idle() == 0  # the retry is a minute away

    assert attempt_rows(runtime) == attempts_before
    assert attempts_before[-1] == (Step.CREATE_CUSTOMER, AttemptOutcome.RETRY)


def test_each_step_is_one_attempt_row_and_the_order_ends_done(
    runtime: Runtime, worker: Worker
) -> None:
    queue_order(runtime, ORDER)
    worker.run_until_idle()

    assert attempt_rows(runtime) == [
        (step, AttemptOutcome.OK) for step in list(Step)[: list(Step).index(Step.FINISHED)]
    ]
    order = load_order(runtime, ORDER)
    assert (order.state, order.step, order.lease_owner) == (OrderState.DONE, Step.FINISHED, None)


def test_a_crash_inside_a_step_is_caught_once_and_handed_to_a_person(
    runtime: Runtime,
    worker: Worker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No real part crashes on demand: a step that raises stands in for a bug.
    real_run = Provisioner.run

    def crashing(self: Provisioner, step: Step, order: OrderView) -> StepResult:
        if step == Step.ADD_SERVICES:
            contract = order.require_contract()
            # An exception whose text holds personal data, as a bug's might.
            raise KeyError(f"{contract.customer.first_name} {contract.customer.last_name}")
        return real_run(self, step, order)

    monkeypatch.setattr(Provisioner, "run", crashing)
    queue_order(runtime, ORDER)
    with caplog.at_level(logging.INFO, logger="utopia_handler"):
        worker.run_until_idle()

    order = load_order(runtime, ORDER)
    assert order.state == OrderState.WAITING
    assert order.reason == "add_services: internal error (KeyError); the log has the details"
    assert attempt_rows(runtime)[-1] == (Step.ADD_SERVICES, AttemptOutcome.FAILED)
    assert "Lindqvist" not in caplog.text  # frames only, never the exception's message
    assert "step.crashed" in caplog.text


def test_a_stopping_worker_finishes_the_step_in_hand_but_starts_no_other(
    runtime: Runtime, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = Provisioner.run

    def stop_during_lookup(self: Provisioner, step: Step, order: OrderView) -> StepResult:
        result = real_run(self, step, order)
        if step == Step.LOOKUP_CONTRACT:
            worker._stopping.set()  # a SIGTERM arriving while the lookup was under way
        return result

    monkeypatch.setattr(Provisioner, "run", stop_during_lookup)
    queue_order(runtime, ORDER)
    worker.run_until_idle(max_rounds=1)  # one claim, as the dispatch loop makes before it stops

    assert attempt_rows(runtime) == [(Step.LOOKUP_CONTRACT, AttemptOutcome.OK)]
    assert load_order(runtime, ORDER).step == Step.CHOOSE_PLANS
