"""The lifecycle module: every change of an order's state and step, on a real SQLite database."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.conftest import load_order, queue_order
from utopia_handler import lifecycle
from utopia_handler.clients.errors import RejectedError, RetryableError
from utopia_handler.lifecycle import ActionRefused, RetryPolicy, StepOutcome
from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.models import (
    AttemptOutcome,
    Notification,
    NotificationKind,
    Order,
    OrderState,
    SiteDecision,
    Step,
    StepAttempt,
)
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

REF = "UIA202611-004217"
NOW = utcnow()
POLICY = RetryPolicy(base_seconds=10, max_seconds=600, deadline=timedelta(hours=24))


def outcome(**overrides: Any) -> StepOutcome:
    fields: dict[str, Any] = {
        "detail": "done",
        "changes": {},
        "next_step": None,
        "final_state": None,
        "notify": None,
        "notify_context": {},
    }
    return StepOutcome(**{**fields, **overrides})


@pytest.fixture
def change(runtime: Runtime) -> Callable[[Callable[[Session, Order], Any]], Any]:
    """Run `fn(session, order)` on the queued order in one committed transaction."""
    queue_order(runtime, REF)

    def run(fn: Callable[[Session, Order], Any]) -> Any:
        with runtime.store.write() as session:
            order = queries.find_order(session, REF)
            assert order is not None
            return fn(session, order)

    return run


def started(session: Session, order: Order, step: Step = Step.LOOKUP_CONTRACT) -> int:
    order.step = step
    order.lease_owner, order.lease_expires_at = "w1", NOW + timedelta(minutes=1)
    return lifecycle.start_attempt(session, order, "w1", NOW)


def attempts(runtime: Runtime) -> list[StepAttempt]:
    with runtime.store.read() as session:
        return list(session.scalars(select(StepAttempt).order_by(StepAttempt.id)))


def notifications(runtime: Runtime) -> list[Notification]:
    with runtime.store.read() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def test_an_attempt_starts_the_order_and_leaves_a_trace(runtime: Runtime, change: Any) -> None:
    change(started)

    order = load_order(runtime, REF)
    assert (order.state, order.step_attempts) == (OrderState.IN_PROGRESS, 1)
    [attempt] = attempts(runtime)
    assert (attempt.step, attempt.outcome, attempt.run) == (
        Step.LOOKUP_CONTRACT,
        AttemptOutcome.STARTED,
        1,
    )


def test_a_finished_step_keeps_its_findings_and_moves_on(runtime: Runtime, change: Any) -> None:
    def finish(session: Session, order: Order) -> None:
        attempt_id = started(session, order, Step.CREATE_CUSTOMER)
        changes = {"customer_id": 10517, "customer_created": True}
        lifecycle.record_step(
            session, order, attempt_id, Step.CREATE_CUSTOMER, outcome(changes=changes), NOW
        )

    change(finish)

    order = load_order(runtime, REF)
    assert (order.step, order.customer_id, order.step_attempts) == (Step.ADD_SERVICES, 10517, 0)
    assert order.lease_owner == "w1"  # the worker goes on with the next step
    [attempt] = attempts(runtime)
    assert (attempt.outcome, attempt.ids) == (AttemptOutcome.OK, {"customer_id": 10517})


def test_a_step_may_not_set_the_lifecycles_columns(change: Any) -> None:
    def finish(session: Session, order: Order) -> None:
        attempt_id = started(session, order)
        bad = outcome(changes={"state": OrderState.DONE})
        lifecycle.record_step(session, order, attempt_id, Step.LOOKUP_CONTRACT, bad, NOW)

    with pytest.raises(ValueError, match="a step may not set state"):
        change(finish)


def test_an_order_that_ends_gives_its_lease_back_and_tells_staff(
    runtime: Runtime, change: Any
) -> None:
    def finish(session: Session, order: Order) -> None:
        attempt_id = started(session, order, Step.FIND_CUSTOMER)
        ended = outcome(
            detail="customer #5 already carries site id 204817",
            next_step=Step.FINISHED,
            final_state=OrderState.DUPLICATE,
            notify=NotificationKind.DUPLICATE,
            notify_context={"customer_id": 5},
        )
        lifecycle.record_step(session, order, attempt_id, Step.FIND_CUSTOMER, ended, NOW)

    change(finish)

    order = load_order(runtime, REF)
    assert (order.state, order.step, order.lease_owner) == (
        OrderState.DUPLICATE,
        Step.FINISHED,
        None,
    )
    assert order.reason == "customer #5 already carries site id 204817"
    [attempt] = attempts(runtime)
    assert attempt.outcome == AttemptOutcome.FINAL
    [mail] = notifications(runtime)
    assert (mail.kind, mail.context) == (
        NotificationKind.DUPLICATE,
        {"customer_id": 5, "step": "find_customer"},
    )


def test_a_hold_waits_for_a_person_with_the_reason_and_one_email(
    runtime: Runtime, change: Any
) -> None:
    def hold(session: Session, order: Order) -> None:
        attempt_id = started(session, order, Step.CREATE_CUSTOMER)
        refusal = RejectedError("powercode", "createCustomer refused: statusCode 4 (Invalid state)")
        lifecycle.hold_for_person(
            session,
            order,
            attempt_id,
            Step.CREATE_CUSTOMER,
            AttemptOutcome.REJECTED,
            str(refusal),
            NOW,
            cause=refusal,
        )

    change(hold)

    order = load_order(runtime, REF)
    assert (order.state, order.lease_owner) == (OrderState.WAITING, None)
    assert order.reason == (
        "create_customer: powercode: createCustomer refused: statusCode 4 (Invalid state)"
    )
    [mail] = notifications(runtime)
    assert mail.kind == NotificationKind.HELD
    assert mail.context["headline"] == "Failed to create customer in PowerCode"


def test_a_retry_that_stops_again_for_the_same_reason_sends_no_second_email(
    runtime: Runtime, change: Any
) -> None:
    unmapped = "plan '2 Gbps' has no PowerCode service mapping: add one to the plan mapping"

    def hold(reason: str) -> Callable[[Session, Order], None]:
        def run(session: Session, order: Order) -> None:
            if order.state == OrderState.WAITING:
                lifecycle.start_new_run(order, Step.CHOOSE_PLANS, NOW)  # a person's retry
            attempt_id = started(session, order, Step.CHOOSE_PLANS)
            lifecycle.hold_for_person(
                session, order, attempt_id, Step.CHOOSE_PLANS, AttemptOutcome.HELD, reason, NOW
            )

        return run

    change(hold(unmapped))
    change(hold(unmapped))  # the same hold again: staff were told already
    order = load_order(runtime, REF)
    assert (order.state, order.run) == (OrderState.WAITING, 2)
    assert order.reason == f"choose_plans: {unmapped}"
    assert len(notifications(runtime)) == 1
    assert [a.outcome for a in attempts(runtime)] == [AttemptOutcome.HELD] * 2

    change(hold("the service address state 'Deseret' is not a US state"))  # a new reason
    assert len(notifications(runtime)) == 2

    def passes_then_holds(session: Session, order: Order) -> None:
        lifecycle.start_new_run(order, Step.CHOOSE_PLANS, NOW)
        attempt_id = started(session, order, Step.CHOOSE_PLANS)
        lifecycle.record_step(session, order, attempt_id, Step.CHOOSE_PLANS, outcome(), NOW)
        order.step = Step.CHOOSE_PLANS  # a person runs the step again later
        attempt_id = started(session, order, Step.CHOOSE_PLANS)
        lifecycle.hold_for_person(
            session, order, attempt_id, Step.CHOOSE_PLANS, AttemptOutcome.HELD, unmapped, NOW
        )

    change(passes_then_holds)  # the step had passed in between: this is news again
    assert len(notifications(runtime)) == 3


def test_a_hold_about_the_site_keeps_names_out_of_the_history(
    runtime: Runtime, change: Any
) -> None:
    def hold(session: Session, order: Order) -> None:
        attempt_id = started(session, order, Step.FIND_CUSTOMER)
        lifecycle.hold_for_person(
            session,
            order,
            attempt_id,
            Step.FIND_CUSTOMER,
            AttemptOutcome.HELD,
            "the order is for Avery Lindqvist, but site 204817 has Harriet Colburn",
            NOW,
            history="site 204817 already has PowerCode customer #5 under another name",
            former=lifecycle.FormerCustomer(5, "Harriet Colburn", "Inactive"),
        )

    change(hold)

    order = load_order(runtime, REF)
    assert (order.former_customer_id, order.former_customer_status) == (5, "Inactive")
    assert lifecycle.waits_for_site_decision(order)
    [attempt] = attempts(runtime)
    assert attempt.detail == "site 204817 already has PowerCode customer #5 under another name"


def test_a_fault_outside_is_retried_later_with_backoff(runtime: Runtime, change: Any) -> None:
    def fault(session: Session, order: Order) -> bool:
        attempt_id = started(session, order, Step.ADD_SERVICES)
        error = RetryableError("powercode", "addCustomerService: HTTP 503", may_have_applied=False)
        return lifecycle.schedule_retry(
            session, order, attempt_id, Step.ADD_SERVICES, error, NOW, POLICY, random.Random(1)
        )

    assert change(fault) is False

    order = load_order(runtime, REF)
    assert (order.state, order.lease_owner) == (OrderState.IN_PROGRESS, None)
    # First attempt: between half the base and the base.
    assert timedelta(seconds=5) <= order.next_attempt_at - NOW <= timedelta(seconds=10)
    assert str(order.reason).startswith("add_services: retrying after a fault outside")
    [attempt] = attempts(runtime)
    assert attempt.outcome == AttemptOutcome.RETRY
    assert notifications(runtime) == []


def test_past_the_deadline_the_order_waits_and_staff_hear_once(
    runtime: Runtime, change: Any
) -> None:
    def fault(session: Session, order: Order) -> bool:
        attempt_id = started(session, order, Step.CREATE_TICKET)
        order.retrying_since = NOW - timedelta(hours=25)
        error = RetryableError("powercode", "createTicket: timed out", may_have_applied=True)
        return lifecycle.schedule_retry(
            session, order, attempt_id, Step.CREATE_TICKET, error, NOW, POLICY, random.Random(1)
        )

    assert change(fault) is True

    order = load_order(runtime, REF)
    assert order.state == OrderState.WAITING
    assert order.reason == (
        "create_ticket: still failing after 24 h of retries: powercode: createTicket: timed out"
    )
    [attempt] = attempts(runtime)
    assert attempt.outcome == AttemptOutcome.UNCERTAIN
    [mail] = notifications(runtime)
    assert (mail.kind, mail.context["headline"]) == (
        NotificationKind.FAILED,
        "Order could not be completed",
    )


def test_retry_policy_honours_retry_after_within_an_hour() -> None:
    rng = random.Random(3)
    assert POLICY.delay(1, 30.0, rng) == 30.0
    assert POLICY.delay(1, 86_400.0, rng) == 3600.0
    assert 300 <= POLICY.delay(20, None, rng) <= 600  # capped


def test_a_new_run_starts_clean(runtime: Runtime, change: Any) -> None:
    def run_again(session: Session, order: Order) -> None:
        order.state, order.reason, order.resolved_by_hand = OrderState.DONE, "x", True
        lifecycle.start_new_run(order, Step.ADD_TAGS, NOW)

    change(run_again)

    order = load_order(runtime, REF)
    assert (order.run, order.state, order.step) == (2, OrderState.IN_PROGRESS, Step.ADD_TAGS)
    assert (order.reason, order.resolved_by_hand, order.next_attempt_at) == (None, False, NOW)


def test_resolving_by_hand_is_a_column_not_a_reading_of_the_reason(
    runtime: Runtime, change: Any
) -> None:
    change(lambda s, o: lifecycle.resolve_by_hand(o, "  made in PowerCode  ", "alice", NOW))

    order = load_order(runtime, REF)
    assert (order.state, order.step, order.resolved_by_hand) == (
        OrderState.DONE,
        Step.FINISHED,
        True,
    )
    assert order.reason == "resolved by hand by alice: made in PowerCode"


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (
            lambda o: (
                setattr(o, "lease_expires_at", NOW + timedelta(minutes=1))
                or setattr(o, "lease_owner", "w1")
            ),
            f"order {REF} is being worked on right now; try again shortly",
        ),
        (
            lambda o: setattr(o, "state", OrderState.DONE),
            f"order {REF} is done already; only an order in progress or waiting for a person "
            "can be ignored",
        ),
    ],
)
def test_closing_by_hand_is_refused_while_held_or_after_the_end(
    runtime: Runtime, change: Any, prepare: Callable[[Order], object], message: str
) -> None:
    change(lambda s, o: prepare(o))
    with pytest.raises(ActionRefused) as caught:
        change(lambda s, o: lifecycle.ignore(o, "nothing to do", "alice", NOW))
    assert str(caught.value) == message


@pytest.mark.parametrize("note", ["", "   ", "x" * 2001])
def test_a_note_is_required_and_bounded(runtime: Runtime, change: Any, note: str) -> None:
    with pytest.raises(ActionRefused):
        change(lambda s, o: lifecycle.resolve_by_hand(o, note, "alice", NOW))
    assert load_order(runtime, REF).state == OrderState.RECEIVED


def test_a_site_decision_needs_the_question_first(runtime: Runtime, change: Any) -> None:
    with pytest.raises(ActionRefused, match="not waiting for a decision"):
        change(lambda s, o: lifecycle.decide_site(o, SiteDecision.SAME_PERSON, NOW))

    def asked(session: Session, order: Order) -> None:
        order.state, order.step, order.former_customer_id = (
            OrderState.WAITING,
            Step.FIND_CUSTOMER,
            5,
        )

    change(asked)
    change(lambda s, o: lifecycle.decide_site(o, SiteDecision.NEW_CUSTOMER, NOW))

    order = load_order(runtime, REF)
    assert (order.site_decision, order.state, order.run) == (
        SiteDecision.NEW_CUSTOMER,
        OrderState.IN_PROGRESS,
        2,
    )


def test_a_corrected_contract_is_refused_once_a_customer_exists(
    runtime: Runtime, change: Any
) -> None:
    def created(session: Session, order: Order) -> None:
        order.customer_id, order.customer_created = 10517, True

    change(created)
    with pytest.raises(ActionRefused, match="already created PowerCode customer #10517"):
        change(
            lambda s, o: lifecycle.restart_with_contract(
                o, {}, "204817", "Avery Lindqvist", None, Step.CHOOSE_PLANS, NOW
            )
        )
    assert load_order(runtime, REF).customer_id == 10517


def test_a_recorded_order_is_known_but_not_worked_on(runtime: Runtime, worker: Worker) -> None:
    with runtime.store.write() as session:
        lifecycle.record_known_order(session, "UIA202611-000001", "listed before installation", NOW)
    worker.run_until_idle()

    order = load_order(runtime, "UIA202611-000001")
    assert (order.state, order.reason) == (OrderState.RECORDED, "listed before installation")
    assert attempts(runtime) == []


def test_a_new_order_message_provisions_a_recorded_order_once(
    runtime: Runtime, worker: Worker
) -> None:
    with runtime.store.write() as session:
        lifecycle.record_known_order(session, REF, "listed before installation", NOW)
    outcomes = []
    for _ in range(2):
        with runtime.store.write() as session:
            outcomes.append(
                queries.record_callback(
                    session,
                    order_ref=REF,
                    msg="Project New Order",
                    event="Project Update",
                    body="{}",
                    remote_addr="127.0.0.1",
                    now=utcnow(),
                )
            )
    worker.run_until_idle()

    assert [o.value for o in outcomes] == ["queued", "repeat"]
    assert load_order(runtime, REF).state == OrderState.DONE


def test_a_person_provisions_a_recorded_order_and_only_that(runtime: Runtime, change: Any) -> None:
    with pytest.raises(ActionRefused, match="not recorded"):
        change(lambda s, o: lifecycle.provision_recorded(o, NOW))
    change(lambda s, o: setattr(o, "state", OrderState.RECORDED))

    change(lambda s, o: lifecycle.provision_recorded(o, NOW))

    order = load_order(runtime, REF)
    assert (order.state, order.step, order.next_attempt_at) == (
        OrderState.RECEIVED,
        Step.LOOKUP_CONTRACT,
        NOW,
    )


def test_an_order_found_by_reconciliation_starts_as_a_callback_starts_it(
    runtime: Runtime, worker: Worker
) -> None:
    with runtime.store.write() as session:
        assert lifecycle.queue_found_order(session, REF, NOW) is not None
        assert lifecycle.queue_found_order(session, REF, NOW) is None  # known: kept as is
    order = load_order(runtime, REF)
    assert (order.state, order.step, order.run, order.next_attempt_at) == (
        OrderState.RECEIVED,
        Step.LOOKUP_CONTRACT,
        1,
        NOW,
    )
    # Its callback, when it comes after all, starts nothing new.
    with runtime.store.write() as session:
        outcome = queries.record_callback(
            session,
            order_ref=REF,
            msg="Project New Order",
            event="Project Update",
            body="{}",
            remote_addr="127.0.0.1",
            now=utcnow(),
        )
    assert outcome.value == "repeat"
    worker.run_until_idle()
    assert load_order(runtime, REF).state == OrderState.DONE
