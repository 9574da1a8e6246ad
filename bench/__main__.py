"""`./run bench`: measure acknowledgement, end-to-end time, how cost grows with the orders stored,
and footprint; print and record them.

    ./run bench            the full run (about 20 minutes), writes BENCHMARKS.md
    ./run bench --smoke    a short run for CI: prints the table, asserts nothing, writes nothing

Every figure comes from this machine in this run, side by side with its ceiling measured in the
same run: a no-op endpoint on the same server (the web stack's ceiling) and a bare durable commit
loop (the disk's ceiling).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from bench import growth
from bench.cpu import CpuMeter
from bench.loadgen import LoadResult, build_request, closed_loop, open_loop

ROOT = Path(__file__).resolve().parents[1]
ADMIN_PG = "postgresql://postgres@127.0.0.1:5432/test"
TOKEN = "bench-callback-token-" + secrets.token_hex(8)


@dataclass
class Profile:
    steady_seconds: float
    saturation_seconds: float
    rate: float
    connections: int
    e2e_orders: int
    e2e_orders_serial: int
    latency: float
    concurrencies: tuple[int, ...]
    databases: tuple[str, ...]
    models: tuple[str, ...]
    growth_sizes: tuple[int, ...] = growth.FULL_SIZES
    growth_repeats: int = 9
    backlog: int = 300  # orders queued before the acknowledgement is measured with a busy worker


FULL = Profile(
    10, 10, 200, 32, 500, 100, 0.05, (1, 4, 16), ("sqlite", "postgresql"), ("serve", "web")
)
SMOKE = Profile(
    2, 2, 100, 16, 40, 10, 0.01, (4,), ("sqlite",), ("serve",), growth.SMOKE_SIZES, 3, backlog=30
)


@dataclass
class Row:
    section: str
    cells: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of one process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# Outside stand-ins ---------------------------------------------------------------------------


class StandIns:
    """`utopia-handler emulate` in its own process, so it takes no CPU from the load generator."""

    def __init__(self, latency: float, workdir: Path) -> None:
        self.ports = [free_port() for _ in range(3)]
        self.log = (workdir / f"emulate-{self.ports[0]}.out").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "utopia_handler", "emulate", "--latency", str(latency),
             "--powercode-port", str(self.ports[0]), "--utopia-port", str(self.ports[1]),
             "--smtp-port", str(self.ports[2])],
            stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=workdir,
        )  # fmt: skip
        self.env: dict[str, str] = {}
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.strip()
            if line.startswith("Seeded orders"):
                break
            if "=" in line:
                name, value = line.split("=", 1)
                self.env[name] = value
        self.powercode = self.env["PC_URL"]
        self.utopia = self.env["UTOPIA_URL_ENDPOINT"]

    def add_orders(self, count: int) -> list[str]:
        import random

        from utopia_handler.emulators.seed import make_order

        rng = random.Random(7)  # made-up data, not security
        refs = []
        with httpx.Client(timeout=10) as client:
            for index in range(count):
                ref, contract = make_order(index, rng)
                client.post(
                    f"{self.utopia}/_emulator/orders", json={"orderref": ref, "contract": contract}
                ).raise_for_status()
                refs.append(ref)
        return refs

    def calls(self) -> int:
        total = 0
        with httpx.Client(timeout=10) as client:
            for url in (self.powercode, self.utopia):
                state = client.get(f"{url}/_emulator/state").json()
                total += sum(int(v) for k, v in state["calls"].items() if not k.startswith("_"))
        return total

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()


# Databases ---------------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str | None]:
    """A fresh database URL of the given kind; None when PostgreSQL does not answer."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    import psycopg

    name = "utopia_bench_" + secrets.token_hex(4)
    try:
        admin = psycopg.connect(ADMIN_PG, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        yield None
        return
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def disk_ceiling(kind: str, url: str, seconds: float) -> float:
    """Durable commits per second with nothing else in the way: the ceiling of the store."""
    body = json.dumps(
        {"event": "Project Update", "orderref": "UIA202611-000000", "msg": "Project New Order"}
    )
    count, stop_at = 0, time.perf_counter() + seconds
    if kind == "sqlite":
        path = url.removeprefix("sqlite:///") + ".ceiling"
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, ref TEXT, body TEXT)"
        )
        start = time.perf_counter()
        while time.perf_counter() < stop_at:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO t (ref, body) VALUES (?, ?)", (f"R{count}", body))
            connection.execute("COMMIT")
            count += 1
        connection.close()
        return count / (time.perf_counter() - start)
    import psycopg

    # PostgreSQL commits from several connections share one flush: 8 writers, like the web threads.
    counts = [0] * 8
    with psycopg.connect(url, autocommit=True) as setup:
        setup.execute(
            "CREATE TABLE IF NOT EXISTS ceiling (id serial PRIMARY KEY, ref text, body text)"
        )

    def writer(slot: int) -> None:
        with psycopg.connect(url, autocommit=True) as connection:
            while time.perf_counter() < stop_at:
                connection.execute(
                    "INSERT INTO ceiling (ref, body) VALUES (%s, %s)", (f"R{slot}", body)
                )
                counts[slot] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


# The service -------------------------------------------------------------------------------


class Target:
    """The service as a child process, in the `serve` or the `web` process model."""

    def __init__(self, model: str, env: dict[str, str], workdir: Path) -> None:
        self.port = int(env["FLASK_PORT"])
        self.log = (workdir / f"{model}-{self.port}.out").open("w")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.target", model], env=env, cwd=ROOT,
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.startup_seconds = self._wait_ready(started)

    def _wait_ready(self, started: float) -> float:
        deadline = started + 60
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited early; see {self.log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            time.sleep(0.01)
        raise RuntimeError("the service did not become ready in 60 s")

    def rss_mb(self) -> dict[str, float]:
        sizes = {"main": peak_rss_mb(self.process.pid)}
        for number, pid in enumerate(child_pids(self.process.pid), start=1):
            sizes[f"worker {number}"] = peak_rss_mb(pid)
        return sizes

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def service_env(stand_ins: StandIns, url: str, workdir: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {
        **keep,
        **stand_ins.env,
        # bench.target, and the same product code as this process.
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
        "DATABASE_URL": url,
        "DATA_DIR": str(workdir / "data"),
        "FLASK_PORT": str(free_port()),
        "SECRET_KEY": secrets.token_urlsafe(32),
        "UTOPIA_CALLBACK_TOKEN": TOKEN,
        "EMAIL_SENDER": "bench@isp.example",
        "EMAIL_RECIPIENTS": "staff@isp.example",
        # One load generator is one source address: the per-source limit would measure itself.
        "CALLBACK_RATE_LIMIT": "1000000",
        "CALLBACK_RATE_BURST": "1000000",
        # The callback path is measured; a baseline of every stand-in order at start would not be.
        "RECONCILE_ENABLED": "false",
        **extra,
    }


def callback_body(index: int, prefix: str) -> bytes:
    """A new-order callback; `prefix` is 6 digits, so the reference has UTOPIA's shape."""
    ref = f"UIA{prefix}-{index % 1_000_000:06d}"
    return json.dumps(
        {"event": "Project Update", "orderref": ref, "msg": "Project New Order"}
    ).encode()


def answer_cells(result: LoadResult, quantiles: tuple[float, ...]) -> dict[str, str]:
    """Throughput, latency percentiles, the slowest answer and the failures of one load."""
    cells = {"ok/s": f"{result.throughput:,.0f}"}
    for quantile in quantiles:
        cells[f"p{quantile * 100:g} ms"] = f"{result.percentile(quantile) * 1000:.1f}"
    cells["max ms"] = f"{max(result.latencies, default=float('nan')) * 1000:.1f}"
    failures = ", ".join(f"{n}x{code}" for code, n in sorted(result.other.items()))
    if result.errors:
        failures += f", {result.errors} errors"
    cells["not 2xx"] = failures or "0"
    return cells


def measure_acknowledgement(model: str, kind: str, profile: Profile, workdir: Path) -> list[Row]:
    rows: list[Row] = []
    with database(kind, workdir) as url:
        if url is None:
            print(f"  {kind}: PostgreSQL does not answer at 127.0.0.1:5432; skipped", flush=True)
            return rows
        ceiling = disk_ceiling(kind, url, profile.saturation_seconds)
        stand_ins = StandIns(0.0, workdir)
        target = Target(model, service_env(stand_ins, url, workdir), workdir)
        try:
            port, headers = target.port, {"X-Callback-Token": TOKEN}
            run = f"{secrets.randbelow(10_000):04d}"
            phases = {"w": "00", "no": "01", "nc": "02", "co": "03", "cc": "04"}

            def requests_for(path: str, phase: str) -> Any:
                return lambda i: build_request(
                    "127.0.0.1", port, path, callback_body(i, f"{run}{phases[phase]}"), headers
                )

            asyncio.run(
                closed_loop("127.0.0.1", port, requests_for("/bench/noop", "w"), 8, 1.0)
            )  # warm-up
            results: dict[str, LoadResult] = {}
            for path, label in (("/bench/noop", "no-op"), ("/api-callback", "callback")):
                results[f"{label} @ {profile.rate:g}/s"] = asyncio.run(
                    open_loop(
                        "127.0.0.1",
                        port,
                        requests_for(path, label[0] + "o"),
                        profile.rate,
                        profile.steady_seconds,
                    )
                )
                results[f"{label} saturated"] = asyncio.run(
                    closed_loop(
                        "127.0.0.1",
                        port,
                        requests_for(path, label[0] + "c"),
                        profile.connections,
                        profile.saturation_seconds,
                    )
                )
            rss = target.rss_mb()
        finally:
            target.stop()
            stand_ins.stop()
    noop_max = results["no-op saturated"].throughput
    for label, result in results.items():
        cells = {
            "setup": f"{model} / {kind}",
            "load": label,
            **answer_cells(result, (0.5, 0.9, 0.99)),
            "loadgen CPU": f"{result.cpu_share:.0%}",
        }
        if label == "callback saturated":
            cells["vs no-op"] = f"{result.throughput / noop_max:.0%}" if noop_max else "-"
            cells["vs disk"] = f"{result.throughput / ceiling:.0%}" if ceiling else "-"
        rows.append(Row("ack", cells))
    rows.append(Row("ceiling", {"setup": f"{kind}", "durable commits/s": f"{ceiling:,.0f}"}))
    rss_text = ", ".join(f"{name} {mb:.0f}" for name, mb in rss.items())
    rows.append(
        Row(
            "footprint",
            {
                "setup": f"{model} / {kind}",
                "ready in s": f"{target.startup_seconds:.2f}",
                "peak RSS MB": rss_text,
            },
        )
    )
    return rows


def finished_orders(url: str) -> int:
    """How many orders of the service's database are in a final state."""
    from utopia_handler.store import queries
    from utopia_handler.store.db import Store
    from utopia_handler.store.models import ACTIVE_STATES

    store = Store(url)
    try:
        with store.read() as session:
            counts = queries.count_orders_by_state(session)
    finally:
        store.close()
    return sum(n for state, n in counts.items() if state not in ACTIVE_STATES)


def measure_ack_with_busy_worker(profile: Profile, workdir: Path, kind: str) -> list[Row]:
    """Acknowledgement at the offered rate while `serve`'s worker works through a backlog."""
    with database(kind, workdir) as url:
        if url is None:
            print(f"  {kind}: PostgreSQL does not answer at 127.0.0.1:5432; skipped", flush=True)
            return []
        return _ack_with_busy_worker(profile, workdir, kind, url)


def _ack_with_busy_worker(profile: Profile, workdir: Path, kind: str, url: str) -> list[Row]:
    stand_ins = StandIns(profile.latency, workdir)
    refs = stand_ins.add_orders(profile.backlog)
    env = service_env(stand_ins, url, workdir, WORKER_CONCURRENCY="16", RETRY_BASE_SECONDS="1")
    target = Target("serve", env, workdir)
    try:
        with httpx.Client(timeout=30, headers={"X-Callback-Token": TOKEN}) as client:
            for ref in refs:
                body = {"event": "Project Update", "orderref": ref, "msg": "Project New Order"}
                client.post(
                    f"http://127.0.0.1:{target.port}/api-callback", json=body
                ).raise_for_status()
        workers = child_pids(target.process.pid)
        worker_cpu = sum(cpu_seconds(pid) for pid in workers)
        done_before = finished_orders(url)
        run = f"{secrets.randbelow(10_000):04d}"
        headers = {"X-Callback-Token": TOKEN}
        result = asyncio.run(
            open_loop(
                "127.0.0.1",
                target.port,
                lambda i: build_request(
                    "127.0.0.1", target.port, "/api-callback", callback_body(i, f"{run}05"),
                    headers,
                ),
                profile.rate,
                profile.steady_seconds,
            )
        )  # fmt: skip
        worker_cpu = sum(cpu_seconds(pid) for pid in workers) - worker_cpu
        done_during = finished_orders(url) - done_before
    finally:
        target.stop()
        stand_ins.stop()
    print(
        f"  busy worker: {done_during} backlog orders finished during the load, "
        f"p99 {result.percentile(0.99) * 1000:.1f} ms",
        flush=True,
    )
    return [
        Row(
            "busy",
            {
                "setup": f"serve / {kind}",
                "load": f"callback @ {profile.rate:g}/s",
                "backlog": f"{profile.backlog} orders, {profile.latency * 1000:g} ms stand-ins",
                "orders finished meanwhile": str(done_during),
                "worker CPU": f"{worker_cpu / result.elapsed:.0%}" if result.elapsed else "-",
                **answer_cells(result, (0.5, 0.99)),
            },
        )
    ]


def measure_end_to_end(profile: Profile, workdir: Path) -> list[Row]:
    rows: list[Row] = []
    for concurrency in profile.concurrencies:
        orders = profile.e2e_orders_serial if concurrency == 1 else profile.e2e_orders
        run_dir = workdir / f"e2e-{concurrency}"
        run_dir.mkdir()
        stand_ins = StandIns(profile.latency, run_dir)
        refs = stand_ins.add_orders(orders)
        url = f"sqlite:///{run_dir / 'e2e.db'}"
        env = service_env(
            stand_ins, url, run_dir, WORKER_CONCURRENCY=str(concurrency), POLL_SECONDS="0.2",
            RETRY_BASE_SECONDS="1",
        )  # fmt: skip
        target = Target("serve", env, run_dir)
        calls_before = stand_ins.calls()
        meter = CpuMeter(target.process.pid, stand_ins.process.pid)
        try:
            started = time.perf_counter()
            meter.start(started)
            with httpx.Client(timeout=30, headers={"X-Callback-Token": TOKEN}) as client:
                for ref in refs:
                    body = {"event": "Project Update", "orderref": ref, "msg": "Project New Order"}
                    client.post(
                        f"http://127.0.0.1:{target.port}/api-callback", json=body
                    ).raise_for_status()
            finished = wait_until_finished(run_dir / "e2e.db", orders, timeout=3600)
            elapsed = time.perf_counter() - started
            split = meter.stop(time.perf_counter())
            calls = stand_ins.calls() - calls_before
            rss = target.rss_mb()
        finally:
            target.stop()
            stand_ins.stop()
        ideal = calls * profile.latency / concurrency
        rows.append(
            Row(
                "e2e",
                {
                    "concurrency": str(concurrency),
                    "orders": str(orders),
                    "finished": str(finished),
                    "outside calls": f"{calls} ({calls / orders:.1f}/order)",
                    "time s": f"{elapsed:.1f}",
                    "ideal s": f"{ideal:.1f}",
                    "vs ideal": f"{elapsed / ideal:.2f}x" if ideal else "-",
                    "orders/s": f"{orders / elapsed:.1f}",
                    "peak RSS MB": f"{rss['main']:.0f}",
                    # The wall time per order the ideal allows, beside the CPU the product spent.
                    "ideal ms/order": f"{ideal / orders * 1000:.1f}" if orders else "-",
                    **split.cells(orders),
                },
            )
        )
        print(
            f"  end to end, concurrency {concurrency}: {elapsed:.1f} s (ideal {ideal:.1f} s); "
            f"CPU {split.cells(orders)['CPU split']}",
            flush=True,
        )
    return rows


def measure_growth(kind: str, profile: Profile, workdir: Path) -> list[Row]:
    """The growth table of one database: see bench/growth.py."""
    from utopia_handler import accounts
    from utopia_handler.store.console_models import Role
    from utopia_handler.store.db import Store
    from utopia_handler.timeutil import utcnow

    with database(kind, workdir) as url:
        if url is None:
            print(f"  {kind}: PostgreSQL does not answer at 127.0.0.1:5432; skipped", flush=True)
            return []
        store = Store(url)
        store.migrate()
        with store.write() as session:
            accounts.add_user(
                session, "bench", growth.PASSWORD, Role.VIEWER, utcnow(), actor="bench"
            )
        stand_ins = StandIns(0.0, workdir)
        env = service_env(stand_ins, url, workdir, SESSION_COOKIE_SECURE="false")
        target = Target("web", env, workdir)
        try:
            base = f"http://127.0.0.1:{target.port}"
            result = growth.run_growth(
                store, base, TOKEN, "bench", profile.growth_sizes, profile.growth_repeats
            )
        finally:
            target.stop()
            stand_ins.stop()
            store.close()
    return [Row("growth", cells) for cells in growth.rows(result, kind)]


def wait_until_finished(database: Path, orders: int, timeout: float) -> int:
    """Wait until every order is in a final state and every e-mail is sent; returns how many.

    Read with the standard library every 0.1 s, so the waiting costs the load generator little
    CPU (it is counted in the CPU split) and never takes the database's write lock.
    """
    done_query = (
        "SELECT (SELECT count(*) FROM orders WHERE state NOT IN ('received', 'in_progress')),"
        " EXISTS (SELECT 1 FROM orders WHERE state IN ('received', 'in_progress'))"
        " OR EXISTS (SELECT 1 FROM notifications WHERE state = 'pending')"
        " OR EXISTS (SELECT 1 FROM message_actions WHERE state = 'pending')"
    )
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
                done, busy = db.execute(done_query).fetchone()
        except sqlite3.Error:  # the service has not made its tables yet
            done, busy = 0, True
        if done >= orders and not busy:
            return int(done)
        time.sleep(0.1)
    return int(done)


# Report ------------------------------------------------------------------------------------


def machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        (
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        "?",
    )
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("flask", "waitress", "gunicorn", "sqlalchemy", "psycopg", "httpx")
    )
    return [
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} cores ({cpu}), {int(memory) // 1024:,} MB memory, {platform.platform()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {versions}",
    ]


def table(rows: list[Row]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row.cells if c not in columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row.cells.get(c, "") for c in columns) + " |" for row in rows]
    return lines


def render(rows: list[Row], profile: Profile, command: str) -> str:
    out = ["# Benchmarks", "", f"Made by `{command}`.", "", *machine(), ""]
    sections = {
        "ack": f"## Acknowledgement of `POST /api-callback` (each answer after a durable commit), beside the no-op ceiling\n\nOpen loop at a fixed offered rate for {profile.steady_seconds:g} s (latency counted from each request's due time), then {profile.connections} keep-alive connections back to back for {profile.saturation_seconds:g} s.",
        "busy": f"## Acknowledgement while the worker works through a backlog\n\n`serve` (the worker in its own child process) gets {profile.backlog} orders first, then callbacks offered at {profile.rate:g}/s for {profile.steady_seconds:g} s while it works on them. Worker CPU is the worker process's share of one core during the load.",
        "ceiling": "## Disk ceiling: a bare loop of durable commits (SQLite WAL with synchronous=FULL, one writer; PostgreSQL, 8 writers)",
        "e2e": f"## End to end: orders through the stand-ins, {profile.latency * 1000:g} ms per outside call\n\nIdeal = outside calls x latency / worker concurrency. The service runs as `serve` on SQLite, the stand-ins in a process of their own, and the load generator (this process) posts the callbacks, then reads the database every 0.1 s until every order and e-mail is done. CPU split: the CPU seconds of each part over the run (utime + stime of each process tree from /proc; the rest of the machine from /proc/stat: other people's work on a shared machine, the noise in these figures). Product busy = product CPU / wall time. The ideal leaves (outside calls per order x latency / concurrency) of wall time per order; once the product's CPU per order comes near it (product busy near 100 % of a core), the run is bound by the product's CPU in one interpreter rather than by waiting for the stand-ins.",
        "growth": growth.HEADING,
        "footprint": "## Footprint: start-up to a ready `/healthz`, and peak RSS of each process after the acknowledgement load",
    }
    for key, heading in sections.items():
        chosen = [r for r in rows if r.section == key]
        if chosen:
            out += [heading, "", *table(chosen), ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="./run bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a short run for CI; BENCHMARKS.md is not written"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        help="skip a part: ack, busy, e2e, growth, postgresql, web",
    )
    args = parser.parse_args(argv)
    profile = SMOKE if args.smoke else FULL
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="utopia-bench-") as tmp:
        workdir = Path(tmp)
        if "ack" not in args.skip:
            for kind in profile.databases:
                if kind in args.skip:
                    continue
                for model in profile.models:
                    if model in args.skip:
                        continue
                    print(f"acknowledgement: {model} / {kind}", flush=True)
                    part = workdir / f"ack-{model}-{kind}"
                    part.mkdir()
                    rows += measure_acknowledgement(model, kind, profile, part)
        for kind in () if "busy" in args.skip else profile.databases:
            if kind in args.skip:
                continue
            print(f"acknowledgement with the worker busy: serve / {kind}", flush=True)
            part = workdir / f"busy-{kind}"
            part.mkdir()
            rows += measure_ack_with_busy_worker(profile, part, kind)
        if "e2e" not in args.skip:
            print("end to end", flush=True)
            rows += measure_end_to_end(profile, workdir)
        if "growth" not in args.skip:
            for kind in profile.databases:
                if kind not in args.skip:
                    print(f"growth: {kind}", flush=True)
                    part = workdir / f"growth-{kind}"
                    part.mkdir()
                    rows += measure_growth(kind, profile, part)
    command = "./run bench" + (" --smoke" if args.smoke else "")
    report = render(rows, profile, command)
    print()
    print(report)
    if not args.smoke:
        args.out.write_text(report + "\n")
        print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
