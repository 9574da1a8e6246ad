"""A site that changed hands: PowerCode's customer at the order's site may be someone else.

PowerCode's extAccountID holds the UTOPIA site id (the premises, not the person). A customer found
there under the order's own name is a duplicate; under another name the order waits for a person,
who says "new customer at this site" (a new account, the former left alone) or "same person".
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import ManualClock, load_order, queue_order
from utopia_handler.actions import ActionRefused, decide_site, retry_order
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.console_models import AuditEntry
from utopia_handler.store.models import (
    AttemptOutcome,
    OrderState,
    SiteDecision,
    Step,
    StepAttempt,
)
from utopia_handler.worker import Worker

PLAIN = "UIA202611-004217"  # Avery Lindqvist, site 204817, 1432 S CANYON VIEW DR, Orem
UNIT = "UIA202611-004218"  # María José O'Neill-Ramírez, site 318002
HELD = "UIA202611-004219"  # its plan is not mapped: waits for a person, for another reason
SITE = "204817"


def customers_at(emulators: Emulators, site_id: str) -> list[dict[str, Any]]:
    return [c for c in emulators.powercode.customers.values() if c.get("extAccountID") == site_id]


def seed_former_customer(emulators: Emulators) -> int:
    """Someone else who lived at Avery Lindqvist's flat and has since left (Inactive)."""
    former = emulators.powercode.add_customer(
        "Harriet", "Colburn", "1432 S CANYON VIEW DR", "Orem", zip="84058", ext_account_id=SITE
    )
    emulators.powercode.customers[former]["status"] = "Inactive"
    return former


def wait_on_the_question(runtime: Runtime, emulators: Emulators, worker: Worker) -> int:
    former = seed_former_customer(emulators)
    queue_order(runtime, PLAIN)
    worker.run_until_idle()
    order = load_order(runtime, PLAIN)
    assert order.state == OrderState.WAITING, order.reason
    return former


def set_lease(runtime: Runtime, owner: str | None, until: datetime | None) -> None:
    with runtime.store.write() as session:
        order = queries.find_order(session, PLAIN)
        assert order is not None
        order.lease_owner, order.lease_expires_at = owner, until


def decide(runtime: Runtime, clock: ManualClock, decision: SiteDecision, note: str) -> None:
    with runtime.store.write() as session:
        decide_site(session, PLAIN, decision, note, clock(), actor="tester")


def test_the_same_name_at_the_site_is_a_duplicate_at_once(
    runtime: Runtime, emulators: Emulators, worker: Worker
) -> None:
    # Accents, case and punctuation differ; the person is the same.
    existing = emulators.powercode.add_customer(
        "MARIA JOSE", "ONeill Ramirez", "220 W Main Street", "Bozeman", ext_account_id="318002"
    )
    queue_order(runtime, UNIT)
    worker.run_until_idle()

    order = load_order(runtime, UNIT)
    assert order.state == OrderState.DUPLICATE
    assert order.customer_id == existing and not order.customer_created
    assert order.former_customer_id is None  # nobody was asked
    assert len(customers_at(emulators, "318002")) == 1
    [mail] = emulators.smtp.messages
    assert "Duplicate Customer Detected" in str(mail["Subject"])
    assert "matched by site id" in mail.get_body(("plain",)).get_content()


def test_the_company_name_counts_as_the_same_person(
    runtime: Runtime, emulators: Emulators, worker: Worker
) -> None:
    existing = emulators.powercode.add_customer(
        "Accounts", "Payable", "1432 S CANYON VIEW DR", "Orem", ext_account_id=SITE
    )
    emulators.powercode.customers[existing]["companyName"] = "avery  LINDQVIST"
    queue_order(runtime, PLAIN)
    worker.run_until_idle()
    order = load_order(runtime, PLAIN)
    assert order.state == OrderState.DUPLICATE
    assert order.customer_id == existing


def test_another_name_at_the_site_waits_naming_both_and_the_former_status(
    runtime: Runtime, emulators: Emulators, worker: Worker
) -> None:
    former = wait_on_the_question(runtime, emulators, worker)

    order = load_order(runtime, PLAIN)
    assert order.step == Step.FIND_CUSTOMER
    reason = order.reason or ""
    for words in (
        "Avery Lindqvist",
        "Harriet Colburn",
        f"#{former}",
        "status Inactive",
        '"new customer at this site"',
        '"same person"',
    ):
        assert words in reason, words
    assert (order.former_customer_id, order.former_customer_name) == (former, "Harriet Colburn")
    assert order.former_customer_status == "Inactive"
    assert order.site_decision is None
    assert order.customer_id is None
    assert [c["customerID"] for c in customers_at(emulators, SITE)] == [former]  # nothing made
    [mail] = emulators.smtp.messages
    assert mail["Subject"] == f"Order waiting for a person - Order {PLAIN}"
    assert "Harriet Colburn" in mail.get_body(("plain",)).get_content()
    with runtime.store.read() as session:
        details = session.scalars(select(StepAttempt.detail).order_by(StepAttempt.id)).all()
    # The history outlives retention, so it names no one.
    assert f"#{former} (status Inactive) under another name" in (details[-1] or "")
    assert not any("Colburn" in (d or "") or "Lindqvist" in (d or "") for d in details)


def test_new_customer_at_this_site_makes_a_second_account_and_leaves_the_former_alone(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    former = wait_on_the_question(runtime, emulators, worker)
    former_before = dict(emulators.powercode.customers[former])

    decide(runtime, clock, SiteDecision.NEW_CUSTOMER, "Harriet moved out in October")
    worker.run_until_idle()

    order = load_order(runtime, PLAIN)
    assert order.state == OrderState.DONE, order.reason
    assert order.site_decision == SiteDecision.NEW_CUSTOMER
    assert order.customer_created and order.customer_id != former
    new = order.customer_id
    assert new is not None
    assert sorted(c["customerID"] for c in customers_at(emulators, SITE)) == [former, new]
    created = emulators.powercode.customers[new]
    assert (created["firstName"], created["lastName"]) == ("Avery", "Lindqvist")
    assert emulators.powercode.customer_services == {new: {163: 1, 172: 1}}
    [ticket] = emulators.powercode.tickets.values()
    assert ticket["customerID"] == new
    assert emulators.powercode.customer_tags == {new: {1, 3}}
    assert emulators.powercode.customers[former] == former_before
    assert [str(m["Subject"]) for m in emulators.smtp.messages][-1].startswith(
        "Customer Created Successfully - Avery Lindqvist"
    )
    with runtime.store.read() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.order_ref == PLAIN)).all()
    assert (entry.actor, entry.action) == ("tester", "site_new_customer")
    assert entry.detail is not None and "Harriet moved out in October" in entry.detail

    # Running the steps again later recognises the new account: no third one, no second ticket.
    with runtime.store.write() as session:
        retry_order(session, PLAIN, clock(), Step.FIND_CUSTOMER)
    worker.run_until_idle()
    assert load_order(runtime, PLAIN).state == OrderState.DONE
    assert len(customers_at(emulators, SITE)) == 2
    assert len(emulators.powercode.tickets) == 1


def test_same_person_ends_as_a_duplicate_of_the_former_customer(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    former = wait_on_the_question(runtime, emulators, worker)

    decide(runtime, clock, SiteDecision.SAME_PERSON, "Harriet Colburn is Avery's legal name")
    worker.run_until_idle()

    order = load_order(runtime, PLAIN)
    assert order.state == OrderState.DUPLICATE
    assert order.customer_id == former and not order.customer_created
    assert order.run == 2
    assert len(customers_at(emulators, SITE)) == 1
    assert emulators.powercode.customer_services == {}
    assert emulators.powercode.tickets == {}
    duplicate = emulators.smtp.messages[-1]
    assert "Duplicate Customer Detected" in str(duplicate["Subject"])
    assert f"customerid={former}" in duplicate.get_body(("plain",)).get_content()
    with runtime.store.read() as session:
        last = session.scalars(select(StepAttempt).order_by(StepAttempt.id.desc())).first()
    assert last is not None
    assert (last.step, last.outcome) == (Step.FIND_CUSTOMER, AttemptOutcome.FINAL)


def test_a_lost_create_reply_after_the_decision_still_makes_exactly_one_new_customer(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    former = wait_on_the_question(runtime, emulators, worker)
    emulators.powercode.faults.add("createCustomer", "drop_after_apply", count=1)

    decide(runtime, clock, SiteDecision.NEW_CUSTOMER, "new tenant")
    worker.run_until_idle()
    order = load_order(runtime, PLAIN)
    assert order.state == OrderState.IN_PROGRESS  # waiting for its retry
    assert len(customers_at(emulators, SITE)) == 2  # the create happened; its reply was lost

    clock.advance(120)
    worker.run_until_idle()
    order = load_order(runtime, PLAIN)
    assert order.state == OrderState.DONE, order.reason
    [new] = [c["customerID"] for c in customers_at(emulators, SITE) if c["customerID"] != former]
    assert order.customer_id == new and order.customer_created
    assert Counter(emulators.powercode.service_adds) == Counter({(new, 163): 1, (new, 172): 1})
    assert [t["customerID"] for t in emulators.powercode.tickets.values()] == [new]
    assert emulators.powercode.customer_tags == {new: {1, 3}}
    with runtime.store.read() as session:
        attempts = session.scalars(
            select(StepAttempt)
            .where(StepAttempt.step == Step.CREATE_CUSTOMER)
            .order_by(StepAttempt.id)
        ).all()
    assert [a.outcome for a in attempts] == [AttemptOutcome.UNCERTAIN, AttemptOutcome.OK]
    assert f"customer #{new} found by name, city and street" in (attempts[1].detail or "")


def test_the_decision_is_refused_unless_the_order_waits_on_this_question(
    runtime: Runtime, emulators: Emulators, worker: Worker, clock: ManualClock
) -> None:
    queue_order(runtime, HELD)  # waits, but for a plan mapping
    wait_on_the_question(runtime, emulators, worker)
    with runtime.store.write() as session:
        with pytest.raises(ActionRefused, match="not waiting for a decision"):
            decide_site(session, HELD, SiteDecision.NEW_CUSTOMER, "x", clock(), actor="t")
        with pytest.raises(ActionRefused, match="write a note"):
            decide_site(session, PLAIN, SiteDecision.NEW_CUSTOMER, "  ", clock(), actor="t")
        with pytest.raises(ActionRefused, match="no order"):
            decide_site(session, "UIA-NOPE", SiteDecision.SAME_PERSON, "x", clock(), actor="t")

    set_lease(runtime, "another-worker", clock() + timedelta(minutes=1))
    with runtime.store.write() as session, pytest.raises(ActionRefused, match="being worked on"):
        decide_site(session, PLAIN, SiteDecision.SAME_PERSON, "x", clock(), actor="t")
    assert load_order(runtime, PLAIN).site_decision is None

    set_lease(runtime, None, None)
    decide(runtime, clock, SiteDecision.SAME_PERSON, "checked with the customer")
    # Answered once: not asked any more.
    with (
        runtime.store.write() as session,
        pytest.raises(ActionRefused, match="not waiting for a decision"),
    ):
        decide_site(session, PLAIN, SiteDecision.NEW_CUSTOMER, "x", clock(), actor="t")
