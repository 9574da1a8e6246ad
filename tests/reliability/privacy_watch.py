"""The whole test session's logs and stored rows, searched for secrets and personal data.

`watch_session_privacy` (autouse, imported by tests/conftest.py) records every log record the
product writes during the session. When the session ends it searches those records, the log
files tests left behind (`*.log`, `*.out` under the session's temporary folder) and every SQLite
database there:
- no configured secret may appear in a log or a stored row;
- no fixture customer's name, e-mail, phone or street line may appear in a log. (Databases may
  hold personal data by design: an order needs it.)
A finding fails the session with an error naming the value (secrets shortened) and where it was.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from utopia_handler.emulators.seed import DEMO_ORDERS, EXISTING_CUSTOMERS, MISSED_DEMO_ORDER

#: Secrets the suite configures. Tests that configure more add theirs (see `watch_secret`).
WATCHED_SECRETS: set[str] = set()
# What the service writes: its own events and what its servers and libraries log on its behalf.
# Test tools (httpx as the tests' client, hypothesis, schemathesis) are not the service, and
# neither are the stand-ins (the SMTP one prints whole messages at DEBUG).
_PRODUCT = ("utopia_handler", "waitress", "werkzeug", "flask", "alembic", "sqlalchemy", "gunicorn")
_NOT_THE_PRODUCT = ("utopia_handler.emulators",)


def watch_secret(*values: str) -> None:
    """Have the end-of-session check look for these secrets too."""
    WATCHED_SECRETS.update(value for value in values if len(value) >= 8)


class _Recorder(logging.Handler):
    """Keeps every product log record, formatted as a handler would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(_PRODUCT) or record.name.startswith(_NOT_THE_PRODUCT):
            return
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted cannot leak either
            self.handleError(record)


def _fixture(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def fixture_personal_data(fixtures: Path) -> set[str]:
    """Names, e-mails, phones and street lines of every made-up customer the tests use.

    `fixtures` is the payload folder (tests/fixtures): its UTOPIA contracts and the PowerCode
    customer records in its replies, beside the stand-ins' demo orders and customers.
    """
    people: list[dict[str, str]] = []
    addresses: list[str] = []
    contracts = [*DEMO_ORDERS.values(), MISSED_DEMO_ORDER[1]]
    contracts += [_fixture(p) for p in sorted(fixtures.glob("utopia/contractlookup__*.json"))]
    for contract in contracts:
        people.append(contract.get("customer") or {})
        for block in ("address", "billingaddress"):
            addresses.append((contract.get(block) or {}).get("address", ""))
    values: set[str] = set(addresses)
    for person in people:
        first, last = person.get("firstname", ""), person.get("lastname", "")
        values.update((last, f"{first} {last}", person.get("email", ""), person.get("phone", "")))
    for reply in [_fixture(p) for p in sorted(fixtures.glob("powercode/*.json"))]:
        records = [reply.get("customer") or {}, *(reply.get("customers") or [])]
        for record in records:
            for key in ("companyName", "CompanyName", "lastName", "physicalStreet", "Address1"):
                values.add(str(record.get(key, "")))
    for customer in EXISTING_CUSTOMERS:
        values.update((f"{customer['first_name']} {customer['last_name']}", customer["street"]))
        values.add(customer.get("email", ""))
    return {value.strip() for value in values if len(value.strip()) >= 4}


def _shown(secret: str) -> str:
    return secret[:4] + "..."


def _database_text(path: Path) -> str:
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return ""
    try:
        return "\n".join(connection.iterdump())
    except sqlite3.Error:  # not a database, or one a test left broken on purpose
        return ""
    finally:
        connection.close()


def find_leaks(log_lines: list[str], folder: Path, fixtures: Path) -> list[str]:
    """Every secret or personal value found where it must not be, as one line each."""
    personal = fixture_personal_data(fixtures)
    logs = {"log records": "\n".join(log_lines)}
    for pattern in ("*.log", "*.out"):
        for path in folder.rglob(pattern):
            if path.is_file():
                logs[str(path.relative_to(folder))] = path.read_text("utf-8", errors="replace")
    leaks: list[str] = []
    for where, text in logs.items():
        leaks += [f"secret {_shown(s)} in {where}" for s in sorted(WATCHED_SECRETS) if s in text]
        leaks += [
            f"personal data {value!r} in {where}" for value in sorted(personal) if value in text
        ]
    for path in folder.rglob("*.db"):
        stored = _database_text(path)
        leaks += [
            f"secret {_shown(s)} stored in {path.relative_to(folder)}"
            for s in sorted(WATCHED_SECRETS)
            if s in stored
        ]
    return leaks


def _attach(recorder: _Recorder) -> None:
    # On the product's logger too: it stops propagating to the root once setup_logging ran.
    for logger in (logging.getLogger(), logging.getLogger("utopia_handler")):
        if recorder not in logger.handlers:
            logger.addHandler(recorder)


@pytest.fixture(scope="session", autouse=True)
def watch_session_privacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Recorder]:
    """Record the session's product logs; at the end, fail if a secret or personal data leaked."""
    from tests.conftest import CALLBACK_TOKEN, FIXTURES, SECRET_KEY
    from tests.test_privacy import PORTAL_PASSWORD

    watch_secret(CALLBACK_TOKEN, SECRET_KEY, PORTAL_PASSWORD, "pc-demo-key", "utopia-demo-key")
    recorder = _Recorder()
    product = logging.getLogger("utopia_handler")
    _attach(recorder)
    if product.level == logging.NOTSET:
        # INFO is what a production service writes; DEBUG is covered by tests/test_privacy.py.
        product.setLevel(logging.INFO)
    try:
        yield recorder
    finally:
        for logger in (logging.getLogger(), product):
            logger.removeHandler(recorder)
    leaks = find_leaks(recorder.lines, tmp_path_factory.getbasetemp(), FIXTURES)
    assert not leaks, "secrets or personal data leaked:\n" + "\n".join(leaks[:50])


@pytest.fixture(autouse=True)
def watch_each_test(watch_session_privacy: _Recorder) -> Iterator[None]:
    """Attach the recorder again before each test: a test may clear the product's handlers."""
    _attach(watch_session_privacy)
    yield
    # Proof the recorder is still in place for what the test logged, unless the test itself
    # took the handlers off at its end (tests/test_privacy.py does, after its service stopped).
    product = logging.getLogger("utopia_handler")
    if watch_session_privacy in product.handlers:
        canary = product.makeRecord(
            product.name, logging.INFO, __file__, 0, "watch.canary", (), None
        )
        product.handle(canary)
        recent = watch_session_privacy.lines[-50:]  # other threads may log meanwhile
        assert any(line.endswith("watch.canary") for line in recent), "the recorder came loose"
