"""A stand-in for `systemctl` that runs the real unit files' commands as plain processes.

It reads deploy/systemd/<unit>.service (ExecStart, WorkingDirectory, Environment,
EnvironmentFile), maps the production paths to the test's (UH_ROOT, UH_STATE_DIR, UH_ENV_FILE),
and starts, stops and reports units the way systemd would for the deploy script. Every call is
appended to $FAKE_SYSTEMD_DIR/calls.log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ["FAKE_SYSTEMD_DIR"])
UNIT_DIR = Path(os.environ["FAKE_UNIT_DIR"])
PATHS = {
    "/opt/utopia-handler": os.environ["UH_ROOT"],
    "/var/lib/utopia-handler": os.environ["UH_STATE_DIR"],
    "/etc/utopia-handler/env": os.environ["UH_ENV_FILE"],
}


def mapped(value: str) -> str:
    for production, test in PATHS.items():
        value = value.replace(production, test)
    return value


def unit_file(unit: str) -> dict[str, list[str]]:
    name = unit if unit.endswith(".service") else f"{unit}.service"
    entries: dict[str, list[str]] = {}
    for line in (UNIT_DIR / name).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            entries.setdefault(key.strip(), []).append(mapped(value.strip()))
    return entries


def read_environment_file(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


def pid_file(unit: str) -> Path:
    return STATE / f"{unit}.pid"


def running_pid(unit: str) -> int | None:
    try:
        pid = int(pid_file(unit).read_text())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # Field 3 is the state; a zombie has exited, it only waits to be reaped.
    return None if stat.rsplit(")", 1)[1].split()[0] == "Z" else pid


def start(unit: str) -> None:
    if running_pid(unit) is not None:
        return
    entries = unit_file(unit)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    for assignment in entries.get("Environment", []):
        key, _, value = assignment.partition("=")
        env[key] = value
    for path in entries.get("EnvironmentFile", []):
        env.update(read_environment_file(path))  # as in systemd, the file wins
    command = entries["ExecStart"][0].split()
    with (STATE / f"{unit}.out").open("ab") as output:
        process = subprocess.Popen(
            command,
            cwd=entries.get("WorkingDirectory", ["/"])[0],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file(unit).write_text(str(process.pid))


def stop(unit: str) -> None:
    pid = running_pid(unit)
    if pid is None:
        return
    os.killpg(pid, signal.SIGTERM)  # KillMode=mixed sends it to the main process; close enough
    deadline = time.monotonic() + 30
    while running_pid(unit) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if running_pid(unit) is not None:
        os.killpg(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    with (STATE / "calls.log").open("a") as log:
        log.write(" ".join(argv) + "\n")
    verb, units = argv[0], [a for a in argv[1:] if not a.startswith("-")]
    if verb == "daemon-reload":
        return 0
    if verb == "is-active":
        active = all(running_pid(unit) is not None for unit in units)
        if "--quiet" not in argv:
            print("active" if active else "inactive")
        return 0 if active else 3
    for unit in units:
        if verb in ("stop", "restart"):
            stop(unit)
        if verb in ("start", "restart"):
            start(unit)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
