"""Attacks on the operator console (RELIABILITY.md, "Attacks"), each kept from coming back.

Every test here failed on the code before its fix; each is named after what it protects.
"""

from __future__ import annotations

import pytest
from flask import Flask

from tests.console.conftest import PASSWORDS, csrf_token
from utopia_handler.store.console_models import Role

# 2. Open redirect after login --------------------------------------------------------------------

OFF_SITE_TARGETS = [
    "/\t/evil.example",  # GET /login?next=/%09/evil.example: browsers drop the tab
    "/\n/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "/\t\\evil.example",
    "/\x00/evil.example",
    "/\u2028/evil.example",
    "/\u200b/evil.example",
    "//evil.example",
    "///evil.example",
    "https://evil.example/",
    "https:evil.example",
    "javascript:alert(1)",
    "evil.example",
]


@pytest.mark.parametrize("target", OFF_SITE_TARGETS)
def test_login_never_sends_anyone_to_another_site(
    app: Flask, users: dict[Role, str], target: str
) -> None:
    client = app.test_client()
    answer = client.post(
        "/login",
        data={
            "username": "viewer",
            "password": PASSWORDS[Role.VIEWER],
            "csrf_token": csrf_token(client),
            "next": target,
        },
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/", repr(target)
    # Already logged in, the login page sends its visitor on at once: to home, nothing else.
    again = client.get("/login", query_string={"next": target})
    assert again.status_code == 302
    assert again.headers["Location"] == "/", repr(target)


def test_login_still_returns_to_a_page_of_the_console(app: Flask, users: dict[Role, str]) -> None:
    client = app.test_client()
    answer = client.post(
        "/login",
        data={
            "username": "viewer",
            "password": PASSWORDS[Role.VIEWER],
            "csrf_token": csrf_token(client),
            "next": "/orders?state=waiting",
        },
    )
    assert answer.headers["Location"] == "/orders?state=waiting"
