"""`utopia-handler orders ...` does what the console's order buttons do, as `cli:<user>`."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from tests.conftest import load_order, queue_order
from utopia_handler.cli import cli
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import AuditEntry
from utopia_handler.store.models import Notification, NotificationState, OrderState, Step
from utopia_handler.worker import Worker

PLAIN = "UIA202611-004217"  # 250 Mbps: done at the first go
HELD = "UIA202611-004219"  # "2 Gbps" is not mapped: waits for a person
UNKNOWN = "UIA202611-999999"


@pytest.fixture
def run(
    base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    monkeypatch.chdir(tmp_path)  # no stray .env from the working folder
    monkeypatch.setenv("USER", "dana")
    monkeypatch.setenv("LOGNAME", "dana")

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=base_env, obj={})

    return invoke


@pytest.fixture
def held(console_runtime: Runtime, worker: Worker) -> str:
    queue_order(console_runtime, HELD)
    worker.run_until_idle()
    assert load_order(console_runtime, HELD).state == OrderState.WAITING
    return HELD


@pytest.fixture
def done(console_runtime: Runtime, worker: Worker) -> str:
    queue_order(console_runtime, PLAIN)
    worker.run_until_idle()
    assert load_order(console_runtime, PLAIN).state == OrderState.DONE
    return PLAIN


def audit_rows(runtime: Runtime, ref: str) -> list[tuple[str, str, str | None]]:
    """(actor, action, detail) of every audit entry about the order, oldest first."""
    with runtime.store.read() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.order_ref == ref).order_by(AuditEntry.id)
        )
        return [(entry.actor, entry.action, entry.detail) for entry in entries]


def test_the_actor_is_cli_and_the_os_user_name() -> None:
    from utopia_handler.cli import cli_actor

    assert cli_actor() == f"cli:{getpass.getuser()}"


def test_resolve_closes_a_waiting_order_with_the_note(
    console_runtime: Runtime, held: str, worker: Worker, run: Callable[..., Result]
) -> None:
    resolved = run("orders", "resolve", held, "--note", "created #4411 in PowerCode by hand")

    assert resolved.exit_code == 0, resolved.output
    assert resolved.output.strip() == f"{held} marked resolved"
    order = load_order(console_runtime, held)
    assert (order.state, order.step) == (OrderState.DONE, Step.FINISHED)
    assert order.reason == "resolved by hand by cli:dana: created #4411 in PowerCode by hand"
    assert audit_rows(console_runtime, held) == [
        ("cli:dana", "resolve", "created #4411 in PowerCode by hand")
    ]
    worker.run_until_idle()
    assert load_order(console_runtime, held).state == OrderState.DONE  # nothing more is done


def test_ignore_stops_work_and_a_retry_goes_on_where_it_stopped(
    console_runtime: Runtime, held: str, run: Callable[..., Result]
) -> None:
    ignored = run("orders", "ignore", held, "--note", "customer cancelled")

    assert ignored.exit_code == 0, ignored.output
    assert "ignored" in ignored.output
    order = load_order(console_runtime, held)
    assert order.state == OrderState.IGNORED
    assert order.reason == "ignored by cli:dana: customer cancelled"

    retried = run("orders", "retry", held, "--from-step", "choose_plans")
    assert retried.exit_code == 0, retried.output
    assert retried.output.strip() == f"{held} queued again at step choose_plans"
    assert load_order(console_runtime, held).state == OrderState.IN_PROGRESS
    assert [(actor, action) for actor, action, _ in audit_rows(console_runtime, held)] == [
        ("cli:dana", "ignore"),
        ("cli:dana", "retry_from_step"),
    ]


def test_resend_email_queues_the_latest_email_again_and_the_worker_sends_it(
    console_runtime: Runtime,
    done: str,
    worker: Worker,
    emulators: Emulators,
    run: Callable[..., Result],
) -> None:
    sent_before = len(emulators.smtp.messages)

    resent = run("orders", "resend-email", done)

    assert resent.exit_code == 0, resent.output
    assert resent.output.strip() == f"the success e-mail for {done} is queued again"
    with console_runtime.store.read() as session:
        states = list(session.scalars(select(Notification.state).order_by(Notification.id)))
    assert states == [NotificationState.SENT, NotificationState.PENDING]
    assert audit_rows(console_runtime, done) == [("cli:dana", "resend_email", "success e-mail")]
    worker.run_until_idle()
    assert len(emulators.smtp.messages) == sent_before + 1


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("resolve", PLAIN, "--note", "x"), f"order {PLAIN} is done already"),
        (("ignore", PLAIN, "--note", "x"), f"order {PLAIN} is done already"),
        (("resolve", HELD, "--note", "   "), "write a note saying what was done or why"),
        (("resolve", UNKNOWN, "--note", "x"), f"no order {UNKNOWN}"),
        (("resend-email", UNKNOWN), f"no order {UNKNOWN}"),
        (("resend-email", HELD), f"no e-mail has been queued for order {HELD} yet"),
        (("retry", PLAIN), f"order {PLAIN} has finished; name a step to run again"),
    ],
)
def test_a_refusal_exits_1_with_the_reason_and_changes_nothing(
    console_runtime: Runtime,
    done: str,
    run: Callable[..., Result],
    args: tuple[str, ...],
    reason: str,
) -> None:
    queue_order(console_runtime, HELD)  # received, not worked: no e-mail yet

    refused = run("orders", *args)

    assert refused.exit_code == 1
    assert reason in refused.output
    assert load_order(console_runtime, PLAIN).state == OrderState.DONE
    assert load_order(console_runtime, HELD).state == OrderState.RECEIVED
    assert audit_rows(console_runtime, PLAIN) == audit_rows(console_runtime, HELD) == []


def test_resolve_and_ignore_need_a_note(held: str, run: Callable[..., Result]) -> None:
    for action in ("resolve", "ignore"):
        missing = run("orders", action, held)
        assert missing.exit_code == 2 and "--note" in missing.output


def test_a_routed_messages_action_is_shown_retried_and_closed_from_the_cli(
    console_runtime: Runtime, held: str, worker: Worker, run: Callable[..., Result]
) -> None:
    from utopia_handler.settings.schema import MessageRoute
    from utopia_handler.store import queries
    from utopia_handler.store.models import MessageAction, MessageActionState
    from utopia_handler.timeutil import utcnow

    with console_runtime.store.write() as session:
        queries.record_callback(
            session,
            order_ref=held,
            msg="Port Complete",
            event="Port",
            body="{}",
            remote_addr="127.0.0.1",
            now=utcnow(),
            routes=(MessageRoute("note", match="Port Complete"),),
        )
    worker.run_until_idle()  # the held order has no customer yet: the note waits for it
    with console_runtime.store.read() as session:
        action_id = session.scalar(select(MessageAction.id))
    assert action_id is not None

    shown = run("orders", "show", held)
    assert shown.exit_code == 0, shown.output
    assert f"routed note for 'Port Complete' (action {action_id}): pending" in shown.output

    retried = run("orders", "message-retry", held, str(action_id))
    assert retried.exit_code == 0, retried.output
    assert retried.output.strip() == f"{held}: note for 'Port Complete' queued again"
    closed = run("orders", "message-close", held, str(action_id), "--note", "added by hand")
    assert closed.exit_code == 0, closed.output
    again = run("orders", "message-close", held, str(action_id), "--note", "again")
    assert again.exit_code == 1 and "the action is closed already" in again.output
    wrong = run("orders", "message-retry", PLAIN, str(action_id))
    assert wrong.exit_code == 1 and "no order" in wrong.output
    with console_runtime.store.read() as session:
        action = session.get(MessageAction, action_id)
        assert action is not None and action.state == MessageActionState.CLOSED
        assert action.detail == "closed by cli:dana: added by hand"
    assert [(actor, action) for actor, action, _ in audit_rows(console_runtime, held)] == [
        ("cli:dana", "retry_message_action"),
        ("cli:dana", "close_message_action"),
    ]
