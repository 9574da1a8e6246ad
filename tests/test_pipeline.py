"""The whole flow over HTTP: callbacks into the running service, PowerCode, UTOPIA and SMTP stand-ins."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from tests.conftest import (
    ManualClock,
    load_order,
    new_order,
    post_callback,
    queue_order,
    settled,
    wait_for,
)
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.store.models import (
    Callback,
    Notification,
    NotificationKind,
    Order,
    OrderState,
)
from utopia_handler.worker import Worker

PLAIN = "UIA202611-004217"
UNIT = "UIA202611-004218"
UNMAPPED = "UIA202611-004219"
EXISTING = "UIA202611-004220"
PO_BOX = "UIA202611-004221"
UNKNOWN = "UIA202611-999999"


def customers_with_site(emulators: Emulators, site_id: str) -> list[dict[str, object]]:
    return [c for c in emulators.powercode.customers.values() if c.get("extAccountID") == site_id]


def messages_with_subject(emulators: Emulators, fragment: str) -> list[object]:
    return [m for m in emulators.smtp.messages if fragment in str(m["Subject"])]


def test_new_order_becomes_a_customer_with_plans_ticket_tags_and_email(
    service: ServiceHandle, emulators: Emulators
) -> None:
    answer = post_callback(service.url, new_order(UNIT))
    assert answer.status_code == 200
    assert answer.json() == {"status": "queued", "orderref": UNIT}
    wait_for(lambda: settled(service.runtime))

    order = load_order(service.runtime, UNIT)
    assert order.state == OrderState.DONE
    [customer] = customers_with_site(emulators, "318002")
    assert order.customer_id == customer["customerID"]
    assert customer["firstName"] == "María José"
    assert customer["lastName"] == "O'Neill-Ramírez"
    assert customer["physicalStreet"] == "220 W MAIN ST UNIT 4B"  # the unit reaches PowerCode
    assert customer["physicalState"] == "MT"
    assert customer["physicalZip"] == "59715"
    assert customer["phone"] == [{"Type": "Home", "Number": "4065550199"}]
    assert customer["customerPortalUsername"] == "mj.oneill@example.org"
    assert customer["invoicePreference"] == "Email"
    assert customer["billDay"] == "Activation Date"
    assert customer["gracePeriodDays"] == "10"
    notes = str(customer["customerNotes"])
    assert UNIT in notes and "318002" in notes and "2026-11-19 09:05:10" in notes

    customer_id = int(str(customer["customerID"]))
    assert emulators.powercode.customer_services[customer_id] == {164: 1, 172: 1}
    assert emulators.powercode.customer_tags[customer_id] == {1, 3}
    [ticket] = emulators.powercode.tickets.values()
    assert list(emulators.powercode.tickets) == [order.ticket_id]
    assert str(ticket["customerID"]) == str(customer_id)
    assert "O&#39;Neill-Ramírez" in ticket["description"]  # escaped into the HTML description
    assert "UNIT 4B" in ticket["description"]

    [mail] = emulators.smtp.messages
    assert (
        mail["Subject"]
        == f"Customer Created Successfully - María José O'Neill-Ramírez (PC#{customer_id})"
    )
    assert mail["To"] == "staff@isp.example, noc@isp.example"
    assert mail["Message-ID"] == f"<success.{UNIT}@utopia-handler.local>"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert f"customerid={customer_id}" in text
    assert str(order.ticket_id) in text
    assert "(406) 555-0199" in text and "mj.oneill@example.org" in text
    assert "PO BOX 1187" in text  # the billing address differs, so it is shown
    assert "O&#39;Neill-Ramírez" in html
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == f"{UNIT}.pdf"
    assert attachment.get_content().startswith(b"%PDF")


def test_repeated_and_concurrent_deliveries_make_one_order_and_one_customer(
    service: ServiceHandle, emulators: Emulators
) -> None:
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post_callback(service.url, new_order(PLAIN)), range(6)))
    assert all(a.status_code == 200 for a in answers)
    assert sorted(a.json()["status"] for a in answers) == ["queued"] + ["repeat"] * 5
    wait_for(lambda: settled(service.runtime))
    late = post_callback(service.url, new_order(PLAIN))  # after the order is done
    assert late.json()["status"] == "repeat"

    assert len(customers_with_site(emulators, "204817")) == 1
    assert len(emulators.powercode.tickets) == 1
    assert len(emulators.smtp.messages) == 1
    with service.runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 1
        outcomes = session.scalars(select(Callback.outcome).order_by(Callback.id)).all()
    assert len(outcomes) == 7
    assert outcomes.count("queued") == 1


def test_every_kind_of_order_ends_where_a_person_expects(
    service: ServiceHandle, emulators: Emulators
) -> None:
    for ref in (UNMAPPED, EXISTING, PO_BOX, UNKNOWN):
        assert post_callback(service.url, new_order(ref)).status_code == 200
    wait_for(lambda: settled(service.runtime))
    runtime = service.runtime

    unmapped = load_order(runtime, UNMAPPED)
    assert unmapped.state == OrderState.WAITING
    assert (
        unmapped.reason is not None
        and "'2 Gbps' has no PowerCode service mapping" in unmapped.reason
    )
    assert customers_with_site(emulators, "99120") == []  # nothing created for a held order

    existing = load_order(runtime, EXISTING)
    assert existing.state == OrderState.DUPLICATE
    assert existing.customer_id is not None
    assert customers_with_site(emulators, "226590") == []
    [duplicate_mail] = messages_with_subject(emulators, "Duplicate Customer Detected")
    assert f"customerid={existing.customer_id}" in duplicate_mail.get_body(("plain",)).get_content()

    po_box = load_order(runtime, PO_BOX)
    assert po_box.state == OrderState.DONE
    [customer] = customers_with_site(emulators, "277345")
    assert customer["physicalAutomaticallyGeocode"] == "0"  # retried once without geocoding

    unknown = load_order(runtime, UNKNOWN)
    assert unknown.state == OrderState.NOT_OURS
    with runtime.store.read() as session:
        kinds = sorted(n.kind for n in session.scalars(select(Notification)))
    # Not ours sends nothing (as before); the held and duplicate orders each e-mail once.
    assert kinds == sorted(
        [NotificationKind.HELD, NotificationKind.DUPLICATE, NotificationKind.SUCCESS]
    )
    [held_mail] = messages_with_subject(emulators, UNMAPPED)
    assert "2 Gbps" in held_mail.get_body(("plain",)).get_content()
    assert [a.get_filename() for a in held_mail.iter_attachments()] == []  # PDF not ready yet
    assert "no signed contract PDF" in held_mail.get_body(("plain",)).get_content()


def test_test_callback_sends_one_test_email_and_unlisted_msgs_are_listed(
    service: ServiceHandle, emulators: Emulators
) -> None:
    test = {"event": "Test", "orderref": "UIA202611-000001", "msg": "Test"}
    assert post_callback(service.url, test).json()["status"] == "test_queued"
    assert post_callback(service.url, test).json()["status"] == "repeat"
    other = {"event": "Project Update", "orderref": PLAIN, "msg": "Project Install Scheduled"}
    assert post_callback(service.url, other).json()["status"] == "not_handled"
    wait_for(lambda: settled(service.runtime))
    [mail] = emulators.smtp.messages
    assert "test callback" in str(mail["Subject"]).lower()
    with service.runtime.store.read() as session:
        stored = session.scalars(select(Callback).order_by(Callback.id)).all()
        # The other message records its order, not provisioned: no new-order message came.
        [recorded] = session.scalars(select(Order)).all()
    assert [c.outcome for c in stored] == ["test_queued", "repeat", "not_handled"]
    assert json.loads(stored[2].body)["msg"] == "Project Install Scheduled"
    assert [c.order_id for c in stored] == [None, None, recorded.id]  # a test has no order
    assert (recorded.order_ref, recorded.state) == (PLAIN, OrderState.RECORDED)
    assert emulators.utopia.calls["contractlookup"] == 0


def test_work_is_finished_only_when_no_order_is_active_and_no_email_waits(
    runtime: Runtime, worker: Worker, emulators: Emulators, clock: ManualClock
) -> None:
    assert settled(runtime)
    queue_order(runtime, PLAIN)
    assert not settled(runtime)
    emulators.smtp.faults.add("DATA", "fail", count=1)  # the e-mail waits for its next try
    worker.run_until_idle()
    assert load_order(runtime, PLAIN).state == OrderState.DONE
    assert not settled(runtime)
    clock.advance(600)
    worker.run_until_idle()
    assert settled(runtime)
