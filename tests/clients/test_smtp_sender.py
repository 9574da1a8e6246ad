"""SmtpSender against the local SMTP emulator (a real aiosmtpd server on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from utopia_handler.clients.errors import RejectedError, RetryableError
from utopia_handler.emulators.smtp import SmtpEmulator
from utopia_handler.notify.smtp import SmtpSender

from ._shared import closed_port

PASSWORD = "smtp-pass-8d7e6f"


def staff_message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "noreply@isp.example"
    message["To"] = "ops@isp.example, billing@isp.example"
    message["Subject"] = "Customer Created Successfully - Avery Lindqvist (PC#10517)"
    message.set_content("Customer 10517 was created.\n.\nA line with only a dot stays.\n")
    return message


@pytest.fixture
def auth_emulator() -> Iterator[SmtpEmulator]:
    with SmtpEmulator(username="handler", password=PASSWORD) as emulator:
        yield emulator


def sender_for(emulator: SmtpEmulator, **options: object) -> SmtpSender:
    return SmtpSender(emulator.host, emulator.port, timeout=0.5, **options)  # type: ignore[arg-type]


def test_message_is_delivered_to_every_recipient(smtp_emulator: SmtpEmulator) -> None:
    sender_for(smtp_emulator).send(staff_message())

    assert len(smtp_emulator.messages) == 1
    received = smtp_emulator.messages[0]
    assert received["Subject"] == "Customer Created Successfully - Avery Lindqvist (PC#10517)"
    # On the wire lines end in CRLF; the dot-only line must survive SMTP's dot-stuffing.
    body = received.get_content().replace("\r\n", "\n")
    assert body == "Customer 10517 was created.\n.\nA line with only a dot stays.\n"
    assert smtp_emulator.envelopes == [
        ("noreply@isp.example", ["ops@isp.example", "billing@isp.example"])
    ]


def test_login_then_delivery(auth_emulator: SmtpEmulator) -> None:
    sender_for(auth_emulator, username="handler", password=PASSWORD).send(staff_message())

    assert len(auth_emulator.messages) == 1


def test_wrong_password_is_rejected_without_showing_it(auth_emulator: SmtpEmulator) -> None:
    sender = sender_for(auth_emulator, username="handler", password="wrong-pass-1234")

    with pytest.raises(RejectedError) as caught:
        sender.send(staff_message())

    assert caught.value.code == 535
    assert caught.value.service == "smtp"
    assert "wrong-pass-1234" not in str(caught.value)
    assert auth_emulator.messages == []


def test_missing_login_where_required_is_rejected(auth_emulator: SmtpEmulator) -> None:
    with pytest.raises(RejectedError) as caught:
        sender_for(auth_emulator).send(staff_message())

    assert caught.value.code == 530


def test_temporary_refusal_of_the_message_is_retryable(smtp_emulator: SmtpEmulator) -> None:
    smtp_emulator.faults.add("DATA", "fail")

    with pytest.raises(RetryableError) as caught:
        sender_for(smtp_emulator).send(staff_message())

    assert caught.value.may_have_applied is False
    assert caught.value.message.startswith("message refused: 451")
    assert smtp_emulator.messages == []


@pytest.mark.parametrize("kind", ["drop_after_apply", "drop_before"])
def test_connection_lost_after_the_message_may_have_applied(
    smtp_emulator: SmtpEmulator, kind: str
) -> None:
    smtp_emulator.faults.add("DATA", kind)

    with pytest.raises(RetryableError) as caught:
        sender_for(smtp_emulator).send(staff_message())

    # Both drops happen after the whole message went out: the client cannot tell them apart.
    assert caught.value.may_have_applied is True
    assert caught.value.message == "connection lost after the message was sent"


def test_no_reply_to_the_message_in_time_may_have_applied(smtp_emulator: SmtpEmulator) -> None:
    smtp_emulator.faults.add("DATA", "timeout", seconds=1.0)

    with pytest.raises(RetryableError) as caught:
        sender_for(smtp_emulator).send(staff_message())

    assert caught.value.may_have_applied is True


def test_nothing_listening_is_retryable_and_not_applied() -> None:
    with pytest.raises(RetryableError) as caught:
        SmtpSender("127.0.0.1", closed_port(), timeout=0.5).send(staff_message())

    assert caught.value.may_have_applied is False
    assert caught.value.message.startswith("connection to 127.0.0.1:")


def test_starttls_is_never_skipped(smtp_emulator: SmtpEmulator) -> None:
    sender = sender_for(smtp_emulator, security="starttls", username="handler", password=PASSWORD)

    with pytest.raises(RejectedError) as caught:
        sender.send(staff_message())

    assert "STARTTLS" in caught.value.message
    assert smtp_emulator.messages == []


def test_message_without_recipients_is_rejected(smtp_emulator: SmtpEmulator) -> None:
    message = staff_message()
    del message["To"]

    with pytest.raises(RejectedError):
        sender_for(smtp_emulator).send(message)


def test_no_server_configured_is_rejected() -> None:
    with pytest.raises(RejectedError) as caught:
        SmtpSender("", 25).send(staff_message())

    assert caught.value.message == "no SMTP server is configured"
