"""Every demo order, through the real worker, against each shape PowerCode's silent replies may take.

Nobody has published how PowerCode says "no such customer" or "no services", whether every reply
carries `statusCode`, whether ids come as numbers or strings, or what a tag POST answers. The
stand-in plays each plausible shape; the installer's probe (`check-config --live`) has run first,
as the README tells installers, and the pipeline must finish the same way whatever the shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ManualClock, load_order, queue_order
from utopia_handler.emulators import Emulators
from utopia_handler.emulators.powercode import (
    NO_SERVICES_SHAPES,
    NOT_FOUND_SHAPES,
    TAG_REPLY_SHAPES,
)
from utopia_handler.emulators.seed import DEMO_ORDERS
from utopia_handler.probe import probe_powercode
from utopia_handler.runtime import Runtime
from utopia_handler.store.models import OrderState
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

# What each demo order must end as (see emulators/seed.py for why).
EXPECTED = {
    "UIA202611-004217": OrderState.DONE,
    "UIA202611-004218": OrderState.DONE,
    "UIA202611-004219": OrderState.WAITING,  # its "2 Gbps" plan has no mapping
    "UIA202611-004220": OrderState.DUPLICATE,  # the person has an account already
    "UIA202611-004221": OrderState.DONE,  # a PO box: created without geocoding
}


def run_demo_orders(runtime: Runtime, emulators: Emulators, clock: ManualClock) -> None:
    # Probe first, as an installer does, naming a customer with no services.
    seeded = min(emulators.powercode.customers)
    probe_powercode(runtime.settings, runtime.store, utcnow(), seeded)
    for order_ref in DEMO_ORDERS:
        queue_order(runtime, order_ref)
    Worker(runtime, name="shapes", clock=clock).run_until_idle()


def assert_demo_outcome(runtime: Runtime, emulators: Emulators) -> None:
    powercode = emulators.powercode
    for order_ref, state in EXPECTED.items():
        order = load_order(runtime, order_ref)
        assert order.state == state, f"{order_ref}: {order.state} ({order.reason})"
        if state != OrderState.DONE:
            continue
        assert order.customer_id is not None
        assert powercode.customer_tags[order.customer_id] == {1, 3}
        assert set(powercode.customer_services[order.customer_id]) == {
            p["service_id"] for p in order.plans or ()
        }
    assert "plan '2 Gbps'" in str(load_order(runtime, "UIA202611-004219").reason)
    done = [o for o, s in EXPECTED.items() if s == OrderState.DONE]
    assert len(powercode.tickets) == len(done)
    # One customer per finished order, plus the ones seeded before the test.
    created = [c for c in powercode.customers.values() if "customerNotes" in c]
    assert len(created) == len(done)


Shape = Callable[[Emulators], None]


def _set(attribute: str, value: Any) -> Shape:
    return lambda emulators: setattr(emulators.powercode, attribute, value)


SHAPES: dict[str, Shape] = {
    **{f"not found: {s}": _set("not_found_shape", s) for s in sorted(NOT_FOUND_SHAPES)},
    **{f"no services: {s}": _set("no_services_shape", s) for s in sorted(NO_SERVICES_SHAPES)},
    **{f"tag reply: {s}": _set("tag_reply", s) for s in TAG_REPLY_SHAPES},
    "no statusCode where none was seen": _set(
        "omit_status_code",
        frozenset({"addCustomerService", "readCustomerService", "createCustomer"}),
    ),
    "ids as strings": _set("id_style", "strings"),
    "ids as numbers": _set("id_style", "numbers"),
    "an id beside a warning": _set("create_warning", (14, "Welcome e-mail not sent")),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_demo_orders_finish_whatever_the_shape(
    runtime: Runtime, emulators: Emulators, clock: ManualClock, shape: str
) -> None:
    SHAPES[shape](emulators)

    run_demo_orders(runtime, emulators, clock)

    assert_demo_outcome(runtime, emulators)


def test_without_the_probe_an_unrecognised_refusal_waits_for_a_person_instead_of_guessing(
    runtime: Runtime, emulators: Emulators, clock: ManualClock
) -> None:
    emulators.powercode.not_found_shape = "refusal_invalid"
    queue_order(runtime, "UIA202611-004217")
    Worker(runtime, name="unprobed", clock=clock).run_until_idle()

    order = load_order(runtime, "UIA202611-004217")
    assert order.state == OrderState.WAITING
    assert (
        order.reason
        == "find_customer: powercode: readCustomer refused: statusCode 11 (Invalid customer)"
    )
    assert order.customer_id is None
