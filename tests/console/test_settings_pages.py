"""Admin settings: plan mapping and services with validation, the ticket template with preview,
history and rollback, all in force for the running worker; the effective settings without secrets."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import CALLBACK_TOKEN, SECRET_KEY, load_order, queue_order
from tests.console.conftest import csrf_token, post_form
from utopia_handler import config_store
from utopia_handler.emulators import Emulators, ServiceDef
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import ConfigKind, ConfigVersion, Role
from utopia_handler.store.models import OrderState
from utopia_handler.worker import Worker

PLAIN = "UIA202611-004217"


def _versions(runtime: Runtime, kind: ConfigKind) -> list[ConfigVersion]:
    with runtime.store.read() as session:
        return config_store.history(session, kind)


def test_the_plan_mapping_page_shows_the_file_mapping_and_saves_a_new_version(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    admin = client_as(Role.ADMIN)
    page = admin.get("/settings/plans").get_data(as_text=True)
    assert 'value="250 Mbps"' in page and 'value="163"' in page  # from SERVICE_PLAN_250MBPS_ID
    assert "the settings file or environment" in page
    assert "cannot be checked" in page  # said plainly: PowerCode has no service list

    saved = post_form(
        admin,
        "/settings/plans",
        {"plan_text": ["250 Mbps", " 2  Gbps ", "", ""], "service_id": ["163", "165", "", ""]},
    )
    assert saved.status_code == 303
    [version] = _versions(console_runtime, ConfigKind.PLANS)
    assert version.value == [
        {"utopia_text": "250 Mbps", "service_id": 163},
        {"utopia_text": "2 Gbps", "service_id": 165},
    ]
    assert version.created_by == "admin"
    page = admin.get("/settings/plans").get_data(as_text=True)
    assert f"version {version.id}, saved in the console by admin" in page


def test_wrong_plan_rows_and_service_ids_are_refused_with_reasons(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    admin = client_as(Role.ADMIN)
    answer = post_form(
        admin,
        "/settings/plans",
        {
            "plan_text": ["250 Mbps", "250mbps", "1 Gbps", "", "3 Gbps"],
            "service_id": ["163", "170", "abc", "164", "0"],
        },
    )
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "the same plan as &#39;250 Mbps&#39;" in page
    assert "row 3 (1 Gbps): the service id must be a whole number" in page
    assert "row 4: the UTOPIA plan text is empty" in page
    assert "row 5 (3 Gbps): the service id must be a whole number from 1" in page
    assert 'value="abc"' in page  # kept for the person to fix
    services = post_form(admin, "/settings/services", {"service_ids": "172, -1, 172"})
    assert services.status_code == 422
    empty = post_form(admin, "/settings/plans", {"plan_text": [""], "service_id": [""]})
    assert "map at least one UTOPIA plan" in empty.get_data(as_text=True)
    assert _versions(console_runtime, ConfigKind.PLANS) == []
    assert _versions(console_runtime, ConfigKind.ALWAYS_SERVICES) == []


def test_always_added_services_saved_in_the_console_reach_the_next_order(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    emulators.powercode.services[180] = ServiceDef("Static IP", internet=False)
    admin = client_as(Role.ADMIN)
    # 180 is priced per unit: each order gets two.
    saved = post_form(admin, "/settings/services", {"service_ids": "172, 180x2"})
    assert saved.status_code == 303
    assert "172, 180x2" in admin.get("/settings/plans").get_data(as_text=True)
    queue_order(console_runtime, PLAIN)
    worker.run_until_idle()
    order = load_order(console_runtime, PLAIN)
    assert order.state == OrderState.DONE
    assert emulators.powercode.customer_services[order.customer_id or 0] == {
        163: 1,
        172: 1,
        180: 2,
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("172x0", "the quantity after x must be a number from 1 to 1000"),
        ("172xa", "the quantity after x must be a number from 1 to 1000"),
        ("172, 172x2", "service 172 is listed twice"),
    ],
)
def test_a_bad_quantity_is_refused_and_nothing_saved(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient], text: str, problem: str
) -> None:
    admin = client_as(Role.ADMIN)
    answer = post_form(admin, "/settings/services", {"service_ids": text})
    assert answer.status_code == 422
    assert problem in answer.get_data(as_text=True)
    assert _versions(console_runtime, ConfigKind.ALWAYS_SERVICES) == []


def test_template_preview_renders_the_sample_order_safely(
    client_as: Callable[[Role], FlaskClient],
) -> None:
    admin = client_as(Role.ADMIN)
    page = admin.get("/settings/ticket-template").get_data(as_text=True)
    assert "the file new_desc.txt" in page
    assert "Jordan Sample" in page  # the sample order, never a real customer

    preview = admin.post(
        "/settings/ticket-template/preview",
        data={
            "source": "<p>Install for {{ customer_name }} at {{ address }}</p>",
            "csrf_token": csrf_token(admin, "/settings/ticket-template"),
        },
        headers={"Accept": "application/json"},
    )
    body = preview.get_json()
    assert body["ok"] is True
    assert body["html"] == "<p>Install for Jordan Sample at 123 N Example St # 2</p>"
    assert body["summary"] == "New UTOPIA install: Jordan Sample (UIA000000-000000)"

    for source, problem in (
        ("<p>{{ customer_name </p>", "failed to render"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "failed to render"),  # the sandbox
        ("{{ no_such_variable }}", "no_such_variable"),
    ):
        answer = admin.post(
            "/settings/ticket-template/preview",
            data={"source": source, "csrf_token": csrf_token(admin, "/settings/ticket-template")},
            headers={"Accept": "application/json"},
        ).get_json()
        assert answer["ok"] is False and problem in answer["problems"][0], source

    # Without JavaScript the Preview button re-renders the page, escaped into a sandboxed frame.
    page = post_form(
        admin, "/settings/ticket-template/preview", {"source": "<b>{{ first_name }}</b>"}
    ).get_data(as_text=True)
    assert 'sandbox="" srcdoc="&lt;b&gt;Jordan&lt;/b&gt;"' in page


def test_a_saved_template_is_used_for_the_next_ticket_and_can_be_rolled_back(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    admin = client_as(Role.ADMIN)
    first = "<p>Version one for {{ customer_name }}</p>"
    second = "<p>Version two for {{ customer_name }}</p>"
    assert post_form(admin, "/settings/ticket-template", {"source": first}).status_code == 303
    assert post_form(admin, "/settings/ticket-template", {"source": second}).status_code == 303
    broken = post_form(admin, "/settings/ticket-template", {"source": "{% if %}"})
    assert broken.status_code == 422 and "Not saved" in broken.get_data(as_text=True)
    versions = _versions(console_runtime, ConfigKind.TICKET_TEMPLATE)
    assert [v.value["source"] for v in versions] == [second, first]

    page = admin.get("/settings/ticket-template").get_data(as_text=True)
    assert "Version two for" in page and f"Roll back to version {versions[1].id}" in page
    rolled = post_form(admin, f"/settings/rollback/{versions[1].id}")
    assert rolled.status_code == 303 and rolled.headers["Location"] == "/settings/ticket-template"
    newest = _versions(console_runtime, ConfigKind.TICKET_TEMPLATE)[0]
    assert newest.value["source"] == first
    assert newest.note == f"rollback to version {versions[1].id}"

    queue_order(console_runtime, PLAIN)
    worker.run_until_idle()
    [ticket] = emulators.powercode.tickets.values()
    assert ticket["description"] == "<p>Version one for Avery Lindqvist</p>"


def test_the_effective_settings_page_never_shows_a_secret(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    page = client_as(Role.ADMIN).get("/settings").get_data(as_text=True)
    settings = console_runtime.settings
    assert settings.powercode.api_key is not None and settings.utopia.api_key is not None
    for secret in (
        settings.powercode.api_key.reveal(),
        settings.utopia.api_key.reveal(),
        SECRET_KEY,
        CALLBACK_TOKEN,
    ):
        assert secret not in page
    assert re.search(r"powercode.api_key</code></td><td[^>]*>\*{8}<", page)
    assert "provisioning.plans" in page
    assert ">operator<" in page and ">admin<" in page  # the console users


def test_rollback_of_an_unknown_version_is_a_404(client_as: Callable[[Role], FlaskClient]) -> None:
    assert post_form(client_as(Role.ADMIN), "/settings/rollback/999").status_code == 404


def test_console_settings_are_stored_as_versions_with_who_and_when(
    console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    post_form(client_as(Role.ADMIN), "/settings/services", {"service_ids": ""})
    with console_runtime.store.read() as session:
        version = session.scalar(select(ConfigVersion))
    assert version is not None
    assert version.kind == ConfigKind.ALWAYS_SERVICES and version.value == []
    assert version.created_by == "admin" and version.created_at is not None


def test_the_template_page_says_what_is_in_force_numbers_versions_per_kind_and_offers_the_file(
    console_runtime: Runtime,
    worker: Worker,
    emulators: Emulators,
    client_as: Callable[[Role], FlaskClient],
) -> None:
    admin = client_as(Role.ADMIN)
    # A plan mapping saved first: the template's first version is still its "version 1".
    post_form(admin, "/settings/plans", {"plan_text": ["250 Mbps"], "service_id": ["163"]})
    saved = post_form(admin, "/settings/ticket-template", {"source": "<p>One {{ first_name }}</p>"})
    page = admin.get(saved.headers["Location"]).get_data(as_text=True)
    assert "Ticket template saved as version 1;" in page
    assert "Use the template file again" in page and "new_desc.txt" in page

    refused = post_form(admin, "/settings/ticket-template", {"source": "{% if %}"})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "In force: version 1, saved in the console by admin" in page
    assert "the text being edited (not saved)" not in page
    assert "You are editing text that is not saved" in page and "Not saved:" in page

    back = post_form(admin, "/settings/ticket-template/use-file")
    page = admin.get(back.headers["Location"]).get_data(as_text=True)
    assert "The template file is in force again (saved as version 2)" in page
    assert "In force: the file new_desc.txt" in page
    assert "Roll back to version 1" in page and "Use the template file again" not in page
    queue_order(console_runtime, PLAIN)
    worker.run_until_idle()
    [ticket] = emulators.powercode.tickets.values()
    assert "Customer: Avery Lindqvist" in ticket["description"]  # the file's template

    with console_runtime.store.read() as session:
        first = config_store.history(session, ConfigKind.TICKET_TEMPLATE)[-1]
    rolled = post_form(admin, f"/settings/rollback/{first.id}")
    page = admin.get(rolled.headers["Location"]).get_data(as_text=True)
    assert "Version 1 is in force again (saved as version 3)" in page
