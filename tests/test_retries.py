"""Faults outside are retried with backoff up to a deadline; refusals wait for a person at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from tests.conftest import ManualClock, load_order, queue_order
from utopia_handler.actions import retry_order
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store.models import Notification, NotificationState, OrderState, Step
from utopia_handler.worker import Worker

ORDER = "UIA202611-004217"


def subjects(emulators: Emulators) -> list[str]:
    return [str(m["Subject"]) for m in emulators.smtp.messages]


def test_retry_after_is_honoured_then_the_order_completes(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    emulators.powercode.faults.add("createCustomer", "fail", status=503, retry_after=30)
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    order = load_order(runtime, ORDER)
    assert order.state == OrderState.IN_PROGRESS
    assert order.step == Step.CREATE_CUSTOMER
    assert order.next_attempt_at >= clock() + timedelta(seconds=30)
    calls = emulators.powercode.calls["createCustomer"]

    clock.advance(29)
    worker.run_until_idle()  # not due yet: nothing is sent
    assert emulators.powercode.calls["createCustomer"] == calls
    clock.advance(2)
    worker.run_until_idle()
    assert load_order(runtime, ORDER).state == OrderState.DONE
    assert len(emulators.powercode.customers) == 1 + 3  # three seeded before the order


def test_backoff_grows_and_the_deadline_hands_the_order_to_a_person_once(
    make_runtime: Callable[..., Runtime], emulators: Emulators, clock: ManualClock
) -> None:
    runtime = make_runtime(
        RETRY_BASE_SECONDS="60", RETRY_MAX_SECONDS="3600", RETRY_DEADLINE_HOURS="6"
    )
    worker = Worker(runtime, name="w", clock=clock)
    emulators.powercode.faults.add("createTicket", "fail", status=503, count=None)
    queue_order(runtime, ORDER)
    delays: list[float] = []
    for _ in range(40):
        worker.run_until_idle()
        order = load_order(runtime, ORDER)
        if order.state != OrderState.IN_PROGRESS:
            break
        delays.append((order.next_attempt_at - clock()).total_seconds())
        clock.now = order.next_attempt_at
    order = load_order(runtime, ORDER)
    assert order.state == OrderState.WAITING
    assert order.reason is not None and "still failing after 6 h of retries" in order.reason
    # Each delay is within [cap/2, cap] for its attempt: exponential, jittered, capped at an hour.
    for attempt, delay in enumerate(delays, start=1):
        cap = min(3600.0, 60.0 * 2 ** (attempt - 1))
        assert cap / 2 <= delay <= cap
    assert max(delays) > 1800
    # Staff hear about it exactly once, even if the worker runs again.
    clock.advance(3600)
    worker.run_until_idle()
    assert subjects(emulators) == [f"Order could not be completed - Order {ORDER}"]


def test_powercode_refusal_is_not_retried_and_says_exactly_why(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    emulators.powercode.faults.add(
        "createCustomer", "reject", status_code=4, message="Invalid tax zone"
    )
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    clock.advance(3600)
    worker.run_until_idle()
    order = load_order(runtime, ORDER)
    assert order.state == OrderState.WAITING
    assert order.reason is not None
    assert "statusCode 4" in order.reason and "Invalid tax zone" in order.reason
    assert emulators.powercode.calls["createCustomer"] == 1
    [mail] = emulators.smtp.messages
    assert mail["Subject"] == f"Failed to create customer in PowerCode - Order {ORDER}"
    assert "Invalid tax zone" in mail.get_body(("plain",)).get_content()


def test_wrong_utopia_key_waits_for_a_person_with_a_utopia_error_email(
    make_runtime: Callable[..., Runtime], emulators: Emulators, clock: ManualClock
) -> None:
    runtime = make_runtime(UTOPIA_API_KEY="not-the-right-utopia-key")
    worker = Worker(runtime, name="w", clock=clock)
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    order = load_order(runtime, ORDER)
    assert order.state == OrderState.WAITING
    assert order.reason is not None and "UTOPIA_API_KEY" in order.reason
    assert subjects(emulators) == [f"Utopia API Error - Order {ORDER}"]


def test_utopia_timeout_is_retried(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    emulators.utopia.faults.add("contractlookup", "timeout", seconds=3)  # read timeout is 2 s
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    order = load_order(runtime, ORDER)
    assert order.state == OrderState.IN_PROGRESS and order.step == Step.LOOKUP_CONTRACT
    assert order.reason is not None and "retrying" in order.reason
    clock.advance(120)
    worker.run_until_idle()
    assert load_order(runtime, ORDER).state == OrderState.DONE


def test_powercode_down_is_retried_until_it_is_back(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    port = emulators.powercode.port
    emulators.powercode.stop()
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    order = load_order(runtime, ORDER)
    assert order.state == OrderState.IN_PROGRESS and order.step == Step.FIND_CUSTOMER
    emulators.powercode.port = port
    emulators.powercode.start()
    clock.advance(120)
    worker.run_until_idle()
    assert load_order(runtime, ORDER).state == OrderState.DONE


def test_smtp_refusing_for_a_while_delays_the_email_but_loses_nothing(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    emulators.smtp.faults.add("DATA", "fail", count=2)
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    assert load_order(runtime, ORDER).state == OrderState.DONE
    assert emulators.smtp.messages == []
    for _ in range(3):
        clock.advance(120)
        worker.run_until_idle()
    assert len(emulators.smtp.messages) == 1
    with runtime.store.read() as session:
        [notification] = session.query(Notification).all()
    assert notification.state == NotificationState.SENT
    assert notification.attempts == 3


def test_held_order_completes_after_the_mapping_is_added_and_a_person_retries(
    make_runtime: Callable[..., Runtime], emulators: Emulators, clock: ManualClock, tmp_path: Path
) -> None:
    unmapped = "UIA202611-004219"
    runtime = make_runtime()
    queue_order(runtime, unmapped)
    Worker(runtime, name="w1", clock=clock).run_until_idle()
    assert load_order(runtime, unmapped).state == OrderState.WAITING

    config = tmp_path / "handler.toml"
    config.write_text('[plans]\n"2 Gbps" = 165\n')
    fixed = make_runtime(UTOPIA_HANDLER_CONFIG=str(config))  # same database, new mapping
    with fixed.store.write() as session:
        retry_order(session, unmapped, clock())
    Worker(fixed, name="w2", clock=clock).run_until_idle()
    order = load_order(fixed, unmapped)
    assert order.state == OrderState.DONE
    assert order.customer_id is not None
    assert emulators.powercode.customer_services[order.customer_id] == {165: 1, 172: 1}
    # No e-mail address in the contract: the portal login falls back to the site id.
    assert emulators.powercode.customers[order.customer_id]["customerPortalUsername"] == "99120"
