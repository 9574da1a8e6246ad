"""UtopiaClient's site look-ups and subscriber writes against the stand-in, and their shadow twin."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from utopia_handler.clients.errors import RejectedError, RetryableError
from utopia_handler.clients.utopia import NotOurOrder, UtopiaClient
from utopia_handler.clients.utopia_site import parse_apview, parse_service
from utopia_handler.emulators.utopia import UtopiaEmulator
from utopia_handler.runtime import Runtime
from utopia_handler.shadow import ShadowUtopiaClient
from utopia_handler.store.models import ShadowWrite


def test_service_gives_status_product_and_cid(
    utopia: UtopiaClient, utopia_emulator: UtopiaEmulator
) -> None:
    utopia_emulator.add_site("318877", cid="C77", macs=["aa:bb:cc:dd:ee:01"])
    service = utopia.site_service("318877")
    assert (service.found, service.cid, service.status) == (True, "C77", "Active")
    assert service.lines[0].product == "250 Mbps"
    assert utopia.ont_view("318877").macs == ("aa:bb:cc:dd:ee:01",)
    sighting = utopia.mac_search("aa:bb:cc:dd:ee:01")
    assert (sighting.found, sighting.site_id) == (True, "318877")
    assert not utopia.mac_search("00:00:00:00:00:00").found
    assert not utopia.site_service("999").found


def test_suspend_then_service_shows_it(
    utopia: UtopiaClient, utopia_emulator: UtopiaEmulator
) -> None:
    utopia_emulator.add_site("318877", cid="C77")
    assert utopia.suspend("C77", "318877").raw == {"status": "success"}
    assert utopia.site_service("318877").status == "Suspended"
    with pytest.raises(NotOurOrder):
        utopia.unsuspend("OTHER", "318877")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        utopia.cancel_service("C77", "318877", "31/12/2026")


def test_faults_come_out_as_the_client_error_tree(
    utopia: UtopiaClient, utopia_emulator: UtopiaEmulator
) -> None:
    utopia_emulator.add_site("318877", cid="C77")
    utopia_emulator.faults.add_from_json({"target": "suspend", "kind": "drop_after_apply"})
    with pytest.raises(RetryableError) as lost:
        utopia.suspend("C77", "318877")
    assert lost.value.may_have_applied
    assert utopia.site_service("318877").status == "Suspended"
    utopia_emulator.faults.add_from_json({"target": "service", "kind": "fail", "status": 400})
    with pytest.raises(RejectedError):
        utopia.site_service("318877")


def test_unknown_shapes_are_kept_raw_and_never_crash() -> None:
    odd = {"rows": [1, 2], "data": "nope"}
    service = parse_service(True, odd)
    assert (service.lines, service.raw, service.cid) == ((), odd, "")
    assert parse_apview(True, {"result": "x"}).macs == ()
    php = parse_service(True, {"data": {"0": {"customer": {"cid": 5}, "status": "Active"}}})
    assert php.cid == "5"


def test_in_shadow_mode_utopia_writes_are_recorded_not_sent(
    make_runtime: Callable[..., Runtime],
) -> None:
    runtime = make_runtime(SHADOW_MODE="true", SHADOW_EMAIL_RECIPIENTS="trial@isp.example")
    assert isinstance(runtime.utopia, ShadowUtopiaClient)
    site = "204817"
    service = runtime.utopia.site_service(site)
    runtime.utopia.suspend(service.cid or "C1", site)
    with runtime.store.read() as session:
        rows = session.query(ShadowWrite).all()
        assert [(r.service, r.action) for r in rows] == [("utopia", "suspend")]
