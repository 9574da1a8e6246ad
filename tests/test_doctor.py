"""`utopia-handler doctor` against real stand-ins: each connection told apart, with what to do."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.clients._shared import closed_port
from tests.tls import self_signed_certificate
from utopia_handler.cli import cli
from utopia_handler.doctor import Check, check_clock, run_checks
from utopia_handler.emulators import Emulators
from utopia_handler.emulators.powercode import PowerCodeEmulator
from utopia_handler.settings import Settings
from utopia_handler.timeutil import utcnow


@pytest.fixture
def doctor(
    base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    monkeypatch.chdir(tmp_path)  # no stray .env from the working folder

    def run(*args: str, **overrides: str) -> Result:
        env = {**base_env, **overrides}
        return CliRunner().invoke(cli, ["doctor", *args], env=env, obj={})

    def upgrade() -> Result:
        return CliRunner().invoke(cli, ["db", "upgrade"], env=base_env, obj={})

    run.upgrade = upgrade  # type: ignore[attr-defined]
    return run


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_the_command_says_what_to_do_then_passes_once_it_is_done(
    doctor: Callable[..., Result], emulators: Emulators
) -> None:
    first = doctor()  # a new database: the schema check says what to do

    assert first.exit_code == 1
    assert "FAIL database schema: at nothing" in first.output
    assert "-> run `utopia-handler db upgrade`" in first.output
    assert doctor.upgrade().exit_code == 0  # type: ignore[attr-defined]

    second = doctor()

    assert second.exit_code == 0, second.output
    assert second.output.splitlines()[0] == "ok   settings: valid"
    assert second.output.rstrip().endswith("all checks passed")


def test_invalid_settings_fail_first_with_the_reason(doctor: Callable[..., Result]) -> None:
    result = doctor(SECRET_KEY="short")

    assert result.exit_code == 1
    assert result.output.startswith("FAIL settings: SECRET_KEY")


def test_all_checks_pass_against_the_stand_ins(
    make_settings: Callable[..., Settings], emulators: Emulators, runtime: object
) -> None:
    checks = by_name(run_checks(make_settings()))

    failed = {name: c.line() for name, c in checks.items() if not c.ok}
    assert failed == {}
    assert set(checks) >= {
        "database",
        "database schema",
        "database writes",
        "powercode API",
        "powercode UAPI",
        "utopia",
        "mail relay",
        "clock",
    }
    # Nothing was written anywhere, and no e-mail went out.
    assert emulators.powercode.customers.keys() == {10001, 10002, 10003}
    assert emulators.smtp.messages == []
    calls = [(r.method, dict(r.form).get("action") or r.path) for r in emulators.powercode.requests]
    assert calls == [
        ("POST", "searchCustomers"),
        ("GET", "/uapi/customer/tags/customer"),
    ]


def test_send_test_delivers_one_email_to_staff(
    make_settings: Callable[..., Settings], emulators: Emulators, runtime: object
) -> None:
    checks = by_name(run_checks(make_settings(), send_test_email=True))

    assert checks["test e-mail"].ok
    [mail] = emulators.smtp.messages
    assert mail["Subject"] == "utopia-handler doctor: test e-mail"
    assert mail["To"] == "staff@isp.example, noc@isp.example"


def test_a_wrong_powercode_key_is_named(
    make_settings: Callable[..., Settings], runtime: object
) -> None:
    check = by_name(run_checks(make_settings(PC_API_KEY="wrong-key-000111")))["powercode API"]

    assert not check.ok
    assert check.detail == "refused: searchCustomers refused: statusCode 1 (Invalid API key)"
    assert "PC_API_KEY" in check.fix


def test_a_closed_port_is_unreachable_not_refused(
    make_settings: Callable[..., Settings], runtime: object
) -> None:
    port = closed_port()
    settings = make_settings(
        PC_URL=f"http://127.0.0.1:{port}",
        PC_URL_API=f"http://127.0.0.1:{port}/api/1/index.php",
        PC_URL_UAPI=f"http://127.0.0.1:{port}/uapi/",
    )
    check = by_name(run_checks(settings))["powercode API"]

    assert not check.ok
    assert check.detail.startswith("unreachable: searchCustomers: could not connect")
    assert "PC_URL" in check.fix


def test_a_wrong_utopia_key_and_a_refusing_relay_are_named(
    make_settings: Callable[..., Settings], emulators: Emulators, runtime: object
) -> None:
    port = closed_port()
    checks = by_name(
        run_checks(make_settings(UTOPIA_API_KEY="wrong-utopia-key-99", MAIL_PORT=str(port)))
    )

    assert checks["utopia"].detail == "refused the key (401)"
    assert not checks["mail relay"].ok
    assert checks["mail relay"].detail.startswith(f"connection to 127.0.0.1:{port} failed")


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_powercode(self_signed: tuple[Path, Path]) -> Iterator[PowerCodeEmulator]:
    cert, key = self_signed
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with PowerCodeEmulator(tls=context) as emulator:
        yield emulator


def test_a_self_signed_powercode_gets_its_fingerprint_and_how_to_trust_it(
    make_settings: Callable[..., Settings],
    tls_powercode: PowerCodeEmulator,
    self_signed: tuple[Path, Path],
    runtime: object,
) -> None:
    url = tls_powercode.base_url
    untrusted = make_settings(
        PC_URL=url, PC_URL_API=tls_powercode.api_url, PC_URL_UAPI=tls_powercode.uapi_url
    )
    check = by_name(run_checks(untrusted))["powercode API"]

    assert not check.ok and check.detail.startswith("TLS failed")
    der = ssl.PEM_cert_to_DER_cert(self_signed[0].read_text())
    fingerprint = hashlib.sha256(der).hexdigest().upper()
    assert ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)) in check.fix
    assert "PC_CA_BUNDLE" in check.fix

    trusted = make_settings(
        PC_URL=url,
        PC_URL_API=tls_powercode.api_url,
        PC_URL_UAPI=tls_powercode.uapi_url,
        PC_API_KEY=tls_powercode.api_key,
        PC_CA_BUNDLE=str(self_signed[0]),
    )
    assert by_name(run_checks(trusted))["powercode API"].ok


def test_clock_skew_is_a_warning_with_the_fix() -> None:
    now = utcnow()
    assert check_clock(now - timedelta(seconds=5), now).warning is False
    skewed = check_clock(now - timedelta(minutes=4), now)
    assert skewed.ok and skewed.warning
    assert skewed.detail == "+240 s against PowerCode" and "NTP" in skewed.fix
