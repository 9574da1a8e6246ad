"""Reconciliation with UTOPIA's order list, over real HTTP with the real stand-ins and worker.

No order is lost when its callback never comes: the first good run only records what UTOPIA
lists (the baseline); later an order no callback brought is provisioned once, and a late callback
is a repeat. A list that cannot be read changes nothing and is said so. One process reconciles at
a time; staff are alerted once per outage.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select, update

from tests.conftest import (
    ManualClock,
    load_order,
    new_order,
    post_callback,
    queue_order,
    settled,
    wait_for,
)
from tests.test_processes import free_port
from utopia_handler import reconcile as reconciliation
from utopia_handler.cli import cli
from utopia_handler.emulators import Emulators
from utopia_handler.emulators.seed import DEMO_ORDERS, MISSED_DEMO_ORDER
from utopia_handler.emulators.utopia import ORDER_LIST_SHAPES, UNREADABLE_ORDER_LIST_SHAPES
from utopia_handler.reconcile import (
    BASELINE_REASON,
    BUSY,
    FOUND_NOTE,
    UNREAD,
    reconcile,
    reconcile_if_due,
)
from utopia_handler.report import order_story
from utopia_handler.runtime import Runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.store import jobs
from utopia_handler.store.console_models import AuditEntry
from utopia_handler.store.models import (
    Callback,
    CallbackOutcome,
    JobLease,
    Notification,
    NotificationKind,
    Order,
    OrderState,
    ReconcileOutcome,
    ReconcileRun,
    Step,
)
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

MISSED, MISSED_CONTRACT = MISSED_DEMO_ORDER
MISSED_SITE = "207391"
SEEDED = sorted(DEMO_ORDERS)


def customers_at_site(emulators: Emulators, site_id: str) -> int:
    with emulators.powercode.lock:
        return sum(
            1 for c in emulators.powercode.customers.values() if c.get("extAccountID") == site_id
        )


def runs(runtime: Runtime) -> list[ReconcileRun]:
    with runtime.store.read() as session:
        return list(session.scalars(select(ReconcileRun).order_by(ReconcileRun.id)))


def mail(runtime: Runtime, kind: NotificationKind) -> list[Notification]:
    with runtime.store.read() as session:
        return list(
            session.scalars(
                select(Notification).where(Notification.kind == kind).order_by(Notification.id)
            )
        )


def order_count(runtime: Runtime) -> int:
    with runtime.store.read() as session:
        return session.scalar(select(func.count()).select_from(Order)) or 0


def audit_of(runtime: Runtime, ref: str) -> list[tuple[str, str, str | None]]:
    with runtime.store.read() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.order_ref == ref).order_by(AuditEntry.id)
        )
        return [(row.actor, row.action, row.detail) for row in rows]


def take_baseline(runtime: Runtime, now: datetime) -> None:
    report = reconcile(runtime, now)
    assert report.read_every_list and [r.baseline for r in report.results] == [True]


# The baseline -------------------------------------------------------------------------------------


def test_the_first_run_records_what_utopia_lists_and_provisions_nothing(
    runtime: Runtime, worker: Worker, clock: ManualClock, emulators: Emulators
) -> None:
    report = reconcile(runtime, clock())

    [result] = report.results
    assert (result.outcome, result.baseline, result.listed) == (ReconcileOutcome.OK, True, 5)
    assert sorted(result.new_refs) == SEEDED and report.found == ()
    for ref in SEEDED:
        order = load_order(runtime, ref)
        assert (order.state, order.reason) == (OrderState.RECORDED, BASELINE_REASON)
    assert load_order(runtime, SEEDED[0]).site_id == "204817"  # from the list, for a person
    # Nothing is provisioned, nothing is sent.
    assert worker.run_until_idle() == 0
    assert sum(emulators.powercode.calls.values()) == 0
    assert emulators.utopia.calls["contractlookup"] == 0
    assert mail(runtime, NotificationKind.MISSED_ORDERS) == []
    assert "first reconciliation (baseline): 5 orders not known here recorded" in report.lines()[0]

    again = reconcile(runtime, clock())
    assert [(r.baseline, r.new_refs) for r in again.results] == [(False, ())]
    assert again.lines() == ["network default: listed 5; every listed order is known here"]


def test_a_missed_order_is_found_and_provisioned_exactly_once(
    runtime: Runtime, worker: Worker, clock: ManualClock, emulators: Emulators
) -> None:
    take_baseline(runtime, clock())
    emulators.utopia.add_order(MISSED, MISSED_CONTRACT)  # its callback never comes

    report = reconcile(runtime, clock())

    assert report.found == (MISSED,)
    order = load_order(runtime, MISSED)
    assert (order.state, order.step, order.run) == (
        OrderState.RECEIVED,
        Step.LOOKUP_CONTRACT,
        1,
    )
    [(actor, action, detail)] = audit_of(runtime, MISSED)
    assert actor == "reconciliation" and action == "queued_for_provisioning"
    assert detail is not None and detail.startswith(FOUND_NOTE)
    [email] = mail(runtime, NotificationKind.MISSED_ORDERS)
    assert email.order_id is None
    assert email.message_id == f"missed_orders.run{report.run_ids[0]}"
    assert email.context == {"found": [{"order_ref": MISSED, "network": "default"}]}

    worker.run_until_idle()

    assert load_order(runtime, MISSED).state == OrderState.DONE
    assert customers_at_site(emulators, MISSED_SITE) == 1
    subjects = [m["Subject"] for m in emulators.smtp.messages]
    assert "Missed UTOPIA orders found - 1 order with no callback" in subjects
    assert any(s.startswith("Customer Created Successfully - Odette") for s in subjects)
    missed_mail = next(m for m in emulators.smtp.messages if m["Subject"].startswith("Missed"))
    text = missed_mail.get_body(("plain",))
    assert text is not None and MISSED in text.get_content()
    with runtime.store.read() as session:
        story = "\n".join(order_story(session, load_order(runtime, MISSED)))
    assert FOUND_NOTE in story

    # Later runs know it: nothing more is created, no second e-mail.
    for _ in range(2):
        clock.advance(60)
        assert reconcile(runtime, clock()).found == ()
    worker.run_until_idle()
    assert customers_at_site(emulators, MISSED_SITE) == 1
    assert len(mail(runtime, NotificationKind.MISSED_ORDERS)) == 1
    assert order_count(runtime) == 6


def test_a_callback_after_reconciliation_found_the_order_is_a_repeat(
    service: ServiceHandle, emulators: Emulators
) -> None:
    runtime = service.runtime
    take_baseline(runtime, utcnow())
    emulators.utopia.add_order(MISSED, MISSED_CONTRACT)
    assert reconcile(runtime, utcnow()).found == (MISSED,)
    wait_for(lambda: settled(runtime), timeout=30)
    assert load_order(runtime, MISSED).state == OrderState.DONE

    late = post_callback(service.url, new_order(MISSED))  # UTOPIA's callback, at last

    assert late.status_code == 200 and late.json()["status"] == "repeat"
    wait_for(lambda: settled(runtime), timeout=30)
    with runtime.store.read() as session:
        outcomes = session.scalars(select(Callback.outcome).where(Callback.order_ref == MISSED))
        assert list(outcomes) == [CallbackOutcome.REPEAT]
    order = load_order(runtime, MISSED)
    assert (order.state, order.run) == (OrderState.DONE, 1)
    assert customers_at_site(emulators, MISSED_SITE) == 1


def test_a_callback_for_a_baseline_order_provisions_it(
    runtime: Runtime, worker: Worker, clock: ManualClock, emulators: Emulators
) -> None:
    take_baseline(runtime, clock())
    ref = SEEDED[0]

    queue_order(runtime, ref)  # a new-order message after all: the order is UTOPIA's to do
    worker.run_until_idle()

    assert load_order(runtime, ref).state == OrderState.DONE


# Reading the list ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ORDER_LIST_SHAPES)
def test_every_order_list_shape_is_read(
    runtime: Runtime, clock: ManualClock, emulators: Emulators, shape: str
) -> None:
    emulators.utopia.order_list_shape = shape
    take_baseline(runtime, clock())
    emulators.utopia.add_order(MISSED, MISSED_CONTRACT)

    assert reconcile(runtime, clock()).found == (MISSED,)


@pytest.mark.parametrize("empty_reply", ["not_ours", "shape"])
def test_an_empty_list_is_read_as_empty(
    runtime: Runtime, clock: ManualClock, emulators: Emulators, empty_reply: str
) -> None:
    emulators.utopia.empty_order_list_reply = empty_reply
    with emulators.utopia.lock:
        emulators.utopia.orders.clear()

    report = reconcile(runtime, clock())

    assert report.read_every_list
    assert report.lines() == ["network default: listed 0; every listed order is known here"]


def _unreachable_utopia() -> dict[str, str]:
    return {"UTOPIA_URL_ENDPOINT": f"http://127.0.0.1:{free_port()}"}


BROKEN: dict[str, tuple[ReconcileOutcome, str]] = {
    "down": (ReconcileOutcome.FAILED, "utopia: orders: could not connect"),
    "401": (ReconcileOutcome.FAILED, "authentication failed"),
    "503": (ReconcileOutcome.FAILED, "HTTP 503"),
    "timeout": (ReconcileOutcome.FAILED, "utopia: orders: read timed out"),
    "html": (ReconcileOutcome.UNREADABLE, "the reply is not JSON (text/html)"),
    "message": (ReconcileOutcome.UNREADABLE, "no order reference found in the reply"),
}


@pytest.mark.parametrize("how", list(BROKEN))
def test_a_list_that_cannot_be_read_changes_nothing_and_says_so(
    make_runtime: Callable[..., Runtime],
    emulators: Emulators,
    clock: ManualClock,
    how: str,
) -> None:
    good = make_runtime()
    take_baseline(good, clock())
    emulators.utopia.add_order(MISSED, MISSED_CONTRACT)
    overrides: dict[str, str] = {}
    if how == "down":
        overrides = _unreachable_utopia()
    elif how == "401":
        overrides = {"UTOPIA_API_KEY": "not-the-key-7c1d"}
    elif how == "503":
        emulators.utopia.faults.add("orders", "fail", count=1, status=503)
    elif how == "timeout":
        overrides = {"UTOPIA_READ_TIMEOUT": "0.3"}
        emulators.utopia.faults.add("orders", "timeout", count=1, seconds=1)
    elif how in UNREADABLE_ORDER_LIST_SHAPES:
        emulators.utopia.order_list_shape = how
    broken = make_runtime(**overrides) if overrides else good
    before = order_count(good)

    report = reconcile(broken, clock())

    outcome, reason = BROKEN[how]
    [result] = report.results
    assert not report.read_every_list and result.outcome == outcome
    assert result.error.startswith(f"{UNREAD}: ") and reason in result.error
    [line] = report.lines()
    assert "could not read UTOPIA's order list" in line and "every listed order" not in line
    assert order_count(good) == before and mail(good, NotificationKind.MISSED_ORDERS) == []
    last = runs(good)[-1]
    assert (last.outcome, last.listed_count, last.new_count) == (outcome, 0, 0)
    assert last.error == result.error and "utopia-demo-key" not in last.error

    # The next period, with UTOPIA answering again, finds the order.
    emulators.utopia.order_list_shape = "objects"
    clock.advance(900)
    assert reconcile(good, clock()).found == (MISSED,)


def test_each_network_is_asked_and_has_its_own_baseline(
    make_runtime: Callable[..., Runtime], emulators: Emulators, clock: ManualClock
) -> None:
    runtime = make_runtime(UTOPIA_NETWORKS="UTOPIA,BOZEMAN")
    take_two = reconcile(runtime, clock())
    assert [(r.label, r.baseline) for r in take_two.results] == [
        ("UTOPIA", True),
        ("BOZEMAN", True),
    ]
    # The stand-in lists every order on every network: the second network finds them known.
    assert [len(r.new_refs) for r in take_two.results] == [5, 0]
    emulators.utopia.add_order(MISSED, MISSED_CONTRACT)

    report = reconcile(runtime, clock())

    assert [(r.label, r.new_refs) for r in report.results] == [
        ("UTOPIA", (MISSED,)),
        ("BOZEMAN", ()),
    ]
    [email] = mail(runtime, NotificationKind.MISSED_ORDERS)
    assert email.context == {"found": [{"order_ref": MISSED, "network": "UTOPIA"}]}


# One process at a time ----------------------------------------------------------------------------


def test_two_reconcilers_at_once_only_one_runs(
    make_runtime: Callable[..., Runtime], emulators: Emulators, clock: ManualClock
) -> None:
    first, second = make_runtime(), make_runtime()
    take_baseline(first, clock())
    emulators.utopia.add_order(MISSED, MISSED_CONTRACT)
    # UTOPIA answers slowly, so the two runs overlap.
    emulators.utopia.faults.add("orders", "latency", count=2, seconds=1.0)
    now = clock()
    barrier = threading.Barrier(2)
    reports: dict[str, reconciliation.ReconcileReport] = {}

    def run(name: str, runtime: Runtime) -> None:
        barrier.wait()
        reports[name] = reconcile(runtime, now, owner=name)

    threads = [
        threading.Thread(target=run, args=(name, rt))
        for name, rt in (("first", first), ("second", second))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    done = [r for r in reports.values() if not r.not_run]
    refused = [r for r in reports.values() if r.not_run]
    assert len(done) == 1 and done[0].found == (MISSED,)
    assert len(refused) == 1 and refused[0].not_run == BUSY
    assert refused[0].lines() == [f"not run: {BUSY}"]
    assert len(runs(first)) == 2  # the baseline, and the one run
    assert order_count(first) == 6


def test_a_worker_reconciles_once_a_period_whoever_asks(
    runtime: Runtime, clock: ManualClock, emulators: Emulators
) -> None:
    interval = runtime.settings.reconcile.interval_seconds
    assert reconcile_if_due(runtime, clock(), "worker-a") is not None  # never run: due
    assert reconcile_if_due(runtime, clock(), "worker-b") is None  # this period's is done
    clock.advance(interval - 1)
    assert reconcile_if_due(runtime, clock(), "worker-b") is None
    assert reconciliation.seconds_until_due(runtime, clock()) == pytest.approx(1)
    clock.advance(1)
    assert reconcile_if_due(runtime, clock(), "worker-b") is not None
    assert len(runs(runtime)) == 2
    with runtime.store.read() as session:
        job = jobs.job(session, reconciliation.JOB)
        assert job is not None and job.owner is None  # given back after each run


def test_a_run_that_lost_its_lease_writes_nothing(
    runtime: Runtime, clock: ManualClock, emulators: Emulators
) -> None:
    take_baseline(runtime, clock())
    emulators.utopia.add_order(MISSED, MISSED_CONTRACT)
    original = runtime.utopia.list_orders

    def list_then_lose_the_lease(**kwargs: str | None) -> object:
        listing = original(**kwargs)
        # Meanwhile our lease ran out and another process took the job.
        with runtime.store.write() as session:
            session.execute(
                update(JobLease)
                .where(JobLease.name == reconciliation.JOB)
                .values(owner="someone-else")
            )
        return listing

    runtime.utopia.list_orders = list_then_lose_the_lease  # type: ignore[method-assign]
    try:
        report = reconcile(runtime, clock(), owner="slow-one")
    finally:
        runtime.utopia.list_orders = original  # type: ignore[method-assign]

    assert report.not_run == reconciliation.LOST
    assert order_count(runtime) == 5 and len(runs(runtime)) == 1


# The alert ----------------------------------------------------------------------------------------


def test_staff_are_alerted_once_when_the_list_is_not_read_for_too_long(
    make_runtime: Callable[..., Runtime], emulators: Emulators
) -> None:
    good = make_runtime(RECONCILE_ALERT_HOURS="24")
    broken = make_runtime(UTOPIA_API_KEY="not-the-key-7c1d", RECONCILE_ALERT_HOURS="24")
    start = utcnow() - timedelta(hours=70)  # every e-mail below is due now

    def at(hours: float, runtime: Runtime) -> bool:
        return reconcile(runtime, start + timedelta(hours=hours)).alerted

    assert not at(0, good)
    assert not at(1, broken)
    assert not at(23.5, broken)
    assert at(24.5, broken)  # the last good run is older than 24 h: staff are told, once
    assert not at(25, broken)
    assert not at(40, broken)
    assert not at(41, good)  # read again
    assert not at(50, broken)
    assert at(65.5, broken)  # a new outage: told again
    alerts = mail(good, NotificationKind.RECONCILE_STALE)
    assert len(alerts) == 2 and len({a.message_id for a in alerts}) == 2
    assert alerts[0].context["never_read"] is False
    assert any("authentication failed" in p for p in alerts[0].context["problems"])

    Worker(good, name="mailer").run_until_idle()
    subjects = [m["Subject"] for m in emulators.smtp.messages]
    assert subjects.count("UTOPIA's order list not read for 24 h - reconciliation") == 2


def test_a_list_never_read_is_alerted_too(
    make_runtime: Callable[..., Runtime], emulators: Emulators
) -> None:
    broken = make_runtime(UTOPIA_API_KEY="not-the-key-7c1d")
    start = utcnow() - timedelta(hours=30)

    assert not reconcile(broken, start).alerted
    assert reconcile(broken, start + timedelta(hours=25)).alerted
    [alert] = mail(broken, NotificationKind.RECONCILE_STALE)
    assert alert.context["never_read"] is True


# The command --------------------------------------------------------------------------------------


@pytest.fixture
def run_cli(
    base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Result]]:
    monkeypatch.chdir(tmp_path)  # no stray .env from the working folder
    monkeypatch.setenv("USER", "dana")
    monkeypatch.setenv("LOGNAME", "dana")
    # The command sets up the service's log file, as `serve` does; later tests get ours back.
    product = logging.getLogger("utopia_handler")
    handlers, propagate, level = list(product.handlers), product.propagate, product.level

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=base_env, obj={})

    yield invoke
    for handler in list(product.handlers):
        if handler not in handlers:
            product.removeHandler(handler)
            handler.close()
    product.propagate, product.level = propagate, level


def test_the_command_reconciles_now_and_dry_run_changes_nothing(
    run_cli: Callable[..., Result], runtime: Runtime, emulators: Emulators
) -> None:
    dry_first = run_cli("reconcile", "--dry-run")
    assert dry_first.exit_code == 0, dry_first.output
    assert "first reconciliation (baseline): 5 orders not known here would be recorded" in (
        dry_first.output
    )
    assert "dry run: no order was changed and no e-mail sent" in dry_first.output
    assert order_count(runtime) == 0
    [dry_run_row] = runs(runtime)
    assert dry_run_row.dry_run and dry_run_row.baseline

    baseline = run_cli("reconcile")  # a dry run is never the baseline: this one is
    assert baseline.exit_code == 0 and "recorded, not provisioned" in baseline.output
    emulators.utopia.add_order(MISSED, MISSED_CONTRACT)

    dry = run_cli("reconcile", "--dry-run")
    assert dry.exit_code == 0
    assert f"1 order with no callback would be queued for provisioning: {MISSED}" in dry.output
    assert order_count(runtime) == 5 and mail(runtime, NotificationKind.MISSED_ORDERS) == []

    real = run_cli("reconcile")
    assert real.exit_code == 0
    assert f"1 order with no callback queued for provisioning: {MISSED}" in real.output
    assert load_order(runtime, MISSED).state == OrderState.RECEIVED
    assert [r.dry_run for r in runs(runtime)] == [True, False, True, False]


def test_the_command_fails_when_utopia_cannot_be_read(
    run_cli: Callable[..., Result], runtime: Runtime, emulators: Emulators
) -> None:
    emulators.utopia.order_list_shape = "html"

    result = run_cli("reconcile")

    assert result.exit_code == 1
    assert "network default: could not read UTOPIA's order list: the reply is not JSON" in (
        result.output
    )
    assert "nothing changed" in result.output and order_count(runtime) == 0


def test_since_provisions_the_baseline_from_a_month_on(
    run_cli: Callable[..., Result],
    runtime: Runtime,
    worker: Worker,
    clock: ManualClock,
    emulators: Emulators,
) -> None:
    older = {"UIA202609-000311": "612001", "UIA202610-000412": "612002"}
    for ref, site in older.items():
        contract = copy.deepcopy(DEMO_ORDERS[SEEDED[0]])
        contract["address"]["siteid"] = site
        emulators.utopia.add_order(ref, contract)
    take_baseline(runtime, clock())
    assert order_count(runtime) == 7

    dry = run_cli("reconcile", "--since", "2026-11-20", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "5 recorded orders of 2026-11 or later would be queued for provisioning" in dry.output
    assert "2 recorded orders of earlier months left as they are" in dry.output
    assert all(load_order(runtime, ref).state == OrderState.RECORDED for ref in SEEDED)

    done = run_cli("reconcile", "--since", "2026-11-20")
    assert done.exit_code == 0, done.output
    assert f"queued for provisioning: {', '.join(SEEDED)}" in done.output
    for ref in SEEDED:
        assert load_order(runtime, ref).state == OrderState.RECEIVED
        [(actor, action, detail)] = audit_of(runtime, ref)
        assert (actor, action) == ("cli:dana", "provision_recorded")
        assert detail is not None and "since 2026-11" in detail
    for ref in older:
        assert load_order(runtime, ref).state == OrderState.RECORDED
    help_text = " ".join(run_cli("reconcile", "--help").output.split())
    assert "A ref carries only year and month (UIA + YYYYMM), so the day is ignored" in help_text


def test_ref_month_reads_year_and_month_only() -> None:
    assert reconciliation.ref_month("UIA202611-004217") == (2026, 11)
    assert reconciliation.ref_month("uia202601-000001") == (2026, 1)
    assert reconciliation.ref_month("UIA202613-000001") is None
    assert reconciliation.ref_month("BOZ-7781") is None


# The worker, every interval -----------------------------------------------------------------------


@pytest.fixture
def services() -> Iterator[list[ServiceHandle]]:
    started: list[ServiceHandle] = []
    yield started
    for handle in started:
        handle.stop()


def test_with_a_3_s_interval_a_missed_order_is_provisioned_exactly_once(
    make_runtime: Callable[..., Runtime],
    emulators: Emulators,
    services: list[ServiceHandle],
) -> None:
    interval = 3
    settings = {"RECONCILE_ENABLED": "true", "RECONCILE_INTERVAL_SECONDS": str(interval)}
    # Two processes' worth of workers on one database: one web + worker, one worker only.
    first = make_runtime(**settings)
    services.append(ServiceHandle(first, port=0).start())
    services.append(ServiceHandle(make_runtime(**settings), web=False).start())
    wait_for(lambda: any(r.baseline for r in runs(first)), timeout=10)
    assert all(load_order(first, ref).state == OrderState.RECORDED for ref in SEEDED)

    emulators.utopia.add_order(MISSED, MISSED_CONTRACT)
    added = time.monotonic()
    wait_for(lambda: any(r.new_refs == [MISSED] for r in runs(first)), timeout=4 * interval)
    found = time.monotonic() - added
    wait_for(lambda: load_order(first, MISSED).state == OrderState.DONE, timeout=4 * interval)
    provisioned = time.monotonic() - added
    print(f"\nmissed order found after {found:.1f} s, provisioned after {provisioned:.1f} s")
    assert found <= interval + 1.5
    # Two more periods pass: nothing is found or made again.
    seen = len(runs(first))
    wait_for(lambda: len(runs(first)) >= seen + 2, timeout=4 * interval)
    wait_for(lambda: settled(first), timeout=10)

    assert customers_at_site(emulators, MISSED_SITE) == 1
    assert order_count(first) == 6
    assert len(mail(first, NotificationKind.MISSED_ORDERS)) == 1
    assert len(audit_of(first, MISSED)) == 1
    # One run per period, whichever of the two workers took it.
    starts = [r.started_at for r in runs(first)]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert all(gap >= interval - 0.05 for gap in gaps), gaps
