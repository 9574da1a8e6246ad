"""Shared test set-up: real stand-in servers, a real SQLite file, the real service in threads."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

# Autouse for the whole session: at the end, logs and stored rows are searched for secrets and
# the fixture customers' personal data (tests/reliability/privacy_watch.py).
from tests.reliability.privacy_watch import watch_each_test, watch_session_privacy  # noqa: F401
from utopia_handler.emulators import Emulators, start_emulators
from utopia_handler.runtime import Runtime, build_runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.settings import Settings, load_settings
from utopia_handler.store import queries
from utopia_handler.store.models import Order
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

REPO = Path(__file__).resolve().parents[1]
# Captured-shape payloads with made-up people: tests/fixtures/README.md.
FIXTURES = REPO / "tests" / "fixtures"

# All a child process (`python -m utopia_handler ...`) inherits besides its settings: enough to
# find programs and the same code as the tests (PYTHONPATH, when ./run or a person set it).
CHILD_ENV_KEYS = ("PATH", "HOME", "LANG", "SYSTEMROOT", "PYTHONPATH")

CALLBACK_TOKEN = "test-callback-token-5f1c9a7e"
SECRET_KEY = "test-secret-key-0b7d2e94c1a8f366"


class ManualClock:
    """A clock the test moves by hand, for retries and deadlines without sleeping."""

    def __init__(self) -> None:
        # Ahead of the wall clock, so work stored "now" by the test is due even on a slow machine.
        self.now = utcnow() + timedelta(minutes=10)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def emulators() -> Iterator[Emulators]:
    running = start_emulators(seed=True)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def base_env(emulators: Emulators, tmp_path: Path) -> dict[str, str]:
    """Settings that point the service at the stand-ins, with a fresh SQLite file."""
    return {
        **emulators.env(),
        "DATA_DIR": str(tmp_path / "data"),
        "SECRET_KEY": SECRET_KEY,
        "UTOPIA_CALLBACK_TOKEN": CALLBACK_TOKEN,
        "EMAIL_SENDER": "handler@isp.example",
        "EMAIL_RECIPIENTS": "staff@isp.example,noc@isp.example",
        "TICKET_TEMPLATE_DIR": str(tmp_path / "ticket_descriptions"),
        "UTOPIA_READ_TIMEOUT": "2",
        "PC_READ_TIMEOUT": "2",
        "MAIL_TIMEOUT": "2",
        "RETRY_BASE_SECONDS": "1",
        "RETRY_MAX_SECONDS": "60",
        "POLL_SECONDS": "0.05",
        # A worker would reconcile at start and record the seeded orders as known (the
        # baseline); tests of reconciliation turn it on (tests/test_reconcile.py).
        "RECONCILE_ENABLED": "false",
    }


@pytest.fixture
def make_settings(base_env: dict[str, str], tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: str | None) -> Settings:
        """Settings with some variables changed; None removes a variable."""
        environ = {**base_env, **overrides}
        return load_settings(
            {k: v for k, v in environ.items() if v is not None}, dotenv_path=tmp_path / "no.env"
        )

    return build


@pytest.fixture
def make_runtime(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Runtime]]:
    built: list[Runtime] = []

    def build(**overrides: str | None) -> Runtime:
        runtime = build_runtime(make_settings(**overrides))
        runtime.store.migrate()
        built.append(runtime)
        return runtime

    yield build
    for runtime in built:
        runtime.close()


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def worker(runtime: Runtime, clock: ManualClock) -> Worker:
    """A worker driven inline by the test (`run_until_idle`), on a clock the test controls."""
    return Worker(runtime, name="test-worker", clock=clock)


@pytest.fixture
def service(runtime: Runtime) -> Iterator[ServiceHandle]:
    """The real service (waitress + background worker) on a free port."""
    handle = ServiceHandle(runtime, port=0).start()
    try:
        yield handle
    finally:
        handle.stop()


def post_callback(
    url: str, body: Any, *, token: str | None = CALLBACK_TOKEN, **kwargs: Any
) -> httpx.Response:
    params = {"token": token} if token is not None else {}
    return httpx.post(f"{url}/api-callback", params=params, json=body, timeout=10, **kwargs)


def load_fixture(name: str) -> Any:
    """The decoded JSON of a payload fixture such as "utopia/contractlookup__signed_250.json"."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def new_order(order_ref: str) -> dict[str, str]:
    return {"event": "Project Update", "orderref": order_ref, "msg": "Project New Order"}


def settled(runtime: Runtime) -> bool:
    """No order received or in progress and no e-mail pending: the product's own query."""
    with runtime.store.read() as session:
        return queries.all_work_finished(session)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def load_order(runtime: Runtime, order_ref: str) -> Order:
    from utopia_handler.store import queries

    with runtime.store.read() as session:
        order = queries.find_order(session, order_ref)
        assert order is not None, f"no order {order_ref}"
        return order


def queue_order(runtime: Runtime, order_ref: str, *, shadow: bool = False) -> None:
    """Store a new-order callback the way the endpoint does (in shadow mode with `shadow`)."""
    from utopia_handler.store import queries

    with runtime.store.write() as session:
        queries.record_callback(
            session,
            order_ref=order_ref,
            msg="Project New Order",
            event="Project Update",
            body="{}",
            remote_addr="127.0.0.1",
            now=utcnow(),
            shadow=shadow,
        )
