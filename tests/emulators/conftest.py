"""Fixtures for the emulator tests: each emulator as a real server on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from utopia_handler.emulators import PowerCodeEmulator, SmtpEmulator, UtopiaEmulator


@pytest.fixture
def powercode() -> Iterator[PowerCodeEmulator]:
    with PowerCodeEmulator(api_key="pc-test-key") as emulator:
        yield emulator


@pytest.fixture
def utopia() -> Iterator[UtopiaEmulator]:
    with UtopiaEmulator(api_key="ut-test-key") as emulator:
        yield emulator


@pytest.fixture
def smtp() -> Iterator[SmtpEmulator]:
    with SmtpEmulator() as emulator:
        yield emulator


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http
