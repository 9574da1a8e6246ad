"""Who this process is (host, pid, start time), and whether a process of this machine is gone.

A pid alone names no process: pids are reused, and in a container every start may get the same
one. A pid with its process's start time does. On Linux the start time is field 22 of
/proc/<pid>/stat (clock ticks after boot), and the pid table a pid belongs to is named by the boot
id and the pid namespace: a process judged from here is one this process can see, never one on
another machine that shares the host name, nor one in another container. Elsewhere on POSIX this
process's start time is the wall clock when it first asked, and another process is only seen gone
when its pid is free.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessIdentity:
    """One process, told apart from any later process that gets the same pid."""

    host: str
    pid: int
    started: str  # start time: clock ticks after boot on Linux, else wall-clock seconds ("t...")
    pid_space: str  # "<boot id>/<pid namespace>" on Linux: whose pids these are; "" elsewhere


def this_process() -> ProcessIdentity:
    """The identity of the calling process."""
    return _identity(os.getpid())  # keyed by pid: a forked child is a process of its own


@functools.cache
def _identity(pid: int) -> ProcessIdentity:
    stat = _proc_stat(pid)
    started = stat[1] if stat is not None else f"t{time.time():.6f}"
    return ProcessIdentity(socket.gethostname(), pid, started, _pid_space())


def is_gone(other: ProcessIdentity) -> bool:
    """True when `other` ran on this machine and runs no more; False when alive or not knowable."""
    me = this_process()
    if os.name != "posix" or other.host != me.host or other.pid_space != me.pid_space:
        return False  # another machine or container: only its leases' expiry can tell
    if other.pid == me.pid:
        return other.started != me.started
    try:
        os.kill(other.pid, 0)  # signal 0: nothing is sent, the kernel only checks the pid
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    if not me.pid_space:
        return False  # alive, and its start time cannot be read here
    stat = _proc_stat(other.pid)
    if stat is None:
        return False  # hidden from us (/proc mounted with hidepid), or gone a moment ago
    state, started = stat
    # A zombie has died and waits for its parent to collect its exit status.
    return state in ("Z", "X") or started != other.started


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) from /proc/<pid>/stat, or None where unreadable."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Field 2, the command name, is in parentheses and may hold spaces and parentheses itself.
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]  # fields 3 (state) and 22 (starttime)


def _pid_space() -> str:
    try:
        boot_id = (_PROC / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(_PROC / "self/ns/pid")
    except OSError:
        return ""
    return f"{boot_id}/{namespace}"
