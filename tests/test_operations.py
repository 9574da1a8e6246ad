"""How the product behaves as an operator runs it: `./run` passes signals on, files stay private.

`./run` is started with UTOPIA_HANDLER_VENV set to the environment running these tests, which it
uses as it is (never rebuilt or installed into).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import CHILD_ENV_KEYS, REPO, wait_for
from tests.postgres.processes import free_port

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to find the wrapper's child"),
]


def child_env(base_env: dict[str, str], **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in CHILD_ENV_KEYS}
    return {**keep, **base_env, "UTOPIA_HANDLER_VENV": sys.prefix, **extra}


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; only its parent has not read its status yet


class Wrapped:
    """`./run serve` started the way a script, a terminal or a supervisor starts it."""

    def __init__(self, env: dict[str, str], cwd: Path, *, ignore_sigint: bool = False) -> None:
        self.port = int(env["FLASK_PORT"])
        self.output = (cwd / "run.out").open("ab")

        def background_job() -> None:
            # What `./run serve &` in a non-interactive shell does: SIGINT is ignored.
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "run"), "serve"],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            preexec_fn=background_job if ignore_sigint else None,
        )
        wait_for(self.serving, timeout=60)
        [self.service_pid] = children_of(self.process.pid)

    def serving(self) -> bool:
        assert self.process.poll() is None, "./run exited early"
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop_everything(self) -> None:
        for pid in (self.service_pid, self.process.pid):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)
        self.output.close()


@pytest.mark.parametrize(
    ("signum", "ignore_sigint"),
    [(signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGINT, False)],
    ids=["SIGTERM", "SIGINT to a background job", "SIGINT to the wrapper alone"],
)
def test_run_passes_sigterm_and_sigint_on_and_waits_for_the_service(
    base_env: dict[str, str], tmp_path: Path, signum: int, ignore_sigint: bool
) -> None:
    env = child_env(base_env, FLASK_PORT=str(free_port()))
    wrapped = Wrapped(env, tmp_path, ignore_sigint=ignore_sigint)
    try:
        assert alive(wrapped.service_pid)
        os.kill(wrapped.process.pid, signum)  # to the wrapper alone, as `kill` or systemd does
        code = wrapped.process.wait(60)
        # The wrapper waited for the service: both are gone, and the service stopped gracefully.
        assert not alive(wrapped.service_pid)
        assert code == 0, (tmp_path / "run.out").read_text()[-3000:]
        assert "shutdown.done" in (tmp_path / "run.out").read_text()
    finally:
        wrapped.stop_everything()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_the_product_creates_are_private(base_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if k in CHILD_ENV_KEYS},
        **base_env,
        "DATA_DIR": str(data),
    }
    loose = os.umask(0o022)  # a usual login umask: group and others may read new files
    try:
        for args in (["db", "upgrade"], ["db", "backup", str(tmp_path / "backups" / "b.db")]):
            result = subprocess.run(
                [sys.executable, "-m", "utopia_handler", *args],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stderr
        port = free_port()
        serve = subprocess.Popen(
            [sys.executable, "-m", "utopia_handler", "serve"],
            env={**env, "FLASK_PORT": str(port)},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: (data / "api_class.log").exists(), timeout=30)
            time.sleep(0.5)
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(30)
    finally:
        os.umask(loose)

    assert mode(data) == 0o700
    assert mode(data / "utopia-handler.db") == 0o600
    assert mode(data / "api_class.log") == 0o600
    assert mode(tmp_path / "backups") == 0o700
    assert mode(tmp_path / "backups" / "b.db") == 0o600
    for extra in data.glob("utopia-handler.db-*"):  # SQLite's WAL and shared-memory files
        assert mode(extra) == 0o600, extra


def test_the_systemd_units_create_private_files_too() -> None:
    for unit in (REPO / "deploy" / "systemd").glob("*.service"):
        text = unit.read_text()
        assert "UMask=0077" in text, unit.name
        if "StateDirectory=" in text:
            assert "StateDirectoryMode=0700" in text, unit.name
