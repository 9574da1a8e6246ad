"""A session that ended (logged out in another tab, timed out) while a page stayed open: the
next form sent says so and offers to log in, back to the page the person was on."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select

from tests.console.conftest import PASSWORDS, csrf_token, log_in, post_form
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import ConfigVersion, Role


def test_a_form_sent_after_logging_out_in_another_tab_offers_to_log_in_again(
    app: Flask, console_runtime: Runtime, users: dict[Role, str]
) -> None:
    client = app.test_client()
    log_in(client, "admin", PASSWORDS[Role.ADMIN])
    token = csrf_token(client, "/settings/plans")  # the page left open in this tab
    post_form(client, "/logout")  # "another tab" of the same browser logs out

    late = client.post(
        "/settings/services",
        data={"service_ids": "999", "csrf_token": token},
        headers={"Referer": "http://localhost/settings/plans"},
    )
    assert late.status_code == 303
    assert late.headers["Location"] == "/login?next=/settings/plans"
    page = client.get(late.headers["Location"]).get_data(as_text=True)
    assert "You were logged out" in page and "security token" not in page
    answer = client.post(
        "/login",
        data={
            "username": "admin",
            "password": PASSWORDS[Role.ADMIN],
            "next": "/settings/plans",
            "csrf_token": csrf_token(client, "/login?next=/settings/plans"),
        },
    )
    assert answer.headers["Location"] == "/settings/plans"  # back where they were
    with console_runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(ConfigVersion)) == 0

    # A form from another site is still no login prompt's business: no way back there.
    client2 = app.test_client()
    log_in(client2, "admin", PASSWORDS[Role.ADMIN])
    stale = csrf_token(client2, "/")
    post_form(client2, "/logout")
    elsewhere = client2.post(
        "/settings/services",
        data={"service_ids": "1", "csrf_token": stale},
        headers={"Referer": "https://evil.example/settings/plans"},
    )
    assert elsewhere.headers["Location"] == "/login"
