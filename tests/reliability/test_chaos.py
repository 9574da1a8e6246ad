"""The chaos run, short: real `serve` processes SIGKILLed at random under every kind of fault.

The full run (500 orders, 20 kills) is `utopia-handler chaos`; its figures are in RELIABILITY.md.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CHILD_ENV_KEYS
from utopia_handler.emulators.seed import make_order
from utopia_handler.harness.chaos import ChaosOptions, ChaosReport, run_chaos

SEED = 20261127
ORDERS = 40


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ChaosReport:
    workdir = tmp_path_factory.mktemp("chaos")
    options = ChaosOptions(orders=ORDERS, kills=4, seed=SEED, duration=170, workdir=workdir)
    return run_chaos(options, echo=lambda _line: None)


@pytest.mark.timeout(200)
def test_nothing_acknowledged_is_lost_and_nothing_is_created_twice(report: ChaosReport) -> None:
    assert report.settled, "\n".join(report.lines())
    assert report.kills == 4
    assert report.orders_acknowledged == ORDERS
    assert report.deliveries_acknowledged == report.deliveries > ORDERS  # repeats were sent
    assert report.lost == {}, "\n".join(report.lines())
    assert report.customers_twice == 0
    assert report.services_twice == 0
    # The ticket rule holds an order rather than risk a second ticket.
    assert report.tickets_twice == 0
    assert report.internal_errors_logged == 0
    assert report.ok


@pytest.mark.timeout(200)
def test_every_order_ends_somewhere_a_person_can_see(report: ChaosReport) -> None:
    ended = report.finished + sum(report.waiting.values()) + sum(report.ended_otherwise.values())
    assert ended == ORDERS
    # Faults and kills slow orders down; most still finish without a person.
    assert report.finished >= ORDERS // 2, "\n".join(report.lines())


@pytest.mark.timeout(200)
def test_the_run_met_every_kind_of_fault_and_the_service_felt_them(report: ChaosReport) -> None:
    kinds = {label.split(" ")[0] for label in report.faults}
    assert kinds >= {
        "powercode:latency",
        "powercode:5xx",
        "powercode:429",
        "powercode:timeout",
        "powercode:drop_before",
        "powercode:drop_after_apply",
        "powercode:outage",
        "utopia:outage",
        "smtp:accept_then_close",
        "smtp:refuse_for_a_while",
        "database:lock",
    }
    writes = {label for label in report.faults if label.startswith("powercode:drop_after")}
    assert len(writes) == 4  # createCustomer, addCustomerService, createTicket, tags POST
    assert report.db_locks >= 1
    # The sender really met dead and refusing servers, and tried again.
    assert report.tries > report.deliveries
    failed_tries = sum(n for answer, n in report.answers.items() if answer != "200")
    assert failed_tries > 0


@pytest.mark.timeout(200)
def test_the_service_logs_of_the_run_hold_no_personal_data(report: ChaosReport) -> None:
    rng = random.Random(SEED)  # the run drew its orders first from the same seed
    personal: set[str] = set()
    for index in range(ORDERS):
        _, contract = make_order(index, rng)
        person = contract["customer"]
        personal.update(person[k] for k in ("lastname", "email", "phone") if person[k])
        personal.add(f"{person['firstname']} {person['lastname']}")
        personal.add(contract["address"]["address"])
    assert report.log_files
    logged = "\n".join(path.read_text(encoding="utf-8") for path in report.log_files)
    assert "step.ok" in logged  # the logs are not empty
    assert sorted(value for value in personal if value in logged) == []


@pytest.mark.timeout(120)
def test_the_chaos_command_prints_the_figures_and_exits_0(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k in CHILD_ENV_KEYS}
    arguments = ["--orders", "4", "--kills", "1", "--seed", "3", "--duration", "100"]
    result = subprocess.run(
        [sys.executable, "-m", "utopia_handler", "chaos", *arguments],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (
        "orders lost: 0",
        "customers created twice: 0",
        "services added twice: 0",
        "callbacks acknowledged:",
        "orders waiting for a person:",
        "tickets created twice:",
        "e-mails sent twice",
        "RESULT: PASS",
    ):
        assert line in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
