"""Helpers for the client tests: keys, quick timeouts and a port nothing listens on."""

from __future__ import annotations

import socket

from utopia_handler.settings import Timeouts

UTOPIA_KEY = "utopia-key-5f1c9e0a77"
PC_KEY = "pc-key-a91b2c3d4e"
# Short enough to keep timeout tests fast, long enough for a loaded CI machine on loopback.
FAST = Timeouts(connect=0.5, read=0.5)


def closed_port() -> int:
    """A loopback port that was free a moment ago, so connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
