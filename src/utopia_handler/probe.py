"""Learn, read-only, how the real PowerCode answers what nobody has published, and record it.

PowerCode's reply to readCustomer when nothing matches, and to readCustomerService for a customer
with no services, have never been seen. Guessing them wrong would make every order wait at
find_customer or add_services, so `check-config --live` asks the installation itself and stores
the answer in the database, where every process's PowerCode client reads it.
"""

from __future__ import annotations

from datetime import datetime

from utopia_handler import config_store
from utopia_handler.clients.powercode import PowerCodeClient, ProbeReport
from utopia_handler.settings import Settings
from utopia_handler.store.db import Store

PROBE_ACTOR = "check-config --live"


def probe_powercode(
    settings: Settings, store: Store, now: datetime, customer_id: int | None = None
) -> ProbeReport:
    """Probe PowerCode with the configured connection and record what was learned.

    Raises the client's OutsideError when PowerCode cannot be reached or refuses the probe; then
    nothing is recorded.
    """
    powercode = settings.powercode
    with PowerCodeClient(
        powercode.api_url,
        powercode.uapi_url,
        powercode.api_key.reveal() if powercode.api_key else "",
        verify=powercode.verify,
        timeouts=powercode.timeouts,
    ) as client:
        report = client.probe_replies(customer_id)
    with store.write() as session:
        config_store.save_learned_replies(session, report.learned, PROBE_ACTOR, now)
    return report
