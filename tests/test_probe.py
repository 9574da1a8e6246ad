"""`check-config --live`: learn PowerCode's unpublished replies read-only, record them, use them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.conftest import ManualClock, load_order, queue_order
from tests.contracts.recorder import WireRequest, base_url, json_answer, recording_server
from utopia_handler import config_store
from utopia_handler.cli import cli
from utopia_handler.clients.errors import RejectedError
from utopia_handler.clients.powercode import EmptyReply, PowerCodeClient
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store.models import OrderState
from utopia_handler.worker import Worker

ORDER = "UIA202611-004217"


@pytest.fixture
def run(
    base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    monkeypatch.chdir(tmp_path)  # no stray .env from the working folder

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=base_env, obj={})

    return invoke


def test_an_unrecognised_not_found_holds_orders_until_probed_then_they_flow(
    run: Callable[..., Result],
    runtime: Runtime,
    emulators: Emulators,
    clock: ManualClock,
) -> None:
    powercode = emulators.powercode
    powercode.not_found_shape = "refusal_invalid"  # "Invalid customer": no word of "not found"
    powercode.no_services_shape = "refusal_no_records"
    no_services = min(powercode.customers)  # seeded, with no services
    before = len(powercode.requests)

    probed = run("check-config", "--live", "--probe-customer", str(no_services))

    assert probed.exit_code == 0, probed.output
    assert "statusCode 11 (Invalid customer)" in probed.output
    assert f"readCustomerService for customer #{no_services}: refused with statusCode 4" in (
        probed.output
    )
    assert probed.output.rstrip().endswith("PowerCode probe recorded")
    # Read-only: it asked, and wrote nothing to PowerCode.
    actions = [dict(r.form).get("action") for r in powercode.requests[before:]]
    assert actions == ["searchCustomers", "readCustomer", "readCustomer", "readCustomerService"]
    with runtime.store.read() as session:
        learned = config_store.learned_replies(session)
    assert learned.customer_not_found == EmptyReply(11, "Invalid customer")
    assert learned.no_services == EmptyReply(4, "No records")

    queue_order(runtime, ORDER)
    Worker(runtime, name="after-probe", clock=clock).run_until_idle()

    order = load_order(runtime, ORDER)
    assert order.state == OrderState.DONE, order.reason
    assert powercode.customer_tags[order.customer_id or 0] == {1, 3}


def test_a_probe_without_a_customer_learns_not_found_and_keeps_the_last_no_services(
    run: Callable[..., Result], runtime: Runtime, emulators: Emulators
) -> None:
    powercode = emulators.powercode
    powercode.no_services_shape = "refusal_none"
    assert (
        run("check-config", "--live", "--probe-customer", str(min(powercode.customers))).exit_code
        == 0
    )
    powercode.not_found_shape = "code0_no_block"

    probed = run("check-config", "--live")

    assert probed.exit_code == 0, probed.output
    assert "readCustomerService: not probed" in probed.output
    with runtime.store.read() as session:
        learned = config_store.learned_replies(session)
    assert learned.customer_not_found == EmptyReply(0)
    assert learned.no_services == EmptyReply(9, "No services found for customer")


def test_a_failed_probe_records_nothing_and_says_why(
    run: Callable[..., Result], runtime: Runtime, emulators: Emulators
) -> None:
    emulators.powercode.faults.add("readCustomer", "fail", status=503)

    probed = run("check-config", "--live")

    assert probed.exit_code == 1
    assert "PowerCode probe failed, nothing recorded: powercode: readCustomer" in probed.output
    with runtime.store.read() as session:
        assert config_store.learned_replies(session) == config_store.NOTHING_LEARNED


def test_a_powercode_that_ignores_extaccountid_is_reported() -> None:
    # A server that answers one customer to every readCustomer, whatever was asked.
    def same_customer(request: WireRequest) -> tuple[int, str, bytes]:
        return json_answer({"statusCode": 0, "customer": {"customerId": "7", "extAccountID": ""}})

    with recording_server(same_customer) as server:
        url = base_url(server)
        with (
            PowerCodeClient(f"{url}/api/1/index.php", f"{url}/uapi/", "k") as client,
            pytest.raises(RejectedError) as caught,
        ):
            client.probe_replies()

    assert "does not look customers up by extAccountID" in caught.value.message


def test_probe_customer_needs_live(run: Callable[..., Result]) -> None:
    answer = run("check-config", "--probe-customer", "5")
    assert answer.exit_code == 2
    assert "--probe-customer needs --live" in answer.output


def test_a_refused_key_is_never_learned_as_not_found(
    run: Callable[..., Result], runtime: Runtime, emulators: Emulators, base_env: dict[str, str]
) -> None:
    wrong = {**base_env, "PC_API_KEY": "not-the-right-key-123"}
    probed = CliRunner().invoke(cli, ["check-config", "--live"], env=wrong, obj={})

    assert probed.exit_code == 1
    assert "searchCustomers refused: statusCode 1 (Invalid API key)" in probed.output
    with runtime.store.read() as session:
        assert config_store.learned_replies(session) == config_store.NOTHING_LEARNED
