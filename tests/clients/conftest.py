"""Real local servers for the client tests: the PowerCode, UTOPIA and SMTP emulators."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from utopia_handler.clients.powercode import PowerCodeClient
from utopia_handler.clients.utopia import UtopiaClient
from utopia_handler.emulators.powercode import PowerCodeEmulator
from utopia_handler.emulators.smtp import SmtpEmulator
from utopia_handler.emulators.utopia import UtopiaEmulator

from ._shared import FAST, PC_KEY, UTOPIA_KEY


@pytest.fixture
def utopia_emulator() -> Iterator[UtopiaEmulator]:
    with UtopiaEmulator(api_key=UTOPIA_KEY) as emulator:
        yield emulator


@pytest.fixture
def utopia(utopia_emulator: UtopiaEmulator) -> Iterator[UtopiaClient]:
    with UtopiaClient(utopia_emulator.base_url, UTOPIA_KEY, timeouts=FAST) as client:
        yield client


@pytest.fixture
def powercode_emulator() -> Iterator[PowerCodeEmulator]:
    with PowerCodeEmulator(api_key=PC_KEY, port=0) as emulator:
        yield emulator


@pytest.fixture
def powercode(powercode_emulator: PowerCodeEmulator) -> Iterator[PowerCodeClient]:
    with PowerCodeClient(
        powercode_emulator.api_url, powercode_emulator.uapi_url, PC_KEY, timeouts=FAST
    ) as client:
        yield client


@pytest.fixture
def smtp_emulator() -> Iterator[SmtpEmulator]:
    with SmtpEmulator() as emulator:
        yield emulator
