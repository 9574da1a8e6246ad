"""Child processes for the tests: the real `utopia-handler` commands, each in its own session.

Every child gets its own process group, so a test that fails half-way still ends gunicorn's
forked workers along with their master (`ProcessGroup.kill_all`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import CHILD_ENV_KEYS, wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command_env(base_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The settings as a child process's whole environment (nothing else leaks in)."""
    keep = {k: v for k, v in os.environ.items() if k in CHILD_ENV_KEYS}
    return {**keep, **base_env, **extra}


class Child:
    """One `python -m utopia_handler ARGS` process, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, label: str) -> None:
        self.label = label
        self.output = cwd / f"{label}.out"
        with self.output.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "utopia_handler", *args],
                env=env,
                cwd=cwd,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def tail(self, lines: int = 30) -> str:
        text = self.output.read_text(errors="replace") if self.output.exists() else ""
        return f"--- {self.label} ---\n" + "\n".join(text.splitlines()[-lines:])


class WebChild(Child):
    """`utopia-handler web` (gunicorn) on its own port."""

    def __init__(self, env: dict[str, str], cwd: Path, label: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(["web"], {**env, "FLASK_PORT": str(self.port)}, cwd, label)

    def healthy(self) -> bool:
        assert self.alive(), self.tail()
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


class ProcessGroup:
    """The children a test started; whatever is still running at the end is killed."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def add(self, child: Child) -> Child:
        self.children.append(child)
        return child

    def tails(self) -> str:
        return "\n".join(child.tail() for child in self.children)

    def wait_healthy(self, webs: list[WebChild], timeout: float = 60) -> None:
        try:
            wait_for(lambda: all(web.healthy() for web in webs), timeout=timeout)
        except AssertionError:
            raise AssertionError("web processes did not become healthy\n" + self.tails()) from None

    def kill_all(self) -> None:
        for child in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(10)
