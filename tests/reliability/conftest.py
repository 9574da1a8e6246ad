"""Fixtures for the reliability tests: stand-ins on free ports, each test its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from utopia_handler.emulators import PowerCodeEmulator, SmtpEmulator, UtopiaEmulator


@pytest.fixture
def powercode() -> Iterator[PowerCodeEmulator]:
    with PowerCodeEmulator(api_key="pc-reliability-key") as emulator:
        yield emulator


@pytest.fixture
def utopia() -> Iterator[UtopiaEmulator]:
    with UtopiaEmulator(api_key="ut-reliability-key") as emulator:
        yield emulator


@pytest.fixture
def smtp() -> Iterator[SmtpEmulator]:
    with SmtpEmulator() as emulator:
        yield emulator
