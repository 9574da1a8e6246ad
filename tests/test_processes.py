"""The command as operators run it: real processes, real signals, SIGKILL in the middle of work."""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    CALLBACK_TOKEN,
    CHILD_ENV_KEYS,
    SECRET_KEY,
    new_order,
    post_callback,
    wait_for,
)
from utopia_handler.emulators import Emulators
from utopia_handler.emulators.seed import make_order


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command_env(base_env: dict[str, str], **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in CHILD_ENV_KEYS}
    return {**keep, **base_env, **extra}


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "utopia_handler", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Serve:
    """`utopia-handler serve` as a child process."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = int(env["FLASK_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (cwd / f"serve-{self.port}.out").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "utopia_handler", "serve"],
            env=env,
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self.ready, timeout=20)

    def ready(self) -> bool:
        assert self.process.poll() is None, "serve exited early"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def worker_pids(self) -> list[int]:
        """The pids of serve's children: its worker process (once started)."""
        pid = self.process.pid
        try:
            return [int(n) for n in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)  # the service dumps its threads' stacks
            time.sleep(1)
            self.process.kill()
            code = self.process.wait()
        self.log.close()
        if code != 0:  # show why, so a failure explains itself
            print(Path(self.log.name).read_text(errors="replace")[-4000:])
        return code


@pytest.fixture
def serve_env(base_env: dict[str, str]) -> Iterator[dict[str, str]]:
    yield command_env(base_env, FLASK_PORT=str(free_port()), LEASE_SECONDS="2", POLL_SECONDS="0.1")


def test_sigkill_during_customer_creation_then_restart_creates_nothing_twice(
    serve_env: dict[str, str], emulators: Emulators, tmp_path: Path
) -> None:
    order_ref, site = "UIA202611-004218", "318002"
    # PowerCode takes 1.5 s to create the customer, so the kill lands while the call is out.
    emulators.powercode.faults.add("createCustomer", "latency", seconds=1.5)
    first = Serve(serve_env, tmp_path)
    assert post_callback(first.url, new_order(order_ref)).status_code == 200
    wait_for(lambda: emulators.powercode.calls["createCustomer"] >= 1)
    first.kill()
    # PowerCode finishes the create although nobody is left to read the reply.
    wait_for(
        lambda: any(c.get("extAccountID") == site for c in emulators.powercode.customers.values())
    )

    second = Serve(serve_env, tmp_path)
    wait_for(lambda: len(emulators.smtp.messages) == 1, timeout=30)
    assert second.terminate() == 0  # SIGTERM: a graceful stop

    created = [c for c in emulators.powercode.customers.values() if c.get("extAccountID") == site]
    assert len(created) == 1
    customer_id = int(created[0]["customerID"])
    assert Counter(emulators.powercode.service_adds) == Counter(
        {(customer_id, 164): 1, (customer_id, 172): 1}
    )
    assert len(emulators.powercode.tickets) == 1
    assert emulators.powercode.calls["createCustomer"] == 1  # found by site id, not sent again
    assert str(emulators.smtp.messages[0]["Subject"]).endswith(f"(PC#{customer_id})")


def sqlite_rows(env: dict[str, str], query: str, *params: object) -> list[tuple[object, ...]]:
    """Rows of the service's SQLite file, read as a person with `sqlite3` would."""
    path = Path(env["DATA_DIR"]) / "utopia-handler.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        return connection.execute(query, params).fetchall()


def test_sigkill_while_powercode_holds_replies_then_restart_takes_the_work_over_at_once(
    base_env: dict[str, str], emulators: Emulators, tmp_path: Path
) -> None:
    rng = random.Random(4218)
    orders = dict(make_order(index, rng) for index in range(3))
    for ref, contract in orders.items():
        emulators.utopia.add_order(ref, contract)
    sites = {ref: contract["address"]["siteid"] for ref, contract in orders.items()}
    env = command_env(
        base_env,
        FLASK_PORT=str(free_port()),
        # Leases far longer than the wait measured below: only a takeover explains a short one.
        LEASE_SECONDS="60",
        POLL_SECONDS="0.1",
        # A PowerCode call is over 3 s after it was sent: what a taken-over create waits for.
        PC_CONNECT_TIMEOUT="1",
        PC_READ_TIMEOUT="2",
    )
    # PowerCode is slow to create the customers: the kill lands while all three calls are out.
    emulators.powercode.faults.add("createCustomer", "latency", seconds=1.5, count=len(orders))
    first = Serve(env, tmp_path)
    for ref in orders:
        assert post_callback(first.url, new_order(ref)).json()["status"] == "queued"
    wait_for(lambda: emulators.powercode.calls["createCustomer"] == len(orders))
    first.kill()
    killed = time.monotonic()

    second = Serve(env, tmp_path)  # at once: PowerCode still holds the replies
    answered = time.monotonic()
    wait_for(lambda: len(second.worker_pids()) == 1)
    mark = f"%:{second.worker_pids()[0]}:%"  # the worker runs in serve's child process

    def held_work_moves() -> bool:
        rows = sqlite_rows(
            env,
            "SELECT DISTINCT o.order_ref FROM step_attempts a JOIN orders o ON o.id = a.order_id "
            "WHERE a.worker LIKE ?",
            mark,
        )
        return len(rows) == len(orders)

    wait_for(held_work_moves, timeout=60)
    moved = time.monotonic()
    wait_for(lambda: len(emulators.smtp.messages) == len(orders), timeout=30)
    assert second.terminate() == 0
    print(
        f"\nserve restart: held work moved {moved - answered:.1f}s after /healthz answered "
        f"({moved - killed:.1f}s after the kill; leases of 60 s)"
    )
    assert moved - answered < 20  # a regression to waiting for the lease would take 60 s

    # Every order done once: one customer per site, two services each, one ticket each.
    assert sqlite_rows(env, "SELECT DISTINCT state FROM orders") == [("done",)]
    created = {
        ref: [c for c in emulators.powercode.customers.values() if c.get("extAccountID") == site]
        for ref, site in sites.items()
    }
    assert {ref: len(found) for ref, found in created.items()} == dict.fromkeys(sites, 1)
    ours = {int(found[0]["customerID"]) for found in created.values()}
    adds = Counter(emulators.powercode.service_adds)
    assert set(adds.values()) == {1}
    assert Counter(customer for customer, _ in adds) == dict.fromkeys(ours, 2)
    tickets = Counter(int(t["customerID"]) for t in emulators.powercode.tickets.values())
    assert tickets == dict.fromkeys(ours, 1)
    assert emulators.powercode.calls["createCustomer"] == len(orders)  # none sent again
    # SIGTERM gave everything back and unregistered the process.
    assert sqlite_rows(env, "SELECT count(*) FROM orders WHERE lease_owner IS NOT NULL") == [(0,)]
    assert sqlite_rows(env, "SELECT count(*) FROM workers") == [(0,)]


def test_callbacks_acknowledged_before_a_kill_are_worked_after_restart(
    serve_env: dict[str, str], emulators: Emulators, tmp_path: Path
) -> None:
    env = {**serve_env, "RUN_WORKER_IN_SERVE": "false"}  # acknowledge only, work nothing
    first = Serve(env, tmp_path)
    refs = ["UIA202611-004217", "UIA202611-004218", "UIA202611-004221"]
    for ref in refs:
        assert post_callback(first.url, new_order(ref)).json()["status"] == "queued"
    first.kill()
    second = Serve(serve_env, tmp_path)
    wait_for(lambda: len(emulators.smtp.messages) == len(refs), timeout=30)
    second.terminate()
    assert len(emulators.powercode.customers) == 3 + len(refs)


def test_serve_refuses_to_start_without_a_callback_token(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    env = command_env(base_env)
    del env["UTOPIA_CALLBACK_TOKEN"]
    result = run_cli(["serve"], env, tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "UTOPIA_CALLBACK_TOKEN" in line and "ALLOW_UNAUTHENTICATED_CALLBACKS" in line


def test_a_missing_setting_stops_start_up_with_one_line_naming_it(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    env = command_env(base_env)
    del env["PC_API_KEY"]
    result = run_cli(["check-config"], env, tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: PC_API_KEY")


def test_check_config_prints_settings_with_secrets_masked(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_cli(["check-config"], command_env(base_env), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    assert base_env["PC_API_KEY"] not in result.stdout
    assert CALLBACK_TOKEN not in result.stdout and SECRET_KEY not in result.stdout
    assert "********" in result.stdout


def test_orders_commands_show_and_retry(
    serve_env: dict[str, str], emulators: Emulators, tmp_path: Path
) -> None:
    server = Serve(serve_env, tmp_path)
    post_callback(server.url, new_order("UIA202611-004219"))  # unmapped plan: waits for a person
    wait_for(lambda: len(emulators.smtp.messages) == 1)
    server.terminate()
    listing = run_cli(["orders", "list", "--state", "waiting"], serve_env, tmp_path)
    assert "UIA202611-004219" in listing.stdout and "WAITING FOR A PERSON" in listing.stdout
    story = run_cli(["orders", "show", "UIA202611-004219"], serve_env, tmp_path)
    assert "'2 Gbps' has no PowerCode service mapping" in story.stdout
    assert "e-mail held: sent" in story.stdout
    retried = run_cli(["orders", "retry", "UIA202611-004219"], serve_env, tmp_path)
    assert retried.returncode == 0 and "queued again at step choose_plans" in retried.stdout
    missing = run_cli(["orders", "retry", "UIA000000-000000"], serve_env, tmp_path)
    assert missing.returncode == 1 and "no order" in missing.stderr


def test_demo_runs_and_reports_every_order(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k in CHILD_ENV_KEYS}
    result = run_cli(["demo", "--once", "--port", "0"], env, tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "UIA202611-004217     done" in out
    assert "UIA202611-004219     WAITING FOR A PERSON" in out
    assert "UIA202611-004220     duplicate customer" in out
    assert "UIA202611-999999     not ours" in out
    assert "created without geocoding" in out
    assert "create_ticket    attempt 1: retry" in out
    assert "[attached: UIA202611-004217.pdf]" in out
    # The order whose callback never comes: found by reconciliation after the baseline.
    assert "first run, the baseline: the 5 orders UTOPIA lists already are recorded" in out
    assert "UIA202611-004223     done" in out
    assert "found by reconciliation; no callback received" in out
    assert "found, no callback: UIA202611-004223" in out
    assert "Missed UTOPIA orders found - 1 order with no callback" in out
    # The demo's routing table sends staff the one routed message; the other is only stored.
    assert "callback 'Project Cancelled' -> routed" in out
    assert 'UTOPIA message "Project Cancelled" - Order UIA202611-004218' in out
    assert "callback 'Project Install Scheduled' -> not_handled" in out
    assert "Traceback" not in out + result.stderr


def test_risky_settings_are_allowed_but_warned_about_at_start(
    serve_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**serve_env, "PC_VERIFY_SSL": "false", "ALLOW_UNAUTHENTICATED_CALLBACKS": "true"}
    del env["UTOPIA_CALLBACK_TOKEN"]
    server = Serve(env, tmp_path)
    assert (
        httpx.post(
            f"{server.url}/api-callback", json=new_order("UIA202611-000001"), timeout=5
        ).status_code
        == 200
    )
    assert server.terminate() == 0
    output = (tmp_path / f"serve-{server.port}.out").read_text()
    assert "WITHOUT authentication" in output
    assert "NOT verified (PC_VERIFY_SSL=false)" in output


def test_sqlite_runs_in_wal_mode_with_full_sync(runtime: object) -> None:
    from sqlalchemy import text

    from utopia_handler.runtime import Runtime

    assert isinstance(runtime, Runtime)
    with runtime.store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_emulate_command_serves_the_stand_ins(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    env = {k: v for k, v in os.environ.items() if k in CHILD_ENV_KEYS}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "utopia_handler",
            "emulate",
            "--powercode-port",
            str(ports[0]),
            "--utopia-port",
            str(ports[1]),
            "--smtp-port",
            str(ports[2]),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        assert f"PC_URL=http://127.0.0.1:{ports[0]}" in "".join(lines)
        answer = httpx.post(
            f"http://127.0.0.1:{ports[1]}/spquery/contractlookup",
            json={"apikey": "utopia-demo-key", "orderref": "UIA202611-004217"},
            timeout=5,
        )
        assert answer.json()["address"]["siteid"] == "204817"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        if process.stdout is not None:
            process.stdout.close()
