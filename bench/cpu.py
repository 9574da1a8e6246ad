"""Where the CPU of a benchmark run went: the product, the stand-ins, the load generator, others.

Each part is its own process (tree), read from /proc/PID/stat (utime + stime, and the children it
has reaped), and the load generator is this process (`resource.getrusage`). The machine's total
busy time (/proc/stat) shows what the rest of the machine used meanwhile: on a shared machine
that is the noise in the figures beside it.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return text.rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    pids: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return pids
    for task in tasks:
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, its live descendants and the children it has reaped."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # Fields 14-17 of the man page (utime, stime, cutime, cstime), here from index 11.
    own = sum(int(value) for value in fields[11:15]) / _TICK
    return own + sum(tree_cpu_seconds(child) for child in _children(pid))


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (everything in /proc/stat but idle and iowait)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    # guest time is counted in user already.
    return (sum(values[:8]) - idle) / _TICK


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSplit:
    """CPU seconds per part over one measured span, and its wall time."""

    product: float
    stand_ins: float
    load_generator: float
    others: float
    wall: float

    def cells(self, orders: int) -> dict[str, str]:
        """Table cells: seconds and share of each part, and the product's CPU per order."""
        total = self.product + self.stand_ins + self.load_generator + self.others
        share = {
            "product": self.product,
            "stand-ins": self.stand_ins,
            "load generator": self.load_generator,
            "rest of machine": self.others,
        }
        text = ", ".join(
            f"{name} {seconds:.1f} s ({seconds / total:.0%})" if total else f"{name} -"
            for name, seconds in share.items()
        )
        return {
            "CPU split": text,
            "product CPU/order ms": f"{self.product / orders * 1000:.1f}" if orders else "-",
            "product busy": f"{self.product / self.wall:.0%} of a core" if self.wall else "-",
        }


class CpuMeter:
    """Reads the parts' CPU at `start()` and `stop()`; the difference is the run's `CpuSplit`."""

    def __init__(self, product_pid: int, stand_ins_pid: int) -> None:
        self.product_pid = product_pid
        self.stand_ins_pid = stand_ins_pid
        self._start: tuple[float, float, float, float] | None = None
        self._started_at = 0.0

    def _read(self) -> tuple[float, float, float, float]:
        return (
            tree_cpu_seconds(self.product_pid),
            tree_cpu_seconds(self.stand_ins_pid),
            self_cpu_seconds(),
            machine_busy_seconds(),
        )

    def start(self, now: float) -> None:
        self._start = self._read()
        self._started_at = now

    def stop(self, now: float) -> CpuSplit:
        assert self._start is not None, "start() first"
        end = self._read()
        product, stand_ins, generator, machine = (
            b - a for a, b in zip(self._start, end, strict=True)
        )
        others = max(0.0, machine - product - stand_ins - generator)
        return CpuSplit(product, stand_ins, generator, others, now - self._started_at)
