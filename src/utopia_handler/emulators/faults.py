"""Scripted failures for the emulators: what goes wrong, on which call, how many times."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Every kind of fault an emulator understands (each emulator accepts a subset).
ALL_KINDS: frozenset[str] = frozenset(
    {"latency", "fail", "timeout", "drop_before", "drop_after_apply", "reject", "outage"}
)

#: How long a ``timeout`` fault holds the connection when no ``seconds`` are given.
DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass
class Fault:
    """One scripted failure; ``count`` is the number of uses left (None = forever)."""

    kind: str
    count: int | None = 1
    seconds: float = 0.0
    status: int = 503
    retry_after: float | None = None
    status_code: int | None = None
    message: str | None = None
    #: For an ``outage``: the ``time.monotonic()`` at which it ends (it lasts until then).
    until: float | None = None

    def remaining(self) -> float:
        """Seconds an outage still lasts (0 for other kinds)."""
        return 0.0 if self.until is None else max(0.0, self.until - time.monotonic())

    def retry_after_header(self) -> str | None:
        """The Retry-After to send: the scripted one, or what is left of an outage."""
        if self.retry_after is not None:
            # Whole seconds as HTTP wants; fractions are kept so tests can stay fast.
            return f"{self.retry_after:g}"
        if self.until is not None:
            return str(max(1, math.ceil(self.remaining())))
        return None


class FaultPlan:
    """A thread-safe, ordered list of faults keyed by target (an action, endpoint or ``*``)."""

    def __init__(self, kinds: Iterable[str] = ALL_KINDS) -> None:
        self._kinds = frozenset(kinds)
        unknown = self._kinds - ALL_KINDS
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self._lock = threading.Lock()
        self._faults: list[tuple[str, Fault]] = []

    @property
    def kinds(self) -> frozenset[str]:
        """The fault kinds this plan accepts."""
        return self._kinds

    def add(
        self,
        target: str,
        kind: str,
        *,
        count: int | None = 1,
        seconds: float = 0.0,
        status: int = 503,
        retry_after: float | None = None,
        status_code: int | None = None,
        message: str | None = None,
    ) -> None:
        """Queue a fault for ``target``; raises ValueError on an unknown kind or bad numbers.

        An ``outage`` is time-based: from now until ``seconds`` have passed every call to
        ``target`` fails (``count`` is ignored).
        """
        if kind not in self._kinds:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(self._kinds)}")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1, or None for forever")
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        if not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        if kind == "timeout" and seconds == 0:
            seconds = DEFAULT_TIMEOUT_SECONDS
        until = None
        if kind == "outage":
            if seconds <= 0:
                raise ValueError("an outage needs seconds above 0")
            count, until = None, time.monotonic() + seconds
        fault = Fault(
            kind=kind,
            count=count,
            seconds=float(seconds),
            status=status,
            retry_after=retry_after,
            status_code=status_code,
            message=message,
            until=until,
        )
        with self._lock:
            self._faults.append((target, fault))

    def take(self, target: str, *also: str, kinds: frozenset[str] | None = None) -> Fault | None:
        """Use up one go of the first fault for ``target`` (or ``*``) and return a copy of it.

        ``also`` names more targets that count as a match (e.g. a method-specific one);
        ``kinds`` limits the match to those fault kinds. An outage under way wins over the
        queue, because while it lasts nothing gets through.
        """
        targets = {target, *also, "*"}
        now = time.monotonic()
        with self._lock:
            # Outages that are over are forgotten; one still running answers every call.
            self._faults = [(t, f) for t, f in self._faults if f.until is None or f.until > now]
            matching = [
                (index, fault)
                for index, (fault_target, fault) in enumerate(self._faults)
                if fault_target in targets and (kinds is None or fault.kind in kinds)
            ]
            for _, fault in matching:
                if fault.until is not None:
                    return dataclasses.replace(fault)
            if not matching:
                return None
            index, fault = matching[0]
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    del self._faults[index]
            return dataclasses.replace(fault)

    def clear(self) -> None:
        """Forget every queued fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        """The queued faults as plain dicts, in the order they would be taken."""
        with self._lock:
            return [
                {"target": target, **dataclasses.asdict(fault)} for target, fault in self._faults
            ]

    def add_from_json(self, payload: object) -> None:
        """Queue a fault described by a JSON object (the control endpoint's body)."""
        if not isinstance(payload, dict):
            raise ValueError("expected a JSON object")
        target = payload.get("target", "*")
        kind = payload.get("kind")
        if not isinstance(target, str) or not isinstance(kind, str):
            raise ValueError("target and kind must be strings")
        count = payload.get("count", 1)
        seconds = payload.get("seconds", 0.0)
        status = payload.get("status", 503)
        retry_after = payload.get("retry_after")
        status_code = payload.get("status_code")
        message = payload.get("message")
        # bool is an int subclass; refuse it so {"count": true} is not read as 1.
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise ValueError("count must be an integer or null")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ValueError("seconds must be a number")
        if isinstance(status, bool) or not isinstance(status, int):
            raise ValueError("status must be an integer")
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, int | float)
        ):
            raise ValueError("retry_after must be a number or null")
        if status_code is not None and (
            isinstance(status_code, bool) or not isinstance(status_code, int)
        ):
            raise ValueError("status_code must be an integer or null")
        if message is not None and not isinstance(message, str):
            raise ValueError("message must be a string or null")
        self.add(
            target,
            kind,
            count=count,
            seconds=float(seconds),
            status=status,
            retry_after=None if retry_after is None else float(retry_after),
            status_code=status_code,
            message=message,
        )
