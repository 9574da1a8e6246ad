"""The orders list and page, and what an operator does to an order; the worker shows the result."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import load_order, queue_order
from tests.console.conftest import PASSWORDS, log_in, post_form
from utopia_handler import accounts, config_store
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.console_models import AuditEntry, ConfigKind, Role
from utopia_handler.store.models import Notification, Order, OrderState, Step
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

PLAIN = "UIA202611-004217"  # Avery Lindqvist, site 204817, 250 Mbps
UNIT = "UIA202611-004218"  # María José O'Neill-Ramírez, 1 Gbps
HELD = "UIA202611-004219"  # Dale Whitfield, "2 Gbps" is not mapped: waits for a person
DUPLICATE = "UIA202611-004220"  # Tobias Wrenfield has a PowerCode account already


def _order_id(runtime: Runtime, ref: str) -> int:
    return load_order(runtime, ref).id


def _customers_with_site(emulators: Emulators, site_id: str) -> list[dict[str, object]]:
    return [c for c in emulators.powercode.customers.values() if c.get("extAccountID") == site_id]


def _audit(runtime: Runtime, ref: str) -> list[str]:
    with runtime.store.read() as session:
        return list(
            session.scalars(
                select(AuditEntry.action).where(AuditEntry.order_ref == ref).order_by(AuditEntry.id)
            )
        )


def test_adding_the_mapping_in_the_console_and_retrying_finishes_a_held_order(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    queue_order(console_runtime, HELD)
    worker.run_until_idle()
    assert load_order(console_runtime, HELD).state == OrderState.WAITING

    admin = client_as(Role.ADMIN)
    saved = post_form(
        admin,
        "/settings/plans",
        {"plan_text": ["250 Mbps", "1 Gbps", "2 Gbps"], "service_id": ["163", "164", "165"]},
    )
    assert saved.status_code == 303
    operator = client_as(Role.OPERATOR)
    order_id = _order_id(console_runtime, HELD)
    retried = post_form(operator, f"/orders/{order_id}/retry")
    assert retried.status_code == 303
    assert retried.headers["Location"] == f"/orders/{order_id}"
    assert "is queued again" in operator.get(retried.headers["Location"]).get_data(as_text=True)

    worker.run_until_idle()  # the same worker, never restarted, uses the new mapping
    order = load_order(console_runtime, HELD)
    assert order.state == OrderState.DONE
    [customer] = _customers_with_site(emulators, "99120")
    assert emulators.powercode.customer_services[int(str(customer["customerID"]))] == {
        165: 1,
        172: 1,
    }
    page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert ">done<" in page
    assert "operator: retry" in page  # the person's action is in the order's story
    assert _audit(console_runtime, HELD) == ["retry"]


def test_mark_resolved_needs_a_note_and_closes_the_order(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    queue_order(console_runtime, HELD)
    worker.run_until_idle()
    operator = client_as(Role.OPERATOR)
    order_id = _order_id(console_runtime, HELD)

    refused = post_form(operator, f"/orders/{order_id}/resolve", {"note": "   "})
    assert refused.status_code == 303
    assert "Not done: write a note" in operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert load_order(console_runtime, HELD).state == OrderState.WAITING

    post_form(operator, f"/orders/{order_id}/resolve", {"note": "Created by hand as PC#777"})
    order = load_order(console_runtime, HELD)
    assert order.state == OrderState.DONE
    assert order.reason == "resolved by hand by operator: Created by hand as PC#777"
    assert worker.run_until_idle() == 0  # nothing more to do for it
    page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert "resolved by hand" in page and "Created by hand as PC#777" in page
    assert _audit(console_runtime, HELD) == ["resolve"]


def test_ignore_stops_work_on_the_order(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    queue_order(console_runtime, PLAIN)  # not worked on yet
    operator = client_as(Role.OPERATOR)
    post_form(
        operator, f"/orders/{_order_id(console_runtime, PLAIN)}/ignore", {"note": "a test order"}
    )
    assert worker.run_until_idle() == 0
    order = load_order(console_runtime, PLAIN)
    assert order.state == OrderState.IGNORED
    assert order.customer_id is None
    assert _audit(console_runtime, PLAIN) == ["ignore"]


def test_resend_queues_the_latest_email_again_with_its_own_message_id(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    queue_order(console_runtime, HELD)
    worker.run_until_idle()
    assert len(emulators.smtp.messages) == 1
    post_form(client_as(Role.OPERATOR), f"/orders/{_order_id(console_runtime, HELD)}/resend")
    worker.run_until_idle()
    ids = [str(m["Message-ID"]) for m in emulators.smtp.messages]
    assert ids == [
        f"<held.{HELD}@utopia-handler.local>",
        f"<held.{HELD}.1@utopia-handler.local>",
    ]
    assert emulators.smtp.messages[0]["Subject"] == emulators.smtp.messages[1]["Subject"]


def test_re_running_steps_of_a_finished_order_never_makes_a_second_customer_or_ticket(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    queue_order(console_runtime, PLAIN)
    worker.run_until_idle()
    assert load_order(console_runtime, PLAIN).state == OrderState.DONE
    operator = client_as(Role.OPERATOR)
    order_id = _order_id(console_runtime, PLAIN)

    refused = post_form(operator, f"/orders/{order_id}/retry", {"from_step": "create_customer"})
    assert refused.status_code == 303
    page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert "Not done: customer #" in page
    assert "retry from “Check for an existing PowerCode customer”" in page  # steps in words

    # Staff got the "customer created" e-mail: a run through notify sends it again, so the
    # person is asked first, and nothing runs until they confirm.
    asked = post_form(operator, f"/orders/{order_id}/retry", {"from_step": "find_customer"})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Send the “customer created” e-mail again?" in page
    assert 'name="confirm" value="yes"' in page
    assert load_order(console_runtime, PLAIN).run == 1 and _audit(console_runtime, PLAIN) == []
    post_form(
        operator, f"/orders/{order_id}/retry", {"from_step": "find_customer", "confirm": "yes"}
    )
    worker.run_until_idle()
    order = load_order(console_runtime, PLAIN)
    assert order.run == 2
    assert order.state == OrderState.DONE
    assert len(_customers_with_site(emulators, "204817")) == 1
    assert len(emulators.powercode.tickets) == 1
    page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert f"ticket {order.ticket_id} was opened by this order before" in page


def test_search_by_name_ref_site_or_powercode_id_keeps_the_text_out_of_urls(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    for ref in (PLAIN, UNIT, HELD):
        queue_order(console_runtime, ref)
    worker.run_until_idle()
    plain_customer = load_order(console_runtime, PLAIN).customer_id
    viewer = client_as(Role.VIEWER)

    def search(text: str) -> str:
        answer = post_form(viewer, "/orders/search", {"q": text})
        assert answer.status_code == 303
        assert answer.headers["Location"] == "/orders?search=1"  # the text stays in the session
        page = viewer.get("/orders?search=1").get_data(as_text=True)
        hrefs = " ".join(re.findall(r'(?:href|action)="([^"]*)"', page))
        assert text.casefold() not in hrefs.casefold()
        return page

    found = search("whitfield")
    assert HELD in found and PLAIN not in found and UNIT not in found
    assert 'waiting for a person <span class="count" data-count="waiting">1</span>' in found
    assert PLAIN in search("204817") and UNIT not in search("204817")
    assert PLAIN in search(str(plain_customer))
    for written in (f"#{plain_customer}", f"PC#{plain_customer}", f"pc {plain_customer}"):
        found = search(written)
        assert PLAIN in found and UNIT not in found and HELD not in found, written
    # Accents, case and apostrophes do not matter: "Maria" finds "María José O'Neill-Ramírez".
    for written in ("maria", "MARIA JOSE", "oneill", "O\u2019Neill-Ramirez", "ramírez"):
        found = search(written)
        assert UNIT in found and PLAIN not in found and HELD not in found, written
    only_unit = search("004218")
    assert UNIT in only_unit and PLAIN not in only_unit
    assert "No orders" in search("nobody-by-this-name")

    post_form(viewer, "/orders/search/clear")
    everything = viewer.get("/orders").get_data(as_text=True)
    assert all(ref in everything for ref in (PLAIN, UNIT, HELD))
    done = viewer.get("/orders?state=done").get_data(as_text=True)
    assert PLAIN in done and UNIT in done and HELD not in done


def test_an_old_search_never_hides_the_orders_home_and_the_navigation_point_to(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    for ref in (PLAIN, HELD):
        queue_order(console_runtime, ref)
    worker.run_until_idle()
    viewer = client_as(Role.VIEWER)
    post_form(viewer, "/orders/search", {"q": "Lindqvist"})  # finds PLAIN only

    home = viewer.get("/").get_data(as_text=True)
    assert "1 order waits for a person" in home
    links = set(re.findall(r'href="(/orders[^"]*)"', home))
    assert "/orders?state=waiting" in links and "/orders" in links
    assert not [link for link in links if "search" in link]
    waiting = viewer.get("/orders?state=waiting").get_data(as_text=True)
    assert HELD in waiting and "No orders" not in waiting
    assert "Search for “Lindqvist” again" in waiting  # offered, not applied
    everything = viewer.get("/orders").get_data(as_text=True)
    assert PLAIN in everything and HELD in everything

    # Inside a search, the state tabs keep it; clearing it keeps the state.
    searched = viewer.get("/orders?search=1&state=done").get_data(as_text=True)
    assert PLAIN in searched and HELD not in searched
    assert 'href="/orders?state=waiting&amp;search=1"' in searched
    none_waiting = viewer.get("/orders?search=1&state=waiting").get_data(as_text=True)
    assert "No orders waiting for a person match “Lindqvist”" in none_waiting
    cleared = post_form(viewer, "/orders/search/clear?state=waiting")
    assert cleared.headers["Location"] == "/orders?state=waiting"
    after = viewer.get(cleared.headers["Location"]).get_data(as_text=True)
    assert HELD in after and "Search for" not in after


def test_the_order_page_tells_the_whole_story(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    queue_order(console_runtime, HELD)
    queue_order(console_runtime, PLAIN)
    worker.run_until_idle()
    viewer = client_as(Role.VIEWER)
    held = viewer.get(f"/orders/{_order_id(console_runtime, HELD)}").get_data(as_text=True)
    for words in (
        "Why it waits",
        "plan &#39;2 Gbps&#39; has no PowerCode service mapping",
        "Callback from UTOPIA: Project New Order",
        "new order queued",
        "Look up the contract at UTOPIA",
        "Choose the PowerCode services",
        "stopped for a person",
        "E-mail to staff: order waiting for a person",
        "Dale Whitfield",
        "87 N 400 E",
    ):
        assert words in held, words

    plain = load_order(console_runtime, PLAIN)
    page = viewer.get(f"/orders/{plain.id}").get_data(as_text=True)
    link = f"index.php?q&amp;page=/customers/_view.php&amp;customerid={plain.customer_id}"
    assert link in page
    assert f"{plain.ticket_id}" in page
    assert "created by this order" in page


def test_customer_data_is_escaped_and_kept_out_of_page_titles(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    queue_order(console_runtime, HELD)
    worker.run_until_idle()
    evil = "<script>alert(1)</script>"
    with console_runtime.store.write() as session:
        order = queries.find_order(session, HELD)
        assert order is not None and order.contract is not None
        order.customer_name = evil
        order.contract = {
            **order.contract,
            "customer": {**order.contract["customer"], "first_name": evil},
        }
        order.reason = f"choose_plans: {evil}"
    viewer = client_as(Role.VIEWER)
    for path in (f"/orders/{_order_id(console_runtime, HELD)}", "/orders", "/"):
        page = viewer.get(path).get_data(as_text=True)
        assert "<script>alert(1)" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
        title = re.search(r"<title>(.*?)</title>", page, re.S)
        assert title is not None
        assert "Whitfield" not in title.group(1) and HELD not in title.group(1)


def test_not_handled_callbacks_are_listed_for_staff(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    with console_runtime.store.write() as session:
        for msg in ("Project Install Scheduled", "Project Install Scheduled", "Port Complete"):
            queries.record_callback(
                session,
                order_ref=PLAIN,
                msg=msg,
                event=f"event {msg}",
                body="{}",
                remote_addr="127.0.0.1",
                now=utcnow(),
            )
    page = client_as(Role.VIEWER).get("/callbacks/not-handled").get_data(as_text=True)
    assert "“Project Install Scheduled”: 1" in page  # the second was a repeat of the first
    assert "“Port Complete”: 1" in page
    assert page.count(PLAIN) == 2


def test_the_audit_log_shows_who_did_what_to_which_order(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    queue_order(console_runtime, HELD)
    worker.run_until_idle()
    operator = client_as(Role.OPERATOR)
    post_form(
        operator, f"/orders/{_order_id(console_runtime, HELD)}/ignore", {"note": "dup of 4220"}
    )
    page = client_as(Role.VIEWER).get("/audit").get_data(as_text=True)
    assert re.search(
        r"operator</td>\s*<td[^>]*>ignore</td>\s*<td[^>]*><a href=\"/orders/\d+\">" + HELD, page
    )
    assert "dup of 4220" in page
    assert "login" in page
    with console_runtime.store.read() as session:
        assert session.scalar(select(Notification.id).limit(1)) is not None
        assert (
            session.scalar(select(Order.state).where(Order.order_ref == HELD)) == OrderState.IGNORED
        )


def test_an_admin_maps_the_missing_plan_on_the_order_page_and_the_order_goes_on(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    queue_order(console_runtime, HELD)
    worker.run_until_idle()
    order_id = _order_id(console_runtime, HELD)
    admin = client_as(Role.ADMIN)
    page = admin.get(f"/orders/{order_id}").get_data(as_text=True)
    assert "Map “2 Gbps” to PowerCode service id" in page
    assert "Choose the PowerCode services: plan" in page  # the step in words, not choose_plans

    refused = post_form(
        admin, f"/orders/{order_id}/map-plans", {"plan_text": "2 Gbps", "service_id": "2G"}
    )
    assert refused.headers["Location"] == f"/orders/{order_id}"
    shown = admin.get(f"/orders/{order_id}").get_data(as_text=True)
    assert "Not saved: “2 Gbps”: the service id must be a whole number" in shown
    with console_runtime.store.read() as session:
        assert config_store.latest(session, ConfigKind.PLANS) is None
    assert load_order(console_runtime, HELD).state == OrderState.WAITING

    post_form(admin, f"/orders/{order_id}/map-plans", {"plan_text": "2 Gbps", "service_id": "165"})
    shown = admin.get(f"/orders/{order_id}").get_data(as_text=True)
    assert (
        f"Mapped “2 Gbps” to service 165 (plan mapping version 1); order {HELD} is queued" in shown
    )
    worker.run_until_idle()
    assert load_order(console_runtime, HELD).state == OrderState.DONE
    [customer] = _customers_with_site(emulators, "99120")
    assert emulators.powercode.customer_services[int(str(customer["customerID"]))] == {
        165: 1,
        172: 1,
    }
    with console_runtime.store.read() as session:
        version = config_store.latest(session, ConfigKind.PLANS)
        assert version is not None
        assert {"utopia_text": "2 Gbps", "service_id": 165} in version.value
        assert {"utopia_text": "250 Mbps", "service_id": 163} in version.value  # kept
    assert _audit(console_runtime, HELD) == ["retry"]


def test_operators_and_viewers_are_told_what_their_role_can_do_about_an_unmapped_plan(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    queue_order(console_runtime, HELD)
    worker.run_until_idle()
    order_id = _order_id(console_runtime, HELD)
    operator = client_as(Role.OPERATOR)
    for path in (f"/orders/{order_id}", "/"):
        # (The staff e-mail, shown as it was sent, keeps its words: it went to everyone.)
        page = operator.get(path).get_data(as_text=True).split('id="emails-h"')[0]
        assert "add one to the plan mapping" not in page, path
        assert "only an admin can change the plan mapping" in page, path
    page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert (
        f'href="/orders/{order_id}/provision">Correct the order</a>: provision it by hand' in page
    )
    assert "map-plans" not in page
    refused = post_form(
        operator, f"/orders/{order_id}/map-plans", {"plan_text": "2 Gbps", "service_id": "165"}
    )
    assert refused.status_code == 403

    viewer = client_as(Role.VIEWER).get(f"/orders/{order_id}").get_data(as_text=True)
    viewer = viewer.split('id="emails-h"')[0]
    assert "An admin can map it, or an operator can provision the order by hand" in viewer
    assert "add one to the plan mapping" not in viewer and "<button" not in viewer.split("<main")[1]


def test_the_plans_page_lists_orders_waiting_for_a_plan_and_retries_them_with_one_button(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    queue_order(console_runtime, HELD)
    queue_order(console_runtime, PLAIN)
    worker.run_until_idle()
    admin = client_as(Role.ADMIN)
    page = admin.get("/settings/plans").get_data(as_text=True)
    assert "Orders waiting for a plan mapping" in page and HELD in page and PLAIN not in page
    assert "“2 Gbps”" in page and "Retry the" not in page

    saved = post_form(
        admin,
        "/settings/plans",
        {"plan_text": ["250 Mbps", "1 Gbps", "2 Gbps"], "service_id": ["163", "164", "165"]},
    )
    page = admin.get(saved.headers["Location"]).get_data(as_text=True)
    assert "1 waiting order can go on now" in page and "ready to retry" in page
    retried = post_form(admin, "/settings/plans/retry-waiting")
    page = admin.get(retried.headers["Location"]).get_data(as_text=True)
    assert f"Queued again: {HELD}." in page and "Orders waiting for a plan mapping" not in page
    worker.run_until_idle()
    assert load_order(console_runtime, HELD).state == OrderState.DONE
    assert _audit(console_runtime, HELD) == ["retry"]


def test_the_audit_log_filters_by_who_what_order_and_day_and_hides_log_ins_unless_asked(
    app: Flask,
    console_runtime: Runtime,
    worker: Worker,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    queue_order(console_runtime, HELD)
    queue_order(console_runtime, PLAIN)
    worker.run_until_idle()
    operator = client_as(Role.OPERATOR)
    post_form(operator, f"/orders/{_order_id(console_runtime, HELD)}/ignore", {"note": "dup"})
    post_form(operator, f"/orders/{_order_id(console_runtime, PLAIN)}/resend")
    log_in(app.test_client(), "operator", "not-the-password")  # a failed log-in is recorded
    viewer = client_as(Role.VIEWER)

    def rows(query: str = "") -> list[tuple[str, str]]:
        page = viewer.get(f"/audit{query}").get_data(as_text=True)
        found = re.findall(r'"Who">([^<]*)</td>\s*<td data-label="What">([^<]*)</td>', page)
        return [(who, what) for who, what in found]

    default = rows()
    assert ("operator", "ignore") in default and ("operator", "resend email") in default
    assert ("operator", "login failed") in default  # failures are shown; routine log-ins are not
    assert not [r for r in default if r[1] in ("login", "logout")]
    assert "log-ins and log-outs not shown" in viewer.get("/audit").get_data(as_text=True)
    everything = rows("?logins=1")
    assert ("operator", "login") in everything and ("viewer", "login") in everything

    assert rows("?action=ignore") == [("operator", "ignore")]
    assert rows("?action=login") == [("viewer", "login"), ("operator", "login")]
    assert set(rows("?user=viewer&logins=1")) == {("viewer", "login")}
    assert rows(f"?order={PLAIN.lower()}") == [("operator", "resend email")]
    today = utcnow().date()
    assert ("operator", "ignore") in rows(f"?from={today}&to={today}")
    assert rows(f"?to={today - timedelta(days=1)}") == []
    assert "No entries match these filters." in viewer.get("/audit?user=nobody").get_data(
        as_text=True
    )
    any_name = "/audit?action=login_refused_by_hardening"  # an action this page never heard of
    assert viewer.get(any_name).status_code == 200


def test_the_order_page_and_the_counts_have_json_to_refresh_themselves_by(
    console_runtime: Runtime, worker: Worker, client_as: Callable[[Role], FlaskClient]
) -> None:
    queue_order(console_runtime, HELD)
    queue_order(console_runtime, PLAIN)
    viewer = client_as(Role.VIEWER)
    order_id = _order_id(console_runtime, PLAIN)
    page = viewer.get(f"/orders/{order_id}").get_data(as_text=True)
    assert f'data-status-url="/orders/{order_id}/status"' in page  # queued: the page polls
    queued = viewer.get(f"/orders/{order_id}/status").get_json()
    assert queued["state"] == "received" and queued["settled"] is False
    assert queued["poll_seconds"] == 2
    counts = viewer.get("/orders/counts").get_json()
    assert counts["counts"]["received"] == 2 and counts["all"] == 2

    worker.run_until_idle()
    done = viewer.get(f"/orders/{order_id}/status").get_json()
    assert done["state"] == "done" and done["settled"] is True
    assert done["fingerprint"] != queued["fingerprint"]
    assert "data-status-url" not in viewer.get(f"/orders/{order_id}").get_data(as_text=True)
    counts = viewer.get("/orders/counts").get_json()
    assert (counts["counts"]["done"], counts["counts"]["waiting"], counts["all"]) == (1, 1, 2)
    post_form(viewer, "/orders/search", {"q": "Whitfield"})
    assert viewer.get("/orders/counts?search=1").get_json()["all"] == 1
    assert viewer.get("/orders/counts").get_json()["all"] == 2
    for path in ("/", "/orders"):
        assert 'data-counts-url="/orders/counts' in viewer.get(path).get_data(as_text=True)


def test_an_unknown_address_is_the_consoles_page_for_people_and_json_for_machines(
    client_as: Callable[[Role], FlaskClient],
) -> None:
    viewer = client_as(Role.VIEWER)
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    page = viewer.get("/ordres", headers=browser)
    assert page.status_code == 404 and page.content_type.startswith("text/html")
    text = page.get_data(as_text=True)
    assert "There is nothing here" in text and "Log out" in text  # the console, still logged in
    assert page.headers["X-Frame-Options"] == "DENY"
    for path in ("/api-callback/x", "/metrics/x", "/healthz/x"):
        machine = viewer.get(path, headers=browser)
        assert machine.status_code == 404 and machine.is_json, path
    assert viewer.get("/ordres").is_json  # no text/html asked for: a script


def test_the_order_page_says_things_in_a_support_persons_words(
    make_runtime: Callable[..., Runtime],
) -> None:
    runtime = make_runtime(SESSION_COOKIE_SECURE="false", PC_CUST_TAGS="1,3")
    from utopia_handler.app import create_app
    from utopia_handler.timeutil import utcnow as now

    with runtime.store.write() as session:
        for role in Role:
            accounts.add_user(session, role.value, PASSWORDS[role], role, now(), actor="test")
    client = create_app(runtime).test_client()
    log_in(client, "operator", PASSWORDS[Role.OPERATOR])
    for ref in (PLAIN, DUPLICATE):
        queue_order(runtime, ref)
    Worker(runtime, name="words-worker").run_until_idle()

    plain = client.get(f"/orders/{_order_id(runtime, PLAIN)}").get_data(as_text=True)
    assert "Orem, UT 84058" in plain and "Utah" not in plain  # the two-letter code
    assert '2026-11-03 14:22:51 <span class="hint">(as UTOPIA sent it: no time zone given)' in plain
    assert "<dd>tag 1, tag 3</dd>" in plain and "tags added: tag 1, tag 3" in plain
    assert "Customer Created Successfully - Avery Lindqvist" in plain  # the e-mail's subject
    assert "<details><summary>Customer Created Successfully" in plain  # its text folded
    assert "to the 2 recipients of EMAIL_RECIPIENTS" in plain
    steps = re.findall(r'type="radio" id="from-([a-z_]+)"', plain)
    assert steps == [s.value for s in Step if s != Step.FINISHED]  # every step, none cut off
    assert re.search(r'data-label="[^"]+">\s+</td>', plain) is None  # no label without a value

    duplicate = client.get(f"/orders/{_order_id(runtime, DUPLICATE)}").get_data(as_text=True)
    assert "not opened: duplicate" in duplicate and "Ticket</dt><dd>none yet" not in duplicate
