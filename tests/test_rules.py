"""The business rules in isolation: state codes, matching, plan choice, customer fields, templates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import load_fixture
from utopia_handler.addresses import (
    STATE_CODES,
    normalise_name,
    normalise_street,
    state_code,
    street_with_unit,
)
from utopia_handler.clients.utopia import parse_contract
from utopia_handler.provisioning import Hold, build_new_customer, plan_services
from utopia_handler.settings import (
    PlanMapping,
    PortalPolicy,
    ProvisioningSettings,
    Secret,
    load_settings,
)
from utopia_handler.tickets import TemplateProblem, TicketRenderer, from_legacy_syntax

FIFTY_STATES = 50


def fixture_contract(name: str, order_ref: str = "UIA202611-000100"):  # type: ignore[no-untyped-def]
    return parse_contract(order_ref, load_fixture(f"utopia/contractlookup__{name}.json"))


LEGACY = ProvisioningSettings(
    plans=(PlanMapping("1 Gbps", 164), PlanMapping("250 Mbps", 163)),
    always_services=(172,),
)


def test_every_state_name_and_code_becomes_its_code() -> None:
    codes = set(STATE_CODES.values())
    assert len(codes) >= FIFTY_STATES + 1  # and DC, and territories
    for name, code in STATE_CODES.items():
        assert state_code(name.title()) == code
        assert state_code(name.upper()) == code
        assert state_code(code.lower()) == code
    assert state_code("  new   york ") == "NY"
    assert state_code("Montana") == "MT"
    assert state_code("Atlantis") is None
    assert state_code("") is None


@pytest.mark.parametrize(
    ("street", "unit", "expected"),
    [
        ("220 W MAIN ST", "UNIT 4B", "220 W MAIN ST UNIT 4B"),
        ("220 W MAIN ST", "4B", "220 W MAIN ST # 4B"),
        ("220 W MAIN ST", "#12", "220 W MAIN ST # 12"),
        ("220  W MAIN ST ", "APT 3", "220 W MAIN ST APT 3"),
        ("87 N 400 E", "", "87 N 400 E"),
        ("87 N 400 E", "B", "87 N 400 E # B"),
    ],
)
def test_unit_is_kept_on_the_street_line(street: str, unit: str, expected: str) -> None:
    assert street_with_unit(street, unit) == expected


def test_names_compare_without_case_accents_and_punctuation() -> None:
    assert normalise_name("María José O'Neill-Ramírez") == normalise_name(
        "maria jose ONEILL RAMIREZ"
    )
    assert normalise_name("  Avery   Lindqvist ") == "avery lindqvist"
    assert normalise_name("Avery Lindqvist") != normalise_name("Avery Lindgren")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("1875 East Harvest Lane", "1875 E HARVEST LN"),
        ("1432 S. Canyon View Dr.", "1432 SOUTH CANYON VIEW DRIVE"),
        ("220 W Main St Unit 4B", "220 WEST MAIN STREET"),
        ("220 W Main St # 4B", "220 W Main Street"),
        ("10 N Center Street Apt 2", "10 North Center St"),
    ],
)
def test_street_spellings_compare_equal(one: str, other: str) -> None:
    assert normalise_street(one) == normalise_street(other)


def test_different_streets_stay_different() -> None:
    assert normalise_street("1875 E Harvest Ln") != normalise_street("1876 E Harvest Ln")
    assert normalise_street("100 N Main St") != normalise_street("100 S Main St")


def test_legacy_mapping_plans_the_plan_and_the_bond_fee() -> None:
    contract = fixture_contract("signed_1g_unit")
    plans = plan_services(contract, LEGACY)
    assert [(p.service_id, p.label) for p in plans] == [(164, "1 Gbps"), (172, "always added")]


def test_plan_text_matches_ignoring_case_and_spacing() -> None:
    settings = ProvisioningSettings(plans=(PlanMapping("1  GBPS", 164),))
    assert [p.service_id for p in plan_services(fixture_contract("signed_1g_unit"), settings)] == [
        164
    ]


@pytest.mark.parametrize("mapped", ["1 Gbps", "1Gbps", " 1 gbps ", "1  GBPS"])
@pytest.mark.parametrize("sent", ["1Gbps", "1 Gbps", "1 GBPS "])
def test_one_plan_key_for_settings_and_the_worker(tmp_path: Path, mapped: str, sent: str) -> None:
    """A mapping the settings file accepts is the one the worker finds, whatever the spacing."""
    config = tmp_path / "handler.toml"
    config.write_text(f'[plans]\n"{mapped}" = 164\n', encoding="utf-8")
    settings = load_settings(
        {"DATA_DIR": str(tmp_path)},
        config_path=config,
        dotenv_path=tmp_path / "none.env",
        require_runtime=False,
    )
    base = fixture_contract("signed_1g_unit")
    contract = replace(base, items=tuple(replace(i, description=sent) for i in base.items[:1]))
    planned = plan_services(contract, settings.provisioning)
    assert [p.service_id for p in planned] == [164]


def test_unmapped_plan_is_held_by_default_and_never_guessed() -> None:
    with pytest.raises(Hold, match="'2 Gbps' has no PowerCode service mapping"):
        plan_services(fixture_contract("older_no_terms"), LEGACY)


def test_skip_policy_still_holds_an_order_with_no_plan_at_all() -> None:
    skip = ProvisioningSettings(plans=LEGACY.plans, always_services=(172,), unmapped_plan="skip")
    with pytest.raises(Hold, match="no order item maps"):
        plan_services(fixture_contract("older_no_terms"), skip)


def test_new_customer_fields_follow_the_reference() -> None:
    contract = fixture_contract("signed_1g_unit", "UIA202612-007352")
    settings = ProvisioningSettings(
        plans=LEGACY.plans,
        portal=PortalPolicy(
            username="email", password="shared", shared_password=Secret("Sh4red-Portal")
        ),
    )
    customer = build_new_customer("UIA202612-007352", contract, settings)
    assert customer.state == "ID"
    assert customer.street == "95 E BROADWAY ST APT 12C"
    assert (customer.city, customer.zip) == ("Idaho Falls", "83402")  # service, not billing
    assert (customer.first_name, customer.last_name) == ("Zoë Anaïs", "D'Amato-Núñez")
    assert customer.phone_numbers == ("2085550126",)
    assert customer.ext_account_id == "402753"
    assert customer.portal_username == "zoe.damato@example.org"
    assert customer.portal_password == "Sh4red-Portal"
    assert (
        customer.notes
        == "UTOPIA order UIA202612-007352; site id 402753; terms agreed 2026-12-08 17:30:44"
    )
    assert "Zoë" not in repr(customer) and "Sh4red" not in repr(customer)


def test_random_portal_passwords_differ_and_missing_terms_are_said() -> None:
    contract = fixture_contract("older_no_terms")
    settings = ProvisioningSettings(
        plans=LEGACY.plans, portal=PortalPolicy(username="email", password="random")
    )
    first = build_new_customer("R1", contract, settings)
    second = build_new_customer("R1", contract, settings)
    assert (
        first.portal_password
        and second.portal_password
        and first.portal_password != second.portal_password
    )
    assert first.portal_username == "77341"  # no e-mail: the site id
    assert "terms agreed not given" in first.notes


def test_legacy_template_placeholders_still_work() -> None:
    assert from_legacy_syntax("<p>Hello {customer_name}</p>") == "<p>Hello {{ customer_name }}</p>"
    assert from_legacy_syntax("{{ customer_name }} {x}") == "{{ customer_name }} {x}"


def test_ticket_template_escapes_customer_data_and_reports_typos(tmp_path: Path) -> None:
    template = tmp_path / "new_desc.txt"
    template.write_text("<p>{customer_name}</p>")
    renderer = TicketRenderer(template, "Install {{ customer_name }}")
    rendered = renderer.render({"customer_name": "<b>Eve</b> O'Hara"})
    assert rendered.description_html == "<p>&lt;b&gt;Eve&lt;/b&gt; O&#39;Hara</p>"
    assert rendered.summary == "Install <b>Eve</b> O'Hara"
    template.write_text("<p>{{ custmer_name }}</p>")
    with pytest.raises(TemplateProblem, match="custmer_name"):
        renderer.render({"customer_name": "Eve"})


def test_missing_template_file_falls_back_to_the_built_in_one(tmp_path: Path) -> None:
    renderer = TicketRenderer(tmp_path / "absent.txt", "x")
    _, path = renderer.source()
    assert path.name == "new_desc.txt" and path.parent.name == "ticket_descriptions"


def test_template_sandbox_refuses_python_internals(tmp_path: Path) -> None:
    template = tmp_path / "evil.txt"
    template.write_text("{{ customer_name.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateProblem):
        TicketRenderer(template, "x").render({"customer_name": "Eve"})
