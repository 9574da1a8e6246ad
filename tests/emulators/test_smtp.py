"""The SMTP emulator: receives and parses mail, enforces AUTH when asked, and misbehaves on cue."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from utopia_handler.emulators import SmtpEmulator


def message(
    subject: str = "Customer Created Successfully - María O'Neill (PC#10001)",
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "no-reply@isp.example"
    msg["To"] = "staff@isp.example, noc@isp.example"
    msg["Subject"] = subject
    msg.set_content("Plan: 1 Gbps\nTicket: 500\n")
    return msg


def send(emulator: SmtpEmulator, msg: EmailMessage | None = None) -> None:
    with smtplib.SMTP(emulator.host, emulator.port, timeout=5) as client:
        client.send_message(msg or message())


@pytest.fixture
def secured() -> Iterator[SmtpEmulator]:
    with SmtpEmulator(username="relay-user", password="relay-pass") as emulator:
        yield emulator


def test_receives_and_parses_messages(smtp: SmtpEmulator) -> None:
    assert smtp.port > 0
    send(smtp)
    assert len(smtp.messages) == 1
    received = smtp.messages[0]
    assert received["Subject"] == "Customer Created Successfully - María O'Neill (PC#10001)"
    assert "Ticket: 500" in received.get_content()
    assert smtp.envelopes == [("no-reply@isp.example", ["staff@isp.example", "noc@isp.example"])]


def test_auth_with_the_right_credentials(secured: SmtpEmulator) -> None:
    with smtplib.SMTP(secured.host, secured.port, timeout=5) as client:
        client.login("relay-user", "relay-pass")
        client.send_message(message())
    assert len(secured.messages) == 1


def test_auth_login_mechanism(secured: SmtpEmulator) -> None:
    with smtplib.SMTP(secured.host, secured.port, timeout=5) as client:
        client.ehlo()
        # Offer only LOGIN so smtplib uses it instead of PLAIN.
        client.esmtp_features["auth"] = "LOGIN"
        client.login("relay-user", "relay-pass")
        client.send_message(message())
    assert len(secured.messages) == 1


def test_wrong_credentials_are_535(secured: SmtpEmulator) -> None:
    with smtplib.SMTP(secured.host, secured.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            client.login("relay-user", "guess")
        assert caught.value.smtp_code == 535
    assert secured.messages == []


def test_mail_without_auth_is_refused_when_auth_is_configured(secured: SmtpEmulator) -> None:
    with pytest.raises(smtplib.SMTPSenderRefused) as caught:
        send(secured)
    assert caught.value.smtp_code == 530
    assert secured.messages == []


def test_fail_answers_451_and_keeps_nothing(smtp: SmtpEmulator) -> None:
    smtp.faults.add("DATA", "fail")
    with pytest.raises(smtplib.SMTPDataError) as caught:
        send(smtp)
    assert caught.value.smtp_code == 451
    assert smtp.messages == []
    send(smtp)
    assert len(smtp.messages) == 1


def test_drop_after_apply_keeps_the_message_but_the_client_sees_a_disconnect(
    smtp: SmtpEmulator,
) -> None:
    smtp.faults.add("DATA", "drop_after_apply")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(smtp)
    assert len(smtp.messages) == 1


def test_drop_before_keeps_nothing(smtp: SmtpEmulator) -> None:
    smtp.faults.add("DATA", "drop_before")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(smtp)
    assert smtp.messages == []


def test_latency_delays_the_reply(smtp: SmtpEmulator) -> None:
    smtp.faults.add("DATA", "latency", seconds=0.2)
    started = time.monotonic()
    send(smtp)
    assert time.monotonic() - started >= 0.2
    assert len(smtp.messages) == 1


def test_stop_with_an_open_session_is_clean() -> None:
    emulator = SmtpEmulator().start()
    client = smtplib.SMTP(emulator.host, emulator.port, timeout=5)
    try:
        client.ehlo()
        emulator.stop()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    finally:
        client.close()
    emulator.stop()  # twice is fine


def test_timeout_holds_then_closes_and_keeps_nothing(smtp: SmtpEmulator) -> None:
    smtp.faults.add("DATA", "timeout", seconds=0.2)
    started = time.monotonic()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(smtp)
    assert time.monotonic() - started >= 0.2
    assert smtp.messages == []


def test_restart_keeps_the_port(smtp: SmtpEmulator) -> None:
    port = smtp.port
    smtp.stop()
    smtp.start()
    assert smtp.port == port
    send(smtp)
    assert len(smtp.messages) == 1
