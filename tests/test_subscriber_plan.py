"""The subscriber actions' plans: every field shown, keys masked, nothing sent on a dry run."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from tests.conftest import new_order, post_callback, queue_order, settled, wait_for
from utopia_handler.cli import cli
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.store.models import SubscriberActionAttempt
from utopia_handler.worker import Worker

ORDER = "UIA202611-004217"  # site 204817 in the demo seed


def test_a_dry_run_shows_what_a_suspend_would_send_and_sends_nothing(
    runtime: Runtime, worker: Worker, emulators: Emulators, base_env: dict[str, str]
) -> None:
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    sent_before = len(emulators.powercode.requests)
    result = CliRunner().invoke(
        cli, ["subscriber", "suspend", ORDER, "--note", "unpaid", "--dry-run"], env=base_env
    )
    assert result.exit_code == 0, result.output
    assert "UTOPIA /spquery/suspend" in result.output
    assert "cid = C204817" in result.output and "siteid = 204817" in result.output
    assert "status = Suspended" in result.output and "apikey = ********" in result.output
    assert "dry run: nothing was sent" in result.output
    assert emulators.utopia.sites["204817"].status == "Active"
    assert [e for e, _ in emulators.utopia.journal if e == "suspend"] == []
    assert len(emulators.powercode.requests) == sent_before


def test_a_cancel_without_a_date_says_so_and_pc_side_effects_can_be_turned_off(
    runtime: Runtime, worker: Worker, base_env: dict[str, str]
) -> None:
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    env = {**base_env, "SUBSCRIBER_PC_STATUS_CHANGES": "false", "SUBSCRIBER_PC_CANCEL_TICKET": "0"}
    result = CliRunner().invoke(
        cli, ["subscriber", "cancel", ORDER, "--note", "moving", "--dry-run"], env=env
    )
    assert "cannot run: give the cancel date (--date YYYY-MM-DD)" in result.output
    assert "updateCustomerStatus" not in result.output and "createTicket" not in result.output
    sent = CliRunner().invoke(cli, ["subscriber", "cancel", ORDER, "--note", "x"], env=env)
    assert sent.exit_code == 1  # refused: the plan cannot run without its date
    assert "refused: the plan cannot run" in sent.output


def test_the_cli_asks_and_sends_nothing_when_the_answer_is_no(
    runtime: Runtime, worker: Worker, emulators: Emulators, base_env: dict[str, str]
) -> None:
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    result = CliRunner().invoke(
        cli, ["subscriber", "suspend", ORDER, "--note", "unpaid"], env=base_env, input="n\n"
    )
    assert result.exit_code == 1 and "Send this?" in result.output
    assert emulators.utopia.sites["204817"].status == "Active"


def test_the_cli_runs_a_suspend_itself_when_no_worker_runs_and_says_done(
    runtime: Runtime, worker: Worker, emulators: Emulators, base_env: dict[str, str]
) -> None:
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    emulators.smtp.clear()
    result = CliRunner().invoke(
        cli, ["subscriber", "suspend", ORDER, "--note", "unpaid", "--yes"], env=base_env
    )
    assert result.exit_code == 0, result.output
    assert "done: UTOPIA and PowerCode are in step" in result.output
    assert emulators.utopia.sites["204817"].status == "Suspended"
    assert any("Subscriber suspend done" in str(m["Subject"]) for m in emulators.smtp.messages)
    again = CliRunner().invoke(
        cli, ["subscriber", "unsuspend", ORDER, "--note", "paid", "--yes"], env=base_env
    )
    assert again.exit_code == 0, again.output
    assert emulators.utopia.sites["204817"].status == "Active"


def test_the_cli_exit_status_says_still_running_or_waits_for_a_person(
    runtime: Runtime, worker: Worker, emulators: Emulators, base_env: dict[str, str]
) -> None:
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    emulators.powercode.faults.add("updateCustomerStatus", "fail", count=1)
    running = CliRunner().invoke(
        cli, ["subscriber", "suspend", ORDER, "--note", "unpaid", "--yes"], env=base_env
    )
    assert running.exit_code == 3, running.output
    assert "still running" in running.output
    refused = CliRunner().invoke(
        cli, ["subscriber", "unsuspend", ORDER, "--note", "paid", "--yes"], env=base_env
    )
    assert refused.exit_code == 1 and "unfinished" in refused.output


def test_the_cli_exit_status_says_waits_for_a_person_when_powercode_refuses(
    runtime: Runtime, worker: Worker, emulators: Emulators, base_env: dict[str, str]
) -> None:
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    emulators.powercode.faults.add(
        "updateCustomerStatus", "reject", count=1, status_code=3, message="Invalid field: status"
    )
    result = CliRunner().invoke(
        cli, ["subscriber", "suspend", ORDER, "--note", "unpaid", "--yes"], env=base_env
    )
    assert result.exit_code == 4, result.output
    assert "waits for a person" in result.output and "Invalid field: status" in result.output


def test_a_speed_change_takes_utopias_product_from_the_mapping_in_the_settings(
    runtime: Runtime, worker: Worker, emulators: Emulators, base_env: dict[str, str]
) -> None:
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    env = {**base_env, "SUBSCRIBER_SPEED_PRODUCTS": "164=1000, 165=2000"}
    args = ["subscriber", "change-speed", ORDER, "--note", "upgrade", "--service", "165"]
    result = CliRunner().invoke(cli, [*args, "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert "product = 2000" in result.output
    assert emulators.utopia.sites["204817"].product == "2 Gbps"
    unmapped = CliRunner().invoke(cli, ["subscriber", "change-speed", ORDER, "--note", "x",
                                        "--service", "163", "--dry-run"], env=env)  # fmt: skip
    assert "no UTOPIA product is mapped for PowerCode service 163" in unmapped.output


def test_a_bad_speed_mapping_in_the_settings_is_refused_with_its_variable(
    base_env: dict[str, str],
) -> None:
    result = CliRunner().invoke(
        cli, ["check-config"], env={**base_env, "SUBSCRIBER_SPEED_PRODUCTS": "164:1000"}
    )
    assert result.exit_code != 0
    assert "SUBSCRIBER_SPEED_PRODUCTS" in result.output


def test_a_typed_cid_is_used_and_said_to_be_typed(
    runtime: Runtime, worker: Worker, base_env: dict[str, str]
) -> None:
    queue_order(runtime, ORDER)
    worker.run_until_idle()
    result = CliRunner().invoke(
        cli,
        ["subscriber", "suspend", ORDER, "--note", "x", "--cid", "C999", "--dry-run"],
        env=base_env,
    )
    assert result.exit_code == 0, result.output
    assert "UTOPIA cid C999 (typed)" in result.output and "cid = C999" in result.output


def test_with_a_worker_running_the_cli_waits_for_it_instead_of_running_the_action_itself(
    runtime: Runtime, service: ServiceHandle, emulators: Emulators, base_env: dict[str, str]
) -> None:
    assert post_callback(service.url, new_order(ORDER)).status_code == 200
    wait_for(lambda: settled(runtime))
    result = CliRunner().invoke(
        cli, ["subscriber", "suspend", ORDER, "--note", "unpaid", "--yes"], env=base_env
    )
    assert result.exit_code == 0, result.output
    assert emulators.utopia.sites["204817"].status == "Suspended"
    with runtime.store.read() as session:
        workers = set(session.scalars(select(SubscriberActionAttempt.worker)))
    assert workers and not any(name.startswith("cli:") for name in workers)
