"""The console and the command line answer "who lives at this site now?" for a waiting order."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import load_order, queue_order
from tests.console.conftest import post_form
from utopia_handler.cli import cli, cli_actor
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import AuditEntry, Role
from utopia_handler.store.models import OrderState, SiteDecision
from utopia_handler.worker import Worker

PLAIN = "UIA202611-004217"  # Avery Lindqvist, site 204817
SITE = "204817"


@pytest.fixture
def former(console_runtime: Runtime, emulators: Emulators, worker: Worker) -> int:
    """Harriet Colburn (Inactive) left the flat; Avery Lindqvist's order waits for a person."""
    customer_id = emulators.powercode.add_customer(
        "Harriet", "Colburn", "1432 S CANYON VIEW DR", "Orem", ext_account_id=SITE
    )
    emulators.powercode.customers[customer_id]["status"] = "Inactive"
    queue_order(console_runtime, PLAIN)
    worker.run_until_idle()
    assert load_order(console_runtime, PLAIN).state == OrderState.WAITING
    return customer_id


def _customers_at_site(emulators: Emulators) -> list[int]:
    return sorted(
        int(c["customerID"])
        for c in emulators.powercode.customers.values()
        if c.get("extAccountID") == SITE
    )


def _audit(runtime: Runtime) -> list[str]:
    with runtime.store.read() as session:
        return list(
            session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.order_ref == PLAIN)
                .order_by(AuditEntry.id)
            )
        )


def test_the_order_page_shows_both_names_and_the_two_choices_to_operators(
    console_runtime: Runtime, former: int, client_as: Callable[[Role], FlaskClient]
) -> None:
    path = f"/orders/{load_order(console_runtime, PLAIN).id}"
    operator = client_as(Role.OPERATOR).get(path).get_data(as_text=True)
    for words in (
        "Who lives at site 204817 now?",
        "Avery Lindqvist",
        f"#{former}",
        "Harriet Colburn",
        "status Inactive",
        f"/orders/{load_order(console_runtime, PLAIN).id}/site-decision",
        '<button type="submit" name="decision" value="new_customer">New customer at this site',
        'value="same_person" class="secondary">Same person',
    ):
        assert words in operator, words
    viewer = client_as(Role.VIEWER).get(path).get_data(as_text=True)
    assert "Harriet Colburn" in viewer and "status Inactive" in viewer
    assert "New customer at this site</button>" not in viewer
    assert "site-decision" not in viewer


def test_new_customer_at_this_site_from_the_console(
    console_runtime: Runtime,
    former: int,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    order_id = load_order(console_runtime, PLAIN).id
    operator = client_as(Role.OPERATOR)

    no_note = post_form(
        operator, f"/orders/{order_id}/site-decision", {"decision": "new_customer", "note": " "}
    )
    assert no_note.status_code == 303
    assert "Not done: write a note" in operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert load_order(console_runtime, PLAIN).site_decision is None

    answer = post_form(
        operator,
        f"/orders/{order_id}/site-decision",
        {"decision": "new_customer", "note": "Harriet moved out"},
    )
    assert answer.status_code == 303 and answer.headers["Location"] == f"/orders/{order_id}"
    page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert "“new customer at this site” recorded" in page
    worker.run_until_idle()

    order = load_order(console_runtime, PLAIN)
    assert order.state == OrderState.DONE, order.reason
    assert order.customer_id is not None and order.customer_id != former
    assert _customers_at_site(emulators) == [former, order.customer_id]
    assert _audit(console_runtime) == ["site_new_customer"]
    page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert "operator: site new customer" in page and "Harriet moved out" in page
    assert "Who lives at site" not in page  # answered


def test_same_person_from_the_console_and_what_is_refused(
    console_runtime: Runtime,
    former: int,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    order_id = load_order(console_runtime, PLAIN).id
    path = f"/orders/{order_id}/site-decision"
    viewer = post_form(client_as(Role.VIEWER), path, {"decision": "same_person", "note": "x"})
    assert viewer.status_code == 403
    assert "Your role does not allow this" in viewer.get_data(as_text=True)
    operator = client_as(Role.OPERATOR)
    assert post_form(operator, path, {"decision": "someone", "note": "x"}).status_code == 400
    no_token = operator.post(path, data={"decision": "same_person", "note": "x"})
    assert no_token.status_code == 400
    assert load_order(console_runtime, PLAIN).site_decision is None
    assert _audit(console_runtime) == []

    post_form(operator, path, {"decision": "same_person", "note": "her married name"})
    again = post_form(operator, path, {"decision": "new_customer", "note": "changed my mind"})
    assert again.status_code == 303
    page = operator.get(f"/orders/{order_id}").get_data(as_text=True)
    assert "Not done: order UIA202611-004217 is not waiting for a decision" in page
    worker.run_until_idle()

    order = load_order(console_runtime, PLAIN)
    assert order.state == OrderState.DUPLICATE
    assert order.customer_id == former
    assert order.site_decision == SiteDecision.SAME_PERSON
    assert _customers_at_site(emulators) == [former]
    assert _audit(console_runtime) == ["site_same_person"]


@pytest.fixture
def run(
    base_env: dict[str, str], tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    monkeypatch.chdir(str(tmp_path))  # no stray .env from the working folder

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=base_env, obj={})

    return invoke


def test_the_command_line_records_the_same_decisions(
    console_runtime: Runtime,
    former: int,
    worker: Worker,
    emulators: Emulators,
    run: Callable[..., Result],
) -> None:
    missing_note = run("orders", "site-decision", PLAIN, "same-person")
    assert missing_note.exit_code == 2 and "--note" in missing_note.output
    wrong = run("orders", "site-decision", PLAIN, "maybe", "--note", "x")
    assert wrong.exit_code == 2

    done = run("orders", "site-decision", PLAIN, "new-customer", "--note", "new tenant")
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"{PLAIN}: new-customer recorded; queued again at find_customer"
    refused = run("orders", "site-decision", PLAIN, "same-person", "--note", "x")
    assert refused.exit_code == 1
    assert "not waiting for a decision" in refused.output

    worker.run_until_idle()
    order = load_order(console_runtime, PLAIN)
    assert order.state == OrderState.DONE, order.reason
    assert len(_customers_at_site(emulators)) == 2
    with console_runtime.store.read() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.order_ref == PLAIN)).one()
    assert (entry.actor, entry.action) == (cli_actor(), "site_new_customer")
