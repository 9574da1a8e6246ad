"""A small asyncio HTTP/1.1 load generator: keep-alive connections, pre-built requests.

Two shapes:
- open loop at a fixed offered rate: request i is due at start + i/rate, and its latency counts
  from that due time, so a slow server cannot hide its queueing (no coordinated omission);
- closed loop at saturation: C connections send back to back for a fixed time.

It measures its own CPU time, so the report can show it was not the bottleneck.
"""

from __future__ import annotations

import asyncio
import itertools
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0  # 2xx answers
    other: dict[int, int] = field(default_factory=dict)  # status -> count
    errors: int = 0  # connection failures
    latencies: list[float] = field(default_factory=list)  # seconds, 2xx only
    elapsed: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time during the run

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def cpu_share(self) -> float:
        """The generator's CPU use as a share of one core."""
        return self.cpu_seconds / self.elapsed if self.elapsed else 0.0


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> int:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        await self.writer.drain()
        return await _read_response(self.reader)

    def drop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _one(conn: _Connection, request: bytes, result: LoadResult, started: float) -> None:
    result.sent += 1
    try:
        status = await conn.exchange(request)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        result.errors += 1
        conn.drop()
        return
    if 200 <= status < 300:
        result.ok += 1
        result.latencies.append(time.perf_counter() - started)
    else:
        result.other[status] = result.other.get(status, 0) + 1


async def open_loop(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    rate: float,
    seconds: float,
    connections: int = 64,
) -> LoadResult:
    """Offer `rate` requests per second for `seconds`, whatever the server's pace."""
    result = LoadResult()
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(_Connection(host, port))
    tasks: set[asyncio.Task[None]] = set()
    cpu0, start = _cpu(), time.perf_counter()
    total = int(rate * seconds)

    async def send(index: int, due: float) -> None:
        conn = await idle.get()
        try:
            await _one(conn, make_request(index), result, due)
        finally:
            idle.put_nowait(conn)

    for index in range(total):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(index, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - start
    result.cpu_seconds = _cpu() - cpu0
    while not idle.empty():
        idle.get_nowait().drop()
    return result


async def closed_loop(
    host: str, port: int, make_request: Callable[[int], bytes], connections: int, seconds: float
) -> LoadResult:
    """`connections` clients send back to back for `seconds`: the server's saturation rate."""
    result = LoadResult()
    counter = itertools.count()
    cpu0, start = _cpu(), time.perf_counter()
    stop_at = start + seconds

    async def client() -> None:
        conn = _Connection(host, port)
        while time.perf_counter() < stop_at:
            await _one(conn, make_request(next(counter)), result, time.perf_counter())
        conn.drop()

    await asyncio.gather(*(client() for _ in range(connections)))
    result.elapsed = time.perf_counter() - start
    result.cpu_seconds = _cpu() - cpu0
    return result
