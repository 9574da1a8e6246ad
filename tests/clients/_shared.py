"""Helpers for the client tests: the shared captured payloads and a port nothing listens on."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from utopia_handler.settings import Timeouts

UTOPIA_KEY = "utopia-key-5f1c9e0a77"
PC_KEY = "pc-key-a91b2c3d4e"
# Short enough to keep timeout tests fast, long enough for a loaded CI machine on loopback.
FAST = Timeouts(connect=0.5, read=0.5)

REPO_ROOT = Path(__file__).resolve().parents[2]
# CI checks the shared folder out beside the repository; so does the development machine.
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


def fixture_path(name: str) -> Path:
    """Path of a shared fixture such as "utopia/contractlookup__signed_250.json"."""
    path = SHARED_FIXTURES / name
    if not path.is_file():
        raise FileNotFoundError(f"shared fixture {name} not found under {SHARED_FIXTURES}")
    return path


def load_fixture(name: str) -> Any:
    """The decoded JSON of a shared fixture."""
    return json.loads(fixture_path(name).read_text(encoding="utf-8"))


def closed_port() -> int:
    """A loopback port that was free a moment ago, so connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
