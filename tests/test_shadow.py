"""Shadow mode: real reads, every write recorded instead of sent, staff e-mails only to the trial's
addresses, and nothing provisioned for real until a person asks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from tests.conftest import ManualClock, load_order, queue_order
from utopia_handler import actions
from utopia_handler.cli import cli
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.models import Notification, NotificationState, Order, OrderState
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

ORDER = "UIA202611-004217"  # a new customer (see emulators/seed.py)
EXISTING = "UIA202611-004220"  # a person PowerCode knows already
SEEDED = 3  # customers in the PowerCode stand-in before each test


def pc_writes(emulators: Emulators) -> list[str]:
    """Every request the PowerCode stand-in received that would change something."""
    reads = {"searchCustomers", "readCustomer", "readCustomerService"}
    writes = []
    for request in emulators.powercode.requests:
        action = dict(request.form).get("action")
        if request.method != "GET" and action not in reads:
            writes.append(action or f"{request.method} {request.path}")
    return writes


def shadow_queue(runtime: Runtime, order_ref: str) -> None:
    queue_order(runtime, order_ref, shadow=True)


def test_in_shadow_mode_orders_are_read_for_real_and_nothing_is_written(
    make_runtime: Callable[..., Runtime], emulators: Emulators, clock: ManualClock
) -> None:
    runtime = make_runtime(SHADOW_MODE="true", SHADOW_EMAIL_RECIPIENTS="trial@isp.example")
    shadow_queue(runtime, ORDER)
    shadow_queue(runtime, EXISTING)
    Worker(runtime, name="shadow", clock=clock).run_until_idle()

    order = load_order(runtime, ORDER)
    assert (order.state, order.shadow) == (OrderState.DONE, True)
    assert order.customer_id == -order.id and order.ticket_id == f"shadow-{order.id}"
    assert load_order(runtime, EXISTING).state == OrderState.DUPLICATE  # found by a real search
    # PowerCode was searched and read, never written to.
    assert pc_writes(emulators) == []
    assert len(emulators.powercode.customers) == SEEDED
    assert emulators.powercode.tickets == {}
    with runtime.store.read() as session:
        writes = queries.shadow_writes(session, order.id)
    assert [w.action for w in writes] == [
        "createCustomer",
        "addCustomerService",
        "addCustomerService",
        "createTicket",
        "uapi:tags POST",
        "uapi:tags POST",
    ]
    create = writes[0]
    assert create.step == "create_customer" and create.run == 1
    assert create.fields["extAccountID"] == "204817"
    assert create.fields["taxZoneId"] == "1"
    assert create.fields["customerPortalPassword"] == "********"
    assert writes[3].fields["responsibleUser"] == "Sales"
    assert writes[4].fields == {"customerID": str(-order.id), "tags[]": "1"}
    # Staff e-mails went only to the trial's address, marked.
    assert {m["To"] for m in emulators.smtp.messages} == {"trial@isp.example"}
    assert all(str(m["Subject"]).startswith("[SHADOW] ") for m in emulators.smtp.messages)


def test_with_no_trial_address_staff_get_nothing(
    make_runtime: Callable[..., Runtime], emulators: Emulators, clock: ManualClock
) -> None:
    runtime = make_runtime(SHADOW_MODE="true")
    shadow_queue(runtime, ORDER)
    Worker(runtime, name="shadow", clock=clock).run_until_idle()

    assert emulators.smtp.messages == []
    with runtime.store.read() as session:
        [mail] = session.scalars(select(Notification)).all()
    assert mail.state == NotificationState.SENT
    assert mail.last_error == "shadow mode: sent to nobody (SHADOW_EMAIL_RECIPIENTS is empty)"


def test_leaving_shadow_mode_provisions_nothing_until_a_person_asks(
    make_runtime: Callable[..., Runtime], emulators: Emulators, clock: ManualClock
) -> None:
    shadowed = make_runtime(SHADOW_MODE="true")
    shadow_queue(shadowed, ORDER)
    # Shadow mode is turned off before the order was worked on: it stays as it is.
    runtime = make_runtime()
    real_worker = Worker(runtime, name="real", clock=clock)
    queue_order(runtime, "UIA202611-004218")
    real_worker.run_until_idle()
    assert load_order(runtime, "UIA202611-004218").state == OrderState.DONE
    assert load_order(runtime, ORDER).state == OrderState.RECEIVED

    with runtime.store.write() as session:
        queued = actions.provision_shadow_orders(session, None, clock(), actor="alice")
    real_worker.run_until_idle()

    assert queued == [ORDER]
    order = load_order(runtime, ORDER)
    assert (order.state, order.shadow, order.run) == (OrderState.DONE, False, 2)
    assert order.customer_id is not None and order.customer_id > 0
    assert order.customer_id in emulators.powercode.customers


def test_a_shadow_order_done_in_shadow_is_provisioned_for_real_once(
    make_runtime: Callable[..., Runtime], emulators: Emulators, clock: ManualClock
) -> None:
    shadowed = make_runtime(SHADOW_MODE="true")
    shadow_queue(shadowed, ORDER)
    Worker(shadowed, name="shadow", clock=clock).run_until_idle()
    runtime = make_runtime()
    env = runtime_env(runtime)

    provisioned = CliRunner().invoke(cli, ["shadow", "provision", ORDER], env=env, obj={})
    Worker(runtime, name="real", clock=clock).run_until_idle()
    again = CliRunner().invoke(cli, ["shadow", "provision", ORDER], env=env, obj={})

    assert provisioned.exit_code == 0, provisioned.output
    assert "1 order(s) queued to be provisioned for real: " + ORDER in provisioned.output
    assert again.exit_code == 1
    assert "was not worked on in shadow mode" in again.output
    created = [
        c for c in emulators.powercode.customers.values() if c.get("extAccountID") == "204817"
    ]
    assert len(created) == 1
    report = CliRunner().invoke(cli, ["shadow", "report"], env=env, obj={})
    assert report.exit_code == 0 and ORDER not in report.output


def runtime_env(runtime: Runtime) -> dict[str, str]:
    return {
        "DATABASE_URL": runtime.settings.database_url,
        "DATA_DIR": str(runtime.settings.data_dir),
    }


def test_the_shadow_report_lists_what_would_have_been_sent(
    make_runtime: Callable[..., Runtime], emulators: Emulators, clock: ManualClock
) -> None:
    runtime = make_runtime(SHADOW_MODE="true")
    shadow_queue(runtime, ORDER)
    Worker(runtime, name="shadow", clock=clock).run_until_idle()

    report = CliRunner().invoke(cli, ["shadow", "report"], env=runtime_env(runtime), obj={})

    assert report.exit_code == 0, report.output
    assert report.output.splitlines()[0] == f"{ORDER}  would have ended: done"
    assert "create_customer  createCustomer: firstName=" in report.output
    with runtime.store.read() as session:
        assert session.scalar(select(Order.shadow).where(Order.order_ref == ORDER)) is True


def test_reconciliation_obeys_shadow_mode(
    make_runtime: Callable[..., Runtime], emulators: Emulators, clock: ManualClock
) -> None:
    from utopia_handler.emulators.seed import MISSED_DEMO_ORDER
    from utopia_handler.reconcile import reconcile

    runtime = make_runtime(SHADOW_MODE="true", RECONCILE_ENABLED="true")
    reconcile(runtime, clock())  # the baseline
    missed, contract = MISSED_DEMO_ORDER
    emulators.utopia.add_order(missed, contract)

    assert reconcile(runtime, clock()).found == (missed,)
    Worker(runtime, name="shadow", clock=clock).run_until_idle()

    order = load_order(runtime, missed)
    assert (order.shadow, order.state) == (True, OrderState.DONE)
    assert pc_writes(emulators) == []
    assert emulators.smtp.messages == []  # staff hear nothing in a trial without addresses


def test_a_routed_message_obeys_shadow_mode(
    make_runtime: Callable[..., Runtime], emulators: Emulators, clock: ManualClock, tmp_path: Path
) -> None:
    config = tmp_path / "routes.toml"
    config.write_text('[[messages]]\nmatch = "Project Install Scheduled"\naction = "ticket"\n')
    runtime = make_runtime(SHADOW_MODE="true", UTOPIA_HANDLER_CONFIG=str(config))
    shadow_queue(runtime, ORDER)
    worker = Worker(runtime, name="shadow", clock=clock)
    worker.run_until_idle()
    with runtime.store.write() as session:
        queries.record_callback(
            session,
            order_ref=ORDER,
            msg="Project Install Scheduled",
            event="Project Update",
            body="{}",
            remote_addr="127.0.0.1",
            now=utcnow(),
            routes=runtime.settings.routing.messages,
        )
    worker.run_until_idle()

    order = load_order(runtime, ORDER)
    with runtime.store.read() as session:
        actions_recorded = [w.action for w in queries.shadow_writes(session, order.id)]
    assert actions_recorded.count("createTicket") == 2  # the install ticket and the routed one
    assert pc_writes(emulators) == []
    assert emulators.powercode.tickets == {}
