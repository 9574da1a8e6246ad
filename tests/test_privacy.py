"""Secrets and customer personal data never reach the logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CALLBACK_TOKEN, SECRET_KEY, new_order, post_callback, wait_for
from utopia_handler.emulators import Emulators
from utopia_handler.emulators.seed import DEMO_ORDERS
from utopia_handler.logs import setup_logging
from utopia_handler.runtime import Runtime
from utopia_handler.server import ServiceHandle

PORTAL_PASSWORD = "Portal-Shared-Pass-91"


def personal_data() -> set[str]:
    """Every name, e-mail, phone and street line in the demo orders."""
    values: set[str] = set()
    for contract in DEMO_ORDERS.values():
        person = contract.get("customer", {})
        values.update(person.get(k, "") for k in ("firstname", "lastname", "email", "phone"))
        for block in ("address", "billingaddress"):
            values.add(contract.get(block, {}).get("address", ""))
    return {v for v in values if len(v) >= 4}


def test_logs_hold_no_secrets_and_no_personal_data(
    make_runtime: Callable[..., Runtime],
    emulators: Emulators,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log_file = tmp_path / "api_class.log"
    setup_logging(log_file, "DEBUG")
    caplog.set_level(logging.DEBUG)
    runtime = make_runtime(CUSTOMER_PORTAL_PASSWORD=PORTAL_PASSWORD)
    # Faults on the way, so error paths log too.
    emulators.powercode.faults.add("createTicket", "fail", status=503, count=1)
    emulators.powercode.faults.add(
        "createCustomer", "reject", status_code=4, message="Bad zip", count=1
    )
    handle = ServiceHandle(runtime, port=0).start()
    try:
        for ref in DEMO_ORDERS:
            # In a header, so this test's own HTTP client does not log the token in a URL.
            post_callback(
                handle.url, new_order(ref), token=None, headers={"X-Callback-Token": CALLBACK_TOKEN}
            )
        post_callback(handle.url, {"orderref": "x", "msg": "Avery Lindqvist"}, token="wrong")
        wait_for(lambda: len(emulators.smtp.messages) >= len(DEMO_ORDERS))
    finally:
        handle.stop()
        for handler in logging.getLogger("utopia_handler").handlers:
            handler.close()
        logging.getLogger("utopia_handler").handlers.clear()
    # Everything the service and the libraries it uses logged; the stand-ins' own logs (the SMTP
    # server prints whole messages at DEBUG) are not part of the product.
    service_records = [
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith(("mail.log", "utopia_handler.emulators"))
    ]
    written = "\n".join(
        [log_file.read_text(encoding="utf-8"), *service_records, capsys.readouterr().out]
    )
    assert "step.ok" in written and "callback.stored" in written  # the logs are not empty
    secrets = [
        emulators.powercode.api_key,
        emulators.utopia.api_key,
        CALLBACK_TOKEN,
        SECRET_KEY,
        PORTAL_PASSWORD,
    ]
    for secret in secrets:
        assert secret not in written
    leaked = sorted(value for value in personal_data() if value in written)
    assert leaked == []
    # The customers were really created with that data: the check above is not vacuous.
    created = json.dumps(list(emulators.powercode.customers.values()), ensure_ascii=False)
    created_people = [name for name in ("Lindqvist", "Ramírez", "Halvorsen") if name in created]
    assert len(created_people) >= 2 and PORTAL_PASSWORD in created
