"""`serve` runs its worker in a child process: started, woken, restarted and stopped with it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.conftest import new_order, post_callback, wait_for
from tests.test_processes import Serve, command_env, free_port, sqlite_rows
from utopia_handler.emulators import Emulators


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet collected, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_serve_runs_its_worker_in_a_child_that_is_restarted_when_it_dies(
    base_env: dict[str, str], emulators: Emulators, tmp_path: Path
) -> None:
    env = command_env(base_env, FLASK_PORT=str(free_port()), LEASE_SECONDS="2")
    serve = Serve(env, tmp_path)
    wait_for(lambda: len(serve.worker_pids()) == 1)
    [first] = serve.worker_pids()
    assert os.getpgid(first) == os.getpgid(serve.process.pid)  # one process group
    assert post_callback(serve.url, new_order("UIA202611-004217")).json()["status"] == "queued"
    wait_for(lambda: len(emulators.smtp.messages) == 1, timeout=30)
    # The worker registered under its own pid, not serve's.
    assert sqlite_rows(env, "SELECT pid FROM workers") == [(first,)]

    os.kill(first, signal.SIGKILL)
    wait_for(lambda: serve.worker_pids() not in ([], [first]), timeout=20)
    [second] = serve.worker_pids()
    assert second != first and not alive(first)
    assert post_callback(serve.url, new_order("UIA202611-004218")).json()["status"] == "queued"
    wait_for(lambda: len(emulators.smtp.messages) == 2, timeout=30)

    assert serve.terminate() == 0
    assert not alive(second)  # stopped with serve, after giving back what it held
    assert sqlite_rows(env, "SELECT count(*) FROM workers") == [(0,)]
    assert sqlite_rows(env, "SELECT count(*) FROM orders WHERE lease_owner IS NOT NULL") == [(0,)]


def test_a_new_order_wakes_the_worker_child_at_once(
    base_env: dict[str, str], emulators: Emulators, tmp_path: Path
) -> None:
    # The worker looks for work on its own only every 120 s: only the wake-up explains a start.
    env = command_env(base_env, FLASK_PORT=str(free_port()), POLL_SECONDS="120")
    serve = Serve(env, tmp_path)
    wait_for(lambda: len(serve.worker_pids()) == 1)
    wait_for(lambda: bool(sqlite_rows(env, "SELECT count(*) FROM workers")[0][0]), timeout=20)
    time.sleep(1)  # past the worker's first look at start
    assert post_callback(serve.url, new_order("UIA202611-004221")).json()["status"] == "queued"
    wait_for(lambda: len(emulators.smtp.messages) == 1, timeout=30)
    assert serve.terminate() == 0


def test_sigint_stops_serve_and_its_worker_cleanly(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    env = command_env(base_env, FLASK_PORT=str(free_port()))
    serve = Serve(env, tmp_path)
    wait_for(lambda: len(serve.worker_pids()) == 1)
    [child] = serve.worker_pids()
    serve.process.send_signal(signal.SIGINT)  # Ctrl-C
    assert serve.process.wait(60) == 0
    serve.log.close()
    assert not alive(child)
    assert sqlite_rows(env, "SELECT count(*) FROM workers") == [(0,)]


def test_a_killed_serve_takes_its_worker_child_along(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    env = command_env(base_env, FLASK_PORT=str(free_port()))
    serve = Serve(env, tmp_path)
    wait_for(lambda: len(serve.worker_pids()) == 1)
    [child] = serve.worker_pids()
    serve.kill()
    # No worker left behind holding leases: the next serve's worker takes its work over at once.
    wait_for(lambda: not alive(child), timeout=10)


def test_the_worker_child_follows_the_log_file_serve_rotates(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    log_file = tmp_path / "data" / "api_class.log"  # LOG_FILE's default in DATA_DIR
    env = command_env(base_env, FLASK_PORT=str(free_port()))
    serve = Serve(env, tmp_path)
    wait_for(lambda: log_file.exists() and "worker.started" in log_file.read_text())
    # What serve's own rotation does when the file is full: move it aside, then write anew.
    rotated = log_file.rename(log_file.with_name("api_class.log.1"))
    assert serve.terminate() == 0
    # The child appended to the file at the path, not to the one moved aside under it.
    assert "worker.stopped" in log_file.read_text()
    assert "worker.stopped" not in rotated.read_text()
