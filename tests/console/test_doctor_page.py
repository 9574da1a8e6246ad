"""Admins run the doctor's checks of the real connections from the settings page."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

from tests.console.conftest import post_form
from utopia_handler.emulators import Emulators
from utopia_handler.store.console_models import Role


def test_admins_run_the_same_checks_on_the_settings_page(
    client_as: Callable[[Role], FlaskClient], emulators: Emulators
) -> None:
    page = post_form(client_as(Role.ADMIN), "/settings/checks")

    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert '<td data-label="Check">powercode API</td>' in text
    assert "answers and accepts the key" in text
    assert '<td data-label="Check">mail relay</td>' in text
    assert emulators.smtp.messages == []  # a check sends nothing


def test_only_admins_may_run_them(client_as: Callable[[Role], FlaskClient]) -> None:
    assert post_form(client_as(Role.OPERATOR), "/settings/checks").status_code == 403
