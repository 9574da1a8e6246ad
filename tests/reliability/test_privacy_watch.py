"""The end-of-session privacy check finds what it looks for (so its silence means something)."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CALLBACK_TOKEN, FIXTURES
from tests.reliability.privacy_watch import WATCHED_SECRETS, find_leaks, fixture_personal_data


def test_the_watch_covers_the_fixture_customers_and_the_configured_secrets() -> None:
    personal = fixture_personal_data(FIXTURES)
    assert {"Avery Lindqvist", "avery.lindqvist@example.net", "1432 S CANYON VIEW DR"} <= personal
    # The people of tests/fixtures: UTOPIA contracts (both addresses) and PowerCode records.
    assert {
        "Jonah Abernathy",
        "jonah.abernathy@example.com",
        "8015550163",
        "2718 N JUNIPER RIDGE RD",
        "Zoë Anaïs D'Amato-Núñez",
        "PO BOX 2203",
        "Okafor",
        "3855550188",
        "2718 N Juniper Ridge Rd",
    } <= personal
    assert "" not in personal
    assert CALLBACK_TOKEN in WATCHED_SECRETS


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside the session's own, so the planted leaks do not fail the session."""
    with tempfile.TemporaryDirectory(prefix="privacy-watch-") as folder:
        yield Path(folder)


def test_planted_leaks_are_found_in_records_files_and_databases(outside: Path) -> None:
    (outside / "run").mkdir()
    (outside / "run" / "service.log").write_text("step.ok order=X name=Jonah Abernathy\n")
    connection = sqlite3.connect(outside / "run" / "store.db")
    connection.execute("CREATE TABLE callbacks (body TEXT)")
    connection.execute("INSERT INTO callbacks VALUES (?)", (f"?token={CALLBACK_TOKEN}",))
    connection.commit()
    connection.close()
    records = [
        "utopia_handler.worker mail.sent to=avery.lindqvist@example.net",
        "utopia_handler.provisioning unit=95 E BROADWAY ST",
    ]

    leaks = find_leaks(records, outside, FIXTURES)

    assert "personal data 'avery.lindqvist@example.net' in log records" in leaks
    assert "personal data '95 E BROADWAY ST' in log records" in leaks
    assert "personal data 'Jonah Abernathy' in run/service.log" in leaks
    assert f"secret {CALLBACK_TOKEN[:4]}... stored in run/store.db" in leaks


def test_clean_output_gives_no_findings(tmp_path: Path) -> None:
    (tmp_path / "service.log").write_text("step.ok order=UIA202611-004217 customer_id=10001\n")
    assert find_leaks(["callback.stored order=UIA202611-004217"], tmp_path, FIXTURES) == []
