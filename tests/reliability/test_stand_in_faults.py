"""The faults the chaos run injects, seen through the service's own clients.

Each test shows one fault doing what it says on the wire and the client reporting it the way the
worker needs: retryable or not, and whether the request may have been applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage

import pytest

from utopia_handler.clients.errors import RetryableError
from utopia_handler.clients.powercode import NewCustomer, NewTicket, PowerCodeClient
from utopia_handler.clients.utopia import UtopiaClient
from utopia_handler.emulators import PowerCodeEmulator, SmtpEmulator, UtopiaEmulator
from utopia_handler.emulators.seed import DEMO_ORDERS
from utopia_handler.notify.smtp import SmtpSender
from utopia_handler.settings import Timeouts

ORDER = "UIA202611-004217"
FAST = Timeouts(connect=2.0, read=1.0)


@pytest.fixture
def pc_client(powercode: PowerCodeEmulator) -> Iterator[PowerCodeClient]:
    with PowerCodeClient(
        powercode.api_url, powercode.uapi_url, powercode.api_key, timeouts=FAST
    ) as client:
        yield client


@pytest.fixture
def customer(powercode: PowerCodeEmulator) -> int:
    return powercode.add_customer("Dale", "Whitfield", "87 N 400 E", "Layton", ext_account_id="9")


def new_customer(site: str = "204817") -> NewCustomer:
    return NewCustomer(
        first_name="Avery",
        last_name="Lindqvist",
        email="avery@example.net",
        street="1432 S CANYON VIEW DR",
        city="Orem",
        state="UT",
        zip="84058",
        phone_numbers=("8015550142",),
        notes=f"site {site}",
        ext_account_id=site,
        portal_username=None,
        portal_password=None,
        tax_zone_id=1,
        invoice_preference="Email",
        bill_day="Activation Date",
        due_by_days=0,
        grace_period_days=10,
    )


def new_ticket(customer_id: int) -> NewTicket:
    return NewTicket(
        customer_id=customer_id,
        summary="New install",
        description_html="<p>Install</p>",
        category=54,
        ticket_type=21,
        status=1,
        responsible_user="Sales",
        responsible_group=4,
        customer_viewable=True,
    )


# Every PowerCode call that writes, with how to make it and how to see that it was applied.
WRITES: dict[str, tuple[Callable[[PowerCodeClient, int], object], Callable[..., int]]] = {
    "createCustomer": (
        lambda c, _cid: c.create_customer(new_customer()),
        lambda pc, _cid: sum(1 for r in pc.customers.values() if r.get("extAccountID") == "204817"),
    ),
    "addCustomerService": (
        lambda c, cid: c.add_service(cid, 163),
        lambda pc, cid: pc.service_adds.count((cid, 163)),
    ),
    "createTicket": (
        lambda c, cid: c.create_ticket(new_ticket(cid)),
        lambda pc, cid: sum(1 for t in pc.tickets.values() if t["customerID"] == cid),
    ),
    "uapi:tags:POST": (
        lambda c, cid: c.add_tags(cid, [3]),
        lambda pc, cid: int(3 in pc.customer_tags.get(cid, set())),
    ),
}


@pytest.mark.parametrize("action", list(WRITES))
def test_every_writing_powercode_call_can_be_applied_and_its_reply_lost(
    powercode: PowerCodeEmulator, pc_client: PowerCodeClient, customer: int, action: str
) -> None:
    call, applied = WRITES[action]
    powercode.faults.add(action, "drop_after_apply")
    with pytest.raises(RetryableError) as caught:
        call(pc_client, customer)
    # The client cannot know, so it says the request may have been applied...
    assert caught.value.may_have_applied
    # ...and PowerCode did apply it.
    assert applied(powercode, customer) == 1
    assert powercode.faults.pending() == []


def test_a_fault_on_the_tag_write_leaves_the_tag_read_alone(
    powercode: PowerCodeEmulator, pc_client: PowerCodeClient, customer: int
) -> None:
    powercode.faults.add("uapi:tags:POST", "fail", status=500)
    assert pc_client.list_tag_ids(customer) == []
    with pytest.raises(RetryableError):
        pc_client.add_tags(customer, [1])
    assert powercode.customer_tags.get(customer, set()) == set()


def test_429_carries_retry_after_and_is_known_not_applied(
    powercode: PowerCodeEmulator, pc_client: PowerCodeClient
) -> None:
    powercode.faults.add("createCustomer", "fail", status=429, retry_after=1.5)
    with pytest.raises(RetryableError) as caught:
        pc_client.create_customer(new_customer())
    assert caught.value.retry_after == 1.5
    assert not caught.value.may_have_applied
    assert powercode.customers == {}
    assert pc_client.create_customer(new_customer()).customer_id > 0


def test_a_5xx_burst_fails_exactly_its_length_then_passes(
    powercode: PowerCodeEmulator, pc_client: PowerCodeClient
) -> None:
    powercode.faults.add("searchCustomers", "fail", status=502, count=3)
    for _ in range(3):
        with pytest.raises(RetryableError):
            pc_client.search_customers("Avery Lindqvist")
    assert pc_client.search_customers("Avery Lindqvist") == []


def test_an_outage_fails_every_call_until_its_time_is_up(
    powercode: PowerCodeEmulator, pc_client: PowerCodeClient
) -> None:
    powercode.faults.add("createCustomer", "outage", seconds=0.8)
    started = time.monotonic()
    failures = 0
    while time.monotonic() - started < 0.6:
        with pytest.raises(RetryableError) as caught:
            pc_client.create_customer(new_customer())
        assert caught.value.retry_after == 1.0  # what is left, rounded up to whole seconds
        failures += 1
    assert failures >= 3  # not a count: every call in the window failed
    assert powercode.customers == {}
    time.sleep(max(0.0, 0.85 - (time.monotonic() - started)))
    assert pc_client.create_customer(new_customer()).customer_id > 0
    assert powercode.faults.pending() == []


def test_an_outage_can_take_a_whole_stand_in_down(utopia: UtopiaEmulator) -> None:
    utopia.add_order(ORDER, DEMO_ORDERS[ORDER])
    utopia.faults.add("*", "outage", seconds=0.5)
    with UtopiaClient(utopia.base_url, utopia.api_key, timeouts=FAST) as client:
        with pytest.raises(RetryableError) as caught:
            client.lookup_contract(ORDER)
        assert not caught.value.may_have_applied
        with pytest.raises(RetryableError):
            client.download_contract(ORDER)
        time.sleep(0.6)
        assert client.lookup_contract(ORDER).site_id == "204817"


def mail() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "handler@isp.example"
    message["To"] = "staff@isp.example"
    message["Subject"] = "Order UIA202611-004217"
    message["Message-ID"] = "<success.UIA202611-004217@utopia-handler.local>"
    message.set_content("done")
    return message


def sender(smtp: SmtpEmulator) -> SmtpSender:
    return SmtpSender(smtp.host, smtp.port, timeout=2)


def test_smtp_accepts_the_message_then_hangs_up_before_the_final_reply(
    smtp: SmtpEmulator,
) -> None:
    smtp.faults.add("DATA", "drop_after_apply")
    with pytest.raises(RetryableError) as caught:
        sender(smtp).send(mail())
    assert caught.value.may_have_applied
    assert len(smtp.messages) == 1  # delivered although the sender saw a failure


def test_smtp_refuses_connections_for_a_while_then_takes_mail(smtp: SmtpEmulator) -> None:
    smtp.faults.add("CONNECT", "outage", seconds=0.6)
    with pytest.raises(RetryableError) as caught:
        sender(smtp).send(mail())
    assert "421" in str(caught.value)
    assert not caught.value.may_have_applied
    with pytest.raises(RetryableError):
        sender(smtp).send(mail())  # still refusing: it is time-based, not a count
    assert smtp.messages == []
    time.sleep(0.7)
    sender(smtp).send(mail())
    assert len(smtp.messages) == 1


def test_fault_plan_outage_needs_a_length() -> None:
    with pytest.raises(ValueError, match="seconds"):
        PowerCodeEmulator().faults.add("*", "outage")
