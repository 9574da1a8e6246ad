"""Every UTOPIA message on its order's timeline, and the routing table's actions, exactly once.

Callbacks go over real HTTP to the real service; the actions run in a real worker against the
PowerCode stand-in and a real SMTP server. Crashes are an exception nothing catches (as in
test_exactly_once.py); lost replies are the stand-ins' drop_after_apply fault.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import (
    CALLBACK_TOKEN,
    ManualClock,
    load_order,
    post_callback,
    settled,
    wait_for,
)
from utopia_handler import actions
from utopia_handler.emulators import Emulators
from utopia_handler.report import order_story
from utopia_handler.runtime import Runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.store import queries
from utopia_handler.store.models import (
    AttemptOutcome,
    Callback,
    MessageAction,
    MessageActionAttempt,
    MessageActionState,
    Notification,
    NotificationKind,
    OrderState,
)
from utopia_handler.worker import Worker

PLAIN = "UIA202611-004217"  # 250 Mbps: provisioned at the first go
UNIT = "UIA202611-004218"
NEVER_SENT = "UIA202611-004299"  # no new-order message ever comes for it

ROUTES = """
[[messages]]
match = "Project Cancelled"
action = "hold"

[[messages]]
match = "install  scheduled"
action = "ticket"

[[messages]]
pattern = "Port(ing)? Complete.*"
action = "note"

[[messages]]
match = "Project Update Sent"
action = "notify"

[[messages]]
match = "Status Ping"
action = "ignore"
"""


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the worker catches it."""


@pytest.fixture
def routed(make_runtime: Callable[..., Runtime], tmp_path: Path) -> Runtime:
    """A runtime whose settings file routes five messages."""
    config = tmp_path / "handler.toml"
    config.write_text(ROUTES, encoding="utf-8")
    return make_runtime(UTOPIA_HANDLER_CONFIG=str(config))


@pytest.fixture
def web(routed: Runtime) -> Iterator[ServiceHandle]:
    """The HTTP side only: the test drives the worker itself, on its own clock."""
    handle = ServiceHandle(routed, worker=False, port=0).start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def worker(routed: Runtime, clock: ManualClock) -> Worker:
    return Worker(routed, name="first", clock=clock)


def send(url: str, ref: str, msg: str, event: str | None = "Project Update") -> str:
    """POST one callback over HTTP; the status the endpoint answered."""
    answer = post_callback(url, {"event": event, "orderref": ref, "msg": msg})
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


def provisioned(web: ServiceHandle, worker: Worker, ref: str = PLAIN) -> int:
    """A new order over HTTP, worked to the end; its PowerCode customer id."""
    assert send(web.url, ref, "Project New Order") == "queued"
    worker.run_until_idle()
    order = load_order(web.runtime, ref)
    assert order.state == OrderState.DONE, order.reason
    assert order.customer_id is not None
    return order.customer_id


def routed_actions(runtime: Runtime) -> list[MessageAction]:
    with runtime.store.read() as session:
        return list(session.scalars(select(MessageAction).order_by(MessageAction.id)))


def attempts_of(runtime: Runtime, action_id: int) -> list[AttemptOutcome]:
    with runtime.store.read() as session:
        return list(
            session.scalars(
                select(MessageActionAttempt.outcome)
                .where(MessageActionAttempt.action_id == action_id)
                .order_by(MessageActionAttempt.id)
            )
        )


def subjects(emulators: Emulators) -> list[str]:
    # Unfolded: a subject a little too long for one header line is moved whole to the next.
    return [" ".join(str(m["Subject"]).split()) for m in emulators.smtp.messages]


def message_tickets(emulators: Emulators, customer_id: int) -> list[dict[str, Any]]:
    return [
        t
        for t in emulators.powercode.tickets.values()
        if t["customerID"] == customer_id and str(t["summary"]).startswith("UTOPIA: ")
    ]


# Every message with its order ---------------------------------------------------------------------


def test_every_message_is_stored_with_its_order_and_told_in_time_order(
    routed: Runtime, emulators: Emulators
) -> None:
    handle = ServiceHandle(routed, port=0).start()  # the real service, worker in the background
    try:
        assert send(handle.url, PLAIN, "Project New Order") == "queued"
        wait_for(lambda: settled(routed))
        assert send(handle.url, PLAIN, "Project Install Confirmed", "Install") == "not_handled"
        assert send(handle.url, PLAIN, "Project Install Confirmed", "Install") == "repeat"
        assert send(handle.url, "UIA202611-000001", "Test", "Test") == "test_queued"
        wait_for(lambda: settled(routed))
        with routed.store.read() as session:
            order = queries.find_order(session, PLAIN)
            assert order is not None
            rows = session.scalars(select(Callback).order_by(Callback.id)).all()
            story = order_story(session, order)
        assert [(c.msg, c.order_id) for c in rows] == [
            ("Project New Order", order.id),
            ("Project Install Confirmed", order.id),
            ("Project Install Confirmed", order.id),
            ("Test", None),  # a test is about no order
        ]
        # `orders show`: the later message after the steps it followed, not bunched on top.
        lines = [line.strip() for line in story[1:]]
        first_step = next(i for i, line in enumerate(lines) if "lookup_contract" in line)
        later = next(i for i, line in enumerate(lines) if "'Project Install Confirmed'" in line)
        assert "callback 'Project New Order' -> queued" in lines[0]
        assert first_step < later
        assert any("e-mail success: sent" in line for line in lines[:later])
    finally:
        handle.stop()


def test_a_message_for_an_unknown_order_records_it_and_a_new_order_provisions_it(
    web: ServiceHandle, worker: Worker, emulators: Emulators
) -> None:
    assert send(web.url, UNIT, "Project Survey Scheduled") == "not_handled"
    worker.run_until_idle()
    order = load_order(web.runtime, UNIT)
    assert order.state == OrderState.RECORDED
    assert order.reason == "UTOPIA sent 'Project Survey Scheduled'; no new-order message yet"
    assert emulators.utopia.calls["contractlookup"] == 0  # not provisioned

    assert send(web.url, UNIT, "Project New Order") == "queued"
    worker.run_until_idle()
    order = load_order(web.runtime, UNIT)
    assert order.state == OrderState.DONE
    with web.runtime.store.read() as session:
        outcomes = session.scalars(
            select(Callback.outcome).where(Callback.order_id == order.id).order_by(Callback.id)
        ).all()
    assert outcomes == ["not_handled", "queued"]


def test_the_not_handled_list_spans_orders_and_ignored_messages_stay_off_it(
    web: ServiceHandle, worker: Worker
) -> None:
    assert send(web.url, PLAIN, "Status Ping") == "ignored"
    assert send(web.url, PLAIN, "Project Survey Scheduled") == "not_handled"
    assert send(web.url, UNIT, "Project Survey Scheduled") == "not_handled"
    with web.runtime.store.read() as session:
        listed = queries.not_handled_messages(session, limit=20)
        assert session.scalar(select(MessageAction.id)) is None  # ignore starts no work
    assert listed == [("Project Survey Scheduled", 2)]


# notify ----------------------------------------------------------------------------------------


def test_notify_emails_staff_once_with_the_message_and_the_orders_facts(
    web: ServiceHandle, worker: Worker, emulators: Emulators
) -> None:
    customer_id = provisioned(web, worker)
    assert send(web.url, PLAIN, "Project Update Sent", "Field Update") == "routed"
    assert send(web.url, PLAIN, "Project Update Sent", "Field Update") == "repeat"
    worker.run_until_idle()
    [action] = routed_actions(web.runtime)
    assert (action.state, action.action.value) == (MessageActionState.DONE, "notify")
    [mail] = [m for m in emulators.smtp.messages if "UTOPIA message" in str(m["Subject"])]
    assert str(mail["Subject"]).strip() == f'UTOPIA message "Project Update Sent" - Order {PLAIN}'
    text = mail.get_body(("plain",)).get_content()
    assert 'UTOPIA sent "Project Update Sent" (event "Field Update")' in text
    assert f"customer #{customer_id}" in text and "Avery" in text  # the order's facts
    assert [a.get_filename() for a in mail.iter_attachments()] == []
    assert str(mail["Message-ID"]) == f"<message.{PLAIN}@utopia-handler.local>"


def test_a_crash_before_the_notify_is_recorded_sends_one_email(
    web: ServiceHandle,
    worker: Worker,
    emulators: Emulators,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provisioned(web, worker)
    assert send(web.url, PLAIN, "Project Update Sent") == "routed"
    runner = worker.messages
    real_record = runner.record

    def die(*args: Any) -> None:
        raise Killed

    monkeypatch.setattr(runner, "record", die)
    with pytest.raises(Killed):
        worker.run_until_idle()
    monkeypatch.setattr(runner, "record", real_record)
    clock.advance(120)
    Worker(web.runtime, name="second", clock=clock).run_until_idle()
    [action] = routed_actions(web.runtime)
    assert action.state == MessageActionState.DONE
    assert attempts_of(web.runtime, action.id) == [AttemptOutcome.STARTED, AttemptOutcome.OK]
    assert sum("UTOPIA message" in s for s in subjects(emulators)) == 1


# hold ------------------------------------------------------------------------------------------


def test_hold_stops_an_order_being_provisioned_until_a_person_retries_it(
    web: ServiceHandle, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    emulators.utopia.faults.add("contractlookup", "fail", status=503)
    assert send(web.url, PLAIN, "Project New Order") == "queued"
    worker.run_until_idle()
    assert load_order(web.runtime, PLAIN).state == OrderState.IN_PROGRESS  # retried later
    assert send(web.url, PLAIN, "Project Cancelled", "Cancel") == "routed"
    worker.run_until_idle()
    order = load_order(web.runtime, PLAIN)
    assert order.state == OrderState.WAITING
    assert order.reason == (
        "lookup_contract: UTOPIA sent 'Project Cancelled' (event \"Cancel\"); check the order "
        "with UTOPIA, then retry it to go on, or ignore it"
    )
    assert subjects(emulators) == [
        f'UTOPIA message "Project Cancelled": order on hold - Order {PLAIN}'
    ]
    clock.advance(3600)
    worker.run_until_idle()  # nothing moves while it waits
    assert load_order(web.runtime, PLAIN).state == OrderState.WAITING
    with web.runtime.store.write() as session:
        actions.retry_order(session, PLAIN, clock(), actor="tester")
    worker.run_until_idle()
    assert load_order(web.runtime, PLAIN).state == OrderState.DONE


def test_hold_waits_while_a_worker_has_the_order_then_holds_it(
    web: ServiceHandle, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    emulators.utopia.faults.add("contractlookup", "fail", status=503, count=None)
    assert send(web.url, PLAIN, "Project New Order") == "queued"
    worker.run_until_idle()
    with web.runtime.store.write() as session:
        order = queries.find_order(session, PLAIN)
        assert order is not None
        order.lease_owner, order.lease_expires_at = "elsewhere", clock() + timedelta(seconds=60)
    assert send(web.url, PLAIN, "Project Cancelled") == "routed"
    worker.run_until_idle()
    [action] = routed_actions(web.runtime)
    assert action.state == MessageActionState.PENDING
    assert action.detail is not None and "being worked on" in action.detail
    assert load_order(web.runtime, PLAIN).state == OrderState.IN_PROGRESS
    clock.advance(61)
    Worker(web.runtime, name="second", clock=clock).run_until_idle()
    assert load_order(web.runtime, PLAIN).state == OrderState.WAITING


def test_hold_on_a_finished_order_changes_nothing_and_emails_staff_instead(
    web: ServiceHandle, worker: Worker, emulators: Emulators
) -> None:
    provisioned(web, worker)
    assert send(web.url, PLAIN, "Project Cancelled") == "routed"
    worker.run_until_idle()
    assert load_order(web.runtime, PLAIN).state == OrderState.DONE
    [action] = routed_actions(web.runtime)
    assert action.state == MessageActionState.DONE
    assert (
        action.detail is not None
        and "the order is done, so it was not put on hold" in action.detail
    )
    [mail] = [m for m in emulators.smtp.messages if "UTOPIA message" in str(m["Subject"])]
    assert "so it was not put on hold" in mail.get_body(("plain",)).get_content()


# ticket ----------------------------------------------------------------------------------------


def test_ticket_opens_one_ticket_from_its_template_with_the_install_tickets_ids(
    web: ServiceHandle, worker: Worker, emulators: Emulators
) -> None:
    customer_id = provisioned(web, worker)
    assert send(web.url, PLAIN, "Install Scheduled", "Install") == "routed"
    assert send(web.url, PLAIN, "Install Scheduled", "Install") == "repeat"
    worker.run_until_idle()
    [ticket] = message_tickets(emulators, customer_id)
    assert ticket["summary"] == f"UTOPIA: Install Scheduled ({PLAIN})"
    assert "Message: Install Scheduled" in ticket["description"]
    assert (ticket["category"], ticket["ticketType"], ticket["status"]) == ("54", "21", "1")
    assert (ticket["responsibleUser"], ticket["responsibleGroupID"]) == ("Sales", "4")
    [action] = routed_actions(web.runtime)
    assert (action.state, action.ticket_id) == (MessageActionState.DONE, ticket["ticketID"])


def test_a_crash_after_the_ticket_request_waits_for_a_person_not_a_second_ticket(
    web: ServiceHandle,
    worker: Worker,
    emulators: Emulators,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    customer_id = provisioned(web, worker)
    real = web.runtime.powercode.create_ticket

    def call_then_die(*args: Any) -> Any:
        real(*args)
        raise Killed

    monkeypatch.setattr(web.runtime.powercode, "create_ticket", call_then_die)
    assert send(web.url, PLAIN, "Install Scheduled") == "routed"
    with pytest.raises(Killed):
        worker.run_until_idle()
    monkeypatch.setattr(web.runtime.powercode, "create_ticket", real)
    clock.advance(120)
    Worker(web.runtime, name="second", clock=clock).run_until_idle()
    [action] = routed_actions(web.runtime)
    assert action.state == MessageActionState.WAITING
    assert action.detail is not None and "may exist" in action.detail
    assert len(message_tickets(emulators, customer_id)) == 1
    assert f'UTOPIA message "Install Scheduled" needs a person - Order {PLAIN}' in subjects(
        emulators
    )
    # A person checked PowerCode and closes it: nothing more is sent.
    with web.runtime.store.write() as session:
        actions.close_message_action(
            session, PLAIN, action.id, "ticket 500 is there", clock(), actor="tester"
        )
    Worker(web.runtime, name="third", clock=clock).run_until_idle()
    assert len(message_tickets(emulators, customer_id)) == 1
    assert routed_actions(web.runtime)[0].state == MessageActionState.CLOSED


def test_a_lost_message_ticket_reply_is_never_sent_twice(
    web: ServiceHandle, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    customer_id = provisioned(web, worker)
    emulators.powercode.faults.add("createTicket", "drop_after_apply", count=1)
    assert send(web.url, PLAIN, "Install Scheduled") == "routed"
    worker.run_until_idle()
    [action] = routed_actions(web.runtime)
    assert action.state == MessageActionState.PENDING  # tried again later...
    clock.advance(3600)
    worker.run_until_idle()
    [action] = routed_actions(web.runtime)
    assert action.state == MessageActionState.WAITING  # ...where it may exist: a person looks
    assert attempts_of(web.runtime, action.id) == [AttemptOutcome.UNCERTAIN, AttemptOutcome.HELD]
    assert len(message_tickets(emulators, customer_id)) == 1
    # The person found no ticket and retries: a new run opens exactly one.
    emulators.powercode.tickets.clear()
    with web.runtime.store.write() as session:
        actions.retry_message_action(session, PLAIN, action.id, clock(), actor="tester")
    worker.run_until_idle()
    assert len(message_tickets(emulators, customer_id)) == 1
    assert routed_actions(web.runtime)[0].state == MessageActionState.DONE


def test_a_crash_as_the_ticket_action_begins_waits_for_a_person(
    web: ServiceHandle,
    worker: Worker,
    emulators: Emulators,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    customer_id = provisioned(web, worker)
    runner = worker.messages
    real_perform = runner.perform

    def die(*args: Any) -> Any:
        raise Killed

    monkeypatch.setattr(runner, "perform", die)
    assert send(web.url, PLAIN, "Install Scheduled") == "routed"
    with pytest.raises(Killed):
        worker.run_until_idle()
    monkeypatch.setattr(runner, "perform", real_perform)
    clock.advance(120)
    Worker(web.runtime, name="second", clock=clock).run_until_idle()
    assert routed_actions(web.runtime)[0].state == MessageActionState.WAITING
    assert message_tickets(emulators, customer_id) == []


# note ------------------------------------------------------------------------------------------


def notes_of(emulators: Emulators, customer_id: int) -> str:
    return str(emulators.powercode.customers[customer_id]["customerNotes"])


def test_note_adds_one_line_to_the_customers_notes(
    web: ServiceHandle, worker: Worker, emulators: Emulators
) -> None:
    customer_id = provisioned(web, worker)
    before = notes_of(emulators, customer_id)
    assert send(web.url, PLAIN, "Porting Complete 555-0142", "Port") == "routed"
    assert send(web.url, PLAIN, "Porting Complete 555-0142", "Port") == "repeat"
    worker.run_until_idle()
    notes = notes_of(emulators, customer_id)
    first, _, line = notes.rpartition("\n")
    assert first == before
    assert line.endswith(
        f'UTC: UTOPIA sent "Porting Complete 555-0142" (event Port) for order {PLAIN}'
    )
    [update] = emulators.powercode.customer_updates
    assert update == (customer_id, ("customerNotes",))
    # Another event of the same message is another piece of news: a second line.
    assert send(web.url, PLAIN, "Porting Complete 555-0142", "Port again") == "routed"
    worker.run_until_idle()
    assert notes_of(emulators, customer_id).count("Porting Complete 555-0142") == 2


@pytest.mark.parametrize("how", ["crash after the write", "reply lost"])
def test_a_note_written_but_not_recorded_is_found_and_not_written_again(
    web: ServiceHandle,
    worker: Worker,
    emulators: Emulators,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    customer_id = provisioned(web, worker)
    assert send(web.url, PLAIN, "Port Complete") == "routed"
    if how == "reply lost":
        emulators.powercode.faults.add("updateCustomer", "drop_after_apply", count=1)
        worker.run_until_idle()
    else:
        real = web.runtime.powercode.update_customer_notes

        def write_then_die(*args: Any) -> None:
            real(*args)
            raise Killed

        monkeypatch.setattr(web.runtime.powercode, "update_customer_notes", write_then_die)
        with pytest.raises(Killed):
            worker.run_until_idle()
        monkeypatch.setattr(web.runtime.powercode, "update_customer_notes", real)
    clock.advance(3600)
    Worker(web.runtime, name="second", clock=clock).run_until_idle()
    [action] = routed_actions(web.runtime)
    assert action.state == MessageActionState.DONE
    assert action.detail == f"the line is in customer #{customer_id}'s notes already"
    assert notes_of(emulators, customer_id).count('UTOPIA sent "Port Complete"') == 1
    assert len(emulators.powercode.customer_updates) == 1


def test_a_note_waits_for_a_person_when_powercode_does_not_show_the_notes(
    web: ServiceHandle, worker: Worker, emulators: Emulators
) -> None:
    customer_id = provisioned(web, worker)
    before = notes_of(emulators, customer_id)
    emulators.powercode.read_notes = False
    assert send(web.url, PLAIN, "Port Complete") == "routed"
    worker.run_until_idle()
    [action] = routed_actions(web.runtime)
    assert action.state == MessageActionState.WAITING
    assert action.detail is not None and "without replacing them" in action.detail
    assert notes_of(emulators, customer_id) == before  # never overwritten unseen
    assert emulators.powercode.customer_updates == []


# an action that needs a customer ------------------------------------------------------------------


def test_an_action_waits_for_the_customer_its_order_is_about_to_get(
    web: ServiceHandle, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    emulators.utopia.faults.add("contractlookup", "fail", status=503)
    assert send(web.url, PLAIN, "Project New Order") == "queued"
    assert send(web.url, PLAIN, "Install Scheduled") == "routed"
    worker.run_until_idle()
    [action] = routed_actions(web.runtime)
    assert action.state == MessageActionState.PENDING
    assert action.detail is not None and "no PowerCode customer yet" in action.detail
    clock.advance(3600)
    worker.run_until_idle()  # the order is provisioned, then the ticket opened on its customer
    order = load_order(web.runtime, PLAIN)
    assert order.state == OrderState.DONE and order.customer_id is not None
    [action] = routed_actions(web.runtime)
    assert action.state == MessageActionState.DONE
    assert len(message_tickets(emulators, order.customer_id)) == 1


def test_an_action_on_an_order_that_gets_no_customer_waits_for_a_person_at_once(
    web: ServiceHandle, worker: Worker, emulators: Emulators
) -> None:
    assert send(web.url, NEVER_SENT, "Port Complete") == "routed"
    worker.run_until_idle()
    assert load_order(web.runtime, NEVER_SENT).state == OrderState.RECORDED
    [action] = routed_actions(web.runtime)
    assert action.state == MessageActionState.WAITING
    assert action.detail is not None and action.detail.startswith(
        "the order is recorded and has no PowerCode customer"
    )
    assert emulators.powercode.customer_updates == []
    assert subjects(emulators) == [
        f'UTOPIA message "Port Complete" needs a person - Order {NEVER_SENT}'
    ]
    with web.runtime.store.read() as session:
        [mail] = session.scalars(select(Notification)).all()
    assert mail.kind == NotificationKind.MESSAGE


# The callback path ----------------------------------------------------------------------------


def test_a_repeated_delivery_starts_nothing_even_when_sent_at_once(web: ServiceHandle) -> None:
    from concurrent.futures import ThreadPoolExecutor

    body = {"event": "Port", "orderref": PLAIN, "msg": "Port Complete"}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post_callback(web.url, body), range(6)))
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses == ["repeat"] * 5 + ["routed"]
    assert len(routed_actions(web.runtime)) == 1
    with web.runtime.store.read() as session:
        assert len(session.scalars(select(Callback)).all()) == 6


def test_the_callback_answers_before_any_action_runs(web: ServiceHandle) -> None:
    answer = httpx.post(
        f"{web.url}/api-callback",
        params={"token": CALLBACK_TOKEN},
        json={"event": "Port", "orderref": PLAIN, "msg": "Port Complete"},
        timeout=10,
    )
    assert answer.json() == {"status": "routed", "orderref": PLAIN}
    [action] = routed_actions(web.runtime)
    assert action.state == MessageActionState.PENDING and action.attempts == 0
    with web.runtime.store.read() as session:
        assert not queries.all_work_finished(session)  # the demo and chaos wait for it


def test_orders_show_lists_the_routed_actions_with_their_ids(
    web: ServiceHandle, worker: Worker
) -> None:
    provisioned(web, worker)
    assert send(web.url, PLAIN, "Port Complete") == "routed"
    worker.run_until_idle()
    [action] = routed_actions(web.runtime)
    with web.runtime.store.read() as session:
        order = queries.find_order(session, PLAIN)
        assert order is not None
        story = "\n".join(order_story(session, order))
    assert f"routed note for 'Port Complete' (action {action.id}): done" in story
    assert "note for 'Port Complete' run 1 attempt 1: ok - line added" in story
