"""Local stand-ins for PowerCode, UTOPIA and an SMTP relay, for the demo, tests and benchmarks.

Each is a real server on 127.0.0.1 running in background threads, with in-memory state,
scripted faults (see ``faults``) and, for the HTTP ones, a control surface under
``/_emulator/`` for out-of-process chaos tools.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from dataclasses import dataclass
from types import FrameType

from .faults import Fault, FaultPlan
from .powercode import PowerCodeEmulator, RecordedRequest, ServiceDef
from .seed import seed_powercode, seed_utopia
from .smtp import SmtpEmulator
from .utopia import UtopiaEmulator

__all__ = [
    "Emulators",
    "Fault",
    "FaultPlan",
    "PowerCodeEmulator",
    "RecordedRequest",
    "ServiceDef",
    "SmtpEmulator",
    "UtopiaEmulator",
    "serve_forever",
    "start_emulators",
]

logger = logging.getLogger(__name__)


@dataclass
class Emulators:
    """The three running emulators."""

    powercode: PowerCodeEmulator
    utopia: UtopiaEmulator
    smtp: SmtpEmulator

    def stop(self) -> None:
        """Stop all three."""
        self.powercode.stop()
        self.utopia.stop()
        self.smtp.stop()

    def env(self) -> dict[str, str]:
        """Environment variables that point the service at these emulators."""
        return {
            "PC_URL": self.powercode.base_url,
            "PC_URL_API": self.powercode.api_url,
            "PC_URL_UAPI": self.powercode.uapi_url,
            "PC_API_KEY": self.powercode.api_key,
            "PC_VERIFY_SSL": "true",
            "UTOPIA_URL_ENDPOINT": self.utopia.base_url,
            "UTOPIA_API_KEY": self.utopia.api_key,
            "MAIL_SERVER": self.smtp.host,
            "MAIL_PORT": str(self.smtp.port),
            "SERVICE_PLAN_250MBPS_ID": "163",
            "SERVICE_PLAN_1GBPS_ID": "164",
            "SERVICE_PLAN_BOND_FEE_ID": "172",
            "PC_CUST_TAGS": "1,3",
        }

    def __enter__(self) -> Emulators:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_emulators(
    *,
    seed: bool = True,
    latency: float = 0.0,
    powercode_port: int = 0,
    utopia_port: int = 0,
    smtp_port: int = 0,
) -> Emulators:
    """Start PowerCode, UTOPIA and SMTP emulators (seeded with the demo data by default)."""
    powercode = PowerCodeEmulator(port=powercode_port, latency=latency)
    utopia = UtopiaEmulator(port=utopia_port, latency=latency)
    smtp = SmtpEmulator(port=smtp_port)
    if seed:
        seed_powercode(powercode)
        seed_utopia(utopia)
    emulators = Emulators(powercode=powercode, utopia=utopia, smtp=smtp)
    try:
        powercode.start()
        utopia.start()
        smtp.start()
    except BaseException:
        emulators.stop()
        raise
    return emulators


def serve_forever(emulators: Emulators) -> None:
    """Block until Ctrl-C or SIGTERM, then stop the emulators."""
    stop_requested = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = None
    # signal handlers can only be installed from the main thread; elsewhere rely on Ctrl-C.
    with contextlib.suppress(ValueError):
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        # Wake now and then so Ctrl-C is seen promptly on every platform.
        while not stop_requested.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        logger.debug("stopping emulators")
        emulators.stop()
