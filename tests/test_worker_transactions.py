"""How many commits an order costs the worker, and the e-mail its last commit hands to it.

Every commit is a durable write (on SQLite a turn of the one write lock and a flush to disk), so
the count per order is what bounds end-to-end throughput once outside calls overlap. These pin
the layout docs/architecture.md describes ("Transactions per order"); a change that adds a commit
per order fails here rather than only showing as a slower benchmark.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import event, select

from tests.conftest import ManualClock, load_order, queue_order
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store.models import Notification, NotificationState, OrderState
from utopia_handler.worker import Worker

ORDER = "UIA202611-004217"


@pytest.fixture
def transactions(runtime: Runtime) -> Iterator[Counter[str]]:
    """Commits, rollbacks and SQL statements sent on the runtime's engine, counted."""
    counts: Counter[str] = Counter()
    engine = runtime.store.engine

    def on_commit(connection: object) -> None:
        counts["commit"] += 1

    def on_rollback(connection: object) -> None:
        counts["rollback"] += 1

    def on_statement(*args: object) -> None:
        counts["statement"] += 1

    event.listen(engine, "commit", on_commit)
    event.listen(engine, "rollback", on_rollback)
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield counts
    finally:
        event.remove(engine, "commit", on_commit)
        event.remove(engine, "rollback", on_rollback)
        event.remove(engine, "before_cursor_execute", on_statement)


def mail_rows(runtime: Runtime) -> list[Notification]:
    with runtime.store.read() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def test_an_order_from_claim_to_sent_e_mail_takes_ten_commits(
    runtime: Runtime, worker: Worker, emulators: Emulators, transactions: Counter[str]
) -> None:
    queue_order(runtime, ORDER)
    transactions.clear()

    worker.run_until_idle(max_rounds=1)  # one claim: the order's

    assert load_order(runtime, ORDER).state == OrderState.DONE
    assert len(emulators.smtp.messages) == 1
    # 1 claim; 1 to start lookup_contract; one per step that calls out, recording it and
    # starting the next (lookup_contract, choose_plans, find_customer, create_customer,
    # add_services, create_ticket); add_tags' with notify run and recorded inside it and the
    # e-mail leased to the worker; 1 recording the e-mail sent. (It was 14: notify's own
    # commit, a release of the lease, and the e-mail's claim and read.)
    assert transactions["commit"] == 10


def test_the_worker_that_finishes_an_order_sends_its_e_mail_without_a_claim(
    runtime: Runtime, worker: Worker, emulators: Emulators
) -> None:
    queue_order(runtime, ORDER)

    worker.run_until_idle(max_rounds=1)  # one claim: the order's, before any e-mail existed

    (mail,) = mail_rows(runtime)
    assert (mail.state, mail.lease_owner, mail.attempts) == (NotificationState.SENT, None, 1)
    assert len(emulators.smtp.messages) == 1
    assert f"success.{ORDER}" in str(emulators.smtp.messages[0]["Message-ID"])


def test_an_e_mail_its_worker_could_not_send_is_sent_by_the_outbox_later(
    runtime: Runtime, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    emulators.smtp.faults.add("DATA", "fail")
    queue_order(runtime, ORDER)

    worker.run_until_idle(max_rounds=1)

    (mail,) = mail_rows(runtime)
    assert (mail.state, mail.lease_owner, mail.attempts) == (NotificationState.PENDING, None, 1)
    assert emulators.smtp.messages == []
    clock.advance(120)
    worker.run_until_idle()
    (mail,) = mail_rows(runtime)
    assert mail.state == NotificationState.SENT
    assert len(emulators.smtp.messages) == 1


def test_an_e_mail_leased_by_a_worker_that_died_before_sending_is_sent_by_another(
    runtime: Runtime,
    emulators: Emulators,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A kill between the order's last commit and the SMTP send: no real part stops a thread
    # there on demand, so the first worker's sending is taken away.
    first = Worker(runtime, name="gone-worker", clock=clock)
    monkeypatch.setattr(first, "_send_own_mail", lambda order_id, mail: None)
    queue_order(runtime, ORDER)
    first.run_until_idle(max_rounds=1)
    (mail,) = mail_rows(runtime)
    assert (mail.state, mail.lease_owner) == (NotificationState.PENDING, "gone-worker")

    second = Worker(runtime, name="next-worker", clock=clock)
    assert second.run_until_idle() == 0  # the lease is still live: nobody sends it twice
    clock.advance(first.lease.total_seconds() + 1)
    second.run_until_idle()

    (mail,) = mail_rows(runtime)
    assert (mail.state, mail.lease_owner) == (NotificationState.SENT, None)
    assert len(emulators.smtp.messages) == 1
